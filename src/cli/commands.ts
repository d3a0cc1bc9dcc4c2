/**
 * The client commands of `raftkv` (put, get, del, cas, list, status, members,
 * transfer-leader) and `inspect`. Each prints data as text, or as JSON with --json.
 */

import { existsSync, readFileSync } from 'node:fs';
import type { ClusterStatus } from '../client/client.ts';
import { RaftKvClient } from '../client/client.ts';
import { RaftKvError } from '../client/errors.ts';
import { StorageError } from '../storage/errors.ts';
import { inspect } from '../storage/inspect.ts';
import { bool, type CommandSpec, type Flags, hostPort, int, type Parsed, str } from './args.ts';
import { CliError, UsageError } from './errors.ts';

export const DEFAULT_ENDPOINTS = '127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053';
/** Where `raftkv cluster` (default --data-dir) keeps its admin token. */
export const DEFAULT_ADMIN_TOKEN_FILE = 'state/admin-token';

export const CLIENT_GLOBALS: Flags = {
  endpoints: {
    type: 'string',
    value: 'host:port,...',
    help: `nodes to talk to (default $RAFTKV_ENDPOINTS, else ${DEFAULT_ENDPOINTS})`,
  },
  json: { type: 'boolean', help: 'print data as JSON' },
  timeout: {
    type: 'string',
    value: 'MS',
    help: 'deadline of the whole call, retries included',
    default: '5000',
  },
  ca: { type: 'string', value: 'FILE', help: 'use TLS, verifying servers with this CA (PEM)' },
  cert: { type: 'string', value: 'FILE', help: 'client certificate for mTLS (PEM)' },
  key: { type: 'string', value: 'FILE', help: 'client key for mTLS (PEM)' },
  tls: { type: 'boolean', help: 'use TLS with the system CAs' },
  'admin-token-file': {
    type: 'string',
    value: 'FILE',
    help: `admin token for members and transfer-leader (default $RAFTKV_ADMIN_TOKEN_FILE, else ${DEFAULT_ADMIN_TOKEN_FILE} when it exists, as raftkv cluster writes it)`,
  },
};

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

export interface ClientCommand {
  readonly spec: CommandSpec;
  run(p: Parsed, client: RaftKvClient, io: Io): Promise<number>;
}

function spec(
  name: string,
  args: string,
  arity: [number, number],
  summary: string,
  flags: Flags = {},
  details?: string,
): CommandSpec {
  return { name, args, arity, summary, flags, globals: CLIENT_GLOBALS, ...(details ? { details } : {}) };
}

const json = (p: Parsed) => bool(p, 'json');
const pos = (p: Parsed, i: number) => p.positionals[i] as string;
const line = (io: Io, s: string) => io.out(`${s}\n`);

export function makeClient(p: Parsed, env: NodeJS.ProcessEnv): RaftKvClient {
  const raw = str(p, 'endpoints') ?? env['RAFTKV_ENDPOINTS'] ?? DEFAULT_ENDPOINTS;
  const endpoints = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((e) => hostPort(e, '--endpoints'));
  if (endpoints.length === 0) throw new UsageError('--endpoints lists no address');
  const timeoutMs = int(p, 'timeout', 1) ?? 5_000;
  const ca = str(p, 'ca');
  const cert = str(p, 'cert');
  const key = str(p, 'key');
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together');
  const useTls = bool(p, 'tls') || ca !== undefined || cert !== undefined;
  const tokenFile =
    str(p, 'admin-token-file') ??
    env['RAFTKV_ADMIN_TOKEN_FILE'] ??
    (existsSync(DEFAULT_ADMIN_TOKEN_FILE) ? DEFAULT_ADMIN_TOKEN_FILE : undefined);
  let adminToken: string | undefined;
  if (tokenFile !== undefined) {
    try {
      adminToken = readFileSync(tokenFile, 'utf8').trim();
    } catch (e) {
      throw new CliError(`cannot read the admin token file ${tokenFile}: ${(e as Error).message}`);
    }
    if (adminToken === '') throw new CliError(`the admin token file ${tokenFile} is empty`);
  }
  return new RaftKvClient({
    endpoints,
    timeoutMs,
    ...(adminToken !== undefined ? { adminToken } : {}),
    ...(useTls
      ? {
          tls: {
            ...(ca !== undefined ? { ca } : {}),
            ...(cert !== undefined ? { cert } : {}),
            ...(key !== undefined ? { key } : {}),
          },
        }
      : {}),
  });
}

function checkKey(key: string): string {
  if (key === '') throw new UsageError('KEY must not be empty');
  return key;
}

export const clientCommands: readonly ClientCommand[] = [
  {
    spec: spec('put', 'KEY VALUE', [2, 2], 'Set KEY to VALUE (exactly once, even when retried).'),
    async run(p, c, io) {
      const r = await c.put(checkKey(pos(p, 0)), pos(p, 1));
      line(io, json(p) ? JSON.stringify(r) : `OK (revision ${r.revision})`);
      return 0;
    },
  },
  {
    spec: spec(
      'get',
      'KEY',
      [1, 1],
      'Print the value of KEY (linearizable unless --local); "(not found)" on stderr when absent.',
      {
        local: { type: 'boolean', help: 'read the first endpoint’s local state (fast, possibly stale)' },
      },
    ),
    async run(p, c, io) {
      const r = await c.get(checkKey(pos(p, 0)), { local: bool(p, 'local') });
      if (json(p)) line(io, JSON.stringify({ key: pos(p, 0), ...r }));
      else if (r.found) line(io, r.value);
      else io.err(`(not found) ${pos(p, 0)}\n`);
      return 0;
    },
  },
  {
    spec: spec('del', 'KEY', [1, 1], 'Delete KEY.'),
    async run(p, c, io) {
      const r = await c.delete(checkKey(pos(p, 0)));
      line(
        io,
        json(p)
          ? JSON.stringify(r)
          : r.deleted
            ? `deleted (revision ${r.revision})`
            : 'not found (nothing deleted)',
      );
      return 0;
    },
  },
  {
    spec: spec(
      'cas',
      'KEY VALUE',
      [2, 2],
      'Compare-and-swap: set KEY to VALUE only if the condition holds.',
      {
        expect: { type: 'string', value: 'OLD', help: 'the key must hold OLD' },
        'expect-absent': { type: 'boolean', help: 'the key must not exist' },
        'expect-version': { type: 'string', value: 'N', help: 'the key must have had exactly N writes' },
      },
      'Exactly one of --expect, --expect-absent, --expect-version. Prints swapped or not swapped.',
    ),
    async run(p, c, io) {
      const expected = str(p, 'expect');
      const absent = bool(p, 'expect-absent');
      const version = int(p, 'expect-version', 1);
      const n = (expected !== undefined ? 1 : 0) + (absent ? 1 : 0) + (version !== undefined ? 1 : 0);
      if (n !== 1)
        throw new UsageError('give exactly one of --expect, --expect-absent, --expect-version', 'cas');
      const r = await c.compareAndSwap(checkKey(pos(p, 0)), pos(p, 1), {
        ...(expected !== undefined ? { expectedValue: expected } : {}),
        ...(absent ? { expectAbsent: true } : {}),
        ...(version !== undefined ? { expectedVersion: version } : {}),
      });
      line(io, json(p) ? JSON.stringify(r) : r.swapped ? `swapped (revision ${r.revision})` : 'not swapped');
      return 0;
    },
  },
  {
    spec: spec('list', '[PREFIX]', [0, 1], 'List keys starting with PREFIX, in key order.', {
      limit: { type: 'string', value: 'N', help: 'at most N keys (max 10000)', default: '100' },
      local: { type: 'boolean', help: 'read the first endpoint’s local state (possibly stale)' },
    }),
    async run(p, c, io) {
      const r = await c.list(p.positionals[0] ?? '', {
        limit: int(p, 'limit', 1, 10_000) ?? 100,
        local: bool(p, 'local'),
      });
      if (json(p)) {
        line(io, JSON.stringify(r));
        return 0;
      }
      for (const kv of r.items) line(io, `${kv.key}\t${kv.value}`);
      if (r.more) io.err(`(more keys match; raise --limit)\n`);
      return 0;
    },
  },
  {
    spec: spec('status', '', [0, 0], 'Show every member: id, address, role, term, commit, applied, leader.'),
    async run(p, c, io) {
      const first = await c.status();
      const rows: (ClusterStatus | { id: string; address: string; error: string })[] = [];
      await Promise.all(
        first.members.map(async (m, i) => {
          try {
            rows[i] = m.address
              ? await c.status({ endpoint: m.address, timeoutMs: 2_000 })
              : { id: m.id, address: '', error: 'address unknown' };
          } catch (e) {
            rows[i] = { id: m.id, address: m.address, error: e instanceof RaftKvError ? e.code : String(e) };
          }
        }),
      );
      if (json(p)) {
        line(io, JSON.stringify(rows.map((r, i) => ({ address: first.members[i]?.address ?? '', ...r }))));
        return 0;
      }
      const table = [['ID', 'ADDRESS', 'ROLE', 'TERM', 'COMMIT', 'APPLIED', 'LEADER']];
      for (const [i, r] of rows.entries()) {
        const address = first.members[i]?.address ?? '';
        if ('error' in r) table.push([r.id, address, `unreachable (${r.error})`, '-', '-', '-', '-']);
        else {
          const learner = first.members[i]?.role === 'learner' ? ' (learner)' : '';
          table.push([
            r.id,
            address,
            r.role + learner,
            String(r.term),
            String(r.commitIndex),
            String(r.appliedIndex),
            r.leader || '-',
          ]);
        }
      }
      io.out(renderTable(table));
      return 0;
    },
  },
  {
    spec: spec(
      'members',
      'list|add|remove [ID] [HOST:PORT]',
      [1, 3],
      'members list; members add ID HOST:PORT [--learner] [--peer-address HOST:PORT]; members remove ID.',
      {
        learner: { type: 'boolean', help: 'add as a non-voting learner (add it again without to promote)' },
        'peer-address': {
          type: 'string',
          value: 'HOST:PORT',
          help: 'the new member’s peer address (default: its client port + 1000)',
        },
      },
    ),
    async run(p, c, io) {
      const [sub, id, addr] = p.positionals;
      let members: readonly {
        id: string;
        address: string;
        peerAddress: string;
        role: string;
        matchIndex: number;
      }[];
      if (sub === 'list') {
        if (p.positionals.length !== 1) throw new UsageError('members list takes no arguments', 'members');
        members = (await c.status()).members;
      } else if (sub === 'add') {
        if (id === undefined || addr === undefined)
          throw new UsageError('usage: members add ID HOST:PORT', 'members');
        const peerAddress = str(p, 'peer-address');
        members = await c.addMember(id, hostPort(addr, 'HOST:PORT'), {
          learner: bool(p, 'learner'),
          ...(peerAddress !== undefined ? { peerAddress: hostPort(peerAddress, '--peer-address') } : {}),
        });
      } else if (sub === 'remove') {
        if (id === undefined || addr !== undefined)
          throw new UsageError('usage: members remove ID', 'members');
        members = await c.removeMember(id);
      } else {
        throw new UsageError(
          `unknown members subcommand ${JSON.stringify(sub)} (list, add or remove)`,
          'members',
        );
      }
      if (json(p)) line(io, JSON.stringify(members));
      else
        io.out(
          renderTable([
            ['ID', 'ADDRESS', 'PEER ADDRESS', 'ROLE'],
            ...members.map((m) => [m.id, m.address, m.peerAddress || '-', m.role]),
          ]),
        );
      return 0;
    },
  },
  {
    spec: spec('transfer-leader', 'ID', [1, 1], 'Move leadership to member ID.'),
    async run(p, c, io) {
      const r = await c.transferLeader(pos(p, 0));
      line(io, json(p) ? JSON.stringify(r) : `leader is now ${r.leader}`);
      return 0;
    },
  },
];

export const inspectSpec: CommandSpec = {
  name: 'inspect',
  args: 'DIR',
  arity: [1, 1],
  summary:
    'Print a data directory’s hard state, snapshot metadata and log entries as JSON lines (read-only).',
  flags: { records: { type: 'boolean', help: 'print the raw WAL records instead of the replayed log' } },
};

export async function runInspect(p: Parsed, io: Io): Promise<number> {
  try {
    await inspect(pos(p, 0), (l) => io.out(`${l}\n`), { records: bool(p, 'records') });
  } catch (e) {
    if (e instanceof StorageError) throw new CliError(`${e.name} [${e.code}]: ${e.message}`);
    throw e;
  }
  return 0;
}

export function renderTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return (
    rows
      .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  '))
      .join('\n') + '\n'
  );
}
