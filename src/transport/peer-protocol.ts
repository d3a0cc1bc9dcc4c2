/**
 * The peer protocol's wire format and the types both sides of the gRPC peer transport share:
 * `raft.PeerService/Stream` (proto/peer.proto), its hello/frame/ack messages, the framing of
 * one gRPC message, the errors and counters a transport reports.
 *
 * Invariants: this module holds no state but the lazily built service definition (the same
 * object for the life of the process); it imports neither side (peer-link.ts, the outgoing
 * side, and grpc.ts, the server side and the transport, both import it), so the two sides
 * never import each other in a cycle. A change to a message here is a change to the wire:
 * bump {@link PEER_PROTOCOL_VERSION}.
 */
import type * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import { loadProtoFiles, type ServiceDefinition, serviceDefinition } from '../grpc/proto.ts';
import type { NodeId } from '../raft/types.ts';

/** The peer protocol version sent in every hello. */
export const PEER_PROTOCOL_VERSION = 1;

export const PEER_STREAM_PATH = '/raft.PeerService/Stream';

/** proto/peer.proto (copied next to the compiled code by `npm run build`). */
export const PEER_PROTO_FILE = fileURLToPath(new URL('../../proto/peer.proto', import.meta.url));

export interface PeerHello {
  version: number;
  cluster_id: string;
  from: string;
  to: string;
  nonce?: Uint8Array;
  proof?: Uint8Array;
  client_address?: string;
  peer_address?: string;
  secret_source?: string;
}
export interface PeerFrame {
  hello?: PeerHello | null;
  batch?: Uint8Array;
  proof?: Uint8Array;
}
export interface PeerAck {
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

export const REQUEST_HEADERS: http2.OutgoingHttpHeaders = {
  ':method': 'POST',
  ':path': PEER_STREAM_PATH,
  'content-type': 'application/grpc',
  te: 'trailers',
};

export const ackType = (): ReturnType<typeof peerServiceDefinition>['methods'][number]['responseType'] =>
  peerServiceDefinition().methods[0]!.responseType;
export const frameType = (): ReturnType<typeof peerServiceDefinition>['methods'][number]['requestType'] =>
  peerServiceDefinition().methods[0]!.requestType;

/** One gRPC length-prefixed message holding `frame`. */
export function grpcMessage(frame: PeerFrame): Buffer {
  const body = frameType().encode(frame).finish();
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}
