/**
 * A seeded generator of storage operations that a Raft node could issue: appends, commit
 * advances, new terms with conflicting suffixes, local compactions and snapshot installs.
 * It tracks its own model (a LogView), so the same (state, seed) always yields the same
 * sequence: the crash tests regenerate in the parent what the child wrote.
 */

import type { DurableState, Entry, Snapshot } from '../../src/raft/types.ts';
import type { PersistBatch, RaftStorage } from '../../src/storage/contract.ts';
import { LogView } from '../../src/storage/log-view.ts';
import { payload, rng, snap } from './helpers.ts';

export type WorkOp =
  | { readonly kind: 'persist'; readonly batch: PersistBatch }
  | { readonly kind: 'compact'; readonly snapshot: Snapshot; readonly retain: number };

export interface WorkloadOptions {
  readonly entrySize?: number;
  readonly maxBatch?: number;
}

export class Workload {
  private readonly model: LogView;
  private readonly rand: () => number;
  private readonly entrySize: number;
  private readonly maxBatch: number;

  constructor(state: DurableState, seed: number, options: WorkloadOptions = {}) {
    this.model = new LogView(state);
    this.rand = rng(seed);
    this.entrySize = options.entrySize ?? 24;
    this.maxBatch = options.maxBatch ?? 8;
  }

  state(): DurableState {
    return this.model.state();
  }

  private int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }

  private entries(from: number, n: number, term: number): Entry[] {
    const out: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const size = this.rand() < 0.1 ? 0 : this.int(1, this.entrySize);
      out.push({
        index: from + i,
        term,
        type: this.rand() < 0.05 ? 1 : 0,
        data: payload(from + i, term, size),
      });
    }
    return out;
  }

  next(): WorkOp {
    const m = this.model;
    const h = m.hardState;
    const last = m.lastIndex();
    const snapIndex = m.snapshotIndex();
    const r = this.rand();
    let op: WorkOp;
    if (r < 0.7) {
      const term = Math.max(h.term, 1);
      const es = this.entries(last + 1, this.int(1, this.maxBatch), term);
      const newLast = last + es.length;
      const commit = this.rand() < 0.5 ? Math.max(h.commit, this.int(h.commit, newLast)) : h.commit;
      op = {
        kind: 'persist',
        batch: { snapshot: null, entries: es, hardState: { term, vote: h.vote, commit } },
      };
    } else if (r < 0.8) {
      // A new term; half the time a conflicting suffix above the commit index is replaced.
      const term = h.term + 1;
      const low = Math.max(h.commit, snapIndex) + 1;
      let es: Entry[] = [];
      if (this.rand() < 0.5 && low <= last) es = this.entries(this.int(low, last), this.int(1, 4), term);
      op = {
        kind: 'persist',
        batch: {
          snapshot: null,
          entries: es,
          hardState: { term, vote: `n${this.int(1, 3)}`, commit: h.commit },
        },
      };
    } else if (r < 0.86 && h.commit > snapIndex) {
      const index = this.int(snapIndex + 1, h.commit);
      op = { kind: 'compact', snapshot: snap(index, m.term(index)!), retain: this.int(0, 4) };
    } else if (r < 0.88) {
      // InstallSnapshot from a leader ahead of us.
      const term = Math.max(h.term, 1);
      const index = last + this.int(1, 10);
      const es = this.rand() < 0.5 ? this.entries(index + 1, this.int(1, 3), term) : [];
      op = {
        kind: 'persist',
        batch: { snapshot: snap(index, term), entries: es, hardState: { term, vote: h.vote, commit: index } },
      };
    } else {
      const commit = this.int(h.commit, last);
      op = { kind: 'persist', batch: { snapshot: null, entries: [], hardState: { ...h, commit } } };
    }
    if (op.kind === 'persist') m.apply(m.plan(op.batch), op.batch.snapshot);
    else m.apply(m.planCompact(op.snapshot), op.snapshot);
    return op;
  }
}

export function run(storage: RaftStorage, op: WorkOp): Promise<void> {
  return op.kind === 'persist' ? storage.persist(op.batch) : storage.compact(op.snapshot, op.retain);
}
