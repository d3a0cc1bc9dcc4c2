// A local raftkv cluster of real processes for benchmarks and profiles (`npm run bench:etcd`,
// `npm run profile`): built code from dist/, ports chosen free at run time, a fresh data directory.
//
// Invariants: start() resolves only once a leader is known (or kills what it started and throws);
// stop() sends SIGTERM (so `--cpu-prof` profiles get written), SIGKILLs after 10 s, waits for every
// process to exit and removes the data directory.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../../src/cli/free-port.ts';

export interface LocalCluster {
  /** host:port of the leader's API. */
  readonly leader: string;
  readonly leaderId: string;
  /** Node ids, addresses and pids, in order n1..nN. */
  readonly nodes: readonly { id: string; address: string; pid: number; http?: string }[];
  readonly dir: string;
  stop(): Promise<void>;
}

export interface LocalClusterOptions {
  /** The repository root (holding dist/). */
  readonly root: string;
  readonly size?: number;
  /** Extra `node` flags for every member, e.g. `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
  /** Extra `raftkv serve` flags for every member. */
  readonly serveArgs?: readonly string[];
  /** Also serve /status and /metrics over HTTP on a free port per member (`nodes[i].http`). */
  readonly http?: boolean;
}

export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  const size = o.size ?? 3;
  const main = join(o.root, 'dist/src/cli/main.js');
  if (!existsSync(main)) throw new Error(`${main} not found: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-bench-'));
  const ports: number[] = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const ids = ports.map((_, i) => `n${i + 1}`);
  const httpPorts: number[] = [];
  if (o.http === true) for (let i = 0; i < size; i++) httpPorts.push(await freePort());
  const peers = ports.map((p, i) => `${ids[i]}=127.0.0.1:${p}`).join(',');
  const procs: ChildProcess[] = ids.map((id, i) =>
    spawn(
      process.execPath,
      [
        ...(o.nodeArgs ?? []),
        main,
        'serve',
        '--id',
        id,
        '--listen',
        `127.0.0.1:${ports[i]}`,
        '--peers',
        peers,
        '--data-dir',
        join(dir, id),
        ...(o.http === true ? ['--http', `127.0.0.1:${httpPorts[i]}`] : []),
        ...(o.serveArgs ?? []),
      ],
      // the nodes' per-user peer secret (no TLS, no --peer-secret-file) in the run's directory
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, RAFTKV_HOME: join(dir, 'home') } },
    ),
  );
  const stop = async (): Promise<void> => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((res) => {
            if (p.exitCode !== null || p.signalCode !== null) return res();
            p.once('exit', () => res());
            p.kill('SIGTERM');
            setTimeout(() => p.kill('SIGKILL'), 10_000).unref();
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  const endpoints = ports.map((p) => `127.0.0.1:${p}`).join(',');
  for (let t = 0; t < 300; t++) {
    await new Promise((r) => setTimeout(r, 100));
    let st: { id: string; role: string; address: string }[] = [];
    try {
      st = JSON.parse(
        execFileSync(process.execPath, [main, 'status', '--json', '--endpoints', endpoints], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      ) as typeof st;
    } catch {
      continue; // not up yet
    }
    const l = st.find((s) => s.role === 'leader');
    if (l !== undefined) {
      return {
        leader: l.address,
        leaderId: l.id,
        nodes: ids.map((id, i) => ({
          id,
          address: `127.0.0.1:${ports[i]}`,
          pid: procs[i]!.pid!,
          ...(o.http === true ? { http: `127.0.0.1:${httpPorts[i]}` } : {}),
        })),
        dir,
        stop,
      };
    }
  }
  await stop();
  throw new Error('the raftkv cluster did not elect a leader within 30 s');
}

/** Runs grpcload to completion and returns its JSON summary line. */
export async function runGrpcload(grpcload: string, args: readonly string[]): Promise<GrpcloadResult> {
  const child = spawn(grpcload, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`grpcload exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop() ?? '{}') as GrpcloadResult;
}

/**
 * The profiles' load on a cluster's leader: 256 B values over 10,000 keys, one connection,
 * `warmup` seconds not counted; a get load first puts every key once (prefill). Resolves when
 * grpcload exits; the caller times its measured window from `warmup` seconds after the call.
 */
export async function loadLeader(
  grpcload: string,
  leader: string,
  o: { op: 'put' | 'get'; clients: number; duration: number; warmup: number },
): Promise<{ load: Promise<GrpcloadResult> }> {
  const base = ['--target', 'raftkv', '--endpoints', leader, '--conns', '1', '--value-size', '256'];
  if (o.op === 'get') {
    await runGrpcload(grpcload, [...base, '--op', 'put', '--prefill', '--clients', '64', '--duration', '1']);
  }
  const load = runGrpcload(grpcload, [
    ...base,
    '--op',
    o.op,
    '--clients',
    String(o.clients),
    '--duration',
    String(o.duration),
    '--warmup',
    String(o.warmup),
    '--keys',
    '10000',
  ]);
  return { load };
}

export interface GrpcloadResult {
  readonly ops: number;
  readonly ops_per_sec: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly errors: number;
}

/** utime + stime of a process (all threads), or of one of its threads, in seconds (from /proc). */
export function cpuSecondsOf(pid: number, tid?: number): number {
  const f = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/** CPU seconds summed over processes; one that has exited counts as 0. */
export function cpuSecondsOfAll(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += cpuSecondsOf(pid);
    } catch {
      // gone
    }
  }
  return sum;
}

/** Runs `npm run build` in the repository (the benchmarks run the compiled code in dist/). */
export function buildDist(root: string): void {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}

/** Resident set size of a process in bytes (VmRSS from /proc), or 0 when it is gone. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

/** $GRPCLOAD, or bench/bin/grpcload built (when missing or stale) from bench/tools by scripts/build-grpcload.sh. */
export function grpcloadPath(root: string): string {
  const env = process.env['GRPCLOAD'];
  if (env !== undefined && env !== '') return env;
  return execFileSync('bash', [join(root, 'scripts/build-grpcload.sh')], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop() as string;
}

/** The lines every result file starts with: date, cores, Node version. */
export function machineLines(): string[] {
  return [
    `date: ${new Date().toISOString()}`,
    `cpus: ${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    `node: ${process.version}`,
  ];
}

/**
 * Writes `files` (name -> content) into a new bench/results/<prefix>-<time>/ (or `out`), prints the
 * markdown table and where it went, and returns the directory.
 */
export function saveResults(
  root: string,
  prefix: string,
  files: Readonly<Record<string, string>>,
  out?: string,
): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const dir = out === undefined ? join(root, `bench/results/${prefix}-${stamp}`) : resolve(root, out);
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  if (files['table.md'] !== undefined) console.log(files['table.md']);
  console.log(`saved ${dir}/{${Object.keys(files).join(',')}}`);
  return dir;
}
