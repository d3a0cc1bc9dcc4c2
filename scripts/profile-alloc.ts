// npm run profile:alloc — where the bytes a put (or a linearizable get) allocates come from, on the
// leader and on a follower of a 3-node raftkv cluster. Allocation is what the young-generation GC
// works for, and its pauses are what the p99 at 64 clients is made of.
//
// It starts a fresh cluster with bench/lib/alloc-sampler.ts preloaded in every member, loads the
// leader with grpcload, samples allocations (V8's sampling heap profiler, counting objects that GCs
// collect too) from the end of grpcload's warm-up to its exit, and prints bytes per operation by
// function and by source file. Results: bench/results/alloc-<time>/{table.md,summary.json}.
//
// Usage: npm run profile:alloc -- [--op put|get] [--clients 64] [--duration 8] [--top 25] [--out DIR]

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildDist,
  grpcloadPath,
  loadLeader,
  machineLines,
  saveResults,
  startLocalCluster,
} from '../bench/lib/cluster.ts';
import { type AllocSummary, type HeapProfile, summarizeHeapProfile } from '../bench/lib/heap-profile.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: {
    op: { type: 'string', default: 'put' },
    clients: { type: 'string', default: '64' },
    duration: { type: 'string', default: '8' },
    top: { type: 'string', default: '25' },
    out: { type: 'string' },
  },
});
const OP = a.op as 'put' | 'get';
const CLIENTS = Number(a.clients);
const DURATION = Number(a.duration);
const TOP = Number(a.top);
if ((OP !== 'put' && OP !== 'get') || !(CLIENTS > 0) || !(DURATION > 0) || !(TOP > 0)) {
  console.error('profile:alloc: --op must be put or get; --clients, --duration and --top positive numbers');
  process.exit(2);
}
const WARMUP = 1;

async function waitForFile(path: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`${path} was not written`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function main(): Promise<void> {
  buildDist(root);
  const grpcload = grpcloadPath(root);
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-alloc-'));
  process.env['RAFTKV_ALLOC_DIR'] = dir;
  const c = await startLocalCluster({
    root,
    nodeArgs: ['--import', 'tsx', '--import', join(root, 'bench/lib/alloc-sampler.ts')],
  });
  const leader = c.nodes.find((n) => n.id === c.leaderId)!;
  const follower = c.nodes.find((n) => n.id !== c.leaderId)!;
  const sampled = [leader, follower];
  let ops = 0;
  let opsPerSec = 0;
  try {
    const { load } = await loadLeader(grpcload, c.leader, {
      op: OP,
      clients: CLIENTS,
      duration: DURATION,
      warmup: WARMUP,
    });
    await new Promise((r) => setTimeout(r, WARMUP * 1000));
    for (const n of sampled) process.kill(n.pid, 'SIGUSR2');
    const j = await load;
    for (const n of sampled) process.kill(n.pid, 'SIGUSR2');
    for (const n of sampled) await waitForFile(join(dir, `alloc-${n.pid}.heapprofile`), 10_000);
    ops = j.ops;
    opsPerSec = j.ops_per_sec ?? 0;
  } finally {
    await c.stop();
  }
  const sums: { role: string; id: string; s: AllocSummary }[] = sampled.map((n) => ({
    role: n === leader ? 'leader' : 'follower',
    id: n.id,
    s: summarizeHeapProfile(
      JSON.parse(readFileSync(join(dir, `alloc-${n.pid}.heapprofile`), 'utf8')) as HeapProfile,
      TOP,
    ),
  }));
  rmSync(dir, { recursive: true, force: true });
  const perOp = (bytes: number): string => (ops > 0 ? Math.round(bytes / ops).toLocaleString('en') : '-');
  const md: string[] = [
    '# npm run profile:alloc',
    '',
    '```',
    ...machineLines(),
    `load: grpcload ${OP}, ${CLIENTS} clients, 1 connection, 256 B values, 10k keys, ${DURATION} s after ${WARMUP} s warm-up, to the leader: ${Math.round(opsPerSec)} ops/s, ${ops} ops sampled`,
    '```',
    '',
    'Bytes allocated on the JavaScript heap per operation, from V8 sampling heap profiles that count',
    'objects collected since (so: what the garbage collector has to deal with). Sampled every ~8 KB:',
    'small sites are estimates.',
    '',
    `| | ${sums.map((x) => `${x.role} (${x.id})`).join(' | ')} |`,
    `|---|${sums.map(() => '---:').join('|')}|`,
    `| **bytes per ${OP}** | ${sums.map((x) => `**${perOp(x.s.totalBytes)}**`).join(' | ')} |`,
    '',
  ];
  for (const x of sums) {
    md.push(`## ${x.role} (${x.id}): our source files`, '', '| bytes per op | file |', '|---:|---|');
    for (const f of x.s.files) md.push(`| ${perOp(f.bytes)} | ${f.file} |`);
    md.push(
      '',
      `## ${x.role} (${x.id}): top ${TOP} functions`,
      '',
      '| bytes per op | function |',
      '|---:|---|',
    );
    for (const f of x.s.functions) md.push(`| ${perOp(f.bytes)} | ${f.fn} |`);
    md.push('');
  }
  saveResults(
    root,
    'alloc',
    {
      'table.md': `${md.join('\n')}\n`,
      'summary.json': `${JSON.stringify({ op: OP, clients: CLIENTS, duration: DURATION, ops, opsPerSec, nodes: sums }, null, 1)}\n`,
    },
    a.out,
  );
}

await main();
