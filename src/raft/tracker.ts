/**
 * Progress tracking: the leader's view of every other member (one {@link Progress} each)
 * and the votes of an election, with the quorum questions asked of them (etcd-io/raft
 * splits the same concept into `tracker/`). The role logic in raft.ts decides when to ask;
 * this module answers from the map.
 *
 * Invariants: while this node leads, `prs` holds exactly one Progress per member of the
 * applied configuration other than this node (a voter's is not `learner`), created when it
 * became leader ({@link ProgressTracker.initLeader}) and reconciled after every applied
 * configuration change ({@link ProgressTracker.reconcile}), so that a new member starts
 * probing from the leader's next index and a removed one is forgotten; when it does not
 * lead, `prs` is empty. `votes` holds at most one answer per voter for the current
 * campaign (the first counts). Quorum arithmetic is quorum.ts's; this node's own value is
 * passed in by the caller (its durable index, its heartbeat round), never read from `prs`.
 */
import { isMember } from './confchange.ts';
import { Progress } from './progress.ts';
import { committedValue, type VoteResult, voteResult } from './quorum.ts';
import type { ProgressStatus } from './status.ts';
import type { ConfState, NodeId } from './types.ts';

export class ProgressTracker {
  /** One Progress per other member while leading; the leader's hot path reads it directly. */
  readonly prs = new Map<NodeId, Progress>();
  /** Answers to this node's current (pre-)campaign, by voter: true = granted. */
  readonly votes = new Map<NodeId, boolean>();

  /** Forget everything: a new term or role starts from nothing. */
  reset(): void {
    this.votes.clear();
    this.prs.clear();
  }

  /** A new leader: every other member starts in probe state at `next`. */
  initLeader(conf: ConfState, self: NodeId, next: number): void {
    for (const id of conf.voters) if (id !== self) this.prs.set(id, new Progress(id, next, false));
    for (const id of conf.learners) if (id !== self) this.prs.set(id, new Progress(id, next, true));
  }

  /**
   * A configuration change was applied on the leader: promote learners that became voters,
   * add new members (probing from `next`), drop the removed.
   */
  reconcile(conf: ConfState, self: NodeId, next: number): void {
    for (const id of conf.voters) {
      if (id === self) continue;
      const pr = this.prs.get(id);
      if (pr) pr.learner = false;
      else this.prs.set(id, new Progress(id, next, false));
    }
    for (const id of conf.learners) {
      if (id !== self && !this.prs.has(id)) this.prs.set(id, new Progress(id, next, true));
    }
    for (const id of [...this.prs.keys()]) if (!isMember(conf, id)) this.prs.delete(id);
  }

  /** The largest index a quorum of `voters` holds, this node holding `selfMatch` (+Infinity with no voters). */
  committed(voters: readonly NodeId[], self: NodeId, selfMatch: number): number {
    return committedValue(voters, (id) => (id === self ? selfMatch : (this.prs.get(id)?.match ?? 0)));
  }

  /** The highest heartbeat round a quorum acknowledged, this node at `selfSeq` (+Infinity with no voters). */
  quorumAckedSeq(voters: readonly NodeId[], self: NodeId, selfSeq: number): number {
    return committedValue(voters, (id) => (id === self ? selfSeq : (this.prs.get(id)?.ackedSeq ?? 0)));
  }

  /** Whether a quorum of `voters` (this node included) was heard from since the last check. */
  quorumActive(voters: readonly NodeId[], self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    active.set(self, true);
    for (const pr of this.prs.values()) if (pr.recentActive) active.set(pr.id, true);
    let n = 0;
    for (const id of voters) if (active.get(id)) n++;
    return n >= Math.floor(voters.length / 2) + 1;
  }

  /** Start a new CheckQuorum round. */
  resetRecentActive(): void {
    for (const pr of this.prs.values()) pr.recentActive = false;
  }

  /** Record `from`'s answer, unless it answered already in this campaign. */
  recordVote(from: NodeId, granted: boolean): void {
    if (!this.votes.has(from)) this.votes.set(from, granted);
  }

  tallyVotes(voters: readonly NodeId[]): VoteResult {
    return voteResult(voters, this.votes);
  }

  status(): ProgressStatus[] {
    const progress: ProgressStatus[] = [];
    for (const pr of this.prs.values()) {
      progress.push({
        id: pr.id,
        match: pr.match,
        next: pr.next,
        state: pr.state,
        learner: pr.learner,
        recentActive: pr.recentActive,
      });
    }
    return progress;
  }
}
