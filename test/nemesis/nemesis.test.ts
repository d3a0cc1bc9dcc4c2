// The partition suite on real processes (needs root, iproute2 and iptables; skipped with a
// visible reason otherwise):
// - the lab's cuts do what the plans say: a UDP probe from every namespace to every other
//   (and from this process) sees exactly the links a plan leaves, one-way and bridge included,
//   and the heal restores all of them;
// - the lab leaves nothing behind: namespaces, links and claim gone after destroy(), and a
//   lab whose owner was killed -9 is swept by the next one;
// - a short run (3 nodes, one cycle of each 3-node fault kind) passes: linearizable history,
//   every node writing again after every heal;
// - SIGINT in the middle of a fault tears everything down: no node process, no namespace.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { SeededRng } from '../../src/raft/rng.ts';
import { type FaultKind, kindsFor, planFault } from './faults.ts';
import { CLAIM_ROOT, type Cut, NetLab, netLabUnavailable } from './netlab.ts';
import { DEFAULTS, runNemesis } from './run.ts';

const why = netLabUnavailable();
if (why !== null) console.log(`# nemesis: SKIPPED: ${why}`);
const skip = why === null ? false : `SKIPPED: ${why}`;

/** Namespaces, host link and claim of lab `n` that still exist. */
function leftovers(n: number): string[] {
  const out: string[] = [];
  const ns = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  for (const line of ns.split('\n'))
    if (line.startsWith(`rkvnm${n}-`)) out.push(`netns ${line.split(' ')[0]}`);
  if (spawnSync('ip', ['link', 'show', `rkvnm${n}`]).status === 0) out.push(`link rkvnm${n}`);
  if (existsSync(join(CLAIM_ROOT, String(n)))) out.push(`claim ${n}`);
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// A UDP agent in each namespace: sends to every other node every 30 ms, and on stdin
// `reset` forgets, `report` prints (JSON) the sources it heard from since.
const AGENT = `
const dgram = require('node:dgram');
const [self, ...peers] = process.argv.slice(1);
let heard = new Set();
const s = dgram.createSocket('udp4');
s.on('message', (_m, r) => heard.add(r.address));
s.bind(9999, self, () => {
  setInterval(() => { for (const p of peers) s.send('x', 9999, p); }, 30);
  console.log('ready');
});
require('node:readline').createInterface({ input: process.stdin }).on('line', (l) => {
  if (l === 'reset') heard = new Set();
  if (l === 'report') console.log(JSON.stringify([...heard]));
});
process.stdin.on('end', () => process.exit(0));`;

class Probe {
  private readonly lab: NetLab;
  private readonly agents: { child: ChildProcess; stdin: Writable; lines: string[]; wake: () => void }[] = [];
  private readonly host = createSocket('udp4');
  private timer: NodeJS.Timeout | undefined;

  constructor(lab: NetLab) {
    this.lab = lab;
  }

  async start(): Promise<void> {
    for (const id of this.lab.ids) {
      const argv = this.lab.exec(id, [
        process.execPath,
        '-e',
        AGENT,
        this.lab.ip(id),
        ...this.lab.ids.filter((x) => x !== id).map((x) => this.lab.ip(x)),
      ]);
      const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
      const a = { child, stdin: child.stdin, lines: [] as string[], wake: () => {} };
      let buf = '';
      child.stdout.on('data', (b: Buffer) => {
        buf += b.toString();
        const parts = buf.split('\n');
        buf = parts.pop() ?? '';
        a.lines.push(...parts);
        a.wake();
      });
      this.agents.push(a);
    }
    await Promise.all(this.agents.map((_, i) => this.line(i)));
    await new Promise<void>((r) => this.host.bind(0, this.lab.hostIp, () => r()));
    this.timer = setInterval(() => {
      for (const id of this.lab.ids) this.host.send('x', 9999, this.lab.ip(id));
    }, 30);
  }

  private async line(i: number): Promise<string> {
    const a = this.agents[i] as (typeof this.agents)[number];
    for (let k = 0; k < 100 && a.lines.length === 0; k++) {
      await new Promise<void>((r) => {
        a.wake = r;
        setTimeout(r, 100);
      });
    }
    const l = a.lines.shift();
    if (l === undefined) throw new Error(`probe agent ${this.lab.ids[i]} said nothing for 10 s`);
    return l;
  }

  /** Which directed links carry packets now, as `from>to` (this process is `host`). */
  async links(): Promise<Set<string>> {
    const byIp = new Map(this.lab.ids.map((id) => [this.lab.ip(id), id]));
    byIp.set(this.lab.hostIp, 'host');
    await new Promise((r) => setTimeout(r, 200)); // packets sent before the change drain
    for (const a of this.agents) a.stdin.write('reset\n');
    await new Promise((r) => setTimeout(r, 1_000));
    for (const a of this.agents) a.stdin.write('report\n');
    const out = new Set<string>();
    for (const [i, id] of this.lab.ids.entries()) {
      for (const ip of JSON.parse(await this.line(i)) as string[]) out.add(`${byIp.get(ip)}>${id}`);
    }
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
    this.host.close();
    for (const a of this.agents) a.child.kill('SIGKILL');
  }
}

function expected(lab: NetLab, cuts: readonly Cut[]): Set<string> {
  const cut = new Set(cuts.map((c) => `${c.from}>${c.to}`));
  const out = new Set<string>();
  for (const to of lab.ids) {
    out.add(`host>${to}`);
    for (const from of lab.ids) if (from !== to && !cut.has(`${from}>${to}`)) out.add(`${from}>${to}`);
  }
  return out;
}

describe('network namespaces and cuts', { skip }, () => {
  let lab: NetLab;
  let probe: Probe;
  before(async () => {
    lab = await NetLab.create(['n1', 'n2', 'n3', 'n4', 'n5']);
    probe = new Probe(lab);
    await probe.start();
  });
  after(() => {
    probe?.stop();
    lab?.destroy();
  });

  test('every partition kind leaves exactly the links its plan leaves; the heal restores all', async () => {
    const rng = new SeededRng(3);
    for (const kind of ['isolate-leader', 'one-way', 'bridge', 'majority-minority'] as FaultKind[]) {
      const plan = planFault(kind, lab.ids, 'n2', rng);
      await lab.apply(plan.cuts);
      assert.deepEqual(
        [...(await probe.links())].sort(),
        [...expected(lab, plan.cuts)].sort(),
        plan.description,
      );
    }
    await lab.apply([]);
    assert.deepEqual([...(await probe.links())].sort(), [...expected(lab, [])].sort());
  });

  test('destroy() leaves nothing, and kills what ran inside', async () => {
    const extra = await NetLab.create(['a', 'b', 'c']);
    const argv = extra.exec('a', [process.execPath, '-e', 'setInterval(() => {}, 1000)']);
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(extra.pids('a').includes(child.pid as number));
    assert.ok(leftovers(extra.n).length >= 4);
    extra.destroy();
    await exited;
    assert.deepEqual(leftovers(extra.n), []);
    extra.destroy(); // idempotent
  });

  test('a lab whose owner died (kill -9: no exit handler ran) is swept by the next one', async () => {
    const orphan = await NetLab.create(['a', 'b', 'c']);
    // Its owner is now a process that has exited (as after kill -9 of this one).
    const dead = spawnSync('true').pid as number;
    writeFileSync(join(CLAIM_ROOT, String(orphan.n), 'pid'), `${dead} orphaned`);
    const names = (n: number) => ['a', 'b', 'c', 'hub'].map((x) => `netns rkvnm${n}-${x}`);
    assert.ok(names(orphan.n).every((x) => leftovers(orphan.n).includes(x)));
    const next = await NetLab.create(['x', 'y', 'z']); // may reuse the orphan's subnet
    try {
      assert.deepEqual(
        leftovers(orphan.n).filter((x) => /-[abc]$/.test(x)),
        [],
      );
      orphan.destroy(); // no longer its claim: must not touch the next lab
      assert.ok(leftovers(next.n).includes(`netns rkvnm${next.n}-x`));
    } finally {
      next.destroy();
    }
    assert.deepEqual(leftovers(next.n), []);
  });
});

describe('nemesis on real processes', { skip }, () => {
  test('3 nodes, one cycle of each fault kind: linearizable, every node writing after every heal', {
    timeout: 170_000,
  }, async () => {
    const lines: string[] = [];
    let lab = -1;
    const kinds = kindsFor(3);
    const r = await runNemesis({
      ...DEFAULTS,
      nodes: 3,
      cycles: kinds.length,
      seed: 17,
      holdMs: [1_500, 2_000],
      calmMs: 300,
      log: (s) => {
        lines.push(s);
        process.stderr.write(`# ${s.split('\n')[0]}\n`);
      },
      onReady: (info) => {
        lab = info.lab;
      },
    });
    assert.ok(r.ok, `${r.failures.join('\n')}\n${lines.join('\n')}`);
    assert.deepEqual(r.faults.map((f) => f.kind).sort(), [...kinds].sort());
    for (const f of r.faults) assert.ok(f.recovered !== null && f.healed !== null);
    for (const k of kinds) assert.notEqual(r.figures.byFault[k]?.maxUnavailableMs, null, k);
    assert.match(r.verdict, /^linearizable/);
    assert.ok(r.figures.total.ok > 100, `only ${r.figures.total.ok} operations succeeded`);
    assert.ok(r.finalKeys > 0 && r.finalPresent > 0);
    // Reads went through isolated and paused nodes too: some failed, none was dropped silently.
    assert.ok(r.figures.byOp.get.failed > 0, 'no read failed: were the faults in force?');
    assert.deepEqual(leftovers(lab), []);
    assert.equal(existsSync(r.dir), false, 'a passing run removes its data');
  });

  test('SIGINT during a fault: the run stops, no node process or namespace is left', {
    timeout: 120_000,
  }, async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'scripts/nemesis.ts', '--nodes', '3', '--cycles', '1000', '--hold', '60000-60000'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const seen = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (/cycle 1\/1000/.test(out)) resolve(out);
      });
      child.once('exit', () => reject(new Error(`the run ended before its first fault:\n${out}`)));
    });
    const n = Number(/lab (\d+):/.exec(seen)?.[1]);
    const pids = Object.values(JSON.parse(/pids (\{.*\})/.exec(seen)?.[1] ?? '{}') as Record<string, number>);
    assert.equal(pids.length, 3, seen);
    assert.ok(leftovers(n).length > 0);
    child.kill('SIGINT');
    assert.equal(await code, 130, out);
    assert.deepEqual(leftovers(n), [], out);
    for (const pid of pids) assert.equal(alive(pid), false, `node pid ${pid} still runs`);
    assert.match(out, /INTERRUPTED/);
    assert.doesNotMatch(out, /data and logs:/, 'an interrupted run removes its data');
  });
});
