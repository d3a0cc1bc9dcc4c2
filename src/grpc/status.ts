// gRPC status codes and the typed error that carries one to the client.
//
// Invariants:
// - `Status` values are the wire numbers of grpc/status.h; a code outside 0..16 never reaches the wire
//   (GrpcError clamps it to UNKNOWN).
// - A GrpcError's message is sent to the client verbatim (percent-encoded); any other thrown value is reported as
//   INTERNAL with a generic message, so internal details never leak.
// - `details` is the serialized google.rpc.Status, sent unchanged as `grpc-status-details-bin`.

import type { OutgoingMetadata } from './metadata.ts';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

const NAMES: readonly string[] = Object.keys(Status);
/** The canonical name of a status code, e.g. `DEADLINE_EXCEEDED`. */
export function statusName(code: number): string {
  return NAMES[code] ?? `CODE_${code}`;
}

export interface GrpcErrorOptions {
  /** Serialized google.rpc.Status, sent as `grpc-status-details-bin`. */
  readonly details?: Uint8Array;
  /** Extra trailing metadata sent with the status. */
  readonly metadata?: OutgoingMetadata;
  readonly cause?: unknown;
}

/** An error with a gRPC status: thrown by handlers (or rejected) to end a call with that status. */
export class GrpcError extends Error {
  override readonly name = 'GrpcError';
  readonly code: StatusCode;
  readonly details: Uint8Array | undefined;
  readonly metadata: OutgoingMetadata | undefined;

  constructor(code: StatusCode, message: string, options: GrpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = Number.isInteger(code) && code >= 0 && code <= 16 ? code : Status.UNKNOWN;
    this.details = options.details;
    this.metadata = options.metadata;
  }
}
