/**
 * `raftkv cluster`: a local cluster of N `raftkv serve` processes on 127.0.0.1, for trying
 * raftkv out. Ports start at --base-port (free ones are chosen, and said, when taken);
 * data lives under --data-dir/<id> and survives restarts unless --clean. Each node's log
 * lines are prefixed with its id. Ctrl-C (SIGINT) or SIGTERM stops every node gracefully.
 *
 * Each node's peer port is its client port + 1000 (a free one when taken). Peers prove a
 * cluster secret (--data-dir/peer-secret) and admin calls need a token
 * (--data-dir/admin-token); both are generated with mode 0600 when absent, and reused.
 *
 * A node that fails to start or exits later is reported loudly (how it exited, its last lines:
 * supervisor.ts) and the others go on: the cluster serves while a majority runs. The command exits 0
 * when asked to stop, 1 when no majority can run (or no leader is elected within 60 s).
 *
 * Invariant: every child started is stopped before this command returns.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { RaftKvClient } from '../client/client.ts';
import { PEER_PORT_OFFSET } from '../server/member-address.ts';
import { bool, type CommandSpec, int, type Parsed, str } from './args.ts';
import { DEFAULT_ADMIN_TOKEN_FILE, type Io } from './commands.ts';
import { CliError } from './errors.ts';
import { freePort } from './free-port.ts';
import { describeDown, Supervisor, startSupervisorHttp } from './supervisor.ts';

export const clusterSpec: CommandSpec = {
  name: 'cluster',
  summary: 'Run a local cluster of N nodes on 127.0.0.1 with a dashboard (Ctrl-C stops them all).',
  args: '',
  arity: [0, 0],
  details: 'Data is kept under --data-dir/<id> across runs; --clean wipes it first.',
  flags: {
    nodes: { type: 'string', value: 'N', help: 'number of nodes (1-9)', default: '3' },
    'data-dir': {
      type: 'string',
      value: 'DIR',
      help: 'parent of the nodes’ data directories',
      default: 'state',
    },
    clean: { type: 'boolean', help: 'delete the nodes’ data directories first' },
    'base-port': { type: 'string', value: 'PORT', help: 'port of n1; n2 gets the next...', default: '50051' },
    'tick-ms': { type: 'string', value: 'MS', help: 'Raft tick of every node', default: '100' },
    'http-base-port': {
      type: 'string',
      value: 'PORT',
      help: 'HTTP port (dashboard, /status, /metrics) of n1; n2 gets the next...',
      default: '8080',
    },
  },
};

/** Writes 32 random bytes (hex) to `file` with mode 0600 unless it exists; returns the file. */
export async function ensureSecretFile(file: string): Promise<string> {
  try {
    await writeFile(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return file;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

const COLORS = [
  '\x1b[36m',
  '\x1b[35m',
  '\x1b[32m',
  '\x1b[33m',
  '\x1b[34m',
  '\x1b[91m',
  '\x1b[92m',
  '\x1b[93m',
  '\x1b[94m',
];

export async function runCluster(p: Parsed, io: Io): Promise<number> {
  const n = int(p, 'nodes', 1, 9) ?? 3;
  const dataDir = str(p, 'data-dir') ?? 'state';
  const basePort = int(p, 'base-port', 1, 65535 - 8) ?? 50051;
  const tickMs = int(p, 'tick-ms', 1, 60_000) ?? 100;
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);

  if (bool(p, 'clean')) {
    // Only the node directories this command creates: never the parent itself.
    const names = await readdir(dataDir).catch(() => [] as string[]);
    for (const name of names)
      if (/^n\d+$/.test(name)) await rm(join(dataDir, name), { recursive: true, force: true });
    io.out(`cleaned ${dataDir}/n*\n`);
  }

  const addrs = new Map<string, string>();
  for (const [i, id] of ids.entries()) {
    let port = basePort + i;
    if (!(await portFree(port))) {
      const other = await freePort();
      io.out(`port ${port} is in use; ${id} listens on 127.0.0.1:${other} instead\n`);
      port = other;
    }
    addrs.set(id, `127.0.0.1:${port}`);
  }
  const peerAddrs = new Map<string, string>();
  const taken = new Set([...addrs.values()]);
  for (const [i, id] of ids.entries()) {
    let port = basePort + PEER_PORT_OFFSET + i;
    if (port > 65535 || taken.has(`127.0.0.1:${port}`) || !(await portFree(port))) {
      const other = await freePort();
      io.out(`port ${port} is in use; ${id} listens for peers on 127.0.0.1:${other} instead\n`);
      port = other;
    }
    peerAddrs.set(id, `127.0.0.1:${port}`);
  }
  await mkdir(dataDir, { recursive: true });
  const secretFile = await ensureSecretFile(join(dataDir, 'peer-secret'));
  const tokenFile = await ensureSecretFile(join(dataDir, 'admin-token'));
  const httpBase = int(p, 'http-base-port', 1, 65535 - 8) ?? 8080;
  const httpAddrs = new Map<string, string>();
  for (const [i, id] of ids.entries()) {
    let port = httpBase + i;
    if (!(await portFree(port))) {
      const other = await freePort();
      io.out(`port ${port} is in use; ${id} serves HTTP on 127.0.0.1:${other} instead\n`);
      port = other;
    }
    httpAddrs.set(id, `127.0.0.1:${port}`);
  }
  const httpPeers = [...httpAddrs].map(([id, a]) => `${id}=${a}`).join(',');
  const peers = [...addrs].map(([id, a]) => `${id}=${a}/${peerAddrs.get(id)}`).join(',');
  const entry = process.argv[1];
  if (!entry) throw new CliError('cannot tell how this program was started (process.argv[1] is empty)');
  const color = process.stdout.isTTY === true;
  const children = new Map<string, ChildProcess>();
  const exited = new Map<string, Promise<number | null>>();
  let stopping = false;
  let startedAll = false;
  const sup = new Supervisor(
    ids.map((id) => ({ id, address: addrs.get(id) as string, http: httpAddrs.get(id) as string })),
  );
  // Resolved once fewer than a majority of the nodes can run: the cluster cannot serve any more.
  let lostMajority: () => void = () => undefined;
  const noMajority = new Promise<void>((resolve) => {
    lostMajority = resolve;
  });
  sup.onDown((r) => {
    if (stopping) return;
    io.err(describeDown(r, sup, startedAll ? 'while running' : 'during start-up'));
    if (!sup.majority()) lostMajority();
  });

  const width = Math.max(...ids.map((id) => id.length));
  for (const [i, id] of ids.entries()) {
    const child = spawn(
      process.execPath,
      [
        ...process.execArgv,
        entry,
        'serve',
        '--id',
        id,
        '--listen',
        addrs.get(id) as string,
        '--peer-listen',
        peerAddrs.get(id) as string,
        '--peers',
        peers,
        '--peer-secret-file',
        secretFile,
        '--admin-token-file',
        tokenFile,
        '--data-dir',
        join(dataDir, id),
        '--tick-ms',
        String(tickMs),
        '--http',
        httpAddrs.get(id) as string,
        '--http-peers',
        httpPeers,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, RAFTKV_LOG_FORMAT: color ? 'pretty' : 'json' },
      },
    );
    const prefix = color
      ? `${COLORS[i % COLORS.length]}${id.padEnd(width)}\x1b[0m | `
      : `${id.padEnd(width)} | `;
    for (const [stream, name] of [
      [child.stdout, 'out'],
      [child.stderr, 'err'],
    ] as const) {
      createInterface({ input: stream }).on('line', (l) => {
        sup.noteLine(id, name, l);
        io.out(`${prefix}${l}\n`);
      });
    }
    children.set(id, child);
    sup.watch(id, child);
    exited.set(
      id,
      new Promise((resolve) =>
        child.once('exit', (code) => {
          children.delete(id);
          resolve(code);
        }),
      ),
    );
  }

  const stopAll = async (): Promise<void> => {
    stopping = true;
    for (const c of children.values()) c.kill('SIGTERM');
    const force = setTimeout(() => {
      for (const c of children.values()) c.kill('SIGKILL');
    }, 15_000);
    await Promise.all(exited.values());
    clearTimeout(force);
  };

  const signalled = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  const downList = () =>
    sup
      .down()
      .map((r) => r.id)
      .join(', ');

  // Wait for a leader, unless a majority of the nodes is gone or we are told to stop first. A node that
  // fails to start is reported (onDown) and the others go on.
  const client = new RaftKvClient({ endpoints: [...addrs.values()], timeoutMs: 1_000, retries: 0 });
  const ready = (async () => {
    const end = Date.now() + 60_000;
    while (!stopping && Date.now() < end) {
      try {
        const st = await client.status();
        if (st.leader) return st.leader;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return '';
  })();
  const first = await Promise.race([
    ready.then((leader) => ({ kind: 'ready' as const, leader })),
    noMajority.then(() => ({ kind: 'no-majority' as const, leader: '' })),
    signalled.then(() => ({ kind: 'signal' as const, leader: '' })),
  ]);
  client.close();
  if (first.kind !== 'ready' || !first.leader) {
    if (first.kind === 'no-majority') {
      io.err(
        `raftkv cluster: ${downList()} exited during start-up; ${sup.running()} of ${n} nodes cannot form a majority: stopping\n`,
      );
    } else if (first.kind === 'ready')
      io.err('raftkv cluster: no leader was elected within 60 s; stopping\n');
    await stopAll();
    return first.kind === 'signal' ? 0 : 1;
  }
  startedAll = true;
  for (const r of sup.reports()) if (r.state !== 'down') sup.markUp(r.id);
  // The supervisor's report (GET /nodes) for the dashboard; GET / opens the dashboard of a node that is up.
  const supPort = httpBase + n <= 65535 && (await portFree(httpBase + n)) ? httpBase + n : await freePort();
  const supHttp = await startSupervisorHttp(sup, '127.0.0.1', supPort).catch(() => null);
  const endpoints = [...addrs.values()].join(',');
  const defaults = [...addrs.values()].every((a, i) => a === `127.0.0.1:${50051 + i}`) && n === 3;
  const ep = defaults ? '' : ` --endpoints ${endpoints}`;
  const upIds = ids.filter((id) => !sup.down().some((r) => r.id === id));
  const a1 = addrs.get(upIds[0] ?? 'n1') as string;
  const dash = `http://${httpAddrs.get(upIds[0] ?? 'n1')}/${supHttp ? `?supervisor=${supHttp.url.slice(7)}` : ''}`;
  const down = sup.down();
  const b = [
    '',
    `raftkv cluster: ${upIds.length} of ${n} node${n > 1 ? 's' : ''} up, leader ${first.leader}`,
    ...sup
      .reports()
      .map((r) =>
        r.state === 'down'
          ? `  ${r.id.padEnd(width)}  ${r.address}  DOWN (${r.exit}): ${r.lastLines.at(-1) ?? 'no output'}`
          : `  ${r.id.padEnd(width)}  ${r.address}  peers ${peerAddrs.get(r.id)}  data ${join(dataDir, r.id)}`,
      ),
    `  peers prove the secret in ${secretFile}; admin calls send the token in ${tokenFile}`,
    ...(down.length > 0
      ? [
          '',
          `!!! ${down.map((r) => r.id).join(', ')} ${down.length > 1 ? 'are' : 'is'} DOWN; the other ${upIds.length} serve on (a majority). See the lines above for why.`,
        ]
      : []),
    '',
    `Dashboard: ${dash}   (metrics: /metrics, status JSON: /status)`,
    ...(supHttp
      ? [`Node states: ${supHttp.url}/nodes   (${supHttp.url}/ opens the dashboard of a node that is up)`]
      : []),
    '',
    'Try:',
    `  npx raftkv put foo bar${ep}`,
    `  npx raftkv get foo${ep}`,
    `  npx raftkv status${ep}`,
    `  npx raftkv transfer-leader n2${ep}${tokenFile === DEFAULT_ADMIN_TOKEN_FILE ? '' : ` --admin-token-file ${tokenFile}`}`,
    `  grpcurl -plaintext ${a1} raft.KeyValueService/GetClusterStatus`,
    `  grpcurl -plaintext -d '{"key": "foo", "value": "bar"}' ${a1} raft.KeyValueService/Put`,
    `  grpcurl -plaintext -d '{"key": "foo"}' ${a1} raft.KeyValueService/Get`,
    `  grpcurl -plaintext -d '{"key": "foo"}' ${a1} raft.KeyValueService/Delete`,
    '',
    `Ctrl-C stops all nodes; data stays in ${dataDir}/ (--clean wipes it).`,
    '',
  ];
  io.out(b.join('\n'));

  const outcome = await Promise.race([
    signalled.then(() => 'signal' as const),
    noMajority.then(() => 'no-majority' as const),
  ]);
  if (outcome === 'signal') io.out('\nraftkv cluster: stopping all nodes...\n');
  else {
    io.err(
      `raftkv cluster: ${downList()} ${sup.down().length > 1 ? 'are' : 'is'} down; ${sup.running()} of ${n} nodes cannot form a majority: stopping\n`,
    );
  }
  await stopAll();
  await supHttp?.close();
  io.out(outcome === 'signal' ? 'raftkv cluster: all nodes stopped\n' : 'raftkv cluster: stopped\n');
  return outcome === 'signal' ? 0 : 1;
}
