/**
 * The client's routing, retry and session rules without any socket: RaftKvClient runs them
 * over gRPC, the simulator (src/sim/) runs them over its virtual network, so both retry the
 * same way.
 *
 * Invariants: a session's sequence numbers only grow and a session carries one write at a
 * time (take() hands a session to one write, give() returns it); a retry is decided from the
 * status code alone (UNAVAILABLE, or a timed-out attempt of an idempotent request).
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

export interface Session {
  readonly clientId: number;
  seq: number;
}

/** Sessions for exactly-once writes: one write per session at a time, a few kept idle for reuse. */
export class SessionPool {
  private readonly idle: Session[] = [];
  constructor(
    private readonly newId: () => number,
    private readonly maxIdle = 16,
  ) {}

  /** A session for one write, its sequence number already advanced for it. */
  take(): Session {
    const s = this.idle.pop() ?? { clientId: this.newId(), seq: 0 };
    s.seq += 1;
    return s;
  }

  /** The write is over (whatever its outcome): the session may carry the next one. */
  give(s: Session): void {
    if (this.idle.length < this.maxIdle) this.idle.push(s);
  }
}
