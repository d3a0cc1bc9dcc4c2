/**
 * Public surface of the pure Raft core. Everything here is deterministic and free of I/O.
 */

export {
  applyConfChange,
  ConfChangeError,
  decodeConfChange,
  encodeConfChange,
  validateConfChange,
} from './confchange.ts';
export { LogSafetyError } from './log.ts';
export { ProgressState } from './progress.ts';
export { committedValue, majority, VoteResult, voteResult } from './quorum.ts';
export type { ProgressStatus, ProposeOutcome, RaftConfig, RaftStatus } from './raft.ts';
export {
  bootstrapState,
  emptyState,
  ProposeRejection,
  Raft,
  RaftConfigError,
  RaftUsageError,
} from './raft.ts';
export { type Rng, SeededRng } from './rng.ts';
export * from './storage.ts';
export * from './types.ts';
