/**
 * Prometheus metrics of one raftkv node, in a registry of its own (never prom-client's
 * global one, so several nodes can live in one process, e.g. in tests).
 *
 * Gauges are computed lazily when the registry is scraped (prom-client `collect`
 * callbacks reading `node.status()` and `node.counters`): nothing is added to the hot
 * path. The only things updated outside a scrape are:
 * - the counters callers increment themselves (`proposals`, `reads`, ... handles);
 * - the persist-latency histogram, fed by {@link instrumentStorage} when the node's
 *   storage was wrapped with it (one `performance.now()` pair per persist call);
 * - the {@link LeaderTracker}, which samples role/leader/term on a slow unref'd timer
 *   (and on every scrape) to count leader changes and keep a short event log.
 */
import { performance } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DurableState, NodeId, Role, Snapshot } from '../raft/types.ts';
import type { PersistBatch, RaftStorage, StorageStats } from '../storage/contract.ts';
import type { RaftKvServer } from './server.ts';

export const METRIC_PREFIX = 'raftkv_';

const ROLES: readonly Role[] = ['follower', 'pre-candidate', 'candidate', 'leader'];

// ------------------------------------------------------------------ storage hook

type PersistListener = (seconds: number, entries: number) => void;

/**
 * A RaftStorage that times every `persist` (the write + fsync of one Ready: the group
 * commit) and reports it to its listeners. Wrap the node's storage with it when starting
 * the server (`ServerConfig.storage`) to get `raftkv_persist_duration_seconds`.
 */
export class InstrumentedStorage implements RaftStorage {
  readonly inner: RaftStorage;
  private readonly listeners = new Set<PersistListener>();

  constructor(inner: RaftStorage) {
    this.inner = inner;
  }

  /** Subscribe to persist timings; returns the unsubscribe function. */
  onPersist(fn: PersistListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  initialState(): DurableState {
    return this.inner.initialState();
  }

  async persist(batch: PersistBatch): Promise<void> {
    const t0 = performance.now();
    await this.inner.persist(batch);
    if (this.listeners.size === 0) return;
    const s = (performance.now() - t0) / 1000;
    for (const fn of this.listeners) fn(s, batch.entries.length);
  }

  compact(snapshot: Snapshot, retain?: number): Promise<void> {
    return retain === undefined ? this.inner.compact(snapshot) : this.inner.compact(snapshot, retain);
  }

  stats(): StorageStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  setInlineWrites(on: boolean): void {
    this.inner.setInlineWrites?.(on);
  }
}

export function instrumentStorage(storage: RaftStorage): InstrumentedStorage {
  return storage instanceof InstrumentedStorage ? storage : new InstrumentedStorage(storage);
}

// ------------------------------------------------------------------ leader tracking

export interface NodeEvent {
  /** Milliseconds since the epoch. */
  readonly at: number;
  readonly kind: 'leader-elected' | 'leader-lost' | 'role-changed';
  readonly term: number;
  /** The leader after the change ('' when none is known). */
  readonly leader: NodeId;
  /** This node's role after the change. */
  readonly role: Role;
  readonly message: string;
}

interface Sampled {
  readonly role: Role;
  readonly leader: NodeId;
  readonly term: number;
}

/**
 * Samples this node's (role, leader, term) and records changes: a count of leader changes
 * (a new leader, or the same node leading a new term) and the most recent events.
 * Sampling is cheap and happens on a timer (default every 100 ms, unref'd) and whenever
 * a status or scrape asks; a change that starts and ends between two samples is missed.
 */
export class LeaderTracker {
  private last: Sampled | null = null;
  private lastLeaderTerm = 0;
  private lastLeader: NodeId = '';
  private changes = 0;
  private readonly ring: NodeEvent[] = [];
  private readonly timer: NodeJS.Timeout | null;
  private readonly keep: number;
  private readonly sample: () => Sampled;

  constructor(sample: () => Sampled, opts: { intervalMs?: number; keep?: number } = {}) {
    this.sample = sample;
    this.keep = opts.keep ?? 50;
    const every = opts.intervalMs ?? 100;
    this.timer = every > 0 ? setInterval(() => this.poll(), every) : null;
    this.timer?.unref();
    this.poll();
  }

  /** Take a sample now and record what changed since the previous one. */
  poll(): void {
    let s: Sampled;
    try {
      s = this.sample();
    } catch {
      return; // the node is stopping: nothing to record
    }
    const prev = this.last;
    this.last = s;
    if (s.leader !== '' && (s.leader !== this.lastLeader || s.term !== this.lastLeaderTerm)) {
      // Not counted: the first leader this process sees, unless it is elected while we watch.
      if (prev !== null || this.lastLeader !== '') this.changes++;
      this.lastLeader = s.leader;
      this.lastLeaderTerm = s.term;
      this.push({
        kind: 'leader-elected',
        term: s.term,
        leader: s.leader,
        role: s.role,
        message: `${s.leader} is leader (term ${s.term})`,
      });
    } else if (prev && prev.leader !== '' && s.leader === '') {
      this.push({
        kind: 'leader-lost',
        term: s.term,
        leader: '',
        role: s.role,
        message: `no leader (lost ${prev.leader}, term ${s.term})`,
      });
    }
    if (prev && prev.role !== s.role) {
      this.push({
        kind: 'role-changed',
        term: s.term,
        leader: s.leader,
        role: s.role,
        message: `role ${prev.role} -> ${s.role} (term ${s.term})`,
      });
    }
  }

  /** Leader changes seen since this tracker started. */
  get leaderChanges(): number {
    return this.changes;
  }

  /** The most recent events, oldest first. */
  events(): readonly NodeEvent[] {
    return this.ring.slice();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private push(e: Omit<NodeEvent, 'at'>): void {
    this.ring.push({ at: Date.now(), ...e });
    if (this.ring.length > this.keep) this.ring.splice(0, this.ring.length - this.keep);
  }
}

// ------------------------------------------------------------------ node metrics

export interface NodeMetricsOptions {
  /** The node's storage, if the caller has it: adds storage counters, and persist latency when instrumented. */
  readonly storage?: RaftStorage;
  /** Register Node.js process metrics (collectDefaultMetrics) in the same registry. Default true. */
  readonly processMetrics?: boolean;
  /** Leader-change sampling period in ms (0: only on scrape/status). Default 100. */
  readonly sampleMs?: number;
  /** Persist latency histogram buckets, in seconds. */
  readonly persistBuckets?: readonly number[];
}

export interface NodeMetrics {
  readonly registry: Registry;
  /** Leader changes and recent events, shared with the status endpoint. */
  readonly tracker: LeaderTracker;
  /** Client writes proposed through this node (increment from the API layer). */
  readonly proposals: Counter;
  /** Proposals that failed (no leader, timeout, dropped...). */
  readonly proposalFailures: Counter;
  /** Linearizable reads served through this node. */
  readonly reads: Counter;
  readonly readFailures: Counter;
  /** Present when the storage was an {@link InstrumentedStorage}. */
  readonly persistDuration: Histogram | null;
  /** Prometheus text exposition of the whole registry. */
  text(): Promise<string>;
  readonly contentType: string;
  /** Stop the sampler and detach from the storage. The registry stays readable. */
  close(): void;
}

/** A counter that mirrors a monotonically growing number read at scrape time. */
function mirrorCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  let seen = 0;
  return new Counter({
    name: METRIC_PREFIX + name,
    help,
    registers: [registry],
    collect() {
      const v = read();
      if (v > seen) this.inc(v - seen);
      seen = Math.max(seen, v);
    },
  });
}

export function createNodeMetrics(server: RaftKvServer, opts: NodeMetricsOptions = {}): NodeMetrics {
  const { node } = server;
  const registry = new Registry();
  registry.setDefaultLabels({ node: server.id });
  const registers = [registry];
  const p = METRIC_PREFIX;

  const tracker = new LeaderTracker(
    () => {
      const st = node.status();
      return { role: st.role, leader: st.leader, term: st.term };
    },
    { intervalMs: opts.sampleMs ?? 100 },
  );

  // One status() per scrape, shared by every gauge of that scrape.
  let cached: { at: number; st: ReturnType<typeof node.status> } | null = null;
  const status = () => {
    const now = performance.now();
    if (!cached || now - cached.at > 50) cached = { at: now, st: node.status() };
    return cached.st;
  };
  const gauge = (name: string, help: string, read: () => number): Gauge =>
    new Gauge({
      name: p + name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });

  gauge('term', 'Current Raft term of this node.', () => status().term);
  new Gauge({
    name: p + 'role',
    help: 'Raft role of this node: 1 for the current role, 0 for the others.',
    labelNames: ['role'],
    registers,
    collect() {
      const role = status().role;
      for (const r of ROLES) this.set({ role: r }, r === role ? 1 : 0);
    },
  });
  gauge('is_leader', '1 if this node is the leader, else 0.', () => (status().role === 'leader' ? 1 : 0));
  gauge('has_leader', '1 if this node knows a leader, else 0.', () => (status().leader !== '' ? 1 : 0));
  gauge('commit_index', 'Highest log index known to be committed.', () => status().commit);
  gauge('applied_index', 'Highest log index applied to the state machine.', () => node.appliedIndex);
  gauge('last_index', 'Index of the last entry in the local log.', () => status().lastIndex);
  gauge(
    'first_index',
    'Index of the first entry still in the local log (after compaction).',
    () => status().firstIndex,
  );
  new Gauge({
    name: p + 'members',
    help: 'Members of the current configuration, by kind.',
    labelNames: ['kind'],
    registers,
    collect() {
      const { conf } = status();
      this.set({ kind: 'voter' }, conf.voters.length);
      this.set({ kind: 'learner' }, conf.learners.length);
    },
  });
  mirrorCounter(
    registry,
    'leader_changes_total',
    'Leader changes seen by this node (a new leader, or a new term of the same leader).',
    () => {
      tracker.poll();
      return tracker.leaderChanges;
    },
  );

  const c = node.counters;
  mirrorCounter(
    registry,
    'persists_total',
    'Durable writes (one write + fsync per Ready: group commits).',
    () => c.persists,
  );
  mirrorCounter(registry, 'entries_persisted_total', 'Log entries made durable.', () => c.entriesPersisted);
  mirrorCounter(registry, 'readies_total', 'Ready batches handled by the node loop.', () => c.readies);
  mirrorCounter(registry, 'entries_applied_total', 'Entries applied to the state machine.', () => c.applied);
  mirrorCounter(registry, 'snapshots_total', 'Local snapshots taken (log compactions).', () => c.snapshots);
  mirrorCounter(
    registry,
    'messages_sent_total',
    'Raft messages handed to the transport.',
    () => c.messagesSent,
  );

  // What the core and the state machine refused (the trust boundary, docs/state-machine.md).
  const refused = () => status().refused;
  mirrorCounter(
    registry,
    'peer_messages_dropped_total',
    'Raft messages dropped because their sender is in no configuration this node knows of.',
    () => refused().nonMemberMessages,
  );
  mirrorCounter(
    registry,
    'forwarded_proposals_refused_total',
    'Proposals forwarded by a follower and refused by this leader (a non-data entry, or one too large).',
    () => refused().forwardedProposals,
  );
  mirrorCounter(
    registry,
    'malformed_conf_changes_total',
    'Committed membership change entries that did not decode, applied as no-ops.',
    () => refused().malformedConfChanges,
  );
  const sm = server.sm;
  mirrorCounter(
    registry,
    'invalid_entries_total',
    'Committed entries that were not KV commands, applied as no-ops.',
    () => sm.stats.invalid,
  );
  mirrorCounter(
    registry,
    'sessions_expired_total',
    'Writes refused because their client session was evicted (or never registered).',
    () => sm.stats.sessionsExpired,
  );
  mirrorCounter(
    registry,
    'sessions_evicted_total',
    'Client sessions evicted (least recently used) to keep the table bounded.',
    () => sm.stats.sessionsEvicted,
  );
  gauge('sessions', 'Client sessions in the state machine.', () => sm.sessionCount);

  const storage = opts.storage;
  if (storage) {
    const st = () => storage.stats();
    mirrorCounter(registry, 'storage_fsyncs_total', 'fsync calls made by the storage.', () => st().fsyncs);
    mirrorCounter(registry, 'storage_appends_total', 'Entries appended by the storage.', () => st().appends);
    mirrorCounter(
      registry,
      'storage_bytes_written_total',
      'Bytes written by the storage.',
      () => st().bytesWritten,
    );
  }
  let persistDuration: Histogram | null = null;
  let detach = (): void => {};
  if (storage instanceof InstrumentedStorage) {
    const h = new Histogram({
      name: p + 'persist_duration_seconds',
      help: 'Latency of one persist (write + fsync of a Ready), in seconds.',
      buckets: [
        ...(opts.persistBuckets ?? [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]),
      ],
      registers,
    });
    persistDuration = h;
    detach = storage.onPersist((s) => h.observe(s));
  }

  const followers = (): { id: NodeId; match: number; lag: number }[] => {
    const st = status();
    if (st.role !== 'leader') return [];
    return st.progress
      .filter((pr) => pr.id !== st.id)
      .map((pr) => ({ id: pr.id, match: pr.match, lag: Math.max(0, st.lastIndex - pr.match) }));
  };
  new Gauge({
    name: p + 'follower_match_index',
    help: 'On the leader: highest log index known to be replicated on each follower.',
    labelNames: ['follower'],
    registers,
    collect() {
      this.reset();
      for (const f of followers()) this.set({ follower: f.id }, f.match);
    },
  });
  new Gauge({
    name: p + 'follower_lag_entries',
    help: "On the leader: entries each follower is behind the leader's last index.",
    labelNames: ['follower'],
    registers,
    collect() {
      this.reset();
      for (const f of followers()) this.set({ follower: f.id }, f.lag);
    },
  });

  const counter = (name: string, help: string): Counter => new Counter({ name: p + name, help, registers });
  const proposals = counter('proposals_total', 'Client writes proposed through this node.');
  const proposalFailures = counter('proposal_failures_total', 'Client writes that failed on this node.');
  const reads = counter('reads_total', 'Linearizable reads served through this node.');
  const readFailures = counter('read_failures_total', 'Reads that failed on this node.');

  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  return {
    registry,
    tracker,
    proposals,
    proposalFailures,
    reads,
    readFailures,
    persistDuration,
    text: () => registry.metrics(),
    contentType: registry.contentType,
    close() {
      tracker.close();
      detach();
    },
  };
}
