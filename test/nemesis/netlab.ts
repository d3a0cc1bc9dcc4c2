/**
 * NetLab: a private network of Linux network namespaces for real-process partition tests.
 *
 * Layout for run number N (a /24 claimed in 10.213.0.0/16, see `claim`):
 *
 *   host (this process)  rkvnmN: 10.213.N.254 --veth--+
 *                                                     |  br0 in namespace rkvnmN-hub
 *   rkvnmN-n1  eth0: 10.213.N.1  --------------veth---+
 *   rkvnmN-n2  eth0: 10.213.N.2  --------------veth---+   ...
 *
 * The bridge lives in a namespace of its own, so the host's firewall (FORWARD policy,
 * br_netfilter) never sees node-to-node traffic, and nothing is routed: the host reaches
 * the nodes over its veth, the nodes reach each other over the bridge, and no address of
 * the lab exists outside the namespaces it created (plus the host end of one veth).
 *
 * Cuts are iptables rules in the receiving node's own namespace (`iptables-restore`, one
 * atomic ruleset per namespace): a directed cut a->b drops every packet from a's address
 * arriving at b. The host's address is never cut, so clients reach every node throughout.
 *
 * Invariants: every resource is named after N and recorded by a claim directory
 * (`/run/raftkv-nemesis/N`, holding the owner's pid) that exists before the first resource
 * and is removed after the last; `destroy()` is synchronous and idempotent (safe in an
 * `exit` handler), and kills every process still inside the lab's namespaces; a claim whose
 * owner is dead is swept (its processes killed, its namespaces deleted) by the next lab.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLAIM_ROOT = '/run/raftkv-nemesis';
const NET = '10.213';

/** The lab could not be built here (no root, no `ip`/`iptables`, namespaces refused). */
export class NetLabError extends Error {
  override readonly name = 'NetLabError';
}

interface Run {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

function runSync(argv: readonly string[], input?: string): Run {
  const r = spawnSync(argv[0] as string, argv.slice(1), {
    encoding: 'utf8',
    timeout: 10_000,
    ...(input !== undefined ? { input } : {}),
  });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? (r.error ? String(r.error) : '') };
}

function run(argv: readonly string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(argv[0] as string, argv.slice(1), { timeout: 10_000 }, (err, out, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, out: String(out), err: String(stderr) || (err ? err.message : '') });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function must(argv: readonly string[], input?: string): Promise<string> {
  const r = await run(argv, input);
  if (r.code !== 0) throw new NetLabError(`${argv.join(' ')} failed (exit ${r.code}): ${r.err.trim()}`);
  return r.out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a lab cannot be built on this machine, or `null` if it can (checked by trying). */
export function netLabUnavailable(): string | null {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces and iptables need root (run as root)';
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['iptables-restore', 'iptables'],
  ] as const) {
    const r = runSync([tool, '-V']);
    if (r.code !== 0 && r.code !== 1)
      return `${tool} is not available (apt-get install -y ${pkg}): ${r.err.trim()}`;
  }
  const probe = `rkvnm-probe-${process.pid}`;
  const add = runSync(['ip', 'netns', 'add', probe]);
  if (add.code !== 0) return `ip netns add failed: ${add.err.trim()}`;
  try {
    const ipt = runSync(['ip', 'netns', 'exec', probe, 'iptables-restore'], '*filter\nCOMMIT\n');
    if (ipt.code !== 0) return `iptables-restore in a namespace failed: ${ipt.err.trim()}`;
  } finally {
    runSync(['ip', 'netns', 'del', probe]);
  }
  return null;
}

/** A directed cut: packets from `from` to `to` are dropped. */
export interface Cut {
  readonly from: string;
  readonly to: string;
}

/**
 * The iptables-restore ruleset of node `at` for these cuts: a DROP in INPUT for the address
 * of every node cut towards `at`. Empty chains (the heal) when no cut ends at `at`.
 */
export function renderRules(at: string, cuts: readonly Cut[], ipOf: (id: string) => string): string {
  const lines = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]'];
  const from = new Set<string>();
  for (const c of cuts) if (c.to === at && c.from !== at) from.add(c.from);
  for (const f of [...from].sort()) lines.push(`-A INPUT -s ${ipOf(f)}/32 -j DROP`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export class NetLab {
  readonly n: number;
  readonly ids: readonly string[];
  /** The address of this process's end of the lab (clients connect from it). */
  readonly hostIp: string;
  /** What this lab wrote in its claim file (pid and a random token). */
  private readonly claim: string;
  private destroyed = false;
  private readonly onExit = () => this.destroy();

  private constructor(n: number, claim: string, ids: readonly string[]) {
    this.n = n;
    this.claim = claim;
    this.ids = ids;
    this.hostIp = `${NET}.${n}.254`;
  }

  get prefix(): string {
    return `rkvnm${this.n}`;
  }

  ns(id: string): string {
    return `${this.prefix}-${id}`;
  }

  get hubNs(): string {
    return `${this.prefix}-hub`;
  }

  ip(id: string): string {
    const i = this.ids.indexOf(id);
    if (i < 0) throw new NetLabError(`no node ${JSON.stringify(id)} in this lab (${this.ids.join(', ')})`);
    return `${NET}.${this.n}.${i + 1}`;
  }

  /** argv that runs `argv` inside node `id`'s namespace (the process keeps its pid: `ip` execs it). */
  exec(id: string, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', this.ns(id), ...argv];
  }

  /** Builds the lab for these node ids (at most 250), sweeping labs left by dead runs first. */
  static async create(ids: readonly string[]): Promise<NetLab> {
    if (ids.length === 0 || ids.length > 250) throw new NetLabError(`1 to 250 nodes, not ${ids.length}`);
    if (new Set(ids).size !== ids.length) throw new NetLabError(`node ids repeat: ${ids.join(', ')}`);
    const why = netLabUnavailable();
    if (why !== null) throw new NetLabError(why);
    sweep();
    const { n, claim: token } = await claim();
    const lab = new NetLab(n, token, ids);
    process.once('exit', lab.onExit);
    try {
      await lab.build();
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  private async build(): Promise<void> {
    // `ip -batch` runs many commands in one process, but only in one namespace each.
    const hub = this.hubNs;
    const root = [
      `netns add ${hub}`,
      ...this.ids.map((id) => `netns add ${this.ns(id)}`),
      `link add ${this.prefix} type veth peer name host netns ${hub}`,
      ...this.ids.map((id, i) => `link add eth0 netns ${this.ns(id)} type veth peer name v${i} netns ${hub}`),
      `addr add ${this.hostIp}/24 dev ${this.prefix}`,
      `link set ${this.prefix} up`,
    ];
    await must(['ip', '-batch', '-'], `${root.join('\n')}\n`);
    const bridge = [
      'link add br0 type bridge',
      'link set br0 up',
      'link set host master br0',
      'link set host up',
      ...this.ids.flatMap((_, i) => [`link set v${i} master br0`, `link set v${i} up`]),
    ];
    await must(['ip', '-n', hub, '-batch', '-'], `${bridge.join('\n')}\n`);
    await Promise.all(
      this.ids.map((id) =>
        must(
          ['ip', '-n', this.ns(id), '-batch', '-'],
          `addr add ${this.ip(id)}/24 dev eth0\nlink set eth0 up\nlink set lo up\n`,
        ),
      ),
    );
    await this.apply([]);
  }

  /** Replaces every node's rules with these cuts (an empty list heals everything). */
  async apply(cuts: readonly Cut[]): Promise<void> {
    for (const c of cuts) {
      this.ip(c.from);
      this.ip(c.to);
    }
    await Promise.all(
      this.ids.map((id) =>
        must(
          this.exec(id, ['iptables-restore']),
          renderRules(id, cuts, (x) => this.ip(x)),
        ),
      ),
    );
  }

  /** Pids of the processes inside node `id`'s namespace. */
  pids(id: string): number[] {
    return pidsIn(this.ns(id));
  }

  /** Kills what runs in the lab, deletes its namespaces and links, releases the claim. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.removeListener('exit', this.onExit);
    // Swept as dead by someone else (then maybe claimed again): not ours to tear down.
    if (claimText(this.n) !== this.claim) return;
    teardown(this.n);
  }
}

function pidsIn(ns: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', ns]);
  if (r.code !== 0) return [];
  return r.out
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number);
}

function teardown(n: number): void {
  const prefix = `rkvnm${n}`;
  const list = runSync(['ip', 'netns', 'list']);
  const mine = list.out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
  for (const ns of mine) {
    for (const pid of pidsIn(ns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const ns of mine) runSync(['ip', 'netns', 'del', ns]);
  // The host end disappears with its peer in the hub namespace; delete it in case it did not.
  if (runSync(['ip', 'link', 'show', prefix]).code === 0) runSync(['ip', 'link', 'del', prefix]);
  rmSync(join(CLAIM_ROOT, String(n)), { recursive: true, force: true });
}

/** The pid in claim `n`, 0 if there is none (or it is unreadable). */
function claimOwner(n: number): number {
  return Number(claimText(n).split(' ')[0]) || 0;
}

/** The claim file of lab `n`: `<pid> <token>` ('' if absent). */
function claimText(n: number): string {
  try {
    return readFileSync(join(CLAIM_ROOT, String(n), 'pid'), 'utf8');
  } catch {
    return '';
  }
}

/** Tears down the labs of runs whose owner process is gone. */
function sweep(): void {
  let names: string[];
  try {
    names = readdirSync(CLAIM_ROOT);
  } catch {
    return;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const pid = claimOwner(Number(name));
    if (pid === 0) {
      // A claim being written (mkdir, then the pid file) is young: leave it to its owner.
      try {
        if (Date.now() - statSync(join(CLAIM_ROOT, name)).mtimeMs < 60_000) continue;
      } catch {
        continue;
      }
    }
    if (pid > 0 && alive(pid)) continue;
    teardown(Number(name));
  }
}

/** Takes a free /24 (mkdir is the atomic claim), avoiding any route the host already has. */
async function claim(): Promise<{ n: number; claim: string }> {
  mkdirSync(CLAIM_ROOT, { recursive: true });
  const routes = await must(['ip', '-4', 'route', 'show', 'table', 'all']);
  const start = process.pid % 250;
  for (let k = 0; k < 250; k++) {
    const n = (start + k) % 250;
    if (routes.includes(`${NET}.${n}.`)) continue;
    try {
      mkdirSync(join(CLAIM_ROOT, String(n)));
    } catch {
      continue;
    }
    const claim = `${process.pid} ${randomUUID()}`;
    writeFileSync(join(CLAIM_ROOT, String(n), 'pid'), claim);
    return { n, claim };
  }
  throw new NetLabError(`no free subnet in ${NET}.0.0/16 (claims in ${CLAIM_ROOT})`);
}
