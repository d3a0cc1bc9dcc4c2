// `raftkv cluster` keeps the majority up (real processes): a node killed while running is reported
// loudly and the other two serve on (SIGTERM then stops all, exit 0); a node whose WAL has a flipped
// bit refuses to start, the banner and the supervisor's /nodes name it down with its error, the
// dashboard shows it down, the other two serve with the data; losing a second node (no majority)
// stops the cluster with exit 1. Every process started here is killed in `after`, even on failure.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { freePort } from '../../src/cli/free-port.ts';
import { RaftKvClient } from '../../src/client/index.ts';
import { SEGMENT_HEADER_BYTES, segmentName } from '../../src/storage/codec.ts';

const ENTRY = ['--import', 'tsx', 'src/cli/main.ts'];

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  out: string;
  err: string;
}
const procs = new Set<Proc>();
const nodePids = new Set<number>();
const dir = mkdtempSync(join(tmpdir(), 'raftkv-cluster-down-'));

after(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  for (const pid of nodePids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await Promise.all([...procs].map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface NodeReport {
  id: string;
  state: string;
  pid: number | null;
  exit: string | null;
  lastLines: string[];
}

async function startCluster(): Promise<{
  p: Proc;
  client: RaftKvClient;
  eps: Map<string, string>;
  nodesUrl: string;
}> {
  const child = spawn(
    process.execPath,
    [
      ...ENTRY,
      'cluster',
      '--data-dir',
      dir,
      '--base-port',
      String(await freePort()),
      '--http-base-port',
      String(await freePort()),
      '--tick-ms',
      '30',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RAFTKV_LOG_FORMAT: 'json' } },
  );
  const p: Proc = {
    child,
    out: '',
    err: '',
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  child.stdout.on('data', (b: Buffer) => {
    p.out = (p.out + b.toString()).slice(-200_000);
  });
  child.stderr.on('data', (b: Buffer) => {
    p.err = (p.err + b.toString()).slice(-50_000);
  });
  procs.add(p);
  void p.exited.then(() => procs.delete(p));
  await until(
    'the cluster banner',
    async () => {
      if (child.exitCode !== null) throw new Error(`raftkv cluster exited: ${p.err}`);
      return /Ctrl-C stops all nodes/.test(p.out) ? true : undefined;
    },
    60_000,
  );
  const eps = new Map(
    [...p.out.matchAll(/^ {2}(n\d) {2}(127\.0\.0\.1:\d+) {2}/gm)].map((m) => [m[1]!, m[2]!]),
  );
  assert.equal(eps.size, 3, p.out);
  const nodesUrl = /^Node states: (http:\/\/\S+\/nodes)/m.exec(p.out)?.[1];
  assert.ok(nodesUrl, p.out);
  const reports = await nodes(nodesUrl);
  for (const r of reports) if (r.pid) nodePids.add(r.pid);
  const client = new RaftKvClient({ endpoints: [...eps.values()], timeoutMs: 10_000, retries: 100 });
  return { p, client, eps, nodesUrl };
}

async function nodes(url: string): Promise<NodeReport[]> {
  const r = await fetch(url);
  assert.equal(r.headers.get('access-control-allow-origin'), '*');
  return ((await r.json()) as { nodes: NodeReport[] }).nodes;
}

function findChromium(): string | null {
  if (process.env['CHROMIUM'] === 'none') return null;
  for (const c of [process.env['CHROMIUM'], '/usr/bin/chromium', '/usr/bin/chromium-browser']) {
    if (c && existsSync(c)) return c;
  }
  return null;
}

function dumpDom(bin: string, url: string): Promise<string> {
  const profile = mkdtempSync(join(tmpdir(), 'raftkv-chromium-'));
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    `--user-data-dir=${profile}`,
    '--virtual-time-budget=5000',
    '--dump-dom',
    url,
  ];
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout) => {
      rmSync(profile, { recursive: true, force: true });
      if (err) reject(err);
      else resolve(stdout);
    });
  });
}

test('a node killed while running: reported loudly, the other two serve on; SIGTERM stops all with exit 0', async () => {
  const { p, client, nodesUrl } = await startCluster();
  try {
    assert.match(p.out, /raftkv cluster: 3 of 3 nodes up, leader n\d/);
    for (let i = 0; i < 20; i++) await client.put(`k${i}`, `v${i}`);
    const n3 = (await nodes(nodesUrl)).find((r) => r.id === 'n3');
    assert.ok(n3?.pid, 'n3 runs');
    process.kill(n3.pid, 'SIGKILL');
    await until('the down report', async () =>
      /n3 is DOWN \(signal SIGKILL while running\); 2 of 3 nodes running, a majority: the cluster serves on/.test(
        p.err,
      )
        ? true
        : undefined,
    );
    const after = await nodes(nodesUrl);
    assert.deepEqual(
      after.map((r) => [r.id, r.state]),
      [
        ['n1', 'up'],
        ['n2', 'up'],
        ['n3', 'down'],
      ],
    );
    await client.put('after-kill', 'yes');
    assert.equal((await client.get('after-kill')).value, 'yes');
    assert.equal(p.child.exitCode, null, 'the cluster runs on');
  } finally {
    client.close();
    p.child.kill('SIGTERM');
  }
  assert.equal(await p.exited, 0, p.err);
  assert.match(p.out, /all nodes stopped/);
});

test('a node whose WAL has a flipped bit: named down with its error in the banner, /nodes and the dashboard; the others serve; losing one more stops the cluster (exit 1)', async (t) => {
  // n3's log from the first test: flip a bit inside its first record (intact records follow: corruption).
  const wal = join(dir, 'n3', segmentName(1));
  const bytes = readFileSync(wal);
  bytes[SEGMENT_HEADER_BYTES + 12]! ^= 0x10;
  writeFileSync(wal, bytes);
  const { p, client, eps, nodesUrl } = await startCluster();
  try {
    assert.match(p.out, /raftkv cluster: 2 of 3 nodes up, leader n[12]/);
    assert.match(p.out, /^ {2}n3 {2}127\.0\.0\.1:\d+ {2}DOWN \(exit code 1\): .*CorruptionError/m);
    assert.match(p.out, /!!! n3 is DOWN; the other 2 serve on \(a majority\)/);
    assert.match(p.err, /!!! raftkv cluster: n3 is DOWN \(exit code 1 during start-up\)/);
    assert.match(
      p.err,
      /!!! {3}raftkv serve: CorruptionError \[ERR_STORAGE_CORRUPT\]: corrupt data in .*n3.*wal-/,
    );
    const n3 = (await nodes(nodesUrl)).find((r) => r.id === 'n3');
    assert.equal(n3?.state, 'down');
    assert.equal(n3?.exit, 'exit code 1');
    assert.match(n3?.lastLines.join('\n') ?? '', /corrupt data in .*at byte offset/);
    assert.equal((await client.get('k7')).value, 'v7', 'the data is served by the other two');
    await client.put('with-two', 'ok');
    const dash = /^Dashboard: (http:\/\/\S+)/m.exec(p.out)?.[1] ?? '';
    assert.match(dash, /\?supervisor=127\.0\.0\.1:\d+$/, p.out);
    const bin = findChromium();
    if (bin) {
      const html = await dumpDom(bin, dash);
      assert.doesNotMatch(html, /data-errors=/, 'no script errors');
      assert.match(
        html,
        /<span class="alert" data-down="n3"[^>]*>n3 is down \(exit code 1\): raftkv serve: CorruptionError/,
      );
      assert.match(html, /<tr class="down" data-node="n3">.*○ down \(exit code 1\)/s);
    } else {
      t.diagnostic('chromium is not installed: the dashboard rendering was not checked');
    }
    // A second node dies: no majority is left, the cluster stops the last one and exits 1.
    const n2 = (await nodes(nodesUrl)).find((r) => r.id === 'n2');
    assert.ok(n2?.pid);
    process.kill(n2.pid, 'SIGKILL');
    assert.equal(await p.exited, 1, p.err);
    assert.match(p.err, /n2, n3 are down; 1 of 3 nodes cannot form a majority: stopping/);
    const n1 = await client.status({ endpoint: eps.get('n1')!, timeoutMs: 500 }).catch(() => null);
    assert.equal(n1, null, 'n1 was stopped too');
  } finally {
    client.close();
    p.child.kill('SIGTERM');
  }
});
