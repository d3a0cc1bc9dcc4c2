/**
 * Deterministic cluster simulator that runs the product: every member is a real RaftNode
 * (src/node/raft-node.ts) with the real KV state machine and the real KV request handlers
 * (src/server/kv-service.ts), on a simulated runtime, disk and network (./env.ts). One virtual
 * clock, one seeded RNG; a network that delays, drops, duplicates, reorders and cuts links
 * (both ways, one way, non-transitively); nodes that crash (losing unsynced writes, possibly
 * tearing the last one) and restart from their disk through RaftNode.start, crash in loops,
 * pause (SIGSTOP) and resume, run clocks at different rates; membership changes and
 * leadership transfers; clients with the real client's session and retry rules (src/client/retry.ts).
 *
 * Event loop: events sit in one heap ordered by (virtual time, insertion sequence). Each
 * event runs its callback, then the microtask queue is drained completely (one real
 * setImmediate round trip: Node runs every microtask, including those queued while
 * draining, before the next macrotask; nothing else in the process touches the
 * simulation), so every Promise continuation of RaftNode runs before the next event.
 * Everything a node schedules (setImmediate, timers, fsync completions) goes into the heap.
 * Same options (seed included) => the very same run: the trace hash covers every event.
 *
 * Pause: a paused node's events are held (timers do not fire; messages, client calls and
 * fsync completions queue). On resume they run in the order Node's event loop gives after
 * a stall: the timers phase first (one call per due timer), then the poll phase (messages,
 * calls and I/O completions in arrival order), then the setImmediate callbacks.
 *
 * After every event the {@link Invariants} are checked; at the end the client history is
 * checked for linearizability.
 */

import type { KvInput, KvOutput, KvvInput, KvvOutput } from '../check/kv-model.ts';
import { backoffMs, leaderHint, RetryStatus, retryable } from '../client/retry.ts';
import { GrpcError, type ServerCall, Status } from '../grpc/index.ts';
import { DEFAULT_MAX_SESSIONS, decodeRequest, type KvResult, KvStateMachine } from '../kv/state-machine.ts';
import { RaftNode } from '../node/raft-node.ts';
import { bootstrapState, emptyState, type ProposeOutcome, type Raft } from '../raft/raft.ts';
import { SeededRng } from '../raft/rng.ts';
import { type Message, MessageType, type NodeId, Role } from '../raft/types.ts';
import { defaultLimits, kvHandlers } from '../server/kv-service.ts';
import { SimDisk } from './disk.ts';
import { ObservedKv, type SimHost, SimRuntime, SimStorage, type SimTimer, SimTransport } from './env.ts';
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
  /**
   * Probability a message is held back `holdMin`-`holdMax` virtual ms: a segment lost and
   * retransmitted after the sender's retransmission timeout, doubled on each loss (200 ms,
   * 400 ms, ... of real time; ticks are 10x shorter here). It reaches whichever process
   * listens at its destination when it arrives, as every message in flight does here.
   */
  hold?: number;
  holdMin?: number;
  holdMax?: number;
  /**
   * Probability a message that finds its destination down is sent again once it is back:
   * a transport that resends, after reconnecting, what it had written to a broken stream
   * (at-least-once delivery, as message buses with reconnect buffers do).
   */
  redeliver?: number;
}

export interface FaultOptions {
  /** Mean virtual ms between injected faults (0: none). */
  interval: number;
  crash: boolean;
  /** Several crashes and restarts of one node within a few ticks. */
  crashLoop: boolean;
  pause: boolean;
  partition: boolean;
  /** One-way and non-transitive link cuts. */
  asymmetric: boolean;
  membership: boolean;
  transfer: boolean;
  /** Let a random prefix of unsynced writes survive a crash, the last possibly torn. */
  partialWrites: boolean;
  /**
   * A node crashes right after it forwards a proposal or read to the leader (the request
   * is on the wire), restarts within a few ticks, and again after each of its next one to
   * three forwards (two to four crashes in all): a process crash-looping under load, with requests in flight.
   */
  forwardCrash: boolean;
  /**
   * A leadership transfer whose TimeoutNow is held on a stalled stream for longer than an
   * election timeout (the leader gives up the transfer and renews its lease meanwhile);
   * half of the time the links into the old leader fail one way when it finally arrives.
   */
  lateTransfer: boolean;
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
  /** Node clocks run at rates drawn in [1 - clockDrift, 1 + clockDrift] (0: one rate). */
  clockDrift: number;
  net: NetOptions;
  faults: FaultOptions;
  clients: number;
  keys: number;
  /**
   * The workload: 'mixed' has four reads (get, list, local get) in ten operations;
   * 'read-heavy' turns 60% of the writes into reads (about three in four operations read, as
   * in most key-value workloads), so clients keep reading through faults instead of waiting
   * on writes a cut-off leader cannot commit.
   */
  workload: 'mixed' | 'read-heavy';
  /**
   * The session table's bound on every member (KvStateMachineOptions.maxSessions). Small
   * bounds evict sessions in use: clients then meet "session expired" and follow the real
   * client's rule (a write refused after one attempt opens a new session and goes again
   * once; after more attempts its outcome is unknown).
   */
  maxSessions: number;
  /** A client's attempt timeout (virtual ms): also the server-side deadline of the call. */
  opTimeout: number;
  maxAttempts: number;
  /** Keep this many trace lines for failure reports. */
  traceSize: number;
  /**
   * Clients send their linearizable gets as local reads (`local: true` through the real
   * request path) while the history still expects linearizable answers. Wrong on purpose:
   * tests use it to show that the history checker catches stale reads.
   */
  unsafeLocalReads: boolean;
  /** Storage resolves persist before its fsync: wrong on purpose, to show the commitment check catches it. */
  ackBeforeFsync: boolean;
  /**
   * A local get is answered from another live node's state machine (one at another applied
   * index) than the node that took the call, whose prefix is checked. Wrong on purpose: tests
   * use it to show that the local-read check catches a read that matches no prefix of its node.
   */
  misroutedLocalReads: boolean;
  /**
   * Members apply every write in the legacy command format, whose write on an unknown session
   * opens it again: a retry after its session was evicted applies a second time. Wrong on
   * purpose: tests use it to show that the history check catches a broken exactly-once.
   */
  legacySessions: boolean;
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
  clockDrift: 0,
  net: { minDelay: 0.3, maxDelay: 4, drop: 0, duplicate: 0, hold: 0, holdMin: 20, holdMax: 300 },
  faults: {
    interval: 0,
    crash: false,
    crashLoop: false,
    pause: false,
    partition: false,
    asymmetric: false,
    membership: false,
    transfer: false,
    partialWrites: true,
    forwardCrash: false,
    lateTransfer: false,
  },
  clients: 0,
  keys: 5,
  workload: 'mixed',
  maxSessions: DEFAULT_MAX_SESSIONS,
  opTimeout: 400,
  maxAttempts: 6,
  traceSize: 300,
  unsafeLocalReads: false,
  ackBeforeFsync: false,
  misroutedLocalReads: false,
  legacySessions: false,
};

/** A preset with every fault on: the configuration CI runs over many seeds. */
export function chaosOptions(seed: number, overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    ...defaultOptions,
    seed,
    voters: 3 + 2 * (seed % 2),
    spares: 2,
    // Some seeds never compact: a restarted node then replays everything it ever proposed.
    snapshotEvery: [40, 0, 200][(seed >> 3) % 3] as number,
    retain: 5,
    clockDrift: 0.01,
    net: {
      minDelay: 0.3,
      maxDelay: 8,
      drop: 0.03,
      duplicate: 0.02,
      hold: 0.005,
      holdMin: 20,
      holdMax: 300,
      // An at-least-once transport: what found a node down reaches its next process.
      redeliver: 1,
    },
    faults: {
      interval: 150,
      crash: true,
      crashLoop: true,
      pause: true,
      partition: true,
      asymmetric: true,
      membership: true,
      transfer: true,
      partialWrites: true,
      forwardCrash: true,
      lateTransfer: true,
    },
    // Five clients with sessions that follow the leader, three one-shot ones bound to a node,
    // two one-shot ones behind a load balancer (a random node per operation).
    clients: 10,
    keys: 4,
    // Small batches split a leader's catch-up traffic, which is where Figure 8 lurks.
    maxMsgEntries: [1, 3, 64][seed % 3] as number,
    maxInflight: [1, 4, 16][(seed >> 2) % 3] as number,
    commitBroadcast: (seed >> 4) % 2 === 0 ? 'eager' : 'piggyback',
    workload: (seed >> 5) % 2 === 0 ? 'mixed' : 'read-heavy',
    // Sessions never evicted, evicted now and then, or all the time (ten clients, one-shot
    // ones opening a session per write).
    maxSessions: [DEFAULT_MAX_SESSIONS, 6, 3][(seed >> 6) % 3] as number,
    ...overrides,
  };
}

export type { KvInput, KvOutput } from '../check/kv-model.ts';

/** An operation of the plain KV model (used by the real-process tests): `ret === null` means its outcome is unknown. */
export interface HistoryOp {
  readonly id: number;
  readonly client: number;
  readonly input: KvInput;
  readonly call: number;
  ret: number | null;
  output: KvOutput | null;
}

/** What a simulated client does: the versioned KV operations, a linearizable list of every key, a local get. */
export type SimInput =
  | KvvInput
  | { readonly kind: 'list' }
  /** A local (possibly stale) get on one node: checked per node, not for linearizability. */
  | { readonly kind: 'local-get'; readonly key: string };
export interface ListedKey {
  readonly key: string;
  readonly value: string;
  readonly version: number;
}
export type SimOutput =
  | KvvOutput
  | { readonly kind: 'list'; readonly items: readonly ListedKey[]; readonly more: boolean }
  | { readonly kind: 'local-get'; readonly value: string | null; readonly version: number };

/** One client operation: `ret === null` means its outcome is unknown (it may or may not have happened). */
export interface SimOp {
  readonly id: number;
  readonly client: number;
  readonly input: SimInput;
  readonly call: number;
  ret: number | null;
  output: SimOutput | null;
}

type Reply = { ok: true; res: Record<string, unknown> } | { ok: false; code: number; message: string };

interface CallReq {
  readonly method: 'Put' | 'Get' | 'Delete' | 'CompareAndSwap' | 'List' | 'RegisterSession';
  readonly req: Record<string, unknown>;
}

type NodeEv =
  | { kind: 'timer'; node: NodeId; inc: number; timer: SimTimer }
  | { kind: 'immediate'; node: NodeId; inc: number; cb: () => void }
  | { kind: 'fsync'; node: NodeId; inc: number; done: () => void }
  | { kind: 'deliver'; node: NodeId; msg: Message; held: boolean }
  | { kind: 'call'; node: NodeId; client: number; attempt: number; call: CallReq; held: boolean };

type Ev =
  | NodeEv
  /** Kill `node` (incarnation `inc`, or any when -1), restart it after `restartAfter`, `more` times again. */
  | { kind: 'crash'; node: NodeId; inc: number; restartAfter: number; more: number }
  | { kind: 'restart'; node: NodeId }
  | { kind: 'resume'; node: NodeId }
  | { kind: 'heal'; epoch: number }
  /** Cut every link into `node`, one way, healed a little later. */
  | { kind: 'cut-in'; node: NodeId }
  | { kind: 'drop-end' }
  | { kind: 'fault' }
  | { kind: 'reply'; client: number; attempt: number; reply: Reply }
  | { kind: 'client-timeout'; client: number; attempt: number }
  | { kind: 'client-retry'; client: number; attempt: number }
  | { kind: 'client-next'; client: number };
type Timed = Ev & { time: number; seq: number };

/** One member: its disk outlives its incarnations (RaftNode objects), as a process's data directory does. */
export class SimNode {
  readonly id: NodeId;
  readonly disk: SimDisk;
  /** Clock rate and offset: the node's monotonic clock reads `offset + rate * virtual now`. */
  readonly rate: number;
  readonly offset: number;
  /** The current incarnation; null while crashed or starting. */
  node: RaftNode<KvResult | null> | null = null;
  kv: KvStateMachine | null = null;
  transport: SimTransport | null = null;
  handlers: ReturnType<typeof kvHandlers> | null = null;
  alive = false;
  paused = false;
  /** Bumped on crash and restart: events of an earlier life are dropped. */
  inc = 0;
  crashAtNextWrite = false;
  /** Crashes still to come, each right after this node forwards a proposal or read. */
  crashAfterForwards = 0;
  /** Messages that found this node down, sent again once it is back (redelivery after reconnect). */
  undelivered: Message[] = [];
  /** Client calls the live incarnation is serving: a crash resets their connections. */
  calls = new Set<{ readonly client: number; readonly attempt: number }>();
  /** Events held while paused, by the phase of Node's loop that runs them. */
  heldTimers: NodeEv[] = [];
  heldIo: NodeEv[] = [];
  heldImmediates: NodeEv[] = [];
  /** Read states and restarts over this node's lives (for tests). */
  starts = 0;

  constructor(id: NodeId, disk: SimDisk, rate: number, offset: number) {
    this.id = id;
    this.disk = disk;
    this.rate = rate;
    this.offset = offset;
  }

  /** The core of the live incarnation, if any. */
  get raft(): Raft | null {
    return this.node ? this.node.core : null;
  }
}

interface ClientState {
  readonly id: number;
  /** The client's session (from RegisterSession); one-shot clients open one per write. */
  session: { clientId: number; seq: number } | null;
  /** The current operation waits for its session to be registered first. */
  registering: boolean;
  /** The current write already opened a new session after "session expired" (done once). */
  renewed: boolean;
  op: SimOp | null;
  /** Attempt counter over all operations (stale replies and timeouts are ignored). */
  attempt: number;
  /** Attempts of the current operation. */
  tries: number;
  leaderGuess: NodeId;
  cursor: number;
  /**
   * A one-shot client, like a `raftkv put` run: every operation starts afresh at its one
   * endpoint (a node it keeps to, leader or not: followers forward), with no leader known.
   */
  readonly oneShot: boolean;
  readonly home: number;
  /**
   * A one-shot client behind a load balancer: each operation starts at a node picked at
   * random (as an L4 balancer in front of the members would), not at `home`.
   */
  readonly balanced: boolean;
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

const drainMicrotasks = (): Promise<void> => new Promise((r) => setImmediate(r));

const KIND_CODE: Record<Ev['kind'], number> = {
  timer: 1,
  immediate: 2,
  fsync: 3,
  deliver: 4,
  call: 5,
  crash: 6,
  restart: 7,
  resume: 8,
  heal: 9,
  'drop-end': 10,
  'cut-in': 16,
  fault: 11,
  reply: 12,
  'client-timeout': 13,
  'client-retry': 14,
  'client-next': 15,
};

function mix(h: number, x: number): number {
  return Math.imul(h ^ (x | 0), 0x01000193) >>> 0;
}

function hashString(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = mix(h, s.charCodeAt(i));
  return h;
}

export class Simulator implements SimHost {
  readonly opts: SimOptions;
  readonly rng: SeededRng;
  readonly nodes = new Map<NodeId, SimNode>();
  readonly history: SimOp[] = [];
  /** Per key, the value after each committed write (index order): the log's state at any prefix. */
  private readonly keyLog = new Map<string, { index: number; value: string | null; version: number }[]>();
  /** Per index, the key written there and its value after it, as the first node to apply it saw. */
  private readonly applyLog = new Map<number, { key: string; value: string | null; version: number }>();
  private appliedTop = 0;
  /** Local reads checked against the log's prefix their node had applied. */
  localReads = 0;
  /** Writes refused because their session was evicted ("session expired"). */
  sessionsExpired = 0;
  readonly inv = new Invariants();
  /** Messages sent, by type. */
  readonly sent = new Map<string, number>();
  now = 0;
  steps = 0;
  /** FNV hash of every event processed (time, kind, node, message): equal traces, equal hashes. */
  traceHash = 0x811c9dc5;
  private seq = 0;
  private readonly events = new EventHeap<Timed>();
  private readonly trace: string[] = [];
  private readonly recent: (Timed | undefined)[] = new Array(80);
  private recentAt = 0;
  /** Cut directed links "a>b": messages and calls from a do not reach b. */
  private cut = new Set<string>();
  /** Stalled streams "a>b": what a sends to b waits until the virtual time given. */
  private readonly stalls = new Map<string, number>();
  private partitionEpoch = 0;
  private readonly clients: ClientState[] = [];
  private clientsOn = false;
  private faultsOn = false;
  private dropBoost = 0;
  /** A fault scenario is playing out alone until this virtual time: no other fault starts. */
  private quietUntil = 0;
  /** The link "a>b" whose next TimeoutNow starts a stalled stream ('transfer-late'), or ''. */
  private lateTimeoutNow = '';
  private opIds = 0;
  private failure: SimFailure | null = null;
  readonly stats = {
    crashes: 0,
    crashLoops: 0,
    pauses: 0,
    partitions: 0,
    oneWay: 0,
    forwardCrashes: 0,
    heldMessages: 0,
    redelivered: 0,
    lateTransfers: 0,
    confChanges: 0,
    transfers: 0,
  };

  constructor(opts: Partial<SimOptions> & { seed: number }) {
    this.opts = { ...defaultOptions, ...opts };
    this.rng = new SeededRng(this.opts.seed);
    const ids: NodeId[] = [];
    for (let i = 1; i <= this.opts.voters + this.opts.spares; i++) ids.push(`n${i}`);
    const voters = ids.slice(0, this.opts.voters);
    const d = this.opts.clockDrift;
    for (const id of ids) {
      const initial = voters.includes(id) ? bootstrapState(voters) : emptyState();
      const rate = d > 0 ? 1 - d + 2 * d * this.rng.float() : 1;
      this.nodes.set(id, new SimNode(id, new SimDisk(initial), rate, this.rng.float() * 1e6));
    }
    for (const id of ids) this.boot(id);
  }

  // ------------------------------------------------------------------ SimHost

  get legacySessions(): boolean {
    return this.opts.legacySessions;
  }

  get ackBeforeFsync(): boolean {
    return this.opts.ackBeforeFsync;
  }

  alive(node: NodeId, inc: number): boolean {
    const n = this.nodes.get(node);
    return n?.alive === true && n.inc === inc;
  }

  virtualMs(node: NodeId, localMs: number): number {
    return localMs / this.node(node).rate;
  }

  localNow(node: NodeId): number {
    const n = this.node(node);
    return n.offset + n.rate * this.now;
  }

  random(max: number): number {
    return this.rng.int(max);
  }

  scheduleTimer(node: NodeId, inc: number, timer: SimTimer, localDelay: number): void {
    this.schedule({ kind: 'timer', node, inc, timer }, this.virtualMs(node, localDelay));
  }

  scheduleImmediate(node: NodeId, inc: number, cb: () => void): void {
    this.schedule({ kind: 'immediate', node, inc, cb }, 0);
  }

  scheduleFsync(node: NodeId, inc: number, done: () => void): void {
    const d = this.opts.fsyncMin + this.rng.float() * (this.opts.fsyncMax - this.opts.fsyncMin);
    this.schedule({ kind: 'fsync', node, inc, done }, d);
  }

  onWrite(node: NodeId, inc: number): void {
    const n = this.node(node);
    if (n.crashAtNextWrite && n.inc === inc && n.disk.hasUnsynced()) {
      // Crash in the middle of this write: before its fsync completes (delay > 0).
      n.crashAtNextWrite = false;
      this.schedule({ kind: 'crash', node, inc, restartAfter: 5 + this.rng.float() * 400, more: 0 }, 0);
    }
  }

  onPersist(node: NodeId, batch: Parameters<SimHost['onPersist']>[1]): void {
    this.inv.onPersist(node, this.node(node).raft, batch);
  }

  onDurable(node: NodeId): void {
    this.inv.onDurable(node, this.node(node).disk.durableHardState());
  }

  send(m: Message): void {
    this.sent.set(m.type, (this.sent.get(m.type) ?? 0) + 1);
    let late = 0;
    if (m.type === MessageType.Propose || m.type === MessageType.ReadIndex) this.onForward(m.from);
    else if (m.type === MessageType.TimeoutNow && this.lateTimeoutNow === `${m.from}>${m.to}`)
      late = this.onTimeoutNow(m);
    if (this.isCut(m.from, m.to)) return;
    const { net } = this.opts;
    if (this.rng.chance(Math.min(1, net.drop + this.dropBoost))) return;
    const copies = this.rng.chance(net.duplicate) ? 2 : 1;
    // A stalled stream holds everything sent on it until it recovers.
    const stalled = this.stalls.size > 0 ? (this.stalls.get(`${m.from}>${m.to}`) ?? 0) - this.now : 0;
    for (let i = 0; i < copies; i++) {
      let delay = this.netDelay();
      if (late > 0) delay += late;
      else if (stalled > 0) delay += stalled;
      else if (net.hold !== undefined && net.hold > 0 && this.rng.chance(net.hold)) {
        const min = net.holdMin ?? 20;
        delay += min + this.rng.float() * ((net.holdMax ?? 300) - min);
        this.stats.heldMessages++;
      }
      this.schedule({ kind: 'deliver', node: m.to, msg: m, held: false }, delay);
    }
  }

  /**
   * The TimeoutNow of a 'transfer-late' fault goes out: it is held back 1.2-3 election
   * timeouts (lost, then retransmitted late; the heartbeats after it get through), so the
   * leader gives up the transfer and renews its lease before the target acts on it. Three
   * times in four the links into the old leader fail one way when it arrives, so the old
   * leader hears of no newer term. Returns the hold in virtual ms.
   */
  private onTimeoutNow(m: Message): number {
    this.lateTimeoutNow = '';
    if (!this.faultsOn) return 0;
    const hold = this.opts.electionTick * this.opts.tickMs * (1.2 + 1.8 * this.rng.float());
    this.stats.lateTransfers++;
    this.log(`TimeoutNow ${m.from} -> ${m.to} held ${hold.toFixed(0)} ms`);
    if (this.rng.chance(0.75)) this.schedule({ kind: 'cut-in', node: m.from }, hold);
    this.quietUntil = Math.max(this.quietUntil, this.now + hold + 300);
    return hold;
  }

  /** `node` forwarded a proposal or read: crash it now if a forward-crash fault is armed. */
  private onForward(node: NodeId): void {
    const n = this.nodes.get(node);
    if (!n || n.crashAfterForwards <= 0 || !n.alive) return;
    n.crashAfterForwards--;
    this.stats.forwardCrashes++;
    const restartAfter = this.opts.tickMs * (1 + 2 * this.rng.float());
    // After this event: the forward is already on the wire.
    this.schedule({ kind: 'crash', node, inc: n.inc, restartAfter, more: 0 }, 0);
  }

  onApply(node: NodeId, index: number, data: Uint8Array): void {
    const r = this.node(node).raft;
    const e = r?.entryAt(index);
    this.inv.onApply(node, index, e ? e.term : -1, data);
  }

  /** After `node` applied `index`: the first node to apply an index records the key's new state; others must agree. */
  onApplied(node: NodeId, index: number, data: Uint8Array, kv: KvStateMachine): void {
    if (data.byteLength === 0) return;
    let key: string;
    try {
      key = decodeRequest(data).cmd.key;
    } catch {
      return; // a session registration (or bytes that are no command): no key changes
    }
    const v = kv.get(key);
    const after = { key, value: v ? v.value : null, version: v ? v.version : 0 };
    const known = this.applyLog.get(index);
    if (known === undefined) {
      if (index <= this.appliedTop) return; // compacted history of an earlier life: nothing to compare
      this.appliedTop = index;
      this.applyLog.set(index, after);
      let log = this.keyLog.get(key);
      if (!log) {
        log = [];
        this.keyLog.set(key, log);
      }
      log.push({ index, value: after.value, version: after.version });
    } else if (known.key !== key || known.value !== after.value || known.version !== after.version) {
      throw new SafetyViolation(
        `${node} holds ${key}=${after.value} (version ${after.version}) after applying ${index}, the first to apply it held ${known.value} (version ${known.version})`,
      );
    }
  }

  /** A local read on `node` must show the key as the committed log left it at the prefix the node had applied. */
  private checkLocalRead(node: NodeId, appliedAt: number, key: string, res: Record<string, unknown>): void {
    const log = this.keyLog.get(key) ?? [];
    let lo = 0;
    let hi = log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((log[mid] as { index: number }).index <= appliedAt) lo = mid + 1;
      else hi = mid;
    }
    const at = lo > 0 ? log[lo - 1] : undefined;
    const value = res['found'] ? (res['value'] as string) : null;
    const version = value === null ? 0 : (res['version'] as number);
    const want = at ?? { value: null, version: 0 };
    this.localReads++;
    if (want.value !== value || want.version !== version) {
      this.failure ??= new SimFailure(
        `safety violation: local read of ${key} on ${node} (applied ${appliedAt}) returned ${value} (version ${version}); the log's prefix holds ${want.value} (version ${want.version})`,
        this.opts.seed,
        this.traceWithEvents(),
      );
    }
  }

  onRestore(node: NodeId, index: number, applied: number): void {
    this.inv.onSnapshotApplied(node, index, applied);
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

  /** The core of a live node (for inspection; mutating it bypasses RaftNode until its next drive). */
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
      const r = n.raft;
      if (!n.alive || n.paused || !r) continue;
      if (r.currentRole === Role.Leader && r.currentTerm > bestTerm) {
        best = n.id;
        bestTerm = r.currentTerm;
      }
    }
    return best;
  }

  /** Process events until virtual time advances by `ms`. */
  async runFor(ms: number): Promise<void> {
    await drainMicrotasks(); // what the caller started (a start, a proposal) settles first
    const until = this.now + ms;
    for (;;) {
      const ev = this.events.peek();
      if (!ev || ev.time > until) break;
      await this.step();
    }
    this.now = Math.max(this.now, until);
  }

  /** Run until `pred` holds (checked after each event) or `maxMs` passes. Returns whether it held. */
  async runUntil(pred: () => boolean, maxMs: number): Promise<boolean> {
    await drainMicrotasks();
    const until = this.now + maxMs;
    if (pred()) return true;
    for (;;) {
      const ev = this.events.peek();
      if (!ev || ev.time > until) break;
      await this.step();
      if (pred()) return true;
    }
    this.now = Math.max(this.now, until);
    return pred();
  }

  /** Run until some live node is leader and every live voter it reaches agrees on it. */
  async waitForLeader(maxMs = 5000): Promise<NodeId | null> {
    await this.runUntil(() => this.stableLeader() !== null, maxMs);
    return this.stableLeader();
  }

  private stableLeader(): NodeId | null {
    const l = this.leader();
    if (!l) return null;
    const lr = this.raft(l);
    const term = lr.currentTerm;
    for (const id of lr.configuration.voters) {
      const n = this.nodes.get(id);
      const r = n?.raft;
      if (!n?.alive || n.paused || !r || this.isCut(n.id, l) || this.isCut(l, n.id)) continue;
      if (r.leader !== l || r.currentTerm !== term) return null;
    }
    return l;
  }

  /**
   * Propose `data` through node `id`'s RaftNode.propose (the path the server takes); returns
   * what the core did with it. The proposal's own promise is left to settle.
   */
  propose(id: NodeId, data: Uint8Array): ProposeOutcome {
    const n = this.node(id);
    const node = n.node;
    const r = n.raft;
    if (!node || !r) return { kind: 'rejected', reason: 'no-leader', message: `${id} is down` };
    const before = r.lastIndex;
    node.propose(data).catch(() => {});
    if (r.lastIndex > before) return { kind: 'appended', index: r.lastIndex, term: r.currentTerm };
    if (r.currentRole !== Role.Leader && r.leader !== '') return { kind: 'forwarded', to: r.leader };
    return { kind: 'rejected', reason: 'no-leader', message: 'not appended' };
  }

  /** Cut the network into groups (both ways); unlisted nodes form one more group. */
  partition(groups: readonly (readonly NodeId[])[]): void {
    const group = new Map<NodeId, number>();
    groups.forEach((g, i) => {
      for (const id of g) group.set(id, i + 1);
    });
    this.cut = new Set();
    for (const a of this.ids)
      for (const b of this.ids) if ((group.get(a) ?? 0) !== (group.get(b) ?? 0)) this.cut.add(`${a}>${b}`);
    this.partitionEpoch++;
    this.stats.partitions++;
    this.log(`partition ${groups.map((g) => `[${g.join(',')}]`).join(' ')}`);
  }

  /** Cut the link from `a` to `b` (and back when `bothWays`), keeping other cuts. */
  cutLink(a: NodeId, b: NodeId, bothWays: boolean): void {
    this.cut.add(`${a}>${b}`);
    if (bothWays) this.cut.add(`${b}>${a}`);
    this.partitionEpoch++;
    this.log(`cut ${a} ${bothWays ? '<->' : '->'} ${b}`);
  }

  isolate(id: NodeId): void {
    this.partition([[id]]);
  }

  heal(): void {
    this.cut = new Set();
    this.partitionEpoch++;
    this.log('heal');
  }

  /** Whether messages from `a` fail to reach `b`. */
  isCut(a: NodeId, b: NodeId): boolean {
    return this.cut.size > 0 && this.cut.has(`${a}>${b}`);
  }

  setDrop(p: number): void {
    this.opts.net.drop = p;
  }

  /** Kill the process: the RaftNode object is discarded with everything not fsynced. */
  crash(id: NodeId): void {
    const n = this.node(id);
    if (!n.alive) return;
    const unsynced = n.disk.unsyncedCount;
    const survivors = this.opts.faults.partialWrites ? this.rng.int(unsynced + 1) : 0;
    n.disk.crash(survivors);
    n.alive = false;
    n.paused = false;
    n.node = null;
    n.kv = null;
    n.transport = null;
    n.handlers = null;
    n.inc++;
    n.crashAtNextWrite = false;
    // The kernel resets the dead process's connections: calls in progress fail at once.
    for (const c of n.calls)
      this.reply(c.client, c.attempt, { ok: false, code: 14, message: 'connection reset' });
    n.calls = new Set();
    n.heldTimers = [];
    n.heldIo = [];
    n.heldImmediates = [];
    this.stats.crashes++;
    this.inv.nodeCrashed(id);
    this.log(`crash ${id} (kept ${survivors}/${unsynced} unsynced records)`);
  }

  /** Start a new process on the node's disk (RaftNode.start); it is up once the start resolves. */
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
    this.stats.pauses++;
    this.log(`pause ${id}`);
  }

  /** SIGCONT: what was held runs in Node's order: due timers, then I/O in arrival order, then immediates. */
  resume(id: NodeId): void {
    const n = this.node(id);
    if (!n.alive || !n.paused) return;
    n.paused = false;
    this.log(
      `resume ${id} (${n.heldTimers.length} timers, ${n.heldIo.length} messages/calls/fsyncs, ${n.heldImmediates.length} immediates)`,
    );
    const held = [...n.heldTimers, ...n.heldIo, ...n.heldImmediates];
    n.heldTimers = [];
    n.heldIo = [];
    n.heldImmediates = [];
    for (const ev of held) {
      if (ev.kind === 'deliver' || ev.kind === 'call') this.schedule({ ...ev, held: true }, 0);
      else this.schedule(ev, 0);
    }
  }

  startClients(): void {
    if (this.clientsOn) return;
    this.clientsOn = true;
    for (let i = 0; i < this.opts.clients; i++) {
      const id = i + 1;
      const c: ClientState = {
        id,
        // Session ids from the simulation (the real client draws 53 random bits).
        session: null,
        registering: false,
        renewed: false,
        op: null,
        attempt: 0,
        tries: 0,
        leaderGuess: '',
        cursor: this.rng.int(this.nodes.size),
        oneShot: id % 2 === 0,
        balanced: id % 4 === 0,
        home: this.rng.int(this.nodes.size),
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
    this.stalls.clear();
    this.lateTimeoutNow = '';
    for (const n of this.nodes.values()) {
      n.crashAtNextWrite = false;
      n.crashAfterForwards = 0;
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

  private netDelay(): number {
    const { net } = this.opts;
    return net.minDelay + this.rng.float() * (net.maxDelay - net.minDelay);
  }

  private schedule(ev: Ev, delay: number): void {
    (ev as Timed).time = this.now + delay;
    (ev as Timed).seq = this.seq++;
    this.events.push(ev as Timed);
  }

  /** Runs the next event, drains the microtasks it caused, checks the invariants. */
  private async step(): Promise<void> {
    const ev = this.events.pop() as Timed;
    this.now = ev.time;
    this.steps++;
    this.recent[this.recentAt] = ev;
    this.recentAt = (this.recentAt + 1) % this.recent.length;
    this.hashEvent(ev);
    try {
      this.process(ev);
      await drainMicrotasks();
      if (this.failure) throw this.failure;
      this.inv.checkCluster(this.view);
    } catch (err) {
      if (err instanceof SimFailure) throw err;
      const msg =
        err instanceof SafetyViolation ? `safety violation: ${err.message}` : `error: ${String(err)}`;
      this.fail(msg, err);
    }
  }

  private hashEvent(ev: Timed): void {
    let h = mix(this.traceHash, Math.round(ev.time * 1000));
    h = mix(h, KIND_CODE[ev.kind]);
    if ('node' in ev) h = hashString(h, ev.node);
    if (ev.kind === 'deliver') {
      const m = ev.msg;
      h = hashString(mix(mix(h, m.term), 'index' in m ? (m.index as number) : 0), m.type);
    } else if (ev.kind === 'call' || ev.kind === 'reply') {
      h = mix(mix(h, ev.client), ev.attempt);
    }
    this.traceHash = h;
  }

  private readonly view = {
    cores: (): Iterable<[NodeId, Raft]> => this.cores(),
    durableTermAt: (node: NodeId, index: number): number => this.node(node).disk.durableTermAt(index),
    log: (line: string): void => this.log(line),
  };

  private *cores(): Iterable<[NodeId, Raft]> {
    for (const n of this.nodes.values()) {
      const r = n.raft;
      if (n.alive && r) yield [n.id, r];
    }
  }

  /** An error thrown inside a node's callback is a bug in the product: fail the run at this event. */
  private guard(cb: () => void): void {
    try {
      cb();
    } catch (err) {
      this.failure ??= new SimFailure(
        `error in a node callback: ${String(err)}`,
        this.opts.seed,
        this.traceWithEvents(),
        err,
      );
    }
  }

  private process(ev: Timed): void {
    switch (ev.kind) {
      case 'timer':
      case 'immediate':
      case 'fsync':
      case 'deliver':
      case 'call':
        this.nodeEvent(ev);
        return;
      case 'crash': {
        const n = this.node(ev.node);
        if (!n.alive || (ev.inc >= 0 && n.inc !== ev.inc)) return;
        this.crash(ev.node);
        this.schedule({ kind: 'restart', node: ev.node }, ev.restartAfter);
        if (ev.more > 0) {
          const next = ev.restartAfter + this.rng.float() * this.opts.tickMs * 2;
          const again = this.rng.float() * this.opts.tickMs;
          this.schedule(
            { kind: 'crash', node: ev.node, inc: -1, restartAfter: again, more: ev.more - 1 },
            next,
          );
        }
        return;
      }
      case 'restart':
        this.restart(ev.node);
        return;
      case 'resume':
        this.resume(ev.node);
        return;
      case 'heal':
        if (ev.epoch === this.partitionEpoch) this.heal();
        return;
      case 'drop-end':
        this.dropBoost = 0;
        return;
      case 'cut-in': {
        if (!this.faultsOn) return;
        for (const o of this.ids) if (o !== ev.node) this.cutLink(o, ev.node, false);
        this.stats.oneWay++;
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, 50 + this.rng.float() * 250);
        return;
      }
      case 'fault':
        if (!this.faultsOn) return;
        if (this.now >= this.quietUntil) this.injectFault();
        this.schedule({ kind: 'fault' }, this.rng.float() * this.opts.faults.interval * 2);
        return;
      case 'reply':
        this.handleReply(ev.client, ev.attempt, ev.reply);
        return;
      case 'client-timeout':
        this.handleClientTimeout(ev.client, ev.attempt);
        return;
      case 'client-retry': {
        const c = this.clients[ev.client - 1];
        if (c?.op && c.attempt === ev.attempt) this.attempt(c);
        return;
      }
      case 'client-next':
        this.nextClientOp(ev.client);
        return;
    }
  }

  private nodeEvent(ev: Timed & NodeEv): void {
    const n = this.node(ev.node);
    if (ev.kind === 'deliver' || ev.kind === 'call') {
      // Addressed to whichever process listens there now; a cut made in flight drops it.
      const from = ev.kind === 'deliver' ? ev.msg.from : '';
      if (!ev.held && from !== '' && this.isCut(from, n.id)) return;
      if (!n.alive) {
        if (ev.kind === 'call')
          this.reply(ev.client, ev.attempt, { ok: false, code: 14, message: 'connection refused' });
        else if (
          this.faultsOn &&
          n.undelivered.length < 64 &&
          this.opts.net.redeliver !== undefined &&
          this.rng.chance(this.opts.net.redeliver)
        )
          n.undelivered.push(ev.msg);
        return;
      }
    } else if (n.inc !== ev.inc || !n.alive) {
      return;
    }
    if (n.paused) {
      if (ev.kind === 'timer') n.heldTimers.push(ev);
      else if (ev.kind === 'immediate') n.heldImmediates.push(ev);
      else n.heldIo.push(ev);
      return;
    }
    switch (ev.kind) {
      case 'timer': {
        const t = ev.timer;
        if (t.cleared) return;
        if (t.every > 0) this.scheduleTimer(n.id, n.inc, t, t.every);
        this.guard(t.cb);
        return;
      }
      case 'immediate':
        this.guard(ev.cb);
        return;
      case 'fsync':
        this.guard(ev.done);
        return;
      case 'deliver': {
        const h = n.transport?.handlers;
        if (h) this.guard(() => h.onMessages([ev.msg]));
        return;
      }
      case 'call':
        this.serveCall(n, ev.client, ev.attempt, ev.call);
        return;
    }
  }

  private boot(id: NodeId): void {
    const n = this.node(id);
    n.inc++;
    n.alive = true;
    n.paused = false;
    n.starts++;
    const inc = n.inc;
    if (n.undelivered.length > 0) {
      // The senders' streams reconnect within a few ticks and send again what they had
      // written to the broken one, after whatever they send meanwhile.
      const reconnect = this.opts.tickMs * (0.5 + 2.5 * this.rng.float());
      for (const msg of n.undelivered) {
        this.schedule({ kind: 'deliver', node: id, msg, held: false }, reconnect + this.netDelay());
      }
      this.stats.redelivered += n.undelivered.length;
      n.undelivered = [];
    }
    const storage = new SimStorage(this, id, inc, n.disk);
    this.inv.nodeStarted(id, storage.initialState());
    const kv = new KvStateMachine({ maxSessions: this.opts.maxSessions });
    const transport = new SimTransport(this, id, inc);
    n.transport = transport;
    const o = this.opts;
    RaftNode.start<KvResult | null>({
      id,
      storage,
      transport,
      stateMachine: new ObservedKv(kv, this, id),
      tickMs: o.tickMs,
      snapshotEntries: o.snapshotEvery,
      retainEntries: o.retain,
      runtime: new SimRuntime(this, id, inc),
      raft: {
        electionTick: o.electionTick,
        heartbeatTick: o.heartbeatTick,
        preVote: o.preVote,
        checkQuorum: o.checkQuorum,
        readOnly: o.readOnly,
        maxMsgEntries: o.maxMsgEntries,
        maxInflight: o.maxInflight,
        maxSnapshotChunk: o.maxSnapshotChunk,
        commitBroadcast: o.commitBroadcast,
      },
    }).then(
      (node) => {
        if (!this.alive(id, inc)) return;
        n.node = node;
        n.kv = kv;
        n.handlers = kvHandlers({
          node,
          sm: kv,
          clusterId: 'sim',
          limits: { ...defaultLimits, defaultTimeoutMs: o.opTimeout },
          address: (peer) => `${peer}:7000`,
        });
      },
      (err: unknown) => {
        this.failure ??= new SimFailure(
          `${id} failed to start: ${String(err)}`,
          o.seed,
          this.traceWithEvents(),
          err,
        );
      },
    );
  }

  // ------------------------------------------------------------------ faults

  private injectFault(): void {
    const f = this.opts.faults;
    const kinds: string[] = [];
    if (f.crash) kinds.push('crash', 'crash');
    if (f.crashLoop) kinds.push('crash-loop');
    if (f.pause) kinds.push('pause', 'pause-leader');
    if (f.partition) kinds.push('partition', 'partition', 'isolate-leader');
    if (f.asymmetric) kinds.push('one-way', 'one-way-leader', 'non-transitive');
    if (f.membership) kinds.push('membership', 'membership');
    if (f.transfer) kinds.push('transfer', 'transfer-stall');
    if (f.pause && f.partition) kinds.push('stall-leader');
    if (f.forwardCrash) kinds.push('crash-forwarding');
    if (f.lateTransfer) kinds.push('transfer-late');
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
      case 'crash-forwarding': {
        // A follower crash-loops under load: it dies right after each of its next forwards.
        const l = this.leader();
        const id = this.rng.pick(ids.filter((x) => x !== l));
        const n = this.node(id);
        if (!n.alive || n.crashAfterForwards > 0) return;
        n.crashAfterForwards = 2 + this.rng.int(3);
        this.log(`crash ${id} after each of its next ${n.crashAfterForwards} forwards`);
        return;
      }
      case 'transfer-late': {
        // The TimeoutNow is held back when it goes out (see onTimeoutNow): the leader gives
        // up the transfer and renews its lease before the target acts on it.
        const t = this.transferTarget();
        if (!t) return;
        const { l, node, to } = t;
        this.lateTimeoutNow = `${l}>${to}`;
        this.quietUntil = this.now + 2 * this.opts.electionTick * this.opts.tickMs;
        try {
          node.transferLeadership(to);
          this.log(`transfer ${l} -> ${to}: started, its TimeoutNow to be held`);
        } catch (err) {
          this.log(`transfer ${l} -> ${to}: ${(err as Error).message}`);
        }
        return;
      }
      case 'crash-loop': {
        // Several crashes and restarts within a few ticks (a crash-looping process).
        const id = this.rng.pick(ids);
        const n = this.node(id);
        if (!n.alive) return;
        this.stats.crashLoops++;
        this.log(`crash loop ${id}`);
        const restartAfter = this.rng.float() * this.opts.tickMs;
        this.schedule({ kind: 'crash', node: id, inc: n.inc, restartAfter, more: 1 + this.rng.int(3) }, 0);
        return;
      }
      case 'pause':
      case 'pause-leader': {
        const id = kind === 'pause' ? this.rng.pick(ids) : this.leader();
        if (!id) return;
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
      case 'one-way':
      case 'one-way-leader': {
        // A reaches B, B does not reach A (several links at once, sometimes from the leader).
        const from = kind === 'one-way' ? this.rng.pick(ids) : this.leader();
        if (!from) return;
        const others = ids.filter((x) => x !== from);
        const k = 1 + this.rng.int(others.length);
        const inbound = this.rng.chance(0.5);
        for (let i = 0; i < k; i++) {
          const o = this.rng.pick(others);
          if (inbound) this.cutLink(o, from, false);
          else this.cutLink(from, o, false);
        }
        this.stats.oneWay++;
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, 50 + this.rng.float() * 500);
        return;
      }
      case 'non-transitive': {
        // A-B and B-C work, A-C does not.
        const a = this.rng.pick(ids);
        const c = this.rng.pick(ids.filter((x) => x !== a));
        this.cutLink(a, c, true);
        this.stats.partitions++;
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, 50 + this.rng.float() * 500);
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
      case 'stall-leader': {
        // The leader stalls (GC, SIGSTOP, a blocked disk) and its peer links fail meanwhile;
        // clients still reach it. It resumes before the links heal.
        const l = this.leader();
        if (!l) return;
        this.isolate(l);
        this.pause(l);
        const resumeAt = 50 + this.rng.float() * 350;
        this.schedule({ kind: 'resume', node: l }, resumeAt);
        this.schedule({ kind: 'heal', epoch: this.partitionEpoch }, resumeAt + this.rng.float() * 60);
        return;
      }
      case 'transfer':
      case 'transfer-stall': {
        const t = this.transferTarget();
        if (!t) return;
        const { l, node, to } = t;
        try {
          node.transferLeadership(to);
          this.log(`transfer ${l} -> ${to}: started`);
          if (kind === 'transfer-stall') {
            // The target stalls with the TimeoutNow in its socket: it acts on it late.
            this.pause(to);
            this.schedule({ kind: 'resume', node: to }, 50 + this.rng.float() * 300);
          }
        } catch (err) {
          this.log(`transfer ${l} -> ${to}: ${(err as Error).message}`);
        }
        return;
      }
    }
  }

  /** The leader, its node and a voter to hand leadership to (counted as a transfer), or null. */
  private transferTarget(): { l: string; node: RaftNode<KvResult | null>; to: string } | null {
    const l = this.leader();
    const node = l ? this.node(l).node : null;
    if (!l || !node) return null;
    const voters = node.core.configuration.voters.filter((v) => v !== l);
    if (voters.length === 0) return null;
    const to = this.rng.pick(voters);
    this.stats.transfers++;
    return { l, node, to };
  }

  /** A membership change through the AddMember/RemoveMember handlers of the leader: learners, voters directly, removals. */
  private changeMembership(): void {
    const l = this.leader();
    const n = l ? this.node(l) : null;
    const h = n?.handlers;
    const r = n?.raft;
    if (!l || !h || !r) return;
    const conf = r.configuration;
    const nonMembers = this.ids.filter((id) => !conf.voters.includes(id) && !conf.learners.includes(id));
    const choices: (() => Promise<unknown>)[] = [];
    const call = this.serverCall(n);
    if (nonMembers.length > 0) {
      const id = this.rng.pick(nonMembers);
      const learner = this.rng.chance(0.5);
      choices.push(() => h.AddMember({ id, address: `${id}:7000`, learner }, call));
    }
    if (conf.learners.length > 0) {
      const id = this.rng.pick(conf.learners);
      choices.push(() => h.AddMember({ id, address: `${id}:7000` }, call));
      choices.push(() => h.RemoveMember({ id }, call));
    }
    if (conf.voters.length > 3) {
      const id = this.rng.pick(conf.voters);
      choices.push(() => h.RemoveMember({ id }, call));
    }
    if (choices.length === 0) return;
    this.stats.confChanges++;
    const choice = this.rng.pick(choices);
    this.log(`conf change on ${l} (voters ${conf.voters.join(',')} learners ${conf.learners.join(',')})`);
    choice().then(
      () => this.log(`conf change on ${l} applied`),
      (err: unknown) => this.log(`conf change on ${l}: ${(err as Error).message}`),
    );
  }

  // ------------------------------------------------------------------ clients

  private serverCall(n: SimNode): ServerCall {
    const deadline = this.dateNow(n) + this.opts.opTimeout;
    return {
      path: '',
      metadata: undefined as unknown as ServerCall['metadata'],
      signal: undefined as unknown as AbortSignal,
      deadline,
      cancelled: false,
      peer: 'sim',
      peerCertificate: () => null,
      setHeader() {},
      setTrailer() {},
    };
  }

  private dateNow(n: SimNode): number {
    return 1_700_000_000_000 + n.offset + n.rate * this.now;
  }

  private nextClientOp(clientId: number): void {
    const c = this.clients[clientId - 1];
    if (!c || !this.clientsOn || c.op) return;
    const key = `k${this.rng.int(this.opts.keys)}`;
    let r = this.rng.int(10);
    if (this.opts.workload === 'read-heavy' && r >= 4 && this.rng.chance(0.6)) r = this.rng.int(4);
    let input: SimInput;
    const value = `v${clientId}.${this.opIds + 1}`;
    if (r < 3) input = { kind: 'get', key };
    else if (r < 4) input = this.rng.chance(0.5) ? { kind: 'list' } : { kind: 'local-get', key };
    else if (r < 6) input = { kind: 'put', key, value };
    else if (r < 7) input = { kind: 'delete', key };
    else if (r < 8 || this.opts.unsafeLocalReads) {
      const prev = this.history.length > 0 ? this.rng.pick(this.history).input : null;
      const expected = this.rng.chance(0.3) || !prev || !('value' in prev) ? null : prev.value;
      input = { kind: 'cas', key, expected, value };
    } else {
      input = { kind: 'cas', key, expected: null, expectedVersion: 1 + this.rng.int(4), value };
    }
    const write = input.kind === 'put' || input.kind === 'delete' || input.kind === 'cas';
    if (c.oneShot) {
      c.leaderGuess = '';
      c.cursor = c.balanced ? this.rng.int(this.nodes.size) : c.home;
      c.session = null;
    }
    // A write needs a session: open one with RegisterSession first, as the client library does.
    c.registering = write && c.session === null;
    c.renewed = false;
    if (write && c.session) c.session.seq++;
    const op: SimOp = {
      id: ++this.opIds,
      client: clientId,
      input,
      call: this.now,
      ret: null,
      output: null,
    };
    c.op = op;
    c.tries = 0;
    this.history.push(op);
    this.attempt(c);
  }

  private request(c: ClientState): CallReq {
    if (c.registering) return { method: 'RegisterSession', req: {} };
    const input = (c.op as SimOp).input;
    const session = c.session ? { client_id: c.session.clientId, sequence: c.session.seq } : {};
    switch (input.kind) {
      case 'get':
        return { method: 'Get', req: { key: input.key, local: this.opts.unsafeLocalReads } };
      case 'local-get':
        return { method: 'Get', req: { key: input.key, local: true } };
      case 'list':
        return { method: 'List', req: { prefix: '', limit: 1000, local: this.opts.unsafeLocalReads } };
      case 'put':
        return { method: 'Put', req: { key: input.key, value: input.value, ...session } };
      case 'delete':
        return { method: 'Delete', req: { key: input.key, ...session } };
      case 'cas':
        return {
          method: 'CompareAndSwap',
          req:
            input.expectedVersion !== undefined
              ? { key: input.key, value: input.value, expected_version: input.expectedVersion, ...session }
              : input.expected === null
                ? { key: input.key, value: input.value, expect_absent: true, ...session }
                : { key: input.key, value: input.value, expected_value: input.expected, ...session },
        };
    }
  }

  private attempt(c: ClientState): void {
    c.tries++;
    c.attempt++;
    const ids = this.ids;
    const target = c.leaderGuess !== '' ? c.leaderGuess : (ids[c.cursor % ids.length] as NodeId);
    this.schedule(
      { kind: 'call', node: target, client: c.id, attempt: c.attempt, call: this.request(c), held: false },
      this.netDelay(),
    );
    this.schedule({ kind: 'client-timeout', client: c.id, attempt: c.attempt }, this.opts.opTimeout);
  }

  /** The request reaches node `n`: the KV handler runs on it; its answer travels back. */
  private serveCall(n: SimNode, client: number, attempt: number, call: CallReq): void {
    const h = n.handlers;
    if (!h) {
      this.reply(client, attempt, { ok: false, code: 14, message: 'server starting' });
      return;
    }
    const sc = this.serverCall(n);
    const inc = n.inc;
    const inProgress = { client, attempt };
    n.calls.add(inProgress);
    // A local read sees the state machine as it is now: the log's prefix up to this index.
    const appliedAt = n.kv ? n.kv.applied : 0;
    let answer = h;
    if (this.opts.misroutedLocalReads && call.method === 'Get' && call.req['local'] === true) {
      for (const o of this.nodes.values()) {
        if (o !== n && o.alive && o.handlers && o.kv && o.kv.applied !== appliedAt) {
          answer = o.handlers;
          break;
        }
      }
    }
    let p: Promise<Record<string, unknown>>;
    try {
      p = (answer[call.method] as (req: never, call: ServerCall) => Promise<Record<string, unknown>>)(
        call.req as never,
        sc,
      );
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (res) => {
        if (!this.alive(n.id, inc)) return;
        n.calls.delete(inProgress);
        if (call.method === 'Get' && call.req['local'] === true && !this.opts.unsafeLocalReads) {
          this.checkLocalRead(n.id, appliedAt, call.req['key'] as string, res);
        }
        this.reply(client, attempt, { ok: true, res });
      },
      (err: unknown) => {
        if (!this.alive(n.id, inc)) return;
        n.calls.delete(inProgress);
        if (err instanceof GrpcError && err.code === Status.INTERNAL) {
          // INTERNAL answers a valid request only when the server is wrong (the state machine's
          // result does not fit the request: a proposal matched to another's entry).
          this.failure ??= new SimFailure(
            `${n.id} answered ${call.method} with INTERNAL: ${err.message}`,
            this.opts.seed,
            this.traceWithEvents(),
            err,
          );
        } else if (err instanceof GrpcError)
          this.reply(client, attempt, { ok: false, code: err.code, message: err.message });
        else
          this.failure ??= new SimFailure(
            `handler ${call.method} threw ${String(err)}`,
            this.opts.seed,
            this.traceWithEvents(),
            err,
          );
      },
    );
  }

  private reply(client: number, attempt: number, reply: Reply): void {
    this.schedule({ kind: 'reply', client, attempt, reply }, this.netDelay());
  }

  private handleReply(clientId: number, attempt: number, reply: Reply): void {
    const c = this.clients[clientId - 1];
    if (!c?.op || c.attempt !== attempt) return;
    if (reply.ok && c.registering) {
      c.registering = false;
      c.session = { clientId: reply.res['client_id'] as number, seq: 1 };
      c.tries = 0;
      c.attempt++;
      this.attempt(c);
      return;
    }
    if (reply.ok) {
      c.op.ret = this.now;
      c.op.output = toOutput(c.op.input, reply.res);
      this.finish(c, 10);
      return;
    }
    if (reply.code === Status.FAILED_PRECONDITION && reply.message.startsWith('session expired')) {
      this.sessionExpired(c);
      return;
    }
    this.failed(c, reply.code, reply.code === RetryStatus.DEADLINE_EXCEEDED, reply.message);
  }

  /**
   * The write's session was evicted: never reuse it (RaftKvClient's rule). Refused after its
   * only attempt, the write was certainly not applied: open a new session and send it again,
   * once. After more attempts an earlier one may have been applied: its outcome is unknown
   * (it stays in the history without a return, as RaftKvSessionExpiredError leaves it).
   */
  private sessionExpired(c: ClientState): void {
    this.sessionsExpired++;
    c.session = null;
    c.attempt++;
    if (c.tries === 1 && !c.renewed) {
      c.renewed = true;
      c.registering = true;
      c.tries = 0;
      this.attempt(c);
      return;
    }
    this.finish(c, 20 + this.rng.float() * 50);
  }

  private handleClientTimeout(clientId: number, attempt: number): void {
    const c = this.clients[clientId - 1];
    if (!c?.op || c.attempt !== attempt) return;
    this.failed(c, RetryStatus.DEADLINE_EXCEEDED, true, 'attempt timed out');
  }

  /** The real client's rules: retry UNAVAILABLE and timed-out idempotent attempts, follow leader hints, back off. */
  private failed(c: ClientState, code: number, attemptTimedOut: boolean, message: string): void {
    const op = c.op as SimOp;
    c.attempt++; // the attempt is over: its late reply or timeout is ignored
    const read = op.input.kind === 'get' || op.input.kind === 'list' || op.input.kind === 'local-get';
    // A local read goes to one node and is not retried elsewhere (as the real client does).
    const again = op.input.kind !== 'local-get' && c.tries < this.opts.maxAttempts;
    if (retryable(code, attemptTimedOut, true) && again) {
      const hint = code === RetryStatus.UNAVAILABLE ? leaderHint(message) : undefined;
      const hinted = hint?.replace(/:\d+$/, '');
      if (hinted && this.nodes.has(hinted) && hinted !== c.leaderGuess) {
        c.leaderGuess = hinted;
      } else {
        c.leaderGuess = '';
        // A one-shot client has one endpoint: it retries there (a restarting process comes back).
        if (!c.oneShot) c.cursor++;
      }
      const wait = backoffMs(c.tries - 1, 5, 100, this.rng.float());
      this.schedule({ kind: 'client-retry', client: c.id, attempt: c.attempt }, wait);
      return;
    }
    // Out of attempts: a write may still take effect (its outcome is unknown); a read that
    // returned nothing constrains nothing and leaves the history.
    if (read || c.registering) {
      // A write whose session never opened was never sent: it did not happen.
      const i = this.history.indexOf(op);
      if (i >= 0) this.history.splice(i, 1);
    }
    this.finish(c, 20 + this.rng.float() * 50);
  }

  private finish(c: ClientState, pause: number): void {
    c.registering = false;
    c.op = null;
    if (this.clientsOn) this.schedule({ kind: 'client-next', client: c.id }, this.rng.float() * pause);
  }
}

function toOutput(input: SimInput, res: Record<string, unknown>): SimOutput {
  switch (input.kind) {
    case 'get':
      return {
        kind: 'get',
        value: res['found'] ? (res['value'] as string) : null,
        version: (res['version'] as number) ?? 0,
      };
    case 'local-get':
      return {
        kind: 'local-get',
        value: res['found'] ? (res['value'] as string) : null,
        version: (res['version'] as number) ?? 0,
      };
    case 'list':
      return {
        kind: 'list',
        items: (res['items'] as ListedKey[]).map((i) => ({ key: i.key, value: i.value, version: i.version })),
        more: res['more'] === true,
      };
    case 'put':
      return { kind: 'put' };
    case 'delete':
      return { kind: 'delete', existed: res['deleted'] === true };
    case 'cas':
      return { kind: 'cas', swapped: res['swapped'] === true };
  }
}

function describeEvent(ev: Timed): string {
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
      return `${from} -> ${to} ${type} t${term}${detail}${ev.held ? ' (held)' : ''}`;
    }
    case 'timer':
    case 'immediate':
    case 'fsync':
    case 'restart':
    case 'resume':
    case 'crash':
      return `${ev.kind} ${ev.node}`;
    case 'call':
      return `client ${ev.client} -> ${ev.node} ${ev.call.method} ${JSON.stringify(ev.call.req)} (attempt ${ev.attempt})`;
    case 'reply':
      return `-> client ${ev.client}: ${ev.reply.ok ? JSON.stringify(ev.reply.res) : `error ${ev.reply.code} ${ev.reply.message}`}`;
    case 'client-timeout':
      return `client ${ev.client} attempt ${ev.attempt} timed out`;
    default:
      return ev.kind;
  }
}
