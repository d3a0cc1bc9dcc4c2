/**
 * RaftStorage kept in memory: the reference implementation of the storage contract (the
 * conformance suite runs against it and FileStorage alike) and the storage of the
 * simulator. Everything is "durable" as soon as persist() is called; a crash model that
 * loses unsynced writes belongs to whoever drives it (see `durableCopy`).
 */

import type { PersistBatch, RaftStorage, StorageStats } from '../raft/storage.ts';
import type { DurableState, Snapshot } from '../raft/types.ts';
import { StorageClosedError } from './errors.ts';
import { LogView } from './log-view.ts';

export class MemoryStorage implements RaftStorage {
  private readonly view: LogView;
  private closed = false;
  private appends = 0;
  private persists = 0;

  constructor(state?: DurableState) {
    this.view = new LogView(state);
  }

  initialState(): DurableState {
    return this.view.state();
  }

  persist(batch: PersistBatch): Promise<void> {
    try {
      if (this.closed) throw new StorageClosedError();
      this.view.apply(this.view.plan(batch), batch.snapshot);
      this.appends += batch.entries.length;
      this.persists++;
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  compact(snapshot: Snapshot, _retain = 0): Promise<void> {
    try {
      if (this.closed) throw new StorageClosedError();
      this.view.apply(this.view.planCompact(snapshot), snapshot);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A new storage holding this one's state, as a restarted node would find it. */
  durableCopy(): MemoryStorage {
    return new MemoryStorage(this.view.state());
  }

  stats(): StorageStats {
    // Every persist counts as one (virtual) fsync.
    return { appends: this.appends, fsyncs: this.persists, bytesWritten: 0 };
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
