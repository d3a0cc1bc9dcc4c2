/**
 * The simulated disk of one node, with the crash semantics of the real WAL
 * (src/storage/): writes are records appended in order; a record is durable once a sync
 * that covers it completed; a crash keeps every durable record and, of the records not yet
 * synced, a prefix of arbitrary length (the OS may have flushed some), where the last
 * surviving record may be torn and is then discarded by recovery.
 *
 * Invariant: the image always satisfies the DurableState contract: entries contiguous
 * from snapshot.meta.index + 1.
 */
import type { DurableState, Entry, HardState, Snapshot } from '../raft/types.ts';

export type DiskRecord =
  | { readonly kind: 'entries'; readonly entries: readonly Entry[] }
  | { readonly kind: 'hard'; readonly hardState: HardState }
  /** A snapshot received from the leader: replaces the log unless the log holds its last entry. */
  | { readonly kind: 'install'; readonly snapshot: Snapshot }
  /** A local snapshot: entries it covers are dropped. */
  | { readonly kind: 'compact'; readonly snapshot: Snapshot };

export class SimDiskError extends Error {
  override readonly name = 'SimDiskError';
}

export class SimDisk {
  private hardState: HardState;
  private snapshot: Snapshot | null;
  private entries: Entry[];
  private unsynced: DiskRecord[] = [];
  /** Counters for tests: records written, syncs completed. */
  writes = 0;
  syncs = 0;

  constructor(initial: DurableState) {
    this.hardState = initial.hardState;
    this.snapshot = initial.snapshot;
    this.entries = initial.entries.slice();
  }

  write(rec: DiskRecord): void {
    this.unsynced.push(rec);
    this.writes++;
  }

  hasUnsynced(): boolean {
    return this.unsynced.length > 0;
  }

  /** Everything written so far becomes durable. */
  sync(): void {
    for (const r of this.unsynced) this.applyRecord(r);
    this.unsynced = [];
    this.syncs++;
  }

  /** Crash: keep `survivors` of the unsynced records (a prefix), drop the rest. */
  crash(survivors: number): void {
    const keep = this.unsynced.slice(0, Math.max(0, Math.min(survivors, this.unsynced.length)));
    for (const r of keep) this.applyRecord(r);
    this.unsynced = [];
  }

  get unsyncedCount(): number {
    return this.unsynced.length;
  }

  /** What a restarted node loads. */
  load(): DurableState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: this.entries.slice() };
  }

  durableHardState(): HardState {
    return this.hardState;
  }

  /** The term of the durable entry at `index`: -1 when there is none, -2 when the snapshot covers it. */
  durableTermAt(index: number): number {
    const off = this.offset();
    if (index < off) return -2;
    if (index === off) return this.snapshot ? this.snapshot.meta.term : -1;
    const e = this.entries[index - off - 1];
    return e ? e.term : -1;
  }

  private offset(): number {
    return this.snapshot ? this.snapshot.meta.index : 0;
  }

  private applyRecord(r: DiskRecord): void {
    switch (r.kind) {
      case 'hard':
        if (r.hardState.commit < this.hardState.commit && r.hardState.term === this.hardState.term) {
          throw new SimDiskError(
            `durable commit went back from ${this.hardState.commit} to ${r.hardState.commit}`,
          );
        }
        this.hardState = r.hardState;
        return;
      case 'entries': {
        const first = r.entries[0];
        if (!first) return;
        const off = this.offset();
        const last = off + this.entries.length;
        if (first.index > last + 1) {
          throw new SimDiskError(`entries from ${first.index} leave a gap after ${last}`);
        }
        let es = r.entries;
        if (first.index <= off) es = es.filter((e) => e.index > off);
        const head = es[0];
        if (!head) return;
        this.entries.length = head.index - off - 1;
        for (const e of es) this.entries.push(e);
        return;
      }
      case 'install': {
        const { meta } = r.snapshot;
        if (this.snapshot && this.snapshot.meta.index >= meta.index) return;
        const off = this.offset();
        const at = this.entries[meta.index - off - 1];
        this.entries = at && at.term === meta.term ? this.entries.slice(meta.index - off) : [];
        this.snapshot = r.snapshot;
        if (this.hardState.commit < meta.index) this.hardState = { ...this.hardState, commit: meta.index };
        return;
      }
      case 'compact': {
        const { meta } = r.snapshot;
        if (this.snapshot && this.snapshot.meta.index >= meta.index) return;
        const off = this.offset();
        this.entries = this.entries.slice(Math.max(0, meta.index - off));
        this.snapshot = r.snapshot;
        return;
      }
    }
  }
}
