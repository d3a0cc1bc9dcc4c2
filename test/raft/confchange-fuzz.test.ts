// The configuration path is total (issue 16, part 4): random and mutated configuration
// change entries, committed, never make the core throw, and two replicas of the same log
// derive the same configuration from them. parseConfChange gives a result for any bytes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeConfChange, parseConfChange } from '../../src/raft/confchange.ts';
import { bootstrapState, Raft } from '../../src/raft/raft.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import { type ConfChange, type Entry, EntryType } from '../../src/raft/types.ts';

const node = fc.constantFrom('a', 'b', 'c', 'd', 'e', '', 'x'.repeat(300));
const change: fc.Arbitrary<ConfChange> = fc.record({
  type: fc.constantFrom('add-voter' as const, 'add-learner' as const, 'remove' as const),
  node,
});
const valid = change.map((cc) => encodeConfChange(cc));
const mutated = fc
  .tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 2 }))
  .map(([b, at, v, how]) => {
    const out = Uint8Array.from(b);
    const i = at % Math.max(1, out.length);
    if (how === 0 && out.length > 0) out[i] = v;
    if (how === 1) return out.subarray(0, i);
    return out;
  });
const odd = fc.constantFrom(
  '[]',
  'null',
  '{"type":"add-voter","node":5}',
  '{"type":"add-voter","node":"f","context":7}',
  '{"type":"promote","node":"f"}',
  '"add-voter"',
);
const data = fc.oneof(
  valid,
  mutated,
  odd.map((s) => new TextEncoder().encode(s)),
  fc.uint8Array({ maxLength: 40 }),
);

test('parseConfChange gives a change or a reason for any bytes, never throws', () => {
  fc.assert(
    fc.property(data, (d) => {
      const p = parseConfChange(d);
      if (p.ok) {
        assert.ok(p.cc.node.length > 0 && p.cc.node.length <= 255);
        assert.deepEqual(parseConfChange(encodeConfChange(p.cc)), p);
      } else assert.ok(p.reason.length > 0);
    }),
    { numRuns: 3000 },
  );
});

test('committed configuration entries of any bytes: no throw, and two replicas agree', () => {
  fc.assert(
    fc.property(fc.array(data, { maxLength: 12 }), (datas) => {
      const boot = bootstrapState(['a', 'b', 'c']);
      const entries: Entry[] = [
        ...boot.entries,
        ...datas.map((d, i) => ({
          term: 1,
          index: boot.entries.length + 1 + i,
          type: EntryType.ConfChange,
          data: d,
        })),
      ];
      const durable = { hardState: { term: 1, vote: '', commit: entries.length }, snapshot: null, entries };
      const replicas = ['a', 'b'].map((id, k) => new Raft({ id, rng: new SeededRng(k + 1) }, durable));
      const [r1, r2] = replicas as [Raft, Raft];
      assert.deepEqual(r1.configuration, r2.configuration);
      assert.deepEqual(r1.status().refused, r2.status().refused);
      const bad = datas.filter((d) => !parseConfChange(d).ok).length;
      assert.equal(r1.status().refused.malformedConfChanges, bad);
      // The core keeps running whatever configuration came out (even one with no voter).
      for (const r of replicas) {
        for (let t = 0; t < 40; t++) r.tick();
        if (r.hasReady()) r.advance(r.ready());
      }
    }),
    { numRuns: 800 },
  );
});
