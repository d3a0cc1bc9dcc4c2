// A local raftkv cluster of real processes for benchmarks and profiles (`npm run bench:etcd`,
// `npm run profile`): built code from dist/, ports chosen free at run time, a fresh data directory.
//
// Invariants: start() resolves only once a leader is known (or kills what it started and throws);
// stop() sends SIGTERM (so `--cpu-prof` profiles get written), SIGKILLs after 10 s, waits for every
// process to exit and removes the data directory.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../cli/free-port.ts';

export interface LocalCluster {
  /** host:port of the leader's API. */
  readonly leader: string;
  readonly leaderId: string;
  /** Node ids, addresses and pids, in order n1..nN. */
  readonly nodes: readonly { id: string; address: string; pid: number }[];
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
}

export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  const size = o.size ?? 3;
  const main = join(o.root, 'dist/src/cli/main.js');
  if (!existsSync(main)) throw new Error(`${main} not found: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-bench-'));
  const ports: number[] = [];
  for (let i = 0; i < size; i++) ports.push(await freePort());
  const ids = ports.map((_, i) => `n${i + 1}`);
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
        ...(o.serveArgs ?? []),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
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
        nodes: ids.map((id, i) => ({ id, address: `127.0.0.1:${ports[i]}`, pid: procs[i]!.pid! })),
        dir,
        stop,
      };
    }
  }
  await stop();
  throw new Error('the raftkv cluster did not elect a leader within 30 s');
}

/** The grpcload binary of ../shared/bench, or one built by scripts/build-grpcload.sh. */
export function grpcloadPath(root: string): string {
  const env = process.env['GRPCLOAD'];
  if (env !== undefined && env !== '') return env;
  const p = join(root, '../shared/bench/bin/grpcload');
  if (existsSync(p)) return p;
  return execFileSync('bash', [join(root, 'scripts/build-grpcload.sh')], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop() as string;
}
