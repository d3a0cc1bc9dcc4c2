/**
 * The client's retry rules without any socket: RaftKvClient runs them
 * over gRPC, the simulator (src/sim/) runs them over its virtual network, so both retry the
 * same way.
 *
 * Invariant: a retry is decided from the status code alone (UNAVAILABLE, or a timed-out
 * attempt of an idempotent request).
 */

/** gRPC status codes the rules look at. */
export const RetryStatus = { DEADLINE_EXCEEDED: 4, UNAVAILABLE: 14 } as const;

/** Whether a failed attempt may be retried (elsewhere). */
export function retryable(code: number, attemptTimedOut: boolean, idempotent: boolean): boolean {
  return code === RetryStatus.UNAVAILABLE || (attemptTimedOut && idempotent);
}

/** The address in "the leader is n2 at 127.0.0.1:50052" of a NotLeader message, if any. */
export function leaderHint(message: string): string | undefined {
  const m = /leader is \S+ at (\S+)/.exec(message);
  return m?.[1];
}

/** Backoff before retry `attempt` (0-based): full jitter in [0, min(max, initial * 2^attempt)). */
export function backoffMs(attempt: number, initialMs: number, maxMs: number, random01: number): number {
  return random01 * Math.min(maxMs, initialMs * 2 ** attempt);
}
