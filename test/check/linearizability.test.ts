import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type KvInput, type KvOperation, type KvOutput, kvModel } from '../../src/check/kv-model.ts';
import {
  type CheckResult,
  checkLinearizable,
  type Model,
  type Operation,
} from '../../src/check/linearizability.ts';
import { randomSpecs, type SimOpSpec, simulate } from './kv-sim.ts';

// --- history-building shorthands -------------------------------------------------------

let nextId = 0;
function op(
  client: number,
  call: number,
  ret: number | null,
  input: KvInput,
  output: KvOutput | null,
): KvOperation {
  return { id: nextId++, client, input, call, ret, output: ret === null ? null : output };
}
const put = (c: number, call: number, ret: number | null, key: string, value: string) =>
  op(c, call, ret, { kind: 'put', key, value }, { kind: 'put' });
const get = (c: number, call: number, ret: number | null, key: string, value: string | null) =>
  op(c, call, ret, { kind: 'get', key }, { kind: 'get', value });
const del = (c: number, call: number, ret: number | null, key: string, existed: boolean) =>
  op(c, call, ret, { kind: 'delete', key }, { kind: 'delete', existed });
const cas = (
  c: number,
  call: number,
  ret: number | null,
  key: string,
  expected: string | null,
  value: string,
  swapped: boolean,
) => op(c, call, ret, { kind: 'cas', key, expected, value }, { kind: 'cas', swapped });

function check(history: readonly KvOperation[]): CheckResult {
  return checkLinearizable(kvModel, history);
}
function assertOk(history: readonly KvOperation[]): void {
  const r = check(history);
  assert.equal(r.ok, true, r.ok === false ? r.explanation : JSON.stringify(r));
}
function assertBad(history: readonly KvOperation[]): Extract<CheckResult, { ok: false }> {
  const r = check(history);
  assert.equal(r.ok, false, `expected a violation, got ${JSON.stringify(r)}`);
  return r as Extract<CheckResult, { ok: false }>;
}

// --- KV model: hand-written histories ------------------------------------------------------

describe('linearizability checker: KV histories', () => {
  test('empty history is linearizable', () => {
    assertOk([]);
  });

  test('sequential history of every operation kind', () => {
    assertOk([
      get(0, 0, 1, 'x', null),
      put(0, 2, 3, 'x', 'a'),
      get(1, 4, 5, 'x', 'a'),
      cas(1, 6, 7, 'x', 'a', 'b', true),
      cas(0, 8, 9, 'x', 'a', 'c', false),
      get(0, 10, 11, 'x', 'b'),
      del(1, 12, 13, 'x', true),
      del(1, 14, 15, 'x', false),
      get(0, 16, 17, 'x', null),
    ]);
  });

  test('sequential history with a wrong read is rejected', () => {
    assertBad([put(0, 0, 1, 'x', 'a'), put(0, 2, 3, 'x', 'b'), get(0, 4, 5, 'x', 'a')]);
  });

  test('concurrent writes: later reads may see either order, but must agree', () => {
    const writes = () => [put(0, 0, 10, 'x', '1'), put(1, 0, 10, 'x', '2')];
    assertOk([...writes(), get(2, 11, 12, 'x', '1'), get(2, 13, 14, 'x', '1')]);
    assertOk([...writes(), get(2, 11, 12, 'x', '2'), get(2, 13, 14, 'x', '2')]);
    assertBad([...writes(), get(2, 11, 12, 'x', '1'), get(2, 13, 14, 'x', '2')]);
  });

  test('reads concurrent with two writes may see both values, in one order only', () => {
    const writes = () => [put(0, 0, 100, 'x', '1'), put(1, 0, 100, 'x', '2')];
    // absent -> 1 -> 2 is a valid order, as is absent -> 2 -> 1.
    assertOk([...writes(), get(2, 10, 20, 'x', null), get(2, 30, 40, 'x', '1'), get(2, 50, 60, 'x', '2')]);
    assertOk([...writes(), get(2, 10, 20, 'x', '2'), get(2, 30, 40, 'x', '1')]);
    // 1 -> 2 -> 1 would need a write to take effect twice.
    assertBad([...writes(), get(2, 10, 20, 'x', '1'), get(2, 30, 40, 'x', '2'), get(2, 50, 60, 'x', '1')]);
    // Once a value was seen, absence cannot come back.
    assertBad([...writes(), get(2, 10, 20, 'x', '1'), get(2, 30, 40, 'x', null)]);
  });

  test('a read overlapping a write may return the old or the new value', () => {
    assertOk([
      put(0, 0, 1, 'x', 'a'),
      put(0, 2, 10, 'x', 'b'),
      get(1, 3, 4, 'x', 'a'),
      get(1, 5, 6, 'x', 'b'),
    ]);
    // ... but not new-then-old.
    assertBad([
      put(0, 0, 1, 'x', 'a'),
      put(0, 2, 10, 'x', 'b'),
      get(1, 3, 4, 'x', 'b'),
      get(1, 5, 6, 'x', 'a'),
    ]);
  });

  test('stale read after a completed write is rejected', () => {
    const r = assertBad([put(0, 0, 1, 'x', 'old'), put(0, 2, 3, 'x', 'new'), get(1, 4, 5, 'x', 'old')]);
    assert.equal(r.partition, 'x');
  });

  test('phantom read of a value never written is rejected', () => {
    assertBad([put(0, 0, 1, 'x', 'a'), get(1, 0, 5, 'x', 'ghost')]);
    assertBad([get(1, 0, 5, 'x', 'ghost')]);
  });

  test('lost acknowledged write is rejected', () => {
    assertBad([put(0, 0, 1, 'x', 'a'), get(1, 2, 3, 'x', null)]);
    assertBad([
      put(0, 0, 1, 'x', 'a'),
      put(1, 2, 3, 'x', 'b'),
      get(2, 4, 5, 'x', 'a'),
      get(2, 6, 7, 'x', 'b'),
    ]);
    assertBad([put(0, 0, 1, 'x', 'a'), del(0, 2, 3, 'x', false)]);
  });

  test('touching intervals (ret == call) count as concurrent', () => {
    assertOk([put(0, 0, 5, 'x', 'a'), get(1, 5, 6, 'x', null)]);
    assertBad([put(0, 0, 5, 'x', 'a'), get(1, 6, 7, 'x', null)]);
  });

  test('unknown-outcome write that took effect is accepted', () => {
    assertOk([put(0, 0, null, 'x', 'a'), get(1, 5, 6, 'x', 'a')]);
    // It may take effect long after the client gave up, even after later reads saw nothing.
    assertOk([put(0, 0, null, 'x', 'a'), get(1, 5, 6, 'x', null), get(1, 100, 101, 'x', 'a')]);
  });

  test('unknown-outcome write that never took effect is accepted', () => {
    assertOk([put(0, 0, null, 'x', 'a'), get(1, 5, 6, 'x', null), get(1, 7, 8, 'x', null)]);
    assertOk([put(0, 0, 1, 'x', 'z'), put(0, 2, null, 'x', 'a'), get(1, 5, 6, 'x', 'z')]);
  });

  test('unknown-outcome write cannot be undone once observed', () => {
    assertBad([put(0, 0, null, 'x', 'a'), get(1, 5, 6, 'x', 'a'), get(1, 7, 8, 'x', null)]);
  });

  test('unknown-outcome write cannot be observed before its call', () => {
    const r = assertBad([get(1, 0, 1, 'x', 'a'), put(0, 5, null, 'x', 'a')]);
    assert.match(r.explanation, /get\(x\) -> "a"/);
  });

  test('unknown-outcome operation cannot take effect twice', () => {
    assertBad([
      put(0, 0, 1, 'x', 'b'),
      put(0, 2, null, 'x', 'a'),
      get(1, 3, 4, 'x', 'a'),
      put(2, 5, 6, 'x', 'b'),
      get(1, 7, 8, 'x', 'a'),
    ]);
  });

  test('unknown-outcome reads and deletes are unconstrained', () => {
    assertOk([
      put(0, 0, 1, 'x', 'a'),
      get(1, 2, null, 'x', null),
      del(2, 2, null, 'x', false),
      get(0, 9, 10, 'x', 'a'),
    ]);
    assertOk([put(0, 0, 1, 'x', 'a'), del(2, 2, null, 'x', false), get(0, 9, 10, 'x', null)]);
  });

  test('cas semantics', () => {
    assertOk([cas(0, 0, 1, 'x', null, 'a', true), get(0, 2, 3, 'x', 'a')]);
    assertOk([put(0, 0, 1, 'x', 'a'), cas(0, 2, 3, 'x', null, 'b', false), get(0, 4, 5, 'x', 'a')]);
    // Swapping when the expected value is not there is impossible.
    assertBad([put(0, 0, 1, 'x', 'a'), cas(0, 2, 3, 'x', 'z', 'b', true)]);
    // Failing to swap when the expected value is there is impossible too.
    assertBad([put(0, 0, 1, 'x', 'a'), cas(0, 2, 3, 'x', 'a', 'b', false)]);
    // A reported swap must have changed the value.
    assertBad([put(0, 0, 1, 'x', 'a'), cas(0, 2, 3, 'x', 'a', 'b', true), get(0, 4, 5, 'x', 'a')]);
    // Two concurrent create-if-absent: exactly one may win.
    assertOk([
      cas(0, 0, 10, 'x', null, 'a', true),
      cas(1, 0, 10, 'x', null, 'b', false),
      get(2, 11, 12, 'x', 'a'),
    ]);
    assertBad([cas(0, 0, 10, 'x', null, 'a', true), cas(1, 0, 10, 'x', null, 'b', true)]);
    assertBad([
      cas(0, 0, 10, 'x', null, 'a', true),
      cas(1, 0, 10, 'x', null, 'b', false),
      get(2, 11, 12, 'x', 'b'),
    ]);
    // Concurrent cas chain a -> b -> c works in one order only, and either is found.
    assertOk([
      put(0, 0, 1, 'x', 'a'),
      cas(1, 2, 10, 'x', 'b', 'c', true),
      cas(2, 2, 10, 'x', 'a', 'b', true),
      get(0, 11, 12, 'x', 'c'),
    ]);
  });

  test('an output of the wrong kind is rejected', () => {
    assertBad([op(0, 0, 1, { kind: 'put', key: 'x', value: 'a' }, { kind: 'get', value: null })]);
  });

  test('keys are checked independently and the failing key is reported', () => {
    const r = assertBad([
      put(0, 0, 1, 'x', 'a'),
      put(1, 0, 1, 'y', 'b'),
      get(0, 2, 3, 'y', 'b'),
      get(1, 2, 3, 'x', 'a'),
      put(0, 4, 5, 'z', 'c'),
      get(1, 6, 7, 'z', 'stale'),
    ]);
    assert.equal(r.partition, 'z');
  });

  test('a definite violation in one key wins over an exhausted budget in another', () => {
    const hard: KvOperation[] = [];
    for (let v = 0; v < 16; v++) hard.push(put(v, 0, 100, 'a', `w${v}`));
    for (let k = 0; k < 16; k++) hard.push(get(20, 101 + 2 * k, 102 + 2 * k, 'a', `w${k % 2}`));
    const stale = [put(0, 0, 1, 'b', 'x'), put(0, 2, 3, 'b', 'y'), get(1, 4, 5, 'b', 'x')];
    const r = checkLinearizable(kvModel, [...hard, ...stale], { maxStates: 2000 });
    assert.equal(r.ok, false);
    assert.equal(r.ok === false && r.partition, 'b');
    const onlyHard = checkLinearizable(kvModel, hard, { maxStates: 2000 });
    assert.deepEqual(onlyHard.ok === 'unknown' && onlyHard.partition, 'a');
  });

  test('the time budget also covers many small partitions', () => {
    const history: KvOperation[] = [];
    for (let k = 0; k < 20000; k++) history.push(put(0, 2 * k, 2 * k + 1, `k${k}`, 'v'));
    const r = checkLinearizable(kvModel, history, { timeoutMs: 0 });
    assert.equal(r.ok, 'unknown');
  });

  test('explanation lists the partition with times and the longest linearizable prefix', () => {
    nextId = 100;
    const history = [
      put(0, 0, 10, 'x', 'a'),
      get(1, 12, 20, 'x', 'a'),
      put(0, 15, 25, 'x', 'b'),
      get(1, 30, 40, 'x', 'a'),
    ];
    const r = assertBad(history);
    const e = r.explanation;
    assert.match(e, /Partition "x" is not linearizable \(4 operations\)/);
    assert.match(e, /#100 client 0 \[0, 10\] put\(x, "a"\) -> ok/);
    assert.match(e, /#103 client 1 \[30, 40\] get\(x\) -> "a"/);
    assert.match(e, /Longest linearizable prefix found: 3 of 4 operations/);
    assert.match(e, /returned at 40/);
    assert.deepEqual(r.longestPrefix, [100, 101, 102]);
    assert.deepEqual(r.stuckAt, [103]);
  });

  test('malformed histories are refused', () => {
    assert.throws(() => check([put(0, 5, 4, 'x', 'a')]), TypeError);
    const a = put(0, 0, 1, 'x', 'a');
    assert.throws(() => check([a, a]), TypeError);
    assert.throws(
      () => check([{ id: 1, client: 0, input: { kind: 'get', key: 'x' }, call: 0, ret: 1, output: null }]),
      TypeError,
    );
    assert.throws(() => check([put(0, Number.NaN, 1, 'x', 'a')]), TypeError);
  });
});

// --- Genericity: a register and a queue -------------------------------------------------------

type RegIn = { readonly op: 'read' } | { readonly op: 'write'; readonly v: number };
type RegOut = { readonly v: number } | { readonly done: true };
const registerModel: Model<number, RegIn, RegOut> = {
  init: () => 0,
  step: (s, input, output) => {
    if (input.op === 'write') return { ok: true, state: input.v };
    return { ok: output === null || ('v' in output && output.v === s), state: s };
  },
  key: (s) => String(s),
  isReadOnly: (input) => input.op === 'read',
};

type QIn = { readonly op: 'enq'; readonly v: number } | { readonly op: 'deq' };
type QOut = { readonly v: number | null };
const queueModel: Model<readonly number[], QIn, QOut> = {
  init: () => [],
  step: (s, input, output) => {
    if (input.op === 'enq') return { ok: true, state: [...s, input.v] };
    const head = s[0] ?? null;
    return { ok: output === null || output.v === head, state: s.slice(1) };
  },
  key: (s) => s.join(','),
};

describe('linearizability checker: other models', () => {
  let id = 0;
  const rop = <I, O>(call: number, ret: number | null, input: I, output: O | null): Operation<I, O> => ({
    id: id++,
    client: id % 3,
    input,
    call,
    ret,
    output: ret === null ? null : output,
  });

  test('register (unpartitioned model)', () => {
    const w = (call: number, ret: number | null, v: number) =>
      rop<RegIn, RegOut>(call, ret, { op: 'write', v }, { done: true });
    const r = (call: number, ret: number | null, v: number) =>
      rop<RegIn, RegOut>(call, ret, { op: 'read' }, { v });
    assert.equal(checkLinearizable(registerModel, [w(0, 5, 1), r(1, 2, 0), r(3, 4, 1), r(6, 7, 1)]).ok, true);
    assert.equal(checkLinearizable(registerModel, [w(0, 5, 1), r(1, 2, 1), r(3, 4, 0)]).ok, false);
    assert.equal(checkLinearizable(registerModel, [w(0, null, 1), r(1, 2, 0), r(3, 4, 1)]).ok, true);
    const bad = checkLinearizable(registerModel, [w(0, null, 1), r(1, 2, 1), r(3, 4, 0)]);
    assert.equal(bad.ok, false);
    assert.equal(bad.ok === false && bad.partition, 'all');
  });

  test('FIFO queue', () => {
    const enq = (call: number, ret: number | null, v: number) =>
      rop<QIn, QOut>(call, ret, { op: 'enq', v }, { v: null });
    const deq = (call: number, ret: number | null, v: number | null) =>
      rop<QIn, QOut>(call, ret, { op: 'deq' }, { v });
    assert.equal(
      checkLinearizable(queueModel, [enq(0, 10, 1), enq(0, 10, 2), deq(11, 12, 2), deq(13, 14, 1)]).ok,
      true,
    );
    assert.equal(
      checkLinearizable(queueModel, [enq(0, 1, 1), enq(2, 3, 2), deq(4, 5, 2), deq(6, 7, 1)]).ok,
      false,
    );
    assert.equal(checkLinearizable(queueModel, [enq(0, 1, 1), deq(2, 3, null)]).ok, false);
  });

  test('search budget yields unknown instead of hanging', () => {
    // Many concurrent writes of distinct values and a read of a value never written:
    // not linearizable, and the checker must explore every order of the writes to know it.
    const history: Operation<RegIn, RegOut>[] = [];
    for (let v = 1; v <= 18; v++)
      history.push(rop<RegIn, RegOut>(0, 100, { op: 'write', v }, { done: true }));
    for (let k = 0; k < 18; k++)
      history.push(rop<RegIn, RegOut>(101 + 2 * k, 102 + 2 * k, { op: 'read' }, { v: 1 + (k % 2) }));
    const r = checkLinearizable(registerModel, history, { maxStates: 1000 });
    assert.equal(r.ok, 'unknown');
    const t0 = Date.now();
    const r2 = checkLinearizable(registerModel, history, { maxStates: 1e9, timeoutMs: 100 });
    assert.equal(r2.ok, 'unknown');
    assert.ok(Date.now() - t0 < 2000);
  });
});

// --- Property tests ------------------------------------------------------------------------

const specArb = (clients: number, keys: number, unknown: boolean): fc.Arbitrary<SimOpSpec> =>
  fc.record({
    client: fc.integer({ min: 0, max: clients - 1 }),
    kind: fc.integer({ min: 0, max: 3 }),
    key: fc.integer({ min: 0, max: keys - 1 }),
    gap: fc.integer({ min: 0, max: 10 }),
    toLin: fc.integer({ min: 0, max: 20 }),
    toRet: fc.integer({ min: 0, max: 20 }),
    unknown: unknown ? fc.integer({ min: 0, max: 9 }).map((x) => x < 3) : fc.constant(false),
    takesEffect: fc.boolean(),
    casPick: fc.nat(100),
  });

function describeFailure(r: CheckResult): string {
  return r.ok === false ? r.explanation : JSON.stringify(r);
}

/**
 * Brute-force oracle straight from the definition: some order of all known-outcome ops
 * plus any subset of unknown-outcome ops, respecting real-time order (a before b when
 * a.ret < b.call), is legal for the sequential model.
 */
function bruteForce(history: readonly KvOperation[]): boolean {
  const search = (remaining: readonly KvOperation[], state: string | null): boolean => {
    if (remaining.every((o) => o.ret === null)) return true;
    for (const o of remaining) {
      // o can go next iff no other remaining known op returned before o was called.
      if (remaining.some((p) => p !== o && p.ret !== null && p.ret < o.call)) continue;
      const r = kvModel.step(state, o.input, o.ret === null ? null : o.output);
      if (
        r.ok &&
        search(
          remaining.filter((p) => p !== o),
          r.state,
        )
      )
        return true;
    }
    // Unknown ops may also never take effect.
    const unknown = remaining.find((o) => o.ret === null);
    return (
      unknown !== undefined &&
      search(
        remaining.filter((p) => p !== unknown),
        state,
      )
    );
  };
  return search(history, null);
}

const smallValue = fc.constantFrom<string | null>(null, 'a', 'b');
const randomKvOp: fc.Arbitrary<Omit<KvOperation, 'id'>> = fc
  .record({
    kind: fc.integer({ min: 0, max: 3 }),
    value: fc.constantFrom('a', 'b'),
    observed: smallValue,
    flag: fc.boolean(),
    call: fc.integer({ min: 0, max: 12 }),
    duration: fc.integer({ min: 0, max: 8 }),
    unknown: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
    client: fc.integer({ min: 0, max: 3 }),
  })
  .map(({ kind, value, observed, flag, call, duration, unknown, client }) => {
    const key = 'x';
    let input: KvInput;
    let output: KvOutput;
    if (kind === 0) {
      input = { kind: 'put', key, value };
      output = { kind: 'put' };
    } else if (kind === 1) {
      input = { kind: 'get', key };
      output = { kind: 'get', value: observed };
    } else if (kind === 2) {
      input = { kind: 'delete', key };
      output = { kind: 'delete', existed: flag };
    } else {
      input = { kind: 'cas', key, expected: observed, value };
      output = { kind: 'cas', swapped: flag };
    }
    return { client, input, call, ret: unknown ? null : call + duration, output: unknown ? null : output };
  });

describe('linearizability checker: properties', () => {
  test('agrees with a brute-force oracle on small random histories', () => {
    let bad = 0;
    fc.assert(
      fc.property(fc.array(randomKvOp, { minLength: 1, maxLength: 7 }), (ops) => {
        const history = ops.map((o, id) => ({ ...o, id }));
        const expected = bruteForce(history);
        if (!expected) bad++;
        assert.equal(check(history).ok, expected);
      }),
      { numRuns: 1000 },
    );
    assert.ok(bad > 100, `only ${bad} non-linearizable samples`);
  });

  test('random sequential executions are linearizable', () => {
    fc.assert(
      fc.property(fc.array(specArb(4, 2, true), { maxLength: 60 }), (specs) => {
        const r = check(simulate(specs, { sequential: true }));
        assert.equal(r.ok, true, describeFailure(r));
      }),
      { numRuns: 200 },
    );
  });

  test('histories of a simulated linearizable store with random concurrency are accepted', () => {
    fc.assert(
      fc.property(fc.array(specArb(6, 3, true), { maxLength: 120 }), (specs) => {
        const r = check(simulate(specs));
        assert.equal(r.ok, true, describeFailure(r));
      }),
      { numRuns: 200 },
    );
  });

  test('the verdict does not depend on the order of the history array', () => {
    fc.assert(
      fc.property(
        fc.array(specArb(4, 2, true), { maxLength: 50 }),
        fc.boolean(),
        fc.nat(),
        fc.func(fc.integer()),
        (specs, corrupt, pick, rank) => {
          let history = simulate(specs);
          const reads = history.filter((o) => o.input.kind === 'get' && o.ret !== null);
          const victim = corrupt ? reads[pick % Math.max(1, reads.length)] : undefined;
          if (victim !== undefined) {
            history = history.map((o) =>
              o.id === victim.id ? { ...o, output: { kind: 'get' as const, value: 'bogus' } } : o,
            );
          }
          const shuffled = [...history].sort((a, b) => rank(a.id) - rank(b.id));
          const r1 = check(history);
          const r2 = check(shuffled);
          assert.equal(r1.ok, victim === undefined);
          assert.equal(r2.ok, r1.ok);
        },
      ),
      { numRuns: 100 },
    );
  });

  test('a read returning a value never written is rejected', () => {
    fc.assert(
      fc.property(fc.array(specArb(6, 2, true), { minLength: 1, maxLength: 80 }), fc.nat(), (specs, pick) => {
        const history = simulate(specs);
        const reads = history.filter((o) => o.input.kind === 'get' && o.ret !== null);
        fc.pre(reads.length > 0);
        const victim = reads[pick % reads.length]!;
        const mutated = history.map((o) =>
          o.id === victim.id ? { ...o, output: { kind: 'get' as const, value: 'never-written' } } : o,
        );
        const r = check(mutated);
        assert.equal(r.ok, false);
        assert.equal(r.ok === false && r.partition, victim.input.key);
      }),
      { numRuns: 200 },
    );
  });

  test('a read returning a value written only after the read returned is rejected', () => {
    fc.assert(
      fc.property(fc.array(specArb(6, 2, true), { minLength: 2, maxLength: 80 }), fc.nat(), (specs, pick) => {
        const history = simulate(specs);
        // (read, later write of the same key) pairs; values are unique per operation.
        const pairs: [KvOperation, string][] = [];
        for (const rd of history) {
          if (rd.input.kind !== 'get' || rd.ret === null) continue;
          for (const w of history) {
            if (
              (w.input.kind === 'put' || w.input.kind === 'cas') &&
              w.input.key === rd.input.key &&
              w.call > rd.ret
            ) {
              pairs.push([rd, w.input.value]);
            }
          }
        }
        fc.pre(pairs.length > 0);
        const [victim, value] = pairs[pick % pairs.length]!;
        const mutated = history.map((o) =>
          o.id === victim.id ? { ...o, output: { kind: 'get' as const, value } } : o,
        );
        assert.equal(check(mutated).ok, false);
      }),
      { numRuns: 200 },
    );
  });
});

// --- Performance --------------------------------------------------------------------------

describe('linearizability checker: performance', () => {
  const params = { clients: 8, keys: 5, unknownRate: 0.02, maxGap: 5, maxLatency: 30 };

  test('2000 ops, 5 keys, 8 concurrent clients: accepted in well under a few seconds', () => {
    for (const seed of [1, 2, 3]) {
      const history = simulate(randomSpecs(seed, 2000, params));
      const t0 = performance.now();
      const r = check(history);
      const ms = performance.now() - t0;
      assert.equal(r.ok, true, describeFailure(r));
      assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`);
      console.log(
        `  seed ${seed}: 2000 ops accepted in ${ms.toFixed(1)} ms (${r.ok === true ? r.states : 0} states)`,
      );
    }
  });

  test('2000 ops with one corrupted read: rejected quickly', () => {
    const history = simulate(randomSpecs(7, 2000, params));
    const reads = history.filter((o) => o.input.kind === 'get' && o.ret !== null);
    const victim = reads[Math.floor(reads.length / 2)]!;
    const mutated = history.map((o) =>
      o.id === victim.id ? { ...o, output: { kind: 'get' as const, value: 'corrupt' } } : o,
    );
    const t0 = performance.now();
    const r = check(mutated);
    const ms = performance.now() - t0;
    assert.equal(r.ok, false);
    assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`);
    console.log(`  corrupted 2000-op history rejected in ${ms.toFixed(1)} ms`);
  });
});
