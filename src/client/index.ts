// Public API of the raftkv client library.
export {
  type CallOptions,
  type CasCondition,
  CLIENT_PROTO_FILE,
  type ClusterStatus,
  type GetResult,
  type KeyValue,
  type ListResult,
  type Member,
  RaftKvClient,
  type RaftKvClientOptions,
  type ReadOptions,
  type TlsFiles,
} from './client.ts';
export {
  RaftKvClosedError,
  RaftKvConfigError,
  RaftKvError,
  RaftKvSessionExpiredError,
  RaftKvTimeoutError,
  type StatusCodeName,
  StatusName,
  statusNameOf,
} from './errors.ts';
