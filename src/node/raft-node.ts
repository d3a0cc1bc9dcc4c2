/**
 * RaftNode: the I/O shell around the pure core. It owns the timers, the storage, the
 * transport and the state machine, and offers the friendly API: `propose()` resolves
 * when the entry is applied here (with the state machine's result), `read()` resolves
 * when a linearizable read may be served from the local state machine.
 *
 * The drive loop (one at a time, never re-entrant):
 *   ready() -> send eagerMessages -> persist (one write + one fsync for the whole Ready)
 *   -> send messages -> apply snapshot and committed entries -> resolve reads -> advance()
 * Everything that arrives while a Ready is being persisted (client proposals, peer
 * messages, ticks) accumulates in the core and goes into the next Ready: that is the
 * group commit. A drive is scheduled with setImmediate, so all proposals of one event-loop
 * turn share one Ready.
 *
 * Invariants: a message in `Ready.messages` leaves only after the Ready is durable; the
 * state machine sees entries in log order exactly once per process lifetime (after a
 * restart it is rebuilt from the durable snapshot and replays the log). A read that finds
 * no leader known waits for one (`leaderless`) for at most two election timeouts (the longest
 * randomized one, and the election), then fails with NoLeaderError; it asks for its read
 * index only once a leader is known (checked wherever the core may learn one: after messages,
 * ticks and Readies), so the index comes from a round that started after the read did.
 */
import { parseConfChange } from '../raft/confchange.ts';
import { bootstrapState, Raft, type RaftConfig, type RaftStatus } from '../raft/raft.ts';
import { SeededRng } from '../raft/rng.ts';
import {
  type ConfChange,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  NONE,
  type NodeId,
  type Ready,
  type SoftState,
} from '../raft/types.ts';
import type { RaftStorage } from '../storage/contract.ts';
import type { Transport } from '../transport/transport.ts';
import { envelopePayloadAt, ownSeq, randomProposalStart, randomReadStart, wrapProposal } from './envelope.ts';
import {
  NoLeaderError,
  NotLeaderError,
  RaftNodeStoppedError,
  RejectedError,
  TimeoutError,
} from './errors.ts';
import type { Logger } from './logger.ts';
import { type Applied, PendingWork, type Until } from './pending.ts';
import { type Runtime, realRuntime, type TimerHandle } from './runtime.ts';
import { Snapshotter } from './snapshotter.ts';
import type { StateMachine } from './state-machine.ts';

// Part of RaftNodeOptions: importers of RaftNode find them here too.
export type { Logger } from './logger.ts';
export type { StateMachine } from './state-machine.ts';

export interface RaftNodeOptions<R> {
  readonly id: NodeId;
  readonly storage: RaftStorage;
  readonly transport: Transport;
  readonly stateMachine: StateMachine<R>;
  /** Founding voters: used only when the storage is empty, to bootstrap a new cluster. */
  readonly bootstrap?: readonly NodeId[];
  /** Milliseconds per logical tick. Default 100 (election timeout 1-2 s with electionTick 10). */
  readonly tickMs?: number;
  readonly raft?: Partial<Omit<RaftConfig, 'id' | 'rng'>>;
  /** Take a snapshot after this many applied entries (default 100,000 as in etcd; 0 = never). */
  readonly snapshotEntries?: number;
  /** Entries kept in the log behind a snapshot, for slow followers (default 1,000). */
  readonly retainEntries?: number;
  readonly logger?: Logger;
  /** Seed for election timeouts (default: random). */
  readonly seed?: number;
  /** Called when a committed membership change is applied. */
  readonly onConfChange?: (cc: ConfChange, index: number) => void;
  /** Called when this node's role or known leader changes. */
  readonly onSoftState?: (s: SoftState, term: number) => void;
  /** An fsync slower than this (ms) is logged. Default 100. */
  readonly slowFsyncMs?: number;
  /**
   * Called once when the node stops for good on a storage or state-machine failure (a failed
   * write or fsync: what was acknowledged is durable, but nothing more can be). The node then
   * fails every call at once; a server should exit (fail-stop), as `raftkv serve` does: a
   * process that keeps serving frozen state is worse than one that is down.
   */
  readonly onFatal?: (err: Error) => void;
  /** Scheduler, clocks and randomness (default: Node's own). The simulator injects a virtual one. */
  readonly runtime?: Runtime;
}

const EMPTY = new Uint8Array(0);
const te = new TextEncoder();

export class RaftNode<R> {
  readonly id: NodeId;
  private readonly raft: Raft;
  private readonly storage: RaftStorage;
  private readonly transport: Transport;
  private readonly sm: StateMachine<R>;
  private readonly log: Logger | undefined;
  private readonly tickMs: number;
  private readonly slowFsyncMs: number;
  /** Most ticks delivered at once after a stall: enough for every election timeout to fire. */
  private readonly maxCatchUp: number;
  private readonly opts: RaftNodeOptions<R>;
  private readonly originBytes: Uint8Array;

  private readonly rt: Runtime;
  private timer: TimerHandle | null = null;
  private lastTickAt = 0;
  private driving = false;
  private scheduled = false;
  private stopped = false;
  private stopping: Promise<void> | null = null;
  private idle: Promise<void> = Promise.resolve();
  private fatal: Error | null = null;

  /** Last proposal number used: starts at a random point per run (the per-start nonce, envelope.ts). */
  private seq: number;
  /** Last read context used: starts at a random point per run, like `seq`. */
  private readCtx: number;
  /** Reads that came while no leader was known: their context and when (`rt.now()`). */
  private leaderless: { ctx: number; since: number }[] = [];
  /** How long a read waits for a leader to be known: two election timeouts, in ms. */
  private readonly leaderWaitMs: number;
  /** Proposals, reads and membership changes waiting for their outcome. */
  private readonly pending: PendingWork<R>;
  private readonly snapshots: Snapshotter;
  private applied: number;
  private soft: SoftState;
  /** The hard state last written, and a newer one not written yet (commit-only changes). */
  private savedHard: HardState;
  private unsavedHard: HardState | null = null;
  /** Counters for metrics and tests. */
  readonly counters = {
    readies: 0,
    persists: 0,
    entriesPersisted: 0,
    applied: 0,
    snapshots: 0,
    messagesSent: 0,
  };

  private constructor(opts: RaftNodeOptions<R>, raft: Raft, applied: number) {
    this.opts = opts;
    this.rt = opts.runtime ?? realRuntime;
    this.seq = randomProposalStart((max) => this.rt.randomInt(max));
    this.readCtx = randomReadStart((max) => this.rt.randomInt(max));
    this.id = opts.id;
    this.raft = raft;
    this.storage = opts.storage;
    this.transport = opts.transport;
    this.sm = opts.stateMachine;
    this.log = opts.logger;
    this.tickMs = opts.tickMs ?? 100;
    this.slowFsyncMs = opts.slowFsyncMs ?? 100;
    this.maxCatchUp = Math.max(50, 4 * (opts.raft?.electionTick ?? 10));
    this.leaderWaitMs = 2 * this.tickMs * (opts.raft?.electionTick ?? 10);
    this.originBytes = te.encode(opts.id);
    if (this.originBytes.length > 255) throw new RangeError('node id longer than 255 bytes');
    this.applied = applied;
    this.pending = new PendingWork(this.rt);
    this.snapshots = new Snapshotter({
      raft,
      storage: opts.storage,
      source: opts.stateMachine,
      rt: this.rt,
      log: opts.logger,
      snapshotEntries: opts.snapshotEntries ?? 100_000,
      retainEntries: opts.retainEntries ?? 1_000,
      lastIndex: applied,
      counters: this.counters,
      halted: () => this.stopped || this.fatal !== null,
      wake: () => this.schedule(),
    });
    this.soft = { role: raft.currentRole, leader: raft.leader };
    const st = raft.status();
    this.savedHard = { term: st.term, vote: st.vote, commit: st.commit };
  }

  /** Open the node: load durable state (bootstrapping an empty one if asked), restore the state machine, start ticking. */
  static async start<R>(opts: RaftNodeOptions<R>): Promise<RaftNode<R>> {
    let durable = opts.storage.initialState();
    const empty = durable.hardState.term === 0 && durable.entries.length === 0 && durable.snapshot === null;
    if (empty && opts.bootstrap && opts.bootstrap.length > 0) {
      if (!opts.bootstrap.includes(opts.id)) {
        throw new RangeError(
          `bootstrap voters ${opts.bootstrap.join(',')} do not include this node ${opts.id}`,
        );
      }
      const boot = bootstrapState(opts.bootstrap);
      await opts.storage.persist({ snapshot: null, entries: boot.entries, hardState: boot.hardState });
      durable = boot;
    }
    let applied = 0;
    if (durable.snapshot) {
      opts.stateMachine.restore(durable.snapshot.data, durable.snapshot.meta.index);
      applied = durable.snapshot.meta.index;
    }
    const raft = new Raft(
      {
        // Commits ride on the next Append or heartbeat: half the peer messages per write at low load.
        commitBroadcast: 'piggyback',
        ...opts.raft,
        id: opts.id,
        rng: new SeededRng(opts.seed ?? (opts.runtime ?? realRuntime).randomInt(0x7fffffff)),
      },
      durable,
    );
    const node = new RaftNode(opts, raft, applied);
    node.transport.start({
      onMessages: (batch) => node.onMessages(batch),
      onUnreachable: (peer) => {
        if (!node.stopped) node.raft.reportUnreachable(peer);
      },
    });
    node.lastTickAt = node.rt.now();
    node.timer = node.rt.setInterval(() => node.onTimer(), node.tickMs);
    node.schedule();
    return node;
  }

  // ------------------------------------------------------------------ public API

  /**
   * Replicate `data` and resolve once it is applied on this node, with the state
   * machine's result. Rejects with NoLeaderError when no leader is known (retry later),
   * ProposalDroppedError when another entry took its place, TimeoutError when `until`
   * passes first (the entry may still be applied: its outcome is unknown).
   *
   * `until` is an AbortSignal, or an absolute deadline in `Date.now()` milliseconds. A
   * deadline costs nothing per call (pending work is checked against it on every tick, so
   * it fires up to one tick late); a signal costs an event listener.
   */
  propose(data: Uint8Array, until?: Until): Promise<Applied<R>> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError(this.id));
    if (this.fatal) return Promise.reject(this.fatal);
    if (typeof until === 'object' && until.aborted) return Promise.reject(new TimeoutError('proposal'));
    this.catchUpTicks();
    const seq = ++this.seq;
    const out = this.raft.propose(wrapProposal(this.originBytes, seq, data));
    if (out.kind === 'rejected') {
      if (out.reason === 'not-leader') return Promise.reject(new NotLeaderError(this.raft.leader));
      // Not retryable: the same entry would be refused again.
      if (out.reason === 'entry-too-large') return Promise.reject(new RejectedError(out.reason, out.message));
      return Promise.reject(new NoLeaderError(out.message));
    }
    this.schedule();
    const index = out.kind === 'appended' ? out.index : 0;
    const term = out.kind === 'appended' ? out.term : 0;
    return new Promise<Applied<R>>((resolve, reject) =>
      this.pending.addProposal(seq, index, term, until, resolve, reject),
    );
  }

  /**
   * Resolve with an index once the local state machine reflects every write committed
   * before this call (ReadIndex, §6.4): reading it then is linearizable. `until` as in propose().
   */
  read(until?: Until): Promise<number> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError(this.id));
    if (this.fatal) return Promise.reject(this.fatal);
    if (typeof until === 'object' && until.aborted) return Promise.reject(new TimeoutError('read'));
    this.catchUpTicks();
    const ctx = ++this.readCtx;
    if (this.raft.leader === NONE) {
      // Right after a start or during an election: wait for a leader rather than fail at once.
      this.leaderless.push({ ctx, since: this.rt.now() });
    } else {
      this.raft.readIndex(ctx);
    }
    this.schedule();
    return new Promise<number>((resolve, reject) => this.pending.addRead(ctx, until, resolve, reject));
  }

  /** Propose a membership change (leader only); resolves once it is applied here. */
  changeMembership(cc: ConfChange, until?: Until): Promise<number> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError(this.id));
    if (this.fatal) return Promise.reject(this.fatal);
    this.catchUpTicks();
    const out = this.raft.proposeConfChange(cc);
    if (out.kind === 'rejected') {
      if (out.reason === 'not-leader') return Promise.reject(new NotLeaderError(this.raft.leader));
      return Promise.reject(new RejectedError(out.reason, out.message));
    }
    if (out.kind !== 'appended') return Promise.reject(new NotLeaderError(out.to));
    this.schedule();
    const { index, term } = out;
    return new Promise<number>((resolve, reject) =>
      this.pending.addConfChange(index, term, until, resolve, reject),
    );
  }

  transferLeadership(to: NodeId): void {
    if (this.fatal) throw this.fatal;
    this.catchUpTicks();
    if (this.raft.currentRole !== 'leader') throw new NotLeaderError(this.raft.leader);
    const r = this.raft.transferLeadership(to);
    if (!r.ok) throw new RejectedError('transfer', r.message);
    this.schedule();
  }

  status(): RaftStatus {
    return this.raft.status();
  }

  get role(): SoftState['role'] {
    return this.raft.currentRole;
  }

  get leader(): NodeId {
    return this.raft.leader;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  /** The storage or state-machine failure that stopped this node for good, or null. */
  get failure(): Error | null {
    return this.fatal;
  }

  /** The consensus core, for inspection by the simulator and tests: mutating it bypasses this node. */
  get core(): Raft {
    return this.raft;
  }

  /** Stop: no new work, fail what is pending, finish the current write, close storage and transport. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopped = true;
    if (this.timer) this.rt.clearTimer(this.timer);
    this.timer = null;
    const err = new RaftNodeStoppedError(this.id);
    this.stopping = (async () => {
      await this.idle;
      await this.snapshots.compacting;
      if (this.unsavedHard && !this.fatal) {
        // Keep the latest commit index across a clean restart.
        await this.storage
          .persist({ snapshot: null, entries: [], hardState: this.unsavedHard })
          .catch(() => {});
        this.unsavedHard = null;
      }
      this.pending.failAll(err);
      this.leaderless = [];
      await this.transport.close();
      await this.storage.close();
    })();
    return this.stopping;
  }

  // ------------------------------------------------------------------ driving

  private onTimer(): void {
    if (this.stopped) return;
    const ticks = this.catchUpTicks();
    // Deadlines are checked on every timer, also when a message or call took the tick first.
    if (this.pending.requests > 0) this.pending.expire(this.rt.dateNow());
    if (this.leaderless.length > 0) {
      this.flushLeaderless();
      this.expireLeaderless();
    }
    if (ticks > 0 || this.raft.hasReady()) this.schedule();
  }

  /** Waiting reads ask for their index once a leader is known (the next Ready carries them). */
  private flushLeaderless(): void {
    if (this.raft.leader === NONE) return;
    const waiting = this.leaderless;
    this.leaderless = [];
    for (const r of waiting) this.raft.readIndex(r.ctx);
  }

  /**
   * Deliver to the core every tick that elapsed since the last one, before anything else is
   * handled: after a stall (SIGSTOP, a long GC, a blocking write) the messages and calls read
   * in the same loop turn must meet a core that knows how much time passed, or a leader would
   * serve reads from a lease that expired while it stood still (§6.4). Raft.catchUp moves every
   * timer at once but leaves the decisions that need news from peers (campaigning, CheckQuorum)
   * to the messages read next, so a stall alone deposes no healthy leader.
   * Ticks beyond `maxCatchUp` (several election timeouts) are dropped. Costs one clock read per
   * call when no tick is due. Returns the number of ticks delivered.
   */
  private catchUpTicks(): number {
    const elapsed = this.rt.now() - this.lastTickAt;
    if (elapsed < this.tickMs) return 0;
    let n = Math.floor(elapsed / this.tickMs);
    this.lastTickAt += n * this.tickMs;
    if (n > this.maxCatchUp) n = this.maxCatchUp;
    this.raft.catchUp(n);
    return n;
  }

  /** Reads that waited two election timeouts for a leader fail with NoLeaderError. */
  private expireLeaderless(): void {
    const limit = this.rt.now() - this.leaderWaitMs;
    let k = 0;
    while (k < this.leaderless.length && (this.leaderless[k] as { since: number }).since <= limit) k++;
    if (k === 0) return;
    const gone = this.leaderless.splice(0, k);
    for (const r of gone) this.pending.readRefused(r.ctx, 'no-leader', NONE);
  }

  private onMessages(batch: readonly Message[]): void {
    if (this.stopped) return;
    this.catchUpTicks();
    for (const m of batch) this.raft.step(m);
    if (this.leaderless.length > 0) this.flushLeaderless();
    this.schedule();
  }

  private schedule(): void {
    if (this.driving && !this.stopped) {
      // A Ready is being persisted: still send new replication traffic now (coalesced per turn).
      if (!this.eagerScheduled) {
        this.eagerScheduled = true;
        this.rt.setImmediate(this.sendEager);
      }
      return;
    }
    if (this.scheduled || this.driving || this.stopped) return;
    this.scheduled = true;
    this.rt.setImmediate(() => {
      this.scheduled = false;
      if (!this.driving) this.idle = this.drive();
    });
  }

  private eagerScheduled = false;
  private readonly sendEager = (): void => {
    this.eagerScheduled = false;
    if (!this.driving || this.stopped || this.fatal) return;
    const m = this.raft.takeEagerMessages();
    if (m.length > 0) {
      this.transport.send(m);
      this.counters.messagesSent += m.length;
    }
  };

  private async drive(): Promise<void> {
    this.driving = true;
    try {
      while (!this.fatal && this.raft.hasReady()) {
        const rd = this.raft.ready();
        this.counters.readies++;
        await this.handleReady(rd);
        this.raft.advance(rd);
        await this.snapshots.maybeSnapshot(this.applied);
        if (this.stopped) break;
      }
    } catch (err) {
      const fatal = err instanceof Error ? err : new Error(String(err));
      this.fatal = fatal;
      if (this.timer) this.rt.clearTimer(this.timer);
      this.timer = null;
      this.log?.error(
        { err: fatal.message, name: fatal.name },
        'raft node stopped by a storage or state machine failure',
      );
      this.pending.failAll(fatal);
      this.leaderless = [];
      this.opts.onFatal?.(fatal);
    } finally {
      this.driving = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    this.noteSoftState(rd.softState);
    if (this.leaderless.length > 0) this.flushLeaderless();
    if (rd.eagerMessages.length > 0) {
      this.transport.send(rd.eagerMessages);
      this.counters.messagesSent += rd.eagerMessages.length;
    }
    // Committed entries are durable already: apply them (and answer their clients) while
    // this Ready's new entries are being written, not after.
    const applyFirst = rd.snapshot === null;
    if (applyFirst) for (const e of rd.committedEntries) this.applyEntry(e);
    // A hard state whose only change is the commit index need not be written before
    // anything (as in etcd): commit is recovered from the leader after a restart. It is
    // written with the next entries, term or vote change.
    if (rd.hardState) this.unsavedHard = rd.hardState;
    const hs = this.unsavedHard;
    const voteOrTermChanged =
      hs !== null && (hs.term !== this.savedHard.term || hs.vote !== this.savedHard.vote);
    if (rd.snapshot || rd.entries.length > 0 || voteOrTermChanged) {
      const t0 = this.rt.now();
      // A write may block the event loop (inline, no thread hop) on a follower, whose write is on the
      // leader's commit path, and on a leader with a single request in hand: one entry in this Ready
      // (proposals forwarded by followers count there) and at most one local request pending. A busier
      // leader's loop goes on serving while the thread pool writes.
      this.storage.setInlineWrites?.(
        this.soft.role !== 'leader' || (rd.entries.length <= 1 && this.pending.requests <= 1),
      );
      await this.storage.persist({ snapshot: rd.snapshot, entries: rd.entries, hardState: hs });
      if (hs) this.savedHard = hs;
      this.unsavedHard = null;
      const dt = this.rt.now() - t0;
      this.counters.persists++;
      this.counters.entriesPersisted += rd.entries.length;
      if (dt > this.slowFsyncMs) {
        this.log?.warn({ ms: Math.round(dt), entries: rd.entries.length }, 'slow fsync');
      }
    }
    if (rd.messages.length > 0) {
      this.transport.send(rd.messages);
      this.counters.messagesSent += rd.messages.length;
    }
    if (rd.snapshot) {
      // A local snapshot in the making describes a state that is being replaced.
      this.snapshots.installed(rd.snapshot.meta.index);
      this.sm.restore(rd.snapshot.data, rd.snapshot.meta.index);
      this.applied = rd.snapshot.meta.index;
      this.log?.info(
        { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term },
        'installed snapshot from leader',
      );
      // Proposals of ours at or below the snapshot can no longer be matched: their fate is unknown here.
      this.pending.snapshotInstalled(this.applied);
    }
    if (!applyFirst) for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) this.pending.readIndexed(rs.ctx, rs.index);
    for (const rf of rd.readFailures) this.pending.readRefused(rf.ctx, rf.reason, this.raft.leader);
    this.pending.releaseReads(this.applied);
  }

  private applyEntry(e: Entry): void {
    this.counters.applied++;
    this.pending.confChangeApplied(e.index, e.term, e.type === EntryType.ConfChange);
    if (e.type === EntryType.ConfChange) {
      this.sm.apply(e.index, EMPTY);
      this.applied = e.index;
      // Whatever the bytes, the same outcome on every member: the core applies an entry
      // that does not decode as a no-op (and counts it), and so does the application.
      const parsed = parseConfChange(e.data);
      if (!parsed.ok) {
        this.log?.warn(
          { index: e.index, reason: parsed.reason },
          'malformed membership change applied as a no-op',
        );
        return;
      }
      const cc = parsed.cc;
      this.log?.info({ index: e.index, change: cc.type, node: cc.node }, 'membership change applied');
      try {
        this.opts.onConfChange?.(cc, e.index);
      } catch (err) {
        this.log?.error({ index: e.index, err: (err as Error).message }, 'onConfChange failed');
      }
      return;
    }
    const at = envelopePayloadAt(e.data);
    const result = this.sm.apply(e.index, at < 0 ? e.data : e.data.subarray(at));
    this.applied = e.index;
    const seq = at < 0 ? -1 : ownSeq(e.data, this.originBytes);
    if (seq >= 0) this.pending.proposalApplied(seq, e.index, result);
    // A pending proposal of ours that was assigned this index but lost it to another entry.
    this.pending.slotApplied(e.index);
  }

  private noteSoftState(s: SoftState): void {
    if (s.role === this.soft.role && s.leader === this.soft.leader) return;
    const term = this.raft.currentTerm;
    if (s.role !== this.soft.role) {
      if (s.role === 'leader') this.log?.info({ term }, 'won the election: now leader');
      else if (this.soft.role === 'leader') this.log?.info({ term }, 'stepped down');
    }
    if (s.leader !== this.soft.leader) {
      this.log?.info({ term, leader: s.leader || null }, 'leader changed');
      // Proposals forwarded to the old leader would otherwise wait for their deadline.
      this.pending.leaderChanged(this.soft.leader);
    }
    this.soft = s;
    this.opts.onSoftState?.(s, term);
  }
}
