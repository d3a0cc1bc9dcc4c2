/**
 * The in-memory view of a node's durable state (snapshot, hard state, the entries after
 * the snapshot) and the one place where the storage contract's rules for a batch live:
 * MemoryStorage is this view alone, FileStorage keeps one next to its WAL.
 *
 * Invariants:
 * - entries[k].index === firstIndex() + k (contiguous, starting right after the snapshot);
 * - entry terms never decrease and are >= the snapshot term;
 * - hardState.commit <= lastIndex().
 */

import type { DurableState, Entry, HardState, Snapshot } from '../raft/types.ts';
import type { BatchRecords } from './codec.ts';
import type { PersistBatch } from './contract.ts';
import { SnapshotOutOfDateError, StorageUsageError } from './errors.ts';

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: '', commit: 0 };

function isIndex(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export class LogView {
  snapshot: Snapshot | null;
  hardState: HardState;
  entries: Entry[];

  constructor(state?: DurableState) {
    this.snapshot = state?.snapshot ?? null;
    this.hardState = state?.hardState ?? EMPTY_HARD_STATE;
    this.entries = state ? [...state.entries] : [];
  }

  snapshotIndex(): number {
    return this.snapshot?.meta.index ?? 0;
  }
  firstIndex(): number {
    return this.snapshotIndex() + 1;
  }
  lastIndex(): number {
    return this.snapshotIndex() + this.entries.length;
  }
  /** Term of the entry at `i`, the snapshot's term at its index, or undefined when unknown. */
  term(i: number): number | undefined {
    const s = this.snapshotIndex();
    if (i === s) return this.snapshot?.meta.term ?? 0;
    return this.entries[i - s - 1]?.term;
  }

  state(): DurableState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: this.entries.slice() };
  }

  /**
   * Checks `batch` against the current state and says which records it writes; throws a
   * StorageUsageError or SnapshotOutOfDateError (and changes nothing) when it breaks the contract.
   */
  plan(batch: PersistBatch): BatchRecords {
    let snapIndex = this.snapshotIndex();
    let last = this.lastIndex();
    let lastTerm = this.term(last) ?? 0;
    let snapshot: BatchRecords['snapshot'] = null;
    if (batch.snapshot) {
      const { index, term } = batch.snapshot.meta;
      if (!isIndex(index) || !isIndex(term) || index === 0) {
        throw new StorageUsageError(`invalid snapshot index ${index} / term ${term}`);
      }
      if (index < snapIndex) throw new SnapshotOutOfDateError(index, snapIndex);
      const keep = index <= last && this.term(index) === term;
      snapshot = { index, term, keep };
      snapIndex = index;
      if (!keep) {
        last = index;
        lastTerm = term;
      }
    }
    let truncateFrom: number | null = null;
    const entries = batch.entries;
    const first = entries[0];
    if (first) {
      if (first.index <= snapIndex || first.index > last + 1) {
        throw new StorageUsageError(
          `batch starts at index ${first.index} but the log holds ${snapIndex + 1}..${last} ` +
            `(it must start between ${snapIndex + 1} and ${last + 1})`,
        );
      }
      if (first.index <= last) {
        truncateFrom = first.index;
        lastTerm =
          first.index - 1 === snapIndex
            ? (snapshot?.term ?? this.term(snapIndex) ?? 0)
            : this.term(first.index - 1)!;
      }
      let expect = first.index;
      for (const e of entries) {
        if (e.index !== expect)
          throw new StorageUsageError(`batch entries are not contiguous at index ${e.index}`);
        if (!isIndex(e.term) || e.term < lastTerm) {
          throw new StorageUsageError(
            `entry ${e.index} has term ${e.term}, below the preceding term ${lastTerm}`,
          );
        }
        if (e.type !== 0 && e.type !== 1)
          throw new StorageUsageError(`entry ${e.index} has unknown type ${e.type}`);
        lastTerm = e.term;
        expect++;
      }
      last = expect - 1;
    }
    let hardState = batch.hardState;
    if (hardState) {
      const { term, commit, vote } = hardState;
      if (!isIndex(term) || !isIndex(commit) || typeof vote !== 'string') {
        throw new StorageUsageError(`invalid hard state ${JSON.stringify(hardState)}`);
      }
      if (commit > last) {
        throw new StorageUsageError(`hard state commit ${commit} is beyond the last log index ${last}`);
      }
    } else if (snapshot) {
      // A copy of the current hard state travels with every snapshot marker, so deleting
      // the WAL segments the marker covers can never lose the latest hard state.
      hardState = this.hardState;
    }
    return { snapshot, truncateFrom, entries, hardState };
  }

  /** Plans a local compaction to `snapshot` (taken by this node's state machine). */
  planCompact(snapshot: Snapshot): BatchRecords {
    const { index, term } = snapshot.meta;
    if (index <= this.snapshotIndex()) throw new SnapshotOutOfDateError(index, this.snapshotIndex());
    if (index > this.lastIndex()) {
      throw new StorageUsageError(`cannot compact to index ${index}: the log ends at ${this.lastIndex()}`);
    }
    if (this.term(index) !== term) {
      throw new StorageUsageError(
        `snapshot term ${term} differs from the log's term ${this.term(index)} at ${index}`,
      );
    }
    return {
      snapshot: { index, term, keep: true },
      truncateFrom: null,
      entries: [],
      hardState: this.hardState,
    };
  }

  /** Applies a planned batch (the plan must come from this view in its current state). */
  apply(plan: BatchRecords, snapshot: Snapshot | null): void {
    if (plan.snapshot && snapshot) {
      const drop = plan.snapshot.index - this.snapshotIndex();
      this.entries = plan.snapshot.keep ? this.entries.slice(drop) : [];
      this.snapshot = snapshot;
    }
    if (plan.truncateFrom !== null) this.entries.length = plan.truncateFrom - this.firstIndex();
    for (const e of plan.entries) this.entries.push(e);
    if (plan.hardState) this.hardState = plan.hardState;
  }
}
