/**
 * Errors of the command line, each with the exit code it ends the process with:
 * 2 for a usage mistake (unknown or bad flag, missing argument), 1 for a failure
 * (a server-side error, an unreachable cluster, a data directory that cannot be used).
 */
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
