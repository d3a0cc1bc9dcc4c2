/**
 * Local snapshots and log compaction for a RaftNode: once `snapshotEntries` entries have been
 * applied since the last snapshot, take one of the state machine (at once with `snapshot()`, or
 * a slice per event-loop turn with `beginSnapshot()`), hand it to the core (`Raft.compact`) and
 * store it in the background (`RaftStorage.compact`), keeping `retainEntries` behind it.
 *
 * Invariants:
 * - At most one snapshot is in the making at a time: a sliced job, or a storage compaction.
 * - A snapshot describes the state as of its index, and that index is applied; the core is
 *   compacted only between Readies (RaftNode calls `maybeSnapshot` after `advance`), as
 *   `Raft.compact` requires, and never at or below its first index (a snapshot from the leader
 *   may have been restored into the core meanwhile: the local one is then moot and dropped).
 * - A snapshot installed from the leader (`installed`) discards the job in the making: it
 *   described a state that is being replaced.
 * - The drive loop never waits for the snapshot file; `compacting` is what stop() waits for.
 *   If storing fails the log is intact and the next threshold tries again.
 */
import type { Raft } from '../raft/raft.ts';
import type { RaftStorage } from '../storage/contract.ts';
import type { Logger } from './logger.ts';
import type { Runtime } from './runtime.ts';
import type { SnapshotJob, StateMachine } from './state-machine.ts';

/** Event-loop time a sliced snapshot may take per turn. */
const SNAPSHOT_SLICE_MS = 2;

/** What the snapshotter needs of the application's state machine. */
export type SnapshotSource = Pick<StateMachine<unknown>, 'snapshot' | 'beginSnapshot'>;

export interface SnapshotterOptions {
  readonly raft: Raft;
  readonly storage: RaftStorage;
  readonly source: SnapshotSource;
  readonly rt: Runtime;
  readonly log: Logger | undefined;
  /** Entries applied between snapshots (0 = never). */
  readonly snapshotEntries: number;
  /** Entries kept in the log behind a snapshot. */
  readonly retainEntries: number;
  /** The index of the snapshot the node started from (0: none). */
  readonly lastIndex: number;
  /** The node's counters: `snapshots` counts those taken. */
  readonly counters: { snapshots: number };
  /** True once the node stopped or failed: a job in the making is abandoned. */
  readonly halted: () => boolean;
  /** Asks the node for a drive, in which `maybeSnapshot` compacts with a finished job. */
  readonly wake: () => void;
}

export class Snapshotter {
  private readonly o: SnapshotterOptions;
  /** Index of the latest snapshot taken or installed. */
  private lastIndex: number;
  /** A snapshot being serialized in slices (StateMachine.beginSnapshot), and the index it is at. */
  private job: { index: number; job: SnapshotJob } | null = null;
  /** A sliced snapshot that finished, waiting for the next drive to compact with it. */
  private done: { index: number; data: Uint8Array } | null = null;
  /** The background write of the latest snapshot, or null. */
  compacting: Promise<void> | null = null;

  constructor(o: SnapshotterOptions) {
    this.o = o;
    this.lastIndex = o.lastIndex;
  }

  /** A snapshot from the leader was installed at `index`: a local one in the making is moot. */
  installed(index: number): void {
    this.job = null;
    this.done = null;
    this.lastIndex = index;
  }

  /** Called between Readies with the applied index: takes or finishes a snapshot when due. */
  async maybeSnapshot(applied: number): Promise<void> {
    // A sliced snapshot finished since the last Ready: compact now (between Readies, as compact requires).
    const ready = this.done;
    if (ready !== null) {
      this.done = null;
      if (ready.index > this.lastIndex && ready.index <= applied) {
        this.compactTo(ready.index, ready.data);
      }
      return;
    }
    const every = this.o.snapshotEntries;
    if (every <= 0 || applied - this.lastIndex < every) return;
    if (this.compacting || this.job !== null) return; // one at a time
    const index = applied;
    const source = this.o.source;
    if (source.beginSnapshot !== undefined) {
      this.job = { index, job: source.beginSnapshot() };
      this.o.rt.setImmediate(this.step);
      return;
    }
    this.compactTo(index, source.snapshot());
  }

  /** Serializes a slice of the running snapshot job per event-loop turn. */
  private readonly step = (): void => {
    const j = this.job;
    if (j === null || this.o.halted()) {
      this.job = null;
      return;
    }
    const data = j.job.step(SNAPSHOT_SLICE_MS);
    if (data === null) {
      this.o.rt.setImmediate(this.step);
      return;
    }
    this.job = null;
    this.done = { index: j.index, data };
    this.o.wake();
  };

  private compactTo(index: number, data: Uint8Array): void {
    const { raft, storage, log, retainEntries } = this.o;
    // A snapshot from the leader may have been restored into the core (it reaches us in a later
    // Ready): a local one at or below it is moot, and compact() would refuse it.
    const st = raft.status();
    if (index < st.firstIndex || index > st.applied) return;
    const snap = raft.compact(index, data, retainEntries);
    this.lastIndex = index;
    this.o.counters.snapshots++;
    // Stored in the background: the drive loop does not wait for the snapshot file.
    this.compacting = storage.compact(snap, retainEntries).then(
      () => {
        this.compacting = null;
        log?.info(
          { index, term: snap.meta.term, bytes: snap.data.byteLength },
          'snapshot taken, log compacted',
        );
      },
      (err: unknown) => {
        this.compacting = null;
        // The log is intact without it; the next threshold tries again.
        log?.error({ index, err: (err as Error).message }, 'writing a snapshot failed');
      },
    );
  }
}
