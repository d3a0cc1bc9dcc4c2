/**
 * raftkv next to a 3-member etcd on this machine, measured the same way
 * (bench/tools): the C++ closed-loop load generator grpcload, 256-byte
 * values over 10,000 keys, one connection, writes and linearizable reads sent to the
 * leader. Each row runs etcd, then raftkv, each on a fresh cluster with the other one
 * stopped, `--reps` times alternated; server CPU is summed over the 3 members from /proc.
 * Before the rows and after them, with nothing else running, it measures the floor of a put
 * at 1 client (bench/lib/floor.ts: two durable writes plus two loopback round trips) and
 * reports the c1 p50s next to it.
 *
 *   npm run bench:etcd -- [--duration 10] [--reps 1] [--rows put:1,put:16,put:64,put:256,get:64]
 *                         [--out bench/results/NAME] [--only raftkv|etcd]
 *   RAFTKV_BENCH_ARGS="--flag value" adds serve flags to every raftkv member (to try settings);
 *   RAFTKV_BENCH_NOBUILD=1 uses dist/ as it is instead of building it first.
 *
 * Needs: etcd (apt-get install etcd-server etcd-client, done here when root), grpcload
 * (bench/bin/grpcload, built from bench/tools by scripts/build-grpcload.sh, done here), a built raftkv
 * (npm run build, done here).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildDist, cpuSecondsOfAll, grpcloadPath, startLocalCluster } from '../bench/lib/cluster.ts';
import { measurePutFloor, type PutFloor } from '../bench/lib/floor.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const tools = resolve(root, 'bench/tools');

const args = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = args[i + 1];
  if (v === undefined) throw new Error(`--${name} needs a value`);
  return v;
}
const duration = Number(opt('duration', '10'));
const reps = Number(opt('reps', '1'));
const rows = opt('rows', 'put:1,put:16,put:64,put:256,get:64')
  .split(',')
  .map((r) => {
    const [op, c] = r.split(':');
    if ((op !== 'put' && op !== 'get') || !Number(c)) throw new Error(`bad row ${r}: use put:N or get:N`);
    return { op, clients: Number(c) };
  });
const only = opt('only', '');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const outDir = resolve(root, opt('out', `bench/results/etcd-${stamp}`));

function sh(cmd: string, a: string[], env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(cmd, a, { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
}

function ensureEtcd(): void {
  try {
    sh('etcd', ['--version']);
  } catch {
    sh('bash', [
      '-c',
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client',
    ]);
  }
}

interface Cluster {
  name: 'etcd' | 'raftkv';
  leader: string;
  pids: number[];
  stop(): Promise<void>;
}

async function startEtcd(): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'etcd-bench-'));
  const env = { ...process.env, ETCD_BENCH_DIR: dir };
  const script = join(tools, 'etcd-cluster.sh');
  sh('bash', [script, 'start'], env);
  const leader = sh('bash', [script, 'leader'], env).trim();
  const pids = ['m1', 'm2', 'm3'].map((m) => Number(readFileSync(join(dir, `${m}.pid`), 'utf8')));
  return {
    name: 'etcd',
    leader,
    pids,
    async stop() {
      sh('bash', [script, 'clean'], env);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startRaftkv(): Promise<Cluster> {
  const c = await startLocalCluster({
    root,
    // Extra serve flags to try settings, e.g. RAFTKV_BENCH_ARGS="--snapshot-entries 0".
    serveArgs: (process.env['RAFTKV_BENCH_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
  });
  return { name: 'raftkv', leader: c.leader, pids: c.nodes.map((n) => n.pid), stop: c.stop };
}

interface Result {
  system: string;
  op: string;
  clients: number;
  rep: number;
  ops_per_sec: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  server_cpu_us_per_op: number;
}

async function runRow(
  c: Cluster,
  op: string,
  clients: number,
  rep: number,
  grpcload: string,
): Promise<Result> {
  const a = [
    '--target',
    c.name,
    '--endpoints',
    c.leader,
    '--op',
    op,
    '--clients',
    String(clients),
    '--conns',
    '1',
    '--duration',
    String(duration),
    '--value-size',
    '256',
    '--keys',
    '10000',
    '--label',
    `${c.name}-${op}-c${clients}`,
  ];
  if (op === 'get') a.push('--prefill');
  const child = spawn(grpcload, a, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  // CPU over the measured window: from the end of the warm-up (and prefill) to the end.
  const warm = op === 'get' ? 4_000 : 1_000;
  await new Promise((r) => setTimeout(r, warm));
  const cpu0 = cpuSecondsOfAll(c.pids);
  const t0 = performance.now();
  await new Promise<void>((res) => child.once('exit', () => res()));
  const cpu1 = cpuSecondsOfAll(c.pids);
  const secs = (performance.now() - t0) / 1000;
  const line = out.trim().split('\n').pop() ?? '{}';
  const j = JSON.parse(line) as { ops_per_sec: number; p50_ms: number; p99_ms: number; errors: number };
  const cpuFrac = (cpu1 - cpu0) / secs;
  return {
    system: c.name,
    op,
    clients,
    rep,
    ops_per_sec: Math.round(j.ops_per_sec),
    p50_ms: j.p50_ms,
    p99_ms: j.p99_ms,
    errors: j.errors,
    server_cpu_us_per_op: j.ops_per_sec > 0 ? Math.round((cpuFrac * 1e6) / j.ops_per_sec) : 0,
  };
}

async function main(): Promise<void> {
  // RAFTKV_BENCH_NOBUILD=1: use dist/ as it is (for A/B runs of serve flags, built once).
  if (only !== 'etcd' && process.env['RAFTKV_BENCH_NOBUILD'] !== '1') buildDist(root);
  if (only !== 'raftkv') ensureEtcd();
  const grpcload = grpcloadPath(root);
  mkdirSync(outDir, { recursive: true });
  const results: Result[] = [];
  const floors: PutFloor[] = [];
  const floorAt = async (): Promise<void> => {
    const f = await measurePutFloor();
    floors.push(f);
    console.error(JSON.stringify({ floor: f }));
    writeFileSync(join(outDir, 'floor.json'), `${JSON.stringify(floors, null, 2)}\n`);
  };
  await floorAt();
  for (let rep = 1; rep <= reps; rep++) {
    for (const row of rows) {
      for (const sys of ['etcd', 'raftkv'] as const) {
        if (only && only !== sys) continue;
        const c = sys === 'etcd' ? await startEtcd() : await startRaftkv();
        try {
          const r = await runRow(c, row.op, row.clients, rep, grpcload);
          results.push(r);
          console.error(JSON.stringify(r));
          writeFileSync(
            join(outDir, 'results.jsonl'),
            results.map((x) => JSON.stringify(x)).join('\n') + '\n',
          );
        } finally {
          await c.stop();
        }
      }
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const lines = [
    `| load | etcd ops/s | raftkv ops/s | ratio | etcd p50/p99 ms | raftkv p50/p99 ms | etcd CPU µs/op | raftkv CPU µs/op |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const pick = (s: string) =>
      results.filter((r) => r.system === s && r.op === row.op && r.clients === row.clients);
    const e = pick('etcd');
    const k = pick('raftkv');
    const eo = mean(e.map((r) => r.ops_per_sec));
    const ko = mean(k.map((r) => r.ops_per_sec));
    const lat = (rs: Result[]) =>
      rs.length
        ? `${mean(rs.map((r) => r.p50_ms)).toFixed(2)} / ${mean(rs.map((r) => r.p99_ms)).toFixed(2)}`
        : '-';
    lines.push(
      `| ${row.op}${row.op === 'get' ? ' (linearizable)' : ''} c${row.clients} | ${e.length ? Math.round(eo) : '-'} | ${k.length ? Math.round(ko) : '-'} | ${e.length && k.length ? (ko / eo).toFixed(2) : '-'} | ${lat(e)} | ${lat(k)} | ${e.length ? Math.round(mean(e.map((r) => r.server_cpu_us_per_op))) : '-'} | ${k.length ? Math.round(mean(k.map((r) => r.server_cpu_us_per_op))) : '-'} |`,
    );
  }
  await floorAt();
  const f2 = (x: number) => x.toFixed(2);
  const c1 = (s: string) => results.filter((r) => r.system === s && r.op === 'put' && r.clients === 1);
  const floorMs = mean(floors.map((f) => f.floorMs));
  const floorLines = [
    '',
    '',
    `Floor of a put at 1 client, measured before and after the rows: ${floors.map((f) => f2(f.floorMs)).join(' and ')} ms` +
      ` (2 × a durable ${floors[0]?.recordBytes} B write, p50 ${floors.map((f) => `${f2(f.dsyncWrite.p50Ms)} O_DSYNC in a preallocated file / ${f2(f.fdatasyncAppend.p50Ms)} append + fdatasync`).join(', then ')} ms,` +
      ` the cheaper one counted; + 2 × a loopback round trip between two Node processes, p50 ${floors.map((f) => f2(f.loopbackRtt.p50Ms)).join(' and ')} ms).`,
  ];
  for (const sys of ['etcd', 'raftkv']) {
    const rs = c1(sys);
    if (rs.length === 0) continue;
    const p50 = mean(rs.map((r) => r.p50_ms));
    floorLines.push(
      `- ${sys} put c1 p50: ${f2(p50)} ms = ${f2(p50 / floorMs)} × the floor (${f2(p50 - floorMs)} ms above it).`,
    );
  }
  const table = lines.join('\n') + floorLines.join('\n');
  const versions = [
    `date: ${new Date().toISOString()}`,
    `cpus: ${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    `node: ${process.version}`,
    `etcd: ${only === 'raftkv' ? '-' : sh('etcd', ['--version']).split('\n')[0]}`,
    `duration: ${duration}s, reps: ${reps}, value 256 B, 10k keys, 1 connection, load to the leader`,
  ].join('\n');
  writeFileSync(join(outDir, 'table.md'), `${table}\n\n${versions}\n`);
  writeFileSync(join(outDir, 'versions.txt'), `${versions}\n`);
  console.log(table);
  console.log(`\n${versions}\nresults: ${outDir}`);
}

await main();
