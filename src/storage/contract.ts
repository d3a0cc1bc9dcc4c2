/**
 * The storage contract: what the node runtime (src/node/, RaftNode) needs of durable
 * storage, implemented here by FileStorage and MemoryStorage (and by the simulator's disk).
 * The pure core never calls storage (src/raft/ does not import this): RaftNode loads a
 * {@link DurableState} to construct the core and persists each Ready's durable part through
 * this interface before sending the messages that depend on it.
 *
 * Contract for every implementation (checked by test/storage/conformance):
 * - `persist` batches take effect in call order; a later call may be issued before an
 *   earlier one resolved (group commit), and resolves only after it and every earlier
 *   batch is durable.
 * - A batch whose first entry index is <= the stored last index truncates the stored log
 *   from that index before appending (a conflicting suffix is replaced).
 * - A batch with a snapshot replaces all stored entries up to and including
 *   `snapshot.meta.index` (and all of them if the stored log disagrees at that index).
 * - `compact` stores a snapshot taken by the local state machine and may then drop the
 *   entries it covers; entries are dropped only after the snapshot is durable.
 * - After a crash, `open` yields a prefix of what was persisted: everything whose
 *   `persist` had resolved, possibly followed by some of what had not.
 */
import type { DurableState, Entry, HardState, Snapshot } from '../raft/types.ts';

export interface PersistBatch {
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

export interface StorageStats {
  readonly appends: number;
  readonly fsyncs: number;
  readonly bytesWritten: number;
}

export interface RaftStorage {
  /** What was durable when the storage was opened. */
  initialState(): DurableState;
  /** Make `batch` durable. */
  persist(batch: PersistBatch): Promise<void>;
  /** Durably store a local snapshot, then drop the entries it covers (keeping `retain` before it). */
  compact(snapshot: Snapshot, retain?: number): Promise<void>;
  stats(): StorageStats;
  close(): Promise<void>;
  /**
   * Optional hint from the driver, given before each persist: `true` when a small write may block
   * the event loop rather than pay a thread hop (RaftNode: on a follower, whose write is on the
   * leader's commit path, and on a leader with a single request in hand); `false` when a busy
   * leader's loop has clients to serve meanwhile. It changes how, never whether or in what order,
   * batches become durable.
   */
  setInlineWrites?(on: boolean): void;
}
