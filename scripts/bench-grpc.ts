// npm run bench:grpc — server CPU per call of this repo's lean gRPC layer against @grpc/grpc-js, in one run.
//
// Unary: the same raft.KeyValueService Put/Get (a Map, no Raft) on each stack (scripts/bench-grpc-server.ts),
// loaded by grpcload (C++ grpc++, bench/tools/grpcload.cc) with put at 1, 16 and 64 clients and get at 64,
// one connection, 256 B values. Server CPU is read from /proc/PID/stat (utime+stime) after grpcload's warm-up
// and when it exits; µs/call = server CPU / calls.
// Stream: one bidi /raft.PeerBench/Stream, 1 KB and 32 KB Batch messages pipelined 64 deep by a raw node:http2
// sender (scripts/bench-grpc-sender.ts, the same for both stacks); the server acks each one; server µs/message.
// By default the server is pinned to core 1 and the load to core 0 (`--no-pin` lets both float).
// Three stacks run one after the other: lean (the layer on its own HTTP/2 engine, as shipped), lean-node (the same
// layer on node:http2) and grpcjs. Prints one markdown table with lean/grpc-js and lean/lean-node ratios and
// writes bench/results/grpc-<time>.{md,jsonl}.
// Servers and the sender run from the compiled JS (built into dist/ first), as production would; `--tsx` runs the
// TypeScript sources under tsx instead (its loader adds about 20% to both stacks).
// `--paired` runs both stacks at the same time instead of one after the other (see runPaired).
// Usage: npm run bench:grpc -- [--duration 5] [--warmup 1] [--reps 1] [--no-pin] [--no-save] [--only unary|stream]
//        [--tsx] [--paired] [--table saved.jsonl]
// grpcload: $GRPCLOAD, or built from bench/tools/grpcload.cc into
// bench/bin/grpcload (needs g++ and libgrpc++-dev; see scripts/build-grpcload.sh).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    reps: { type: 'string', default: '1' },
    'no-pin': { type: 'boolean', default: false },
    'no-save': { type: 'boolean', default: false },
    only: { type: 'string', default: '' },
    tsx: { type: 'boolean', default: false },
    table: { type: 'string', default: '' },
    paired: { type: 'boolean', default: false },
  },
});
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DURATION = Number(a.duration);
const WARMUP = Number(a.warmup);
const REPS = Number(a.reps);
const PIN = !a['no-pin'] && cpus().length >= 2;
/** lean: this layer on its own HTTP/2 engine; lean-node: the same layer on node:http2; grpcjs: @grpc/grpc-js. */
const STACKS = ['lean', 'lean-node', 'grpcjs'] as const;
type Stack = (typeof STACKS)[number];
/** --paired loads two servers at once: the layer as shipped and grpc-js. */
const PAIRED_STACKS = ['lean', 'grpcjs'] as const;
const TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

export function findGrpcload(): string | undefined {
  const candidates = [process.env['GRPCLOAD'], resolve(REPO, 'bench/bin/grpcload')];
  return candidates.find((p): p is string => p !== undefined && p !== '' && existsSync(p));
}

function ensureGrpcload(): string {
  const found = findGrpcload();
  if (found !== undefined) return found;
  console.error('bench:grpc: building grpcload (scripts/build-grpcload.sh)');
  execFileSync('bash', [join(REPO, 'scripts/build-grpcload.sh')], { stdio: 'inherit' });
  const built = findGrpcload();
  if (built === undefined) throw new Error('grpcload not available');
  return built;
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime (fields 14, 15)
}

/**
 * The command that runs one of the bench's own scripts: the compiled JS in dist/ (built by main(), as
 * production runs), or the TypeScript source under tsx with --tsx (tsx's loader adds about 20% to both stacks).
 */
function script(name: string): string[] {
  return a.tsx
    ? ['--import', 'tsx', join(REPO, `scripts/${name}.ts`)]
    : [join(REPO, `dist/scripts/${name}.js`)];
}

function buildDist(): void {
  execFileSync(
    process.execPath,
    [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json')],
    {
      stdio: 'inherit',
    },
  );
  const fixtures = join(REPO, 'dist/test/grpc/fixtures');
  mkdirSync(fixtures, { recursive: true });
  copyFileSync(join(REPO, 'test/grpc/fixtures/kvbench.proto'), join(fixtures, 'kvbench.proto'));
}

const pinned = (core: number, cmd: string, args: string[]): [string, string[]] =>
  PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args];

async function startServer(stack: Stack): Promise<{ child: ChildProcess; port: number }> {
  const [cmd, args] = pinned(1, process.execPath, [...script('bench-grpc-server'), '--stack', stack]);
  const child = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\d+)/.exec(out);
      if (m !== null) res(Number(m[1]));
    });
    child.on('exit', (code) => rej(new Error(`${stack} server exited with ${code}`)));
  });
  return { child, port };
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

interface Row {
  kind: 'unary' | 'stream';
  load: string;
  stack: Stack;
  rep: number;
  ops: number;
  ops_per_sec: number;
  server_cpu_pct: number;
  server_us_per_op: number;
  p50_ms?: number;
  p99_ms?: number;
  errors?: number;
}

async function runUnary(
  grpcload: string,
  stack: Stack,
  rep: number,
  port: number,
  op: string,
  clients: number,
  serverPid: number,
): Promise<Row> {
  const [cmd, args] = pinned(0, grpcload, [
    '--target',
    'raftkv',
    '--endpoints',
    `127.0.0.1:${port}`,
    '--op',
    op,
    '--clients',
    String(clients),
    '--conns',
    '1',
    '--duration',
    String(DURATION),
    '--warmup',
    String(WARMUP),
    '--value-size',
    '256',
  ]);
  const lg = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  lg.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((r) => lg.once('exit', () => r()));
  await sleep(WARMUP * 1000);
  const t1 = cpuTicks(serverPid);
  const w1 = performance.now();
  await exited;
  const t2 = cpuTicks(serverPid);
  const w2 = performance.now();
  const j = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Record<string, number>;
  const cpuSec = (t2 - t1) / TCK;
  const ops = j['ops'] ?? 0;
  return {
    kind: 'unary',
    load: `${op} c${clients}`,
    stack,
    rep,
    ops,
    ops_per_sec: Math.round(j['ops_per_sec'] ?? 0),
    server_cpu_pct: +((100 * cpuSec) / ((w2 - w1) / 1000)).toFixed(1),
    server_us_per_op: +((1e6 * cpuSec) / Math.max(1, ops)).toFixed(1),
    p50_ms: j['p50_ms'] ?? 0,
    p99_ms: j['p99_ms'] ?? 0,
    errors: j['errors'] ?? 0,
  };
}

async function runStream(
  stack: Stack,
  rep: number,
  port: number,
  size: number,
  serverPid: number,
): Promise<Row> {
  const [cmd, args] = pinned(0, process.execPath, [
    ...script('bench-grpc-sender'),
    '--port',
    String(port),
    '--size',
    String(size),
    '--window',
    '64',
  ]);
  const sender = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = (): Promise<{ acks: number; t: number }> =>
    new Promise((r) => sender.once('message', (m) => r(m as { acks: number; t: number })));
  const ready = new Promise<void>((r, rej) => {
    sender.once('message', () => r());
    sender.once('exit', (c) => rej(new Error(`sender exited with ${c}`)));
  });
  await ready;
  await sleep(WARMUP * 1000);
  let m = next();
  sender.send('mark');
  const s0 = await m;
  const t1 = cpuTicks(serverPid);
  await sleep(DURATION * 1000);
  m = next();
  sender.send('mark');
  const s1 = await m;
  const t2 = cpuTicks(serverPid);
  const exited = new Promise((r) => sender.once('exit', r));
  sender.send('exit');
  await exited;
  const msgs = s1.acks - s0.acks;
  const secs = (s1.t - s0.t) / 1000;
  const cpuSec = (t2 - t1) / TCK;
  return {
    kind: 'stream',
    load: `bidi ${size >= 1024 ? `${size / 1024} KB` : `${size} B`} x64`,
    stack,
    rep,
    ops: msgs,
    ops_per_sec: Math.round(msgs / secs),
    server_cpu_pct: +((100 * cpuSec) / secs).toFixed(1),
    server_us_per_op: +((1e6 * cpuSec) / Math.max(1, msgs)).toFixed(2),
  };
}

function prefill(grpcload: string, port: number): void {
  execFileSync(
    grpcload,
    [
      '--target',
      'raftkv',
      '--endpoints',
      `127.0.0.1:${port}`,
      '--op',
      'get',
      '--prefill',
      '--duration',
      '0.1',
      '--warmup',
      '0',
    ],
    { stdio: 'ignore' },
  );
}

/**
 * --paired: both servers run at once (both on core 1), each loaded by its own grpcload or sender (core 0) over the
 * same seconds, so both see the same machine. On a shared, busy machine this keeps other people's load from
 * landing on one stack's rows only; neither server gets a whole core, so absolute µs are those of a half-busy
 * server.
 */
async function runPaired(grpcload: string, rows: Row[]): Promise<void> {
  for (let rep = 1; rep <= REPS; rep++) {
    const servers = [await startServer('lean'), await startServer('grpcjs')] as const;
    const record = (rs: Row[]): void => {
      for (const r of rs) {
        rows.push(r);
        console.error(JSON.stringify(r));
      }
    };
    try {
      if (a.only !== 'stream') {
        for (const c of [1, 16, 64]) {
          record(
            await Promise.all(
              PAIRED_STACKS.map((st, i) =>
                runUnary(grpcload, st, rep, servers[i]!.port, 'put', c, servers[i]!.child.pid!),
              ),
            ),
          );
        }
        for (const sv of servers) prefill(grpcload, sv.port);
        record(
          await Promise.all(
            PAIRED_STACKS.map((st, i) =>
              runUnary(grpcload, st, rep, servers[i]!.port, 'get', 64, servers[i]!.child.pid!),
            ),
          ),
        );
      }
      if (a.only !== 'unary') {
        for (const size of [1024, 32 * 1024]) {
          record(
            await Promise.all(
              PAIRED_STACKS.map((st, i) =>
                runStream(st, rep, servers[i]!.port, size, servers[i]!.child.pid!),
              ),
            ),
          );
        }
      }
    } finally {
      for (const sv of servers) await stopServer(sv.child);
    }
  }
}

async function main(): Promise<void> {
  const grpcload = ensureGrpcload();
  if (!a.tsx) buildDist();
  const rows: Row[] = [];
  const started = new Date();
  if (a.paired) await runPaired(grpcload, rows);
  else
    for (let rep = 1; rep <= REPS; rep++) {
      for (const stack of STACKS) {
        const { child, port } = await startServer(stack);
        try {
          if (a.only !== 'stream') {
            for (const c of [1, 16, 64]) {
              const r = await runUnary(grpcload, stack, rep, port, 'put', c, child.pid!);
              rows.push(r);
              console.error(JSON.stringify(r));
            }
            execFileSync(
              grpcload,
              [
                '--target',
                'raftkv',
                '--endpoints',
                `127.0.0.1:${port}`,
                '--op',
                'get',
                '--prefill',
                '--duration',
                '0.1',
                '--warmup',
                '0',
              ],
              { stdio: 'ignore' },
            );
            const g = await runUnary(grpcload, stack, rep, port, 'get', 64, child.pid!);
            rows.push(g);
            console.error(JSON.stringify(g));
          }
          if (a.only !== 'unary')
            for (const size of [1024, 32 * 1024]) {
              const r = await runStream(stack, rep, port, size, child.pid!);
              rows.push(r);
              console.error(JSON.stringify(r));
            }
        } finally {
          await stopServer(child);
        }
      }
    }
  const table = renderTable(rows);
  const versions = versionsText(started);
  console.log(`\n${versions}\n${table}`);
  if (!a['no-save']) {
    const dir = join(REPO, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const stamp = started.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
    writeFileSync(join(dir, `grpc-${stamp}.jsonl`), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    writeFileSync(
      join(dir, `grpc-${stamp}.md`),
      `# npm run bench:grpc\n\n\`\`\`\n${versions}\n\`\`\`\n\n${table}\n`,
    );
    console.log(`saved bench/results/grpc-${stamp}.{md,jsonl}`);
  }
}

function versionsText(started: Date): string {
  const pkg = (name: string): string =>
    (
      JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      }
    ).version;
  let grpcpp = 'unknown';
  try {
    grpcpp = execFileSync('pkg-config', ['--modversion', 'grpc++']).toString().trim();
  } catch {
    // not installed as a package
  }
  return [
    `date: ${started.toISOString()}`,
    `node: ${process.version}`,
    `cores: ${cpus().length} (${cpus()[0]?.model ?? '?'})`,
    `mode: ${a.paired ? 'paired (both stacks at once), ' : 'sequential, '}${PIN ? 'pinned (servers on core 1, load on core 0)' : 'unpinned'}, servers run ${a.tsx ? 'from TypeScript under tsx' : 'from compiled JS (dist/)'}`,
    `duration: ${DURATION} s per row after ${WARMUP} s warm-up, reps: ${REPS}`,
    `@grpc/grpc-js: ${pkg('@grpc/grpc-js')}, protobufjs: ${pkg('protobufjs')}, grpcload grpc++: ${grpcpp}`,
    `loadavg at end: ${readFileSync('/proc/loadavg', 'utf8').trim()}`,
  ].join('\n');
}

function renderTable(rows: Row[]): string {
  const loads = [...new Set(rows.map((r) => r.load))];
  const mean = (xs: number[]): number => xs.reduce((sum, x) => sum + x, 0) / Math.max(1, xs.length);
  const fmt = (xs: number[]): string => {
    const m = mean(xs);
    const digits = m < 20 ? 1 : 0;
    return xs.length > 1
      ? `${m.toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`
      : m.toFixed(digits);
  };
  const reps = Math.max(...rows.map((r) => r.rep));
  const lines = [
    `Server CPU µs per call (unary) or per message (stream): mean of ${reps} rep(s), (min-max); ratio of the means.`,
    '',
    '| load | lean µs/op | grpc-js µs/op | ratio lean/grpc-js | lean ops/s | grpc-js ops/s | lean CPU % | grpc-js CPU % | lean on node:http2 µs/op | ratio lean/lean-node |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const load of loads) {
    const pick = (st: Stack): Row[] => rows.filter((r) => r.load === load && r.stack === st);
    const l = pick('lean');
    const g = pick('grpcjs');
    const n = pick('lean-node');
    const lu = l.map((r) => r.server_us_per_op);
    const gu = g.map((r) => r.server_us_per_op);
    const nu = n.map((r) => r.server_us_per_op);
    const nodeCols = n.length === 0 ? ' - | - |' : ` ${fmt(nu)} | ${(mean(lu) / mean(nu)).toFixed(2)} |`;
    const unit = l[0]?.kind === 'stream' ? ' (per message)' : '';
    lines.push(
      `| ${load}${unit} | ${fmt(lu)} | ${fmt(gu)} | ${(mean(lu) / mean(gu)).toFixed(2)} | ${Math.round(mean(l.map((r) => r.ops_per_sec)))} | ${Math.round(mean(g.map((r) => r.ops_per_sec)))} | ${mean(l.map((r) => r.server_cpu_pct)).toFixed(0)} | ${mean(g.map((r) => r.server_cpu_pct)).toFixed(0)} |${nodeCols}`,
    );
  }
  return lines.join('\n');
}

if (a.table !== '') {
  // Re-render a saved run: npm run bench:grpc -- --table bench/results/grpc-....jsonl
  const rows = readFileSync(a.table, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Row);
  console.log(renderTable(rows));
} else {
  await main();
}
