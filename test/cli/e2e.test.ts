// End-to-end: real `raftkv serve` processes (3 nodes on free ports, data in a temp dir)
// driven through the CLI and the client library: put/get/del via each node, the status
// table, kill -9 of the leader without losing an acknowledged write, a whole-cluster
// restart with all data back, bad input refused with a clear error, and `raftkv cluster`
// started and stopped. Every process started here is killed in `after`, even on failure.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../../src/cli/free-port.ts';
import { RaftKvClient, RaftKvError } from '../../src/client/index.ts';
import { distinctFreePort } from '../e2e/cluster.ts';
import { isolatedHome } from '../support/raftkv-home.ts';
import { type Settled, waitFor } from '../support/wait.ts';

const ENTRY = ['--import', 'tsx', 'src/cli/main.ts'];
const ids = ['n1', 'n2', 'n3'];

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output: string;
}

const procs = new Set<Proc>();
// the nodes' per-user peer secret goes here, not into the real home
const home = isolatedHome();

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [...ENTRY, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: home.env({ ...process.env, RAFTKV_LOG_FORMAT: 'json' }),
  });
  const p: Proc = {
    child,
    output: '',
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  const keep = (b: Buffer) => {
    p.output = (p.output + b.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  procs.add(p);
  void p.exited.then(() => procs.delete(p));
  return p;
}

/** Runs a CLI command to completion. */
async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [...ENTRY, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: home.env(),
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, out, err };
}

const until = <T>(
  what: string,
  f: () => Promise<T | undefined>,
  ms = 20_000,
): Promise<Settled<T | undefined>> => waitFor(what, f, { timeoutMs: ms, everyMs: 100, retryErrors: true });

describe('real processes', () => {
  let dir = '';
  const addr = new Map<string, string>();
  const peerAddr = new Map<string, string>();
  const nodes = new Map<string, Proc>();
  let peers = '';
  let client: RaftKvClient;

  const serve = (id: string) => {
    const p = start([
      'serve',
      '--id',
      id,
      '--listen',
      addr.get(id) as string,
      '--peer-listen',
      peerAddr.get(id) as string,
      '--peers',
      peers,
      '--data-dir',
      join(dir, id),
      '--tick-ms',
      '30',
      '--admin-token-file',
      join(dir, 'admin-token'),
    ]);
    nodes.set(id, p);
    return p;
  };
  const leaderId = () =>
    until(
      'a leader',
      async () => {
        const st = await client.status({ timeoutMs: 1_000 });
        return st.leader || undefined;
      },
      90_000, // three processes starting on a busy machine
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftkv-e2e-'));
    const taken = new Set<number>();
    for (const id of ids) addr.set(id, `127.0.0.1:${await distinctFreePort(taken)}`);
    for (const id of ids) peerAddr.set(id, `127.0.0.1:${await distinctFreePort(taken)}`);
    peers = ids.map((id) => `${id}=${addr.get(id)}/${peerAddr.get(id)}`).join(',');
    writeFileSync(join(dir, 'admin-token'), 'e2e-admin-token-0123456789\n', { mode: 0o600 });
    for (const id of ids) serve(id);
    client = new RaftKvClient({ endpoints: [...addr.values()], timeoutMs: 10_000, retries: 100 });
    await leaderId();
  });

  after(async () => {
    client?.close();
    for (const p of procs) p.child.kill('SIGKILL');
    await Promise.all([...procs].map((p) => p.exited));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('put, get and del through each node with the CLI', async () => {
    // Independent CLI processes run side by side (each pays Node + tsx start-up).
    const puts = await Promise.all(
      ids.map((id, i) => cli('put', `key${i}`, `value ${i}`, '--endpoints', addr.get(id) as string)),
    );
    for (const put of puts) {
      assert.equal(put.code, 0, put.err);
      assert.match(put.out, /^OK \(revision \d+\)/);
    }
    const gets = await Promise.all(
      ids.map((id, i) => cli('get', `key${(i + 1) % 3}`, '--endpoints', addr.get(id) as string)),
    );
    for (const [i, got] of gets.entries()) {
      assert.equal(got.code, 0, got.err);
      assert.equal(got.out, `value ${(i + 1) % 3}\n`);
    }
    const [js, del] = await Promise.all([
      cli('get', 'key1', '--json', '--endpoints', addr.get('n3') as string),
      cli('del', 'key0', '--endpoints', addr.get('n2') as string),
    ]);
    assert.equal(JSON.parse(js.out).value, 'value 1');
    assert.equal(del.code, 0, del.err);
    assert.match(del.out, /^deleted/);
    const gone = await cli('get', 'key0', '--endpoints', addr.get('n1') as string);
    assert.equal(gone.code, 0);
    assert.equal(gone.out, '');
    assert.match(gone.err, /not found/);
  });

  test('status: a table with every member and one leader', async () => {
    const r = await cli('status', '--endpoints', [...addr.values()].join(','));
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.match(lines[0] as string, /^ID\s+ADDRESS\s+ROLE\s+TERM\s+COMMIT\s+APPLIED\s+LEADER$/);
    assert.equal(lines.length, 4);
    for (const id of ids)
      assert.ok(lines.some((l) => l.startsWith(`${id} `) && l.includes(addr.get(id) as string)));
    assert.equal(lines.filter((l) => /\sleader\s/.test(l)).length, 1);
  });

  test('kill -9 of the leader: a new leader, and no acknowledged write lost', async () => {
    const acked = new Map<string, string>();
    for (let i = 0; i < 30; i++) {
      await client.put(`ack/${i}`, `v${i}`);
      acked.set(`ack/${i}`, `v${i}`);
    }
    const old = await leaderId();
    // Writes go on until a new leader is known (at least 50 of them), so they straddle the kill
    // however fast each one is.
    let newLeader = false;
    const writer = (async () => {
      for (let i = 30; i < 900 && (i < 80 || !newLeader); i++) {
        try {
          await client.put(`ack/${i}`, `v${i}`);
          acked.set(`ack/${i}`, `v${i}`);
        } catch (e) {
          assert.ok(e instanceof RaftKvError, String(e));
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 100));
    const victim = nodes.get(old) as Proc;
    victim.child.kill('SIGKILL');
    await victim.exited;
    // The survivors report the old leader until their election timeout: wait for the new one.
    const now = await until('a new leader', async () => {
      const st = await client.status({ timeoutMs: 1_000 });
      return st.leader && st.leader !== old ? st.leader : undefined;
    });
    newLeader = true;
    await writer;
    assert.notEqual(now, old);
    const st = await cli('status', '--endpoints', [...addr.values()].join(','));
    assert.equal(st.code, 0, st.err);
    assert.match(st.out, new RegExp(`^${old} .*unreachable`, 'm'), st.out);
    assert.match(st.out, new RegExp(`^${now} .*leader`, 'm'), st.out);
    const l = await client.list('ack/', { limit: 1000 });
    const got = new Map(l.items.map((kv) => [kv.key, kv.value]));
    for (const [k, v] of acked) assert.equal(got.get(k), v, `acknowledged ${k} survived`);
    // The killed node comes back and catches up.
    serve(old);
    await until(
      `${old} to catch up`,
      async () => {
        const st = await client.status({ endpoint: addr.get(old) as string, timeoutMs: 1_000 });
        const lst = await client.status({ timeoutMs: 1_000 });
        return st.appliedIndex >= lst.commitIndex ? true : undefined;
      },
      60_000, // a process restart on a busy machine
    );
  });

  test('bad input: empty key, oversized value, data dir of a running node, malformed peers: clear error and exit code', async () => {
    const port = await freePort();
    const [empty, other, peersBad] = await Promise.all([
      cli('put', '', 'v', '--endpoints', addr.get('n1') as string),
      cli('serve', '--id', 'n9', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'n1')),
      cli('serve', '--id', 'n1', '--peers', 'n1=127.0.0.1:1;n2=x', '--data-dir', join(dir, 'x')),
    ]);
    assert.equal(empty.code, 2);
    assert.match(empty.err, /KEY must not be empty/);
    await assert.rejects(
      client.put('', 'v'),
      (e: unknown) => e instanceof RaftKvError && e.code === 'INVALID_ARGUMENT',
    );
    await assert.rejects(
      client.put('big', 'x'.repeat((1 << 20) + 1)),
      (e: unknown) => e instanceof RaftKvError && e.code === 'INVALID_ARGUMENT' && /limit/.test(e.message),
    );
    assert.equal(other.code, 1, other.err);
    assert.match(other.err, /in use by process/, "a running node's directory is locked");
    assert.equal(peersBad.code, 2);
    assert.match(peersBad.err, /--peers/);
    assert.equal(existsSync(join(dir, 'x')), false, 'nothing created');
    assert.equal((await client.get('big')).found, false);
  });

  test('whole-cluster restart: graceful stop (exit 0), a data dir of another node refused, then all data back', async () => {
    await client.put('restart', 'kept');
    const before = await client.list('ack/', { limit: 1000 });
    for (const p of nodes.values()) p.child.kill('SIGTERM');
    const codes = await Promise.all([...nodes.values()].map((p) => p.exited));
    assert.deepEqual(codes, [0, 0, 0]);
    // While stopped: n1's directory is refused to another node id, and nothing changes.
    const other = await cli(
      'serve',
      '--id',
      'n9',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--data-dir',
      join(dir, 'n1'),
    );
    assert.equal(other.code, 1, other.err);
    assert.match(other.err, /belongs to node "n1"/);
    assert.match(other.err, /Check --id, --cluster-id and --data-dir/);
    for (const id of ids) serve(id);
    client.close();
    client = new RaftKvClient({ endpoints: [...addr.values()], timeoutMs: 10_000, retries: 100 });
    await leaderId();
    assert.equal((await client.get('restart')).value, 'kept');
    const again = await client.list('ack/', { limit: 1000 });
    assert.deepEqual(again.items, before.items);
  });

  test('raftkv cluster: starts 3 nodes, prints endpoints, stops them all on SIGTERM; a second run keeps the data (on a free port when one is taken), --clean wipes it', async () => {
    const base = await freePort();
    const httpBase = await freePort();
    const clusterDir = join(dir, 'cluster');
    const run = async (extra: string[], f: (c: RaftKvClient, p: Proc, eps: string[]) => Promise<void>) => {
      const p = start([
        'cluster',
        '--data-dir',
        clusterDir,
        '--base-port',
        String(base),
        '--http-base-port',
        String(httpBase),
        '--tick-ms',
        '30',
        ...extra,
      ]);
      await until(
        'the cluster banner',
        async () => (/Ctrl-C stops all nodes/.test(p.output) ? true : undefined),
        90_000,
      );
      const eps = [
        ...p.output.matchAll(/^ {2}n\d {2}(127\.0\.0\.1:\d+) {2}peers 127\.0\.0\.1:\d+ {2}data/gm),
      ].map((m) => m[1] as string);
      assert.equal(eps.length, 3, p.output);
      const c = new RaftKvClient({ endpoints: eps, timeoutMs: 10_000, retries: 100 });
      try {
        await f(c, p, eps);
      } finally {
        c.close();
        p.child.kill('SIGTERM');
      }
      assert.equal(await p.exited, 0, p.output);
      assert.match(p.output, /all nodes stopped/);
      return p;
    };
    const first = await run([], async (c, p, eps) => {
      assert.match(p.output, /3 nodes up, leader n\d/);
      assert.match(p.output, /grpcurl -plaintext 127\.0\.0\.1:\d+ raft\.KeyValueService\/GetClusterStatus/);
      assert.match(p.output, /^n1 \| /m);
      await c.put('cluster-key', 'kept');
      // raftkv cluster wrote an admin token next to the data, so its own admin commands work
      const leader = (await c.status()).leader;
      const target = leader === 'n2' ? 'n3' : 'n2';
      const tl = await cli(
        'transfer-leader',
        target,
        '--endpoints',
        eps.join(','),
        '--admin-token-file',
        join(clusterDir, 'admin-token'),
        '--timeout',
        '20000',
      );
      assert.equal(tl.code, 0, tl.err);
      writeFileSync(join(dir, 'wrong-token'), 'not-the-admin-token-at-all\n');
      const denied = await cli(
        'transfer-leader',
        leader,
        '--endpoints',
        eps.join(','),
        '--admin-token-file',
        join(dir, 'wrong-token'),
      );
      assert.match(denied.err, /PERMISSION_DENIED/);
      assert.match(denied.err, /needs an admin identity: send an admin token/);
      assert.match(denied.err, /give it here with --admin-token-file/);
      const url = /Dashboard: (http:\/\/\S+)/.exec(p.output)?.[1];
      assert.ok(url, 'the banner gives the dashboard URL');
      const st = (await (await fetch(new URL('/status', url))).json()) as { id: string; members: unknown[] };
      assert.equal(st.id, 'n1');
      assert.equal(st.members.length, 3);
      assert.match(await (await fetch(url)).text(), /<html/);
    });
    // n1 got the base port (the next ones may be taken by other processes on a busy machine).
    assert.doesNotMatch(first.output, new RegExp(`port ${base} is in use`));
    // Second run, with n1's port taken: a free port instead, said clearly; the data is back.
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(base, '127.0.0.1', () => r()));
    try {
      const second = await run([], async (c) => {
        assert.equal((await c.get('cluster-key')).value, 'kept');
      });
      assert.match(
        second.output,
        new RegExp(`port ${base} is in use; n1 listens on 127\\.0\\.0\\.1:\\d+ instead`),
      );
    } finally {
      blocker.close();
    }
    await run(['--clean'], async (c) => {
      assert.equal((await c.get('cluster-key')).found, false);
    });
  });

  test('serve --join: an empty node joins as a learner, catches up, and is promoted to voter', async () => {
    const a4 = `127.0.0.1:${await freePort()}`;
    const p = start([
      'serve',
      '--id',
      'n4',
      '--listen',
      a4,
      '--peer-listen',
      `127.0.0.1:${await freePort()}`,
      '--admin-token-file',
      join(dir, 'admin-token'),
      '--join',
      addr.get('n1') as string,
      '--data-dir',
      join(dir, 'n4'),
      '--tick-ms',
      '30',
    ]);
    await until(
      'n4 to be a voter',
      async () => {
        const st = await client.status({ timeoutMs: 1_000 });
        return st.members.some((m) => m.id === 'n4' && m.role === 'voter') ? true : undefined;
      },
      60_000,
    );
    // n4 logs its promotion once the AddMember answer reaches it, just after the commit.
    await until('n4 to log its promotion', async () =>
      /joined the cluster as a voter/.test(p.output) ? true : undefined,
    );
    const got = await cli('get', 'restart', '--endpoints', a4);
    assert.equal(got.out, 'kept\n', got.err);
    const members = await cli('members', 'list', '--json', '--endpoints', a4);
    assert.deepEqual((JSON.parse(members.out) as { id: string }[]).map((m) => m.id).sort(), [
      'n1',
      'n2',
      'n3',
      'n4',
    ]);
  });

  test('SIGSTOP of the leader: a hung node costs an attempt, not the call; writes go on', async () => {
    const old = await leaderId();
    const victim = nodes.get(old) as Proc;
    const c = new RaftKvClient({
      endpoints: [...addr.values()],
      timeoutMs: 15_000,
      attemptTimeoutMs: 500,
      retries: 100,
    });
    try {
      await c.put('stop/0', 'before');
      victim.child.kill('SIGSTOP');
      await c.put('stop/1', 'during');
      assert.equal((await c.get('stop/1')).value, 'during');
      assert.ok(c.stats.retries > 0, 'the hung leader was retried around');
    } finally {
      victim.child.kill('SIGCONT');
      c.close();
    }
    assert.notEqual(await leaderId(), '');
    assert.equal((await client.get('stop/0')).value, 'before');
  });
});
