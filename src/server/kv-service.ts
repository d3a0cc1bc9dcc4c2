/**
 * Handlers of raft.KeyValueService: validate, propose or read through the RaftNode, map
 * outcomes to responses and failures to gRPC status codes. This is the only place where
 * node errors become status codes.
 *
 * Invariants: a handler never returns data read from the state machine before the read
 * barrier (ReadIndex) resolved, unless the request asked for a local read; a write is
 * acknowledged only after it is applied on this node (hence committed).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { GrpcError, loadProtoFiles, type ServerCall, Status, serviceDefinition } from '../grpc/index.ts';
import type { KvCommand, KvResult, KvStateMachine } from '../kv/state-machine.ts';
import { encodeRegister, encodeRequest } from '../kv/state-machine.ts';
import {
  NoLeaderError,
  NotLeaderError,
  OutcomeUnknownError,
  ProposalDroppedError,
  RaftNodeError,
  RaftNodeStoppedError,
  RejectedError,
  TimeoutError,
} from '../node/errors.ts';
import type { RaftNode } from '../node/raft-node.ts';
import { ConfChangeType, type NodeId } from '../raft/types.ts';
import { certificateNames } from '../transport/peer-auth.ts';
import { defaultPeerAddress, formatMemberAddress, MemberAddressError } from './member-address.ts';

export const PROTO_FILE = fileURLToPath(new URL('../../proto/raftkv.proto', import.meta.url));

export function kvServiceDefinition() {
  return serviceDefinition(loadProtoFiles(PROTO_FILE), 'raft.KeyValueService');
}

export interface KvLimits {
  /** Max key size in bytes (UTF-8). Default 4 KiB. */
  readonly maxKeyBytes: number;
  /** Max value size in bytes (UTF-8). Default 1 MiB. */
  readonly maxValueBytes: number;
  /** Server-side deadline when the client sends none, ms. Default 10 s. */
  readonly defaultTimeoutMs: number;
}

export const defaultLimits: KvLimits = {
  maxKeyBytes: 4096,
  maxValueBytes: 1 << 20,
  defaultTimeoutMs: 10_000,
};

/** What the service needs from the server around it. */
export interface KvServiceContext {
  readonly node: RaftNode<KvResult | null>;
  readonly sm: KvStateMachine;
  readonly clusterId: string;
  readonly limits: KvLimits;
  /** The address clients reach `id` at ('' if unknown). */
  address(id: NodeId): string;
  /** The address peers reach `id` at ('' if unknown). */
  peerAddress?(id: NodeId): string;
  /** Who may change membership and leadership; absent: anyone (embedding, tests). */
  readonly admin?: AdminAuth;
}

/**
 * Admin identities: a call to AddMember, RemoveMember or TransferLeader must present one of
 * `tokens` as `authorization: Bearer TOKEN` metadata, or (mTLS) a client certificate naming
 * one of `certNames` (CN or DNS SAN). With neither configured, every admin call is refused.
 */
export interface AdminAuth {
  readonly tokens?: readonly string[];
  readonly certNames?: readonly string[];
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Throws PERMISSION_DENIED unless `call` carries an admin identity of `auth`. */
export function authorizeAdmin(auth: AdminAuth | undefined, call: ServerCall, what: string): void {
  if (auth === undefined) return;
  const tokens = auth.tokens ?? [];
  const names = auth.certNames ?? [];
  if (tokens.length > 0) {
    const header = call.metadata.get('authorization');
    const value = typeof header === 'string' ? header : '';
    const m = /^Bearer\s+(\S+)$/i.exec(value);
    if (m !== null) {
      const got = digest(m[1] as string);
      // compare digests in constant time: neither the token nor its length leaks
      if (tokens.some((t) => timingSafeEqual(digest(t), got))) return;
    }
  }
  if (names.length > 0) {
    const cert = call.peerCertificate();
    if (cert !== null && certificateNames(cert).some((n) => names.includes(n))) return;
  }
  const ways = [
    ...(tokens.length > 0 ? ['send an admin token (metadata authorization: Bearer TOKEN)'] : []),
    ...(names.length > 0 ? ['use an admin client certificate'] : []),
  ];
  const how =
    ways.length === 0
      ? 'this node has no admin identity configured (neither an admin token nor an admin certificate name)'
      : ways.join(' or ');
  throw new GrpcError(Status.PERMISSION_DENIED, `${what} needs an admin identity: ${how}`);
}

type Long = { toNumber(): number };
type U64 = number | string | Long | null | undefined;

function num(v: U64): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  return v.toNumber();
}

const utf8 = new TextEncoder();
const HOST_PORT = /^(\[[^\]]+\]|[^\s:/]+):\d{1,5}$/;

function checkKey(key: unknown, limits: KvLimits): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new GrpcError(Status.INVALID_ARGUMENT, 'key must not be empty');
  }
  const n = key.length * 3 > limits.maxKeyBytes ? utf8.encode(key).length : key.length;
  if (n > limits.maxKeyBytes) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `key is ${n} bytes; the limit is ${limits.maxKeyBytes}`);
  }
  return key;
}

function checkValue(value: unknown, limits: KvLimits): string {
  const v = typeof value === 'string' ? value : '';
  const n = v.length * 3 > limits.maxValueBytes ? utf8.encode(v).length : v.length;
  if (n > limits.maxValueBytes) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `value is ${n} bytes; the limit is ${limits.maxValueBytes}`);
  }
  return v;
}

/** Map a node-layer failure to a status; anything unexpected is rethrown (INTERNAL at the edge). */
export function toGrpcError(err: unknown, ctx: KvServiceContext): unknown {
  if (err instanceof GrpcError || !(err instanceof RaftNodeError)) return err;
  if (err instanceof TimeoutError) return new GrpcError(Status.DEADLINE_EXCEEDED, err.message);
  if (err instanceof NotLeaderError) {
    const addr = err.leader ? ctx.address(err.leader) : '';
    return new GrpcError(
      Status.UNAVAILABLE,
      err.leader ? `not the leader; the leader is ${err.leader}${addr ? ` at ${addr}` : ''}` : err.message,
    );
  }
  if (err instanceof NoLeaderError) {
    return new GrpcError(
      Status.UNAVAILABLE,
      `no leader: an election is in progress or a quorum is unreachable`,
    );
  }
  if (
    err instanceof ProposalDroppedError ||
    err instanceof RaftNodeStoppedError ||
    err instanceof OutcomeUnknownError
  ) {
    return new GrpcError(Status.UNAVAILABLE, err.message);
  }
  if (err instanceof RejectedError) return new GrpcError(Status.FAILED_PRECONDITION, err.message);
  return new GrpcError(Status.UNAVAILABLE, err.message);
}

/**
 * When the node stops waiting for a call: the client's deadline, or the default timeout. A plain
 * number (no AbortSignal per call); the gRPC layer itself ends the call at its deadline, and a
 * cancelled call's proposal is already in the log, so it is left to resolve or expire.
 */
function deadline(call: ServerCall, limits: KvLimits): number {
  return call.deadline ?? Date.now() + limits.defaultTimeoutMs;
}

async function write(ctx: KvServiceContext, call: ServerCall, client: U64, seq: U64, cmd: KvCommand) {
  const c = num(client);
  const s = num(seq);
  if ((c === 0) !== (s === 0)) {
    throw new GrpcError(Status.INVALID_ARGUMENT, 'client_id and sequence must be both set or both zero');
  }
  try {
    const r = await ctx.node.propose(encodeRequest({ client: c, seq: s, cmd }), deadline(call, ctx.limits));
    const res = r.result;
    if (!res || res.kind === 'duplicate') {
      throw new GrpcError(
        Status.FAILED_PRECONDITION,
        `sequence ${s} of client ${c} is older than one already applied; use a new sequence number`,
      );
    }
    if (res.kind === 'session-expired') {
      throw new GrpcError(
        Status.FAILED_PRECONDITION,
        `${SESSION_EXPIRED_PREFIX}: client ${c} has no session (evicted or never registered); ` +
          'this write was not applied; open a new session with RegisterSession',
      );
    }
    if (res.kind !== 'put' && res.kind !== 'delete' && res.kind !== 'cas') {
      throw new GrpcError(Status.INTERNAL, `the state machine refused the command: ${describe(res)}`);
    }
    return res;
  } catch (err) {
    throw toGrpcError(err, ctx);
  }
}

/** How a write on an expired session's error message starts (clients match on it). */
export const SESSION_EXPIRED_PREFIX = 'session expired';

function describe(r: KvResult): string {
  return r.kind === 'invalid' ? r.reason : r.kind;
}

async function barrier(ctx: KvServiceContext, call: ServerCall, local: boolean | undefined): Promise<void> {
  if (local) return;
  try {
    await ctx.node.read(deadline(call, ctx.limits));
  } catch (err) {
    throw toGrpcError(err, ctx);
  }
}

interface PutReq {
  key: string;
  value: string;
  client_id?: U64;
  sequence?: U64;
}
interface GetReq {
  key: string;
  local?: boolean;
}
interface DeleteReq {
  key: string;
  client_id?: U64;
  sequence?: U64;
}
interface CasReq {
  key: string;
  value: string;
  expected_value?: string;
  expect_absent?: boolean;
  expected_version?: U64;
  client_id?: U64;
  sequence?: U64;
}
interface ListReq {
  prefix?: string;
  limit?: number;
  local?: boolean;
}
interface MemberReq {
  id: string;
  address?: string;
  learner?: boolean;
  peer_address?: string;
}

function revision(r: WriteResult): number {
  return r.revision;
}

type WriteResult = Extract<KvResult, { kind: 'put' | 'delete' | 'cas' }>;

export function kvHandlers(ctx: KvServiceContext) {
  const { limits } = ctx;
  const members = () => {
    const st = ctx.node.status();
    const match = new Map(st.progress.map((p) => [p.id, p.match]));
    const out = [];
    for (const id of st.conf.voters) {
      out.push({
        id,
        address: ctx.address(id),
        role: 'voter',
        match_index: id === st.id ? st.lastIndex : (match.get(id) ?? 0),
        peer_address: ctx.peerAddress?.(id) ?? '',
      });
    }
    for (const id of st.conf.learners) {
      out.push({
        id,
        address: ctx.address(id),
        role: 'learner',
        match_index: match.get(id) ?? 0,
        peer_address: ctx.peerAddress?.(id) ?? '',
      });
    }
    return out;
  };
  return {
    async Put(req: PutReq, call: ServerCall) {
      const key = checkKey(req.key, limits);
      const value = checkValue(req.value, limits);
      const r = await write(ctx, call, req.client_id, req.sequence, { kind: 'put', key, value });
      return { revision: revision(r) };
    },
    async Get(req: GetReq, call: ServerCall) {
      const key = checkKey(req.key, limits);
      await barrier(ctx, call, req.local);
      const v = ctx.sm.get(key);
      return v
        ? { value: v.value, found: true, mod_revision: v.modRevision, version: v.version }
        : { value: '', found: false, mod_revision: 0, version: 0 };
    },
    async Delete(req: DeleteReq, call: ServerCall) {
      const key = checkKey(req.key, limits);
      const r = await write(ctx, call, req.client_id, req.sequence, { kind: 'delete', key });
      return { deleted: r.kind === 'delete' && r.existed, revision: revision(r) };
    },
    async CompareAndSwap(req: CasReq, call: ServerCall) {
      const key = checkKey(req.key, limits);
      const value = checkValue(req.value, limits);
      const expectedVersion = num(req.expected_version);
      const expected = req.expect_absent ? null : checkValue(req.expected_value ?? '', limits);
      const cmd: KvCommand =
        expectedVersion > 0
          ? { kind: 'cas', key, value, expected, expectedVersion }
          : { kind: 'cas', key, value, expected };
      const r = await write(ctx, call, req.client_id, req.sequence, cmd);
      return { swapped: r.kind === 'cas' && r.swapped, revision: revision(r) };
    },
    async List(req: ListReq, call: ServerCall) {
      const limit = req.limit && req.limit > 0 ? req.limit : 100;
      if (limit > 10_000)
        throw new GrpcError(Status.INVALID_ARGUMENT, `limit ${limit} is above the maximum of 10000`);
      await barrier(ctx, call, req.local);
      const rows = ctx.sm.list(req.prefix ?? '', limit + 1);
      return {
        items: rows.slice(0, limit).map(([key, v]) => ({
          key,
          value: v.value,
          mod_revision: v.modRevision,
          version: v.version,
        })),
        more: rows.length > limit,
      };
    },
    GetClusterStatus() {
      const st = ctx.node.status();
      return {
        id: st.id,
        role: st.role,
        term: st.term,
        leader: st.leader,
        commit_index: st.commit,
        applied_index: st.applied,
        members: members(),
        cluster_id: ctx.clusterId,
        last_index: st.lastIndex,
        leader_address: st.leader ? ctx.address(st.leader) : '',
      };
    },
    async AddMember(req: MemberReq, call: ServerCall) {
      authorizeAdmin(ctx.admin, call, 'AddMember');
      if (typeof req.id !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(req.id)) {
        throw new GrpcError(Status.INVALID_ARGUMENT, 'member id must be 1-64 characters of [A-Za-z0-9_.-]');
      }
      if (!req.address || !HOST_PORT.test(req.address)) {
        throw new GrpcError(
          Status.INVALID_ARGUMENT,
          `member address must be host:port, got ${JSON.stringify(req.address ?? '')}`,
        );
      }
      if (req.peer_address && !HOST_PORT.test(req.peer_address)) {
        throw new GrpcError(
          Status.INVALID_ARGUMENT,
          `member peer address must be host:port, got ${JSON.stringify(req.peer_address)}`,
        );
      }
      let context: string;
      try {
        context = formatMemberAddress({
          client: req.address,
          peer: req.peer_address || defaultPeerAddress(req.address),
        });
      } catch (e) {
        if (e instanceof MemberAddressError)
          throw new GrpcError(Status.INVALID_ARGUMENT, `${e.message} (peer_address)`);
        throw e;
      }
      const type = req.learner ? ConfChangeType.AddLearner : ConfChangeType.AddVoter;
      try {
        await ctx.node.changeMembership({ type, node: req.id, context }, deadline(call, limits));
      } catch (err) {
        throw toGrpcError(err, ctx);
      }
      return { members: members() };
    },
    async RemoveMember(req: MemberReq, call: ServerCall) {
      authorizeAdmin(ctx.admin, call, 'RemoveMember');
      if (typeof req.id !== 'string' || req.id === '')
        throw new GrpcError(Status.INVALID_ARGUMENT, 'member id is empty');
      try {
        await ctx.node.changeMembership(
          { type: ConfChangeType.Remove, node: req.id },
          deadline(call, limits),
        );
      } catch (err) {
        throw toGrpcError(err, ctx);
      }
      return { members: members() };
    },
    async RegisterSession(_req: object, call: ServerCall) {
      try {
        const r = await ctx.node.propose(encodeRegister(), deadline(call, limits));
        if (r.result?.kind !== 'register') {
          throw new GrpcError(Status.INTERNAL, 'the state machine did not open a session');
        }
        return { client_id: r.result.client };
      } catch (err) {
        throw toGrpcError(err, ctx);
      }
    },
    async TransferLeader(req: MemberReq, call: ServerCall) {
      authorizeAdmin(ctx.admin, call, 'TransferLeader');
      try {
        ctx.node.transferLeadership(req.id);
      } catch (err) {
        throw toGrpcError(err, ctx);
      }
      const until = deadline(call, limits);
      while (Date.now() < until && !call.cancelled) {
        const l = ctx.node.leader;
        if (l === req.id) return { leader: l };
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new GrpcError(
        Status.DEADLINE_EXCEEDED,
        `leadership did not move to ${req.id} before the deadline`,
      );
    },
  };
}
