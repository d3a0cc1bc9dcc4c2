/**
 * Public surface of the pure Raft core. Everything here is deterministic and free of I/O.
 */
export * from './types.ts';
export * from './storage.ts';
export { Raft, RaftConfigError, RaftUsageError, ProposeRejection, bootstrapState, emptyState } from './raft.ts';
export type { RaftConfig, ProposeOutcome, RaftStatus, ProgressStatus } from './raft.ts';
export { SeededRng, type Rng } from './rng.ts';
export { committedValue, voteResult, VoteResult, majority } from './quorum.ts';
export { encodeConfChange, decodeConfChange, applyConfChange, validateConfChange, ConfChangeError } from './confchange.ts';
export { LogSafetyError } from './log.ts';
export { ProgressState } from './progress.ts';
