/**
 * What the simulator injects into a real RaftNode: a virtual {@link Runtime} (scheduler on the
 * simulator's event heap, a node-local clock running at its own rate), a {@link RaftStorage} on
 * the torn-write disk model ({@link SimDisk}: persist resolves after a virtual fsync), a
 * {@link Transport} on the simulated network, and the KV state machine observed for the
 * invariants.
 *
 * Invariants: every object here belongs to one incarnation (process lifetime) of one node;
 * once that incarnation crashed (`host.alive(node, inc)` is false) it schedules nothing more,
 * its promises never settle, and its writes are refused, as for a killed process.
 */
import { decodeRequest, encodeRequest, type KvResult, type KvStateMachine } from '../kv/state-machine.ts';
import type { StateMachine } from '../node/raft-node.ts';
import type { Runtime, TimerHandle } from '../node/runtime.ts';
import type { DurableState, Message, NodeId, Snapshot } from '../raft/types.ts';
import type { PersistBatch, RaftStorage, StorageStats } from '../storage/contract.ts';
import type { Transport, TransportHandlers } from '../transport/transport.ts';
import type { SimDisk } from './disk.ts';

/** A timer of a simulated node: fires at most once per due time; `every` 0 for a one-shot. */
export interface SimTimer {
  readonly id: number;
  readonly cb: () => void;
  /** Period in the node's own milliseconds (0: one-shot). */
  readonly every: number;
  cleared: boolean;
}

/** The simulator, as seen by one node's environment. */
export interface SimHost {
  /** Whether incarnation `inc` of `node` is the live one. */
  alive(node: NodeId, inc: number): boolean;
  /** Virtual milliseconds per millisecond of `node`'s own clock. */
  virtualMs(node: NodeId, localMs: number): number;
  /** `node`'s monotonic clock, in its own milliseconds. */
  localNow(node: NodeId): number;
  random(max: number): number;
  scheduleTimer(node: NodeId, inc: number, t: SimTimer, localDelay: number): void;
  scheduleImmediate(node: NodeId, inc: number, cb: () => void): void;
  /** Wrong on purpose (tests of the checker): persist resolves before its fsync completes. */
  readonly ackBeforeFsync: boolean;
  /** Wrong on purpose (tests of the checker): writes are applied in the legacy format (SimOptions.legacySessions). */
  readonly legacySessions: boolean;
  /** Completes an fsync of `node`'s disk after a virtual delay, then calls `done`. */
  scheduleFsync(node: NodeId, inc: number, done: () => void): void;
  /** A write is in flight on `node` (the crash-at-next-write fault acts here). */
  onWrite(node: NodeId, inc: number): void;
  onPersist(node: NodeId, batch: PersistBatch): void;
  onDurable(node: NodeId): void;
  send(m: Message): void;
  onApply(node: NodeId, index: number, data: Uint8Array): void;
  onApplied(node: NodeId, index: number, data: Uint8Array, kv: KvStateMachine): void;
  onRestore(node: NodeId, index: number, applied: number): void;
}

const EPOCH = 1_700_000_000_000;

export class SimRuntime implements Runtime {
  private ids = 0;
  constructor(
    private readonly host: SimHost,
    private readonly node: NodeId,
    private readonly inc: number,
  ) {}
  setImmediate(cb: () => void): void {
    this.host.scheduleImmediate(this.node, this.inc, cb);
  }
  setInterval(cb: () => void, ms: number): TimerHandle {
    const t: SimTimer = { id: ++this.ids, cb, every: Math.max(1, ms), cleared: false };
    this.host.scheduleTimer(this.node, this.inc, t, t.every);
    return t as unknown as TimerHandle;
  }
  setTimeout(cb: () => void, ms: number): TimerHandle {
    const t: SimTimer = { id: ++this.ids, cb, every: 0, cleared: false };
    this.host.scheduleTimer(this.node, this.inc, t, Math.max(0, ms));
    return t as unknown as TimerHandle;
  }
  clearTimer(handle: TimerHandle): void {
    (handle as unknown as SimTimer).cleared = true;
  }
  now(): number {
    return this.host.localNow(this.node);
  }
  dateNow(): number {
    return EPOCH + this.host.localNow(this.node);
  }
  randomInt(max: number): number {
    return this.host.random(max);
  }
}

export class SimStorage implements RaftStorage {
  private readonly initial: DurableState;
  private appends = 0;
  private fsyncs = 0;
  constructor(
    private readonly host: SimHost,
    private readonly node: NodeId,
    private readonly inc: number,
    private readonly disk: SimDisk,
  ) {
    this.initial = disk.load();
  }
  initialState(): DurableState {
    return this.initial;
  }
  persist(batch: PersistBatch): Promise<void> {
    if (!this.host.alive(this.node, this.inc)) return new Promise(() => {});
    this.host.onPersist(this.node, batch);
    if (batch.snapshot) this.disk.write({ kind: 'install', snapshot: batch.snapshot });
    if (batch.entries.length > 0) this.disk.write({ kind: 'entries', entries: batch.entries });
    if (batch.hardState) this.disk.write({ kind: 'hard', hardState: batch.hardState });
    this.appends++;
    return this.sync();
  }
  compact(snapshot: Snapshot): Promise<void> {
    if (!this.host.alive(this.node, this.inc)) return new Promise(() => {});
    this.disk.write({ kind: 'compact', snapshot });
    return this.sync();
  }
  private sync(): Promise<void> {
    this.host.onWrite(this.node, this.inc);
    return new Promise<void>((resolve) => {
      this.host.scheduleFsync(this.node, this.inc, () => {
        this.disk.sync();
        this.fsyncs++;
        this.host.onDurable(this.node);
        resolve();
      });
      if (this.host.ackBeforeFsync) resolve();
    });
  }
  stats(): StorageStats {
    return { appends: this.appends, fsyncs: this.fsyncs, bytesWritten: 0 };
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export class SimTransport implements Transport {
  handlers: TransportHandlers | null = null;
  constructor(
    private readonly host: SimHost,
    private readonly node: NodeId,
    private readonly inc: number,
  ) {}
  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }
  send(messages: readonly Message[]): void {
    if (!this.host.alive(this.node, this.inc)) return;
    for (const m of messages) this.host.send(m);
  }
  setPeer(): void {}
  removePeer(): void {}
  close(): Promise<void> {
    this.handlers = null;
    return Promise.resolve();
  }
}

/** The real KV state machine, with every apply and restore reported to the invariants. */
export class ObservedKv implements StateMachine<KvResult | null> {
  constructor(
    readonly kv: KvStateMachine,
    private readonly host: SimHost,
    private readonly node: NodeId,
  ) {}
  apply(index: number, entry: Uint8Array): KvResult | null {
    const data = this.host.legacySessions ? asLegacy(entry) : entry;
    this.host.onApply(this.node, index, data);
    const r = this.kv.apply(index, data);
    this.host.onApplied(this.node, index, data, this.kv);
    return r;
  }
  snapshot(): Uint8Array {
    return this.kv.snapshot();
  }
  restore(data: Uint8Array, index: number): void {
    this.kv.restore(data);
    this.host.onRestore(this.node, index, this.kv.applied);
  }
  beginSnapshot(): { step(budgetMs: number): Uint8Array | null } {
    return this.kv.beginSnapshot();
  }
}

/** A write with a session re-encoded in the legacy format (anything else unchanged). */
function asLegacy(data: Uint8Array): Uint8Array {
  let req: ReturnType<typeof decodeRequest>;
  try {
    req = decodeRequest(data);
  } catch {
    return data; // a registration, a no-op or bytes that are no command
  }
  return req.client === 0 ? data : encodeRequest(req, 1);
}
