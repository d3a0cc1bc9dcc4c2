// npm run bench:memory — is memory bounded? A 3-node cluster takes --puts writes of 256 B values over
// 10,000 keys (grpcload put c64 in 5 s rounds), then a --soak-s soak at 16 clients. Every round it
// samples each node's RSS (/proc) and V8 heap used (/metrics, nodejs_heap_size_used_bytes). It reports
// RSS along the puts, and over the soak the heap floor (lowest sample: the live data after a GC) of its
// first and last third and the least-squares slope of all heap samples (MB/min; flat is ~0).
// Writes bench/results/memory-<time>/{table.md,samples.jsonl}.
//
// Usage: npm run bench:memory -- [--puts 1000000] [--soak-s 300]

import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildDist,
  grpcloadPath,
  machineLines,
  rssOf,
  runGrpcload,
  saveResults,
  startLocalCluster,
} from '../bench/lib/cluster.ts';
import { linearSlope, metricValue } from '../bench/lib/stats.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: a } = parseArgs({
  options: { puts: { type: 'string', default: '1000000' }, 'soak-s': { type: 'string', default: '300' } },
});
const PUTS = Number(a.puts);
const SOAK_S = Number(a['soak-s']);
if (!(PUTS > 0) || !(SOAK_S >= 0)) {
  console.error('bench:memory: --puts must be > 0 and --soak-s >= 0');
  process.exit(2);
}
const MB = 1024 * 1024;

interface Sample {
  phase: 'puts' | 'soak';
  t_s: number;
  puts: number;
  rss_mb: Record<string, number>;
  heap_mb: Record<string, number>;
  /** Entries in the in-memory log (lastIndex - firstIndex + 1) and snapshots taken so far, from /status. */
  log_entries: Record<string, number>;
  snapshots: Record<string, number>;
}

interface StatusJson {
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly counters: Readonly<Record<string, number>>;
}

async function status(http: string): Promise<StatusJson> {
  return (await (await fetch(`http://${http}/status`)).json()) as StatusJson;
}

async function heapUsed(http: string): Promise<number> {
  const res = await fetch(`http://${http}/metrics`);
  const v = metricValue(await res.text(), 'nodejs_heap_size_used_bytes');
  return v === undefined ? Number.NaN : v / MB;
}

async function main(): Promise<void> {
  buildDist(root);
  const grpcload = grpcloadPath(root);
  const c = await startLocalCluster({ root, http: true });
  const samples: Sample[] = [];
  const t0 = Date.now();
  let puts = 0;
  const sample = async (phase: Sample['phase']): Promise<Sample> => {
    const s: Sample = {
      phase,
      t_s: (Date.now() - t0) / 1000,
      puts,
      rss_mb: {},
      heap_mb: {},
      log_entries: {},
      snapshots: {},
    };
    for (const n of c.nodes) {
      s.rss_mb[n.id] = +(rssOf(n.pid) / MB).toFixed(1);
      s.heap_mb[n.id] = +(await heapUsed(n.http!)).toFixed(1);
      const st = await status(n.http!);
      s.log_entries[n.id] = st.lastIndex - st.firstIndex + 1;
      s.snapshots[n.id] = st.counters['snapshots'] ?? 0;
    }
    samples.push(s);
    return s;
  };
  const load = (clients: number, secs: number) =>
    runGrpcload(grpcload, [
      ...['--target', 'raftkv', '--endpoints', c.leader, '--op', 'put', '--conns', '1'],
      ...['--clients', String(clients), '--duration', String(secs), '--warmup', '0'],
      ...['--value-size', '256', '--keys', '10000'],
    ]);
  try {
    await sample('puts');
    while (puts < PUTS) {
      const r = await load(64, 5);
      if (r.errors > 0) throw new Error(`grpcload reported ${r.errors} errors`);
      puts += r.ops;
      const s = await sample('puts');
      console.error(`puts ${puts}: rss ${JSON.stringify(s.rss_mb)} heap ${JSON.stringify(s.heap_mb)}`);
    }
    const soakEnd = Date.now() + SOAK_S * 1000;
    while (Date.now() < soakEnd) {
      const r = await load(16, Math.min(5, Math.max(1, Math.round((soakEnd - Date.now()) / 1000))));
      puts += r.ops;
      const s = await sample('soak');
      console.error(`soak t=${s.t_s}s: heap ${JSON.stringify(s.heap_mb)}`);
    }
  } finally {
    await c.stop();
  }
  const ids = c.nodes.map((n) => n.id);
  const put = samples.filter((s) => s.phase === 'puts');
  const at = (frac: number) => put.find((s) => s.puts >= PUTS * frac) ?? put[put.length - 1]!;
  const lines = [
    '# npm run bench:memory',
    '',
    '```',
    ...machineLines(),
    `puts: ${PUTS} (256 B values, 10,000 keys, grpcload c64 to the leader), then a ${SOAK_S} s soak at c16; snapshots at the default (every 100,000 entries)`,
    '```',
    '',
    '| node | RSS MB at 25% / 50% / 75% / 100% of the puts | max RSS MB | heap floor MB, first / last third of the soak | heap slope over the soak, MB/min | snapshots taken | most log entries in memory |',
    '|---|---|---|---|---|---|---|',
  ];
  const soak = samples.filter((s) => s.phase === 'soak');
  for (const id of ids) {
    const rss = [0.25, 0.5, 0.75, 1].map((f) => at(f).rss_mb[id]).join(' / ');
    const maxRss = Math.max(...samples.map((s) => s.rss_mb[id] ?? 0));
    const slope =
      soak.length >= 2
        ? linearSlope(soak.map((s) => [s.t_s / 60, s.heap_mb[id] ?? 0] as [number, number])).toFixed(2)
        : '-';
    // The lowest sample of a stretch is the heap just after a collection: the live data.
    const third = Math.floor(soak.length / 3);
    const floor = (xs: Sample[]) => Math.min(...xs.map((s) => s.heap_mb[id] ?? Number.NaN));
    const heap = third > 0 ? `${floor(soak.slice(0, third))} / ${floor(soak.slice(-third))}` : '-';
    const last = samples[samples.length - 1]!;
    const maxLog = Math.max(...samples.map((x) => x.log_entries[id] ?? 0));
    lines.push(
      `| ${id}${id === c.leaderId ? ' (leader at the start)' : ''} | ${rss} | ${maxRss} | ${heap} | ${slope} | ${last.snapshots[id]} | ${maxLog} |`,
    );
  }
  saveResults(root, 'memory', {
    'table.md': `${lines.join('\n')}\n`,
    'samples.jsonl': `${samples.map((s) => JSON.stringify(s)).join('\n')}\n`,
  });
}

await main();
