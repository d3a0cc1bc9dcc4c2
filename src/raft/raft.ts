/**
 * The Raft consensus core: a deterministic state machine with no I/O, clocks, timers,
 * randomness of its own or Promises. Inputs are `tick()`, `step(message)`, `propose()`,
 * `proposeConfChange()`, `readIndex()`, `transferLeadership()` and `compact()`; output is
 * a {@link Ready} batch that the driver persists, sends and applies, then acknowledges
 * with `advance()` (the ordering contract is documented on the Ready type).
 *
 * Implemented (section numbers refer to Ongaro's dissertation unless said otherwise):
 * - elections with randomized timeouts (§3.4), PreVote (§9.6), CheckQuorum (§6.2), and
 *   the leader lease that CheckQuorum gives followers (they ignore votes while in lease);
 * - replication with batching by count and bytes, pipelining with an in-flight window per
 *   follower (probe / replicate / snapshot states), fast backtracking by conflict term;
 * - commit of current-term entries only (§3.6.2, Figure 8), a no-op entry on election;
 * - snapshots and compaction, InstallSnapshot in resumable chunks (§5);
 * - single-member configuration changes and learners (§4), leadership transfer (§3.10);
 * - ReadIndex reads batched per heartbeat round, optional lease reads (§6.4).
 *
 * This file is the role and step logic: terms and votes, elections, stepping each message
 * by role, replication and commit, transfer, and the Ready batch. The concepts with state
 * of their own live beside it, each stating its invariants: read-only.ts (the ReadIndex
 * queue, lease and fence), tracker.ts (the Progress map, its reconciliation with the
 * configuration, votes and quorum questions), snapshot-transfer.ts (chunked
 * InstallSnapshot), membership.ts (the configuration in force, its history, the members
 * the log adds), log.ts, config.ts, status.ts. What remains is one concept and stays one
 * file because every step reads and writes the same few fields (term, role, leader, the
 * log, the election and heartbeat timers, the outgoing queues): splitting it further would
 * expose those fields to other modules or add an indirection per message on the hot path.
 *
 * The sender rule (the core trusts no sender; peer authentication in the transport is
 * the first line, this is the second). A sender is *known* when it is in the applied
 * configuration or is added by a configuration entry anywhere in this node's log above it,
 * committed or not (a learner being added, a voter being promoted). A node removed by an
 * applied change is no longer known: its campaigns cannot disrupt the cluster (§4.2.3).
 * raftkv changes one member at a time, so there is no joint configuration to consult.
 * - Messages from known senders are handled as Raft says.
 * - From an unknown sender, only leader traffic (Append, Heartbeat, Snapshot) may be
 *   handled, and only by a node that knows no configuration at all (it is joining, with an
 *   empty log) or has heard no known leader for electionTick ticks: a node that was away
 *   while the membership changed must still accept the leader that brings it the newer
 *   configuration. Such a leader holds back neither this node's election timer nor a
 *   lease (votes are granted as if there were no leader), so a forged leader cannot keep
 *   a node from electing a real one. A follower also takes read-index answers from the
 *   leader it follows, and a node that knows no configuration at all answers vote requests
 *   (by the log rule, §4.2.1): it may be a voter added while it was unreachable, whose vote
 *   the cluster needs to elect the leader that would bring it the configuration. Everything
 *   else from an unknown sender (other votes and their answers, replication answers,
 *   TimeoutNow, forwarded proposals and reads) is dropped.
 * - Every drop is counted (`status().refused.nonMemberMessages`).
 * What this costs: a node that missed the change adding a candidate does not vote for it
 * until a leader has brought it up to date (it does vote once it holds that entry); and a
 * node catching up from a leader it does not know yet keeps its election timer, so with
 * PreVote off a catch-up longer than an election timeout may cost an election.
 * What it does not do: an unauthenticated sender can still mislead a node that has lost
 * touch with its leader; keeping such senders out is the transport's job.
 *
 * Forwarded proposals are validated by the leader as if proposed locally: data entries
 * only (membership changes go through proposeConfChange on the leader, with its
 * one-at-a-time, own-term and validity rules), each at most maxEntryBytes; a proposal
 * holding anything else is dropped whole and counted.
 *
 * Configuration entries that do not decode are applied as no-ops on every member (the
 * same bytes fail the same way everywhere) and counted.
 *
 * Invariants (checked by the simulator after every step):
 * - at most one leader per term; a node votes at most once per term (vote is persisted
 *   before any vote reply is sent);
 * - a leader never overwrites its log; entries are committed only by counting replicas of
 *   an entry of the leader's current term, and the leader counts itself only once its own
 *   log is durable;
 * - applied <= committed, and both only grow.
 */

import { encodeConfChange, validateConfChange } from './confchange.ts';
import { type RaftConfig, validateRaftConfig } from './config.ts';
import { RaftUsageError } from './errors.ts';
import { RaftLog } from './log.ts';
import { Membership } from './membership.ts';
import { type Progress, ProgressState } from './progress.ts';
import { VoteResult } from './quorum.ts';
import { ReadOnlyState } from './read-only.ts';
import { coalesceAcks, sameHard, sameSoft } from './ready.ts';
import type { Rng } from './rng.ts';
import { nextSnapshotChunk, SNAPSHOT_COMPLETE, SnapshotReceiver } from './snapshot-transfer.ts';
import { type ProposeOutcome, ProposeRejection, type RaftStatus } from './status.ts';
import { ProgressTracker } from './tracker.ts';
import {
  type AppendRequest,
  type AppendResponse,
  type ConfChange,
  type ConfState,
  type DurableState,
  type Entry,
  EntryType,
  type HardState,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type ProposeRequest,
  type ReadFailure,
  type ReadIndexRequest,
  type ReadIndexResponse,
  type ReadState,
  type Ready,
  Role,
  type Snapshot,
  type SnapshotRequest,
  type SnapshotResponse,
  type SoftState,
  type VoteRequest,
  type VoteResponse,
} from './types.ts';

// The names importers of this module used before the split (the public surface is index.ts).
export { bootstrapState, emptyState } from './bootstrap.ts';
export { DEFAULT_RAFT_CONFIG, type RaftConfig, validateRaftConfig } from './config.ts';
export { RaftConfigError, RaftError, RaftUsageError } from './errors.ts';
export {
  type ProgressStatus,
  type ProposeOutcome,
  ProposeRejection,
  type RaftStatus,
  type RefusedCounts,
} from './status.ts';

const EMPTY = new Uint8Array(0);

export class Raft {
  readonly id: NodeId;
  private readonly electionTick: number;
  private readonly heartbeatTick: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly readOnly: 'safe' | 'lease';
  private readonly maxMsgEntries: number;
  private readonly maxMsgBytes: number;
  private readonly maxInflight: number;
  private readonly maxSnapshotChunk: number;
  private readonly maxEntryBytes: number;
  private readonly eagerCommit: boolean;
  private readonly rng: Rng;

  private term: number;
  private vote: NodeId;
  private lead: NodeId = NONE;
  private role: Role = Role.Follower;
  private readonly log: RaftLog;
  /** The configuration in force, its history and the members the log adds (membership.ts). */
  private readonly members = new Membership();
  /** The leader's Progress per member, and the votes of a campaign (tracker.ts). */
  private readonly tracker = new ProgressTracker();
  /** `tracker.prs`, read on every replication message. */
  private readonly prs: Map<NodeId, Progress>;
  /** The leader's ReadIndex queue and lease (read-only.ts). */
  private readonly reads = new ReadOnlyState();
  /** Chunks of a snapshot the leader is sending this node (snapshot-transfer.ts). */
  private readonly incoming = new SnapshotReceiver();

  /** Ticks since this node last heard leader traffic from a known sender (or led itself). */
  private knownLeaderElapsed = 0;
  private nonMemberMessages = 0;
  private refusedForwards = 0;
  /** Index up to which the driver has applied entries (reported by advance()). */
  private appliedIndex: number;

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee: NodeId = NONE;
  private transferElapsed = 0;
  private pendingConfIndex = 0;

  /** Latest snapshot known durable here (sent to followers that fell behind compaction). */
  private snapshot: Snapshot | null;
  /** A snapshot received from the leader, to hand out in the next Ready. */
  private pendingSnapshot: Snapshot | null = null;

  private msgs: Message[] = [];
  private eager: Message[] = [];
  private readStates: ReadState[] = [];
  private readFailures: ReadFailure[] = [];

  /** Inside catchUp(): no quorum check, and one heartbeat round for the whole stall. */
  private catchingUp = false;
  private heartbeatDue = false;
  /**
   * With lease reads, a restarted node may have been in a leader's lease when it stopped:
   * it honours that lease for electionTick ticks after starting.
   */
  private startupLease: boolean;
  // Follower work batched until the next ready().
  private forwardReads: number[] = [];
  private forwardProps: { type: EntryType; data: Uint8Array }[] = [];
  // Leader work batched until the next ready().
  private needBroadcast = false;
  private commitChanged = false;
  /** A newly committed range holds a configuration change: tell followers now, even when piggybacking. */
  private commitHasConf = false;

  private prevHard: HardState;
  private prevSoft: SoftState;
  private outstanding: Ready | null = null;

  /** Throws a RaftConfigError naming the setting if `config` breaks a rule (validateRaftConfig). */
  constructor(config: RaftConfig, durable: DurableState) {
    const c = validateRaftConfig(config);
    this.id = c.id;
    this.electionTick = c.electionTick;
    this.heartbeatTick = c.heartbeatTick;
    this.preVote = c.preVote;
    this.checkQuorum = c.checkQuorum;
    this.readOnly = c.readOnly;
    this.maxMsgEntries = c.maxMsgEntries;
    this.maxMsgBytes = c.maxMsgBytes;
    this.maxInflight = c.maxInflight;
    this.maxSnapshotChunk = c.maxSnapshotChunk;
    this.maxEntryBytes = c.maxEntryBytes;
    this.eagerCommit = c.commitBroadcast === 'eager';
    this.rng = c.rng;
    this.prs = this.tracker.prs;

    const snap = durable.snapshot;
    this.snapshot = snap;
    const offset = snap ? snap.meta.index : 0;
    const offsetTerm = snap ? snap.meta.term : 0;
    this.log = new RaftLog(offset, offsetTerm, durable.entries, durable.hardState.commit);
    this.term = durable.hardState.term;
    this.vote = durable.hardState.vote;
    if (this.log.lastTerm() > this.term) {
      // The entries of a write reached the disk but its hard state did not (a torn write):
      // nothing was acknowledged from that write, so adopt the term with no vote.
      this.term = this.log.lastTerm();
      this.vote = NONE;
    }
    this.appliedIndex = offset;
    if (snap) this.members.restore(offset, snap.meta.conf);
    // Committed configuration changes are in force already (they will be handed out
    // again for the state machine; applying them twice is a no-op).
    for (let i = offset + 1; i <= this.log.committed; i++) {
      const e = this.log.entry(i);
      if (e && e.type === EntryType.ConfChange) this.applyConfEntry(e);
    }
    this.members.rescan(this.log);
    this.prevHard = { term: this.term, vote: this.vote, commit: this.log.committed };
    this.startupLease = this.readOnly === 'lease';
    this.becomeFollower(this.term, NONE);
    this.prevSoft = this.softState();
  }

  // ---------------------------------------------------------------- public inputs

  /** Advance logical time by one tick. */
  tick(): void {
    if (this.role === Role.Leader) this.tickLeader();
    else this.tickElection();
  }

  /**
   * Advance logical time by `n` ticks at once, for a driver resuming from a stall (SIGSTOP, a
   * long GC pause, a blocking write): it must tell the core how much time passed before it
   * handles the messages and calls that queued meanwhile, or a lease that expired while the
   * leader stood still would serve reads (§6.4). Every timer moves by `n` ticks (the lease,
   * election, transfer and snapshot timeouts), but the decisions that depend on hearing from
   * others wait for what queued: a follower or candidate does not campaign here (it does at its
   * next tick if its leader is still silent), and a leader skips its quorum checks (the replies
   * that prove its quorum are queued, unread: the next check, at most an election timeout
   * later, counts them) and sends one heartbeat round, at the end. CheckQuorum is liveness
   * only; the lease is measured from heartbeat send times, so it is gone either way.
   */
  catchUp(n: number): void {
    if (n <= 1) {
      if (n === 1) this.tick();
      return;
    }
    let left = n;
    if (this.role === Role.Leader) {
      this.catchingUp = true;
      this.heartbeatDue = false;
      try {
        while (left > 0 && this.role === Role.Leader) {
          this.tickLeader();
          left--;
        }
      } finally {
        this.catchingUp = false;
      }
      if (this.role === Role.Leader && this.heartbeatDue) this.broadcastHeartbeat();
      this.heartbeatDue = false;
    }
    if (left > 0) {
      // Not leader (any more): time passes, the campaign waits for the next tick.
      this.electionElapsed += left;
      this.knownLeaderElapsed += left;
      if (this.electionElapsed >= this.electionTick) this.startupLease = false;
    }
  }

  /**
   * Feed one message from a peer. Messages not addressed to this node are ignored, and so
   * are messages the sender rule refuses (counted in `status().refused`).
   */
  step(m: Message): void {
    if (m.to !== this.id) return;
    if (!this.senderAllowed(m)) {
      this.nonMemberMessages++;
      return;
    }
    // Client traffic between nodes carries no Raft term semantics.
    switch (m.type) {
      case MessageType.Propose:
        this.handleForwardedProposal(m);
        return;
      case MessageType.ReadIndex:
        this.handleForwardedRead(m);
        return;
      case MessageType.ReadIndexResp:
        this.handleReadIndexResp(m);
        return;
      default:
    }
    if (m.term > this.term) {
      const isVote = m.type === MessageType.Vote || m.type === MessageType.PreVote;
      if (isVote && !m.transfer && this.inLease()) return;
      if (m.type === MessageType.PreVote) {
        // Do not change term on a pre-vote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries the term we would campaign with.
      } else if (
        m.type === MessageType.Append ||
        m.type === MessageType.Heartbeat ||
        m.type === MessageType.Snapshot
      ) {
        // A leader this node does not know (see senderAllowed) moves its term, but does not
        // hold back its election timer: a stranger raising terms cannot stall elections.
        const elapsed = this.electionElapsed;
        this.becomeFollower(m.term, m.from);
        if (!this.members.isKnown(m.from)) this.electionElapsed = elapsed;
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if (
        (this.checkQuorum || this.preVote) &&
        (m.type === MessageType.Append || m.type === MessageType.Heartbeat)
      ) {
        // A stale leader: tell it our term so it steps down (it may be cut off by PreVote).
        this.send(this.appendResp(m.from, 0, false));
      } else if (m.type === MessageType.PreVote) {
        this.send<VoteResponse>({
          type: MessageType.PreVoteResp,
          from: this.id,
          to: m.from,
          term: this.term,
          reject: true,
        });
      }
      return;
    }

    switch (m.type) {
      case MessageType.PreVote:
      case MessageType.Vote:
        this.handleVoteRequest(m);
        return;
      default:
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        return;
      case Role.PreCandidate:
      case Role.Candidate:
        this.stepCandidate(m);
        return;
      case Role.Follower:
        this.stepFollower(m);
        return;
    }
  }

  /** Propose application data. On a follower it is forwarded to the leader in the next Ready. */
  propose(data: Uint8Array): ProposeOutcome {
    return this.proposeEntry(EntryType.Normal, data);
  }

  /** Propose a membership change. Only the leader accepts it; one change at a time. */
  proposeConfChange(cc: ConfChange): ProposeOutcome {
    if (this.role !== Role.Leader) {
      return this.reject(
        ProposeRejection.NotLeader,
        `${this.id} is not the leader (leader: ${this.lead || 'unknown'})`,
      );
    }
    if (this.log.term(this.log.committed) !== this.term) {
      return this.reject(
        ProposeRejection.ConfChangePending,
        'the leader has not committed an entry of its term yet',
      );
    }
    if (this.pendingConfIndex > this.appliedIndex) {
      return this.reject(
        ProposeRejection.ConfChangePending,
        `configuration change at index ${this.pendingConfIndex} is not applied yet`,
      );
    }
    const why = validateConfChange(this.members.conf, cc);
    if (why !== null) return this.reject(ProposeRejection.InvalidConfChange, why);
    const out = this.proposeEntry(EntryType.ConfChange, encodeConfChange(cc));
    if (out.kind === 'appended') this.pendingConfIndex = out.index;
    return out;
  }

  /**
   * Ask for a linearizable read. The answer comes in a later Ready: a ReadState with the
   * index to wait for (serve the read once that index is applied), or a ReadFailure.
   */
  readIndex(ctx: number): void {
    if (this.role === Role.Leader) this.handleReadRequest(ctx, this.id);
    else if (this.lead !== NONE && this.role === Role.Follower) this.forwardReads.push(ctx);
    else this.readFailures.push({ ctx, reason: 'no-leader' });
  }

  /** Hand leadership to `to` (a voter): bring it up to date, then tell it to campaign at once. */
  transferLeadership(to: NodeId): { ok: true } | { ok: false; message: string } {
    if (this.role !== Role.Leader) return { ok: false, message: `${this.id} is not the leader` };
    if (to === this.id) return { ok: false, message: `${to} is already the leader` };
    const pr = this.prs.get(to);
    if (!pr || pr.learner) return { ok: false, message: `${to} is not a voter` };
    this.leadTransferee = to;
    this.transferElapsed = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.maybeSendAppend(pr, true);
    return { ok: true };
  }

  /**
   * The transport could not deliver to `id` (connection lost): stop streaming to it
   * optimistically and probe once it answers again.
   */
  reportUnreachable(id: NodeId): void {
    const pr = this.prs.get(id);
    if (this.role === Role.Leader && pr && pr.state === ProgressState.Replicate) pr.becomeProbe();
  }

  /**
   * The state machine took a snapshot at `index` (<= applied) whose content is `data`:
   * keep it to send to lagging followers and drop log entries up to `index - retain`.
   * The driver stores the snapshot durably (RaftStorage.compact) itself.
   */
  compact(index: number, data: Uint8Array, retain = 0): Snapshot {
    if (index > this.appliedIndex) {
      throw new RaftUsageError(`cannot snapshot at ${index}: only ${this.appliedIndex} applied`);
    }
    if (index < this.log.compactedTo() || (this.snapshot && index < this.snapshot.meta.index)) {
      throw new RaftUsageError(`cannot snapshot at ${index}: already compacted to ${this.log.compactedTo()}`);
    }
    const term = this.log.term(index);
    if (term < 0) throw new RaftUsageError(`cannot snapshot at ${index}: entry not in the log`);
    const snap: Snapshot = { meta: { index, term, conf: this.members.at(index) }, data };
    this.snapshot = snap;
    this.log.compact(Math.max(this.log.compactedTo(), index - retain));
    this.members.compact(index);
    return snap;
  }

  // ---------------------------------------------------------------- Ready / advance

  hasReady(): boolean {
    if (this.outstanding) return false;
    return (
      this.msgs.length > 0 ||
      this.eager.length > 0 ||
      this.readStates.length > 0 ||
      this.readFailures.length > 0 ||
      this.needBroadcast ||
      this.commitChanged ||
      this.reads.needRound ||
      this.reads.remoteReads.size > 0 ||
      this.forwardReads.length > 0 ||
      this.forwardProps.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.stable < this.log.lastIndex() ||
      this.log.nextCommitted(1).length > 0 ||
      !sameHard(this.prevHard, this.hardState()) ||
      !sameSoft(this.prevSoft, this.softState())
    );
  }

  /**
   * Messages that may leave at once (the kind of Ready.eagerMessages: replication traffic
   * and forwarding), taken without waiting for the next Ready. A driver calls this while
   * it persists a Ready, so followers receive new entries while the leader fsyncs.
   */
  takeEagerMessages(): Message[] {
    this.flush();
    const m = this.eager;
    this.eager = [];
    return m;
  }

  ready(): Ready {
    if (this.outstanding) throw new RaftUsageError('ready() called again before advance()');
    this.flush();
    const hs = this.hardState();
    const hardState = sameHard(hs, this.prevHard) ? null : hs;
    this.prevHard = hs;
    const softState = this.softState();
    this.prevSoft = softState;
    const snapshot = this.pendingSnapshot;
    if (snapshot) this.log.appliedTo(snapshot.meta.index);
    const committedEntries = this.log.nextCommitted();
    const lastCommitted = committedEntries[committedEntries.length - 1];
    if (lastCommitted) this.log.appliedTo(lastCommitted.index);
    const rd: Ready = {
      softState,
      hardState,
      snapshot,
      entries: this.log.unstableEntries(),
      committedEntries,
      eagerMessages: this.eager,
      messages: coalesceAcks(this.msgs),
      readStates: this.readStates,
      readFailures: this.readFailures,
    };
    this.eager = [];
    this.msgs = [];
    this.readStates = [];
    this.readFailures = [];
    this.outstanding = rd;
    return rd;
  }

  /** The driver persisted, sent and applied `rd` as the Ready contract says. */
  advance(rd: Ready): void {
    if (this.outstanding !== rd)
      throw new RaftUsageError('advance() with a Ready that is not the outstanding one');
    this.outstanding = null;
    if (rd.snapshot) {
      if (!this.snapshot || this.snapshot.meta.index < rd.snapshot.meta.index) this.snapshot = rd.snapshot;
      if (this.pendingSnapshot === rd.snapshot) this.pendingSnapshot = null;
      if (rd.snapshot.meta.index > this.appliedIndex) this.appliedIndex = rd.snapshot.meta.index;
    }
    const last = rd.entries[rd.entries.length - 1];
    if (last) this.log.stableTo(last.index, last.term);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) this.applyConfEntry(e);
      this.appliedIndex = e.index;
    }
    if (this.role === Role.Leader) {
      if (last) this.maybeCommit();
      this.stepDownIfRemoved();
    }
  }

  // ---------------------------------------------------------------- inspection

  status(): RaftStatus {
    const progress = this.tracker.status();
    return {
      id: this.id,
      term: this.term,
      vote: this.vote,
      role: this.role,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.appliedIndex,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      conf: this.members.conf,
      progress,
      transferee: this.leadTransferee,
      refused: {
        nonMemberMessages: this.nonMemberMessages,
        forwardedProposals: this.refusedForwards,
        malformedConfChanges: this.members.malformed,
      },
    };
  }

  get currentTerm(): number {
    return this.term;
  }
  get currentRole(): Role {
    return this.role;
  }
  get leader(): NodeId {
    return this.lead;
  }
  get commitIndex(): number {
    return this.log.committed;
  }
  get lastIndex(): number {
    return this.log.lastIndex();
  }
  get configuration(): ConfState {
    return this.members.conf;
  }
  /** Term of the entry at `index`, or -1 when compacted or absent. */
  termAt(index: number): number {
    return this.log.term(index);
  }
  /** The entry at `index` if it is still in the in-memory log. */
  entryAt(index: number): Entry | undefined {
    return this.log.entry(index);
  }
  get latestSnapshot(): Snapshot | null {
    return this.snapshot;
  }

  // ---------------------------------------------------------------- roles

  private reset(term: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTick + this.rng.int(this.electionTick);
    this.leadTransferee = NONE;
    this.transferElapsed = 0;
    this.tracker.reset();
    this.needBroadcast = false;
    this.commitChanged = false;
    this.reads.needRound = false;
  }

  private becomeFollower(term: number, lead: NodeId): void {
    this.failLeaderReads();
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
  }

  private becomePreCandidate(): void {
    this.failLeaderReads();
    // Like a follower, but keeps its term and vote; it has no leader.
    const { term } = this;
    this.reset(term);
    this.role = Role.PreCandidate;
  }

  private becomeCandidate(): void {
    this.failLeaderReads();
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
  }

  private becomeLeader(): void {
    this.reset(this.term);
    this.role = Role.Leader;
    this.lead = this.id;
    this.knownLeaderElapsed = 0;
    this.tracker.initLeader(this.members.conf, this.id, this.log.lastIndex() + 1);
    this.pendingConfIndex = this.log.lastIndex();
    this.reads.reset();
    // The no-op of §8: commits the entries of earlier terms, and makes ReadIndex safe.
    this.appendEntries([{ type: EntryType.Normal, data: EMPTY }]);
  }

  private promotable(): boolean {
    return this.members.isVoter(this.id);
  }

  private inLease(): boolean {
    if (!this.checkQuorum || this.electionElapsed >= this.electionTick) return false;
    return (this.lead !== NONE && this.members.isKnown(this.lead)) || this.startupLease;
  }

  private campaign(kind: 'pre' | 'election' | 'transfer'): void {
    if (!this.promotable() || this.hasUnappliedConfChange()) return;
    const pre = kind === 'pre';
    if (pre) this.becomePreCandidate();
    else this.becomeCandidate();
    const voteTerm = pre ? this.term + 1 : this.term;
    this.tracker.votes.set(this.id, true);
    const result = this.tracker.tallyVotes(this.members.conf.voters);
    if (result === VoteResult.Won) {
      if (pre) this.campaign('election');
      else this.becomeLeader();
      return;
    }
    for (const id of this.members.conf.voters) {
      if (id === this.id) continue;
      const m: VoteRequest = {
        type: pre ? MessageType.PreVote : MessageType.Vote,
        from: this.id,
        to: id,
        term: voteTerm,
        lastLogIndex: this.log.lastIndex(),
        lastLogTerm: this.log.lastTerm(),
        transfer: kind === 'transfer',
      };
      // A pre-vote claims nothing durable; a vote request needs our term and vote on disk.
      if (pre) this.eager.push(m);
      else this.msgs.push(m);
    }
  }

  private hasUnappliedConfChange(): boolean {
    for (let i = this.appliedIndex + 1; i <= this.log.committed; i++) {
      const e = this.log.entry(i);
      if (e && e.type === EntryType.ConfChange) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- ticks

  private tickElection(): void {
    this.electionElapsed++;
    this.knownLeaderElapsed++;
    if (this.electionElapsed >= this.electionTick) this.startupLease = false;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(this.preVote ? 'pre' : 'election');
    }
  }

  private tickLeader(): void {
    this.knownLeaderElapsed = 0;
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.reads.leaderTicks++;
    if (this.electionElapsed >= this.electionTick) {
      this.electionElapsed = 0;
      // Not while catching up: the replies that prove the quorum are queued, unread.
      if (this.checkQuorum && !this.catchingUp) {
        if (!this.tracker.quorumActive(this.members.conf.voters, this.id)) {
          this.becomeFollower(this.term, NONE);
          return;
        }
        this.tracker.resetRecentActive();
      }
    }
    if (this.leadTransferee !== NONE && ++this.transferElapsed >= this.electionTick) {
      this.leadTransferee = NONE;
      this.transferElapsed = 0;
    }
    for (const pr of this.prs.values()) {
      if (pr.state === ProgressState.Snapshot && ++pr.snapshotIdle >= this.electionTick) {
        pr.snapshotIdle = 0;
        this.sendSnapshotChunk(pr);
      }
    }
    if (this.heartbeatElapsed >= this.heartbeatTick) {
      this.heartbeatElapsed = 0;
      if (this.catchingUp) this.heartbeatDue = true;
      else this.broadcastHeartbeat();
    }
  }

  // ---------------------------------------------------------------- message handling

  private handleVoteRequest(m: VoteRequest): void {
    const pre = m.type === MessageType.PreVote;
    const canVote =
      this.vote === m.from || (this.vote === NONE && this.lead === NONE) || (pre && m.term > this.term);
    const respType = pre ? MessageType.PreVoteResp : MessageType.VoteResp;
    if (canVote && this.log.isUpToDate(m.lastLogIndex, m.lastLogTerm)) {
      // A grant answers in the term asked about; a real vote is recorded (and persisted
      // before the reply leaves, since replies go in Ready.messages).
      this.send<VoteResponse>({ type: respType, from: this.id, to: m.from, term: m.term, reject: false });
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send<VoteResponse>({ type: respType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.AppendResp:
        this.handleAppendResp(m);
        return;
      case MessageType.HeartbeatResp:
        this.handleHeartbeatResp(m);
        return;
      case MessageType.SnapshotResp:
        this.handleSnapshotResp(m);
        return;
      default:
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        // Someone won this term.
        this.becomeFollower(this.term, m.from);
        this.stepFollower(m);
        return;
      case MessageType.PreVoteResp:
      case MessageType.VoteResp: {
        const mine = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== mine) return;
        this.tracker.recordVote(m.from, !m.reject);
        const result = this.tracker.tallyVotes(this.members.conf.voters);
        if (result === VoteResult.Won) {
          if (this.role === Role.PreCandidate) this.campaign('election');
          else this.becomeLeader();
        } else if (result === VoteResult.Lost) {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Append:
        this.heardFromLeader(m.from);
        this.handleAppend(m);
        return;
      case MessageType.Heartbeat:
        this.heardFromLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snapshot:
        this.heardFromLeader(m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.TimeoutNow:
        this.campaign('transfer');
        return;
      default:
    }
  }

  private appendResp(
    to: NodeId,
    index: number,
    reject: boolean,
    hintIndex = 0,
    hintTerm = 0,
  ): AppendResponse {
    return {
      type: MessageType.AppendResp,
      from: this.id,
      to,
      term: this.term,
      index,
      reject,
      hintIndex,
      hintTerm,
    };
  }

  private handleAppend(m: AppendRequest): void {
    if (m.prevIndex < this.log.committed) {
      this.send(this.appendResp(m.from, this.log.committed, false));
      return;
    }
    const last = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.entries);
    if (last >= 0) {
      if (this.members.mayChange(m)) this.members.rescan(this.log);
      this.log.commitTo(Math.min(m.commit, last));
      this.send(this.appendResp(m.from, last, false));
      return;
    }
    const hintIndex = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm);
    this.send(this.appendResp(m.from, m.prevIndex, true, hintIndex, this.log.term(hintIndex)));
  }

  private handleHeartbeat(m: HeartbeatRequest): void {
    this.log.commitTo(m.commit);
    this.send<HeartbeatResponse>({
      type: MessageType.HeartbeatResp,
      from: this.id,
      to: m.from,
      term: this.term,
      readSeq: m.readSeq,
    });
  }

  private handleSnapshot(m: SnapshotRequest): void {
    const { meta } = m;
    if (meta.index <= this.log.committed) {
      this.incoming.reset();
      this.send(this.appendResp(m.from, this.log.committed, false));
      return;
    }
    const offset = this.incoming.receive(m);
    if (offset !== SNAPSHOT_COMPLETE) {
      this.send<SnapshotResponse>({
        type: MessageType.SnapshotResp,
        from: this.id,
        to: m.from,
        term: this.term,
        index: meta.index,
        offset,
      });
      return;
    }
    const data = this.incoming.take();
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We hold that entry: the snapshot adds nothing but the knowledge that it committed.
      this.log.commitTo(meta.index);
    } else {
      this.log.restore(meta);
      this.members.restore(meta.index, meta.conf);
      this.pendingSnapshot = { meta, data };
    }
    this.send(this.appendResp(m.from, meta.index, false));
  }

  private handleAppendResp(m: AppendResponse): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.reject) {
      const hint = m.hintTerm > 0 ? this.log.findConflictByTerm(m.hintIndex, m.hintTerm) : m.hintIndex;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        this.maybeSendAppend(pr, true);
      }
      return;
    }
    const wasPaused = pr.isPaused(this.maxInflight);
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === ProgressState.Probe) pr.becomeReplicate();
    else if (pr.state === ProgressState.Snapshot && pr.match >= pr.pendingSnapshot) pr.becomeReplicate();
    if (this.maybeCommit()) {
      // Everyone hears about the new commit index at the next flush.
    } else if (wasPaused || pr.next <= this.log.lastIndex()) {
      this.maybeSendAppend(pr, false);
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResp(m: HeartbeatResponse): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.readSeq > pr.ackedSeq) pr.ackedSeq = m.readSeq;
    pr.probeSent = false;
    if (pr.state === ProgressState.Replicate && pr.match < this.log.lastIndex()) {
      // No acknowledgement for a whole heartbeat round while entries are outstanding: an
      // Append was lost. Fall back to probing from the last known match.
      if (pr.match === pr.matchAtHeartbeat) pr.becomeProbe();
    }
    pr.matchAtHeartbeat = pr.match;
    if (pr.match < this.log.lastIndex()) this.maybeSendAppend(pr, false);
    if (this.reads.hasQueued()) this.releaseReads();
  }

  private handleSnapshotResp(m: SnapshotResponse): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (pr.state !== ProgressState.Snapshot || m.index !== pr.pendingSnapshot) return;
    pr.snapshotOffset = m.offset;
    pr.snapshotIdle = 0;
    this.sendSnapshotChunk(pr);
  }

  private handleForwardedProposal(m: ProposeRequest): void {
    if (this.role !== Role.Leader || this.leadTransferee !== NONE) return; // the client times out and retries
    // Validated as if proposed here: a follower forwards only data entries that passed its
    // own propose() (configuration changes are proposed on the leader, where the one-at-a-time,
    // own-term and validity rules apply). Anything else is not from a well-behaved member.
    for (const e of m.entries) {
      if (e.type !== EntryType.Normal || e.data.byteLength > this.maxEntryBytes) {
        this.refusedForwards++;
        return;
      }
    }
    this.appendEntries(m.entries);
  }

  private handleForwardedRead(m: ReadIndexRequest): void {
    if (this.role !== Role.Leader) {
      this.send<ReadIndexResponse>({
        type: MessageType.ReadIndexResp,
        from: this.id,
        to: m.from,
        term: this.term,
        ctxs: m.ctxs,
        index: -1,
      });
      return;
    }
    for (const ctx of m.ctxs) this.handleReadRequest(ctx, m.from);
  }

  private handleReadIndexResp(m: ReadIndexResponse): void {
    for (const ctx of m.ctxs) {
      if (m.index < 0) this.readFailures.push({ ctx, reason: 'not-leader' });
      else this.readStates.push({ ctx, index: m.index });
    }
  }

  // ---------------------------------------------------------------- leader machinery

  private proposeEntry(type: EntryType, data: Uint8Array): ProposeOutcome {
    if (data.byteLength > this.maxEntryBytes) {
      return this.reject(
        ProposeRejection.EntryTooLarge,
        `entry of ${data.byteLength} bytes is above maxEntryBytes (${this.maxEntryBytes})`,
      );
    }
    if (this.role === Role.Leader) {
      if (this.leadTransferee !== NONE) {
        return this.reject(ProposeRejection.Transferring, `leadership is moving to ${this.leadTransferee}`);
      }
      const index = this.log.lastIndex() + 1;
      this.appendEntries([{ type, data }]);
      return { kind: 'appended', index, term: this.term };
    }
    if (this.role === Role.Follower && this.lead !== NONE) {
      if (type === EntryType.ConfChange) {
        return this.reject(ProposeRejection.NotLeader, `${this.id} is not the leader (leader: ${this.lead})`);
      }
      this.forwardProps.push({ type, data });
      return { kind: 'forwarded', to: this.lead };
    }
    return this.reject(ProposeRejection.NoLeader, 'no leader is known (election in progress or no quorum)');
  }

  private reject(reason: ProposeRejection, message: string): ProposeOutcome {
    return { kind: 'rejected', reason, message };
  }

  private appendEntries(items: readonly { type: EntryType; data: Uint8Array }[]): void {
    let index = this.log.lastIndex();
    const entries: Entry[] = items.map((it) => ({
      term: this.term,
      index: ++index,
      type: it.type,
      data: it.data,
    }));
    this.log.append(entries);
    for (const e of entries) if (e.type === EntryType.ConfChange) this.members.noteLogAdd(e);
    this.needBroadcast = true;
    // A lone voter commits on its own durability: advance() calls maybeCommit().
  }

  /** Commit the largest index replicated on a quorum, if it is of the current term. */
  private maybeCommit(): boolean {
    const mci = this.tracker.committed(this.members.conf.voters, this.id, this.log.stable);
    if (!Number.isFinite(mci) || mci <= this.log.committed) return false;
    if (this.log.term(mci) !== this.term) return false;
    const firstInTerm = this.log.term(this.log.committed) !== this.term;
    // Membership takes effect when applied, and a follower applies only what it knows is
    // committed: a committed change (above all a leader removing itself, which then goes
    // quiet) must reach the followers at once, or they may keep needing a removed vote.
    if (this.pendingConfIndex > this.log.committed && this.pendingConfIndex <= mci) this.commitHasConf = true;
    this.log.commitTo(mci);
    this.commitChanged = true;
    const waiting = firstInTerm ? this.reads.takeAwaitingCommit() : null;
    if (waiting !== null) for (const r of waiting) this.handleReadRequest(r.ctx, r.from);
    return true;
  }

  /**
   * Send `pr` what it is missing: one Append in probe state, as many as the window allows
   * in replicate state, or snapshot chunks. An empty Append (for the commit index) only if
   * `sendIfEmpty`.
   */
  private maybeSendAppend(pr: Progress, sendIfEmpty: boolean): void {
    let first = true;
    while (!pr.isPaused(this.maxInflight)) {
      const prevIndex = pr.next - 1;
      const prevTerm = this.log.term(prevIndex);
      if (prevTerm < 0 || prevIndex < this.log.compactedTo()) {
        this.startSnapshot(pr);
        return;
      }
      const last = this.log.lastIndex();
      const entries =
        pr.next <= last ? this.log.slice(pr.next, last, this.maxMsgEntries, this.maxMsgBytes) : [];
      // A probe is worth sending empty: its answer tells where the logs match.
      if (entries.length === 0 && !((sendIfEmpty || pr.state === ProgressState.Probe) && first)) return;
      const m: AppendRequest = {
        type: MessageType.Append,
        from: this.id,
        to: pr.id,
        term: this.term,
        prevIndex,
        prevTerm,
        entries,
        commit: this.log.committed,
      };
      this.eager.push(m);
      pr.sentEntries(prevIndex + entries.length, entries.length);
      first = false;
      if (entries.length === 0 || pr.state !== ProgressState.Replicate) return;
    }
  }

  private startSnapshot(pr: Progress): void {
    const snap = this.snapshot;
    if (!snap) throw new RaftUsageError(`log compacted to ${this.log.compactedTo()} without a snapshot`);
    pr.becomeSnapshot(snap.meta.index);
    this.sendSnapshotChunk(pr);
  }

  private sendSnapshotChunk(pr: Progress): void {
    const snap = this.snapshot;
    if (!snap) return;
    const m = nextSnapshotChunk(pr, snap, this.maxSnapshotChunk, this.id, this.term);
    if (m !== null) this.eager.push(m);
  }

  private sendTimeoutNow(to: NodeId): void {
    // The target may win at once, ignoring leases, whenever this message arrives: even after
    // the transfer is given up and later heartbeats are acknowledged. So no acknowledgement
    // proves our lease for the rest of this term: lease reads fall back to ReadIndex rounds.
    this.reads.fenceLease();
    this.eager.push({ type: MessageType.TimeoutNow, from: this.id, to, term: this.term });
  }

  private broadcastHeartbeat(): void {
    const seq = this.reads.startRound();
    for (const pr of this.prs.values()) {
      this.eager.push({
        type: MessageType.Heartbeat,
        from: this.id,
        to: pr.id,
        term: this.term,
        commit: Math.min(pr.match, this.log.committed),
        readSeq: seq,
      } satisfies HeartbeatRequest);
    }
    // A lone voter confirms its own leadership.
    if (this.reads.hasQueued()) this.releaseReads();
  }

  private handleReadRequest(ctx: number, from: NodeId): void {
    if (this.log.term(this.log.committed) !== this.term) {
      // Until an entry of this term commits, our commit index may be behind (§6.4 step 1).
      this.reads.awaitCommit(ctx, from);
      return;
    }
    const index = this.log.committed;
    if (this.readOnly === 'lease' && this.leaseValid()) {
      this.reads.releaseOne(ctx, from, index, this.id, this.readStates);
      return;
    }
    this.reads.add(ctx, from, index);
  }

  /** Highest heartbeat sequence number acknowledged by a quorum (this node counts its own). */
  private quorumAckedSeq(): number {
    return this.tracker.quorumAckedSeq(this.members.conf.voters, this.id, this.reads.hbSeq);
  }

  /** Whether a read may be served at once, without a heartbeat round (ReadOnlyState.leaseValid). */
  private leaseValid(): boolean {
    return this.leadTransferee === NONE && this.reads.leaseValid(this.quorumAckedSeq(), this.electionTick);
  }

  private releaseReads(): void {
    this.reads.release(this.quorumAckedSeq(), this.id, this.readStates);
  }

  private failLeaderReads(): void {
    this.reads.failAll(this.id, this.term, this.readFailures, this.msgs);
  }

  /** Turn batched intentions into messages, once per Ready. */
  private flush(): void {
    if (this.role === Role.Leader) {
      const withCommit = this.commitChanged && (this.eagerCommit || this.commitHasConf);
      if (this.needBroadcast || withCommit) {
        for (const pr of this.prs.values()) this.maybeSendAppend(pr, withCommit);
        this.needBroadcast = false;
      }
      this.commitChanged = false;
      this.commitHasConf = false;
      if (this.reads.needRound) {
        this.reads.needRound = false;
        this.heartbeatElapsed = 0;
        this.broadcastHeartbeat();
      }
      for (const [to, batches] of this.reads.remoteReads) {
        // With commits piggybacked, a follower asking for a read index may not know the commit
        // yet (a lease read skips the heartbeat round that would tell it): tell it first.
        const pr = this.eagerCommit ? undefined : this.prs.get(to);
        if (pr !== undefined) this.maybeSendAppend(pr, true);
        for (const b of batches) {
          this.eager.push({
            type: MessageType.ReadIndexResp,
            from: this.id,
            to,
            term: this.term,
            ctxs: b.ctxs,
            index: b.index,
          } satisfies ReadIndexResponse);
        }
      }
      this.reads.remoteReads.clear();
    } else {
      this.reads.remoteReads.clear();
      this.needBroadcast = false;
      this.commitChanged = false;
      this.commitHasConf = false;
      this.reads.needRound = false;
    }
    if (this.forwardProps.length > 0) {
      if (this.role === Role.Follower && this.lead !== NONE) {
        this.eager.push({
          type: MessageType.Propose,
          from: this.id,
          to: this.lead,
          term: this.term,
          entries: this.forwardProps,
        } satisfies ProposeRequest);
      }
      this.forwardProps = [];
    }
    if (this.forwardReads.length > 0) {
      if (this.role === Role.Follower && this.lead !== NONE) {
        this.eager.push({
          type: MessageType.ReadIndex,
          from: this.id,
          to: this.lead,
          term: this.term,
          ctxs: this.forwardReads,
        } satisfies ReadIndexRequest);
      } else {
        for (const ctx of this.forwardReads) this.readFailures.push({ ctx, reason: 'no-leader' });
      }
      this.forwardReads = [];
    }
  }

  // ---------------------------------------------------------------- configuration

  private applyConfEntry(e: Entry): void {
    if (!this.members.apply(e) || this.role !== Role.Leader) return;
    const conf = this.members.conf;
    this.tracker.reconcile(conf, this.id, this.log.lastIndex() + 1);
    if (this.leadTransferee !== NONE && !conf.voters.includes(this.leadTransferee))
      this.leadTransferee = NONE;
    // A smaller quorum may commit more; new members need the log.
    this.maybeCommit();
    this.needBroadcast = true;
  }

  private stepDownIfRemoved(): void {
    if (this.role === Role.Leader && !this.members.isVoter(this.id)) this.becomeFollower(this.term, NONE);
  }

  // ---------------------------------------------------------------- the sender rule

  /** See the module header: what a sender outside every known configuration may still send. */
  private senderAllowed(m: Message): boolean {
    if (this.members.isKnown(m.from)) return true;
    switch (m.type) {
      case MessageType.Append:
      case MessageType.Heartbeat:
      case MessageType.Snapshot:
        // A leader elected by a configuration this node has not seen yet: this node is new
        // (it knows no configuration) or was away while the membership changed.
        return this.knownLeaderElapsed >= this.electionTick || this.members.knowsNone();
      case MessageType.PreVote:
      case MessageType.Vote:
        // A voter added while it was unreachable knows no configuration to judge candidates
        // by, and the cluster may need its vote to elect the leader that would tell it: it
        // votes without consulting its configuration (§4.2.1), by the usual log rule.
        return this.members.knowsNone();
      case MessageType.ReadIndexResp:
        return m.from === this.lead && this.role === Role.Follower;
      default:
        return false;
    }
  }

  /** Leader traffic: only a known leader holds back this node's election timer and lease. */
  private heardFromLeader(from: NodeId): void {
    this.lead = from;
    if (!this.members.isKnown(from)) return;
    this.electionElapsed = 0;
    this.knownLeaderElapsed = 0;
  }

  // ---------------------------------------------------------------- helpers

  private send<M extends Message>(m: M): void {
    this.msgs.push(m);
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private softState(): SoftState {
    return { role: this.role, leader: this.lead };
  }
}
