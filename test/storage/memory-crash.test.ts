// The crash model MemoryStorage offers the simulator matches FileStorage's semantics:
// synced batches survive, unsynced ones survive only as a prefix, whole batches at a time.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { ents, hs } from './helpers.ts';

const NO_BATCH = { snapshot: null, entries: [], hardState: null } as const;

test('manualSync: persist resolves at sync(); a crash keeps synced batches plus a prefix of the rest', async () => {
  const s = new MemoryStorage(undefined, { manualSync: true });
  const order: number[] = [];
  const a = s.persist({ ...NO_BATCH, entries: ents(1, 2, 1) }).then(() => order.push(1));
  const b = s.persist({ ...NO_BATCH, hardState: hs(1, 2) }).then(() => order.push(2));
  assert.equal(s.unsynced(), 2);
  await Promise.resolve();
  assert.deepEqual(order, [], 'nothing resolves before the sync');
  assert.equal(s.sync(), 2);
  await Promise.all([a, b]);
  assert.deepEqual(order, [1, 2]);
  void s.persist({ ...NO_BATCH, entries: ents(3, 3, 1) });
  void s.persist({ ...NO_BATCH, entries: ents(4, 4, 1), hardState: hs(1, 4) });
  void s.persist({ ...NO_BATCH, entries: ents(5, 5, 1) });
  assert.equal(s.initialState().entries.length, 5);
  const lost = s.durableCopy().crash(() => 0);
  assert.equal(lost.initialState().entries.length, 5, 'durableCopy keeps everything accepted');
  let seen = -1;
  const r = s.crash((n) => {
    seen = n;
    return 2;
  });
  assert.equal(seen, 3);
  assert.deepEqual(
    r.initialState().entries.map((e) => e.index),
    [1, 2, 3, 4],
  );
  assert.deepEqual(r.initialState().hardState, hs(1, 4));
  assert.equal(
    r.crash().initialState().entries.length,
    4,
    'a crash right after restart loses nothing synced',
  );
});
