/**
 * Public surface of the pure Raft core (`raftkv/raft`). Everything here is deterministic and
 * free of I/O, and this entry point loads no dependency at all (a test checks it on the
 * packed tarball with the runtime dependencies removed).
 */

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
export { LogSafetyError } from './log.ts';
export { ProgressState } from './progress.ts';
export type { ProgressStatus, ProposeOutcome, RaftConfig, RaftStatus, RefusedCounts } from './raft.ts';
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
