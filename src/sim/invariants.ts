/**
 * Safety properties of Raft (Raft paper, Figure 3), checked by the simulator on the real
 * RaftNode after every event:
 * - Election Safety: at most one leader per term;
 * - Log Matching: an entry is identified by (index, term): two entries with the same index
 *   and term hold the same data and follow entries of the same term (so, by induction, the
 *   logs are identical up to there); checked on every batch a node persists;
 * - Commitment: every index any node counts as committed holds one entry (one term) for
 *   ever, and when a leader commits an entry of its term, a quorum of its voters holds that
 *   entry durably (fsynced) on disk: acknowledgements never run ahead of the disk;
 * - Leader Completeness: the leader of term T holds every entry committed in a term below T
 *   (everything any node counted as committed, not only what some node applied; an entry
 *   counts as committed in the term its counter was in). A leader of an older term may still
 *   win late (its held-back votes arrive after a pause) and need not hold newer commits;
 * - State Machine Safety: no two nodes apply different entries at one index;
 * - and applied indices only grow, by one entry at a time, within a node's life; a node's
 *   durable term never decreases.
 */
import type { Raft } from '../raft/raft.ts';
import { type DurableState, type Entry, type HardState, type NodeId, Role } from '../raft/types.ts';
import type { PersistBatch } from '../storage/contract.ts';

export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
}

export interface ClusterView {
  /** Live nodes' cores (crashed nodes absent). */
  cores(): Iterable<[NodeId, Raft]>;
  /** The term of the entry at `index` on `node`'s disk, durable part only: -1 none, -2 covered by its snapshot. */
  durableTermAt(node: NodeId, index: number): number;
  log(line: string): void;
}

function hashBytes(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return (h ^ b.length) >>> 0;
}

export class Invariants {
  /** term -> the leader of that term. */
  readonly leaders = new Map<number, NodeId>();
  /** "index:term" -> fingerprint of the entry and the term of its predecessor (-1 unknown). */
  private readonly entries = new Map<string, { hash: number; type: number; prevTerm: number }>();
  /** index -> the entry applied at that index (by whichever node applied it first). */
  private readonly applied = new Map<number, { term: number; hash: number }>();
  private maxApplied = 0;
  /** index -> term of the entry committed there, and the lowest term in which a node counted it committed. */
  private readonly committed = new Map<number, { term: number; inTerm: number }>();
  private maxCommitted = 0;
  /** Per node: the highest commit index already checked. */
  private readonly nodeCommit = new Map<NodeId, number>();
  private readonly nodeApplied = new Map<NodeId, number>();
  /** Per node: its voters as of the last check. */
  private readonly lastVoters = new Map<NodeId, readonly NodeId[]>();
  private readonly durableTerm = new Map<NodeId, number>();
  private readonly checkedLeader = new Set<string>();
  checks = 0;

  nodeStarted(id: NodeId, durable: DurableState): void {
    this.nodeApplied.set(id, durable.snapshot ? durable.snapshot.meta.index : 0);
    this.nodeCommit.set(id, 0);
    const t = this.durableTerm.get(id) ?? 0;
    if (durable.hardState.term < t) {
      throw new SafetyViolation(`${id} restarted with term ${durable.hardState.term} < durable term ${t}`);
    }
  }

  nodeCrashed(id: NodeId): void {
    this.nodeApplied.delete(id);
    this.lastVoters.delete(id);
    this.nodeCommit.delete(id);
  }

  onDurable(id: NodeId, hs: HardState): void {
    const t = this.durableTerm.get(id) ?? 0;
    if (hs.term < t) throw new SafetyViolation(`${id} durable term went back from ${t} to ${hs.term}`);
    this.durableTerm.set(id, hs.term);
  }

  /** A batch `id` is about to write; `raft` is its core, which holds the batch's entries. */
  onPersist(id: NodeId, raft: Raft | null, batch: PersistBatch): void {
    let prevTerm = -2;
    for (const e of batch.entries) {
      const pt = prevTerm === -2 ? (raft ? raft.termAt(e.index - 1) : -1) : prevTerm;
      this.registerEntry(id, e, pt);
      prevTerm = e.term;
    }
    if (batch.snapshot) {
      const { index, term } = batch.snapshot.meta;
      const a = this.applied.get(index);
      const c = this.committed.get(index);
      if ((a && a.term !== term) || (c !== undefined && c.term !== term)) {
        throw new SafetyViolation(
          `${id} installs a snapshot at ${index} term ${term}, but term ${a?.term ?? c?.term} was committed there`,
        );
      }
    }
  }

  private registerEntry(id: NodeId, e: Entry, prevTerm: number): void {
    const key = `${e.index}:${e.term}`;
    const fp = { hash: hashBytes(e.data), type: e.type, prevTerm };
    const known = this.entries.get(key);
    if (!known) {
      this.entries.set(key, fp);
      return;
    }
    if (known.hash !== fp.hash || known.type !== fp.type) {
      throw new SafetyViolation(
        `log matching: ${id} holds a different entry at index ${e.index} term ${e.term}`,
      );
    }
    if (known.prevTerm >= 0 && fp.prevTerm >= 0 && known.prevTerm !== fp.prevTerm) {
      throw new SafetyViolation(
        `log matching: ${id} has term ${fp.prevTerm} before (${e.index}, ${e.term}), another log has ${known.prevTerm}`,
      );
    }
    if (known.prevTerm < 0 && fp.prevTerm >= 0) known.prevTerm = fp.prevTerm;
  }

  /** `id` applies the entry at `index` (term and data from its core when known, else -1 and the payload). */
  onApply(id: NodeId, index: number, term: number, data: Uint8Array): void {
    const last = this.nodeApplied.get(id) ?? 0;
    if (index !== last + 1) {
      throw new SafetyViolation(
        `${id} applies index ${index} after ${last}: applied must grow one entry at a time`,
      );
    }
    this.nodeApplied.set(id, index);
    const h = hashBytes(data);
    const a = this.applied.get(index);
    if (!a) {
      this.applied.set(index, { term, hash: h });
      if (index > this.maxApplied) this.maxApplied = index;
    } else if ((a.term >= 0 && term >= 0 && a.term !== term) || a.hash !== h) {
      throw new SafetyViolation(
        `state machine safety: ${id} applies (${index}, term ${term}) where (${index}, term ${a.term}) was applied`,
      );
    } else if (a.term < 0) {
      a.term = term;
    }
    const c = this.committed.get(index);
    if (c !== undefined && term >= 0 && c.term !== term) {
      throw new SafetyViolation(`${id} applies term ${term} at ${index}, where term ${c.term} was committed`);
    }
  }

  onSnapshotApplied(id: NodeId, index: number, stateApplied: number): void {
    const last = this.nodeApplied.get(id) ?? 0;
    if (index < last)
      throw new SafetyViolation(`${id} applied index went back from ${last} to ${index} (snapshot)`);
    if (stateApplied !== index) {
      throw new SafetyViolation(
        `${id} restored a snapshot at ${index} holding state applied to ${stateApplied}`,
      );
    }
    this.nodeApplied.set(id, index);
  }

  /** After every event: one leader per term; commitment; a new leader holds everything committed. */
  checkCluster(view: ClusterView): void {
    this.checks++;
    for (const [id, r] of view.cores()) {
      this.checkCommit(view, id, r);
      if (r.currentRole !== Role.Leader) continue;
      const term = r.currentTerm;
      const other = this.leaders.get(term);
      if (other === undefined) {
        this.leaders.set(term, id);
        view.log(`${id} becomes leader in term ${term}`);
      } else if (other !== id) {
        throw new SafetyViolation(`election safety: ${other} and ${id} are both leaders of term ${term}`);
      }
      const k = `${id}@${term}`;
      if (!this.checkedLeader.has(k)) {
        this.checkedLeader.add(k);
        this.checkLeaderCompleteness(id, r);
      }
    }
  }

  /** Records what `id` newly counts as committed; a leader's commit of its own term must be on a quorum's disk. */
  private checkCommit(view: ClusterView, id: NodeId, r: Raft): void {
    const c = r.commitIndex;
    const seen = this.nodeCommit.get(id) ?? 0;
    const before = this.lastVoters.get(id);
    const voters = r.configuration.voters;
    this.lastVoters.set(id, voters);
    if (c <= seen) return;
    this.nodeCommit.set(id, c);
    const first = r.status().firstIndex;
    for (let i = Math.max(seen + 1, first); i <= c; i++) {
      const t = r.termAt(i);
      if (t < 0) continue;
      const known = this.committed.get(i);
      if (known === undefined) {
        this.committed.set(i, { term: t, inTerm: r.currentTerm });
        if (i > this.maxCommitted) this.maxCommitted = i;
      } else if (known.term !== t) {
        throw new SafetyViolation(
          `${id} counts (${i}, term ${t}) as committed where term ${known.term} was committed`,
        );
      } else if (r.currentTerm < known.inTerm) {
        known.inTerm = r.currentTerm;
      }
    }
    if (r.currentRole === Role.Leader && r.termAt(c) === r.currentTerm) {
      // A membership change takes effect when applied, which may be in the very event that
      // committed it (under the configuration before): either configuration's quorum will do.
      const durable = (vs: readonly NodeId[]): number => {
        let k = 0;
        for (const v of vs) {
          const dt = view.durableTermAt(v, c);
          if (dt === r.currentTerm || dt === -2) k++;
        }
        return k;
      };
      const now = durable(voters);
      if (now * 2 <= voters.length && (before === undefined || durable(before) * 2 <= before.length)) {
        throw new SafetyViolation(
          `${id} (leader of term ${r.currentTerm}) commits ${c}, durable on only ${now} of voters ${voters.join(',')}`,
        );
      }
    }
  }

  private checkLeaderCompleteness(id: NodeId, r: Raft): void {
    const first = r.status().firstIndex;
    const term = r.currentTerm;
    for (let i = first; i <= this.maxCommitted; i++) {
      const c = this.committed.get(i);
      if (c === undefined || c.inTerm >= term) continue;
      const t = r.termAt(i);
      if (t !== c.term) {
        throw new SafetyViolation(
          `leader completeness: ${id} leads term ${term} with ${t < 0 ? 'no entry' : `term ${t}`} at ${i}, where term ${c.term} was committed in term ${c.inTerm}`,
        );
      }
    }
  }

  get appliedMax(): number {
    return this.maxApplied;
  }

  get committedMax(): number {
    return this.maxCommitted;
  }
}
