// The KV state machine: command codec, exactly-once sessions, compare-and-swap, snapshots.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeRequest,
  encodeRequest,
  KvDecodeError,
  type KvRequest,
  KvStateMachine,
} from '../../src/kv/state-machine.ts';

const str = fc.string({ unit: 'grapheme', maxLength: 40 });
const request: fc.Arbitrary<KvRequest> = fc.record({
  client: fc.maxSafeNat(),
  seq: fc.maxSafeNat(),
  cmd: fc.oneof(
    fc.record({ kind: fc.constant('put' as const), key: str, value: str }),
    fc.record({ kind: fc.constant('delete' as const), key: str }),
    fc.record({
      kind: fc.constant('cas' as const),
      key: str,
      expected: fc.option(str, { nil: null }),
      value: str,
    }),
    fc.record({
      kind: fc.constant('cas' as const),
      key: str,
      expected: fc.option(str, { nil: null }),
      value: str,
      expectedVersion: fc.integer({ min: 1, max: 1e9 }),
    }),
  ),
});

test('command codec: decode(encode(x)) equals x for every command', () => {
  fc.assert(
    fc.property(request, (r) => {
      assert.deepEqual(decodeRequest(encodeRequest(r)), JSON.parse(JSON.stringify(r)));
    }),
    { numRuns: 3000 },
  );
});

test('command codec: truncated or garbage input is a KvDecodeError, never a bad command', () => {
  fc.assert(
    fc.property(request, fc.nat(), (r, cut) => {
      const b = encodeRequest(r);
      const n = cut % b.length;
      assert.throws(() => decodeRequest(b.subarray(0, n)), KvDecodeError);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      try {
        decodeRequest(bytes);
      } catch (e) {
        assert.ok(e instanceof KvDecodeError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
});

test('sessions make writes exactly-once; old sequence numbers are refused', () => {
  const sm = new KvStateMachine();
  const put = (seq: number, value: string) =>
    encodeRequest({ client: 9, seq, cmd: { kind: 'put', key: 'k', value } });
  const r1 = sm.apply(1, put(1, 'a'));
  const again = sm.apply(2, put(1, 'a'));
  assert.deepEqual(again, r1, 'a retry gets the first result');
  assert.equal(sm.get('k')?.version, 1);
  sm.apply(3, put(2, 'b'));
  assert.deepEqual(sm.apply(4, put(1, 'a')), { kind: 'duplicate' });
  assert.equal(sm.get('k')?.value, 'b');
  assert.throws(() => sm.apply(4, put(3, 'c')), RangeError, 'indices must increase');
});

test('compare-and-swap on value, absence and version; delete reports existence', () => {
  const sm = new KvStateMachine();
  let i = 0;
  const run = (cmd: KvRequest['cmd']) => sm.apply(++i, encodeRequest({ client: 0, seq: 0, cmd }));
  assert.deepEqual(run({ kind: 'cas', key: 'x', expected: null, value: '1' }), {
    kind: 'cas',
    swapped: true,
    revision: 1,
  });
  assert.equal(
    (run({ kind: 'cas', key: 'x', expected: null, value: '2' }) as { swapped: boolean }).swapped,
    false,
  );
  assert.equal(
    (run({ kind: 'cas', key: 'x', expected: '1', value: '2' }) as { swapped: boolean }).swapped,
    true,
  );
  assert.equal(
    (run({ kind: 'cas', key: 'x', expected: null, value: '3', expectedVersion: 1 }) as { swapped: boolean })
      .swapped,
    false,
  );
  assert.equal(
    (run({ kind: 'cas', key: 'x', expected: null, value: '3', expectedVersion: 2 }) as { swapped: boolean })
      .swapped,
    true,
  );
  assert.equal(sm.get('x')?.value, '3');
  assert.equal((run({ kind: 'delete', key: 'x' }) as { existed: boolean }).existed, true);
  assert.equal((run({ kind: 'delete', key: 'x' }) as { existed: boolean }).existed, false);
  // An empty entry (a leader's no-op, a membership change) only advances the applied index.
  assert.equal(sm.apply(++i, new Uint8Array()), null);
  assert.equal(sm.applied, i);
});

test('snapshot and restore carry data, sessions, members and the applied index', () => {
  const a = new KvStateMachine();
  a.apply(1, encodeRequest({ client: 4, seq: 1, cmd: { kind: 'put', key: 'p/1', value: 'one' } }));
  a.apply(2, encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: 'p/2', value: 'two' } }));
  a.members.set('n4', '127.0.0.1:7000');
  const b = new KvStateMachine();
  b.restore(a.snapshot());
  assert.equal(b.applied, 2);
  assert.deepEqual(b.list('p/', 10), a.list('p/', 10));
  assert.equal(b.members.get('n4'), '127.0.0.1:7000');
  assert.deepEqual(
    b.apply(3, encodeRequest({ client: 4, seq: 1, cmd: { kind: 'put', key: 'p/1', value: 'one' } })),
    {
      kind: 'put',
      revision: 1,
    },
  );
  assert.deepEqual(b.list('p/', 1).length, 1);
});

test('a sliced snapshot is the state at its start, byte for byte, while writes go on', () => {
  fc.assert(
    fc.property(
      fc.array(request, { maxLength: 300 }),
      fc.array(request, { maxLength: 100 }),
      fc.integer({ min: 0, max: 2 }),
      (before, during, budget) => {
        const sm = new KvStateMachine();
        let i = 0;
        for (const r of before) sm.apply(++i, encodeRequest(r));
        sm.members.set('n1', '127.0.0.1:1');
        const expected = sm.snapshot();
        const job = sm.beginSnapshot();
        let out: Uint8Array | null = null;
        let turns = 0;
        // Budget 0 makes each step stop after one slice of 128 entries: interleave writes with it.
        for (let k = 0; out === null; k++) {
          out = job.step(budget);
          turns++;
          const w = during[k];
          if (w !== undefined) sm.apply(++i, encodeRequest(w));
          sm.members.set(`m${k}`, 'x:1');
        }
        assert.ok(turns >= 1);
        assert.deepEqual(Buffer.from(out), Buffer.from(expected));
        const back = new KvStateMachine();
        back.restore(out);
        assert.deepEqual(back.snapshot(), expected);
      },
    ),
    { numRuns: 200 },
  );
});

test('a big sliced snapshot takes several steps at a small budget', () => {
  const sm = new KvStateMachine();
  for (let i = 1; i <= 5000; i++) {
    sm.apply(
      i,
      encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: `k${i}`, value: 'v'.repeat(64) } }),
    );
  }
  const job = sm.beginSnapshot();
  let steps = 0;
  let out: Uint8Array | null = null;
  while (out === null) {
    out = job.step(0);
    steps++;
  }
  assert.ok(steps >= 5000 / 128, `${steps} steps`);
  assert.deepEqual(Buffer.from(out), Buffer.from(sm.snapshot()));
});
