/**
 * Real-process cluster harness for end-to-end tests: `raftkv serve` processes on
 * 127.0.0.1 with ports chosen free at run time, data in a temp directory, and a grpc-js
 * client per node. Every process started is killed on `destroy()` (and on exit).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { freePort } from '../../src/cli/free-port.ts';
import { isolatedHome } from '../support/raftkv-home.ts';

export { freePort };

/** A free port not in `taken` (freePort alone may hand out a port twice: nothing holds it), added to it. */
export async function distinctFreePort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const p = await freePort();
    if (!taken.has(p)) {
      taken.add(p);
      return p;
    }
  }
  throw new Error('no distinct free port in 100 tries');
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = join(root, 'src/cli/main.ts');
const PROTO = join(root, 'proto/raftkv.proto');

type Unary = (
  req: object,
  opts: { deadline: number },
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;
export type KvClient = grpc.Client & Record<string, Unary>;
const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  raft: { KeyValueService: new (addr: string, creds: grpc.ChannelCredentials) => KvClient };
};

export function rpc(c: KvClient, method: string, req: object, ms = 5_000): Promise<Record<string, unknown>> {
  return new Promise((res, rej) => {
    (c[method] as Unary).call(c, req, { deadline: Date.now() + ms }, (err, r) => (err ? rej(err) : res(r)));
  });
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export class ProcCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'raftkv-e2e-'));
  readonly ids: string[];
  readonly ports = new Map<string, number>();
  readonly peerPorts = new Map<string, number>();
  readonly procs = new Map<string, ChildProcess>();
  readonly clients = new Map<string, KvClient>();
  readonly logs = new Map<string, string[]>();
  /** The nodes' RAFTKV_HOME (their per-user peer secret), inside `dir`: one user's nodes share one. */
  readonly home = isolatedHome(this.dir);
  private extra: string[];

  private constructor(ids: string[], extra: string[]) {
    this.ids = ids;
    this.extra = extra;
  }

  static async start(n = 3, extra: string[] = []): Promise<ProcCluster> {
    const c = await ProcCluster.prepare(n, extra);
    for (const id of c.ids) c.startNode(id);
    return c;
  }

  /** Ports chosen and the directory made, nothing started (write files into `dir`, then `startNode`). */
  static async prepare(n = 3, extra: string[] = []): Promise<ProcCluster> {
    const c = new ProcCluster(
      Array.from({ length: n }, (_, i) => `n${i + 1}`),
      extra,
    );
    const taken = new Set<number>();
    for (const id of c.ids) c.ports.set(id, await distinctFreePort(taken));
    for (const id of c.ids) c.peerPorts.set(id, await distinctFreePort(taken));
    return c;
  }

  /** Flags given to nodes started from now on. */
  setExtra(extra: string[]): void {
    this.extra = extra;
  }

  address(id: string): string {
    return `127.0.0.1:${this.ports.get(id)}`;
  }

  peerAddress(id: string): string {
    return `127.0.0.1:${this.peerPorts.get(id)}`;
  }

  peers(): string {
    return this.ids.map((id) => `${id}=${this.address(id)}/${this.peerAddress(id)}`).join(',');
  }

  startNode(id: string): void {
    const p = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'serve',
        '--id',
        id,
        '--listen',
        this.address(id),
        '--peer-listen',
        this.peerAddress(id),
        '--peers',
        this.peers(),
        '--data-dir',
        join(this.dir, id),
        ...this.extra,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: this.home.env() },
    );
    live.add(p);
    const lines = this.logs.get(id) ?? [];
    this.logs.set(id, lines);
    const keep = (d: Buffer) => {
      for (const l of d.toString().split('\n')) if (l) lines.push(l);
      if (lines.length > 500) lines.splice(0, lines.length - 500);
    };
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    p.once('exit', () => live.delete(p));
    this.procs.set(id, p);
    if (!this.clients.has(id)) {
      this.clients.set(id, new pkg.raft.KeyValueService(this.address(id), grpc.credentials.createInsecure()));
    }
  }

  client(id: string): KvClient {
    return this.clients.get(id) as KvClient;
  }

  signal(id: string, sig: NodeJS.Signals): void {
    this.procs.get(id)?.kill(sig);
  }

  async kill(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await done;
  }

  /** The node every reachable node agrees is leader, waiting up to `ms`. */
  async leader(ms = 60_000): Promise<string> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      for (const id of this.ids) {
        try {
          const st = await rpc(this.client(id), 'GetClusterStatus', {}, 500);
          if (st['role'] === 'leader') return id;
        } catch {
          // down or starting
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no leader within ${ms} ms; logs:\n${this.tail()}`);
  }

  tail(n = 15): string {
    return this.ids.map((id) => `--- ${id}\n${(this.logs.get(id) ?? []).slice(-n).join('\n')}`).join('\n');
  }

  async destroy(): Promise<void> {
    for (const c of this.clients.values()) c.close();
    await Promise.all(this.ids.map((id) => this.kill(id)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A free port P whose P + 1000 (the default peer port, as in seed 004's lines) is free too. */
export async function freePortWithPeer(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const p = await freePort();
    if (p + 1000 > 65535 || taken.has(p) || taken.has(p + 1000)) continue;
    if (await portFree(p + 1000)) {
      taken.add(p);
      taken.add(p + 1000);
      return p;
    }
  }
  throw new Error('no free port pair found in 100 tries');
}
