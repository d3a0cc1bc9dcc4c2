/**
 * The configurations a node knows of: the one in force (that of the last applied
 * configuration entry), its history (to give a snapshot the configuration as of its index),
 * and the members added by configuration entries in the log above it, committed or not,
 * which with the configuration in force are the senders this node accepts (the sender rule
 * in raft.ts's header). etcd-io/raft keeps the same concept across `confchange/` and
 * `tracker/`; the change arithmetic itself is confchange.ts's.
 *
 * Invariants:
 * - `conf` is the configuration after applying, in log order, every configuration entry up
 *   to `appliedIndex` (a snapshot counts as one); an entry that does not decode changes
 *   nothing and is counted in `malformed`;
 * - `history` is ordered by index and its last element's configuration is `conf`; it holds
 *   the configuration in force at the last snapshot's index (if any) and every later one
 *   (older ones are dropped on compaction), so a snapshot at any index from there on gets
 *   its configuration from it;
 * - `logAdds` holds exactly the add-voter/add-learner entries of the log in
 *   (appliedIndex, lastIndex], in index order: append, truncate and apply keep it so
 *   ({@link noteLogAdd}, {@link rescan}, {@link apply}).
 */
import { applyConfChange, parseConfChange } from './confchange.ts';
import type { RaftLog } from './log.ts';
import {
  type AppendRequest,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type NodeId,
} from './types.ts';

export class Membership {
  /** Configuration in force: that of the last applied configuration change. */
  conf: ConfState = { voters: [], learners: [] };
  /** Index of the last configuration entry (or snapshot) applied. */
  appliedIndex = 0;
  /** Committed configuration entries that did not decode (applied as no-ops). */
  malformed = 0;
  /** Configurations by the index they took effect at, oldest first (for snapshots). */
  private history: { index: number; conf: ConfState }[] = [];
  /** Nodes added by configuration entries in the log above `appliedIndex`, with their index. */
  private logAdds: { readonly index: number; readonly node: NodeId }[] = [];

  /** A snapshot at `index` with configuration `conf` replaces everything known before it. */
  restore(index: number, conf: ConfState): void {
    this.conf = conf;
    this.history = [{ index, conf }];
    this.appliedIndex = index;
    this.logAdds = [];
  }

  /**
   * Apply the configuration entry `e` (a no-op if it was applied already). Returns whether
   * the configuration changed: false also for an entry that does not decode.
   */
  apply(e: Entry): boolean {
    if (e.index <= this.appliedIndex) return false;
    this.appliedIndex = e.index;
    if (this.logAdds.length > 0 && (this.logAdds[0] as { index: number }).index <= e.index) {
      this.logAdds = this.logAdds.filter((a) => a.index > e.index);
    }
    const parsed = parseConfChange(e.data);
    if (!parsed.ok) {
      // The same bytes fail the same way on every member: the configuration stays as it is.
      this.malformed++;
      return false;
    }
    this.conf = applyConfChange(this.conf, parsed.cc);
    this.history.push({ index: e.index, conf: this.conf });
    return true;
  }

  /** The configuration in force at `index` (empty before the first one). */
  at(index: number): ConfState {
    let conf: ConfState = { voters: [], learners: [] };
    for (const c of this.history) {
      if (c.index > index) break;
      conf = c.conf;
    }
    return conf;
  }

  /** A snapshot was taken at `index`: forget configurations no snapshot can need. */
  compact(index: number): void {
    const keepFrom = this.history.findLastIndex((c) => c.index <= index);
    if (keepFrom > 0) this.history = this.history.slice(keepFrom);
  }

  isVoter(id: NodeId): boolean {
    return this.conf.voters.includes(id);
  }

  /** Whether `id` is in a configuration this node knows of: the applied one, or one in its log. */
  isKnown(id: NodeId): boolean {
    if (this.conf.voters.includes(id) || this.conf.learners.includes(id)) return true;
    for (const a of this.logAdds) if (a.node === id) return true;
    return false;
  }

  /** Whether this node knows no configuration at all (it is joining, with an empty log). */
  knowsNone(): boolean {
    return this.conf.voters.length === 0 && this.conf.learners.length === 0 && this.logAdds.length === 0;
  }

  /** A configuration entry was appended to the log. */
  noteLogAdd(e: Entry): void {
    const p = parseConfChange(e.data);
    if (p.ok && p.cc.type !== ConfChangeType.Remove && e.index > this.appliedIndex) {
      this.logAdds.push({ index: e.index, node: p.cc.node });
    }
  }

  /** Whether an Append may change `logAdds`: it holds configuration entries, or may have truncated some. */
  mayChange(m: AppendRequest): boolean {
    const lastAdd = this.logAdds[this.logAdds.length - 1];
    if (lastAdd !== undefined && lastAdd.index > m.prevIndex) return true;
    for (const e of m.entries) if (e.type === EntryType.ConfChange) return true;
    return false;
  }

  /** Rebuild `logAdds` from the log (after a truncation, or at start). */
  rescan(log: RaftLog): void {
    this.logAdds = [];
    const from = Math.max(this.appliedIndex + 1, log.firstIndex());
    const last = log.lastIndex();
    for (let i = from; i <= last; i++) {
      const e = log.entry(i);
      if (e && e.type === EntryType.ConfChange) this.noteLogAdd(e);
    }
  }
}
