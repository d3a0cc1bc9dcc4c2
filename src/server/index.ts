// Public API of the KV server (`raftkv/server`): the server assembly (storage, RaftNode, peer
// transport on its own peer port and the gRPC KeyValueService on one call), its HTTP status/metrics/dashboard
// endpoint, and the KV state machine it replicates, for applications that embed a raftkv node.
export {
  COMMAND_VERSION,
  DEFAULT_MAX_SESSIONS,
  decodeRequest,
  encodeRegister,
  encodeRequest,
  isRegister,
  type KvCommand,
  KvDecodeError,
  type KvRequest,
  type KvResult,
  KvSnapshotError,
  KvStateMachine,
  type KvStateMachineOptions,
  type KvValue,
  LEGACY_COMMAND_VERSION,
  SNAPSHOT_FORMAT,
} from '../kv/state-machine.ts';
export { type HttpServerHandle, type HttpServerOptions, startHttpServer } from './http.ts';
export { type AdminAuth, authorizeAdmin } from './kv-service.ts';
export {
  defaultPeerAddress,
  formatMemberAddress,
  type MemberAddress,
  MemberAddressError,
  PEER_PORT_OFFSET,
  parseMemberAddress,
} from './member-address.ts';
export { type RaftKvServer, type ServerConfig, ServerConfigError, startServer } from './server.ts';
