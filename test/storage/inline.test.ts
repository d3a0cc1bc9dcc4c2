/**
 * Inline writes of FileStorage (setInlineWrites, inlineWriteBytes): which groups are written on the
 * calling thread, that they recover exactly like pool writes, and that a failing inline write fails
 * the storage the same way.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { StorageFailedError, StorageIOError, StorageUsageError } from '../../src/storage/errors.ts';
import { defaultIO, FileStorage, type StorageIO } from '../../src/storage/file-storage.ts';
import { describe, ent, ents, hs, ID, NO_BATCH, snap, withDir } from './helpers.ts';

/** An io that counts how each write was made. */
function countingIO(): { io: StorageIO; counts: { pool: number; inline: number } } {
  const counts = { pool: 0, inline: 0 };
  return {
    counts,
    io: {
      ...defaultIO,
      writev: (fh, b, p) => {
        counts.pool++;
        return defaultIO.writev(fh, b, p);
      },
      writevSync: (fh, b, p) => {
        counts.inline++;
        return defaultIO.writevSync!(fh, b, p);
      },
    },
  };
}

test('inline writes: only while switched on, only with dsync, only groups up to inlineWriteBytes, never a snapshot', () =>
  withDir(async (dir) => {
    const { io, counts } = countingIO();
    const s = await FileStorage.open(dir, { ...ID, io, sync: 'dsync', inlineWriteBytes: 4096 });
    const pool0 = counts.pool; // segment header written at open
    await s.persist({ snapshot: null, entries: [ent(1, 1, 100)], hardState: hs(1, 0) });
    assert.deepEqual([counts.inline, counts.pool - pool0], [0, 1], 'off by default: through the pool');

    s.setInlineWrites(true);
    await s.persist({ snapshot: null, entries: [ent(2, 1, 100)], hardState: hs(1, 1) });
    await s.persist({ ...NO_BATCH, entries: ents(3, 10, 1, 200) });
    assert.equal(counts.inline, 2, 'small groups inline');
    await s.persist({ ...NO_BATCH, entries: ents(11, 12, 1, 5000) });
    assert.equal(counts.inline, 2, 'a group over inlineWriteBytes goes to the pool');
    assert.equal(counts.pool - pool0, 2);
    await s.persist({ snapshot: snap(12, 1), entries: [], hardState: hs(1, 12) });
    assert.equal(counts.inline, 2, 'a group with a snapshot goes to the pool');
    await s.persist({ ...NO_BATCH, entries: [ent(13, 1)] });
    assert.equal(counts.inline, 3);
    s.setInlineWrites(false);
    await s.persist({ ...NO_BATCH, entries: [ent(14, 1)] });
    assert.equal(counts.inline, 3, 'switched off again');
    assert.equal(s.stats().inlineGroups, 3);

    const expected = describe(s.initialState());
    await s.close();
    const again = await FileStorage.open(dir, { ...ID, sync: 'dsync' });
    assert.deepEqual(describe(again.initialState()), expected, 'inline and pool writes recover alike');
    await again.close();
  }));

test('inline writes are never made with fdatasync, with inlineWriteBytes 0, or by an io without writevSync', () =>
  withDir(async (dir) => {
    const { writevSync: _, ...noSync } = defaultIO;
    const cases = [
      { sync: 'fdatasync', inlineWriteBytes: 4096 },
      { sync: 'dsync', inlineWriteBytes: 0 },
      { sync: 'dsync', io: noSync as StorageIO },
    ] as const;
    for (const c of cases) {
      const s = await FileStorage.open(dir, { ...ID, ...c });
      s.setInlineWrites(true);
      const next = s.initialState().entries.length + 1;
      await s.persist({ ...NO_BATCH, entries: [ent(next, 1)] });
      assert.equal(s.stats().inlineGroups, 0, JSON.stringify(c));
      await s.close();
    }
  }));

test('a bad inlineWriteBytes is refused before the directory is touched', () =>
  withDir(async (dir) => {
    for (const bad of [-1, 1.5, Number.NaN, 2 * 1024 * 1024]) {
      await assert.rejects(FileStorage.open(`${dir}/x`, { ...ID, inlineWriteBytes: bad }), (err: unknown) => {
        assert.ok(err instanceof StorageUsageError);
        assert.match(err.message, /inlineWriteBytes must be an integer from 0 to 1048576/);
        return true;
      });
    }
    const s = await FileStorage.open(`${dir}/x`, { ...ID, inlineWriteBytes: 1024 * 1024 });
    await s.close();
  }));

test('a failing inline write fails the storage like a failing pool write; what was acknowledged stays', () =>
  withDir(async (dir) => {
    let fail = false;
    const io: StorageIO = {
      ...defaultIO,
      writevSync: (fh, b, p) => {
        if (fail) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        return defaultIO.writevSync!(fh, b, p);
      },
    };
    const s = await FileStorage.open(dir, { ...ID, io, sync: 'dsync' });
    s.setInlineWrites(true);
    for (let i = 1; i <= 5; i++)
      await s.persist({ snapshot: null, entries: [ent(i, 1)], hardState: hs(1, i) });
    assert.equal(s.stats().inlineGroups, 5);
    const expected = describe(s.initialState());
    fail = true;
    await assert.rejects(s.persist({ ...NO_BATCH, entries: [ent(6, 1)] }), StorageIOError);
    await assert.rejects(s.persist({ ...NO_BATCH, entries: [ent(6, 1)] }), StorageFailedError);
    await s.close().catch(() => undefined);
    const again = await FileStorage.open(dir, { ...ID, sync: 'dsync' });
    assert.deepEqual(describe(again.initialState()), expected);
    await again.close();
  }));

test('an io that replaces writev but inherits the default writevSync is not bypassed by inline writes', () =>
  withDir(async (dir) => {
    let fail = false;
    const io: StorageIO = {
      ...defaultIO,
      writev: async (fh, b, p) => {
        if (fail) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
        return defaultIO.writev(fh, b, p);
      },
    };
    const s = await FileStorage.open(dir, { ...ID, io, sync: 'dsync' });
    s.setInlineWrites(true);
    fail = true;
    await assert.rejects(
      s.persist({ snapshot: null, entries: [ent(1, 1)], hardState: hs(1, 0) }),
      StorageIOError,
    );
    assert.equal(s.stats().inlineGroups, 0);
    await s.close().catch(() => undefined);
  }));
