/**
 * Deterministic cluster simulator: many Raft nodes in one process, a virtual clock, one
 * seeded RNG, a network that delays, drops, duplicates, reorders and partitions, nodes
 * that crash (losing unsynced writes, possibly tearing the last one), pause and restart,
 * membership changes and leadership transfers, and clients running put/get/delete/cas
 * with retries against a KV state machine.
 *
 * After every event the {@link Invariants} are checked; at the end the client history is
 * checked for linearizability. Same options (seed included) => the very same run.
 */
import {
  decodeRequest,
  encodeRequest,
  type KvCommand,
  KvStateMachine,
  LEGACY_COMMAND_VERSION,
} from '../kv/state-machine.ts';
import { bootstrapState, emptyState, type ProposeOutcome, Raft, type RaftConfig } from '../raft/raft.ts';
import { SeededRng } from '../raft/rng.ts';
import {
  ConfChangeType,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  Role,
} from '../raft/types.ts';
import { SimDisk } from './disk.ts';
import { EventHeap } from './heap.ts';
import { Invariants, SafetyViolation } from './invariants.ts';

export interface NetOptions {
  /** One-way delay range in virtual ms; random delays reorder messages. */
  minDelay: number;
  maxDelay: number;
  /** Probability a message is lost. */
  drop: number;
  /** Probability a message is delivered twice. */
  duplicate: number;
}

export interface FaultOptions {
  /** Mean virtual ms between injected faults (0: none). */
  interval: number;
  crash: boolean;
  pause: boolean;
  partition: boolean;
  membership: boolean;
  transfer: boolean;
  /** Let a random prefix of unsynced writes survive a crash, the last possibly torn. */
  partialWrites: boolean;
}

export interface SimOptions {
  seed: number;
  voters: number;
  /** Node ids beyond the initial voters, available for membership changes. */
  spares: number;
  tickMs: number;
  electionTick: number;
  heartbeatTick: number;
  preVote: boolean;
  checkQuorum: boolean;
  readOnly: 'safe' | 'lease';
  maxMsgEntries: number;
  maxInflight: number;
  maxSnapshotChunk: number;
  /** How followers hear of commits (RaftConfig.commitBroadcast); varies by seed. */
  commitBroadcast: 'eager' | 'piggyback';
  /** Applied entries between local snapshots (0: never compact). */
  snapshotEvery: number;
  /** Entries kept before a snapshot point when compacting. */
  retain: number;
  fsyncMin: number;
  fsyncMax: number;
  net: NetOptions;
  faults: FaultOptions;
  clients: number;
  keys: number;
  opTimeout: number;
  maxAttempts: number;
  /** Keep this many trace lines for failure reports. */
  traceSize: number;
  /**
   * Serve gets from the receiving node's state machine at once, without ReadIndex. Wrong
   * on purpose: tests use it to show that the history checker catches stale reads.
   */
  unsafeLocalReads: boolean;
}

export const defaultOptions: SimOptions = {
  seed: 1,
  voters: 3,
  spares: 0,
  tickMs: 10,
  electionTick: 10,
  heartbeatTick: 2,
  preVote: true,
  checkQuorum: true,
  readOnly: 'safe',
  maxMsgEntries: 64,
  maxInflight: 8,
  maxSnapshotChunk: 256,
  commitBroadcast: 'eager',
  snapshotEvery: 0,
  retain: 0,
  fsyncMin: 0.2,
  fsyncMax: 2,
  net: { minDelay: 0.3, maxDelay: 4, drop: 0, duplicate: 0 },
  faults: {
    interval: 0,
    crash: false,
    pause: false,
    partition: false,
    membership: false,
    transfer: false,
    partialWrites: true,
  },
  clients: 0,
  keys: 5,
  opTimeout: 400,
  maxAttempts: 6,
  traceSize: 300,
  unsafeLocalReads: false,
};

/** A preset with every fault on: the configuration CI runs over many seeds. */
export function chaosOptions(seed: number, overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    ...defaultOptions,
    seed,
    voters: 3 + 2 * (seed % 2),
    spares: 2,
    snapshotEvery: 40,
    retain: 5,
    net: { minDelay: 0.3, maxDelay: 8, drop: 0.03, duplicate: 0.02 },
    faults: {
      interval: 150,
      crash: true,
      pause: true,
      partition: true,
      membership: true,
      transfer: true,
      partialWrites: true,
    },
    clients: 4,
    keys: 4,
    // Small batches split a leader's catch-up traffic, which is where Figure 8 lurks.
    maxMsgEntries: [1, 3, 64][seed % 3] as number,
    maxInflight: [1, 4, 16][(seed >> 2) % 3] as number,
    commitBroadcast: (seed >> 4) % 2 === 0 ? 'eager' : 'piggyback',
    ...overrides,
  };
}

export type KvInput = KvCommand | { readonly kind: 'get'; readonly key: string };
export type KvOutput =
  | { readonly kind: 'put' }
  | { readonly kind: 'get'; readonly value: string | null }
  | { readonly kind: 'delete'; readonly existed: boolean }
  | { readonly kind: 'cas'; readonly swapped: boolean };

/** One client operation: `ret === null` means its outcome is unknown (it may or may not have happened). */
export interface HistoryOp {
  readonly id: number;
  readonly client: number;
  readonly input: KvInput;
  readonly call: number;
  ret: number | null;
  output: KvOutput | null;
}

type ClientReply = { ok: true; output: KvOutput } | { ok: false; leaderHint: NodeId };

type Ev =
  | { time: number; seq: number; kind: 'tick'; node: NodeId; inc: number }
  | { time: number; seq: number; kind: 'deliver'; msg: Message }
  | { time: number; seq: number; kind: 'fsync'; node: NodeId; inc: number }
  | { time: number; seq: number; kind: 'restart'; node: NodeId }
  | { time: number; seq: number; kind: 'resume'; node: NodeId }
  | { time: number; seq: number; kind: 'heal'; epoch: number }
  | { time: number; seq: number; kind: 'drop-end' }
  | { time: number; seq: number; kind: 'fault' }
  | { time: number; seq: number; kind: 'client-req'; node: NodeId; client: number; attempt: number }
  | { time: number; seq: number; kind: 'client-reply'; client: number; attempt: number; reply: ClientReply }
  | { time: number; seq: number; kind: 'client-timeout'; client: number; attempt: number }
  | { time: number; seq: number; kind: 'client-next'; client: number };

class SimNode {
  readonly id: NodeId;
  raft: Raft | null = null;
  alive = false;
  paused = false;
  /** Bumped on crash and restart: stale timers and syncs of an earlier life are ignored. */
  inc = 0;
  disk: SimDisk;
  sm = new KvStateMachine();
  inflight: Ready | null = null;
  syncDoneWhilePaused = false;
  crashAtNextWrite = false;
  unsavedHard: HardState | null = null;
  missedTicks = 0;
  inbox: Message[] = [];
  lastSnapshotIndex = 0;
  pendingWrites = new Map<string, { client: number; attempt: number }>();
  pendingReads = new Map<number, { client: number; attempt: number; key: string }>();
  waitingReads: { ctx: number; index: number }[] = [];
  /** Read states handed out by the core over this node's lives (for tests). */
  readStatesSeen = 0;

  constructor(id: NodeId, disk: SimDisk) {
    this.id = id;
    this.disk = disk;
  }
}

interface ClientState {
  readonly id: number;
  seq: number;
  op: HistoryOp | null;
  attempt: number;
  attempts: number;
  /** Whether some attempt of the current write may have reached the log. */
  maybeApplied: boolean;
  leaderGuess: NodeId;
}

export class SimFailure extends Error {
  override readonly name = 'SimFailure';
  readonly seed: number;
  readonly trace: readonly string[];
  constructor(message: string, seed: number, trace: readonly string[], cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.seed = seed;
    this.trace = trace;
  }
}

export class Simulator {
  readonly opts: SimOptions;
  readonly rng: SeededRng;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly history: HistoryOp[] = [];
  readonly inv = new Invariants();
  /** Messages sent, by type. */
  readonly sent = new Map<string, number>();
  now = 0;
  steps = 0;
  private seq = 0;
  private readonly events = new EventHeap<Ev>();
  private readonly trace: string[] = [];
  private readonly recent: (Ev | undefined)[] = new Array(80);
  private recentAt = 0;
  /** Partition: node -> group number; nodes in different groups cannot talk. */
  private groups = new Map<NodeId, number>();
  private partitionEpoch = 0;
  private readonly clients: ClientState[] = [];
  private clientsOn = false;
  private faultsOn = false;
  private nextCtx = 1;
  private dropBoost = 0;
  private opIds = 0;
  readonly stats = { crashes: 0, pauses: 0, partitions: 0, confChanges: 0, transfers: 0, elections: 0 };

  constructor(opts: Partial<SimOptions> & { seed: number }) {
    this.opts = { ...defaultOptions, ...opts };
    this.rng = new SeededRng(this.opts.seed);
    const ids: NodeId[] = [];
    for (let i = 1; i <= this.opts.voters + this.opts.spares; i++) ids.push(`n${i}`);
    const voters = ids.slice(0, this.opts.voters);
    for (const id of ids) {
      const initial = voters.includes(id) ? bootstrapState(voters) : emptyState();
      this.nodes.set(id, new SimNode(id, new SimDisk(initial)));
    }
    for (const id of ids) this.boot(id);
  }

  // ------------------------------------------------------------------ public control

  get ids(): NodeId[] {
    return [...this.nodes.keys()];
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new RangeError(`no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    const r = this.node(id).raft;
    if (!r) throw new RangeError(`node ${id} is down`);
    return r;
  }

  /** The live, unpaused leader with the highest term, if any. */
  leader(): NodeId | null {
    let best: NodeId | null = null;
    let bestTerm = -1;
    for (const n of this.nodes.values()) {
      if (!n.alive || n.paused || !n.raft) continue;
      if (n.raft.currentRole === Role.Leader && n.raft.currentTerm > bestTerm) {
        best = n.id;
        bestTerm = n.raft.currentTerm;
      }
    }
    return best;
  }

  /** Process events until virtual time advances by `ms`. */
  runFor(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const ev = this.events.peek();
      if (!ev || ev.time > until) break;
      this.events.pop();
      this.now = ev.time;
      this.process(ev);
    }
    this.now = until;
  }

  /** Run until `pred` holds (checked after each event) or `maxMs` passes. Returns whether it held. */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    const until = this.now + maxMs;
    if (pred()) return true;
    for (;;) {
      const ev = this.events.peek();
      if (!ev || ev.time > until) break;
      this.events.pop();
      this.now = ev.time;
      this.process(ev);
      if (pred()) return true;
    }
    this.now = Math.max(this.now, until);
    return pred();
  }

  /** Run until some live node is leader and every live voter agrees on it. */
  waitForLeader(maxMs = 5000): NodeId | null {
    this.runUntil(() => this.stableLeader() !== null, maxMs);
    return this.stableLeader();
  }

  private stableLeader(): NodeId | null {
    const l = this.leader();
    if (!l) return null;
    const term = this.raft(l).currentTerm;
    for (const id of this.raft(l).configuration.voters) {
      const n = this.node(id);
      if (!n.alive || n.paused || !n.raft || this.isCut(n.id, l)) continue;
      if (n.raft.leader !== l || n.raft.currentTerm !== term) return null;
    }
    return l;
  }

  propose(id: NodeId, data: Uint8Array): ProposeOutcome {
    const out = this.raft(id).propose(data);
    this.drive(this.node(id));
    return out;
  }

  /** Cut the network into groups; unlisted nodes form one more group. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.groups = new Map();
    groups.forEach((g, i) => {
      for (const id of g) this.groups.set(id, i + 1);
    });
    this.partitionEpoch++;
    this.stats.partitions++;
    this.log(`partition ${groups.map((g) => `[${g.join(',')}]`).join(' ')}`);
  }

  isolate(id: NodeId): void {
    this.partition([[id]]);
  }

  heal(): void {
    this.groups = new Map();
    this.partitionEpoch++;
    this.log('heal');
  }

  isCut(a: NodeId, b: NodeId): boolean {
    return (this.groups.get(a) ?? 0) !== (this.groups.get(b) ?? 0);
  }

  setDrop(p: number): void {
    this.opts.net.drop = p;
  }

  crash(id: NodeId): void {
    const n = this.node(id);
    if (!n.alive) return;
    const unsynced = n.disk.unsyncedCount;
    const survivors = this.opts.faults.partialWrites ? this.rng.int(unsynced + 1) : 0;
    n.disk.crash(survivors);
    n.alive = false;
    n.paused = false;
    n.raft = null;
    n.inflight = null;
    n.inc++;
    n.inbox = [];
    n.crashAtNextWrite = false;
    n.unsavedHard = null;
    n.pendingWrites.clear();
    n.pendingReads.clear();
    n.waitingReads = [];
    this.stats.crashes++;
    this.inv.nodeCrashed(id);
    this.log(`crash ${id} (kept ${survivors}/${unsynced} unsynced records)`);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (n.alive) return;
    this.boot(id);
    this.log(`restart ${id}`);
  }

  pause(id: NodeId): void {
    const n = this.node(id);
    if (!n.alive || n.paused) return;
    n.paused = true;
    n.missedTicks = 0;
    this.stats.pauses++;
    this.log(`pause ${id}`);
  }

  resume(id: NodeId): void {
    const n = this.node(id);
    if (!n.alive || !n.paused || !n.raft) return;
    n.paused = false;
    this.log(`resume ${id} (${n.missedTicks} missed ticks, ${n.inbox.length} queued messages)`);
    // A driver measures elapsed time on a monotonic clock: ticks missed while stopped
    // are delivered before anything else.
    for (let i = 0; i < n.missedTicks; i++) n.raft.tick();
    n.missedTicks = 0;
    this.drive(n);
    const inbox = n.inbox;
    n.inbox = [];
    for (const m of inbox) this.deliver(n, m);
    if (n.syncDoneWhilePaused && n.alive) {
      n.syncDoneWhilePaused = false;
      this.completeReady(n);
    }
    this.drive(n);
  }

  startClients(): void {
    if (this.clientsOn) return;
    this.clientsOn = true;
    for (let i = 0; i < this.opts.clients; i++) {
      const c: ClientState = {
        id: i + 1,
        seq: 0,
        op: null,
        attempt: 0,
        attempts: 0,
        maybeApplied: false,
        leaderGuess: '',
      };
      this.clients.push(c);
      this.schedule({ kind: 'client-next', client: c.id }, this.rng.float() * 20);
    }
  }

  stopClients(): void {
    this.clientsOn = false;
  }

  startFaults(): void {
    if (this.faultsOn || this.opts.faults.interval <= 0) return;
    this.faultsOn = true;
    this.schedule({ kind: 'fault' }, this.rng.float() * this.opts.faults.interval * 2);
  }

  /** Stop injecting faults and undo the standing ones (heal, restart, resume). */
  calm(): void {
    this.faultsOn = false;
    this.dropBoost = 0;
    this.heal();
    for (const n of this.nodes.values()) {
      if (!n.alive) this.restart(n.id);
      else if (n.paused) this.resume(n.id);
    }
  }

  /** Whether every client finished its current operation. */
  clientsIdle(): boolean {
    return this.clients.every((c) => c.op === null);
  }

  traceLines(): readonly string[] {
    return this.trace;
  }

  log(line: string): void {
    this.trace.push(`${this.now.toFixed(2).padStart(10)} ${line}`);
    if (this.trace.length > this.opts.traceSize)
      this.trace.splice(0, this.trace.length - this.opts.traceSize);
  }

  fail(message: string, cause?: unknown): never {
    throw new SimFailure(message, this.opts.seed, this.traceWithEvents(), cause);
  }

  /** The trace lines merged with the last events processed, in time order. */
  traceWithEvents(): string[] {
    const events: { time: number; line: string }[] = [];
    const n = this.recent.length;
    for (let i = 0; i < n; i++) {
      const ev = this.recent[(this.recentAt + i) % n];
      if (ev)
        events.push({ time: ev.time, line: `${ev.time.toFixed(2).padStart(10)}   ${describeEvent(ev)}` });
    }
    const lines = this.trace.map((line) => ({ time: Number(line.slice(0, 10)), line }));
    return [...lines, ...events].sort((a, b) => a.time - b.time).map((x) => x.line);
  }

  // ------------------------------------------------------------------ events

  private schedule(ev: DistributiveOmit<Ev, 'time' | 'seq'>, delay: number): void {
    this.events.push({ ...ev, time: this.now + delay, seq: this.seq++ } as Ev);
  }

  private process(ev: Ev): void {
    this.steps++;
    // Remember the last events cheaply; they are formatted only when a run fails.
    this.recent[this.recentAt] = ev;
    this.recentAt = (this.recentAt + 1) % this.recent.length;
    try {
      switch (ev.kind) {
        case 'tick': {
          const n = this.node(ev.node);
          if (!n.alive || n.inc !== ev.inc) return;
          this.schedule({ kind: 'tick', node: n.id, inc: n.inc }, this.opts.tickMs);
          if (n.paused) {
            n.missedTicks++;
            return;
          }
          (n.raft as Raft).tick();
          this.drive(n);
          break;
        }
        case 'deliver': {
          const n = this.node(ev.msg.to);
          if (!n.alive || this.isCut(ev.msg.from, ev.msg.to)) return;
          if (n.paused) {
            n.inbox.push(ev.msg);
            return;
          }
          this.deliver(n, ev.msg);
          break;
        }
        case 'fsync': {
          const n = this.node(ev.node);
          if (!n.alive || n.inc !== ev.inc) return;
          if (n.paused) {
            n.syncDoneWhilePaused = true;
            return;
          }
          this.completeReady(n);
          break;
        }
        case 'restart':
          this.restart(ev.node);
          break;
        case 'resume':
          this.resume(ev.node);
          break;
        case 'heal':
          if (ev.epoch === this.partitionEpoch) this.heal();
          break;
        case 'drop-end':
          this.dropBoost = 0;
          break;
        case 'fault':
          if (!this.faultsOn) return;
          this.injectFault();
          this.schedule({ kind: 'fault' }, this.rng.float() * this.opts.faults.interval * 2);
          break;
        case 'client-req':
          this.handleClientRequest(ev.node, ev.client, ev.attempt);
          break;
        case 'client-reply':
          this.handleClientReply(ev.client, ev.attempt, ev.reply);
          break;
        case 'client-timeout':
          this.handleClientTimeout(ev.client, ev.attempt);
          break;
        case 'client-next':
          this.nextClientOp(ev.client);
          break;
      }
      this.inv.checkCluster(this);
    } catch (err) {
      if (err instanceof SimFailure) throw err;
      const msg =
        err instanceof SafetyViolation ? `safety violation: ${err.message}` : `error: ${String(err)}`;
      this.fail(msg, err);
    }
  }

  private deliver(n: SimNode, m: Message): void {
    if (!n.alive || !n.raft) return;
    n.raft.step(m);
    this.drive(n);
  }

  private boot(id: NodeId): void {
    const n = this.node(id);
    const durable = n.disk.load();
    const cfg: RaftConfig = {
      id,
      electionTick: this.opts.electionTick,
      heartbeatTick: this.opts.heartbeatTick,
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      readOnly: this.opts.readOnly,
      maxMsgEntries: this.opts.maxMsgEntries,
      maxInflight: this.opts.maxInflight,
      maxSnapshotChunk: this.opts.maxSnapshotChunk,
      commitBroadcast: this.opts.commitBroadcast,
      rng: this.rng.fork(),
    };
    n.sm = new KvStateMachine();
    if (durable.snapshot) {
      n.sm.restore(durable.snapshot.data);
      n.lastSnapshotIndex = durable.snapshot.meta.index;
    } else {
      n.lastSnapshotIndex = 0;
    }
    n.raft = new Raft(cfg, durable);
    n.alive = true;
    n.paused = false;
    n.inc++;
    this.inv.nodeStarted(id, durable);
    this.schedule({ kind: 'tick', node: id, inc: n.inc }, this.rng.float() * this.opts.tickMs);
    this.drive(n);
  }

  /** The driver loop of one node: take a Ready, send what may go now, write, sync. */
  private drive(n: SimNode): void {
    const raft = n.raft;
    if (raft && n.alive && !n.paused && n.inflight) {
      // Like the node runtime: replication traffic leaves while a Ready is being written.
      for (const m of raft.takeEagerMessages()) this.send(m);
      return;
    }
    if (!raft || !n.alive || n.paused || n.inflight || !raft.hasReady()) return;
    const rd = raft.ready();
    this.inv.onReady(this, n.id, raft, rd);
    for (const m of rd.eagerMessages) this.send(m);
    if (rd.snapshot) n.disk.write({ kind: 'install', snapshot: rd.snapshot });
    if (rd.entries.length > 0) n.disk.write({ kind: 'entries', entries: rd.entries });
    // Like the node runtime: a commit-only hard state change is written lazily, with the
    // next write that has entries or a term or vote change.
    if (rd.hardState) n.unsavedHard = rd.hardState;
    const hs = n.unsavedHard;
    const saved = n.disk.durableHardState();
    if (hs && (rd.entries.length > 0 || rd.snapshot || hs.term !== saved.term || hs.vote !== saved.vote)) {
      n.disk.write({ kind: 'hard', hardState: hs });
      n.unsavedHard = null;
    }
    n.inflight = rd;
    if (n.crashAtNextWrite && n.disk.hasUnsynced()) {
      n.crashAtNextWrite = false;
      this.crash(n.id);
      this.schedule({ kind: 'restart', node: n.id }, 5 + this.rng.float() * 400);
      return;
    }
    if (n.disk.hasUnsynced()) {
      const d = this.opts.fsyncMin + this.rng.float() * (this.opts.fsyncMax - this.opts.fsyncMin);
      this.schedule({ kind: 'fsync', node: n.id, inc: n.inc }, d);
    } else {
      this.completeReady(n);
    }
  }

  private completeReady(n: SimNode): void {
    const rd = n.inflight;
    const raft = n.raft;
    if (!rd || !raft) return;
    n.disk.sync();
    this.inv.onDurable(n.id, n.disk.durableHardState());
    for (const m of rd.messages) this.send(m);
    if (rd.snapshot) {
      n.sm.restore(rd.snapshot.data);
      if (n.sm.applied !== rd.snapshot.meta.index) {
        this.fail(`snapshot at ${rd.snapshot.meta.index} holds state applied to ${n.sm.applied}`);
      }
      n.lastSnapshotIndex = rd.snapshot.meta.index;
      this.inv.onSnapshotApplied(n.id, rd.snapshot.meta.index, rd.snapshot.meta.term);
    }
    for (const e of rd.committedEntries) {
      this.inv.onApply(n.id, e);
      if (e.type !== 0) {
        n.sm.apply(e.index, new Uint8Array(0));
        continue;
      }
      const result = n.sm.apply(e.index, e.data);
      if (result && e.data.byteLength > 0) {
        const req = decodeRequest(e.data);
        const key = `${req.client}:${req.seq}`;
        const p = n.pendingWrites.get(key);
        if (p) {
          n.pendingWrites.delete(key);
          const output = toOutput(req.cmd, result);
          if (output) this.replyClient(n.id, p.client, p.attempt, { ok: true, output });
        }
      }
    }
    n.readStatesSeen += rd.readStates.length;
    for (const rs of rd.readStates) n.waitingReads.push(rs);
    for (const rf of rd.readFailures) {
      const p = n.pendingReads.get(rf.ctx);
      if (p) {
        n.pendingReads.delete(rf.ctx);
        this.replyClient(n.id, p.client, p.attempt, { ok: false, leaderHint: raft.leader });
      }
    }
    this.serveReads(n);
    n.inflight = null;
    raft.advance(rd);
    this.maybeCompact(n);
    this.drive(n);
  }

  private serveReads(n: SimNode): void {
    if (n.waitingReads.length === 0) return;
    const still: { ctx: number; index: number }[] = [];
    for (const w of n.waitingReads) {
      if (w.index > n.sm.applied) {
        still.push(w);
        continue;
      }
      const p = n.pendingReads.get(w.ctx);
      if (!p) continue;
      n.pendingReads.delete(w.ctx);
      const v = n.sm.get(p.key);
      this.replyClient(n.id, p.client, p.attempt, {
        ok: true,
        output: { kind: 'get', value: v ? v.value : null },
      });
    }
    n.waitingReads = still;
  }

  private maybeCompact(n: SimNode): void {
    const every = this.opts.snapshotEvery;
    const raft = n.raft;
    if (every <= 0 || !raft || n.sm.applied - n.lastSnapshotIndex < every) return;
    const snap = raft.compact(n.sm.applied, n.sm.snapshot(), this.opts.retain);
    n.lastSnapshotIndex = snap.meta.index;
    n.disk.write({ kind: 'compact', snapshot: snap });
    this.log(`${n.id} compacts at ${snap.meta.index} (term ${snap.meta.term})`);
  }

  private send(m: Message): void {
    this.sent.set(m.type, (this.sent.get(m.type) ?? 0) + 1);
    if (this.isCut(m.from, m.to)) return;
    const { net } = this.opts;
    if (this.rng.chance(Math.min(1, net.drop + this.dropBoost))) return;
    const copies = this.rng.chance(net.duplicate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = net.minDelay + this.rng.float() * (net.maxDelay - net.minDelay);
      this.schedule({ kind: 'deliver', msg: m }, delay);
    }
  }

  // ------------------------------------------------------------------ faults

  private injectFault(): void {
    const f = this.opts.faults;
    const kinds: string[] = [];
    if (f.crash) kinds.push('crash', 'crash');
    if (f.pause) kinds.push('pause');
    if (f.partition) kinds.push('partition', 'partition', 'isolate-leader');
    if (f.membership) kinds.push('membership');
    if (f.transfer) kinds.push('transfer');
    kinds.push('drop-burst');
    const kind = this.rng.pick(kinds);
    const ids = this.ids;
    switch (kind) {
      case 'crash': {
        const id = this.rng.pick(ids);
        if (!this.node(id).alive) return;
        if (this.rng.chance(0.5)) {
          // Crash in the middle of its next write, to exercise torn and lost writes.
          this.node(id).crashAtNextWrite = true;
          return;
        }
        this.crash(id);
        this.schedule({ kind: 'restart', node: id }, 5 + this.rng.float() * 400);
        return;
      }
      case 'pause': {
        const id = this.rng.pick(ids);
        this.pause(id);
        this.schedule({ kind: 'resume', node: id }, 10 + this.rng.float() * 300);
        return;
      }
      case 'partition': {
        const shuffled = ids.slice();
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = this.rng.int(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j] as NodeId, shuffled[i] as NodeId];
        }
        const cut = 1 + this.rng.int(shuffled.length - 1);
        this.partition([shuffled.slice(0, cut)]);
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, 50 + this.rng.float() * 500);
        return;
      }
      case 'isolate-leader': {
        const l = this.leader();
        if (!l) return;
        this.isolate(l);
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, 50 + this.rng.float() * 400);
        return;
      }
      case 'drop-burst':
        this.dropBoost = 0.3;
        this.log('drop burst');
        this.schedule({ kind: 'drop-end' }, 100);
        return;
      case 'membership':
        this.changeMembership();
        return;
      case 'transfer': {
        const l = this.leader();
        if (!l) return;
        const voters = this.raft(l).configuration.voters.filter((v) => v !== l);
        if (voters.length === 0) return;
        const to = this.rng.pick(voters);
        const r = this.raft(l).transferLeadership(to);
        this.stats.transfers++;
        this.log(`transfer ${l} -> ${to}: ${r.ok ? 'started' : r.message}`);
        this.drive(this.node(l));
        return;
      }
    }
  }

  private changeMembership(): void {
    const l = this.leader();
    if (!l) return;
    const raft = this.raft(l);
    const conf = raft.configuration;
    const nonMembers = this.ids.filter((id) => !conf.voters.includes(id) && !conf.learners.includes(id));
    const choices: (() => ProposeOutcome)[] = [];
    if (nonMembers.length > 0) {
      const id = this.rng.pick(nonMembers);
      choices.push(() => raft.proposeConfChange({ type: ConfChangeType.AddLearner, node: id }));
    }
    if (conf.learners.length > 0) {
      const id = this.rng.pick(conf.learners);
      choices.push(() => raft.proposeConfChange({ type: ConfChangeType.AddVoter, node: id }));
      choices.push(() => raft.proposeConfChange({ type: ConfChangeType.Remove, node: id }));
    }
    if (conf.voters.length > 3) {
      const id = this.rng.pick(conf.voters);
      choices.push(() => raft.proposeConfChange({ type: ConfChangeType.Remove, node: id }));
    }
    if (choices.length === 0) return;
    const out = this.rng.pick(choices)();
    this.stats.confChanges++;
    this.log(`conf change on ${l}: ${JSON.stringify(out)}`);
    this.drive(this.node(l));
  }

  // ------------------------------------------------------------------ clients

  private nextClientOp(clientId: number): void {
    const c = this.clients[clientId - 1];
    if (!c || !this.clientsOn || c.op) return;
    const key = `k${this.rng.int(this.opts.keys)}`;
    const r = this.rng.int(10);
    let input: KvInput;
    const value = `v${clientId}.${c.seq + 1}`;
    if (r < 4) input = { kind: 'get', key };
    else if (r < 7) input = { kind: 'put', key, value };
    else if (r < 8) input = { kind: 'delete', key };
    else
      input = {
        kind: 'cas',
        key,
        expected: this.rng.chance(0.3)
          ? null
          : `v${1 + this.rng.int(this.opts.clients)}.${1 + this.rng.int(c.seq + 1)}`,
        value,
      };
    if (input.kind !== 'get') c.seq++;
    const op: HistoryOp = {
      id: ++this.opIds,
      client: clientId,
      input,
      call: this.now,
      ret: null,
      output: null,
    };
    c.op = op;
    c.attempts = 0;
    c.maybeApplied = false;
    this.history.push(op);
    this.attempt(c);
  }

  private attempt(c: ClientState): void {
    c.attempts++;
    c.attempt++;
    const target = c.leaderGuess !== '' && this.rng.chance(0.8) ? c.leaderGuess : this.rng.pick(this.ids);
    if (c.op && c.op.input.kind !== 'get') c.maybeApplied = true;
    const delay =
      this.opts.net.minDelay + this.rng.float() * (this.opts.net.maxDelay - this.opts.net.minDelay);
    this.schedule({ kind: 'client-req', node: target, client: c.id, attempt: c.attempt }, delay);
    this.schedule({ kind: 'client-timeout', client: c.id, attempt: c.attempt }, this.opts.opTimeout);
  }

  private handleClientRequest(nodeId: NodeId, clientId: number, attempt: number): void {
    const n = this.node(nodeId);
    const c = this.clients[clientId - 1];
    if (!c?.op || c.attempt !== attempt || !n.alive || n.paused || !n.raft) return;
    const input = c.op.input;
    if (input.kind === 'get' && this.opts.unsafeLocalReads) {
      const v = n.sm.get(input.key);
      this.replyClient(nodeId, clientId, attempt, {
        ok: true,
        output: { kind: 'get', value: v ? v.value : null },
      });
    } else if (input.kind === 'get') {
      const ctx = this.nextCtx++;
      n.pendingReads.set(ctx, { client: clientId, attempt, key: input.key });
      n.raft.readIndex(ctx);
    } else {
      // Legacy commands: the first write of a client opens its session (no registration step here).
      const data = encodeRequest({ client: clientId, seq: c.seq, cmd: input }, LEGACY_COMMAND_VERSION);
      const out = n.raft.propose(data);
      if (out.kind === 'rejected') {
        this.replyClient(nodeId, clientId, attempt, { ok: false, leaderHint: n.raft.leader });
      } else {
        n.pendingWrites.set(`${clientId}:${c.seq}`, { client: clientId, attempt });
      }
    }
    this.drive(n);
  }

  private replyClient(from: NodeId, client: number, attempt: number, reply: ClientReply): void {
    const delay =
      this.opts.net.minDelay + this.rng.float() * (this.opts.net.maxDelay - this.opts.net.minDelay);
    this.schedule({ kind: 'client-reply', client, attempt, reply }, delay);
    void from;
  }

  private handleClientReply(clientId: number, attempt: number, reply: ClientReply): void {
    const c = this.clients[clientId - 1];
    if (!c?.op || c.attempt !== attempt) return;
    if (reply.ok) {
      c.op.ret = this.now;
      c.op.output = reply.output;
      c.op = null;
      if (this.clientsOn) this.schedule({ kind: 'client-next', client: c.id }, this.rng.float() * 10);
      return;
    }
    if (reply.leaderHint !== '') c.leaderGuess = reply.leaderHint;
    this.retryOrGiveUp(c);
  }

  private handleClientTimeout(clientId: number, attempt: number): void {
    const c = this.clients[clientId - 1];
    if (!c?.op || c.attempt !== attempt) return;
    c.leaderGuess = '';
    this.retryOrGiveUp(c);
  }

  private retryOrGiveUp(c: ClientState): void {
    const op = c.op as HistoryOp;
    if (c.attempts < this.opts.maxAttempts) {
      this.attempt(c);
      return;
    }
    // Out of attempts: a write may still take effect (its outcome is unknown); a read that
    // returned nothing constrains nothing and leaves the history.
    if (op.input.kind === 'get') {
      const i = this.history.indexOf(op);
      if (i >= 0) this.history.splice(i, 1);
    }
    c.op = null;
    if (this.clientsOn) this.schedule({ kind: 'client-next', client: c.id }, 20 + this.rng.float() * 50);
  }
}

function toOutput(cmd: KvCommand, result: NonNullable<ReturnType<KvStateMachine['apply']>>): KvOutput | null {
  switch (result.kind) {
    case 'put':
      return { kind: 'put' };
    case 'delete':
      return { kind: 'delete', existed: result.existed };
    case 'cas':
      return { kind: 'cas', swapped: result.swapped };
    case 'duplicate':
      void cmd;
      return null;
    default:
      // register, session-expired, invalid: this workload writes legacy commands only.
      return null;
  }
}

function describeEvent(ev: Ev): string {
  switch (ev.kind) {
    case 'deliver': {
      const m = ev.msg;
      const { type, from, to, term } = m;
      let detail = '';
      if (m.type === 'app')
        detail = ` prev=(${m.prevIndex},${m.prevTerm}) n=${m.entries.length} commit=${m.commit}`;
      else if (m.type === 'app-resp')
        detail = ` index=${m.index}${m.reject ? ` reject hint=(${m.hintIndex},${m.hintTerm})` : ''}`;
      else if (m.type === 'vote' || m.type === 'prevote')
        detail = ` last=(${m.lastLogIndex},${m.lastLogTerm})`;
      else if (m.type === 'vote-resp' || m.type === 'prevote-resp') detail = m.reject ? ' reject' : ' grant';
      else if (m.type === 'snap')
        detail = ` at=${m.meta.index} offset=${m.offset} len=${m.data.byteLength}${m.done ? ' done' : ''}`;
      return `${from} -> ${to} ${type} t${term}${detail}`;
    }
    case 'tick':
    case 'fsync':
    case 'restart':
    case 'resume':
      return `${ev.kind} ${ev.node}`;
    case 'client-req':
      return `client ${ev.client} -> ${ev.node} (attempt ${ev.attempt})`;
    case 'client-reply':
      return `-> client ${ev.client}: ${ev.reply.ok ? JSON.stringify(ev.reply.output) : 'failed'}`;
    case 'client-timeout':
      return `client ${ev.client} attempt ${ev.attempt} timed out`;
    default:
      return ev.kind;
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
