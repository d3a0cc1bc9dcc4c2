/**
 * The gRPC peer transport: Raft messages between nodes over `raft.PeerService/Stream`
 * (proto/peer.proto), one long-lived bidirectional HTTP/2 stream per peer direction.
 *
 * Outbound, each peer has a {@link PeerLink}: a minimal gRPC client written on `node:http2`
 * (h2c, or TLS/mTLS), sending a hello first and then one frame per flush. Inbound, the
 * service is added by {@link GrpcTransport.register} to a server the caller created (the
 * peer port, never the client port), and each decoded frame is handed to `onMessages`.
 * Peers authenticate once per stream, before any batch is read (peer-auth.ts, `auth`).
 *
 * Invariants:
 * - Every message given to `send` is written to its peer's current stream, in order, or
 *   dropped with `onUnreachable(peer)` reported: never queued beyond one event-loop turn
 *   (cluster-secret mode: beyond the handshake's round trip, in encoded frames that count
 *   towards the same cap), never buffered beyond `maxBufferedBytes` per peer (HTTP/2 flow control is the
 *   backpressure; a peer that does not read gets its messages dropped, not our memory).
 * - All messages to one peer sent in one callback (one synchronous run, flushed on
 *   process.nextTick) go out in one frame (split only when larger than `maxFrameBytes`).
 * - A peer link is in one of: idle (no stream), open (a stream, hello sent), or backing off
 *   until `retryAt` (sends are dropped and reported). A failed stream moves to backing off
 *   with exponential backoff and jitter; a refused handshake backs off the maximum. A stream
 *   whose hello was acknowledged resets the backoff.
 * - No batch of an inbound stream is decoded before its sender authenticated; a stream that
 *   has not authenticated within `handshakeTimeoutMs` ends UNAUTHENTICATED.
 * - One log line per connect, disconnect and handshake failure of a peer; nothing per message.
 * - After `close()` resolves, no timer, immediate, stream or socket of this transport is left.
 */
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import type { ServerStreamCall } from '../grpc/call.ts';
import { Deframer, type FrameSink } from '../grpc/framing.ts';
import { loadProtoFiles, type ServiceDefinition, serviceDefinition } from '../grpc/proto.ts';
import type { GrpcServer } from '../grpc/server.ts';
import { GrpcError, Status, type StatusCode, statusName } from '../grpc/status.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { CodecError, decodeBatch, encodeBatchWithHeadroom, messageSizeBound } from './codec.ts';
import {
  type CertificateLike,
  checkPeerCertificate,
  clientProof,
  NONCE_BYTES,
  newNonce,
  type PeerAuth,
  proofMatches,
  serverProof,
} from './peer-auth.ts';
import type { Transport, TransportHandlers } from './transport.ts';

/** The peer protocol version sent in every hello. */
export const PEER_PROTOCOL_VERSION = 1;

function flushTransport(t: GrpcTransport): void {
  t.flushQueued();
}
export const PEER_STREAM_PATH = '/raft.PeerService/Stream';

/** proto/peer.proto (copied next to the compiled code by `npm run build`). */
export const PEER_PROTO_FILE = fileURLToPath(new URL('../../proto/peer.proto', import.meta.url));

interface PeerHello {
  version: number;
  cluster_id: string;
  from: string;
  to: string;
  nonce?: Uint8Array;
  proof?: Uint8Array;
  client_address?: string;
  peer_address?: string;
}
interface PeerFrame {
  hello?: PeerHello | null;
  batch?: Uint8Array;
  proof?: Uint8Array;
}
interface PeerAck {
  hello?: PeerHello | null;
}

let definition: ServiceDefinition | null = null;
/** The raft.PeerService definition (built once). */
export function peerServiceDefinition(): ServiceDefinition {
  definition ??= serviceDefinition(loadProtoFiles(PEER_PROTO_FILE), 'raft.PeerService');
  return definition;
}

/** pino-compatible logger. */
export interface TransportLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface GrpcTransportTls {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** CA that peers' certificates must be signed by (server identity; the server side decides on mTLS). */
  readonly ca?: string | Buffer;
}

export interface GrpcTransportOptions {
  readonly id: NodeId;
  readonly clusterId: string;
  /** Initial address book: node id -> `host:port`. */
  readonly peers?: ReadonlyMap<NodeId, string>;
  /** Connect with TLS (client certificate = `cert`/`key`, for servers that require mTLS). */
  readonly tls?: GrpcTransportTls;
  readonly logger?: TransportLogger;
  /**
   * Largest frame sent, in bytes (default 16 MiB). A batch larger than this is split; a single
   * message larger than this is dropped (and logged). The receiving node's peer service must
   * accept messages of this size ({@link PEER_MAX_MESSAGE_BYTES}, set by `register`).
   */
  readonly maxFrameBytes?: number;
  /** Bytes a peer's stream may hold unsent before new messages to it are dropped (default 64 MiB). */
  readonly maxBufferedBytes?: number;
  /** Reconnect backoff bounds in ms (defaults 50 and 2000). */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** HTTP/2 flow-control windows of outbound connections (defaults 1 MiB per stream, 16 MiB per connection). */
  readonly streamWindowBytes?: number;
  readonly connectionWindowBytes?: number;
  /** Ping each connection this often; no answer within the same time destroys it (default 10 s; 0 disables). */
  readonly keepaliveMs?: number;
  /** How peers authenticate (default none: loopback only; see peer-auth.ts). `tls` needs `tls` here too. */
  readonly auth?: PeerAuth;
  /** An inbound stream must authenticate within this many ms (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** This node's client (API) and peer addresses, told to peers in the handshake (discovery). */
  readonly advertise?: { readonly client: string; readonly peer: string };
}

/** Who answered a discovery probe ({@link GrpcTransport.probe}). */
export interface PeerIdentity {
  readonly id: NodeId;
  /** Its client (API) and peer addresses as it advertises them ('' when it does not say). */
  readonly clientAddress: string;
  readonly peerAddress: string;
}

/**
 * Largest message raft.PeerService accepts: the default maxFrameBytes plus room for the frame's id table. It is
 * the peer service's own limit (given to addService by `register`): other services on the same server keep
 * theirs (the KV API's 4 MiB default).
 */
export const PEER_MAX_MESSAGE_BYTES = 17 * 1024 * 1024;

/** Options a server carrying peer traffic needs (merge them into createGrpcServer's). */
export const PEER_SERVER_OPTIONS = {
  streamWindowSize: 1024 * 1024,
  connectionWindowSize: 16 * 1024 * 1024,
} as const;

/** Why a stream to a peer ended (given to the logger as `err`). */
export class PeerStreamError extends Error {
  override readonly name = 'PeerStreamError';
  readonly peer: NodeId;
  /** The gRPC status the stream ended with, or null when the connection failed first. */
  readonly code: number | null;
  constructor(peer: NodeId, code: number | null, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.peer = peer;
    this.code = code;
  }
}

/** Counters, for tests and metrics. */
export interface GrpcTransportStats {
  framesSent: number;
  messagesSent: number;
  framesReceived: number;
  messagesReceived: number;
  /** Messages dropped because their peer was unknown, backing off, or its buffer was full. */
  messagesDropped: number;
  /** Streams opened to peers (including reconnects). */
  streamsOpened: number;
}

const stderrLogger: TransportLogger = {
  info: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'info', msg, ...plain(obj) })}\n`),
  warn: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'warn', msg, ...plain(obj) })}\n`),
  error: (obj, msg) => process.stderr.write(`${JSON.stringify({ level: 'error', msg, ...plain(obj) })}\n`),
};
function plain(obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj))
    out[k] = v instanceof Error ? { name: v.name, message: v.message } : v;
  return out;
}

/** Frame prefix room: 5 bytes gRPC framing, 1 byte protobuf tag, up to 5 bytes protobuf length. */
const HEADROOM = 11;
const BATCH_TAG = (2 << 3) | 2;
/** Bytes a frame may need beyond its messages' bounds (prefix, version, counts) and per message (id table). */
const FRAME_OVERHEAD = HEADROOM + 32;
const MESSAGE_OVERHEAD = 32;
const REQUEST_HEADERS: http2.OutgoingHttpHeaders = {
  ':method': 'POST',
  ':path': PEER_STREAM_PATH,
  'content-type': 'application/grpc',
  te: 'trailers',
};

export class GrpcTransport implements Transport {
  readonly id: NodeId;
  readonly clusterId: string;
  readonly stats: GrpcTransportStats = {
    framesSent: 0,
    messagesSent: 0,
    framesReceived: 0,
    messagesReceived: 0,
    messagesDropped: 0,
    streamsOpened: 0,
  };
  /** @internal */ readonly log: TransportLogger;
  /** @internal */ readonly opts: Required<
    Omit<GrpcTransportOptions, 'id' | 'clusterId' | 'peers' | 'tls' | 'logger' | 'auth' | 'advertise'>
  >;
  /** @internal */ readonly auth: PeerAuth;
  /** @internal */ readonly advertise: { readonly client: string; readonly peer: string };
  /** @internal */ readonly tls: GrpcTransportTls | undefined;
  /** @internal */ handlers: TransportHandlers | null = null;
  /** @internal */ closed = false;
  readonly #links = new Map<NodeId, PeerLink>();
  readonly #dirty = new Set<PeerLink>();
  #flushScheduled = false;
  readonly #inbound = new Set<ServerStreamCall<PeerFrame, PeerAck>>();

  constructor(options: GrpcTransportOptions) {
    this.id = options.id;
    this.clusterId = options.clusterId;
    this.tls = options.tls;
    this.auth = options.auth ?? { kind: 'none' };
    if (this.auth.kind === 'tls' && this.tls === undefined) {
      throw new TypeError('peer authentication by TLS needs the tls option (certificate, key and CA)');
    }
    this.advertise = options.advertise ?? { client: '', peer: '' };
    this.log = options.logger ?? stderrLogger;
    this.opts = {
      maxFrameBytes: options.maxFrameBytes ?? 16 * 1024 * 1024,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 * 1024 * 1024,
      backoffMinMs: options.backoffMinMs ?? 50,
      backoffMaxMs: options.backoffMaxMs ?? 2000,
      streamWindowBytes: options.streamWindowBytes ?? 1024 * 1024,
      connectionWindowBytes: options.connectionWindowBytes ?? 16 * 1024 * 1024,
      keepaliveMs: options.keepaliveMs ?? 10_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
    };
    for (const [id, address] of options.peers ?? []) this.setPeer(id, address);
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  /** Serves raft.PeerService on `server` (created and started by the caller). */
  register(server: GrpcServer): void {
    server.addService(
      peerServiceDefinition(),
      { Stream: (call: ServerStreamCall<PeerFrame, PeerAck>) => this.#serve(call) },
      { maxReceiveMessageSize: PEER_MAX_MESSAGE_BYTES },
    );
  }

  send(messages: readonly Message[]): void {
    if (this.closed) return;
    let unknown: Set<NodeId> | null = null;
    for (const m of messages) {
      const link = this.#links.get(m.to);
      if (link === undefined) {
        this.stats.messagesDropped++;
        if (unknown === null) unknown = new Set();
        unknown.add(m.to);
        continue;
      }
      link.queue.push(m);
      this.#dirty.add(link);
    }
    if (this.#dirty.size > 0 && !this.#flushScheduled) {
      // At the end of the current callback, not an event-loop turn later: the leader's appends must be on the
      // wire while its own WAL write runs, and a follower's ack as soon as its write is done.
      this.#flushScheduled = true;
      process.nextTick(flushTransport, this);
    }
    if (unknown !== null) for (const p of unknown) this.reportUnreachable(p);
  }

  setPeer(id: NodeId, address: string): void {
    if (this.closed || id === this.id) return;
    const old = this.#links.get(id);
    if (old !== undefined) {
      if (old.address === address) return;
      void old.shutdown();
      this.#dirty.delete(old);
    }
    this.#links.set(id, new PeerLink(this, id, address));
  }

  removePeer(id: NodeId): void {
    const link = this.#links.get(id);
    if (link === undefined) return;
    this.#links.delete(id);
    this.#dirty.delete(link);
    void link.shutdown();
  }

  /**
   * Asks the node at `address` (a peer port) who it is, authenticated as any peer stream is:
   * resolves with its id and advertised addresses, rejects with a PeerStreamError when it
   * cannot be reached, refuses us, or fails to authenticate, or after `timeoutMs`.
   */
  probe(address: string, timeoutMs = 5_000): Promise<PeerIdentity> {
    const tls = this.tls;
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
      const nonce = this.auth.kind === 'secret' ? newNonce() : null;
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
          if (h.cluster_id !== this.clusterId) {
            fail(`it belongs to cluster "${h.cluster_id}", this node to "${this.clusterId}"`);
            return false;
          }
          const why = checkServer(this, session, h, nonce);
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
      stream.write(grpcMessage({ hello: helloOf(this, '', nonce) }));
    });
  }

  /** Current address book. */
  peers(): Map<NodeId, string> {
    return new Map([...this.#links].map(([id, l]) => [id, l.address]));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.#dirty.clear();
    for (const call of this.#inbound) call.end();
    this.#inbound.clear();
    const links = [...this.#links.values()];
    this.#links.clear();
    await Promise.all(links.map((l) => l.shutdown()));
  }

  /** @internal */
  reportUnreachable(peer: NodeId): void {
    if (this.closed) return;
    this.handlers?.onUnreachable?.(peer);
  }

  /** @internal */
  flushQueued(): void {
    this.#flushScheduled = false;
    if (this.closed) return;
    const links = [...this.#dirty];
    this.#dirty.clear();
    for (const l of links) l.flush();
  }

  // ---- inbound ----
  async #serve(call: ServerStreamCall<PeerFrame, PeerAck>): Promise<void> {
    const it = call[Symbol.asyncIterator]();
    const hs = this.opts.handshakeTimeoutMs;
    const handshakeEnds = Date.now() + hs;
    const first = await nextWithin(it, handshakeEnds, hs);
    if (first.done === true) return;
    const hello = first.value.hello;
    if (hello === null || hello === undefined) {
      this.log.warn({ node: this.id, remote: call.peer }, 'peer stream refused: first frame is not a hello');
      throw new GrpcError(Status.INVALID_ARGUMENT, 'peer protocol: the first frame must be a hello');
    }
    const refuse = (code: StatusCode, reason: string): GrpcError => {
      this.log.warn({ node: this.id, peer: hello.from, remote: call.peer, reason }, 'peer handshake refused');
      return new GrpcError(code, reason);
    };
    const unauthenticated = this.#authenticate(call, hello);
    if (unauthenticated !== null) throw refuse(Status.UNAUTHENTICATED, unauthenticated);
    const refusal = this.#checkHello(hello);
    if (refusal !== null) throw refuse(Status.FAILED_PRECONDITION, refusal);
    if (this.closed) throw new GrpcError(Status.UNAVAILABLE, `node ${this.id} is shutting down`);
    const peer = hello.from;
    const ack: PeerHello = {
      version: PEER_PROTOCOL_VERSION,
      cluster_id: this.clusterId,
      from: this.id,
      to: peer,
      client_address: this.advertise.client,
      peer_address: this.advertise.peer,
    };
    let serverNonce: Buffer | null = null;
    if (this.auth.kind === 'secret') {
      serverNonce = newNonce();
      ack.nonce = serverNonce;
      ack.proof = serverProof(this.auth.secret, this.#proofInput(hello, serverNonce));
    }
    call.write({ hello: ack });
    // A discovery probe learns who we are and nothing else.
    if (hello.to === '') return;
    if (this.auth.kind === 'secret' && serverNonce !== null) {
      const r = await nextWithin(it, handshakeEnds, hs);
      if (r.done === true) return;
      const expected = clientProof(this.auth.secret, this.#proofInput(hello, serverNonce));
      if (!proofMatches(expected, r.value.proof)) {
        throw refuse(
          Status.UNAUTHENTICATED,
          r.value.proof === undefined || r.value.proof.length === 0
            ? 'peer authentication required: the frame after the hello must carry the proof of the cluster secret'
            : 'peer authentication failed: wrong proof of the cluster secret (--peer-secret-file differs)',
        );
      }
    }
    this.#inbound.add(call);
    this.log.info({ node: this.id, peer, remote: call.peer }, 'peer stream accepted');
    let ended = 'peer ended the stream';
    try {
      for (;;) {
        const r = await it.next();
        if (r.done === true) break;
        const batch = r.value.batch;
        if (batch === undefined || batch.length === 0) {
          throw new GrpcError(
            Status.INVALID_ARGUMENT,
            'peer protocol: a frame after the hello must carry a batch',
          );
        }
        let msgs: Message[];
        try {
          msgs = decodeBatch(batch);
        } catch (e) {
          if (!(e instanceof CodecError)) throw e;
          this.log.error({ node: this.id, peer, err: e }, 'peer sent an undecodable batch');
          throw new GrpcError(Status.INVALID_ARGUMENT, `peer protocol: undecodable batch: ${e.message}`);
        }
        for (const m of msgs) {
          if (m.from !== peer || m.to !== this.id) {
            throw new GrpcError(
              Status.INVALID_ARGUMENT,
              `peer protocol: a message from ${m.from} to ${m.to} on the stream from ${peer} to ${this.id}`,
            );
          }
        }
        this.stats.framesReceived++;
        this.stats.messagesReceived += msgs.length;
        if (!this.closed && msgs.length > 0) this.handlers?.onMessages(msgs);
      }
    } catch (e) {
      ended = e instanceof Error ? e.message : String(e);
      throw e;
    } finally {
      this.#inbound.delete(call);
      if (!this.closed) this.log.info({ node: this.id, peer, reason: ended }, 'peer stream closed');
    }
  }

  #proofInput(hello: PeerHello, serverNonce: Uint8Array) {
    return {
      clusterId: this.clusterId,
      client: hello.from,
      server: this.id,
      clientNonce: hello.nonce ?? EMPTY,
      serverNonce,
    };
  }

  /** Why the sender of `hello` is not authenticated (null when it is, or needs not be yet). */
  #authenticate(call: ServerStreamCall<PeerFrame, PeerAck>, hello: PeerHello): string | null {
    const auth = this.auth;
    if (auth.kind === 'none') return null;
    if (auth.kind === 'secret') {
      if (hello.nonce === undefined || hello.nonce.length !== NONCE_BYTES) {
        return 'peer authentication required: this node expects the cluster secret (--peer-secret-file), proven in the handshake';
      }
      return null;
    }
    const why = checkPeerCertificate(call.peerCertificate(), hello.from, auth.allowedNames);
    return why === null ? null : `peer authentication failed: ${why}`;
  }

  #checkHello(h: PeerHello): string | null {
    if (h.version !== PEER_PROTOCOL_VERSION) {
      return `unsupported peer protocol version ${h.version} (node ${this.id} speaks ${PEER_PROTOCOL_VERSION})`;
    }
    if (h.cluster_id !== this.clusterId) {
      return `cluster id mismatch: node ${this.id} belongs to cluster "${this.clusterId}", the peer ${h.from} to "${h.cluster_id}"`;
    }
    if (h.to !== this.id && h.to !== '') {
      return `node id mismatch: the peer ${h.from} expected node "${h.to}" at this address, but this is node "${this.id}"`;
    }
    if (h.from === '' || h.from === this.id) return `bad sender id "${h.from}"`;
    return null;
  }
}

const EMPTY = new Uint8Array(0);

/** The next frame of a stream, or UNAUTHENTICATED when the handshake's time (`end`) runs out first. */
function nextWithin<T>(it: AsyncIterator<T>, end: number, totalMs: number): Promise<IteratorResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new GrpcError(Status.UNAUTHENTICATED, `peer handshake not completed within ${totalMs} ms`)),
      Math.max(0, end - Date.now()),
    );
  });
  return Promise.race([it.next(), timeout]).finally(() => clearTimeout(timer));
}

const ackType = (): ReturnType<typeof peerServiceDefinition>['methods'][number]['responseType'] =>
  peerServiceDefinition().methods[0]!.responseType;
const frameType = (): ReturnType<typeof peerServiceDefinition>['methods'][number]['requestType'] =>
  peerServiceDefinition().methods[0]!.requestType;

/** One gRPC length-prefixed message holding `frame`. */
function grpcMessage(frame: PeerFrame): Buffer {
  const body = frameType().encode(frame).finish();
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

/** The hello a node opens a stream with (to '' in a discovery probe). */
function helloOf(t: GrpcTransport, to: NodeId, nonce: Buffer | null): PeerHello {
  return {
    version: PEER_PROTOCOL_VERSION,
    cluster_id: t.clusterId,
    from: t.id,
    to,
    ...(nonce !== null ? { nonce } : {}),
    client_address: t.advertise.client,
    peer_address: t.advertise.peer,
  };
}

/** Why the server that answered `ack` on `session` is not authenticated as `ack.from` (null when it is). */
function checkServer(
  t: GrpcTransport,
  session: http2.Http2Session | undefined,
  ack: PeerHello,
  nonce: Buffer | null,
): string | null {
  const auth = t.auth;
  if (auth.kind === 'none') return null;
  if (auth.kind === 'secret') {
    if (nonce === null || ack.nonce === undefined || ack.nonce.length !== NONCE_BYTES) {
      return 'it sent no challenge (is its --peer-secret-file set?)';
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
      : 'wrong proof of the cluster secret (--peer-secret-file differs)';
  }
  const socket = session?.socket as { getPeerCertificate?: () => CertificateLike } | undefined;
  const cert = typeof socket?.getPeerCertificate === 'function' ? socket.getPeerCertificate() : null;
  return checkPeerCertificate(cert, ack.from, auth.allowedNames);
}

function clientProofFor(t: GrpcTransport, ack: PeerHello, nonce: Buffer): Buffer {
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
class PeerLink implements FrameSink {
  readonly t: GrpcTransport;
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

  constructor(t: GrpcTransport, peer: NodeId, address: string) {
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
