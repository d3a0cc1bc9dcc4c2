/**
 * What a leader knows of one follower's log (Raft §5.3 nextIndex/matchIndex), and the
 * flow control of replication to it.
 *
 * States: `probe` sends one Append per heartbeat interval until a reply tells where the
 * logs match; `replicate` streams entries optimistically with up to `maxInflight`
 * unacknowledged messages; `snapshot` sends a snapshot in chunks, one chunk in flight.
 *
 * Invariants: 0 <= match < next; in `replicate`, `inflight` holds the last index of each
 * unacknowledged Append in increasing order, all >= next-1 - (sent but unacked span).
 */
import type { NodeId } from './types.ts';

export const ProgressState = { Probe: 'probe', Replicate: 'replicate', Snapshot: 'snapshot' } as const;
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState];

export class Progress {
  readonly id: NodeId;
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In probe: an Append is outstanding; wait for its reply or the next heartbeat. */
  probeSent = false;
  /** Last index of each in-flight Append (replicate state). */
  readonly inflight: number[] = [];
  /** In snapshot state: index of the snapshot being sent and the bytes the follower holds. */
  pendingSnapshot = 0;
  snapshotOffset = 0;
  /** Ticks since the last snapshot chunk was acknowledged (to resend a lost one). */
  snapshotIdle = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /** `match` when the previous heartbeat reply came (to detect a stalled pipeline). */
  matchAtHeartbeat = -1;
  /** Highest heartbeat sequence number this follower acknowledged in the current term. */
  ackedSeq = 0;
  learner: boolean;

  constructor(id: NodeId, next: number, learner: boolean) {
    this.id = id;
    this.next = next;
    this.learner = learner;
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = ProgressState.Probe;
    this.probeSent = false;
    this.inflight.length = 0;
    this.pendingSnapshot = 0;
  }

  becomeReplicate(): void {
    this.state = ProgressState.Replicate;
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflight.length = 0;
  }

  becomeSnapshot(index: number): void {
    this.state = ProgressState.Snapshot;
    this.pendingSnapshot = index;
    this.snapshotOffset = 0;
    this.snapshotIdle = 0;
    this.inflight.length = 0;
  }

  /** A success reply acknowledged everything up to `n`. Returns whether `match` moved. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < n + 1) this.next = n + 1;
    let k = 0;
    while (k < this.inflight.length && (this.inflight[k] as number) <= n) k++;
    if (k > 0) this.inflight.splice(0, k);
    return updated;
  }

  /**
   * A reject of the Append at `rejected`; `hint` is where the leader now guesses the logs
   * match. Returns false when the reject is stale (from an earlier probe).
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Record an Append sent with entries ending at `last`. */
  sentEntries(last: number, count: number): void {
    if (this.state === ProgressState.Replicate) {
      if (count > 0) {
        this.next = last + 1;
        this.inflight.push(last);
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true;
    }
  }

  isPaused(maxInflight: number): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent;
      case ProgressState.Replicate:
        return this.inflight.length >= maxInflight;
      case ProgressState.Snapshot:
        return true;
    }
  }
}
