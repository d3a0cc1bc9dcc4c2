/**
 * The outgoing side of the gRPC peer transport: one {@link PeerLink} per peer, a minimal
 * gRPC client written on `node:http2` (h2c, or TLS/mTLS) that opens one long-lived stream to
 * the peer's `raft.PeerService/Stream`, sends a hello first and then one frame per flush; and
 * {@link probePeer}, the one-shot discovery handshake. Both authenticate the server they reach
 * (peer-auth.ts) before anything is sent or believed.
 *
 * Invariants:
 * - A link is in one of: idle (no stream), open (a stream, hello sent), or backing off until
 *   `retryAt` (sends are dropped and reported). A failed stream moves to backing off with
 *   exponential backoff and jitter; a refused handshake backs off the maximum. A stream whose
 *   hello was acknowledged resets the backoff.
 * - Messages are written to the current stream in order or dropped with `reportUnreachable`;
 *   never buffered beyond `maxBufferedBytes` (cluster-secret mode: frames written before the
 *   server proved the secret are held for that one round trip and count towards the cap).
 * - One log line per connect, disconnect and handshake failure (per streak); nothing per message.
 * - After `shutdown()` resolves, no timer, stream or socket of the link is left.
 * The link knows its transport only through {@link PeerLinkHost}, so this module does not
 * import grpc.ts.
 */
import * as http2 from 'node:http2';
import { Deframer, type FrameSink } from '../grpc/framing.ts';
import { Status, statusName } from '../grpc/status.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { encodeBatchWithHeadroom, messageSizeBound } from './codec.ts';
import {
  type CertificateLike,
  checkPeerCertificate,
  clientProof,
  describeSecretSource,
  NONCE_BYTES,
  newNonce,
  type PeerAuth,
  proofMatches,
  serverProof,
} from './peer-auth.ts';
import {
  ackType,
  type GrpcTransportStats,
  type GrpcTransportTls,
  grpcMessage,
  PEER_PROTOCOL_VERSION,
  type PeerAck,
  type PeerHello,
  type PeerIdentity,
  PeerStreamError,
  REQUEST_HEADERS,
  type TransportLogger,
} from './peer-protocol.ts';

/** What a link needs of its transport (GrpcTransport implements it). */
export interface PeerLinkHost {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly stats: GrpcTransportStats;
  readonly log: TransportLogger;
  readonly opts: {
    readonly maxFrameBytes: number;
    readonly maxBufferedBytes: number;
    readonly backoffMinMs: number;
    readonly backoffMaxMs: number;
    readonly streamWindowBytes: number;
    readonly connectionWindowBytes: number;
    readonly keepaliveMs: number;
  };
  readonly auth: PeerAuth;
  readonly advertise: { readonly client: string; readonly peer: string };
  readonly tls: GrpcTransportTls | undefined;
  readonly closed: boolean;
  reportUnreachable(peer: NodeId): void;
}

/** Frame prefix room: 5 bytes gRPC framing, 1 byte protobuf tag, up to 5 bytes protobuf length. */
const HEADROOM = 11;
const BATCH_TAG = (2 << 3) | 2;
/** Bytes a frame may need beyond its messages' bounds (prefix, version, counts) and per message (id table). */
const FRAME_OVERHEAD = HEADROOM + 32;
const MESSAGE_OVERHEAD = 32;

/**
 * Asks the node at `address` (a peer port) who it is, authenticated as any peer stream is:
 * resolves with its id and advertised addresses, rejects with a PeerStreamError when it
 * cannot be reached, refuses us, or fails to authenticate, or after `timeoutMs`.
 */
export function probePeer(t: PeerLinkHost, address: string, timeoutMs = 5_000): Promise<PeerIdentity> {
  const tls = t.tls;
  return new Promise<PeerIdentity>((resolve, reject) => {
    let session: http2.ClientHttp2Session;
    const fail = (why: string, code: number | null = null): void => {
      clearTimeout(timer);
      if (!session.destroyed) session.destroy();
      reject(new PeerStreamError('', code, `${address}: ${why}`));
    };
    try {
      session = http2.connect(`${tls === undefined ? 'http' : 'https'}://${address}`, {
        ...(tls === undefined
          ? {}
          : { cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca }) }),
      });
    } catch (e) {
      reject(new PeerStreamError('', null, `${address}: ${(e as Error).message}`));
      return;
    }
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    session.on('error', (e: Error) => fail(e.message));
    const nonce = t.auth.kind === 'secret' ? newNonce() : null;
    const stream = session.request(REQUEST_HEADERS, { endStream: false });
    const sink: FrameSink = {
      onMessage: (message: Buffer): boolean => {
        let ack: PeerAck;
        try {
          ack = ackType().decode(message) as PeerAck;
        } catch {
          fail('undecodable answer');
          return false;
        }
        const h = ack.hello;
        if (h === null || h === undefined || h.from === '') {
          fail('answered without a hello');
          return false;
        }
        if (h.cluster_id !== t.clusterId) {
          fail(`it belongs to cluster "${h.cluster_id}", this node to "${t.clusterId}"`);
          return false;
        }
        const why = checkServer(t, session, h, nonce);
        if (why !== null) {
          fail(`did not authenticate: ${why}`);
          return false;
        }
        clearTimeout(timer);
        resolve({ id: h.from, clientAddress: h.client_address ?? '', peerAddress: h.peer_address ?? '' });
        session.close();
        return false;
      },
      onFrameError: () => fail('malformed gRPC frame'),
    };
    const deframer = new Deframer(64 * 1024);
    stream.on('data', (chunk: Buffer) => deframer.push(chunk, sink));
    const onStatus = (headers: http2.IncomingHttpHeaders): void => {
      const code = headers['grpc-status'];
      if (code !== undefined && code !== '0') {
        const msg = headers['grpc-message'];
        let text = typeof msg === 'string' ? msg : '';
        try {
          text = decodeURIComponent(text);
        } catch {
          // keep it as sent
        }
        fail(`${statusName(Number(code))}: ${text}`, Number(code));
      }
    };
    stream.on('response', onStatus);
    stream.on('trailers', onStatus);
    stream.on('error', (e: Error) => fail(e.message));
    stream.on('close', () => fail('stream closed before an answer'));
    stream.write(grpcMessage({ hello: helloOf(t, '', nonce) }));
  });
}

/** The hello a node opens a stream with (to '' in a discovery probe). */
function helloOf(t: PeerLinkHost, to: NodeId, nonce: Buffer | null): PeerHello {
  return {
    version: PEER_PROTOCOL_VERSION,
    cluster_id: t.clusterId,
    from: t.id,
    to,
    ...(nonce !== null ? { nonce } : {}),
    client_address: t.advertise.client,
    peer_address: t.advertise.peer,
    ...(t.auth.kind === 'secret' ? { secret_source: t.auth.source?.kind ?? 'peer-secret-file' } : {}),
  };
}

/** Why the server that answered `ack` on `session` is not authenticated as `ack.from` (null when it is). */
function checkServer(
  t: PeerLinkHost,
  session: http2.Http2Session | undefined,
  ack: PeerHello,
  nonce: Buffer | null,
): string | null {
  const auth = t.auth;
  if (auth.kind === 'none') return null;
  if (auth.kind === 'secret') {
    if (nonce === null || ack.nonce === undefined || ack.nonce.length !== NONCE_BYTES) {
      return `it does not authenticate peers by the cluster secret (it sent no challenge: started with --insecure-peers, or peer TLS?), while ${describeSecretSource('this node', auth.source?.kind ?? 'peer-secret-file', auth.source?.file)}`;
    }
    const expected = serverProof(auth.secret, {
      clusterId: t.clusterId,
      client: t.id,
      server: ack.from,
      clientNonce: nonce,
      serverNonce: ack.nonce,
    });
    return proofMatches(expected, ack.proof)
      ? null
      : `the secret proof failed: wrong proof of the cluster secret, the two nodes' secrets differ: ${describeSecretSource('this node', auth.source?.kind ?? 'peer-secret-file', auth.source?.file)}; ${describeSecretSource(`node ${ack.from}`, ack.secret_source)}. Give every member the same secret`;
  }
  const socket = session?.socket as { getPeerCertificate?: () => CertificateLike } | undefined;
  const cert = typeof socket?.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  return checkPeerCertificate(cert, ack.from, auth.allowedNames);
}

function clientProofFor(t: PeerLinkHost, ack: PeerHello, nonce: Buffer): Buffer {
  const auth = t.auth;
  if (auth.kind !== 'secret' || ack.nonce === undefined)
    throw new Error('clientProofFor: not in secret mode');
  return clientProof(auth.secret, {
    clusterId: t.clusterId,
    client: t.id,
    server: ack.from,
    clientNonce: nonce,
    serverNonce: ack.nonce,
  });
}

/** The outbound side for one peer: its connection, stream, queue and backoff. */
export class PeerLink implements FrameSink {
  readonly t: PeerLinkHost;
  readonly peer: NodeId;
  readonly address: string;
  queue: Message[] = [];
  #session: http2.ClientHttp2Session | null = null;
  #stream: http2.ClientHttp2Stream | null = null;
  #deframer: Deframer | null = null;
  #status: { code: number; message: string } | null = null;
  #error: Error | null = null;
  #acked = false;
  #refused: string | null = null;
  #lastRefusal: string | null = null;
  #attempts = 0;
  #retryAt = 0;
  /** A failure was logged in the current streak of failures (so the next one is not). */
  #failureLogged = false;
  #overflowLogged = false;
  #keepalive: NodeJS.Timeout | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #shutdown: Promise<void> | null = null;
  /** Cluster-secret mode: this stream's nonce, and frames written before the server proved itself. */
  #nonce: Buffer | null = null;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(t: PeerLinkHost, peer: NodeId, address: string) {
    this.t = t;
    this.peer = peer;
    this.address = address;
  }

  flush(): void {
    const msgs = this.queue;
    if (msgs.length === 0 || this.#shutdown !== null) return;
    this.queue = [];
    if (this.#stream === null) {
      if (Date.now() < this.#retryAt) {
        this.#drop(msgs.length);
        return;
      }
      this.#open();
    }
    const stream = this.#stream;
    if (stream === null) {
      this.#drop(msgs.length);
      return;
    }
    // Split into frames of at most maxFrameBytes (usually one frame). Once a frame is refused
    // (buffer full) the rest of this flush is dropped too, so what arrives stays a prefix.
    const max = this.t.opts.maxFrameBytes;
    let frame: Message[] = [];
    let size = FRAME_OVERHEAD;
    let dropped = 0;
    let full = false;
    const emit = (): void => {
      if (frame.length === 0) return;
      if (full || !this.#write(stream, frame)) {
        full = true;
        dropped += frame.length;
      }
      frame = [];
      size = FRAME_OVERHEAD;
    };
    for (const m of msgs) {
      const s = messageSizeBound(m) + MESSAGE_OVERHEAD;
      if (s + FRAME_OVERHEAD > max) {
        emit();
        this.t.log.error(
          { node: this.t.id, peer: this.peer, type: m.type, bytes: s, maxFrameBytes: max },
          'peer message larger than maxFrameBytes dropped',
        );
        dropped++;
        continue;
      }
      if (size + s > max) emit();
      frame.push(m);
      size += s;
    }
    emit();
    if (dropped > 0) this.#drop(dropped);
  }

  /** Writes one frame; false (nothing written) when the stream's buffer is over its cap. */
  #write(stream: http2.ClientHttp2Stream, msgs: readonly Message[]): boolean {
    const { buf, end } = encodeBatchWithHeadroom(msgs, HEADROOM);
    const len = end - HEADROOM;
    let lenBytes = 1;
    while (len >= 2 ** (7 * lenBytes)) lenBytes++;
    const start = HEADROOM - lenBytes - 1 - 5;
    const frame = buf.subarray(start, end);
    if (stream.writableLength + this.#pendingBytes + frame.length > this.t.opts.maxBufferedBytes) {
      if (!this.#overflowLogged) {
        this.#overflowLogged = true;
        this.t.log.warn(
          { node: this.t.id, peer: this.peer, buffered: stream.writableLength },
          'peer is not reading fast enough: dropping messages',
        );
      }
      return false;
    }
    this.#overflowLogged = false;
    buf[start] = 0;
    buf.writeUInt32BE(frame.length - 5, start + 1);
    let p = start + 5;
    buf[p++] = BATCH_TAG;
    let v = len;
    while (v >= 0x80) {
      buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[p] = v;
    if (this.#nonce !== null && !this.#acked) {
      // the server has not proven the secret yet: hold the frame until it has (one round trip)
      this.#pending.push(frame);
      this.#pendingBytes += frame.length;
    } else stream.write(frame);
    this.t.stats.framesSent++;
    this.t.stats.messagesSent += msgs.length;
    return true;
  }

  #drop(n: number): void {
    this.t.stats.messagesDropped += n;
    this.t.reportUnreachable(this.peer);
  }

  #open(): void {
    const t = this.t;
    const tls = t.tls;
    const settings: http2.Settings = { initialWindowSize: t.opts.streamWindowBytes, enablePush: false };
    const url = `${tls === undefined ? 'http' : 'https'}://${this.address}`;
    let session: http2.ClientHttp2Session;
    try {
      session = http2.connect(url, {
        settings,
        maxSessionMemory: Math.max(64, Math.ceil((2 * t.opts.connectionWindowBytes) / 1024 / 1024)),
        ...(tls === undefined
          ? {}
          : { cert: tls.cert, key: tls.key, ...(tls.ca === undefined ? {} : { ca: tls.ca }) }),
      });
    } catch (e) {
      // e.g. a malformed address
      this.#error = e instanceof Error ? e : new Error(String(e));
      this.#failed(null);
      return;
    }
    this.#session = session;
    this.#status = null;
    this.#error = null;
    this.#acked = false;
    this.#refused = null;
    this.#nonce = t.auth.kind === 'secret' ? newNonce() : null;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#deframer = new Deframer(64 * 1024);
    t.stats.streamsOpened++;
    session.on('error', (e: Error) => {
      this.#error ??= e;
    });
    session.on('connect', () => {
      try {
        session.socket.setNoDelay(true);
        session.setLocalWindowSize(t.opts.connectionWindowBytes);
      } catch {
        // the session died during setup; 'close' follows
      }
    });
    session.on('goaway', () => {
      // The server is going away (e.g. restarting): end our side so its graceful close is quick.
      this.#error ??= new Error('server sent GOAWAY');
      const s = this.#stream;
      if (s !== null && s.session === session) s.end();
    });
    session.on('close', () => {
      if (this.#session === session) this.#failed(session);
    });
    const stream = session.request(REQUEST_HEADERS, { endStream: false });
    this.#stream = stream;
    stream.on('response', (headers: http2.IncomingHttpHeaders) => this.#onStatusHeaders(stream, headers));
    stream.on('trailers', (headers: http2.IncomingHttpHeaders) => this.#onStatusHeaders(stream, headers));
    stream.on('data', (chunk: Buffer) => {
      if (this.#stream === stream) this.#deframer?.push(chunk, this);
    });
    stream.on('error', (e: Error) => {
      this.#error ??= e;
    });
    stream.on('close', () => {
      if (this.#stream === stream) this.#failed(session);
    });
    stream.write(grpcMessage({ hello: helloOf(t, this.peer, this.#nonce) }));
    this.#startKeepalive(session);
  }

  #startKeepalive(session: http2.ClientHttp2Session): void {
    const ms = this.t.opts.keepaliveMs;
    if (ms <= 0) return;
    this.#keepalive = setInterval(() => {
      if (this.#pingTimer !== null || session.destroyed || session.connecting) return;
      this.#pingTimer = setTimeout(() => {
        this.#error ??= new Error(`no answer to a keepalive ping within ${ms} ms`);
        session.destroy();
      }, ms);
      this.#pingTimer.unref();
      try {
        session.ping((err) => {
          if (err !== null) return;
          if (this.#pingTimer !== null) clearTimeout(this.#pingTimer);
          this.#pingTimer = null;
        });
      } catch {
        session.destroy();
      }
    }, ms);
    this.#keepalive.unref();
  }

  #stopKeepalive(): void {
    if (this.#keepalive !== null) clearInterval(this.#keepalive);
    if (this.#pingTimer !== null) clearTimeout(this.#pingTimer);
    this.#keepalive = null;
    this.#pingTimer = null;
  }

  #onStatusHeaders(stream: http2.ClientHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    if (this.#stream !== stream) return;
    const raw = headers['grpc-status'];
    if (raw === undefined) {
      const st = headers[':status'];
      if (st !== undefined && String(st) !== '200') {
        this.#status = { code: Status.UNKNOWN, message: `HTTP status ${st} from the peer` };
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
      return;
    }
    const code = Number(raw);
    const msg = headers['grpc-message'];
    let message = typeof msg === 'string' ? msg : '';
    try {
      message = decodeURIComponent(message);
    } catch {
      // keep it as sent
    }
    // The call is over (a status ends it): close our half too, so the stream closes now.
    this.#status ??= { code, message };
    stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  // ---- FrameSink: the server's acks ----
  onMessage(message: Buffer): boolean {
    let ack: PeerAck;
    try {
      ack = ackType().decode(message) as PeerAck;
    } catch {
      this.#refuse('peer protocol: the server sent an undecodable PeerAck');
      return false;
    }
    if (this.#acked) return true;
    const h = ack.hello;
    if (h === null || h === undefined) {
      this.#refuse('peer protocol: the server acknowledged without a hello');
      return false;
    }
    if (h.cluster_id !== this.t.clusterId) {
      this.#refuse(
        `cluster id mismatch: ${this.address} is node ${h.from} of cluster "${h.cluster_id}", this node ${this.t.id} is in "${this.t.clusterId}"`,
      );
      return false;
    }
    if (h.from !== this.peer) {
      this.#refuse(
        `node id mismatch: expected node "${this.peer}" at ${this.address}, found node "${h.from}"`,
      );
      return false;
    }
    const stream = this.#stream;
    const why = stream === null ? 'stream closed' : checkServer(this.t, stream.session, h, this.#nonce);
    if (why !== null) {
      this.#refuse(`${this.address} did not authenticate as node "${this.peer}": ${why}`);
      return false;
    }
    this.#acked = true;
    if (this.#nonce !== null && stream !== null) {
      stream.write(grpcMessage({ proof: clientProofFor(this.t, h, this.#nonce) }));
      for (const f of this.#pending) stream.write(f);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    this.#attempts = 0;
    this.#failureLogged = false;
    this.#lastRefusal = null;
    this.t.log.info({ node: this.t.id, peer: this.peer, address: this.address }, 'peer connected');
    return true;
  }

  onFrameError(): void {
    this.#refuse('peer protocol: malformed gRPC frame from the server');
  }

  /** The client side refuses the server (its ack is wrong): end the stream, back off the maximum. */
  #refuse(reason: string): void {
    this.#status = { code: Status.FAILED_PRECONDITION, message: reason };
    this.#refused = reason;
    this.#stream?.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** The stream or its connection ended: log, report, back off. */
  #failed(session: http2.ClientHttp2Session | null): void {
    const wasAcked = this.#acked;
    const status = this.#status;
    this.#stream = null;
    this.#session = null;
    this.#deframer = null;
    this.#acked = false;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#stopKeepalive();
    if (session !== null && !session.destroyed) session.destroy();
    if (this.#shutdown !== null || this.t.closed) return;
    const t = this.t;
    const refused =
      status !== null &&
      (status.code === Status.FAILED_PRECONDITION || status.code === Status.UNAUTHENTICATED);
    this.#attempts++;
    const max = t.opts.backoffMaxMs;
    const base = refused ? max : Math.min(max, t.opts.backoffMinMs * 2 ** (this.#attempts - 1));
    this.#retryAt = Date.now() + base * (0.5 + Math.random() * 0.5);
    const err = new PeerStreamError(
      this.peer,
      status?.code ?? null,
      status !== null
        ? `${statusName(status.code)}: ${status.message}`
        : (this.#error?.message ?? 'stream closed'),
      this.#error === null ? undefined : { cause: this.#error },
    );
    const ctx = { node: t.id, peer: this.peer, address: this.address, err };
    if (refused) {
      // once per streak of refusals (again if the reason changes), not once per retry
      const reason = this.#refused ?? status.message;
      if (reason !== this.#lastRefusal) t.log.error({ ...ctx, reason }, 'peer handshake failed');
      this.#lastRefusal = reason;
      this.#failureLogged = true;
    } else if (wasAcked) {
      t.log.warn(ctx, 'peer disconnected');
      this.#failureLogged = true;
    } else if (!this.#failureLogged) {
      t.log.warn(ctx, 'peer unreachable');
      this.#failureLogged = true;
    }
    t.reportUnreachable(this.peer);
  }

  /** Ends the stream and the connection; resolves when the socket is closed. */
  shutdown(): Promise<void> {
    if (this.#shutdown !== null) return this.#shutdown;
    this.queue = [];
    this.#stopKeepalive();
    const session = this.#session;
    const stream = this.#stream;
    this.#session = null;
    this.#stream = null;
    if (session === null || session.destroyed) {
      this.#shutdown = Promise.resolve();
      return this.#shutdown;
    }
    this.#shutdown = new Promise<void>((resolve) => {
      const force = setTimeout(() => session.destroy(), 1000);
      session.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      try {
        stream?.end();
        session.close();
      } catch {
        session.destroy();
      }
    });
    return this.#shutdown;
  }
}
