// A full or nearly full disk under the file storage. Preallocation is an optimization that must not turn
// "almost full" (or a file size limit) into "cannot start": when a new segment cannot be extended, the
// storage warns and goes on without preallocation. A real full file system (a small tmpfs mounted here;
// needs root, as in CI) stops the storage with an error naming the data directory, the bytes the write
// needed and the bytes free; nothing acknowledged is lost, and once space is freed it opens again.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { segmentName } from '../../src/storage/codec.ts';
import { StorageFailedError, StorageFullError } from '../../src/storage/errors.ts';
import { defaultIO, FileStorage, type StorageIO } from '../../src/storage/file-storage.ts';
import { ent, hs, ID, withDir } from './helpers.ts';

const CHILD = fileURLToPath(new URL('./fixtures/prealloc-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('a file size limit below the segment size (RLIMIT_FSIZE): the storage opens without preallocation, warns, and keeps every entry', (t) =>
  withDir(async (dir) => {
    if (spawnSync('prlimit', ['--version']).status !== 0)
      return t.skip('prlimit (util-linux) is not installed');
    // 1 MiB limit, 4 MiB segments: extending the first segment fails with EFBIG.
    const r = spawnSync(
      'prlimit',
      ['--fsize=1048576', process.execPath, '--import', 'tsx', CHILD, join(dir, 'data'), '200'],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as {
      ok: boolean;
      message?: string;
      warnings: string[];
      failures?: number;
      entries?: number;
    };
    assert.equal(out.ok, true, out.message);
    assert.equal(out.entries, 200);
    assert.equal(out.failures, 1);
    assert.equal(out.warnings.length, 1, out.warnings.join('\n'));
    assert.match(
      out.warnings[0]!,
      /could not preallocate 4194304 bytes for a new WAL segment in .*data \(.*EFBIG.*\); going on without preallocation/,
    );
    // The segment holds just what was written: no preallocated tail.
    const size = (await stat(join(dir, 'data', segmentName(1)))).size;
    assert.ok(size < 1024 * 1024 && size > 200 * 1000, `segment is ${size} bytes`);
  }));

test('preallocating a later segment fails (ENOSPC): that segment and the next ones grow by appends, with one warning', () =>
  withDir(async (dir) => {
    const sizes: number[] = [];
    const io: StorageIO = {
      ...defaultIO,
      truncate: async (fh, size) => {
        sizes.push(size);
        if (sizes.length >= 2)
          throw Object.assign(new Error('ENOSPC: no space left on device, ftruncate'), { code: 'ENOSPC' });
        await fh.truncate(size);
      },
    };
    const warnings: string[] = [];
    const segmentBytes = 64 * 1024;
    const s = await FileStorage.open(dir, { ...ID, io, segmentBytes, onWarning: (m) => warnings.push(m) });
    for (let i = 1; i <= 60; i++)
      await s.persist({ snapshot: null, entries: [ent(i, 1, 4000)], hardState: hs(1, i) });
    assert.deepEqual(sizes, [segmentBytes, segmentBytes], 'tried once more, then no more');
    assert.equal(s.stats().preallocationFailures, 1);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /ENOSPC/);
    await s.close();
    const segs = (await readdir(dir)).filter((n) => n.startsWith('wal-')).sort();
    assert.ok(segs.length >= 3, segs.join());
    for (const name of segs.slice(1, -1))
      assert.ok((await stat(join(dir, name))).size <= segmentBytes + 4100);
    const again = await FileStorage.open(dir, { ...ID, segmentBytes });
    assert.equal(again.initialState().entries.length, 60);
    await again.close();
  }));

test('a real full file system (tmpfs): starts with less free space than one segment, then stops with the directory, bytes needed and free; all acknowledged entries are back once space is freed', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs (CI runs as root)');
  await withDir(async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) return t.skip(`cannot mount a tmpfs here: ${m.stderr.trim()}`);
    try {
      const data = join(mnt, 'n1');
      // Default 64 MiB segments on 512 KiB: preallocation is sparse and reserves nothing.
      const s = await FileStorage.open(data, ID);
      let acked = 0;
      let failure: unknown = null;
      for (let i = 1; i <= 400 && failure === null; i++) {
        try {
          await s.persist({ snapshot: null, entries: [ent(i, 1, 4000)], hardState: hs(1, i) });
          acked = i;
        } catch (err) {
          failure = err;
        }
      }
      assert.ok(acked > 50, `${acked} entries fit`);
      assert.ok(failure instanceof StorageFullError, String(failure));
      assert.equal(failure.dir, data);
      assert.ok((failure.needed ?? 0) >= 4000, `needed ${failure.needed}`);
      assert.ok(failure.free !== undefined && failure.free < 8192, `free ${failure.free}`);
      assert.match(
        failure.message,
        new RegExp(
          `no space left on the device holding data directory ${data} \\(writing .*wal-.*\\).* The write needed \\d+ bytes; \\d+ bytes are free`,
        ),
      );
      await assert.rejects(
        s.persist({ snapshot: null, entries: [ent(acked + 1, 1)], hardState: null }),
        StorageFailedError,
      );
      await s.close();
      // Space freed (the tmpfs grown): everything acknowledged is there, and writes go on.
      assert.equal(spawnSync('mount', ['-o', 'remount,size=8m', mnt]).status, 0);
      const again = await FileStorage.open(data, ID);
      assert.equal(again.initialState().entries.length, acked);
      await again.persist({ snapshot: null, entries: [ent(acked + 1, 1)], hardState: hs(1, acked + 1) });
      await again.close();
    } finally {
      spawnSync('umount', ['-l', mnt]);
    }
  });
});
