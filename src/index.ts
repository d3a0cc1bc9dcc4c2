// The public API of the raftkv package: the Raft library (pure core, node runtime,
// storage, transport boundary), the KV server assembly, and the client library.
// Everything the server and the CLI use comes through here or the modules re-exported here.

export * from './client/index.ts';
export {
  type KvCommand,
  KvDecodeError,
  type KvResult,
  KvStateMachine,
  type KvValue,
} from './kv/state-machine.ts';
export {
  NoLeaderError,
  NotLeaderError,
  OutcomeUnknownError,
  ProposalDroppedError,
  RaftNodeError,
  RaftNodeStoppedError,
  RejectedError,
  TimeoutError,
} from './node/errors.ts';
export {
  type Applied,
  type Logger,
  RaftNode,
  type RaftNodeOptions,
  type StateMachine,
} from './node/raft-node.ts';
export * from './raft/index.ts';
export {
  type RaftKvServer,
  type ServerConfig,
  ServerConfigError,
  startServer,
} from './server/server.ts';
export * from './storage/index.ts';
export * from './transport/index.ts';
