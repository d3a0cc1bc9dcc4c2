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
 * restart it is rebuilt from the durable snapshot and replays the log).
 */
import { parseConfChange } from '../raft/confchange.ts';
import { bootstrapState, Raft, type RaftConfig, type RaftStatus } from '../raft/raft.ts';
import { SeededRng } from '../raft/rng.ts';
import type { RaftStorage } from '../raft/storage.ts';
import {
  type ConfChange,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type SoftState,
} from '../raft/types.ts';
import type { Transport } from '../transport/transport.ts';
import {
  NoLeaderError,
  NotLeaderError,
  OutcomeUnknownError,
  ProposalDroppedError,
  RaftNodeStoppedError,
  RejectedError,
  TimeoutError,
} from './errors.ts';
import { type Runtime, realRuntime, type TimerHandle } from './runtime.ts';

/** The application's replicated state. `apply` is called once per entry, in log order. */
export interface StateMachine<R> {
  /** Apply the entry at `index`. `data` is empty for entries that carry nothing for the application. */
  apply(index: number, data: Uint8Array): R;
  /** Serialize the state as of the last applied index. */
  snapshot(): Uint8Array;
  /** Replace the state by a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): void;
  /**
   * Optional: start a snapshot of the state as of now, serialized a slice per event-loop turn
   * (`step(budgetMs)` returns the bytes once done, null before) while entries keep being applied.
   * When present, RaftNode uses it instead of `snapshot()`, so big states never stall the loop.
   */
  beginSnapshot?(): { step(budgetMs: number): Uint8Array | null };
}

/** The subset of a pino logger this module uses. */
export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

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

export interface Applied<R> {
  readonly index: number;
  readonly result: R;
}

interface PendingProposal<R> {
  resolve(v: Applied<R>): void;
  reject(e: Error): void;
  index: number;
  term: number;
  /** Absolute deadline (`Date.now()` ms) checked on ticks, or Infinity. */
  deadline: number;
  cleanup: () => void;
}

interface PendingRead {
  resolve(index: number): void;
  reject(e: Error): void;
  index: number;
  deadline: number;
  cleanup: () => void;
}

const EMPTY = new Uint8Array(0);
/** Event-loop time a sliced snapshot may take per turn. */
const SNAPSHOT_SLICE_MS = 2;
function noop(): void {}

/** When to give up waiting: an AbortSignal, or an absolute deadline in `Date.now()` milliseconds. */
export type Until = AbortSignal | number;
const ENVELOPE_VERSION = 1;

/**
 * Entries proposed through a RaftNode carry an envelope naming their origin node and a
 * proposal number, so the node that proposed can recognise its entry when it is applied,
 * whichever node was leader. Layout: [version=1][origin length][origin utf8][u32 hi][u32 lo][payload].
 *
 * Proposal numbers (and read contexts) are unique across runs of a node, not only within
 * one: each start draws a random 52-bit (read contexts: 50-bit) starting point and counts
 * up from it. An entry this node proposed in an earlier run, applied after a restart, or a
 * read answered for an earlier run, then matches nothing pending (two runs collide only if
 * the ranges they use overlap: about (n1 + n2) / 2^52 for runs of n1 and n2 proposals).
 */
const te = new TextEncoder();

export function wrapProposal(origin: Uint8Array, seq: number, payload: Uint8Array): Uint8Array {
  // allocUnsafe: small envelopes come from Node's buffer pool, not a fresh ArrayBuffer each.
  const out = Buffer.allocUnsafe(2 + origin.length + 8 + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[1] = origin.length;
  out.set(origin, 2);
  let o = 2 + origin.length;
  const hi = Math.floor(seq / 0x100000000);
  const lo = seq >>> 0;
  out[o++] = hi >>> 24;
  out[o++] = (hi >>> 16) & 0xff;
  out[o++] = (hi >>> 8) & 0xff;
  out[o++] = hi & 0xff;
  out[o++] = lo >>> 24;
  out[o++] = (lo >>> 16) & 0xff;
  out[o++] = (lo >>> 8) & 0xff;
  out[o++] = lo & 0xff;
  out.set(payload, o);
  return out;
}

/** Offset of the payload in an envelope, or -1 when `data` is not one. */
function envelopePayloadAt(data: Uint8Array): number {
  if (data.length < 10 || data[0] !== ENVELOPE_VERSION) return -1;
  const at = 2 + (data[1] as number) + 8;
  return data.length < at ? -1 : at;
}

/** The application payload of an entry proposed through a RaftNode (`data` itself when it carries no envelope). */
export function proposalPayload(data: Uint8Array): Uint8Array {
  const at = envelopePayloadAt(data);
  return at < 0 ? data : data.subarray(at);
}

/** The sequence number of an envelope (checked by envelopePayloadAt) when `origin` proposed it, else -1. */
function ownSeq(data: Uint8Array, origin: Uint8Array): number {
  const n = data[1] as number;
  if (n !== origin.length) return -1;
  for (let i = 0; i < n; i++) if (data[2 + i] !== origin[i]) return -1;
  const o = 2 + n;
  const hi = ((data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!) >>> 0;
  const lo = ((data[o + 4]! << 24) | (data[o + 5]! << 16) | (data[o + 6]! << 8) | data[o + 7]!) >>> 0;
  return hi * 0x100000000 + lo;
}

/** A random start for a run's proposal numbers: below 2^52, so 2^52 proposals fit under 2^53. */
export function randomProposalStart(randomInt: (max: number) => number = realRuntime.randomInt): number {
  return randomInt(0x100000) * 0x100000000 + randomInt(0x100000000);
}

/** A random start for a run's read contexts: below 2^50 (the peer codec carries up to 2^51). */
export function randomReadStart(randomInt: (max: number) => number = realRuntime.randomInt): number {
  return randomInt(0x40000) * 0x100000000 + randomInt(0x100000000);
}

export class RaftNode<R> {
  readonly id: NodeId;
  private readonly raft: Raft;
  private readonly storage: RaftStorage;
  private readonly transport: Transport;
  private readonly sm: StateMachine<R>;
  private readonly log: Logger | undefined;
  private readonly tickMs: number;
  private readonly snapshotEntries: number;
  private readonly retainEntries: number;
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

  /** Last proposal number used: starts at a random point per run (see the envelope). */
  private seq: number;
  private readonly proposals = new Map<number, PendingProposal<R>>();
  /** Log index -> seq of the pending proposal appended there by this node as leader. */
  private readonly proposalAt = new Map<number, number>();
  /** Last read context used: starts at a random point per run, like `seq`. */
  private readCtx: number;
  private readonly reads = new Map<number, PendingRead>();
  private readonly confWaiters = new Map<
    number,
    { term: number; resolve(i: number): void; reject(e: Error): void; cleanup(): void }
  >();
  /** Reads whose index is known, waiting for the state machine to apply it. */
  private waitingReads: PendingRead[] = [];
  private applied: number;
  private lastSnapshotIndex: number;
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
    this.snapshotEntries = opts.snapshotEntries ?? 100_000;
    this.retainEntries = opts.retainEntries ?? 1_000;
    this.slowFsyncMs = opts.slowFsyncMs ?? 100;
    this.maxCatchUp = Math.max(50, 4 * (opts.raft?.electionTick ?? 10));
    this.originBytes = te.encode(opts.id);
    if (this.originBytes.length > 255) throw new RangeError('node id longer than 255 bytes');
    this.applied = applied;
    this.lastSnapshotIndex = applied;
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
    return new Promise<Applied<R>>((resolve, reject) => {
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
    });
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
    this.raft.readIndex(ctx);
    this.schedule();
    return new Promise<number>((resolve, reject) => {
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
    });
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
  private expireDeadlines(now: number): void {
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
    return new Promise<number>((resolve, reject) => {
      const w = { term, resolve, reject, cleanup: () => {} };
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
    });
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
      await this.compacting;
      if (this.unsavedHard && !this.fatal) {
        // Keep the latest commit index across a clean restart.
        await this.storage
          .persist({ snapshot: null, entries: [], hardState: this.unsavedHard })
          .catch(() => {});
        this.unsavedHard = null;
      }
      this.failAll(err);
      await this.transport.close();
      await this.storage.close();
    })();
    return this.stopping;
  }

  // ------------------------------------------------------------------ driving

  private onTimer(): void {
    if (this.stopped) return;
    if (this.catchUpTicks() === 0) return;
    if (this.proposals.size > 0 || this.reads.size > 0 || this.waitingReads.length > 0) {
      this.expireDeadlines(this.rt.dateNow());
    }
    this.schedule();
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

  private onMessages(batch: readonly Message[]): void {
    if (this.stopped) return;
    this.catchUpTicks();
    for (const m of batch) this.raft.step(m);
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
  private compacting: Promise<void> | null = null;
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
        await this.maybeSnapshot();
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
      this.failAll(fatal);
      this.opts.onFatal?.(fatal);
    } finally {
      this.driving = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    this.noteSoftState(rd.softState);
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
        this.soft.role !== 'leader' ||
          (rd.entries.length <= 1 && this.proposals.size + this.reads.size + this.waitingReads.length <= 1),
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
      this.snapJob = null;
      this.snapData = null;
      this.sm.restore(rd.snapshot.data, rd.snapshot.meta.index);
      this.applied = rd.snapshot.meta.index;
      this.lastSnapshotIndex = rd.snapshot.meta.index;
      this.log?.info(
        { index: rd.snapshot.meta.index, term: rd.snapshot.meta.term },
        'installed snapshot from leader',
      );
      // Proposals of ours at or below the snapshot can no longer be matched: their fate is unknown here.
      for (const [seq, p] of this.proposals) {
        if (p.index > 0 && p.index <= this.applied) {
          this.dropProposal(seq);
          p.cleanup();
          p.reject(new ProposalDroppedError(p.index));
        }
      }
    }
    if (!applyFirst) for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) {
      const r = this.reads.get(rs.ctx);
      if (!r) continue;
      this.reads.delete(rs.ctx);
      r.index = rs.index;
      this.waitingReads.push(r);
    }
    for (const rf of rd.readFailures) {
      const r = this.reads.get(rf.ctx);
      if (!r) continue;
      this.reads.delete(rf.ctx);
      r.cleanup();
      r.reject(
        rf.reason === 'no-leader'
          ? new NoLeaderError('no leader to confirm the read')
          : new NotLeaderError(this.raft.leader),
      );
    }
    this.releaseReads();
  }

  private applyEntry(e: Entry): void {
    this.counters.applied++;
    const w = this.confWaiters.get(e.index);
    if (w) {
      this.confWaiters.delete(e.index);
      w.cleanup();
      if (e.term === w.term && e.type === EntryType.ConfChange) w.resolve(e.index);
      else w.reject(new ProposalDroppedError(e.index));
    }
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
    if (seq >= 0) {
      const p = this.proposals.get(seq);
      if (p) {
        this.dropProposal(seq);
        p.cleanup();
        p.resolve({ index: e.index, result });
      }
    }
    // A pending proposal of ours that was assigned this index but lost it to another entry.
    const lost = this.proposalAt.get(e.index);
    if (lost !== undefined) {
      this.proposalAt.delete(e.index);
      const p = this.proposals.get(lost);
      if (p) {
        this.proposals.delete(lost);
        p.cleanup();
        p.reject(new ProposalDroppedError(e.index));
      }
    }
  }

  private releaseReads(): void {
    if (this.waitingReads.length === 0) return;
    const still: PendingRead[] = [];
    for (const r of this.waitingReads) {
      if (r.index <= this.applied) {
        r.cleanup();
        r.resolve(r.index);
      } else {
        still.push(r);
      }
    }
    this.waitingReads = still;
  }

  /** A snapshot being serialized in slices (StateMachine.beginSnapshot), and the index it is at. */
  private snapJob: { index: number; job: { step(budgetMs: number): Uint8Array | null } } | null = null;
  private snapData: { index: number; data: Uint8Array } | null = null;

  private async maybeSnapshot(): Promise<void> {
    // A sliced snapshot finished since the last Ready: compact now (between Readies, as compact requires).
    const ready = this.snapData;
    if (ready !== null) {
      this.snapData = null;
      if (ready.index > this.lastSnapshotIndex && ready.index <= this.applied) {
        this.compactTo(ready.index, ready.data);
      }
      return;
    }
    if (this.snapshotEntries <= 0 || this.applied - this.lastSnapshotIndex < this.snapshotEntries) return;
    if (this.compacting || this.snapJob !== null) return; // one at a time
    const index = this.applied;
    if (this.sm.beginSnapshot !== undefined) {
      this.snapJob = { index, job: this.sm.beginSnapshot() };
      this.rt.setImmediate(this.stepSnapshot);
      return;
    }
    this.compactTo(index, this.sm.snapshot());
  }

  /** Serializes a slice of the running snapshot job per event-loop turn. */
  private readonly stepSnapshot = (): void => {
    const j = this.snapJob;
    if (j === null || this.stopped || this.fatal) {
      this.snapJob = null;
      return;
    }
    const data = j.job.step(SNAPSHOT_SLICE_MS);
    if (data === null) {
      this.rt.setImmediate(this.stepSnapshot);
      return;
    }
    this.snapJob = null;
    this.snapData = { index: j.index, data };
    this.schedule();
  };

  private compactTo(index: number, data: Uint8Array): void {
    // A snapshot from the leader may have been restored into the core (it reaches us in a later
    // Ready): a local one at or below it is moot, and compact() would refuse it.
    const st = this.raft.status();
    if (index < st.firstIndex || index > st.applied) return;
    const snap = this.raft.compact(index, data, this.retainEntries);
    this.lastSnapshotIndex = index;
    this.counters.snapshots++;
    // Stored in the background: the drive loop does not wait for the snapshot file.
    this.compacting = this.storage.compact(snap, this.retainEntries).then(
      () => {
        this.compacting = null;
        this.log?.info(
          { index, term: snap.meta.term, bytes: snap.data.byteLength },
          'snapshot taken, log compacted',
        );
      },
      (err: unknown) => {
        this.compacting = null;
        // The log is intact without it; the next threshold tries again.
        this.log?.error({ index, err: (err as Error).message }, 'writing a snapshot failed');
      },
    );
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
      for (const [seq, p] of this.proposals) {
        if (p.index !== 0) continue;
        this.proposals.delete(seq);
        p.cleanup();
        p.reject(new OutcomeUnknownError(this.soft.leader));
      }
    }
    this.soft = s;
    this.opts.onSoftState?.(s, term);
  }

  private failAll(err: Error): void {
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
