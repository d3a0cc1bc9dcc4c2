// Public API of the node runtime (`raftkv/node`): RaftNode drives the pure core with real (or
// injected) timers, a RaftStorage, a Transport and the application's StateMachine, and offers
// propose() and read() as Promises. Its errors share the RaftNodeError base class. The storage
// contract is re-exported (as types) for those who write their own storage.

export type { PersistBatch, RaftStorage, StorageStats } from '../storage/contract.ts';
export {
  NoLeaderError,
  NotLeaderError,
  OutcomeUnknownError,
  ProposalDroppedError,
  RaftNodeError,
  RaftNodeStoppedError,
  RejectedError,
  TimeoutError,
} from './errors.ts';
export type { Logger } from './logger.ts';
export type { Applied, Until } from './pending.ts';
export { RaftNode, type RaftNodeOptions } from './raft-node.ts';
export type { SnapshotJob, StateMachine } from './state-machine.ts';
