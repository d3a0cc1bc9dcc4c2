/**
 * Typed errors of the node runtime. Each names what happened and whether retrying
 * elsewhere or later may help (`retryable`). The server maps them to gRPC status codes;
 * nothing below the server edge knows about status codes.
 */
import type { NodeId } from '../raft/types.ts';

export abstract class RaftNodeError extends Error {
  abstract readonly retryable: boolean;
}

/** No leader is known: an election is under way or there is no quorum. */
export class NoLeaderError extends RaftNodeError {
  override readonly name = 'NoLeaderError';
  readonly retryable = true;
  constructor(detail = 'no leader is known') {
    super(`no leader: ${detail}`);
  }
}

/** This node is not the leader; `leader` is the one it knows of ('' if none). */
export class NotLeaderError extends RaftNodeError {
  override readonly name = 'NotLeaderError';
  readonly retryable = true;
  readonly leader: NodeId;
  constructor(leader: NodeId) {
    super(leader ? `not the leader; the leader is ${leader}` : 'not the leader, and no leader is known');
    this.leader = leader;
  }
}

/** Another entry was committed where the proposal had been appended: it will never apply. */
export class ProposalDroppedError extends RaftNodeError {
  override readonly name = 'ProposalDroppedError';
  readonly retryable = true;
  constructor(index: number) {
    super(`proposal at index ${index} was replaced by another leader's entry`);
  }
}

/**
 * The proposal was forwarded to a leader that lost leadership before it was seen
 * applied: it may or may not be applied later. Retrying with the same client session
 * (client id and sequence) is safe: the state machine applies a write once.
 */
export class OutcomeUnknownError extends RaftNodeError {
  override readonly name = 'OutcomeUnknownError';
  readonly retryable = true;
  /** `why` replaces the default reason (leadership moved away from `leader`). */
  constructor(leader: NodeId, why?: string) {
    super(
      `${why ?? `leadership moved away from ${leader || 'the leader'}`} while the proposal was forwarded; its outcome is unknown`,
    );
  }
}

/** The caller's deadline passed first. For a write, its outcome is unknown. */
export class TimeoutError extends RaftNodeError {
  override readonly name = 'TimeoutError';
  readonly retryable = true;
  constructor(what: string) {
    super(`${what} did not complete before its deadline`);
  }
}

/** The node was stopped before the operation completed. */
export class RaftNodeStoppedError extends RaftNodeError {
  override readonly name = 'RaftNodeStoppedError';
  readonly retryable = true;
  constructor(id: NodeId) {
    super(`raft node ${id} is stopped`);
  }
}

/** The core refused the request (invalid membership change, transfer to a non-voter...). */
export class RejectedError extends RaftNodeError {
  override readonly name = 'RejectedError';
  readonly retryable = false;
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.reason = reason;
  }
}
