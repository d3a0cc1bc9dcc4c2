// Shared pieces of the hostile-client tests: a raftkv node in a child process (target.ts, or the real CLI),
// its CPU time and RSS read from /proc, a grpc-js KV client for the benign calls made during an attack, and
// small raw HTTP/2 helpers. Every process started is killed by PID on stop() and on exit.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { freePort } from '../../src/cli/free-port.ts';
import { isolatedHome } from '../support/raftkv-home.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const TARGET = join(import.meta.dirname, 'target.ts');
// RAFTKV_TARGET_ROOT: run another checkout's server (target.ts honours it too), to show a test fails there.
const CLI = join(resolve(process.env['RAFTKV_TARGET_ROOT'] ?? ROOT), 'src/cli/main.ts');

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

type Unary = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;
export type KvClient = grpc.Client & Record<string, Unary>;
const pkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(join(ROOT, 'proto/raftkv.proto'), { keepCase: true, longs: Number, defaults: true }),
) as unknown as {
  raft: {
    KeyValueService: new (a: string, c: grpc.ChannelCredentials, o?: grpc.ChannelOptions) => KvClient;
  };
};

export function kvClient(address: string): KvClient {
  return new pkg.raft.KeyValueService(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
  });
}

export function rpc(c: KvClient, method: string, req: object, ms = 10_000): Promise<Record<string, unknown>> {
  return new Promise((res, rej) => {
    (c[method] as Unary).call(c, req, new grpc.Metadata(), { deadline: Date.now() + ms }, (err, r) =>
      err ? rej(err) : res(r),
    );
  });
}

export interface Usage {
  /** user + system CPU time of the process, ms */
  readonly cpuMs: number;
  readonly rssMiB: number;
}

export class Target {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly dir: string;
  readonly logs: string[] = [];

  private constructor(proc: ChildProcess, port: number, dir: string, logs: string[]) {
    this.proc = proc;
    this.port = port;
    this.dir = dir;
    this.logs = logs;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** A node from target.ts with these gRPC server options (`ulimitFiles` caps its file descriptors). */
  static async start(
    opts: { grpc?: Record<string, unknown>; maxRequestBytes?: number; ulimitFiles?: number } = {},
  ): Promise<Target> {
    const dir = mkdtempSync(join(tmpdir(), 'raftkv-sec-'));
    const cfg = JSON.stringify({ dataDir: join(dir, 'n1'), grpc: opts.grpc ?? {}, ...opts });
    const node = [process.execPath, '--import', 'tsx', TARGET, cfg];
    const proc =
      opts.ulimitFiles === undefined
        ? spawn(node[0]!, node.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn('/bin/sh', ['-c', `ulimit -n ${opts.ulimitFiles} && exec "$@"`, 'sh', ...node], {
            cwd: ROOT,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
    return Target.#ready(proc, dir, /READY (\d+)/, undefined);
  }

  /** `raftkv serve` itself, with extra flags. */
  static async cli(flags: string[]): Promise<Target> {
    const dir = mkdtempSync(join(tmpdir(), 'raftkv-sec-'));
    const port = await freePort();
    const proc = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'serve',
        '--id',
        'n1',
        '--listen',
        `127.0.0.1:${port}`,
        '--data-dir',
        join(dir, 'n1'),
        '--tick-ms',
        '20',
        '--log-format',
        'json',
        ...flags,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: isolatedHome(dir).env() },
    );
    return Target.#ready(proc, dir, /raftkv node serving/, port);
  }

  static async #ready(
    proc: ChildProcess,
    dir: string,
    re: RegExp,
    knownPort: number | undefined,
  ): Promise<Target> {
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    const logs: string[] = [];
    let resolveReady: (port: number) => void = () => {};
    let rejectReady: (e: Error) => void = () => {};
    const ready = new Promise<number>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    const keep = (d: Buffer): void => {
      for (const l of d.toString().split('\n')) {
        if (l === '') continue;
        logs.push(l);
        const m = re.exec(l);
        if (m !== null) resolveReady(knownPort ?? Number(m[1]));
      }
      if (logs.length > 2000) logs.splice(0, logs.length - 2000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.once('exit', (code) =>
      rejectReady(new Error(`target exited (${code}):\n${logs.slice(-20).join('\n')}`)),
    );
    const timer = setTimeout(
      () => rejectReady(new Error(`target not ready in 60 s:\n${logs.join('\n')}`)),
      60_000,
    );
    try {
      const port = await ready;
      const t = new Target(proc, port, dir, logs);
      await t.waitLeader();
      return t;
    } catch (e) {
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  async waitLeader(): Promise<void> {
    const c = kvClient(this.address);
    try {
      const end = Date.now() + 30_000;
      for (;;) {
        try {
          const st = await rpc(c, 'GetClusterStatus', {}, 1000);
          if (st['role'] === 'leader') return;
        } catch (e) {
          if (Date.now() > end) throw e;
        }
        if (Date.now() > end) throw new Error('no leader in 30 s');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      c.close();
    }
  }

  /** CPU time and RSS of the server process (Linux /proc). */
  usage(): Usage {
    const pid = this.proc.pid!;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) in clock ticks of 10 ms; f[0] is field 3
    const cpuMs = (Number(f[11]) + Number(f[12])) * 10;
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { cpuMs, rssMiB: Number(rss?.[1] ?? 0) / 1024 };
  }

  /** Samples RSS every 25 ms while `f` runs; returns f's result, the CPU it cost the server and the peak RSS. */
  async measure<T>(
    f: () => Promise<T>,
  ): Promise<{ result: T; cpuMs: number; peakRssMiB: number; rssBeforeMiB: number }> {
    const before = this.usage();
    let peak = before.rssMiB;
    const sampler = setInterval(() => {
      if (this.alive) peak = Math.max(peak, this.usage().rssMiB);
    }, 25);
    try {
      const result = await f();
      const after = this.alive ? this.usage() : before;
      peak = Math.max(peak, after.rssMiB);
      return { result, cpuMs: after.cpuMs - before.cpuMs, peakRssMiB: peak, rssBeforeMiB: before.rssMiB };
    } finally {
      clearInterval(sampler);
    }
  }

  async stop(): Promise<void> {
    if (this.alive) {
      const done = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill('SIGKILL');
      await done;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `p`, or a rejection naming `what` if it has not settled within `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => {
        t = setTimeout(() => rej(new Error(`${what}: not done in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

export const GRPC_REQUEST = {
  ':method': 'POST',
  'content-type': 'application/grpc',
  te: 'trailers',
} as const;

export interface RawOutcome {
  /** grpc-status from headers (trailers-only) or trailers; undefined when the stream was reset first. */
  grpcStatus: number | undefined;
  grpcMessage: string;
  /** RST_STREAM code the stream ended with (0 when it ended normally). */
  rstCode: number;
  headers: http2.IncomingHttpHeaders;
}

/** One gRPC request on a node:http2 session. The body is read and dropped (a window of 0 keeps it unsent). */
export function rawRequest(
  sess: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const req = sess.request({ ...GRPC_REQUEST, ':path': path, ...extra });
    const out: RawOutcome = { grpcStatus: undefined, grpcMessage: '', rstCode: 0, headers: {} };
    const take = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) out.grpcStatus = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) out.grpcMessage = decodeURIComponent(String(h['grpc-message']));
    };
    req.on('response', (h) => {
      out.headers = h;
      take(h);
    });
    req.on('trailers', take);
    req.on('data', () => {});
    req.on('error', () => {});
    req.on('close', () => {
      out.rstCode = req.rstCode ?? 0;
      resolve(out);
    });
    req.end(body);
  });
}

export function connectRaw(address: string, settings: http2.Settings = {}): http2.ClientHttp2Session {
  // a large maxSessionMemory: node's own limit would otherwise reset the attacker's streams on its side
  const s = http2.connect(`http://${address}`, { settings, maxSessionMemory: 4096 });
  s.on('error', () => {});
  return s;
}
