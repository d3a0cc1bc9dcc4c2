/**
 * An attacker's peer client: opens raft.PeerService/Stream on any address with node:http2 and
 * sends whatever hello and frames it is given (a forged sender, a made-up nonce or proof,
 * Raft messages), then reports how the server ended the stream. Bounded: every attempt ends
 * within `timeoutMs`, and its connection is destroyed.
 */
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { Message } from '../../src/raft/types.ts';
import { encodeBatch } from '../../src/transport/codec.ts';

const PROTO = fileURLToPath(new URL('../../proto/peer.proto', import.meta.url));
const root = new protobuf.Root().loadSync(PROTO, { keepCase: true });
const PeerFrame = root.lookupType('raft.PeerFrame');
const PeerAck = root.lookupType('raft.PeerAck');

export interface ForgedHello {
  readonly from: string;
  readonly to: string;
  readonly clusterId?: string;
  readonly nonce?: Uint8Array;
}

export interface ForgeOptions {
  readonly hello: ForgedHello;
  /** Sent right after the hello (e.g. a made-up proof). */
  readonly proof?: Uint8Array;
  /** Raft messages sent (as batches) after the hello, as a peer would. */
  readonly messages?: readonly Message[];
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca: Buffer };
  readonly timeoutMs?: number;
}

export interface ForgeResult {
  /** The gRPC status the stream ended with (null: none before the timeout or connection end). */
  readonly code: number | null;
  readonly message: string;
  /** Whether the server answered the hello with an ack. */
  readonly acked: boolean;
  /** Error of the connection, if it failed (e.g. the TLS handshake). */
  readonly error: string;
}

function frame(obj: object): Buffer {
  const body = PeerFrame.encode(PeerFrame.fromObject(obj)).finish();
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

export function forgePeerStream(address: string, o: ForgeOptions): Promise<ForgeResult> {
  const timeoutMs = o.timeoutMs ?? 5_000;
  return new Promise((resolve) => {
    let acked = false;
    let error = '';
    let done = false;
    const session = http2.connect(
      `${o.tls ? 'https' : 'http'}://${address}`,
      o.tls ? { cert: o.tls.cert, key: o.tls.key, ca: o.tls.ca } : {},
    );
    const finish = (code: number | null, message: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve({ code, message, acked, error });
    };
    const timer = setTimeout(() => finish(null, 'timeout'), timeoutMs);
    session.on('error', (e: Error) => {
      error ||= e.message;
      finish(null, e.message);
    });
    const stream = session.request({
      ':method': 'POST',
      ':path': '/raft.PeerService/Stream',
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const onHeaders = (h: http2.IncomingHttpHeaders): void => {
      const s = h['grpc-status'];
      if (s === undefined) return;
      const m = h['grpc-message'];
      finish(Number(s), typeof m === 'string' ? decodeURIComponent(m) : '');
    };
    stream.on('response', onHeaders);
    stream.on('trailers', onHeaders);
    let buf = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const len = buf.readUInt32BE(1);
        if (buf.length < 5 + len) break;
        const ack = PeerAck.toObject(PeerAck.decode(buf.subarray(5, 5 + len))) as { hello?: object };
        if (ack.hello !== undefined) acked = true;
        buf = buf.subarray(5 + len);
      }
    });
    stream.on('error', (e: Error) => {
      error ||= e.message;
    });
    stream.on('close', () => finish(null, error || 'stream closed without a status'));
    const h = o.hello;
    stream.write(
      frame({
        hello: {
          version: 1,
          cluster_id: h.clusterId ?? 'raftkv',
          from: h.from,
          to: h.to,
          ...(h.nonce ? { nonce: h.nonce } : {}),
        },
      }),
    );
    if (o.proof) stream.write(frame({ proof: o.proof }));
    if (o.messages && o.messages.length > 0) stream.write(frame({ batch: encodeBatch(o.messages) }));
  });
}

/** A heartbeat from `from` claiming leadership of `term`: what takes a cluster over when accepted. */
export function heartbeat(from: string, to: string, term: number): Message {
  return { type: 'hb', from, to, term, commit: 0, readSeq: 0 };
}
