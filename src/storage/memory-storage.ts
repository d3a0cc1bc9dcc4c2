/**
 * RaftStorage kept in memory: the reference implementation of the storage contract (the
 * conformance suite runs against it and FileStorage alike) and the simulator's storage.
 *
 * By default every persist() is durable at once. With `{ manualSync: true }` it models a
 * disk the way FileStorage behaves on one: persist() resolves only when the driver calls
 * `sync()` (one "fsync" for everything pending, i.e. group commit), and `crash(pick)`
 * returns the storage a restarted node would find: everything synced plus the first
 * `pick(n)` of the `n` unsynced batches. A batch is all-or-nothing (FileStorage drops a
 * torn batch whole), so "the last write may be torn" means "a prefix of the unsynced
 * batches survives".
 */

import type { DurableState, Snapshot } from '../raft/types.ts';
import type { PersistBatch, RaftStorage, StorageStats } from './contract.ts';
import { StorageClosedError } from './errors.ts';
import { LogView } from './log-view.ts';

export interface MemoryStorageOptions {
  /** persist() resolves at the next sync(); crash() may lose what was not synced. */
  readonly manualSync?: boolean;
}

type Op =
  | { readonly kind: 'persist'; readonly batch: PersistBatch }
  | { readonly kind: 'compact'; readonly snapshot: Snapshot };

function applyOp(view: LogView, op: Op): void {
  if (op.kind === 'persist') view.apply(view.plan(op.batch), op.batch.snapshot);
  else view.apply(view.planCompact(op.snapshot), op.snapshot);
}

export class MemoryStorage implements RaftStorage {
  /** Everything accepted, in call order. */
  private readonly view: LogView;
  /** Only what was synced (manualSync), else the same object as `view`. */
  private readonly durable: LogView;
  private readonly manualSync: boolean;
  private pending: { op: Op; resolve: () => void }[] = [];
  private closed = false;
  private appends = 0;
  private syncs = 0;

  constructor(state?: DurableState, options: MemoryStorageOptions = {}) {
    this.view = new LogView(state);
    this.manualSync = options.manualSync ?? false;
    this.durable = this.manualSync ? new LogView(state) : this.view;
  }

  /** The state of every accepted batch (call it when none is pending). */
  initialState(): DurableState {
    return this.view.state();
  }

  persist(batch: PersistBatch): Promise<void> {
    return this.submit({ kind: 'persist', batch });
  }

  compact(snapshot: Snapshot, _retain = 0): Promise<void> {
    return this.submit({ kind: 'compact', snapshot });
  }

  private submit(op: Op): Promise<void> {
    try {
      if (this.closed) throw new StorageClosedError();
      applyOp(this.view, op);
    } catch (err) {
      return Promise.reject(err);
    }
    if (op.kind === 'persist') this.appends += op.batch.entries.length;
    if (!this.manualSync) {
      this.syncs++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.pending.push({ op, resolve }));
  }

  /** manualSync: makes every pending batch durable and resolves their persist() calls. Returns how many. */
  sync(): number {
    const batch = this.pending;
    this.pending = [];
    for (const p of batch) applyOp(this.durable, p.op);
    if (batch.length > 0) this.syncs++;
    for (const p of batch) p.resolve();
    return batch.length;
  }

  /** Number of batches accepted but not yet synced. */
  unsynced(): number {
    return this.pending.length;
  }

  /**
   * The storage a node restarted after a crash would open: the synced state plus the first
   * `pick(n)` (clamped to 0..n) of the n unsynced batches. This instance is closed; its
   * unsynced persist() calls never resolve, as in a real crash.
   */
  crash(pick: (unsynced: number) => number = () => 0): MemoryStorage {
    const n = this.pending.length;
    const keep = Math.max(0, Math.min(n, Math.floor(pick(n))));
    const view = new LogView(this.durable.state());
    for (const p of this.pending.slice(0, keep)) applyOp(view, p.op);
    this.closed = true;
    this.pending = [];
    return new MemoryStorage(view.state(), { manualSync: this.manualSync });
  }

  /** A new storage holding everything accepted so far, as a cleanly restarted node would find it. */
  durableCopy(): MemoryStorage {
    return new MemoryStorage(this.view.state(), { manualSync: this.manualSync });
  }

  stats(): StorageStats {
    // Each sync (each persist, without manualSync) counts as one virtual fsync.
    return { appends: this.appends, fsyncs: this.syncs, bytesWritten: 0 };
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
