/**
 * `raftkv serve` processes, one per namespace of a NetLab, as users run them (the CLI, a
 * data directory each, JSON logs appended to `<dir>/<id>.log` across restarts): the client
 * port and the peer port on the namespace's address, peers authenticated by a cluster secret.
 *
 * Invariants: at most one process per node id; every process started is known by pid and
 * killed by `destroy()` (the lab's teardown kills anything left in its namespaces too);
 * an exit the suite did not cause (not a kill -9 it sent) is recorded in `unexpectedExits`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NetLab } from './netlab.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'src/cli/main.ts');
/** The installed command (runs the compiled dist/src/cli/main.js). */
export const BIN = join(ROOT, 'bin/raftkv.mjs');
export const BUILT_MAIN = join(ROOT, 'dist/src/cli/main.js');
export const CLIENT_PORT = 50051;
/** Raft traffic (raft.PeerService), on the same namespace address: a cut takes both ports. */
export const PEER_PORT = 51051;

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  /** Set before the suite kills it, so its exit is not a finding. */
  killed: boolean;
}

export class NsCluster {
  readonly lab: NetLab;
  readonly dir: string;
  readonly unexpectedExits: string[] = [];
  private readonly extra: readonly string[];
  private readonly built: boolean;
  private readonly procs = new Map<string, Proc>();

  /** `built`: run bin/raftkv.mjs (the compiled CLI, as installed) instead of the sources with tsx. */
  constructor(lab: NetLab, dir: string, extra: readonly string[] = [], built = false) {
    this.lab = lab;
    this.dir = dir;
    this.extra = extra;
    this.built = built;
  }

  get ids(): readonly string[] {
    return this.lab.ids;
  }

  address(id: string): string {
    return `${this.lab.ip(id)}:${CLIENT_PORT}`;
  }

  peerAddress(id: string): string {
    return `${this.lab.ip(id)}:${PEER_PORT}`;
  }

  /** `id=CLIENT/PEER,...` as `raftkv serve --peers` takes it. */
  peers(): string {
    return this.ids.map((id) => `${id}=${this.address(id)}/${this.peerAddress(id)}`).join(',');
  }

  /** The cluster secret peers prove to each other (the peer port is not on loopback). */
  private secretFile(): string {
    const f = join(this.dir, 'peer-secret');
    if (!existsSync(f)) writeFileSync(f, randomBytes(32).toString('hex'), { mode: 0o600 });
    return f;
  }

  pid(id: string): number | undefined {
    return this.procs.get(id)?.child.pid;
  }

  start(id: string): void {
    if (this.procs.has(id)) throw new Error(`${id} is already running`);
    const argv = this.lab.exec(id, [
      process.execPath,
      ...(this.built ? [BIN] : ['--import', 'tsx', CLI]),
      'serve',
      '--id',
      id,
      '--listen',
      this.address(id),
      '--peer-listen',
      this.peerAddress(id),
      '--peers',
      this.peers(),
      '--peer-secret-file',
      this.secretFile(),
      '--data-dir',
      join(this.dir, id),
      '--log-format',
      'json',
      ...this.extra,
    ]);
    const fd = openSync(join(this.dir, `${id}.log`), 'a');
    let child: ChildProcess;
    try {
      child = spawn(argv[0] as string, argv.slice(1), { cwd: ROOT, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const p: Proc = {
      child,
      killed: false,
      exited: new Promise((r) => {
        child.once('exit', (code, signal) => {
          if (this.procs.get(id) === p) this.procs.delete(id);
          if (!p.killed) this.unexpectedExits.push(`${id} exited by itself (code ${code}, signal ${signal})`);
          r();
        });
      }),
    };
    child.once('error', (e) => this.unexpectedExits.push(`${id} could not start: ${e.message}`));
    this.procs.set(id, p);
  }

  running(id: string): boolean {
    return this.procs.has(id);
  }

  /** kill -9, and wait until it is gone. */
  async kill(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (!p) return;
    p.killed = true;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  signal(id: string, sig: 'SIGSTOP' | 'SIGCONT'): void {
    this.procs.get(id)?.child.kill(sig);
  }

  /** The last lines of a node's log. */
  tail(id: string, n = 20): string {
    try {
      return readFileSync(join(this.dir, `${id}.log`), 'utf8')
        .trimEnd()
        .split('\n')
        .slice(-n)
        .join('\n');
    } catch {
      return '(no log)';
    }
  }

  async destroy(): Promise<void> {
    await Promise.all(this.ids.map((id) => this.kill(id)));
  }
}
