// Public API of the node runtime (`raftkv/node`): RaftNode drives the pure core with real (or
// injected) timers, a RaftStorage, a Transport and the application's StateMachine, and offers
// propose() and read() as Promises. Its errors share the RaftNodeError base class.
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
export {
  type Applied,
  type Logger,
  RaftNode,
  type RaftNodeOptions,
  type StateMachine,
  type Until,
} from './raft-node.ts';
