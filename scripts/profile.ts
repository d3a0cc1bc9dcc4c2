// npm run profile — where a put's (and a linearizable get's) CPU goes in a 3-node raftkv cluster.
//
// For each workload (put c64, then get c64 after a prefill) it starts a fresh cluster with
// `node --cpu-prof` on every member, loads the leader with grpcload (bench/tools) and stops the
// nodes with SIGTERM so the profiles are written. Only samples taken while grpcload measured (after
// its warm-up) count. It prints the top self-time functions of the leader and of one follower, and a
// CPU table in µs per operation by category (bench/lib/put-profile.ts), and writes
// bench/results/profile-<time>/{table.md,summary.json}. Raw profiles stay in a temp dir (printed).
//
// Usage: npm run profile -- [--duration 10] [--clients 64] [--top 20] [--out DIR] [--keep]

import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildDist,
  cpuSecondsOf,
  type GrpcloadResult,
  grpcloadPath,
  loadLeader,
  machineLines,
  saveResults,
  startLocalCluster,
} from '../bench/lib/cluster.ts';
import { type ProfileSummary, summarizeProfile } from '../bench/lib/cpuprofile.ts';
import { classifyPutSample, PUT_CATEGORIES } from '../bench/lib/put-profile.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    clients: { type: 'string', default: '64' },
    top: { type: 'string', default: '20' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const DURATION = Number(a.duration);
const CLIENTS = Number(a.clients);
const TOP = Number(a.top);
const WARMUP = 1;
if (!(DURATION > 0) || !(CLIENTS > 0) || !(TOP > 0)) {
  console.error('profile: --duration, --clients and --top must be positive numbers');
  process.exit(2);
}

interface NodeProfile {
  role: 'leader' | 'follower';
  id: string;
  summary: ProfileSummary;
  /** CPU seconds in the measured window from /proc: the main (JavaScript) thread, and the whole process. */
  mainCpuS: number;
  processCpuS: number;
}
interface Run {
  op: 'put' | 'get';
  ops: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  profiles: NodeProfile[];
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);

async function profileRun(op: 'put' | 'get', grpcload: string, profDir: string): Promise<Run> {
  const dir = join(profDir, op);
  mkdirSync(dir, { recursive: true });
  const c = await startLocalCluster({ root, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  let j: GrpcloadResult;
  let cpu0: (readonly [number, number])[] = [];
  let cpu1: (readonly [number, number])[] = [];
  let window: { fromUs: number; toUs: number };
  try {
    const { load } = await loadLeader(grpcload, c.leader, {
      op,
      clients: CLIENTS,
      duration: DURATION,
      warmup: WARMUP,
    });
    // The measured window: from the end of grpcload's warm-up to its exit.
    await new Promise((r) => setTimeout(r, WARMUP * 1000));
    const from = nowUs();
    cpu0 = c.nodes.map((n) => [cpuSecondsOf(n.pid, n.pid), cpuSecondsOf(n.pid)] as const);
    j = await load;
    cpu1 = c.nodes.map((n) => [cpuSecondsOf(n.pid, n.pid), cpuSecondsOf(n.pid)] as const);
    window = { fromUs: from, toUs: nowUs() };
  } finally {
    await c.stop();
  }
  const byPid = new Map(readdirSync(dir).map((f) => [Number(f.split('.')[3]), join(dir, f)]));
  const follower = c.nodes.find((n) => n.id !== c.leaderId)!;
  const profiles: NodeProfile[] = [];
  for (const [role, n] of [
    ['leader', c.nodes.find((x) => x.id === c.leaderId)!],
    ['follower', follower],
  ] as const) {
    const file = byPid.get(n.pid);
    if (file === undefined) throw new Error(`no CPU profile written by ${n.id} (pid ${n.pid}) in ${dir}`);
    const k = c.nodes.indexOf(n);
    profiles.push({
      role,
      id: n.id,
      summary: summarizeProfile(file, classifyPutSample, TOP, window),
      mainCpuS: cpu1[k]![0] - cpu0[k]![0],
      processCpuS: cpu1[k]![1] - cpu0[k]![1],
    });
  }
  const ops = j.ops;
  return { op, ops, opsPerSec: j.ops_per_sec ?? 0, p50: j.p50_ms ?? 0, p99: j.p99_ms ?? 0, profiles };
}

function table(runs: readonly Run[]): string {
  const cols = runs.flatMap((r) => r.profiles.map((p) => ({ r, p })));
  const head = `| µs of CPU per op | ${cols.map(({ r, p }) => `${r.op} c${CLIENTS}: ${p.role}`).join(' | ')} |`;
  const sep = `|---|${cols.map(() => '---:').join('|')}|`;
  const us = (r: Run, ms: number): string => (r.ops > 0 ? ((ms * 1000) / r.ops).toFixed(1) : '-');
  const lines = [head, sep];
  for (const cat of PUT_CATEGORIES) {
    const cells = cols.map(({ r, p }) => us(r, p.summary.categories.find((c) => c.name === cat)?.ms ?? 0));
    lines.push(`| ${cat} | ${cells.join(' | ')} |`);
  }
  const row = (name: string, f: (p: NodeProfile) => number, bold = false): void => {
    const b = bold ? '**' : '';
    lines.push(`| ${b}${name}${b} | ${cols.map(({ r, p }) => `${b}${us(r, f(p))}${b}`).join(' | ')} |`);
  };
  row('main thread, profiled', (p) => p.summary.busyMs, true);
  row('main thread, CPU from /proc', (p) => p.mainCpuS * 1000);
  row(
    'other threads, CPU from /proc (libuv pool: WAL write + fsync; V8 GC helpers)',
    (p) => (p.processCpuS - p.mainCpuS) * 1000,
  );
  row('process CPU from /proc', (p) => p.processCpuS * 1000, true);
  lines.push(
    `| ops/s (p50 / p99 ms) | ${cols.map(({ r }) => `${Math.round(r.opsPerSec)} (${r.p50} / ${r.p99})`).join(' | ')} |`,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  buildDist(root);
  const grpcload = grpcloadPath(root);
  const profDir = mkdtempSync(join(tmpdir(), 'raftkv-profile-'));
  const runs: Run[] = [];
  for (const op of ['put', 'get'] as const) runs.push(await profileRun(op, grpcload, profDir));
  const md: string[] = [
    '# npm run profile',
    '',
    '```',
    ...machineLines(),
    `load: grpcload, ${CLIENTS} clients, 1 connection, 256 B values, 10k keys, ${DURATION} s after ${WARMUP} s warm-up, to the leader`,
    '```',
    '',
    'CPU by category, µs per operation (samples inside the measured window only). The category rows',
    "are the main thread's profile samples, which count wall time between samples (a thread waiting",
    'for a core inflates the next sample); the /proc rows are CPU time, and show the worker threads',
    'the profiler does not see.',
    '',
    table(runs),
    '',
  ];
  for (const r of runs) {
    for (const p of r.profiles) {
      md.push(`## ${r.op} c${CLIENTS}, ${p.role} (${p.id}): top ${TOP} functions by self time`, '');
      md.push('| % of busy | ms | function |', '|---:|---:|---|');
      for (const t of p.summary.top) md.push(`| ${t.pct.toFixed(1)} | ${t.selfMs.toFixed(0)} | ${t.fn} |`);
      md.push('');
    }
  }
  saveResults(
    root,
    'profile',
    {
      'table.md': `${md.join('\n')}\n`,
      'summary.json': `${JSON.stringify({ clients: CLIENTS, duration: DURATION, runs }, null, 1)}\n`,
    },
    a.out,
  );
  if (a.keep) console.log(`raw profiles: ${profDir}`);
  else rmSync(profDir, { recursive: true, force: true });
}

await main();
