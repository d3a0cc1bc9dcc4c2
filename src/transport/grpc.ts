/**
 * The gRPC peer transport: Raft messages between nodes over `raft.PeerService/Stream`
 * (proto/peer.proto, wire format in peer-protocol.ts), one long-lived bidirectional HTTP/2
 * stream per peer direction.
 *
 * This file is the transport and its server side. Outbound, each peer has a PeerLink
 * (peer-link.ts) that this transport creates, replaces and shuts down as the address book
 * changes, and feeds once per callback. Inbound, the service is added by
 * {@link GrpcTransport.register} to a server the caller created (the peer port, never the
 * client port), and each decoded frame is handed to `onMessages`.
 *
 * Invariants:
 * - Every message given to `send` goes to its peer's link in order, or is dropped with
 *   `onUnreachable(peer)` reported (unknown peer); the link's own bounds are in peer-link.ts.
 * - All messages to one peer sent in one callback (one synchronous run, flushed on
 *   process.nextTick) go out in one frame (split only when larger than `maxFrameBytes`).
 * - No batch of an inbound stream is decoded before its sender authenticated (peer-auth.ts,
 *   `auth`); a stream that has not authenticated within `handshakeTimeoutMs` ends
 *   UNAUTHENTICATED; every message of a stream is from its authenticated sender to this node.
 * - One log line per accepted, refused and closed inbound stream; nothing per message.
 * - After `close()` resolves, no timer, immediate, stream or socket of this transport is left.
 */
import type { ServerStreamCall } from '../grpc/call.ts';
import type { GrpcServer } from '../grpc/server.ts';
import { GrpcError, Status, type StatusCode } from '../grpc/status.ts';
import type { Message, NodeId } from '../raft/types.ts';
import { CodecError, decodeBatch } from './codec.ts';
import {
  checkPeerCertificate,
  clientProof,
  describeSecretSource,
  NONCE_BYTES,
  newNonce,
  type PeerAuth,
  proofMatches,
  serverProof,
} from './peer-auth.ts';
import { PeerLink, type PeerLinkHost, probePeer } from './peer-link.ts';
import {
  type GrpcTransportStats,
  type GrpcTransportTls,
  PEER_MAX_MESSAGE_BYTES,
  PEER_PROTOCOL_VERSION,
  type PeerAck,
  type PeerFrame,
  type PeerHello,
  type PeerIdentity,
  peerServiceDefinition,
  type TransportLogger,
} from './peer-protocol.ts';
import type { Transport, TransportHandlers } from './transport.ts';

export {
  type GrpcTransportStats,
  type GrpcTransportTls,
  PEER_MAX_MESSAGE_BYTES,
  PEER_PROTO_FILE,
  PEER_PROTOCOL_VERSION,
  PEER_STREAM_PATH,
  type PeerIdentity,
  PeerStreamError,
  peerServiceDefinition,
  type TransportLogger,
} from './peer-protocol.ts';

function flushTransport(t: GrpcTransport): void {
  t.flushQueued();
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

/** Options a server carrying peer traffic needs (merge them into createGrpcServer's). */
export const PEER_SERVER_OPTIONS = {
  streamWindowSize: 1024 * 1024,
  connectionWindowSize: 16 * 1024 * 1024,
} as const;

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

export class GrpcTransport implements Transport, PeerLinkHost {
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
    return probePeer(this, address, timeoutMs);
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
      ack.secret_source = this.auth.source?.kind ?? 'peer-secret-file';
    }
    call.write({ hello: ack });
    // A discovery probe learns who we are and nothing else.
    if (hello.to === '') return;
    if (this.auth.kind === 'secret' && serverNonce !== null) {
      const sources = (): string =>
        `${this.#describeOwnSecret()}; ${describeSecretSource(`node ${hello.from}`, hello.secret_source)}`;
      let r: IteratorResult<PeerFrame>;
      try {
        r = await nextWithin(it, handshakeEnds, hs);
      } catch (e) {
        if (e instanceof GrpcError && e.code === Status.UNAUTHENTICATED) throw refuse(e.code, e.message);
        r = { done: true, value: undefined };
      }
      if (r.done === true) {
        // The client checks our proof first and, when it is wrong, ends the stream without its own.
        this.log.warn(
          {
            node: this.id,
            peer: hello.from,
            remote: call.peer,
            reason: `node ${hello.from} ended the handshake without proving the cluster secret: the secret proof failed at its end if the secrets differ: ${sources()}`,
          },
          'peer handshake refused',
        );
        return;
      }
      const expected = clientProof(this.auth.secret, this.#proofInput(hello, serverNonce));
      if (!proofMatches(expected, r.value.proof)) {
        const missing = r.value.proof === undefined || r.value.proof.length === 0;
        const wire = missing
          ? 'peer authentication required: the frame after the hello must carry the proof of the cluster secret'
          : `peer authentication failed: the secret proof failed: wrong proof of the cluster secret, the two nodes' secrets differ: ${describeSecretSource(`node ${this.id}`, this.auth.source?.kind ?? 'peer-secret-file')}`;
        this.log.warn(
          {
            node: this.id,
            peer: hello.from,
            remote: call.peer,
            reason: missing ? wire : `the secret proof of node ${hello.from} failed: ${sources()}`,
          },
          'peer handshake refused',
        );
        throw new GrpcError(Status.UNAUTHENTICATED, wire);
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
        return `peer authentication required: node ${this.id} expects the cluster secret, proven in the handshake (${describeSecretSource(`node ${this.id}`, auth.source?.kind ?? 'peer-secret-file')})`;
      }
      return null;
    }
    const why = checkPeerCertificate(call.peerCertificate(), hello.from, auth.allowedNames);
    return why === null ? null : `peer authentication failed: ${why}`;
  }

  #describeOwnSecret(): string {
    const auth = this.auth;
    return auth.kind === 'secret'
      ? describeSecretSource('this node', auth.source?.kind ?? 'peer-secret-file', auth.source?.file)
      : '';
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
