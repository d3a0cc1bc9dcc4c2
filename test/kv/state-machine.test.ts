// The KV state machine: command codec, exactly-once sessions, compare-and-swap, snapshots.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeRequest,
  encodeRegister,
  encodeRequest,
  KvDecodeError,
  type KvRequest,
  KvSnapshotError,
  KvStateMachine,
  LEGACY_COMMAND_VERSION,
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
  assert.deepEqual(sm.apply(1, encodeRegister()), { kind: 'register', client: 1 });
  const put = (seq: number, value: string) =>
    encodeRequest({ client: 1, seq, cmd: { kind: 'put', key: 'k', value } });
  const r1 = sm.apply(2, put(1, 'a'));
  const again = sm.apply(3, put(1, 'a'));
  assert.deepEqual(again, r1, 'a retry gets the first result');
  assert.equal(sm.get('k')?.version, 1);
  sm.apply(4, put(2, 'b'));
  assert.deepEqual(sm.apply(5, put(1, 'a')), { kind: 'duplicate' });
  assert.equal(sm.get('k')?.value, 'b');
  assert.throws(() => sm.apply(5, put(3, 'c')), RangeError, 'indices must increase');
});

test('a write on a session never registered is session-expired and changes nothing', () => {
  const sm = new KvStateMachine();
  const r = sm.apply(1, encodeRequest({ client: 9, seq: 1, cmd: { kind: 'put', key: 'k', value: 'v' } }));
  assert.deepEqual(r, { kind: 'session-expired', client: 9 });
  assert.equal(sm.get('k'), undefined);
  assert.equal(sm.sessionCount, 0, 'no session was opened by it');
  assert.equal(sm.stats.sessionsExpired, 1);
});

test('the session table is bounded: the least recently used session is evicted, and its retries get session-expired, never a second apply', () => {
  const sm = new KvStateMachine({ maxSessions: 3 });
  let i = 0;
  const reg = () => (sm.apply(++i, encodeRegister()) as { client: number }).client;
  const put = (client: number, seq: number, value: string) =>
    sm.apply(++i, encodeRequest({ client, seq, cmd: { kind: 'put', key: 'k', value } }));
  const [a, b, c] = [reg(), reg(), reg()];
  assert.deepEqual(put(a, 1, 'a1'), { kind: 'put', revision: i });
  put(b, 1, 'b1');
  put(c, 1, 'c1');
  // a retries its write: it is used again, so b is now the least recently used.
  assert.equal((put(a, 1, 'a1') as { kind: string }).kind, 'put');
  const d = reg();
  assert.equal(sm.sessionCount, 3);
  assert.equal(sm.stats.sessionsEvicted, 1);
  const version = sm.get('k')?.version;
  // b's retry of its applied write: refused, not applied again.
  assert.deepEqual(put(b, 1, 'b1'), { kind: 'session-expired', client: b });
  assert.deepEqual(put(b, 2, 'b2'), { kind: 'session-expired', client: b });
  assert.equal(sm.get('k')?.version, version, 'nothing applied');
  // The others' retries inside the window still get their first result.
  assert.deepEqual(put(c, 1, 'c1'), { kind: 'put', revision: 6 });
  assert.equal((put(d, 1, 'd1') as { kind: string }).kind, 'put');
  assert.throws(() => new KvStateMachine({ maxSessions: 0 }), /maxSessions must be a positive integer/);
});

test('legacy (format 1) commands keep their meaning on replay: the first write opens the session', () => {
  const sm = new KvStateMachine({ maxSessions: 2 });
  const put = (i: number, client: number, seq: number, value: string) =>
    sm.apply(
      i,
      encodeRequest({ client, seq, cmd: { kind: 'put', key: 'k', value } }, LEGACY_COMMAND_VERSION),
    );
  assert.equal((put(1, 77, 1, 'a') as { kind: string }).kind, 'put');
  assert.deepEqual(put(2, 77, 1, 'a'), { kind: 'put', revision: 1 });
  assert.equal(sm.get('k')?.version, 1);
  put(3, 78, 1, 'b');
  put(4, 79, 1, 'c');
  assert.equal(sm.sessionCount, 2, 'bounded for legacy sessions too');
});

test('apply never throws on what an entry holds: any bytes give the same result on every replica, also one restored from a snapshot midway', () => {
  // Random bytes, and mutations of valid commands (a byte changed, cut short, grown).
  const valid = fc.oneof(
    request.map((r) => encodeRequest(r)),
    request.map((r) => encodeRequest(r, LEGACY_COMMAND_VERSION)),
    fc.constant(encodeRegister()),
  );
  const mutated = fc
    .tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 }))
    .map(([b, at, v, how]) => {
      const out = Buffer.from(b);
      const i = at % Math.max(1, out.length);
      if (how === 0 && out.length > 0) out[i] = v;
      if (how === 1) return out.subarray(0, i);
      if (how === 2) return Buffer.concat([out, Buffer.from([v])]);
      if (how === 3 && out.length > 1) out[1] = v;
      return out;
    });
  const entry = fc.oneof(valid, mutated, fc.uint8Array({ maxLength: 80 }));
  fc.assert(
    fc.property(
      fc.array(entry, { maxLength: 60 }),
      fc.integer({ min: 1, max: 4 }),
      fc.nat(60),
      (entries, max, restoreAt) => {
        // b applies everything; c joins at `restoreAt` from a's snapshot, as a member that
        // catches up by snapshot does: sessions and their eviction order must carry over.
        const a = new KvStateMachine({ maxSessions: max });
        const b = new KvStateMachine({ maxSessions: max });
        let c: KvStateMachine | null = null;
        let i = 0;
        for (const e of entries) {
          if (i === restoreAt) {
            c = new KvStateMachine({ maxSessions: max });
            c.restore(a.snapshot());
          }
          i++;
          const ra = a.apply(i, e);
          assert.deepEqual(b.apply(i, Uint8Array.from(e)), ra);
          if (c) assert.deepEqual(c.apply(i, Uint8Array.from(e)), ra);
          if (ra?.kind === 'invalid') assert.match(ra.reason, /^not a KV command/);
        }
        assert.deepEqual(Buffer.from(a.snapshot()), Buffer.from(b.snapshot()));
        if (c) assert.deepEqual(Buffer.from(c.snapshot()), Buffer.from(a.snapshot()));
      },
    ),
    { numRuns: 1500 },
  );
});

test('the bytes that stopped the cluster (issue 16) are invalid results now', () => {
  const sm = new KvStateMachine();
  // A bare KV put whose version byte equals RaftNode's envelope version, after the envelope
  // parser stripped what it took for a header: the remainder is not a command.
  const bare = encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: 'x', value: 'y' } }, 1);
  const r = sm.apply(1, bare.subarray(12));
  assert.equal(r?.kind, 'invalid');
  assert.equal(sm.stats.invalid, 1);
  const reasons: string[] = [];
  const logged = new KvStateMachine({ onInvalid: (index, reason) => reasons.push(`${index} ${reason}`) });
  logged.apply(7, new Uint8Array([1, 2, 3]));
  assert.deepEqual(reasons, ['7 not a KV command (3 bytes): shorter than its header']);
  assert.equal(logged.applied, 7, 'the index is applied all the same');
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
  a.apply(1, encodeRegister());
  a.apply(2, encodeRequest({ client: 1, seq: 1, cmd: { kind: 'put', key: 'p/1', value: 'one' } }));
  a.apply(3, encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: 'p/2', value: 'two' } }));
  a.members.set('n4', '127.0.0.1:7000');
  const b = new KvStateMachine();
  b.restore(a.snapshot());
  assert.equal(b.applied, 3);
  assert.deepEqual(b.list('p/', 10), a.list('p/', 10));
  assert.equal(b.members.get('n4'), '127.0.0.1:7000');
  assert.deepEqual(
    b.apply(4, encodeRequest({ client: 1, seq: 1, cmd: { kind: 'put', key: 'p/1', value: 'one' } })),
    {
      kind: 'put',
      revision: 2,
    },
  );
  assert.deepEqual(b.list('p/', 1).length, 1);
  assert.equal(JSON.parse(Buffer.from(a.snapshot()).toString())['format'], 2);
});

test('snapshots of the first format (no format field) still load; unknown formats are refused by name', () => {
  // Bytes as the first format wrote them: sessions in the order they were opened.
  const v1 = Buffer.from(
    JSON.stringify({
      applied: 9,
      data: [['k', { value: 'v', modRevision: 4, version: 2 }]],
      sessions: [
        [123456789, { seq: 3, result: { kind: 'put', revision: 4 } }],
        [42, { seq: 1, result: { kind: 'put', revision: 2 } }],
      ],
      members: [['n1', '127.0.0.1:1']],
    }),
  );
  const sm = new KvStateMachine({ maxSessions: 2 });
  sm.restore(v1);
  assert.equal(sm.applied, 9);
  assert.equal(sm.get('k')?.value, 'v');
  assert.equal(sm.members.get('n1'), '127.0.0.1:1');
  const retry = encodeRequest({ client: 123456789, seq: 3, cmd: { kind: 'put', key: 'k', value: 'v' } });
  assert.deepEqual(sm.apply(10, retry), { kind: 'put', revision: 4 }, 'an old session still deduplicates');
  // The first-format order is the eviction order: 42 is now the least recently used.
  sm.apply(11, encodeRegister());
  assert.deepEqual(sm.apply(12, encodeRequest({ client: 42, seq: 1, cmd: { kind: 'delete', key: 'k' } })), {
    kind: 'session-expired',
    client: 42,
  });
  const again = new KvStateMachine();
  again.restore(sm.snapshot());
  assert.deepEqual(again.snapshot(), sm.snapshot());
  assert.throws(
    () => again.restore(Buffer.from('{"format":9,"applied":1,"data":[],"sessions":[]}')),
    KvSnapshotError,
  );
  assert.throws(() => again.restore(Buffer.from('nope')), /not valid JSON/);
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
