/**
 * The leader's read-only state: ReadIndex requests waiting for a heartbeat round, the
 * leader lease and its fence (Raft dissertation §6.4; etcd-io/raft keeps the same concept
 * in `read_only.go`). Reads are confirmed by heartbeat rounds: each round has a sequence
 * number that followers echo, so one round confirms every read queued before it and also
 * measures the lease.
 *
 * Invariants, all for the current term of a leader (becomeLeader calls {@link reset};
 * losing leadership fails every queued read with {@link failAll}):
 * - `hbSeq` is the last round sent (0 right after reset); `seqTick` maps every round from
 *   the one a quorum had acknowledged at the last release up to `hbSeq` to the leader tick
 *   it was sent at, in increasing order of round (older ones no read or lease can need);
 * - `queue` holds reads in arrival order, so in non-decreasing `seq`; a read is released,
 *   at the commit index recorded when it arrived, once a quorum acknowledged a round
 *   numbered >= its `seq` (a round sent after it arrived);
 * - `awaitingCommit` holds reads that arrived before an entry of this term committed (the
 *   commit index may be behind until then, §6.4 step 1); they are handled again then;
 * - rounds numbered <= `leaseFence` support no lease; it is +Infinity once TimeoutNow was
 *   sent in this term (its target may win at once, whatever the leases).
 * - `remoteReads` holds released reads of followers, batched per follower and index, until
 *   the next Ready sends them.
 */
import {
  type Message,
  MessageType,
  type NodeId,
  type ReadFailure,
  type ReadIndexResponse,
  type ReadState,
} from './types.ts';

interface PendingRead {
  readonly ctx: number;
  readonly from: NodeId;
  readonly index: number;
  readonly seq: number;
}

/** Released reads for one follower that share a read index. */
export interface RemoteReadBatch {
  readonly ctxs: number[];
  readonly index: number;
}

export class ReadOnlyState {
  /** Last heartbeat round sent in this term. */
  hbSeq = 0;
  /** Ticks since this node became leader (the clock of the lease). */
  leaderTicks = 0;
  /** Heartbeat rounds up to this one cannot support a lease. */
  leaseFence = 0;
  /** A read is queued that needs a heartbeat round of its own at the next Ready. */
  needRound = false;
  readonly remoteReads = new Map<NodeId, RemoteReadBatch[]>();
  private readonly seqTick = new Map<number, number>();
  private queue: PendingRead[] = [];
  private awaitingCommit: { ctx: number; from: NodeId }[] = [];

  /** A new term of leadership: no round sent, no fence. */
  reset(): void {
    this.hbSeq = 0;
    this.leaseFence = 0;
    this.leaderTicks = 0;
    this.seqTick.clear();
    this.seqTick.set(0, 0);
  }

  /** Whether a read waits for a heartbeat round. */
  hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /** A heartbeat round leaves now: its number, recorded with its send time. */
  startRound(): number {
    const seq = ++this.hbSeq;
    this.seqTick.set(seq, this.leaderTicks);
    return seq;
  }

  /** No round sent so far in this term may support a lease any more. */
  fenceLease(): void {
    this.leaseFence = Number.POSITIVE_INFINITY;
  }

  /** Queue a read at `index` until a round sent after now is acknowledged by a quorum. */
  add(ctx: number, from: NodeId, index: number): void {
    this.queue.push({ ctx, from, index, seq: this.hbSeq + 1 });
    this.needRound = true;
  }

  /** Park a read until an entry of this term commits. */
  awaitCommit(ctx: number, from: NodeId): void {
    this.awaitingCommit.push({ ctx, from });
  }

  /** The parked reads, now that an entry of this term committed (null if none). */
  takeAwaitingCommit(): { ctx: number; from: NodeId }[] | null {
    if (this.awaitingCommit.length === 0) return null;
    const waiting = this.awaitingCommit;
    this.awaitingCommit = [];
    return waiting;
  }

  /**
   * Whether a quorum acknowledged round `q` recently enough to serve reads without a round:
   * followers that acknowledged a heartbeat sent at `sentAt` refuse votes for more than
   * electionTick - 1 of their own ticks after receiving it (their next tick may come at
   * once). The lease ends after electionTick - 2 of ours: one tick of margin, so it holds
   * while follower clocks run at most (electionTick - 1) / (electionTick - 2) times as fast
   * as this one's (12.5% with electionTick 10; docs/simulator.md).
   */
  leaseValid(q: number, electionTick: number): boolean {
    if (!Number.isFinite(q) || q <= this.leaseFence) return false;
    const sentAt = this.seqTick.get(q);
    return sentAt !== undefined && this.leaderTicks - sentAt < electionTick - 2;
  }

  /** Release every queued read that round `q` (acknowledged by a quorum) confirms. */
  release(q: number, self: NodeId, readStates: ReadState[]): void {
    let k = 0;
    while (k < this.queue.length && (this.queue[k] as PendingRead).seq <= q) {
      const r = this.queue[k] as PendingRead;
      this.releaseOne(r.ctx, r.from, r.index, self, readStates);
      k++;
    }
    if (k > 0) this.queue.splice(0, k);
    // Forget send times no read or lease can need any more.
    for (const s of this.seqTick.keys()) {
      if (s < q) this.seqTick.delete(s);
      else break;
    }
  }

  /** A read of `from` may be served at `index`: this node's goes to `readStates`, a follower's is batched. */
  releaseOne(ctx: number, from: NodeId, index: number, self: NodeId, readStates: ReadState[]): void {
    if (from === self) {
      readStates.push({ ctx, index });
      return;
    }
    let batches = this.remoteReads.get(from);
    if (!batches) {
      batches = [];
      this.remoteReads.set(from, batches);
    }
    const lastBatch = batches[batches.length - 1];
    if (lastBatch && lastBatch.index === index) lastBatch.ctxs.push(ctx);
    else batches.push({ ctxs: [ctx], index });
  }

  /**
   * Leadership is lost: every parked and queued read fails, this node's into `failures`, a
   * follower's as a ReadIndexResp with index -1 into `out` (sent from `self` at `term`).
   */
  failAll(self: NodeId, term: number, failures: ReadFailure[], out: Message[]): void {
    const failed = [...this.awaitingCommit, ...this.queue];
    this.awaitingCommit = [];
    this.queue = [];
    for (const r of failed) {
      if (r.from === self) {
        failures.push({ ctx: r.ctx, reason: 'not-leader' });
      } else {
        out.push({
          type: MessageType.ReadIndexResp,
          from: self,
          to: r.from,
          term,
          ctxs: [r.ctx],
          index: -1,
        } satisfies ReadIndexResponse);
      }
    }
  }
}
