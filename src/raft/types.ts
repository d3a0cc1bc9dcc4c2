/**
 * Data types of the Raft core: log entries, hard state, configuration, snapshots and
 * the messages exchanged between peers. Plain readonly data, no behaviour, so every
 * layer (storage, transport, simulator) can encode and compare them freely.
 *
 * Invariants carried by the types:
 * - Entry indices start at 1; index 0 with term 0 is the empty log's sentinel.
 * - `term` never decreases on a node; `vote` is only meaningful for `term`.
 * - `HardState.commit` never exceeds the last durable log index.
 */

/** A node's identity: a short, stable string such as "n1". The empty string means "none". */
export type NodeId = string;
export const NONE: NodeId = '';

export const EntryType = {
  /** Application data (an empty payload is the no-op a new leader appends). */
  Normal: 0,
  /** A configuration change; `data` is an encoded {@link ConfChange}. */
  ConfChange: 1,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** What must be durable before the node may answer anything that depends on it. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/** Cluster membership. Voters count for elections and commit; learners only receive the log. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export const ConfChangeType = {
  AddVoter: 'add-voter',
  AddLearner: 'add-learner',
  Remove: 'remove',
} as const;
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType];

/** One membership change; raftkv changes one member at a time (Raft dissertation §4.1). */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
  /** Opaque to the core (the server keeps peer addresses here). */
  readonly context?: string;
}

export interface SnapshotMeta {
  /** Last log index covered by the snapshot. */
  readonly index: number;
  /** Term of the entry at `index`. */
  readonly term: number;
  /** Membership as of `index`. */
  readonly conf: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The state machine's serialized state as of `meta.index`. */
  readonly data: Uint8Array;
}

export const MessageType = {
  PreVote: 'prevote',
  PreVoteResp: 'prevote-resp',
  Vote: 'vote',
  VoteResp: 'vote-resp',
  Append: 'app',
  AppendResp: 'app-resp',
  Heartbeat: 'hb',
  HeartbeatResp: 'hb-resp',
  Snapshot: 'snap',
  SnapshotResp: 'snap-resp',
  TimeoutNow: 'timeout-now',
  /** A follower forwards client proposals to the leader. */
  Propose: 'prop',
  /** A follower asks the leader for a read index on behalf of its clients. */
  ReadIndex: 'read-index',
  ReadIndexResp: 'read-index-resp',
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

interface Base {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** RequestVote, and its PreVote twin (§9.6): `term` is the term the candidate would use. */
export interface VoteRequest extends Base {
  readonly type: typeof MessageType.PreVote | typeof MessageType.Vote;
  readonly lastLogIndex: number;
  readonly lastLogTerm: number;
  /** Set by a leadership transfer: voters disregard their leader lease. */
  readonly transfer: boolean;
}

export interface VoteResponse extends Base {
  readonly type: typeof MessageType.PreVoteResp | typeof MessageType.VoteResp;
  readonly reject: boolean;
}

export interface AppendRequest extends Base {
  readonly type: typeof MessageType.Append;
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

/**
 * Answer to Append (and to a finished Snapshot). On success `index` is the follower's
 * last index now known to match the leader. On reject, `index` echoes the rejected
 * `prevIndex` and (`hintIndex`, `hintTerm`) is the follower's best guess of where its
 * log may match: the largest index <= prevIndex whose term is <= the rejected prevTerm.
 */
export interface AppendResponse extends Base {
  readonly type: typeof MessageType.AppendResp;
  readonly index: number;
  readonly reject: boolean;
  readonly hintIndex: number;
  readonly hintTerm: number;
}

export interface HeartbeatRequest extends Base {
  readonly type: typeof MessageType.Heartbeat;
  /** min(leader commit, follower match): never ahead of what the follower holds. */
  readonly commit: number;
  /** Read-index round this heartbeat confirms leadership for (0: none). */
  readonly readSeq: number;
}

export interface HeartbeatResponse extends Base {
  readonly type: typeof MessageType.HeartbeatResp;
  readonly readSeq: number;
}

/** One chunk of InstallSnapshot. Chunks of one snapshot share `meta`; `done` marks the last. */
export interface SnapshotRequest extends Base {
  readonly type: typeof MessageType.Snapshot;
  readonly meta: SnapshotMeta;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly done: boolean;
}

/**
 * Acknowledges a snapshot chunk: `offset` is how many bytes of the snapshot at `index`
 * the follower holds; the leader sends the next chunk from there (0 restarts it).
 */
export interface SnapshotResponse extends Base {
  readonly type: typeof MessageType.SnapshotResp;
  readonly index: number;
  readonly offset: number;
}

export interface TimeoutNowRequest extends Base {
  readonly type: typeof MessageType.TimeoutNow;
}

export interface ProposeRequest extends Base {
  readonly type: typeof MessageType.Propose;
  readonly entries: readonly { readonly type: EntryType; readonly data: Uint8Array }[];
}

export interface ReadIndexRequest extends Base {
  readonly type: typeof MessageType.ReadIndex;
  /** Opaque request ids chosen by the follower's application. */
  readonly ctxs: readonly number[];
}

export interface ReadIndexResponse extends Base {
  readonly type: typeof MessageType.ReadIndexResp;
  readonly ctxs: readonly number[];
  /** Commit index the reads must wait for; -1 when the leader refused (not leader any more). */
  readonly index: number;
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | HeartbeatRequest
  | HeartbeatResponse
  | SnapshotRequest
  | SnapshotResponse
  | TimeoutNowRequest
  | ProposeRequest
  | ReadIndexRequest
  | ReadIndexResponse;

export const Role = {
  Follower: 'follower',
  PreCandidate: 'pre-candidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const;
export type Role = (typeof Role)[keyof typeof Role];

/** A read that may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly ctx: number;
  readonly index: number;
}

/** Outcome of a read that could not be served (leadership lost, or no leader known). */
export interface ReadFailure {
  readonly ctx: number;
  readonly reason: 'not-leader' | 'no-leader';
}

/** Volatile state worth showing to an operator. */
export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId;
}

/**
 * The batch of work the core hands to its driver. The driver MUST handle it in this order:
 *
 * 1. `eagerMessages` may be sent at once, in parallel with step 2. They are a leader's
 *    replication traffic (Append, Heartbeat, Snapshot, TimeoutNow) and never claim
 *    anything about this node's durable state. (A leader's own entries count towards commit
 *    only after `advance()` reports them durable.)
 * 2. Persist, atomically as one durable write: `snapshot` (if set: install it, dropping the
 *    log it covers), then `entries` (if the first entry's index is <= the last stored index,
 *    first truncate the stored log from that index on), then `hardState` (if set).
 * 3. Only then send `messages`: votes, append acknowledgements and every other reply
 *    may claim the state of step 2 is durable.
 * 4. Apply `snapshot` (if set) to the state machine, then `committedEntries` in order.
 *    `readStates` may be served once the state machine has applied their index.
 *    `committedEntries` are already durable here (the core hands out only entries it was
 *    told are durable), so when there is no `snapshot` they may be applied before or
 *    while step 2 runs: their application does not wait for this Ready's fsync.
 * 5. Call `advance(ready)`. Between `ready()` and `advance()` the driver may keep calling
 *    `step`, `tick` and `propose`; their effects appear in the next Ready.
 */
export interface Ready {
  readonly softState: SoftState;
  readonly hardState: HardState | null;
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly committedEntries: readonly Entry[];
  readonly eagerMessages: readonly Message[];
  readonly messages: readonly Message[];
  readonly readStates: readonly ReadState[];
  readonly readFailures: readonly ReadFailure[];
}

/** Everything a node had made durable, as loaded from storage when it starts. */
export interface DurableState {
  readonly hardState: HardState;
  /** Latest durable snapshot, or null when the log was never compacted. */
  readonly snapshot: Snapshot | null;
  /** The log after the snapshot: contiguous indices starting at snapshot.meta.index + 1 (or 1). */
  readonly entries: readonly Entry[];
}
