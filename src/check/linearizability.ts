/**
 * Linearizability checker for concurrent histories.
 *
 * The search is Wing & Gong's: repeatedly pick an operation that may take effect next
 * (one whose call precedes the earliest pending return), apply it to a sequential model,
 * and backtrack when some operation's return is reached before it could be placed.
 * Lowe's refinements make it practical:
 *
 * - the history is a doubly linked list of call and return events in time order; an
 *   operation is "lifted" out of the list (both events) when linearized and put back on
 *   backtrack, so the candidates are always the calls in front of the first return;
 * - an explicit undo stack of (call entry, previous state) replaces recursion;
 * - every (set of linearized operations, model state) configuration reached is memoized;
 *   reaching a configuration twice means the second visit cannot succeed where the
 *   first failed, so it is pruned. The set is a bitset, hashed incrementally (Zobrist).
 *
 * A model may split a history into independent partitions (per key for a KV store);
 * a history is linearizable iff every partition is (linearizability is compositional),
 * and small partitions keep the search space small.
 *
 * Operations with an unknown outcome (`ret === null`: timed out, client crashed) may
 * have taken effect at any point after their call, or never. Their return event is
 * placed at +infinity and the search succeeds once every operation with a known outcome
 * is linearized, so unknown operations left over are simply the ones that never took
 * effect. Their output is unconstrained: the model is stepped with `output = null`.
 *
 * See docs/linearizability.md.
 */

/** One operation of a history. Times are any totally ordered numbers (e.g. ms or a logical clock). */
export interface Operation<I, O> {
  /** Unique within the history. */
  readonly id: number;
  /** The client (process) that issued the operation; only used in explanations. */
  readonly client: number;
  readonly input: I;
  /** Time the request was issued. */
  readonly call: number;
  /** Time the response was received, or `null` if the outcome is unknown. */
  readonly ret: number | null;
  /** The observed output; `null` (and ignored) when `ret` is `null`. */
  readonly output: O | null;
}

export interface StepResult<S> {
  /** Whether `output` is a possible result of applying `input` in the given state. */
  readonly ok: boolean;
  /** The state after the operation (only meaningful when `ok`). */
  readonly state: S;
}

/** A sequential specification. States must be treated as immutable values. */
export interface Model<S, I, O> {
  init(): S;
  /**
   * Apply `input` to `state`. `output` is the observed output, or `null` when the outcome
   * of the operation is unknown, in which case any output is acceptable and the model
   * should return `ok: true` with the resulting state (the model must be deterministic).
   */
  step(state: S, input: I, output: O | null): StepResult<S>;
  /** A string that is equal for two states iff the states are equal (used for memoization). */
  key(state: S): string;
  /**
   * Split a history into independently checkable parts (e.g. by key). Every operation
   * must land in exactly one partition. Without it the whole history is one partition.
   */
  partition?(history: readonly Operation<I, O>[]): ReadonlyMap<string, readonly Operation<I, O>[]>;
  /**
   * True if the input never changes the state. Read-only operations with an unknown
   * outcome constrain nothing and are dropped before the search.
   */
  isReadOnly?(input: I): boolean;
  /** Human-readable rendering of an operation for explanations. */
  describeOperation?(input: I, output: O | null): string;
  /** Human-readable rendering of a state for explanations (defaults to `key`). */
  describeState?(state: S): string;
}

export interface CheckOptions {
  /**
   * Maximum number of distinct (linearized set, state) configurations explored per
   * partition before giving up with `ok: 'unknown'`. Default 500_000.
   */
  readonly maxStates?: number;
  /** Wall-clock budget for the whole check, in milliseconds. Default: none. */
  readonly timeoutMs?: number;
  /** Explanations list at most this many operations of the failing partition. Default 200. */
  readonly maxExplainOps?: number;
}

export type CheckResult =
  | {
      readonly ok: true;
      /** Number of partitions checked. */
      readonly partitions: number;
      /** Total configurations explored (a measure of search effort). */
      readonly states: number;
    }
  | {
      readonly ok: false;
      /** Name of the first partition found not to be linearizable. */
      readonly partition: string;
      /** Readable account: the partition's operations and the longest linearizable prefix. */
      readonly explanation: string;
      /** Operation ids of the longest linearizable prefix found, in linearization order. */
      readonly longestPrefix: readonly number[];
      /** Operations that could have come next after that prefix, none of which led anywhere. */
      readonly stuckAt: readonly number[];
    }
  | {
      readonly ok: 'unknown';
      /** Partition whose search exceeded the budget. */
      readonly partition: string;
      readonly reason: string;
    };

export const DEFAULT_MAX_STATES = 500_000;
const DEFAULT_MAX_EXPLAIN_OPS = 200;
/** Partition name used when the model does not partition. */
export const WHOLE_HISTORY = 'all';

/**
 * Check that `history` is linearizable with respect to `model`.
 * Throws `TypeError` for malformed histories (duplicate ids, non-finite times, ret < call,
 * a known outcome without output).
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  opts: CheckOptions = {},
): CheckResult {
  validate(history);
  const maxStates = opts.maxStates ?? DEFAULT_MAX_STATES;
  const deadline = opts.timeoutMs === undefined ? undefined : Date.now() + opts.timeoutMs;
  const parts: ReadonlyMap<string, readonly Operation<I, O>[]> =
    model.partition === undefined ? new Map([[WHOLE_HISTORY, history]]) : model.partition(history);

  let assigned = 0;
  for (const ops of parts.values()) assigned += ops.length;
  if (assigned !== history.length) {
    throw new TypeError(`model.partition returned ${assigned} operations for a history of ${history.length}`);
  }

  let totalStates = 0;
  let unknown: { partition: string; reason: string } | undefined;
  for (const [name, ops] of parts) {
    if (deadline !== undefined && Date.now() > deadline) {
      unknown ??= { partition: name, reason: 'time budget exhausted before this partition was checked' };
      break;
    }
    const r = searchPartition(model, ops, maxStates, deadline);
    if (r.kind === 'ok') {
      totalStates += r.states;
    } else if (r.kind === 'unknown') {
      // Keep looking: a definite violation elsewhere is more useful than "unknown".
      unknown ??= { partition: name, reason: r.reason };
      if (r.timedOut) break;
    } else {
      return {
        ok: false,
        partition: name,
        explanation: explain(model, name, r, opts.maxExplainOps ?? DEFAULT_MAX_EXPLAIN_OPS),
        longestPrefix: r.prefix.map((i) => r.ops[i]!.id),
        stuckAt: r.candidates.map((i) => r.ops[i]!.id),
      };
    }
  }
  if (unknown !== undefined) return { ok: 'unknown', ...unknown };
  return { ok: true, partitions: parts.size, states: totalStates };
}

/** Helper for `Model.partition`: group operations by a string derived from the input. */
export function partitionBy<I, O>(
  history: readonly Operation<I, O>[],
  keyOf: (input: I) => string,
): Map<string, Operation<I, O>[]> {
  const out = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    const k = keyOf(op.input);
    const list = out.get(k);
    if (list === undefined) out.set(k, [op]);
    else list.push(op);
  }
  return out;
}

function validate<I, O>(history: readonly Operation<I, O>[]): void {
  const ids = new Set<number>();
  for (const op of history) {
    if (ids.has(op.id)) throw new TypeError(`duplicate operation id ${op.id}`);
    ids.add(op.id);
    if (!Number.isFinite(op.call)) throw new TypeError(`operation ${op.id}: call time must be finite`);
    if (op.ret !== null) {
      if (!Number.isFinite(op.ret)) throw new TypeError(`operation ${op.id}: return time must be finite`);
      if (op.ret < op.call)
        throw new TypeError(`operation ${op.id}: returns (${op.ret}) before call (${op.call})`);
      if (op.output === null) throw new TypeError(`operation ${op.id}: returned but has no output`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Search

/** A call or return event in the doubly linked event list. */
interface Entry {
  readonly isCall: boolean;
  /** Index of the operation in the partition's op array (-1 for the list head). */
  readonly op: number;
  /** For a call entry: its return entry. */
  ret: Entry | null;
  prev: Entry | null;
  next: Entry | null;
}

interface Frame<S> {
  readonly entry: Entry;
  readonly state: S;
}

type PartitionResult<S, I, O> =
  | { readonly kind: 'ok'; readonly states: number }
  | { readonly kind: 'unknown'; readonly reason: string; readonly timedOut: boolean }
  | Failure<S, I, O>;

interface Failure<S, I, O> {
  readonly kind: 'fail';
  /** Operations searched (unknown-outcome read-only ops removed). */
  readonly ops: readonly Operation<I, O>[];
  /** Number of unknown-outcome read-only operations dropped before the search. */
  readonly dropped: number;
  /** Indices into `ops`, in linearization order. */
  readonly prefix: readonly number[];
  /** State after each prefix operation. */
  readonly prefixStates: readonly S[];
  readonly stateAfterPrefix: S;
  /** Indices of the operations that were candidates to come next after the prefix. */
  readonly candidates: readonly number[];
  /** Index of the earliest-returning pending operation (it had to be placed before its return). */
  readonly blocker: number | null;
}

function searchPartition<S, I, O>(
  model: Model<S, I, O>,
  all: readonly Operation<I, O>[],
  maxStates: number,
  deadline: number | undefined,
): PartitionResult<S, I, O> {
  const isReadOnly = model.isReadOnly;
  const ops =
    isReadOnly === undefined
      ? all
      : all.filter((op) => !(op.ret === null && isReadOnly.call(model, op.input)));
  const n = ops.length;

  // Build the event list. Calls sort before returns at equal times, so operations whose
  // intervals merely touch are treated as concurrent (never a false alarm).
  interface Ev {
    readonly time: number;
    readonly isCall: boolean;
    readonly op: number;
  }
  const events: Ev[] = [];
  let known = 0;
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    events.push({ time: op.call, isCall: true, op: i });
    events.push({ time: op.ret ?? Number.POSITIVE_INFINITY, isCall: false, op: i });
    if (op.ret !== null) known++;
  }
  events.sort((a, b) => {
    if (a.time !== b.time) return a.time < b.time ? -1 : 1;
    if (a.isCall !== b.isCall) return a.isCall ? -1 : 1;
    return a.op - b.op;
  });
  const head: Entry = { isCall: false, op: -1, ret: null, prev: null, next: null };
  const callEntry: (Entry | undefined)[] = new Array(n);
  const retEntry: (Entry | undefined)[] = new Array(n);
  let last = head;
  for (const ev of events) {
    const e: Entry = { isCall: ev.isCall, op: ev.op, ret: null, prev: last, next: null };
    last.next = e;
    last = e;
    if (ev.isCall) callEntry[ev.op] = e;
    else retEntry[ev.op] = e;
  }
  for (let i = 0; i < n; i++) callEntry[i]!.ret = retEntry[i]!;

  // Linearized set as a bitset with an incremental 32-bit Zobrist hash.
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const z1 = new Int32Array(n);
  let seed = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    seed = splitmix32(seed);
    z1[i] = seed;
  }
  let h1 = 0;
  // Memo: (h1, interned state id) -> configurations with that hash; exact compare on hit.
  const stateIds = new Map<string, number>();
  const cache = new Map<number, Config[]>();
  let states = 0;

  const stack: Frame<S>[] = [];
  let state = model.init();
  let remainingKnown = known;
  let entry: Entry | null = head.next;
  let iterations = 0;

  let best: { prefix: number[]; prefixStates: S[]; candidates: number[]; blocker: number | null } | undefined;

  while (remainingKnown > 0) {
    if (deadline !== undefined && (++iterations & 1023) === 0 && Date.now() > deadline) {
      return { kind: 'unknown', reason: `time budget exhausted after ${states} states`, timedOut: true };
    }
    if (entry === null || !entry.isCall) {
      // Reached a return (or the end) without linearizing that op: this branch is dead.
      if (best === undefined || stack.length > best.prefix.length) {
        best = snapshot(stack, state, head);
      }
      const top = stack.pop();
      if (top === undefined) {
        const b = best!;
        return {
          kind: 'fail',
          ops,
          dropped: all.length - n,
          prefix: b.prefix,
          prefixStates: b.prefixStates,
          stateAfterPrefix: b.prefixStates[b.prefixStates.length - 1] ?? model.init(),
          candidates: b.candidates,
          blocker: b.blocker,
        };
      }
      const i = top.entry.op;
      bits[i >>> 5]! &= ~(1 << (i & 31));
      h1 ^= z1[i]!;
      if (ops[i]!.ret !== null) remainingKnown++;
      state = top.state;
      unlift(top.entry);
      entry = top.entry.next;
      continue;
    }

    const i = entry.op;
    const op = ops[i]!;
    const r = model.step(state, op.input, op.ret === null ? null : op.output);
    if (r.ok) {
      bits[i >>> 5]! |= 1 << (i & 31);
      h1 ^= z1[i]!;
      const sk = model.key(r.state);
      let sid = stateIds.get(sk);
      if (sid === undefined) {
        sid = stateIds.size;
        stateIds.set(sk, sid);
      }
      const k = (h1 >>> 0) * STATE_ID_SPACE + (sid % STATE_ID_SPACE);
      let bucket = cache.get(k);
      if (bucket === undefined || !seen(bucket, sid, bits)) {
        if (bucket === undefined) {
          bucket = [];
          cache.set(k, bucket);
        }
        bucket.push({ sid, bits: bits.slice() });
        if (++states > maxStates) {
          return { kind: 'unknown', reason: `state budget of ${maxStates} exhausted`, timedOut: false };
        }
        stack.push({ entry, state });
        state = r.state;
        if (op.ret !== null) remainingKnown--;
        lift(entry);
        entry = head.next;
        continue;
      }
      // Configuration seen before: it led nowhere then, it leads nowhere now.
      bits[i >>> 5]! &= ~(1 << (i & 31));
      h1 ^= z1[i]!;
    }
    entry = entry.next;
  }
  return { kind: 'ok', states };

  function snapshot(st: readonly Frame<S>[], cur: S, h: Entry) {
    const prefix = st.map((f) => f.entry.op);
    const prefixStates: S[] = [];
    for (let j = 1; j < st.length; j++) prefixStates.push(st[j]!.state);
    if (st.length > 0) prefixStates.push(cur);
    const candidates: number[] = [];
    let blocker: number | null = null;
    for (let e = h.next; e !== null; e = e.next) {
      if (!e.isCall) {
        blocker = e.op;
        break;
      }
      candidates.push(e.op);
    }
    return { prefix, prefixStates, candidates, blocker };
  }
}

function lift(call: Entry): void {
  call.prev!.next = call.next;
  call.next!.prev = call.prev; // a call always has its return after it
  const ret = call.ret!;
  ret.prev!.next = ret.next;
  if (ret.next !== null) ret.next.prev = ret.prev;
}

function unlift(call: Entry): void {
  const ret = call.ret!;
  ret.prev!.next = ret;
  if (ret.next !== null) ret.next.prev = ret;
  call.prev!.next = call;
  call.next!.prev = call;
}

/** A memoized configuration: interned state id and linearized-set bitset. */
interface Config {
  readonly sid: number;
  readonly bits: Uint32Array;
}

/** 2^21: interned state ids share the memo key's number with the 32-bit set hash. */
const STATE_ID_SPACE = 0x200000;

function seen(bucket: readonly Config[], sid: number, bits: Uint32Array): boolean {
  for (const c of bucket) {
    if (c.sid !== sid) continue;
    let same = true;
    for (let w = 0; w < bits.length; w++) {
      if (c.bits[w] !== bits[w]) {
        same = false;
        break;
      }
    }
    if (same) return true;
  }
  return false;
}

function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) | 0;
}

// ---------------------------------------------------------------------------------------
// Explanations

function explain<S, I, O>(model: Model<S, I, O>, name: string, f: Failure<S, I, O>, maxOps: number): string {
  const descOp = (op: Operation<I, O>): string => {
    const out = op.ret === null ? null : op.output;
    if (model.describeOperation !== undefined) return model.describeOperation(op.input, out);
    return `${JSON.stringify(op.input)} -> ${op.ret === null ? '?' : JSON.stringify(out)}`;
  };
  const descState = (s: S): string =>
    model.describeState === undefined ? model.key(s) : model.describeState(s);
  const interval = (op: Operation<I, O>): string => `[${op.call}, ${op.ret === null ? 'unknown' : op.ret}]`;
  const line = (op: Operation<I, O>): string =>
    `#${op.id} client ${op.client} ${interval(op)} ${descOp(op)}${op.ret === null ? ' (outcome unknown)' : ''}`;

  const { ops, prefix } = f;
  const out: string[] = [];
  out.push(`Partition ${JSON.stringify(name)} is not linearizable (${ops.length} operations).`);
  if (f.dropped > 0) out.push(`(${f.dropped} read-only operations with unknown outcome were ignored.)`);

  const byCall = ops.map((_, i) => i).sort((a, b) => ops[a]!.call - ops[b]!.call || ops[a]!.id - ops[b]!.id);
  out.push('', 'Operations by call time:');
  let shown = byCall;
  if (byCall.length > maxOps) {
    // Show the operations around where the search got stuck.
    const inPrefix = new Set(prefix);
    const firstOut = byCall.findIndex((i) => !inPrefix.has(i));
    const start = Math.max(0, Math.min(firstOut - Math.floor(maxOps / 4), byCall.length - maxOps));
    shown = byCall.slice(start, start + maxOps);
    if (start > 0) out.push(`  ... ${start} earlier operations omitted`);
  }
  const prefixPos = new Map(prefix.map((op, pos) => [op, pos + 1]));
  for (const i of shown) {
    const pos = prefixPos.get(i);
    out.push(`  ${line(ops[i]!)}${pos === undefined ? '' : `   <- linearized #${pos}`}`);
  }
  if (shown.length < byCall.length) {
    const after = byCall.length - shown.length - byCall.indexOf(shown[0]!);
    if (after > 0) out.push(`  ... ${after} later operations omitted`);
  }

  out.push('', `Longest linearizable prefix found: ${prefix.length} of ${ops.length} operations.`);
  out.push(`  initial state: ${descState(model.init())}`);
  const tail = Math.max(0, prefix.length - maxOps);
  if (tail > 0) out.push(`  ... ${tail} earlier steps omitted`);
  for (let p = tail; p < prefix.length; p++) {
    const op = ops[prefix[p]!]!;
    out.push(`  ${p + 1}. #${op.id} ${descOp(op)}  => ${descState(f.prefixStates[p]!)}`);
  }

  out.push('', `After this prefix the state is ${descState(f.stateAfterPrefix)}.`);
  if (f.blocker !== null) {
    const b = ops[f.blocker]!;
    out.push(
      `Operation #${b.id} (${descOp(b)}) returned at ${b.ret} and so must take effect by then, ` +
        'but no order of the operations that may come next works:',
    );
  } else {
    out.push('No order of the operations that may come next works:');
  }
  for (const i of f.candidates) {
    const op = ops[i]!;
    const r = model.step(f.stateAfterPrefix, op.input, op.ret === null ? null : op.output);
    const why = r.ok ? 'possible here, but every continuation fails' : 'impossible in this state';
    out.push(`  #${op.id} ${descOp(op)} ${interval(op)}: ${why}`);
  }
  return out.join('\n');
}
