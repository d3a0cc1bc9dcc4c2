/**
 * Public surface of the pure Raft core (`raftkv/raft`). Everything here is deterministic and
 * free of I/O, and this entry point loads no dependency at all (a test checks it on the
 * packed tarball with the runtime dependencies removed).
 */

export { bootstrapState, emptyState } from './bootstrap.ts';
export {
  applyConfChange,
  ConfChangeError,
  decodeConfChange,
  encodeConfChange,
  MAX_NODE_ID_LENGTH,
  type ParsedConfChange,
  parseConfChange,
  validateConfChange,
} from './confchange.ts';
export {
  DEFAULT_RAFT_CONFIG,
  type RaftConfig,
  type ResolvedRaftConfig,
  validateRaftConfig,
} from './config.ts';
export { RaftConfigError, RaftError, RaftUsageError } from './errors.ts';
export { LogSafetyError } from './log.ts';
export { ProgressState } from './progress.ts';
export { Raft } from './raft.ts';
export { type Rng, SeededRng } from './rng.ts';
export {
  type ProgressStatus,
  type ProposeOutcome,
  ProposeRejection,
  type RaftStatus,
  type RefusedCounts,
} from './status.ts';
export * from './types.ts';
