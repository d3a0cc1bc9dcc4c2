/**
 * Safety properties of Raft (Raft paper, Figure 3), checked by the simulator after every
 * event:
 * - Election Safety: at most one leader per term;
 * - Log Matching: an entry is identified by (index, term): two entries with the same index
 *   and term hold the same data and follow entries of the same term (so, by induction, the
 *   logs are identical up to there);
 * - Leader Completeness: a new leader holds every entry committed before it;
 * - State Machine Safety: no two nodes apply different entries at one index;
 * - and applied indices only grow, by one entry at a time, within a node's life; a node's
 *   durable term never decreases.
 */
import type { Raft } from '../raft/raft.ts';
import {
  type DurableState,
  type Entry,
  type HardState,
  type NodeId,
  type Ready,
  Role,
} from '../raft/types.ts';

export class SafetyViolation extends Error {
  override readonly name = 'SafetyViolation';
}

export interface ClusterView {
  readonly nodes: ReadonlyMap<NodeId, { readonly alive: boolean; readonly raft: Raft | null }>;
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
  private readonly nodeApplied = new Map<NodeId, number>();
  private readonly durableTerm = new Map<NodeId, number>();
  private readonly checkedLeader = new Set<string>();
  checks = 0;

  nodeStarted(id: NodeId, durable: DurableState): void {
    this.nodeApplied.set(id, durable.snapshot ? durable.snapshot.meta.index : 0);
    const t = this.durableTerm.get(id) ?? 0;
    if (durable.hardState.term < t) {
      throw new SafetyViolation(`${id} restarted with term ${durable.hardState.term} < durable term ${t}`);
    }
  }

  nodeCrashed(id: NodeId): void {
    this.nodeApplied.delete(id);
  }

  onDurable(id: NodeId, hs: HardState): void {
    const t = this.durableTerm.get(id) ?? 0;
    if (hs.term < t) throw new SafetyViolation(`${id} durable term went back from ${t} to ${hs.term}`);
    this.durableTerm.set(id, hs.term);
  }

  onReady(view: ClusterView, id: NodeId, raft: Raft, rd: Ready): void {
    let prevTerm = -2;
    for (const e of rd.entries) {
      const pt = prevTerm === -2 ? raft.termAt(e.index - 1) : prevTerm;
      this.registerEntry(id, e, pt);
      prevTerm = e.term;
    }
    if (rd.snapshot) {
      const a = this.applied.get(rd.snapshot.meta.index);
      if (a && a.term !== rd.snapshot.meta.term) {
        throw new SafetyViolation(
          `${id} installs a snapshot at ${rd.snapshot.meta.index} term ${rd.snapshot.meta.term}, but term ${a.term} was applied there`,
        );
      }
    }
    void view;
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

  onApply(id: NodeId, e: Entry): void {
    const last = this.nodeApplied.get(id) ?? 0;
    if (e.index !== last + 1) {
      throw new SafetyViolation(
        `${id} applies index ${e.index} after ${last}: applied must grow one entry at a time`,
      );
    }
    this.nodeApplied.set(id, e.index);
    const h = hashBytes(e.data);
    const a = this.applied.get(e.index);
    if (!a) {
      this.applied.set(e.index, { term: e.term, hash: h });
      if (e.index > this.maxApplied) this.maxApplied = e.index;
    } else if (a.term !== e.term || a.hash !== h) {
      throw new SafetyViolation(
        `state machine safety: ${id} applies (${e.index}, term ${e.term}) where (${e.index}, term ${a.term}) was applied`,
      );
    }
  }

  onSnapshotApplied(id: NodeId, index: number, term: number): void {
    const last = this.nodeApplied.get(id) ?? 0;
    if (index < last)
      throw new SafetyViolation(`${id} applied index went back from ${last} to ${index} (snapshot)`);
    this.nodeApplied.set(id, index);
    const a = this.applied.get(index);
    if (a && a.term !== term)
      throw new SafetyViolation(`${id} snapshot at ${index} has term ${term}, applied ${a.term}`);
  }

  /** After every event: one leader per term; a new leader holds everything applied anywhere. */
  checkCluster(view: ClusterView): void {
    this.checks++;
    for (const [id, n] of view.nodes) {
      const r = n.raft;
      if (!n.alive || !r || r.currentRole !== Role.Leader) continue;
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

  private checkLeaderCompleteness(id: NodeId, r: Raft): void {
    const first = r.status().firstIndex;
    for (let i = first; i <= this.maxApplied; i++) {
      const a = this.applied.get(i);
      if (!a) continue;
      const t = r.termAt(i);
      if (t !== a.term) {
        throw new SafetyViolation(
          `leader completeness: ${id} leads term ${r.currentTerm} with ${t < 0 ? 'no entry' : `term ${t}`} at ${i}, where term ${a.term} was committed`,
        );
      }
    }
  }

  get appliedMax(): number {
    return this.maxApplied;
  }
}
