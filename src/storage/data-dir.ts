/**
 * The data directory: one per node (default `state/<node-id>/`), holding its metadata file
 * (META_FILE: format, node id, cluster id), the lock (dir-lock.ts), the WAL segments and the
 * snapshot files (layout: codec.ts and docs/storage.md). FileStorage opens it with
 * `DataDir.open`, reads it back (recovery.ts), checks whose it is (`checkIdentity`) and
 * releases it on close.
 *
 * Invariants:
 * - The metadata file is the first thing written in a directory, atomically (a temp file,
 *   flushed, renamed, the directory fsynced), and never rewritten: a directory holding files
 *   but no metadata (WAL segments without metadata included) is not adopted but refused
 *   (NotDataDirError); only `lost+found` and a leftover temp metadata file are ignored.
 * - A directory serves only the node and cluster its metadata names (IdentityMismatchError).
 * - The lock is taken after the metadata exists and before anything is read for recovery, and
 *   is held until `release`: at most one FileStorage of one live process uses a directory.
 * - `syncDir` makes creations, renames and removals in the directory durable; nothing that
 *   depends on them (a WAL record naming a snapshot file) is written before it returns.
 */
import { mkdir, open, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { META_FILE } from './codec.ts';
import { DirLock } from './dir-lock.ts';
import { IdentityMismatchError, ioError, NotDataDirError } from './errors.ts';

/** Whose directory it is: FileStorageOptions' `nodeId` and `clusterId`. */
export interface DataDirIdentity {
  readonly nodeId: string;
  readonly clusterId: string;
}

/** The metadata file's contents. */
export interface DataDirMeta {
  readonly format: number;
  readonly nodeId: string;
  readonly clusterId: string;
}

/** An open data directory: it has its metadata, and this process holds its lock until `release`. */
export class DataDir {
  private constructor(
    readonly path: string,
    private readonly lock: DirLock,
  ) {}

  /**
   * Opens (creating if needed) the data directory `path` for `identity`: creates the directory
   * and its metadata file when absent, refuses a directory of other files, then takes the lock.
   * The identity is checked by the caller with `checkIdentity`, on the metadata it reads under
   * the lock.
   */
  static async open(path: string, identity: DataDirIdentity): Promise<DataDir> {
    await initDir(path, identity.nodeId, identity.clusterId);
    return new DataDir(path, await DirLock.acquire(path));
  }

  release(): Promise<void> {
    return this.lock.release();
  }
}

/** Throws IdentityMismatchError unless `meta` names the node and cluster of `identity`. */
export function checkIdentity(dir: string, identity: DataDirIdentity, meta: DataDirMeta): void {
  if (meta.nodeId !== identity.nodeId || meta.clusterId !== identity.clusterId) {
    throw new IdentityMismatchError(dir, identity, meta);
  }
}

/** The metadata of `dir`, or null when it has none; NotDataDirError when it is not raftkv's. */
export async function readMeta(dir: string): Promise<DataDirMeta | null> {
  const path = join(dir, META_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(err, path, 'read');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new NotDataDirError(dir, `${META_FILE} is not valid JSON`, { cause: err });
  }
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const { format, nodeId, clusterId } = o;
  if (typeof format !== 'number' || typeof nodeId !== 'string' || typeof clusterId !== 'string') {
    throw new NotDataDirError(dir, `${META_FILE} lacks format/nodeId/clusterId`);
  }
  if (format !== 1) throw new NotDataDirError(dir, `${META_FILE} has unsupported format ${format}`);
  return { format, nodeId, clusterId };
}

/** fsyncs a directory so that creations, renames and removals in it are durable. */
export async function syncDir(dir: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    throw ioError(err, dir, 'fsync directory');
  } finally {
    await fh?.close();
  }
}

/** Creates the directory and its metadata file if needed; checks an existing directory. */
async function initDir(dir: string, nodeId: string, clusterId: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw ioError(err, dir, 'create directory');
  }
  const meta = await readMeta(dir);
  if (meta) return;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw ioError(err, dir, 'list');
  }
  const foreign = names.filter((n) => n !== 'lost+found' && n !== `${META_FILE}.tmp`);
  if (foreign.length > 0) {
    throw new NotDataDirError(
      dir,
      `it holds ${foreign.length} file(s) (e.g. ${foreign[0]}) but no ${META_FILE}` +
        (foreign.some((n) => n.startsWith('wal-')) ? ' (WAL segments without metadata)' : ''),
    );
  }
  const path = join(dir, META_FILE);
  const tmp = `${path}.tmp`;
  try {
    await writeFile(tmp, `${JSON.stringify({ format: 1, nodeId, clusterId })}\n`, { flush: true });
    await rename(tmp, path);
  } catch (err) {
    throw ioError(err, path, 'create');
  }
  await syncDir(dir);
}
