/**
 * What the core reports to its driver outside the Ready batch: the outcome of a proposal
 * and the status snapshot (`Raft.status()`). Plain readonly data.
 *
 * Invariants: a proposal is `appended` only on the leader (its index and term are where the
 * entry sits in the leader's log, not yet committed), `forwarded` only on a follower that
 * knows its leader, and `rejected` changes nothing. A status is a copy: later steps do not
 * change it.
 */
import type { ProgressState } from './progress.ts';
import type { ConfState, NodeId, Role } from './types.ts';

export const ProposeRejection = {
  NoLeader: 'no-leader',
  NotLeader: 'not-leader',
  Transferring: 'transferring',
  ConfChangePending: 'conf-change-pending',
  InvalidConfChange: 'invalid-conf-change',
  EntryTooLarge: 'entry-too-large',
} as const;
export type ProposeRejection = (typeof ProposeRejection)[keyof typeof ProposeRejection];

export type ProposeOutcome =
  | { readonly kind: 'appended'; readonly index: number; readonly term: number }
  | { readonly kind: 'forwarded'; readonly to: NodeId }
  | { readonly kind: 'rejected'; readonly reason: ProposeRejection; readonly message: string };

export interface ProgressStatus {
  readonly id: NodeId;
  readonly match: number;
  readonly next: number;
  readonly state: ProgressState;
  readonly learner: boolean;
  readonly recentActive: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly conf: ConfState;
  readonly progress: readonly ProgressStatus[];
  readonly transferee: NodeId;
  /** Inputs this core refused since it started (see the sender rule in src/raft/raft.ts's header). */
  readonly refused: RefusedCounts;
}

/** Counts of what the core refused to act on, for metrics. */
export interface RefusedCounts {
  /** Messages dropped because their sender is in no configuration this node knows of. */
  readonly nonMemberMessages: number;
  /** Forwarded proposals dropped whole (a non-data entry, or an entry above maxEntryBytes). */
  readonly forwardedProposals: number;
  /** Committed configuration change entries that did not decode (applied as no-ops). */
  readonly malformedConfChanges: number;
}
