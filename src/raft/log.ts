/**
 * The in-memory Raft log of one node: every entry after the compaction point, plus the
 * bookkeeping of what is durable, committed and handed out for application.
 *
 * Invariants:
 * - entries are contiguous: entries[i].index === offset + 1 + i, terms never decrease;
 * - offset <= applied <= committed <= lastIndex() (applied counts entries handed out);
 * - offset <= stable <= lastIndex(): entries up to `stable` are durable on this node;
 * - committed never decreases, and no committed entry is ever truncated (a conflict at or
 *   below `committed` throws: it would mean the cluster lost a committed entry).
 */
import { RaftError, RaftUsageError } from './errors.ts';
import type { Entry, SnapshotMeta } from './types.ts';

/** The log would lose a committed entry, or entries that are not contiguous were given. */
export class LogSafetyError extends RaftError {
  override readonly name = 'LogSafetyError';
}

export class RaftLog {
  /** Index of the last compacted entry (0 for a fresh log). */
  private offset: number;
  /** Term of the entry at `offset`. */
  private offsetTerm: number;
  private ents: Entry[];
  committed: number;
  applied: number;
  stable: number;

  constructor(offset: number, offsetTerm: number, entries: readonly Entry[], committed: number) {
    this.offset = offset;
    this.offsetTerm = offsetTerm;
    this.ents = entries.slice();
    for (let i = 0; i < this.ents.length; i++) {
      const e = this.ents[i] as Entry;
      if (e.index !== offset + 1 + i) {
        throw new LogSafetyError(
          `log entries not contiguous: expected index ${offset + 1 + i}, got ${e.index}`,
        );
      }
    }
    this.stable = this.lastIndex();
    this.committed = Math.min(Math.max(committed, offset), this.lastIndex());
    this.applied = offset;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.ents.length;
  }

  lastTerm(): number {
    const n = this.ents.length;
    return n === 0 ? this.offsetTerm : (this.ents[n - 1] as Entry).term;
  }

  /** Term of the entry at `index`, or -1 when it is compacted away or beyond the end. */
  term(index: number): number {
    if (index === this.offset) return this.offsetTerm;
    if (index < this.offset || index > this.lastIndex()) return -1;
    return (this.ents[index - this.offset - 1] as Entry).term;
  }

  matchTerm(index: number, term: number): boolean {
    const t = this.term(index);
    return t >= 0 && t === term;
  }

  entry(index: number): Entry | undefined {
    return this.ents[index - this.offset - 1];
  }

  /** Entries in [lo, hi], at most `maxCount` and about `maxBytes` (at least one). */
  slice(
    lo: number,
    hi: number,
    maxCount = Number.POSITIVE_INFINITY,
    maxBytes = Number.POSITIVE_INFINITY,
  ): Entry[] {
    if (lo <= this.offset) throw new RaftUsageError(`slice from ${lo}: compacted up to ${this.offset}`);
    const end = Math.min(hi, this.lastIndex());
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= end && out.length < maxCount; i++) {
      const e = this.ents[i - this.offset - 1] as Entry;
      bytes += e.data.byteLength + 16;
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /** A candidate's log is at least as up to date as ours (§5.4.1). */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /** Leader append: entries must continue the log. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.index !== this.lastIndex() + 1) {
        throw new LogSafetyError(`append at ${e.index} does not continue log ending at ${this.lastIndex()}`);
      }
      this.ents.push(e);
    }
  }

  /**
   * Follower append (§5.3): if our log has (prevIndex, prevTerm), drop any conflicting
   * suffix, append what is new and return the index of the last entry of the message;
   * otherwise return -1 and change nothing.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number {
    if (prevIndex < this.offset) {
      // Our prefix up to `offset` is compacted, hence committed, hence the leader's too:
      // skip the entries it covers and continue from the compaction point.
      const skip = this.offset - prevIndex;
      if (skip >= entries.length) return prevIndex + entries.length;
      const rest = entries.slice(skip);
      return this.maybeAppend(this.offset, this.offsetTerm, rest) === -1 ? -1 : prevIndex + entries.length;
    }
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    let i = 0;
    for (; i < entries.length; i++) {
      const e = entries[i] as Entry;
      if (e.index > this.lastIndex()) break;
      if (this.term(e.index) !== e.term) {
        if (e.index <= this.committed) {
          throw new LogSafetyError(
            `conflict at committed index ${e.index} (committed ${this.committed}): term ${this.term(e.index)} vs ${e.term}`,
          );
        }
        this.truncateFrom(e.index);
        break;
      }
    }
    for (; i < entries.length; i++) this.ents.push(entries[i] as Entry);
    return prevIndex + entries.length;
  }

  private truncateFrom(index: number): void {
    this.ents.length = index - this.offset - 1;
    if (this.stable >= index) this.stable = index - 1;
  }

  commitTo(index: number): boolean {
    const to = Math.min(index, this.lastIndex());
    if (to > this.committed) {
      this.committed = to;
      return true;
    }
    return false;
  }

  /**
   * The largest index <= `index` whose term is <= `term`: where two logs may agree, given
   * that the other side has `term` at `index` (fast backtracking hint).
   */
  findConflictByTerm(index: number, term: number): number {
    let i = Math.min(index, this.lastIndex());
    while (i > this.offset && this.term(i) > term) i--;
    return i;
  }

  /** Entries not yet durable, in order. */
  unstableEntries(): Entry[] {
    return this.ents.slice(this.stable - this.offset);
  }

  /** Record that entries up to `index` with `term` there are durable (if still in the log). */
  stableTo(index: number, term: number): void {
    if (index > this.stable && this.matchTerm(index, term)) this.stable = index;
  }

  /** Committed, durable entries not yet handed out for application. */
  nextCommitted(maxCount = Number.POSITIVE_INFINITY): Entry[] {
    const hi = Math.min(this.committed, this.stable);
    if (hi <= this.applied) return [];
    return this.slice(this.applied + 1, hi, maxCount);
  }

  appliedTo(index: number): void {
    if (index > this.applied) this.applied = index;
  }

  /** Replace the whole log by a snapshot received from the leader. */
  restore(meta: SnapshotMeta): void {
    this.offset = meta.index;
    this.offsetTerm = meta.term;
    this.ents = [];
    this.committed = meta.index;
    this.stable = meta.index;
    if (this.applied > meta.index) this.applied = meta.index;
  }

  /** Drop entries up to `index` (inclusive), which must be applied. */
  compact(index: number): void {
    if (index <= this.offset) return;
    if (index > this.applied) throw new RaftUsageError(`compact to ${index}: only ${this.applied} applied`);
    const term = this.term(index);
    this.ents = this.ents.slice(index - this.offset);
    this.offset = index;
    this.offsetTerm = term;
  }

  compactedTo(): number {
    return this.offset;
  }
}
