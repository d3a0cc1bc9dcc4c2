/**
 * The core's configuration: {@link RaftConfig}, every default in one frozen constant
 * ({@link DEFAULT_RAFT_CONFIG}, which docs/raft.md lists) and {@link validateRaftConfig},
 * which the Raft constructor calls.
 *
 * Invariants of a validated configuration: `id` is a non-empty string; 2 <= electionTick;
 * 1 <= heartbeatTick < electionTick; lease reads only with checkQuorum; every size and
 * window is a positive integer; the enumerations hold one of their values. A rule that is
 * broken throws a {@link RaftConfigError} whose `field` names the setting and whose message
 * names the rule and the value, and nothing is constructed.
 */
import { RaftConfigError } from './errors.ts';
import type { Rng } from './rng.ts';
import { NONE, type NodeId } from './types.ts';

export interface RaftConfig {
  readonly id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns (randomized in [n, 2n)). Default 10. */
  readonly electionTick?: number;
  /** Ticks between leader heartbeats. Default 1. Must be < electionTick. */
  readonly heartbeatTick?: number;
  /** Run a pre-election before disrupting the cluster with a higher term. Default true. */
  readonly preVote?: boolean;
  /** A leader steps down when it has not heard from a quorum for electionTick ticks. Default true. */
  readonly checkQuorum?: boolean;
  /** 'safe' (default): ReadIndex with a heartbeat round; 'lease': serve reads within the leader lease (needs checkQuorum). */
  readonly readOnly?: 'safe' | 'lease';
  /** Max entries in one Append. Default 4096. */
  readonly maxMsgEntries?: number;
  /** Max payload bytes in one Append (at least one entry is always sent). Default 1 MiB. */
  readonly maxMsgBytes?: number;
  /** Max unacknowledged Appends per follower in replicate state. Default 256. */
  readonly maxInflight?: number;
  /** Snapshot chunk size in bytes. Default 1 MiB. */
  readonly maxSnapshotChunk?: number;
  /**
   * Largest payload of one proposed entry, local or forwarded by a follower. Default 8 MiB
   * (above the KV server's largest request; below the peer transport's message limit).
   */
  readonly maxEntryBytes?: number;
  /**
   * How followers hear of a new commit index. 'eager' (the core's default) sends an Append right
   * away, empty if need be, as etcd does. 'piggyback' sends none for the commit alone: it rides on
   * the next Append and on heartbeats (so a follower applies up to a heartbeat later when the
   * leader is idle), which halves the peer messages per write at low concurrency. Liveness only:
   * safety does not depend on it. RaftNode passes 'piggyback' unless its `raft` option sets this.
   */
  readonly commitBroadcast?: 'eager' | 'piggyback';
  readonly rng: Rng;
}

/** A configuration with every default filled in, as the core runs with it. */
export type ResolvedRaftConfig = { readonly [K in keyof RaftConfig]-?: Exclude<RaftConfig[K], undefined> };

/** Every default of {@link RaftConfig} (the settings that have one). */
export const DEFAULT_RAFT_CONFIG: Readonly<Omit<ResolvedRaftConfig, 'id' | 'rng'>> = Object.freeze({
  electionTick: 10,
  heartbeatTick: 1,
  preVote: true,
  checkQuorum: true,
  readOnly: 'safe',
  maxMsgEntries: 4096,
  maxMsgBytes: 1 << 20,
  maxInflight: 256,
  maxSnapshotChunk: 1 << 20,
  maxEntryBytes: 8 << 20,
  commitBroadcast: 'eager',
});

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function positiveInteger(field: string, v: number): number {
  if (!Number.isInteger(v) || v < 1)
    throw new RaftConfigError(field, `${field} must be a positive integer, got ${show(v)}`);
  return v;
}

function boolean(field: string, v: boolean): boolean {
  if (typeof v !== 'boolean') throw new RaftConfigError(field, `${field} must be a boolean, got ${show(v)}`);
  return v;
}

function oneOf<T extends string>(field: string, v: T, allowed: readonly T[]): T {
  if (!allowed.includes(v)) {
    throw new RaftConfigError(
      field,
      `${field} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${show(v)}`,
    );
  }
  return v;
}

/**
 * Check `config` against every rule and return it with the defaults filled in. Throws a
 * {@link RaftConfigError} naming the first setting that breaks a rule.
 */
export function validateRaftConfig(config: RaftConfig): ResolvedRaftConfig {
  const d = DEFAULT_RAFT_CONFIG;
  if (typeof config.id !== 'string' || config.id === NONE)
    throw new RaftConfigError('id', `id must be a non-empty string, got ${show(config.id)}`);
  const electionTick = config.electionTick ?? d.electionTick;
  if (!Number.isInteger(electionTick) || electionTick < 2)
    throw new RaftConfigError(
      'electionTick',
      `electionTick must be an integer >= 2, got ${show(electionTick)}`,
    );
  const heartbeatTick = positiveInteger('heartbeatTick', config.heartbeatTick ?? d.heartbeatTick);
  if (heartbeatTick >= electionTick) {
    throw new RaftConfigError(
      'heartbeatTick',
      `heartbeatTick must be < electionTick, got ${heartbeatTick} >= ${electionTick}`,
    );
  }
  const preVote = boolean('preVote', config.preVote ?? d.preVote);
  const checkQuorum = boolean('checkQuorum', config.checkQuorum ?? d.checkQuorum);
  const readOnly = oneOf('readOnly', config.readOnly ?? d.readOnly, ['safe', 'lease']);
  if (readOnly === 'lease' && !checkQuorum) {
    throw new RaftConfigError(
      'readOnly',
      "readOnly 'lease' needs checkQuorum: without it a deposed leader may serve stale reads",
    );
  }
  const rng = config.rng;
  if (typeof rng !== 'object' || rng === null || typeof rng.int !== 'function')
    throw new RaftConfigError('rng', `rng must be an Rng (an object with int(n)), got ${show(rng)}`);
  return {
    id: config.id,
    electionTick,
    heartbeatTick,
    preVote,
    checkQuorum,
    readOnly,
    maxMsgEntries: positiveInteger('maxMsgEntries', config.maxMsgEntries ?? d.maxMsgEntries),
    maxMsgBytes: positiveInteger('maxMsgBytes', config.maxMsgBytes ?? d.maxMsgBytes),
    maxInflight: positiveInteger('maxInflight', config.maxInflight ?? d.maxInflight),
    maxSnapshotChunk: positiveInteger('maxSnapshotChunk', config.maxSnapshotChunk ?? d.maxSnapshotChunk),
    maxEntryBytes: positiveInteger('maxEntryBytes', config.maxEntryBytes ?? d.maxEntryBytes),
    commitBroadcast: oneOf('commitBroadcast', config.commitBroadcast ?? d.commitBroadcast, [
      'eager',
      'piggyback',
    ]),
    rng,
  };
}
