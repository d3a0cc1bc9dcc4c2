/**
 * RaftKvClient: the TypeScript client of raft.KeyValueService, on @grpc/grpc-js.
 *
 * - Leader discovery: GetClusterStatus on the endpoints gives `leader_address`; requests
 *   that need the leader (writes, linearizable reads, admin) go there when it is known,
 *   and the hint is dropped when that node stops answering or says it is not the leader.
 * - Retries: UNAVAILABLE (node down, no leader, no quorum) is retried with exponential
 *   backoff and full jitter, trying the other endpoints, until `retries` or the call's
 *   deadline runs out. An attempt that hangs (a stopped process) times out after
 *   `attemptTimeoutMs` and is retried elsewhere when the request is idempotent.
 * - Exactly-once writes: every write carries a session (client_id, sequence). A session
 *   is opened with RegisterSession (its id comes from the cluster). The sequence is taken
 *   once per write and reused by its retries, so the cluster applies a retried write
 *   once. The server keeps one result per session, so a session carries one write at a
 *   time; concurrent writes use more sessions (a small pool).
 * - Expired sessions: the cluster keeps a bounded number of sessions and evicts the least
 *   recently used. A write refused with "session expired" after a single attempt was
 *   certainly not applied: it is sent again once on a new session. After several attempts
 *   an earlier one may have been applied before the eviction, so the write fails with
 *   {@link RaftKvSessionExpiredError} (outcome unknown) instead of risking a second apply.
 *
 * Invariant: a session's sequence numbers only grow, and a session is never used by two
 * writes at once.
 */
import { getRandomValues } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  RaftKvClosedError,
  RaftKvConfigError,
  RaftKvError,
  RaftKvSessionExpiredError,
  RaftKvTimeoutError,
} from './errors.ts';
import { backoffMs, leaderHint, retryable } from './retry.ts';

export const CLIENT_PROTO_FILE = fileURLToPath(new URL('../../proto/raftkv.proto', import.meta.url));

export interface TlsFiles {
  /** CA certificate (PEM, or a path to it) to verify the servers; system roots if absent. */
  readonly ca?: string | Buffer;
  /** Client certificate and key (PEM or paths) for mTLS. */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
}

export interface RaftKvClientOptions {
  /** host:port of one or more nodes. */
  readonly endpoints: readonly string[];
  /** Use TLS (with these files). Plaintext when absent. */
  readonly tls?: TlsFiles;
  /** Sent as `authorization: Bearer TOKEN` with admin calls (AddMember, RemoveMember, TransferLeader). */
  readonly adminToken?: string;
  /** Deadline of a whole call, retries included, ms. Default 5,000. */
  readonly timeoutMs?: number;
  /** Deadline of one attempt, ms. Default min(timeoutMs, 2,000). */
  readonly attemptTimeoutMs?: number;
  /** Retries after the first attempt (the deadline bounds them too). Default 10. */
  readonly retries?: number;
  /** Backoff before retry n: random in [0, min(maxBackoffMs, initialBackoffMs * 2^n)]. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export interface CallOptions {
  /** Overrides the client's timeoutMs for this call. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface ReadOptions extends CallOptions {
  /** Serve from the first endpoint's local state, without confirming leadership (may be stale). */
  readonly local?: boolean;
}

export interface GetResult {
  readonly found: boolean;
  readonly value: string;
  readonly modRevision: number;
  readonly version: number;
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly version: number;
}

export interface ListResult {
  readonly items: readonly KeyValue[];
  /** More keys match than the limit allowed. */
  readonly more: boolean;
}

export interface CasCondition {
  /** Swap only if the key holds this value. */
  readonly expectedValue?: string;
  /** Swap only if the key is absent. */
  readonly expectAbsent?: boolean;
  /** Swap only if the key has exactly this many writes since its creation (> 0). */
  readonly expectedVersion?: number;
}

export interface Member {
  readonly id: string;
  readonly address: string;
  /** Where the other members reach it ('' from servers that do not say). */
  readonly peerAddress: string;
  readonly role: 'voter' | 'learner' | string;
  readonly matchIndex: number;
}

export interface ClusterStatus {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string;
  readonly leaderAddress: string;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly lastIndex: number;
  readonly clusterId: string;
  readonly members: readonly Member[];
}

// Wire shapes (proto-loader with keepCase, longs: Number, defaults).
interface WireMember {
  id: string;
  address: string;
  peer_address?: string;
  role: string;
  match_index: number;
}
interface WireStatus {
  id: string;
  role: string;
  term: number;
  leader: string;
  commit_index: number;
  applied_index: number;
  members: WireMember[];
  cluster_id: string;
  last_index: number;
  leader_address: string;
}
interface WireKv {
  key: string;
  value: string;
  mod_revision: number;
  version: number;
}

type Method =
  | 'Put'
  | 'Get'
  | 'Delete'
  | 'CompareAndSwap'
  | 'List'
  | 'GetClusterStatus'
  | 'AddMember'
  | 'RemoveMember'
  | 'TransferLeader'
  | 'RegisterSession';

interface MethodDef {
  path: string;
  requestSerialize: (v: object) => Buffer;
  responseDeserialize: (b: Buffer) => object;
}

let methods: Record<Method, MethodDef> | undefined;
function methodDefs(): Record<Method, MethodDef> {
  if (!methods) {
    const def = protoLoader.loadSync(CLIENT_PROTO_FILE, { keepCase: true, longs: Number, defaults: true });
    const svc = def['raft.KeyValueService'] as unknown as Record<Method, MethodDef>;
    methods = svc;
  }
  return methods;
}

/** How a request may be routed and retried. */
interface Route {
  /** Send to the leader when known (writes, linearizable reads, admin). */
  readonly leader: boolean;
  /** Safe to retry after an attempt whose outcome is unknown (deadline of one attempt). */
  readonly idempotent: boolean;
  /** Only this endpoint, no retries elsewhere. */
  readonly endpoint?: string;
}

interface Session {
  readonly clientId: number;
  seq: number;
}

const MAX_IDLE_SESSIONS = 16;

function random53(): number {
  const w = getRandomValues(new Uint32Array(2));
  const n = ((w[0] as number) & 0x1fffff) * 0x100000000 + (w[1] as number);
  return n === 0 ? 1 : n;
}

function pem(v: string | Buffer): Buffer {
  if (Buffer.isBuffer(v)) return v;
  return v.includes('-----BEGIN') ? Buffer.from(v) : readFileSync(v);
}

const ADDRESS = /^(\[[^\]]+\]|[^:\s/]+):(\d{1,5})$/;

export class RaftKvClient {
  readonly endpoints: readonly string[];
  private readonly creds: grpc.ChannelCredentials;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly retries: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly adminToken: string | undefined;
  private readonly channels = new Map<string, grpc.Client>();
  private readonly idle: Session[] = [];
  /** Invariant: when set, the address of the node last known to lead. */
  private leaderAddress: string | undefined;
  /** Next endpoint to try when no leader is known. */
  private cursor = 0;
  private closed = false;
  /** Counters: calls made, attempts sent (first tries and retries), retries, sessions opened and found expired. */
  readonly stats = { calls: 0, attempts: 0, retries: 0, sessionsOpened: 0, sessionsExpired: 0 };
  private discovering: Promise<void> | undefined;

  constructor(options: RaftKvClientOptions) {
    if (options.endpoints.length === 0) throw new RaftKvConfigError('at least one endpoint is needed');
    for (const e of options.endpoints) {
      if (!ADDRESS.test(e))
        throw new RaftKvConfigError(`endpoint must be host:port, got ${JSON.stringify(e)}`);
    }
    this.endpoints = [...options.endpoints];
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? Math.min(this.timeoutMs, 2_000);
    this.retries = options.retries ?? 10;
    this.initialBackoffMs = options.initialBackoffMs ?? 50;
    this.maxBackoffMs = options.maxBackoffMs ?? 1_000;
    this.adminToken = options.adminToken;
    const tls = options.tls;
    this.creds = tls
      ? grpc.credentials.createSsl(
          tls.ca ? pem(tls.ca) : null,
          tls.key ? pem(tls.key) : null,
          tls.cert ? pem(tls.cert) : null,
        )
      : grpc.credentials.createInsecure();
  }

  /** The leader's address as last learned ('' if unknown). */
  get leader(): string {
    return this.leaderAddress ?? '';
  }

  async put(key: string, value: string, options: CallOptions = {}): Promise<{ revision: number }> {
    const r = await this.write<{ revision: number }>('Put', { key, value }, options);
    return { revision: r.revision };
  }

  async get(key: string, options: ReadOptions = {}): Promise<GetResult> {
    const r = await this.invoke<WireKv & { found: boolean }>(
      'Get',
      { key, local: options.local ?? false },
      options.local ? { leader: false, idempotent: true, endpoint: this.endpoints[0] as string } : READ,
      options,
    );
    return { found: r.found, value: r.value, modRevision: r.mod_revision, version: r.version };
  }

  async delete(key: string, options: CallOptions = {}): Promise<{ deleted: boolean; revision: number }> {
    const r = await this.write<{ deleted: boolean; revision: number }>('Delete', { key }, options);
    return { deleted: r.deleted, revision: r.revision };
  }

  async compareAndSwap(
    key: string,
    value: string,
    condition: CasCondition,
    options: CallOptions = {},
  ): Promise<{ swapped: boolean; revision: number }> {
    const req = {
      key,
      value,
      expected_value: condition.expectedValue ?? '',
      expect_absent: condition.expectAbsent ?? false,
      expected_version: condition.expectedVersion ?? 0,
    };
    const r = await this.write<{ swapped: boolean; revision: number }>('CompareAndSwap', req, options);
    return { swapped: r.swapped, revision: r.revision };
  }

  async list(prefix: string, options: ReadOptions & { limit?: number } = {}): Promise<ListResult> {
    const r = await this.invoke<{ items: WireKv[]; more: boolean }>(
      'List',
      { prefix, limit: options.limit ?? 0, local: options.local ?? false },
      options.local ? { leader: false, idempotent: true, endpoint: this.endpoints[0] as string } : READ,
      options,
    );
    return {
      items: r.items.map((i) => ({
        key: i.key,
        value: i.value,
        modRevision: i.mod_revision,
        version: i.version,
      })),
      more: r.more,
    };
  }

  /**
   * One node's view of the cluster: the node at `endpoint` when given (no retries
   * elsewhere), otherwise the first of the endpoints that answers.
   */
  async status(options: CallOptions & { endpoint?: string } = {}): Promise<ClusterStatus> {
    const route: Route = options.endpoint
      ? { leader: false, idempotent: true, endpoint: options.endpoint }
      : { leader: false, idempotent: true };
    const s = await this.invoke<WireStatus>('GetClusterStatus', {}, route, options);
    const out = statusFromWire(s);
    if (out.leaderAddress) this.leaderAddress = out.leaderAddress;
    return out;
  }

  /** Adds a member (as a learner with `learner: true`; call again without to promote it). */
  async addMember(
    id: string,
    address: string,
    options: CallOptions & { learner?: boolean; peerAddress?: string } = {},
  ): Promise<readonly Member[]> {
    const r = await this.invoke<{ members: WireMember[] }>(
      'AddMember',
      { id, address, learner: options.learner ?? false, peer_address: options.peerAddress ?? '' },
      ADMIN,
      options,
    );
    return r.members.map(memberFromWire);
  }

  async removeMember(id: string, options: CallOptions = {}): Promise<readonly Member[]> {
    const r = await this.invoke<{ members: WireMember[] }>('RemoveMember', { id }, ADMIN, options);
    return r.members.map(memberFromWire);
  }

  /** Moves leadership to `id` and resolves with the new leader. */
  async transferLeader(id: string, options: CallOptions = {}): Promise<{ leader: string }> {
    const r = await this.invoke<{ leader: string }>('TransferLeader', { id }, ADMIN, options);
    this.leaderAddress = undefined;
    return { leader: r.leader };
  }

  /** Closes every channel; calls in flight fail with CANCELLED or RaftKvClosedError. */
  close(): void {
    this.closed = true;
    for (const c of this.channels.values()) c.close();
    this.channels.clear();
  }

  // --- internals ---

  private async write<T>(method: Method, req: object, options: CallOptions): Promise<T> {
    let session = this.idle.pop() ?? (await this.openSession(options));
    for (let round = 0; ; round++) {
      session.seq += 1;
      const sent = { attempts: 0 };
      try {
        const r = await this.invoke<T>(
          method,
          { ...req, client_id: session.clientId, sequence: session.seq },
          WRITE,
          options,
          sent,
        );
        this.release(session);
        return r;
      } catch (e) {
        if (!(e instanceof RaftKvError) || !isSessionExpired(e)) {
          this.release(session);
          throw e;
        }
        // The session is gone for good: never reuse it.
        this.stats.sessionsExpired++;
        if (sent.attempts === 1 && round === 0) {
          session = await this.openSession(options);
          continue;
        }
        throw new RaftKvSessionExpiredError(e.grpcCode, e.message, e.endpoint, sent.attempts, { cause: e });
      }
    }
  }

  private release(session: Session): void {
    if (this.idle.length < MAX_IDLE_SESSIONS) this.idle.push(session);
  }

  /** A new session from the cluster (a random id against a server older than RegisterSession). */
  private async openSession(options: CallOptions): Promise<Session> {
    try {
      const r = await this.invoke<{ client_id: number }>('RegisterSession', {}, WRITE, options);
      this.stats.sessionsOpened++;
      return { clientId: Number(r.client_id), seq: 0 };
    } catch (e) {
      if (e instanceof RaftKvError && e.code === 'UNIMPLEMENTED') return { clientId: random53(), seq: 0 };
      throw e;
    }
  }

  private channel(address: string): grpc.Client {
    if (this.closed) throw new RaftKvClosedError();
    let c = this.channels.get(address);
    if (!c) {
      c = new grpc.Client(address, this.creds, {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        'grpc.min_reconnect_backoff_ms': 100,
        'grpc.max_receive_message_length': 64 << 20,
        'grpc.max_send_message_length': 64 << 20,
      });
      this.channels.set(address, c);
    }
    return c;
  }

  private unary<T>(
    address: string,
    method: Method,
    req: object,
    deadline: number,
    admin = false,
  ): Promise<T> {
    const def = methodDefs()[method];
    const ch = this.channel(address);
    // what grpc-js would make when given none; only admin calls carry the token
    const md = new grpc.Metadata();
    if (admin && this.adminToken !== undefined) md.set('authorization', `Bearer ${this.adminToken}`);
    return new Promise<T>((resolve, reject) => {
      ch.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        md,
        { deadline },
        (err: grpc.ServiceError | null, res?: object) => {
          if (err) reject(err);
          else resolve(res as T);
        },
      );
    });
  }

  /** Learns the leader's address from the endpoints (first answer naming one wins). */
  private discover(deadline: number): Promise<void> {
    this.discovering ??= (async () => {
      const perCall = Math.min(deadline, Date.now() + Math.min(this.attemptTimeoutMs, 1_000));
      const tries = this.endpoints.map(async (e) => {
        const s = await this.unary<WireStatus>(e, 'GetClusterStatus', {}, perCall);
        if (!s.leader_address) throw new Error('no leader known');
        return s.leader_address;
      });
      try {
        this.leaderAddress = await Promise.any(tries);
      } catch {
        // Nobody knows a leader yet: the caller tries the endpoints in turn.
      }
    })().finally(() => {
      this.discovering = undefined;
    });
    return this.discovering;
  }

  private pick(route: Route): string {
    if (route.endpoint) return route.endpoint;
    if (route.leader && this.leaderAddress) return this.leaderAddress;
    return this.endpoints[this.cursor % this.endpoints.length] as string;
  }

  private async invoke<T>(
    method: Method,
    req: object,
    route: Route,
    options: CallOptions,
    sent?: { attempts: number },
  ): Promise<T> {
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs);
    let last: RaftKvError | undefined;
    this.stats.calls++;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) this.stats.retries++;
      if (this.closed) throw new RaftKvClosedError();
      if (options.signal?.aborted)
        throw new RaftKvError(1, 'the call was cancelled', '', { cause: options.signal.reason });
      if (route.leader && !route.endpoint && !this.leaderAddress && attempt === 0) {
        await this.discover(deadline);
      }
      const address = this.pick(route);
      const attemptDeadline = Math.min(deadline, Date.now() + this.attemptTimeoutMs);
      this.stats.attempts++;
      if (sent) sent.attempts++;
      try {
        return await this.unary<T>(address, method, req, attemptDeadline, route === ADMIN);
      } catch (e) {
        if (e instanceof RaftKvError) throw e;
        const err = e as grpc.ServiceError;
        const code = typeof err.code === 'number' ? err.code : 2;
        const message = (err.details || err.message).replace(/\.? ?Resolution note: *$/, '');
        const attemptTimedOut = code === grpc.status.DEADLINE_EXCEEDED && attemptDeadline < deadline;
        const retry = retryable(code, attemptTimedOut, route.idempotent);
        last =
          code === grpc.status.DEADLINE_EXCEEDED
            ? new RaftKvTimeoutError(
                code,
                `${method} to ${address}: no answer before the deadline${/^Deadline exceeded/.test(message) ? '' : ` (${message})`}`,
                address,
                { cause: e },
              )
            : new RaftKvError(code, message, address, { cause: e });
        if (!retry || route.endpoint || attempt >= this.retries || Date.now() >= deadline || this.closed) {
          throw last;
        }
        // Move on: follow a "the leader is X at addr" hint, or forget the leader and rotate.
        const hint = code === grpc.status.UNAVAILABLE ? leaderHint(message) : undefined;
        if (hint && hint !== address) {
          this.leaderAddress = hint;
        } else {
          if (this.leaderAddress === address) this.leaderAddress = undefined;
          const i = this.endpoints.indexOf(address);
          this.cursor = (i >= 0 ? i + 1 : this.cursor + 1) % this.endpoints.length;
        }
        const wait = Math.min(
          backoffMs(attempt, this.initialBackoffMs, this.maxBackoffMs, Math.random()),
          Math.max(0, deadline - Date.now()),
        );
        await new Promise((r) => setTimeout(r, wait));
        if (Date.now() >= deadline) throw last;
        if (route.leader && !this.leaderAddress) await this.discover(deadline);
      }
    }
  }
}

/** How the server says a write's session expired (FAILED_PRECONDITION, message prefix). */
function isSessionExpired(e: RaftKvError): boolean {
  return e.code === 'FAILED_PRECONDITION' && e.message.startsWith('session expired');
}

const READ: Route = { leader: true, idempotent: true };
const WRITE: Route = { leader: true, idempotent: true };
const ADMIN: Route = { leader: true, idempotent: false };

function memberFromWire(m: WireMember): Member {
  return {
    id: m.id,
    address: m.address,
    peerAddress: m.peer_address ?? '',
    role: m.role,
    matchIndex: m.match_index,
  };
}

function statusFromWire(s: WireStatus): ClusterStatus {
  return {
    id: s.id,
    role: s.role,
    term: s.term,
    leader: s.leader,
    leaderAddress: s.leader_address,
    commitIndex: s.commit_index,
    appliedIndex: s.applied_index,
    lastIndex: s.last_index,
    clusterId: s.cluster_id,
    members: s.members.map(memberFromWire),
  };
}
