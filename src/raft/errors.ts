/**
 * Typed errors of the Raft core. Every error the core throws is a {@link RaftError} (a test
 * reads every `throw` under src/raft to check it), with a `name` for logs and, where another
 * error caused it, `cause`. The core throws only for programming errors (a bad
 * configuration, a broken Ready/advance contract, a log that would lose a committed entry):
 * expected failures such as a rejected proposal or a failed read are results, never throws.
 */

export abstract class RaftError extends Error {
  abstract override readonly name: string;
}

/** A RaftConfig (or bootstrap voter list) that breaks a rule; `field` names the setting. */
export class RaftConfigError extends RaftError {
  override readonly name = 'RaftConfigError';
  constructor(
    readonly field: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The driver broke the Ready/advance contract or asked for the impossible (a programming error, not a runtime fault). */
export class RaftUsageError extends RaftError {
  override readonly name = 'RaftUsageError';
}
