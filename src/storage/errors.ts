/**
 * Typed errors of the storage layer. Every class has a stable `code` (for programs), a
 * `name` (for logs) and, where an underlying error caused it, `cause`. Messages are
 * written for the operator: what happened, where (file and byte offset), and what to do.
 * `ioError` and `withFreeSpace` build them from what the operating system reported.
 */
import { statfs } from 'node:fs/promises';

export const StorageErrorCode = {
  Corrupt: 'ERR_STORAGE_CORRUPT',
  MissingSegment: 'ERR_STORAGE_MISSING_SEGMENT',
  MissingSnapshot: 'ERR_STORAGE_MISSING_SNAPSHOT',
  LogOrder: 'ERR_STORAGE_LOG_ORDER',
  Identity: 'ERR_STORAGE_IDENTITY',
  NotDataDir: 'ERR_STORAGE_NOT_DATA_DIR',
  Locked: 'ERR_STORAGE_LOCKED',
  Permission: 'ERR_STORAGE_PERMISSION',
  Full: 'ERR_STORAGE_FULL',
  IO: 'ERR_STORAGE_IO',
  Failed: 'ERR_STORAGE_FAILED',
  Closed: 'ERR_STORAGE_CLOSED',
  Usage: 'ERR_STORAGE_USAGE',
  SnapshotOutOfDate: 'ERR_STORAGE_SNAPSHOT_OUT_OF_DATE',
} as const;
export type StorageErrorCode = (typeof StorageErrorCode)[keyof typeof StorageErrorCode];

/** What an operator can do about a data directory the node refuses to start from. */
export const RESTORE_HINT =
  'The log cannot be trusted. Keep the directory for analysis (move it aside), then restore this node ' +
  'from a healthy peer: start it with an empty data directory and let the leader send it a snapshot ' +
  '(or remove and re-add it as a member). Do not edit or delete WAL files by hand.';

export abstract class StorageError extends Error {
  abstract readonly code: StorageErrorCode;
}

/** A checksum mismatch or undecodable bytes before the tail of the log (not a torn write). */
export class CorruptionError extends StorageError {
  override readonly name = 'CorruptionError';
  readonly code = StorageErrorCode.Corrupt;
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`corrupt data in ${file} at byte offset ${offset}: ${reason}. ${RESTORE_HINT}`);
  }
}

/** A WAL segment that must exist does not (a gap in the segment sequence or in the log). */
export class MissingSegmentError extends StorageError {
  override readonly name = 'MissingSegmentError';
  readonly code = StorageErrorCode.MissingSegment;
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`missing WAL data: ${reason} (expected ${file}). ${RESTORE_HINT}`);
  }
}

/** The WAL references a snapshot file that is absent. */
export class MissingSnapshotError extends StorageError {
  override readonly name = 'MissingSnapshotError';
  readonly code = StorageErrorCode.MissingSnapshot;
  constructor(
    readonly file: string,
    options?: ErrorOptions,
  ) {
    super(
      `the WAL records a durable snapshot but ${file} is missing or unreadable. ${RESTORE_HINT}`,
      options,
    );
  }
}

/** Log records whose indices do not follow each other. */
export class LogOrderError extends StorageError {
  override readonly name = 'LogOrderError';
  readonly code = StorageErrorCode.LogOrder;
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`log indices out of order in ${file} at byte offset ${offset}: ${reason}. ${RESTORE_HINT}`);
  }
}

/** The data directory was created for another node or cluster. */
export class IdentityMismatchError extends StorageError {
  override readonly name = 'IdentityMismatchError';
  readonly code = StorageErrorCode.Identity;
  constructor(
    readonly dir: string,
    readonly expected: { readonly nodeId: string; readonly clusterId: string },
    readonly found: { readonly nodeId: string; readonly clusterId: string },
  ) {
    super(
      `data directory ${dir} belongs to node "${found.nodeId}" of cluster "${found.clusterId}", ` +
        `not to node "${expected.nodeId}" of cluster "${expected.clusterId}" (the nodeId and clusterId ` +
        'it was opened with). Give each node its own directory; to reuse this one for another node, ' +
        'remove it first.',
    );
  }
}

/** The directory exists, holds files, but is not a raftkv data directory (or its metadata is unreadable). */
export class NotDataDirError extends StorageError {
  override readonly name = 'NotDataDirError';
  readonly code = StorageErrorCode.NotDataDir;
  constructor(
    readonly dir: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(
      `${dir} is not a usable raftkv data directory: ${reason}. ` +
        'Open an empty directory, or one raftkv created.',
      options,
    );
  }
}

/** Another live process (or another FileStorage in this one) has the data directory open. */
export class StorageLockedError extends StorageError {
  override readonly name = 'StorageLockedError';
  readonly code = StorageErrorCode.Locked;
  constructor(
    readonly dir: string,
    readonly holder: { readonly pid: number; readonly host: string },
    /** Why the holder counts as alive, and the lock file naming it. */
    readonly detail: { readonly why?: string; readonly file?: string } = {},
  ) {
    const why = [detail.why, `see ${detail.file ?? `${dir}/LOCK.*`}`].filter(Boolean).join('; ');
    super(
      `data directory ${dir} is in use by process ${holder.pid} on ${holder.host} (${why}). ` +
        'Two processes must never write one log: stop the other one. If it is really gone ' +
        `(for instance the directory was copied from another host), remove the lock files ${dir}/LOCK*.`,
    );
  }
}

export class StoragePermissionError extends StorageError {
  override readonly name = 'StoragePermissionError';
  readonly code = StorageErrorCode.Permission;
  constructor(
    readonly path: string,
    readonly operation: string,
    options?: ErrorOptions,
  ) {
    super(
      `permission denied to ${operation} ${path}. ` +
        'Make the data directory and its files readable and writable by the user running raftkv ' +
        '(check owner, mode and read-only mounts).',
      options,
    );
  }
}

/** The disk (or quota) is full. The storage has stopped accepting writes; nothing acknowledged is lost. */
export class StorageFullError extends StorageError {
  override readonly name = 'StorageFullError';
  readonly code = StorageErrorCode.Full;
  /** The data directory, when known. */
  readonly dir: string | undefined;
  /** Bytes the failed write needed, when known. */
  readonly needed: number | undefined;
  /** Bytes free for this user on the file system just after the failure, when known. */
  readonly free: number | undefined;
  constructor(
    readonly path: string,
    options?: ErrorOptions,
    space: { readonly dir?: string; readonly needed?: number; readonly free?: number } = {},
  ) {
    const where = space.dir !== undefined ? `data directory ${space.dir} (writing ${path})` : path;
    const need =
      space.needed !== undefined
        ? ` The write needed ${space.needed} bytes${space.free !== undefined ? `; ${space.free} bytes are free` : ''}.`
        : '';
    super(
      `no space left on the device holding ${where}: the node stopped accepting writes.${need} ` +
        'Every write acknowledged before this is durable. Free disk space (at least ' +
        `${space.needed !== undefined ? `${space.needed} bytes, better much more: the log grows until the next snapshot` : 'a few MiB'}), ` +
        'then restart the node: it catches up from the others.',
      options,
    );
    this.dir = space.dir;
    this.needed = space.needed;
    this.free = space.free;
  }
}

export class StorageIOError extends StorageError {
  override readonly name = 'StorageIOError';
  readonly code = StorageErrorCode.IO;
  constructor(
    readonly path: string,
    readonly operation: string,
    options?: ErrorOptions,
  ) {
    const detail = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`I/O error during ${operation} of ${path}${detail}`, options);
  }
}

/** A write or fsync failed earlier; the storage accepts no more writes until it is reopened. */
export class StorageFailedError extends StorageError {
  override readonly name = 'StorageFailedError';
  readonly code = StorageErrorCode.Failed;
  constructor(options: ErrorOptions) {
    const why = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super(
      `storage is in a failed state and accepts no writes (earlier failure: ${why}). ` +
        'Every write acknowledged before the failure is durable; fix the cause and restart the node.',
      options,
    );
  }
}

export class StorageClosedError extends StorageError {
  override readonly name = 'StorageClosedError';
  readonly code = StorageErrorCode.Closed;
  constructor() {
    super('storage is closed');
  }
}

/** The caller broke the storage contract (a bug in the caller, not a disk problem). */
export class StorageUsageError extends StorageError {
  override readonly name = 'StorageUsageError';
  readonly code = StorageErrorCode.Usage;
}

/** A snapshot older than the one already stored. */
export class SnapshotOutOfDateError extends StorageError {
  override readonly name = 'SnapshotOutOfDateError';
  readonly code = StorageErrorCode.SnapshotOutOfDate;
  constructor(
    readonly index: number,
    readonly current: number,
  ) {
    super(`snapshot at index ${index} is older than the stored snapshot at index ${current}`);
  }
}

/** Maps a Node.js fs error to a storage error that names the path and the operation. */
export function ioError(err: unknown, path: string, operation: string): StorageError {
  if (err instanceof StorageError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new StoragePermissionError(path, operation, { cause: err });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StorageFullError(path, { cause: err });
  return new StorageIOError(path, operation, { cause: err });
}

/**
 * A StorageFullError naming how many bytes the failed write needed and how many the file system has free
 * (statfs); any other error unchanged.
 */
export async function withFreeSpace(err: StorageError, dir: string, needed: number): Promise<StorageError> {
  if (!(err instanceof StorageFullError) || err.needed !== undefined) return err;
  let free: number | undefined;
  try {
    const st = await statfs(dir);
    free = st.bavail * st.bsize;
  } catch {
    free = undefined;
  }
  return new StorageFullError(
    err.path,
    { cause: err.cause },
    { dir, needed, ...(free !== undefined ? { free } : {}) },
  );
}
