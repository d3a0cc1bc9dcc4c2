// Public API of the peer transport (`raftkv/transport`): the boundary interface, the in-memory
// network for tests, and the gRPC peer transport for real clusters. The batch codec is internal.
export { CodecError } from './codec.ts';
export {
  GrpcTransport,
  type GrpcTransportOptions,
  type GrpcTransportStats,
  type GrpcTransportTls,
  PEER_MAX_MESSAGE_BYTES,
  PEER_PROTO_FILE,
  PEER_PROTOCOL_VERSION,
  PEER_SERVER_OPTIONS,
  PEER_STREAM_PATH,
  type PeerIdentity,
  PeerStreamError,
  peerServiceDefinition,
  type TransportLogger,
} from './grpc.ts';
export { MemoryNetwork, MemoryTransport } from './memory.ts';
export {
  certificateNames,
  checkPeerCertificate,
  isLoopbackHost,
  MIN_SECRET_BYTES,
  type PeerAuth,
} from './peer-auth.ts';
export type { Transport, TransportHandlers } from './transport.ts';
