/**
 * Errors of the command line, each with the exit code it ends the process with:
 * 2 for a usage mistake (unknown or bad flag, missing argument), 1 for a failure
 * (a server-side error, an unreachable cluster, a data directory that cannot be used).
 */
import { IdentityMismatchError, NotDataDirError, type StorageError } from '../storage/errors.ts';

export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
  /** The command whose usage to point at ('' for the top level). */
  readonly command: string;
  constructor(message: string, command = '') {
    super(message);
    this.command = command;
  }
}

export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode = 1;
}

/**
 * A storage error as `raftkv serve` reports it. The storage layer speaks of its own options
 * (nodeId, clusterId, the directory it was opened with); where the user chose those with a
 * flag, the message names the flag instead.
 */
export function serveStorageError(e: StorageError): CliError {
  const what = `${e.name} [${e.code}]: `;
  if (e instanceof IdentityMismatchError) {
    return new CliError(
      `${what}data directory ${e.dir} belongs to node "${e.found.nodeId}" of cluster "${e.found.clusterId}", ` +
        `not to node "${e.expected.nodeId}" of cluster "${e.expected.clusterId}". ` +
        'Check --id, --cluster-id and --data-dir; to reuse the directory for another node, remove it first.',
    );
  }
  if (e instanceof NotDataDirError) {
    return new CliError(
      `${what}${e.dir} is not a usable raftkv data directory: ${e.reason}. ` +
        'Point --data-dir at an empty or raftkv-created directory.',
    );
  }
  return new CliError(`${what}${e.message}`);
}
