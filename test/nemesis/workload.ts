/**
 * The nemesis workload: clients each pinned to one node (raw gRPC to that node's address,
 * no leader discovery, no retries elsewhere: the node forwards to the leader itself), doing
 * puts, linearizable gets, deletes and compare-and-swaps on a window of keys, every call
 * recorded as an operation of a KV history for src/check/.
 *
 * Outcomes: `ok` (answered), `fail` (definitely had no effect: any failed read; a write the
 * node refused before proposing it, "no leader:"/"not the leader"/INVALID_ARGUMENT, or one
 * grpc-js never sent for want of a connection, "No connection established"), and
 * `unknown` (everything else, deadlines included: the write may have happened). Unknown
 * operations have `ret = null`, so the checker lets them take effect at any later time or
 * never; failed ones are left out of the checked history.
 *
 * Invariants: every value written is unique in the run (`<client>.<n>`), so a read names
 * the write it saw; each client has at most one call in flight; `call`/`ret` are taken
 * from one clock, before sending and after the answer.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { KvInput, KvOperation, KvOutput } from '../../src/check/kv-model.ts';
import { CLIENT_PROTO_FILE } from '../../src/client/client.ts';
import { SeededRng } from '../../src/raft/rng.ts';

export type Outcome = 'ok' | 'fail' | 'unknown';

export interface OpRecord {
  readonly id: number;
  readonly client: number;
  /** The node the client is pinned to. */
  readonly node: string;
  readonly input: KvInput;
  readonly call: number;
  ret: number | null;
  output: KvOutput | null;
  outcome: Outcome;
  /** The error, when not ok: `CODE: details`. */
  error: string;
}

interface MethodDef {
  path: string;
  requestSerialize: (v: object) => Buffer;
  responseDeserialize: (b: Buffer) => object;
}
type Method = 'Put' | 'Get' | 'Delete' | 'CompareAndSwap' | 'GetClusterStatus';

let defs: Record<Method, MethodDef> | undefined;
function methodDefs(): Record<Method, MethodDef> {
  defs ??= protoLoader.loadSync(CLIENT_PROTO_FILE, { keepCase: true, longs: Number, defaults: true })[
    'raft.KeyValueService'
  ] as unknown as Record<Method, MethodDef>;
  return defs;
}

/** A gRPC error as the nemesis sees it. */
export interface CallError {
  readonly code: number;
  readonly details: string;
}

/** One HTTP/2 connection to one node; calls go there and nowhere else. */
export class NodeChannel {
  readonly address: string;
  private readonly client: grpc.Client;

  constructor(address: string) {
    this.address = address;
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.min_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 500,
    });
  }

  call(method: Method, req: object, timeoutMs: number): Promise<Record<string, unknown>> {
    const def = methodDefs()[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        { deadline: Date.now() + timeoutMs },
        (err: grpc.ServiceError | null, res?: object) => {
          if (err) reject({ code: err.code ?? grpc.status.UNKNOWN, details: err.details || err.message });
          else resolve(res as Record<string, unknown>);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Whether a failed call of `input` definitely had no effect (`fail`) or may have (`unknown`). */
export function classify(input: KvInput, err: CallError): 'fail' | 'unknown' {
  if (input.kind === 'get') return 'fail';
  if (err.code === grpc.status.INVALID_ARGUMENT) return 'fail';
  // The node refused it before proposing; or grpc-js failed the pick (no connection): never sent.
  if (
    err.code === grpc.status.UNAVAILABLE &&
    /^(no leader:|not the leader|No connection established)/.test(err.details)
  )
    return 'fail';
  return 'unknown';
}

export function toRequest(input: KvInput): [Method, object] {
  switch (input.kind) {
    case 'put':
      return ['Put', { key: input.key, value: input.value }];
    case 'get':
      return ['Get', { key: input.key }];
    case 'delete':
      return ['Delete', { key: input.key }];
    case 'cas':
      return [
        'CompareAndSwap',
        input.expected === null
          ? { key: input.key, value: input.value, expect_absent: true }
          : { key: input.key, value: input.value, expected_value: input.expected },
      ];
  }
}

export function toOutput(input: KvInput, r: Record<string, unknown>): KvOutput {
  switch (input.kind) {
    case 'put':
      return { kind: 'put' };
    case 'get':
      return { kind: 'get', value: r['found'] ? String(r['value']) : null };
    case 'delete':
      return { kind: 'delete', existed: r['deleted'] === true };
    case 'cas':
      return { kind: 'cas', swapped: r['swapped'] === true };
  }
}

/** The operations the checker sees: everything but definite failures. */
export function checkedHistory(ops: readonly OpRecord[]): KvOperation[] {
  const out: KvOperation[] = [];
  for (const o of ops) {
    if (o.outcome === 'fail') continue;
    out.push({ id: o.id, client: o.client, input: o.input, call: o.call, ret: o.ret, output: o.output });
  }
  return out;
}

export interface WorkloadOptions {
  /** Node id -> client address. */
  readonly nodes: ReadonlyMap<string, string>;
  readonly clientsPerNode: number;
  readonly seed: number;
  /** Deadline of one call, ms; past it the call is `unknown` (or `fail` for a read). */
  readonly opTimeoutMs: number;
  /** Pause between a client's calls, ms. */
  readonly thinkMs: number;
  /** Pause after a call that failed or timed out, ms (a client backs off before trying again). */
  readonly backoffMs: number;
  readonly keysPerWindow: number;
  /** The run's clock (ms). */
  readonly now: () => number;
}

export class Workload {
  readonly ops: OpRecord[] = [];
  /** Every key any call used. */
  readonly keys = new Set<string>();
  private readonly opts: WorkloadOptions;
  private readonly channels: NodeChannel[] = [];
  /** One channel per node for the runner's own calls (probes, final reads). */
  private readonly control = new Map<string, NodeChannel>();
  private window: string[] = [];
  private running: Promise<void>[] = [];
  private stopping = false;
  private nextId = 1;

  constructor(opts: WorkloadOptions) {
    this.opts = opts;
    for (const [id, address] of opts.nodes) this.control.set(id, new NodeChannel(address));
    this.setWindow('w0');
  }

  /** New calls use the keys `<name>/k0..` from now on. */
  setWindow(name: string): void {
    this.window = Array.from({ length: this.opts.keysPerWindow }, (_, j) => `${name}/k${j}`);
  }

  /** Starts `clientsPerNode` clients per node, numbered from 1. */
  start(): void {
    const rng = new SeededRng(this.opts.seed);
    let client = 0;
    for (const [node, address] of this.opts.nodes) {
      for (let k = 0; k < this.opts.clientsPerNode; k++) {
        const ch = new NodeChannel(address);
        this.channels.push(ch);
        this.running.push(this.loop(++client, node, ch, rng.fork()));
      }
    }
  }

  /** Stops the clients and waits for their calls in flight (bounded by the call deadline). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
    this.running = [];
  }

  close(): void {
    this.stopping = true;
    for (const c of this.channels) c.close();
    for (const c of this.control.values()) c.close();
  }

  /** One recorded call of the runner's (client 0) through `node`. */
  invoke(node: string, input: KvInput, timeoutMs = this.opts.opTimeoutMs): Promise<OpRecord> {
    const ch = this.control.get(node);
    if (!ch) throw new RangeError(`no node ${node}`);
    return this.record(0, node, ch, input, timeoutMs);
  }

  /** GetClusterStatus of one node (not recorded). */
  status(node: string, timeoutMs = 1_000): Promise<Record<string, unknown>> {
    const ch = this.control.get(node);
    if (!ch) throw new RangeError(`no node ${node}`);
    return ch.call('GetClusterStatus', {}, timeoutMs);
  }

  private async record(
    client: number,
    node: string,
    ch: NodeChannel,
    input: KvInput,
    timeoutMs: number,
  ): Promise<OpRecord> {
    const [method, req] = toRequest(input);
    this.keys.add(input.key);
    const op: OpRecord = {
      id: this.nextId++,
      client,
      node,
      input,
      call: this.opts.now(),
      ret: null,
      output: null,
      outcome: 'unknown',
      error: '',
    };
    this.ops.push(op);
    try {
      const r = await ch.call(method, req, timeoutMs);
      op.ret = this.opts.now();
      op.output = toOutput(input, r);
      op.outcome = 'ok';
    } catch (e) {
      const err = e as CallError;
      op.outcome = classify(input, err);
      op.error = `${grpc.status[err.code] ?? err.code}: ${err.details}`;
    }
    return op;
  }

  private async loop(client: number, node: string, ch: NodeChannel, rng: SeededRng): Promise<void> {
    // The last value this client saw per key (a CAS usually expects it).
    const seen = new Map<string, string | null>();
    let n = 0;
    while (!this.stopping) {
      const key = rng.pick(this.window);
      const r = rng.float();
      const value = `${client}.${++n}`;
      let input: KvInput;
      if (r < 0.4) input = { kind: 'get', key };
      else if (r < 0.7) input = { kind: 'put', key, value };
      else if (r < 0.82) input = { kind: 'delete', key };
      else {
        const last = seen.get(key);
        input = { kind: 'cas', key, expected: last === undefined || rng.chance(0.2) ? null : last, value };
      }
      const op = await this.record(client, node, ch, input, this.opts.opTimeoutMs);
      if (op.outcome === 'ok' && op.output) {
        if (op.output.kind === 'get') seen.set(key, op.output.value);
        else if (input.kind === 'put') seen.set(key, input.value);
        else if (input.kind === 'delete') seen.set(key, null);
        else if (op.output.kind === 'cas' && op.output.swapped) seen.set(key, value);
      }
      if (this.opts.thinkMs > 0 && !this.stopping)
        await new Promise((res) => setTimeout(res, this.opts.thinkMs));
    }
  }
}
