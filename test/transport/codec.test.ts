// The peer codec: round trips of every message type (property-based), and strict rejection of
// truncated, trailing and random input with CodecError only.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Entry, Message, NodeId, SnapshotMeta } from '../../src/raft/types.ts';
import { CODEC_VERSION, CodecError, decodeBatch, encodeBatch } from '../../src/transport/codec.ts';

// fast-check may build null-prototype records; decoded messages are plain objects.
function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as fc.Arbitrary<T>;
}

const id: fc.Arbitrary<NodeId> = fc.oneof(
  fc.constantFrom('n1', 'n2', 'n3', ''),
  fc.string({ maxLength: 12, unit: 'grapheme' }),
);
const u = fc.oneof(fc.nat(1000), fc.maxSafeNat());
const s = fc.oneof(fc.integer({ min: -1, max: 1000 }), fc.integer({ min: -(2 ** 51), max: 2 ** 51 }));
const bytes = fc.uint8Array({ maxLength: 64 });
const entryType = fc.constantFrom(0 as const, 1 as const);
const entry: fc.Arbitrary<Entry> = rec({ term: u, index: u, type: entryType, data: bytes });
const meta: fc.Arbitrary<SnapshotMeta> = rec({
  index: u,
  term: u,
  conf: rec({ voters: fc.array(id, { maxLength: 5 }), learners: fc.array(id, { maxLength: 3 }) }),
});
const base = { from: id, to: id, term: u };

export const messageArb: fc.Arbitrary<Message> = fc.oneof(
  rec({
    ...base,
    type: fc.constantFrom('prevote' as const, 'vote' as const),
    lastLogIndex: u,
    lastLogTerm: u,
    transfer: fc.boolean(),
  }),
  rec({
    ...base,
    type: fc.constantFrom('prevote-resp' as const, 'vote-resp' as const),
    reject: fc.boolean(),
  }),
  rec({
    ...base,
    type: fc.constant('app' as const),
    prevIndex: u,
    prevTerm: u,
    entries: fc.array(entry, { maxLength: 8 }),
    commit: u,
  }),
  rec({
    ...base,
    type: fc.constant('app-resp' as const),
    index: u,
    reject: fc.boolean(),
    hintIndex: u,
    hintTerm: u,
  }),
  rec({ ...base, type: fc.constant('hb' as const), commit: u, readSeq: u }),
  rec({ ...base, type: fc.constant('hb-resp' as const), readSeq: u }),
  rec({
    ...base,
    type: fc.constant('snap' as const),
    meta,
    offset: u,
    data: fc.uint8Array({ maxLength: 300 }),
    done: fc.boolean(),
  }),
  rec({ ...base, type: fc.constant('snap-resp' as const), index: u, offset: u }),
  rec({ ...base, type: fc.constant('timeout-now' as const) }),
  rec({
    ...base,
    type: fc.constant('prop' as const),
    entries: fc.array(rec({ type: entryType, data: bytes }), { maxLength: 5 }),
  }),
  rec({ ...base, type: fc.constant('read-index' as const), ctxs: fc.array(s, { maxLength: 5 }) }),
  rec({
    ...base,
    type: fc.constant('read-index-resp' as const),
    ctxs: fc.array(s, { maxLength: 5 }),
    index: s,
  }),
);

function onlyCodecError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
  }
}

test('decode(encode(batch)) deep-equals the batch, for every message type', () => {
  fc.assert(
    fc.property(fc.array(messageArb, { maxLength: 12 }), (batch) => {
      const bytes = encodeBatch(batch);
      assert.equal(bytes[0], CODEC_VERSION);
      assert.deepStrictEqual(decodeBatch(bytes), batch);
      // also through a Buffer view at an odd offset (how frames arrive)
      const framed = Buffer.alloc(bytes.length + 3);
      framed.set(bytes, 3);
      assert.deepStrictEqual(decodeBatch(framed.subarray(3)), batch);
    }),
    { numRuns: 500 },
  );
});

test('every message type is covered by the generator', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(messageArb, (m) => {
      seen.add(m.type);
    }),
    { numRuns: 600 },
  );
  assert.equal(seen.size, 14);
});

test('decoded data are copies, not views of the frame', () => {
  const data = new Uint8Array([1, 2, 3]);
  const bytes = encodeBatch([
    {
      type: 'app',
      from: 'n1',
      to: 'n2',
      term: 1,
      prevIndex: 0,
      prevTerm: 0,
      commit: 0,
      entries: [{ term: 1, index: 1, type: 0, data }],
    },
  ]);
  const [m] = decodeBatch(bytes);
  assert.ok(m?.type === 'app');
  const d = m.entries[0]?.data;
  assert.ok(d !== undefined);
  assert.notEqual(d.buffer, bytes.buffer);
  assert.equal(Object.getPrototypeOf(d), Uint8Array.prototype);
});

test('every strict prefix of a valid batch is refused with CodecError', () => {
  fc.assert(
    fc.property(fc.array(messageArb, { minLength: 1, maxLength: 4 }), (batch) => {
      const bytes = encodeBatch(batch);
      for (let n = 0; n < bytes.length; n++) {
        assert.throws(() => decodeBatch(bytes.subarray(0, n)), CodecError);
      }
    }),
    { numRuns: 100 },
  );
});

test('trailing bytes, a bad version, a bad kind, a bad flag and a bad id reference are named', () => {
  const ok = encodeBatch([{ type: 'vote-resp', from: 'n1', to: 'n2', term: 3, reject: true }]);
  const withTrailer = new Uint8Array([...ok, 0]);
  assert.throws(() => decodeBatch(withTrailer), /trailing bytes/);
  const badVersion = Uint8Array.from(ok);
  badVersion[0] = 9;
  assert.throws(() => decodeBatch(badVersion), /unsupported codec version 9/);
  // layout: ver, nIds=2, 2 'n1', 2 'n2', nMsgs=1, kind, from, to, term, reject
  const kindAt = 1 + 1 + 3 + 3 + 1;
  const badKind = Uint8Array.from(ok);
  badKind[kindAt] = 99;
  assert.throws(() => decodeBatch(badKind), /unknown message kind 99/);
  const badRef = Uint8Array.from(ok);
  badRef[kindAt + 1] = 7;
  assert.throws(() => decodeBatch(badRef), /from refers to node id #7/);
  const badFlag = Uint8Array.from(ok);
  badFlag[kindAt + 4] = 2;
  assert.throws(() => decodeBatch(badFlag), /reject flag must be 0 or 1/);
  assert.throws(() => decodeBatch(new Uint8Array(0)), /truncated input: missing version byte/);
  // a huge count is refused before anything is allocated
  assert.throws(() => decodeBatch(new Uint8Array([1, 0, 0xff, 0xff, 0xff, 0x7f])), /message count/);
  // non-canonical and over-long varints
  assert.throws(() => decodeBatch(new Uint8Array([1, 0x80, 0x00, 0])), /non-canonical/);
  assert.throws(
    () => decodeBatch(new Uint8Array([1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
    /longer than 8 bytes/,
  );
});

test('encoding refuses numbers it cannot represent', () => {
  assert.throws(
    () => encodeBatch([{ type: 'hb-resp', from: 'a', to: 'b', term: -1, readSeq: 0 }]),
    (e: unknown) => e instanceof CodecError && /term/.test(e.message),
  );
  assert.throws(
    () => encodeBatch([{ type: 'hb-resp', from: 'a', to: 'b', term: 1.5, readSeq: 0 }]),
    CodecError,
  );
});

test('random garbage never throws anything but CodecError', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (g) => {
      onlyCodecError(() => decodeBatch(g));
      const v = Uint8Array.from(g);
      if (v.length > 0) v[0] = CODEC_VERSION;
      onlyCodecError(() => decodeBatch(v));
    }),
    { numRuns: 3000 },
  );
});

test('mutated valid batches either decode to well-formed messages or throw CodecError', () => {
  fc.assert(
    fc.property(
      fc.array(messageArb, { minLength: 1, maxLength: 4 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
      (batch, edits) => {
        const bytes = Uint8Array.from(encodeBatch(batch));
        for (const [pos, val] of edits) bytes[pos % bytes.length] = val;
        try {
          const out = decodeBatch(bytes);
          // whatever decodes is well-formed: it re-encodes, and round-trips unchanged
          assert.deepStrictEqual(decodeBatch(encodeBatch(out)), out);
        } catch (e) {
          if (!(e instanceof CodecError)) throw e;
        }
      },
    ),
    { numRuns: 1000 },
  );
});
