/**
 * The work a RaftNode holds for its callers: proposals waiting to be applied here, reads
 * waiting for their read index and then for the state machine to reach it, membership
 * changes waiting to be applied. RaftNode tells it what the core decided (an entry applied, a
 * read index confirmed or refused, a snapshot installed, the leader changed, a tick's time)
 * and it settles the callers' promises.
 *
 * Invariants:
 * - Each pending call is settled once; whatever settles it (other than its own AbortSignal)
 *   first forgets it here and releases its `cleanup` (the signal's listener or the membership
 *   change's timer; a numeric deadline holds nothing to release).
 * - A proposal is matched by the proposal number in its envelope (envelope.ts), never by index:
 *   `proposalAt` (index -> number) only tells that a proposal of ours appended at that index as
 *   leader lost its slot when another entry is applied there, or is truncated away when a newer
 *   one of ours is appended there. An entry of `proposalAt` leaves with its proposal.
 * - A proposal forwarded to the leader (index 0) cannot be matched by index: when the leader
 *   changes or a snapshot is installed, its outcome is unknown (OutcomeUnknownError); one of
 *   ours at or below an installed snapshot can no longer be matched (ProposalDroppedError).
 * - A read is in `reads` (keyed by its context, index unknown) or in `waitingReads` (index
 *   known, waiting for the apply), never both; it resolves once `applied >= index`.
 * - A numeric deadline costs no timer and no closure: deadlines are checked on ticks (`expire`),
 *   so they fire up to one tick late. Nothing here allocates per call beyond the record kept.
 */
import type { NodeId, ReadFailure } from '../raft/types.ts';
import {
  NoLeaderError,
  NotLeaderError,
  OutcomeUnknownError,
  ProposalDroppedError,
  TimeoutError,
} from './errors.ts';
import type { Runtime } from './runtime.ts';

/** When to give up waiting: an AbortSignal, or an absolute deadline in `Date.now()` milliseconds. */
export type Until = AbortSignal | number;

export interface Applied<R> {
  readonly index: number;
  readonly result: R;
}

interface PendingProposal<R> {
  resolve(v: Applied<R>): void;
  reject(e: Error): void;
  /** The log index it was appended at by this node as leader, 0 when forwarded. */
  index: number;
  term: number;
  /** Absolute deadline (`Date.now()` ms) checked on ticks, or Infinity. */
  deadline: number;
  cleanup: () => void;
}

interface PendingRead {
  resolve(index: number): void;
  reject(e: Error): void;
  /** The read index, -1 until the core confirmed it. */
  index: number;
  deadline: number;
  cleanup: () => void;
}

interface ConfWaiter {
  term: number;
  resolve(i: number): void;
  reject(e: Error): void;
  cleanup(): void;
}

function noop(): void {}

export class PendingWork<R> {
  private readonly rt: Runtime;
  private readonly proposals = new Map<number, PendingProposal<R>>();
  /** Log index -> number of the pending proposal appended there by this node as leader. */
  private readonly proposalAt = new Map<number, number>();
  private readonly reads = new Map<number, PendingRead>();
  /** Reads whose index is known, waiting for the state machine to apply it. */
  private waitingReads: PendingRead[] = [];
  private readonly confWaiters = new Map<number, ConfWaiter>();

  constructor(rt: Runtime) {
    this.rt = rt;
  }

  /** Proposals and reads in hand. */
  get requests(): number {
    return this.proposals.size + this.reads.size + this.waitingReads.length;
  }

  /** Keeps a proposal numbered `seq`, appended at `index` in `term` (0, 0: forwarded to the leader). */
  addProposal(
    seq: number,
    index: number,
    term: number,
    until: Until | undefined,
    resolve: (v: Applied<R>) => void,
    reject: (e: Error) => void,
  ): void {
    const p: PendingProposal<R> = {
      resolve,
      reject,
      index,
      term,
      deadline: typeof until === 'number' ? until : Number.POSITIVE_INFINITY,
      cleanup: noop,
    };
    if (typeof until === 'object') {
      const onAbort = (): void => {
        if (this.dropProposal(seq)) reject(new TimeoutError('proposal'));
      };
      until.addEventListener('abort', onAbort, { once: true });
      p.cleanup = () => until.removeEventListener('abort', onAbort);
    }
    this.proposals.set(seq, p);
    if (index !== 0) {
      // An older proposal of ours at this index was truncated away: its entry is gone.
      const older = this.proposalAt.get(index);
      if (older !== undefined) {
        const o = this.proposals.get(older);
        this.proposals.delete(older);
        if (o) {
          o.cleanup();
          o.reject(new ProposalDroppedError(index));
        }
      }
      this.proposalAt.set(index, seq);
    }
  }

  /** Keeps a read whose context is `ctx`, until the core confirms or refuses its read index. */
  addRead(
    ctx: number,
    until: Until | undefined,
    resolve: (index: number) => void,
    reject: (e: Error) => void,
  ): void {
    const r: PendingRead = {
      resolve,
      reject,
      index: -1,
      deadline: typeof until === 'number' ? until : Number.POSITIVE_INFINITY,
      cleanup: noop,
    };
    if (typeof until === 'object') {
      const onAbort = (): void => {
        this.reads.delete(ctx);
        const i = this.waitingReads.indexOf(r);
        if (i >= 0) this.waitingReads.splice(i, 1);
        reject(new TimeoutError('read'));
      };
      until.addEventListener('abort', onAbort, { once: true });
      r.cleanup = () => until.removeEventListener('abort', onAbort);
    }
    this.reads.set(ctx, r);
  }

  /** Keeps a membership change appended at `index` in `term`; a numeric `until` arms a timer. */
  addConfChange(
    index: number,
    term: number,
    until: Until | undefined,
    resolve: (i: number) => void,
    reject: (e: Error) => void,
  ): void {
    const w: ConfWaiter = { term, resolve, reject, cleanup: noop };
    const onAbort = (): void => {
      if (this.confWaiters.delete(index)) reject(new TimeoutError('membership change'));
    };
    if (typeof until === 'number') {
      // A deadline on the runtime's clock; Node fires timers longer than 2^31-1 ms at once: cap there.
      const t = this.rt.setTimeout(onAbort, Math.min(2 ** 31 - 1, Math.max(0, until - this.rt.dateNow())));
      w.cleanup = () => this.rt.clearTimer(t);
    } else if (until) {
      until.addEventListener('abort', onAbort, { once: true });
      w.cleanup = () => until.removeEventListener('abort', onAbort);
    }
    this.confWaiters.set(index, w);
  }

  /** Forgets a pending proposal; false when it was no longer pending. */
  private dropProposal(seq: number): boolean {
    const p = this.proposals.get(seq);
    if (p === undefined) return false;
    this.proposals.delete(seq);
    if (p.index !== 0 && this.proposalAt.get(p.index) === seq) this.proposalAt.delete(p.index);
    return true;
  }

  /** Rejects pending proposals and reads whose deadline passed (called on ticks). */
  expire(now: number): void {
    for (const [seq, p] of this.proposals) {
      if (p.deadline <= now) {
        this.dropProposal(seq);
        p.cleanup();
        p.reject(new TimeoutError('proposal'));
      }
    }
    for (const [ctx, r] of this.reads) {
      if (r.deadline <= now) {
        this.reads.delete(ctx);
        r.reject(new TimeoutError('read'));
      }
    }
    if (this.waitingReads.some((r) => r.deadline <= now)) {
      const still: PendingRead[] = [];
      for (const r of this.waitingReads) {
        if (r.deadline <= now) r.reject(new TimeoutError('read'));
        else still.push(r);
      }
      this.waitingReads = still;
    }
  }

  /** The entry at `index` (of `term`, a membership change or not) is being applied: settles its waiter. */
  confChangeApplied(index: number, term: number, isConfChange: boolean): void {
    const w = this.confWaiters.get(index);
    if (w) {
      this.confWaiters.delete(index);
      w.cleanup();
      if (term === w.term && isConfChange) w.resolve(index);
      else w.reject(new ProposalDroppedError(index));
    }
  }

  /** Our proposal numbered `seq` was applied at `index` with `result`. */
  proposalApplied(seq: number, index: number, result: R): void {
    const p = this.proposals.get(seq);
    if (p) {
      this.dropProposal(seq);
      p.cleanup();
      p.resolve({ index, result });
    }
  }

  /** An entry was applied at `index`: a proposal of ours appended there and still pending lost its slot. */
  slotApplied(index: number): void {
    const lost = this.proposalAt.get(index);
    if (lost !== undefined) {
      this.proposalAt.delete(index);
      const p = this.proposals.get(lost);
      if (p) {
        this.proposals.delete(lost);
        p.cleanup();
        p.reject(new ProposalDroppedError(index));
      }
    }
  }

  /**
   * A snapshot up to `applied` was installed: our proposals at or below it can no longer be
   * matched. Nor can a forwarded one (index unknown): its entry may be inside the snapshot, and
   * a later copy of it (a duplicated message appends it twice) would then answer it with the
   * copy's result, "session expired" say, as if it had never been applied.
   */
  snapshotInstalled(applied: number): void {
    for (const [seq, p] of this.proposals) {
      if (p.index === 0) {
        this.dropProposal(seq);
        p.cleanup();
        p.reject(new OutcomeUnknownError('', 'a snapshot was installed'));
      } else if (p.index <= applied) {
        this.dropProposal(seq);
        p.cleanup();
        p.reject(new ProposalDroppedError(p.index));
      }
    }
  }

  /** The leader changed from `previous`: proposals forwarded to it would otherwise wait for their deadline. */
  leaderChanged(previous: NodeId): void {
    for (const [seq, p] of this.proposals) {
      if (p.index !== 0) continue;
      this.proposals.delete(seq);
      p.cleanup();
      p.reject(new OutcomeUnknownError(previous));
    }
  }

  /** The core confirmed the read with context `ctx` at `index`: it waits for the apply. */
  readIndexed(ctx: number, index: number): void {
    const r = this.reads.get(ctx);
    if (!r) return;
    this.reads.delete(ctx);
    r.index = index;
    this.waitingReads.push(r);
  }

  /** The core refused the read with context `ctx`; `leader` is the one it knows of. */
  readRefused(ctx: number, reason: ReadFailure['reason'], leader: NodeId): void {
    const r = this.reads.get(ctx);
    if (!r) return;
    this.reads.delete(ctx);
    r.cleanup();
    r.reject(
      reason === 'no-leader'
        ? new NoLeaderError('no leader to confirm the read')
        : new NotLeaderError(leader),
    );
  }

  /** Resolves the reads whose index the state machine has reached. */
  releaseReads(applied: number): void {
    if (this.waitingReads.length === 0) return;
    const still: PendingRead[] = [];
    for (const r of this.waitingReads) {
      if (r.index <= applied) {
        r.cleanup();
        r.resolve(r.index);
      } else {
        still.push(r);
      }
    }
    this.waitingReads = still;
  }

  /** Rejects everything pending with `err` (the node stopped or failed). */
  failAll(err: Error): void {
    for (const p of this.proposals.values()) {
      p.cleanup();
      p.reject(err);
    }
    this.proposals.clear();
    this.proposalAt.clear();
    for (const r of this.reads.values()) {
      r.cleanup();
      r.reject(err);
    }
    this.reads.clear();
    for (const r of this.waitingReads) {
      r.cleanup();
      r.reject(err);
    }
    this.waitingReads = [];
    for (const w of this.confWaiters.values()) {
      w.cleanup();
      w.reject(err);
    }
    this.confWaiters.clear();
  }
}
