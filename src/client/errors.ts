/**
 * Typed errors of the client library. Every failure a caller sees is a {@link RaftKvError}
 * with the gRPC status name as `code` (`'UNAVAILABLE'`, `'INVALID_ARGUMENT'`...), the
 * numeric `grpcCode`, the server's message, and whether retrying may help (`retryable`).
 */

/** gRPC status names, by number. */
export const StatusName = {
  0: 'OK',
  1: 'CANCELLED',
  2: 'UNKNOWN',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  10: 'ABORTED',
  11: 'OUT_OF_RANGE',
  12: 'UNIMPLEMENTED',
  13: 'INTERNAL',
  14: 'UNAVAILABLE',
  15: 'DATA_LOSS',
  16: 'UNAUTHENTICATED',
} as const;
export type StatusCodeName = (typeof StatusName)[keyof typeof StatusName];

export function statusNameOf(code: number): StatusCodeName {
  return (StatusName as Record<number, StatusCodeName>)[code] ?? 'UNKNOWN';
}

/** A call failed: the server answered with an error status, or no node could be reached. */
export class RaftKvError extends Error {
  override readonly name: string = 'RaftKvError';
  readonly code: StatusCodeName;
  readonly grpcCode: number;
  /** The endpoint that gave this answer ('' when none did). */
  readonly endpoint: string;
  constructor(grpcCode: number, message: string, endpoint = '', options?: { cause?: unknown }) {
    super(message, options);
    this.grpcCode = grpcCode;
    this.code = statusNameOf(grpcCode);
    this.endpoint = endpoint;
  }
  /** UNAVAILABLE: no leader, no quorum, node down. The same request may succeed later. */
  get retryable(): boolean {
    return this.code === 'UNAVAILABLE';
  }
}

/** The call's deadline passed. For a write, whether it was applied is unknown. */
export class RaftKvTimeoutError extends RaftKvError {
  override readonly name = 'RaftKvTimeoutError';
}

/**
 * A write's session was evicted by the cluster (it keeps a bounded number, least recently
 * used first) after more than one attempt of the write was sent: an earlier attempt may
 * have been applied before the eviction, so whether the write happened is unknown. The
 * cluster never applies it twice. The client opens a new session for its next write.
 */
export class RaftKvSessionExpiredError extends RaftKvError {
  override readonly name = 'RaftKvSessionExpiredError';
  /** Attempts of the write that were sent. */
  readonly attempts: number;
  constructor(
    grpcCode: number,
    message: string,
    endpoint: string,
    attempts: number,
    options?: { cause?: unknown },
  ) {
    super(
      grpcCode,
      `${message} (after ${attempts} attempts: the write may or may not have been applied)`,
      endpoint,
      options,
    );
    this.attempts = attempts;
  }
}

/** The client was closed before or during the call. */
export class RaftKvClosedError extends RaftKvError {
  override readonly name = 'RaftKvClosedError';
  constructor() {
    super(1, 'the client is closed');
  }
}

/** Bad options given to the client (no endpoints, a malformed address...). */
export class RaftKvConfigError extends Error {
  override readonly name = 'RaftKvConfigError';
}
