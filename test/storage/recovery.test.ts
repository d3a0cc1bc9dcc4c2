/**
 * Recovery rules of FileStorage: torn tails are cut, everything else that fails to decode
 * stops start-up with a clear, typed error (file, offset, what to do).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { encodeBatch, encodeSegmentHeader, segmentName } from '../../src/storage/codec.ts';
import {
  CorruptionError,
  IdentityMismatchError,
  LogOrderError,
  MissingSegmentError,
  MissingSnapshotError,
  NotDataDirError,
  StorageFailedError,
  StorageFullError,
  StorageIOError,
  StorageLockedError,
  StoragePermissionError,
} from '../../src/storage/errors.ts';
import { defaultIO, FileStorage, type StorageIO } from '../../src/storage/file-storage.ts';
import { inspect } from '../../src/storage/inspect.ts';
import { describe, ent, ents, hs, ID, NO_BATCH, snap, withDir } from './helpers.ts';

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('wal-')).sort();
}

/** Writes `n` single-entry batches (entry i with commit i-1), closes, returns the final state. */
async function fill(dir: string, n: number, segmentBytes = 1 << 20): Promise<void> {
  const s = await FileStorage.open(dir, { ...ID, segmentBytes });
  for (let i = 1; i <= n; i++)
    await s.persist({ snapshot: null, entries: [ent(i, 1, 40)], hardState: hs(1, i - 1) });
  await s.close();
}

test('a torn last batch is dropped, whatever byte it was cut at (and with a zero-filled tail)', () =>
  withDir(async (dir) => {
    // Without preallocation the file ends where the records end, so every cut is a shorter file.
    const s = await FileStorage.open(dir, { ...ID, preallocate: false });
    await s.persist({ snapshot: null, entries: ents(1, 5, 1), hardState: hs(1, 3) });
    const expected = describe(s.initialState());
    const before = (await stat(join(dir, segmentName(1)))).size;
    // The last batch: two entries and a hard state (three records).
    await s.persist({ snapshot: null, entries: ents(6, 7, 1), hardState: hs(1, 6) });
    await s.close();
    const path = join(dir, segmentName(1));
    const full = await readFile(path);
    assert.ok(full.length > before);
    for (let cut = before; cut < full.length; cut++) {
      for (const zeroFill of [false, true]) {
        const torn = zeroFill
          ? Buffer.concat([full.subarray(0, cut), Buffer.alloc(full.length - cut)])
          : full.subarray(0, cut);
        if (torn.equals(full)) continue; // zero-filling bytes that were zero anyway
        await writeFile(path, torn);
        const r = await FileStorage.open(dir, ID);
        assert.deepEqual(describe(r.initialState()), expected, `cut at ${cut} zeroFill=${zeroFill}`);
        // Zeros right after the last complete batch are unwritten space (what preallocation leaves), not a tear.
        assert.equal(r.stats().recoveredTornTail === null, cut === before);
        await r.close();
        if (cut > before) assert.equal((await stat(path)).size, before, 'the torn tail was cut off the file');
      }
    }
    // The intact file still recovers everything.
    await writeFile(path, full);
    const r = await FileStorage.open(dir, ID);
    assert.equal(r.initialState().entries.length, 7);
    // ...and appends continue right after the repaired tail.
    await r.persist({ ...NO_BATCH, entries: ents(8, 8, 1) });
    await r.close();
    const again = await FileStorage.open(dir, ID);
    assert.deepEqual(
      again.initialState().entries.map((e) => e.index),
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    await again.close();
  }));

test('a flipped bit in a record before the tail is a CorruptionError naming file and offset', () =>
  withDir(async (dir) => {
    await fill(dir, 14, 400); // several segments of a few records each
    const files = await segmentFiles(dir);
    assert.ok(files.length >= 3, `expected several segments, got ${files.length}`);
    const recordBytes = 8 + 1 + 17 + 40;
    const hsBytes = 8 + 1 + 16;
    for (const file of [files[1]!, files[files.length - 1]!]) {
      const path = join(dir, file);
      const good = await readFile(path);
      // The second record batch of the file: header, batch 1 (entry + hard state), then batch 2.
      const target = 24 + recordBytes + hsBytes;
      assert.ok(good.length > target + 2 * (recordBytes + hsBytes), `${file} too short for the test`);
      for (let byte = target; byte < target + recordBytes; byte += 3) {
        const bad = Buffer.from(good);
        bad[byte]! ^= 1 << (byte % 8);
        await writeFile(path, bad);
        const err = await FileStorage.open(dir, ID).then(
          () => assert.fail(`bit flip at ${byte} in ${file} was not detected`),
          (e: unknown) => e,
        );
        assert.ok(err instanceof CorruptionError, `flip at ${byte}: ${String(err)}`);
        assert.equal(err.file, path);
        assert.equal(err.offset, target);
        assert.equal(err.code, 'ERR_STORAGE_CORRUPT');
        assert.match(err.message, new RegExp(`${file} at byte offset ${target}`));
        assert.match(err.message, /restore this node from a healthy peer/);
      }
      await writeFile(path, good);
    }
    const ok = await FileStorage.open(dir, ID);
    assert.equal(ok.initialState().entries.length, 14);
    await ok.close();
  }));

test('a missing segment is reported: in the middle, at the start and at the end', async () => {
  for (const which of ['middle', 'first', 'last'] as const) {
    await withDir(async (dir) => {
      await fill(dir, 12, 400);
      const s = await FileStorage.open(dir, ID);
      await s.persist({ ...NO_BATCH, hardState: hs(1, 12) });
      await s.close();
      const files = await segmentFiles(dir);
      const victim = which === 'first' ? files[0]! : which === 'last' ? files[files.length - 1]! : files[1]!;
      await rm(join(dir, victim));
      await assert.rejects(FileStorage.open(dir, ID), (err: unknown) => {
        assert.ok(err instanceof MissingSegmentError, `${which}: ${String(err)}`);
        assert.equal(err.code, 'ERR_STORAGE_MISSING_SEGMENT');
        return true;
      });
    });
  }
});

test('entries out of order are a LogOrderError', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, ID);
    await s.close();
    const batch = (e: ReturnType<typeof ent>) =>
      encodeBatch({ snapshot: null, truncateFrom: null, entries: [e], hardState: null });
    await writeFile(
      join(dir, segmentName(1)),
      Buffer.concat([encodeSegmentHeader(1), batch(ent(1, 1)), batch(ent(2, 1)), batch(ent(4, 1))]),
    );
    await assert.rejects(FileStorage.open(dir, ID), (err: unknown) => {
      assert.ok(err instanceof LogOrderError);
      assert.match(err.message, /entry 4 follows entry 2/);
      return true;
    });
  }));

test('a directory of another node or cluster, or a foreign directory, is refused', () =>
  withDir(async (dir) => {
    await (await FileStorage.open(dir, ID)).close();
    await assert.rejects(FileStorage.open(dir, { nodeId: 'n2', clusterId: 'c1' }), IdentityMismatchError);
    await assert.rejects(FileStorage.open(dir, { nodeId: 'n1', clusterId: 'other' }), (err: unknown) => {
      assert.ok(err instanceof IdentityMismatchError);
      assert.match(err.message, /belongs to node "n1" of cluster "c1"/);
      // The storage layer speaks of its own options; the CLI maps them to its flags.
      assert.match(err.message, /the nodeId and clusterId it was opened with/);
      assert.doesNotMatch(err.message, /--/);
      return true;
    });
    const foreign = join(dir, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'notes.txt'), 'hello');
    await assert.rejects(FileStorage.open(foreign, ID), (err: unknown) => {
      assert.ok(err instanceof NotDataDirError);
      assert.match(err.message, /notes\.txt/);
      assert.doesNotMatch(err.message, /--/);
      return true;
    });
  }));

test('permission denied is a StoragePermissionError naming the path', async (t) => {
  await withDir(async (dir) => {
    const io: StorageIO = {
      ...defaultIO,
      open: async (path, flags) => {
        if (path.endsWith('.log'))
          throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES' });
        return defaultIO.open(path, flags);
      },
    };
    await assert.rejects(FileStorage.open(dir, { ...ID, io }), (err: unknown) => {
      assert.ok(err instanceof StoragePermissionError);
      assert.match(err.message, /permission denied to create segment .*wal-0000000000000001\.log/);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'EACCES');
      return true;
    });
  });
  // A real EACCES: the directory belongs to someone else. As root (who ignores file modes)
  // the opener runs as `nobody`.
  await withDir(async (dir) => {
    await chmod(dir, 0o755);
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) await chmod(dir, 0o555);
    try {
      const child = fileURLToPath(new URL('./fixtures/open-child.ts', import.meta.url));
      const r = spawnSync(process.execPath, ['--import', 'tsx', child, dir], {
        encoding: 'utf8',
        ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
      });
      if (r.error || r.status !== 0) {
        t.diagnostic(`could not run the opener as another user (${r.error?.message ?? r.stderr}); skipped`);
        return;
      }
      const out = JSON.parse(r.stdout.trim()) as { ok: boolean; name?: string; message?: string };
      assert.equal(out.ok, false);
      assert.equal(out.name, 'StoragePermissionError');
      assert.match(out.message ?? '', /permission denied to .*meta\.json/);
    } finally {
      await chmod(dir, 0o700);
    }
  });
});

test('ENOSPC: the storage stops accepting writes, and nothing acknowledged is lost', () =>
  withDir(async (dir) => {
    let full = false;
    const io: StorageIO = {
      ...defaultIO,
      writev: async (fh, buffers, position) => {
        if (!full) return defaultIO.writev(fh, buffers, position);
        // The disk fills up in the middle of the write: half of it lands, then ENOSPC.
        const first = buffers[0]!;
        await defaultIO.writev(fh, [first.subarray(0, first.length >> 1)], position);
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
    };
    const s = await FileStorage.open(dir, { ...ID, io });
    for (let i = 1; i <= 10; i++)
      await s.persist({ snapshot: null, entries: [ent(i, 1)], hardState: hs(1, i) });
    full = true;
    const failed = s.persist({ ...NO_BATCH, entries: ents(11, 14, 1) });
    const queued = s.persist({ ...NO_BATCH, entries: ents(15, 15, 1) });
    await assert.rejects(failed, (err: unknown) => {
      assert.ok(err instanceof StorageFullError);
      assert.match(err.message, /no space left on the device .* stopped accepting writes/);
      return true;
    });
    // Issued in the same tick, it shared the failed group (or was queued behind it).
    await assert.rejects(
      queued,
      (err: unknown) => err instanceof StorageFullError || err instanceof StorageFailedError,
    );
    await assert.rejects(s.persist({ ...NO_BATCH, entries: ents(11, 11, 1) }), (err: unknown) => {
      assert.ok(err instanceof StorageFailedError);
      assert.ok(err.cause instanceof StorageFullError);
      return true;
    });
    assert.throws(() => s.initialState(), StorageFailedError);
    await s.close();
    full = false;
    const r = await FileStorage.open(dir, ID);
    assert.deepEqual(
      r.initialState().entries.map((e) => e.index),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
    assert.deepEqual(r.initialState().hardState, hs(1, 10));
    await r.close();
  }));

test('an fsync error fails the storage (no retry after a failed fsync)', () =>
  withDir(async (dir) => {
    let broken = false;
    const io: StorageIO = {
      ...defaultIO,
      datasync: async (fh) => {
        if (broken) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        return defaultIO.datasync(fh);
      },
    };
    const s = await FileStorage.open(dir, { ...ID, io });
    await s.persist({ ...NO_BATCH, entries: ents(1, 3, 1) });
    broken = true;
    await assert.rejects(s.persist({ ...NO_BATCH, entries: ents(4, 4, 1) }), StorageIOError);
    broken = false;
    await assert.rejects(s.persist({ ...NO_BATCH, entries: ents(4, 4, 1) }), StorageFailedError);
    await s.close();
  }));

test('snapshots: old files and covered segments are removed; leftovers of a crash are cleaned', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, { ...ID, segmentBytes: 300 });
    for (let i = 1; i <= 30; i++)
      await s.persist({ snapshot: null, entries: [ent(i, 1, 40)], hardState: hs(1, i) });
    const segsBefore = (await segmentFiles(dir)).length;
    await s.compact(snap(10, 1));
    await s.compact(snap(25, 1), 5);
    const names = await readdir(dir);
    assert.deepEqual(
      names.filter((n) => n.endsWith('.snap')),
      ['snap-0000000000000025-0000000000000001.snap'],
    );
    assert.ok((await segmentFiles(dir)).length < segsBefore, 'covered segments were removed');
    assert.ok(s.stats().segmentsRemoved > 0);
    assert.ok(names.includes(segmentName(1)) === false);
    await s.close();
    // A snapshot renamed into place whose WAL record never became durable, and a temp file.
    await writeFile(join(dir, 'snap-0000000000000099-0000000000000001.snap'), 'orphan');
    await writeFile(join(dir, 'snap-0000000000000100-0000000000000001.snap.tmp'), 'partial');
    const r = await FileStorage.open(dir, ID);
    assert.equal(r.initialState().snapshot?.meta.index, 25);
    assert.deepEqual(
      r.initialState().entries.map((e) => e.index),
      Array.from({ length: 5 }, (_, k) => 26 + k),
    );
    await r.close();
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.includes('.snap')),
      ['snap-0000000000000025-0000000000000001.snap'],
    );
  }));

test('a damaged or missing snapshot file is reported', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, ID);
    await s.persist({ snapshot: null, entries: ents(1, 5, 1), hardState: hs(1, 5) });
    await s.compact(snap(4, 1));
    await s.close();
    const path = join(dir, 'snap-0000000000000004-0000000000000001.snap');
    const good = await readFile(path);
    const bad = Buffer.from(good);
    bad[bad.length - 6]! ^= 0x10;
    await writeFile(path, bad);
    await assert.rejects(FileStorage.open(dir, ID), (err: unknown) => {
      assert.ok(err instanceof CorruptionError);
      assert.equal(err.file, path);
      assert.match(err.message, /checksum mismatch/);
      return true;
    });
    await rm(path);
    await assert.rejects(FileStorage.open(dir, ID), MissingSnapshotError);
  }));

test('an unfinished segment (crash while creating it) is removed; a damaged header is not', () =>
  withDir(async (dir) => {
    await fill(dir, 3);
    const next = join(dir, segmentName(2));
    for (const junk of [Buffer.alloc(0), encodeSegmentHeader(2).subarray(0, 10), Buffer.alloc(24)]) {
      await writeFile(next, junk);
      const s = await FileStorage.open(dir, ID);
      assert.equal(s.initialState().entries.length, 3);
      await s.close();
      assert.deepEqual(await segmentFiles(dir), [segmentName(1)]);
    }
    const header = encodeSegmentHeader(2);
    header[3]! ^= 1;
    await writeFile(next, header);
    await assert.rejects(FileStorage.open(dir, ID), CorruptionError);
  }));

test('inspect prints meta, hard state, snapshot and entries as JSON lines, read-only', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, ID);
    await s.persist({ snapshot: null, entries: ents(1, 6, 2), hardState: hs(2, 5, 'n3') });
    await s.compact(snap(3, 2));
    await s.close();
    // Tear the tail: inspect reports it and leaves the file alone.
    const path = join(dir, (await segmentFiles(dir)).at(-1)!);
    const size = (await stat(path)).size;
    await writeFile(path, Buffer.concat([await readFile(path), Buffer.from([9, 0, 0])]));
    const lines: string[] = [];
    await inspect(dir, (l) => lines.push(l));
    const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(objs[0], { kind: 'meta', format: 1, nodeId: 'n1', clusterId: 'c1' });
    assert.ok(objs.some((o) => o['kind'] === 'tornTail'));
    assert.deepEqual(
      objs.find((o) => o['kind'] === 'hardState'),
      { kind: 'hardState', term: 2, vote: 'n3', commit: 5 },
    );
    assert.deepEqual(
      objs.find((o) => o['kind'] === 'snapshot'),
      {
        kind: 'snapshot',
        index: 3,
        term: 2,
        conf: { voters: ['n1', 'n2', 'n3'], learners: [] },
        bytes: 9,
      },
    );
    const entries = objs.filter((o) => o['kind'] === 'entry');
    assert.deepEqual(
      entries.map((o) => o['index']),
      [4, 5, 6],
    );
    assert.deepEqual(entries[0], {
      kind: 'entry',
      index: 4,
      term: 2,
      type: 'normal',
      data: Buffer.from(ent(4, 2).data).toString('base64'),
    });
    assert.equal((await stat(path)).size, size + 3, 'inspect never writes');
    const raw: string[] = [];
    await inspect(dir, (l) => raw.push(l), { records: true });
    assert.ok(raw.some((l) => l.includes('"type":"truncate"') || l.includes('"type":"snapshot"')));
  }));

test('a segment that opens with an old snapshot record replays after the segments before it are removed', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, ID);
    await s.persist({ snapshot: null, entries: ents(1, 20, 1), hardState: hs(1, 20) });
    await s.compact(snap(10, 1)); // segment 2 opens with this snapshot record; 11..20 stay in segment 1
    await s.persist({ snapshot: null, entries: ents(21, 40, 1), hardState: hs(1, 40) });
    await s.compact(snap(30, 1), 5); // removes segment 1 (entries <= 25), keeps segment 2 (up to 40)
    const expected = describe(s.initialState());
    await s.close();
    assert.ok(!(await segmentFiles(dir)).includes(segmentName(1)));
    assert.ok((await segmentFiles(dir)).includes(segmentName(2)));
    const r = await FileStorage.open(dir, ID);
    assert.deepEqual(describe(r.initialState()), expected);
    await r.close();
  }));

test('a crash while closing a full segment (torn end-of-segment record, empty successor) recovers', () =>
  withDir(async (dir) => {
    await fill(dir, 12, 400);
    const files = await segmentFiles(dir);
    const last = join(dir, files.at(-1)!);
    const prev = join(dir, files.at(-2)!);
    // The newest segment never got a record; the one before ends with its Continue record.
    await writeFile(last, (await readFile(last)).subarray(0, 24));
    const ok = await FileStorage.open(dir, ID);
    const expected = describe(ok.initialState());
    await ok.close();
    const full = await readFile(prev);
    const continueBytes = 8 + 1 + 8;
    const header = (await readFile(last)).subarray(0, 24);
    for (const successor of ['header only', 'header and preallocated zeros']) {
      for (let cut = full.length - continueBytes; cut < full.length; cut++) {
        await writeFile(
          last,
          successor === 'header only' ? header : Buffer.concat([header, Buffer.alloc(8192)]),
        );
        await writeFile(prev, full.subarray(0, cut));
        const r = await FileStorage.open(dir, ID);
        assert.deepEqual(describe(r.initialState()), expected, `cut at ${cut}, successor: ${successor}`);
        await r.close();
      }
    }
    // With a record in the newest segment, a torn record before it is corruption.
    await writeFile(prev, full.subarray(0, full.length - 3));
    const s = await FileStorage.open(dir, ID);
    await s.persist({ ...NO_BATCH, hardState: hs(1, 1) });
    await s.close();
    await writeFile(prev, full.subarray(0, full.length - 3));
    await assert.rejects(FileStorage.open(dir, ID), CorruptionError);
  }));

test('a data directory is locked while open; a stale lock of a dead process is taken over', () =>
  withDir(async (dir) => {
    const a = await FileStorage.open(dir, ID);
    await assert.rejects(FileStorage.open(dir, ID), (err: unknown) => {
      assert.ok(err instanceof StorageLockedError);
      assert.equal(err.holder.pid, process.pid);
      assert.match(err.message, /is in use by process \d+/);
      return true;
    });
    await a.close();
    // A lock left behind by a process that no longer exists.
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
    await writeFile(join(dir, 'LOCK'), JSON.stringify({ pid: dead, host: hostname() }));
    const b = await FileStorage.open(dir, ID);
    await b.close();
    // A lock from another host is never taken over.
    await writeFile(join(dir, 'LOCK'), JSON.stringify({ pid: 1, host: 'elsewhere' }));
    await assert.rejects(FileStorage.open(dir, ID), StorageLockedError);
    await rm(join(dir, 'LOCK'));
    await (await FileStorage.open(dir, ID)).close();
  }));

test('the last record cut at every byte offset: the storage opens and drops just that record', () =>
  withDir(async (dir) => {
    const s = await FileStorage.open(dir, { ...ID, preallocate: false });
    for (let i = 1; i <= 4; i++) await s.persist({ ...NO_BATCH, entries: [ent(i, 1, 100)] });
    const expected = describe(s.initialState());
    const path = join(dir, segmentName(1));
    const before = (await stat(path)).size;
    await s.persist({ ...NO_BATCH, entries: [ent(5, 1, 100)] }); // one record: 8 + 1 + 17 + 100 bytes
    await s.close();
    const full = await readFile(path);
    assert.equal(full.length - before, 126);
    for (let cut = before + 1; cut < full.length; cut++) {
      await writeFile(path, full.subarray(0, cut));
      const r = await FileStorage.open(dir, ID);
      assert.deepEqual(describe(r.initialState()), expected, `cut at ${cut}`);
      assert.equal(r.stats().recoveredTornTail?.offset, before);
      await r.close();
    }
  }));

test('a preallocated segment: appends go inside the file, a clean reopen is not a torn tail, and a torn record followed by unwritten space is', () =>
  withDir(async (dir) => {
    const opts = { ...ID, segmentBytes: 64 * 1024 };
    const s = await FileStorage.open(dir, opts);
    const path = join(dir, segmentName(1));
    assert.equal((await stat(path)).size, 64 * 1024, 'the new segment is extended to segmentBytes');
    for (let i = 1; i <= 3; i++) await s.persist({ ...NO_BATCH, entries: [ent(i, 1, 100)] });
    await s.close();
    assert.equal((await stat(path)).size, 64 * 1024, 'appends wrote inside the file');
    // Reopen: the zero tail is unwritten space, not a torn write, and appends continue after the records.
    const r = await FileStorage.open(dir, opts);
    assert.equal(r.stats().recoveredTornTail, null);
    assert.deepEqual(
      r.initialState().entries.map((e) => e.index),
      [1, 2, 3],
    );
    await r.persist({ ...NO_BATCH, entries: [ent(4, 1, 100)] });
    await r.close();
    const full = await readFile(path);
    assert.equal(full.length, 64 * 1024);
    const again = await FileStorage.open(dir, opts);
    assert.deepEqual(
      again.initialState().entries.map((e) => e.index),
      [1, 2, 3, 4],
    );
    await again.close();
    // Tear the last record: its first half written, the rest still zeros, as a crash mid-write leaves it.
    const dataEnd = full.length - [...full].reverse().findIndex((b) => b !== 0);
    const recordStart = dataEnd - 126;
    const torn = Buffer.from(full);
    torn.fill(0, recordStart + 60);
    await writeFile(path, torn);
    const t = await FileStorage.open(dir, opts);
    assert.equal(t.stats().recoveredTornTail?.offset, recordStart);
    assert.deepEqual(
      t.initialState().entries.map((e) => e.index),
      [1, 2, 3],
    );
    await t.persist({ ...NO_BATCH, entries: [ent(4, 2, 100)] });
    await t.close();
    const after = await FileStorage.open(dir, opts);
    assert.deepEqual(
      after.initialState().entries.map((e) => [e.index, e.term]),
      [
        [1, 1],
        [2, 1],
        [3, 1],
        [4, 2],
      ],
    );
    await after.close();
  }));

test('a full preallocated segment gives its unused space back when the next one starts', () =>
  withDir(async (dir) => {
    const opts = { ...ID, segmentBytes: 4096 };
    const s = await FileStorage.open(dir, opts);
    for (let i = 1; i <= 60; i++) await s.persist({ ...NO_BATCH, entries: [ent(i, 1, 200)] });
    await s.close();
    const files = await segmentFiles(dir);
    assert.ok(files.length >= 3, `expected several segments, got ${files.length}`);
    for (const f of files.slice(0, -1)) {
      const buf = await readFile(join(dir, f));
      const trailingZeros = buf.length - 1 - buf.findLastIndex((b) => b !== 0);
      assert.ok(
        trailingZeros < 16,
        `${f} ends with its continue record, not ${trailingZeros} preallocated zeros`,
      );
    }
    assert.equal((await stat(join(dir, files[files.length - 1]!))).size, 4096);
    const r = await FileStorage.open(dir, opts);
    assert.equal(r.initialState().entries.length, 60);
    assert.equal(r.stats().recoveredTornTail, null);
    await r.close();
  }));

test('after an unfinished newest segment is removed, appends continue at the end of the one before it', () =>
  withDir(async (dir) => {
    await fill(dir, 5, 64 * 1024);
    const files = await segmentFiles(dir);
    const next = segmentName(files.length + 1);
    // A crash while creating the next segment: the file exists, its header never became durable.
    for (const leftover of [Buffer.alloc(0), Buffer.alloc(64 * 1024)]) {
      await writeFile(join(dir, next), leftover);
      const r = await FileStorage.open(dir, { ...ID, segmentBytes: 64 * 1024 });
      const n = r.initialState().entries.length;
      await r.persist({ ...NO_BATCH, entries: [ent(n + 1, 1, 40)] });
      await r.close();
      const again = await FileStorage.open(dir, { ...ID, segmentBytes: 64 * 1024 });
      assert.deepEqual(
        again.initialState().entries.map((e) => e.index),
        Array.from({ length: n + 1 }, (_, i) => i + 1),
        `leftover of ${leftover.length} bytes`,
      );
      await again.close();
    }
  }));

test('a write torn out of order in preallocated space (a zeroed sector before intact records) is a torn tail', () =>
  withDir(async (dir) => {
    const opts = { ...ID, segmentBytes: 64 * 1024 };
    const s = await FileStorage.open(dir, opts);
    await s.persist({ ...NO_BATCH, entries: [ent(1, 1, 40)] });
    const expected = describe(s.initialState());
    // One group of several records spanning more than two sectors.
    await s.persist({
      ...NO_BATCH,
      entries: ents(2, 12, 1).map((e) => ({ ...e, data: Buffer.alloc(200, 7) })),
    });
    await s.close();
    const path = join(dir, segmentName(1));
    const full = await readFile(path);
    const before = 24 + 8 + 1 + 17 + 40;
    // The first sector the second group touches stayed zeros; later ones reached the disk.
    const torn = Buffer.from(full);
    const firstSector = Math.ceil(before / 512) * 512;
    torn.fill(0, before, firstSector + 512);
    await writeFile(path, torn);
    const r = await FileStorage.open(dir, opts);
    assert.deepEqual(describe(r.initialState()), expected);
    assert.equal(r.stats().recoveredTornTail?.offset, before);
    await r.close();
  }));
