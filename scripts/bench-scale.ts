// npm run bench:scale — put throughput at 3 and 5 nodes, and at 256 B, 4 KB and 64 KB values.
// Each row: a fresh cluster, grpcload put to the leader (--clients, 1 connection, 1 s warm-up),
// server CPU summed over the members from /proc. Writes bench/results/scale-<time>/{table.md,results.jsonl}.
//
// Usage: npm run bench:scale -- [--duration 10] [--clients 64] [--sizes 3,5] [--values 256,4096,65536]

import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildDist,
  cpuSecondsOfAll,
  grpcloadPath,
  machineLines,
  runGrpcload,
  saveResults,
  startLocalCluster,
} from '../bench/lib/cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    clients: { type: 'string', default: '64' },
    sizes: { type: 'string', default: '3,5' },
    values: { type: 'string', default: '256,4096,65536' },
  },
});
const DURATION = Number(a.duration);
const CLIENTS = Number(a.clients);
const SIZES = a.sizes.split(',').map(Number);
const VALUES = a.values.split(',').map(Number);
if (
  !(DURATION > 0) ||
  !(CLIENTS > 0) ||
  SIZES.some((n) => !Number.isInteger(n) || n < 1 || n > 9) ||
  VALUES.some((v) => !Number.isInteger(v) || v < 1 || v > 1 << 20)
) {
  console.error(
    'bench:scale: --duration/--clients > 0, --sizes from 1 to 9, --values from 1 to 1048576 bytes',
  );
  process.exit(2);
}

interface Row {
  nodes: number;
  value_bytes: number;
  ops_per_sec: number;
  mb_per_sec: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  server_cpu_us_per_op: number;
}

async function row(grpcload: string, nodes: number, value: number): Promise<Row> {
  const c = await startLocalCluster({ root, size: nodes });
  try {
    const pids = c.nodes.map((n) => n.pid);
    const cpu = () => cpuSecondsOfAll(pids);
    const run = runGrpcload(grpcload, [
      ...['--target', 'raftkv', '--endpoints', c.leader, '--op', 'put', '--conns', '1'],
      ...['--clients', String(CLIENTS), '--duration', String(DURATION), '--warmup', '1'],
      ...['--value-size', String(value), '--keys', '10000'],
    ]);
    await new Promise((r) => setTimeout(r, 1000));
    const c0 = cpu();
    const t0 = performance.now();
    const j = await run;
    const cpuFrac = (cpu() - c0) / ((performance.now() - t0) / 1000);
    return {
      nodes,
      value_bytes: value,
      ops_per_sec: Math.round(j.ops_per_sec),
      mb_per_sec: +((j.ops_per_sec * value) / 1e6).toFixed(1),
      p50_ms: j.p50_ms,
      p99_ms: j.p99_ms,
      errors: j.errors,
      server_cpu_us_per_op: j.ops_per_sec > 0 ? Math.round((cpuFrac * 1e6) / j.ops_per_sec) : 0,
    };
  } finally {
    await c.stop();
  }
}

async function main(): Promise<void> {
  buildDist(root);
  const grpcload = grpcloadPath(root);
  const rows: Row[] = [];
  for (const value of VALUES) {
    for (const nodes of SIZES) {
      const r = await row(grpcload, nodes, value);
      console.error(JSON.stringify(r));
      rows.push(r);
    }
  }
  const lines = [
    '# npm run bench:scale',
    '',
    '```',
    ...machineLines(),
    `load: grpcload put, ${CLIENTS} clients, 1 connection, 10k keys, ${DURATION} s after 1 s warm-up, to the leader; every node on the same machine`,
    '```',
    '',
    '| nodes | value | puts/s | MB/s | p50 / p99 ms | server CPU µs/put (all members) | errors |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.nodes} | ${r.value_bytes >= 1024 ? `${r.value_bytes / 1024} KB` : `${r.value_bytes} B`} | ${r.ops_per_sec} | ${r.mb_per_sec} | ${r.p50_ms} / ${r.p99_ms} | ${r.server_cpu_us_per_op} | ${r.errors} |`,
    ),
  ];
  saveResults(root, 'scale', {
    'table.md': `${lines.join('\n')}\n`,
    'results.jsonl': `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`,
  });
}

await main();
