// persist() and compact() resolve only once every byte written for them is durable: written
// through a handle opened with O_DSYNC, or followed by a completed fdatasync/fsync of its file.
// The SIGKILL crash test cannot see a missing sync (the page cache outlives the process); this
// one watches the file handles instead. Not covered here: directory fsyncs after create/rename.
import { strict as assert } from 'node:assert';
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { test } from 'node:test';
import { defaultIO, FileStorage, type StorageIO } from '../../src/storage/file-storage.ts';
import { ID, withDir } from './helpers.ts';
import { run, Workload } from './workload.ts';

/** Per file handle: writes completed, and how many of them the last completed sync began after. */
interface Track {
  readonly path: string;
  readonly dsync: boolean;
  writes: number;
  synced: number;
}

/** A StorageIO that tracks which handles hold writes no sync has covered yet. */
function trackingIO(base: StorageIO = defaultIO): { io: StorageIO; undurable: () => string[] } {
  const tracks = new Map<FileHandle, Track>();
  const wrote = (fh: FileHandle): void => {
    const t = tracks.get(fh);
    if (t) t.writes++;
  };
  const syncing = (fh: FileHandle, sync: () => Promise<void>) => async (): Promise<void> => {
    const t = tracks.get(fh);
    const upTo = t?.writes ?? 0;
    await sync();
    if (t) t.synced = Math.max(t.synced, upTo);
  };
  const io: StorageIO = {
    ...base,
    async open(path, flags) {
      const fh = await base.open(path, flags);
      const dsync = typeof flags === 'number' && (flags & fsConstants.O_DSYNC) !== 0;
      tracks.set(fh, { path, dsync, writes: 0, synced: 0 });
      // The storage also writes and syncs through the handle itself (segment headers, snapshot files).
      const write = fh.write.bind(fh) as (...a: unknown[]) => Promise<unknown>;
      const writev = fh.writev.bind(fh);
      Object.assign(fh, {
        write: async (...a: unknown[]) => {
          const r = await write(...a);
          wrote(fh);
          return r;
        },
        writev: async (...a: Parameters<FileHandle['writev']>) => {
          const r = await writev(...a);
          wrote(fh);
          return r;
        },
        sync: syncing(fh, fh.sync.bind(fh)),
        datasync: syncing(fh, fh.datasync.bind(fh)),
      });
      return fh;
    },
    async writev(fh, buffers, position) {
      const n = await base.writev(fh, buffers, position);
      wrote(fh);
      return n;
    },
    async datasync(fh) {
      await syncing(fh, () => base.datasync(fh))();
    },
  };
  if (base.writevSync) {
    const writevSync = base.writevSync;
    io.writevSync = (fh, buffers, position) => {
      const n = writevSync(fh, buffers, position);
      wrote(fh);
      return n;
    };
  }
  const undurable = (): string[] =>
    [...tracks.values()].filter((t) => !t.dsync && t.writes > t.synced).map((t) => t.path);
  return { io, undurable };
}

for (const sync of ['fdatasync', 'dsync', 'dsync-inline'] as const) {
  test(`${sync}: every operation resolves only once what it wrote is durable (snapshots and segment rollovers included)`, () =>
    withDir(async (dir) => {
      const { io, undurable } = trackingIO();
      const s = await FileStorage.open(dir, {
        ...ID,
        io,
        segmentBytes: 4 * 1024,
        sync: sync === 'fdatasync' ? 'fdatasync' : 'dsync',
      });
      if (sync === 'dsync-inline') s.setInlineWrites(true);
      const workload = new Workload(s.initialState(), 42, { entrySize: 64, maxBatch: 8 });
      const problems: string[] = [];
      const window: Promise<void>[] = [];
      for (let n = 1; n <= 200; n++) {
        window.push(
          run(s, workload.next()).then(() => {
            const open = undurable();
            if (open.length > 0) problems.push(`operation ${n} resolved with ${open.join(', ')} not synced`);
          }),
        );
        if (window.length >= 8) await window.shift();
      }
      await Promise.all(window);
      const stats = s.stats();
      await s.close();
      assert.deepEqual(problems.slice(0, 3), []);
      assert.ok(
        stats.segmentsCreated > 1 && stats.snapshotsWritten > 0,
        'the workload rolled segments and wrote snapshots',
      );
      if (sync === 'dsync-inline') assert.ok(stats.inlineGroups > 0, 'some groups were written inline');
    }));
}
