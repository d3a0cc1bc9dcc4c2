// The data directory lock (src/storage/dir-lock.ts) with real processes: a node killed with -9 and
// restarted as PID 1 of a new PID namespace (a container restart) starts again; a zombie holder and a
// pid reused by another user's process are dead; a live holder of another user is alive; processes
// racing for one directory, free or stale, never both win. Namespaces and other users need root (as
// in CI); where a capability is missing the test says so and skips. Every process started here is
// killed in `after`, even on failure.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/cli/free-port.ts';
import { RaftKvClient } from '../../src/client/index.ts';
import { DirLock, parseStat, selfOwner } from '../../src/storage/dir-lock.ts';
import { StorageLockedError } from '../../src/storage/errors.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/lock-child.ts', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const asRoot = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };

const children = new Set<ChildProcess>();
const extraPids = new Set<number>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const pid of extraPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

/** The next stdout line of `c`, within `ms`. */
function lines(c: ChildProcess): () => Promise<string> {
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let err = '';
  c.stderr?.on('data', (b: Buffer) => {
    err = (err + b.toString()).slice(-4000);
  });
  createInterface({ input: c.stdout! }).on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  return (ms = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const l = queue.shift();
      if (l !== undefined) return resolve(l);
      const t = setTimeout(() => reject(new Error(`no output within ${ms} ms; stderr: ${err}`)), ms);
      waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
}

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'raftkv-lock-'));
  try {
    return await f(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

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
    await new Promise((r) => setTimeout(r, 50));
  }
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => c.once('exit', () => r()));

async function lockFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith('LOCK')).sort();
}

/** The record of the current (highest) lock version. */
async function currentRecord(dir: string): Promise<{ state: string; owner: Record<string, unknown> }> {
  const names = (await lockFiles(dir)).filter((n) => /^LOCK\.\d+$/.test(n));
  const top = names.sort((a, b) => Number(a.slice(5)) - Number(b.slice(5))).at(-1);
  assert.ok(top, `a lock file in ${dir}`);
  return JSON.parse(await readFile(join(dir, top), 'utf8'));
}

function procState(pid: number): string | null {
  try {
    return parseStat(spawnSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }).stdout)?.state ?? null;
  } catch {
    return null;
  }
}

test('/proc/PID/stat: state and start time even when the process name holds spaces and parens', () => {
  const line =
    '4242 (a b) c)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 1 18446744073709551615';
  assert.deepEqual(parseStat(line), { state: 'S', startTime: '987654' });
  assert.equal(parseStat('garbage'), null);
});

test('in one process: a second open is refused; release leaves one released version; the next holder takes over', () =>
  withDir(async (dir) => {
    const a = await DirLock.acquire(dir);
    await assert.rejects(DirLock.acquire(dir), (err: unknown) => {
      assert.ok(err instanceof StorageLockedError);
      assert.equal(err.holder.pid, process.pid);
      assert.match(err.message, new RegExp(`data directory ${dir} is in use by process ${process.pid}`));
      return true;
    });
    assert.deepEqual(await lockFiles(dir), [`LOCK.${a.version}`]);
    assert.equal((await currentRecord(dir)).state, 'held');
    await a.release();
    assert.deepEqual(await lockFiles(dir), [`LOCK.${a.version + 1}`]);
    assert.equal((await currentRecord(dir)).state, 'released');
    const b = await DirLock.acquire(dir);
    assert.equal(b.version, a.version + 2);
    assert.deepEqual(await lockFiles(dir), [`LOCK.${b.version}`]);
    await b.release();
  }));

test('a lock from an earlier boot of this host is dead; one from another host is never taken over', () =>
  withDir(async (dir) => {
    const self = await selfOwner();
    if (self.bootId === undefined) {
      assert.fail('this test needs /proc (Linux): /proc/sys/kernel/random/boot_id is unreadable');
    }
    const held = (owner: object) => `${JSON.stringify({ format: 2, state: 'held', owner, nonce: 'x' })}\n`;
    // The same pid and start time as this very process, but taken before the last boot.
    await writeFile(join(dir, 'LOCK.7'), held({ ...self, bootId: 'an-earlier-boot' }));
    const a = await DirLock.acquire(dir);
    assert.equal(a.version, 8);
    await a.release();
    await writeFile(join(dir, 'LOCK.20'), held({ ...self, host: 'elsewhere', bootId: 'another-machine' }));
    await assert.rejects(DirLock.acquire(dir), (err: unknown) => {
      assert.ok(err instanceof StorageLockedError);
      assert.match(err.message, /on elsewhere \(it was taken on another host or boot .*LOCK\.20\)/);
      return true;
    });
  }));

test('kill -9 of a node running as PID 1 in its own PID namespace, restarted the same way: it starts and keeps its data', async (t) => {
  if (!asRoot) return t.skip('needs root for unshare --pid (CI runs as root)');
  const probe = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']);
  if (probe.status !== 0)
    return t.skip(`unshare --pid does not work here: ${probe.stderr?.toString().trim()}`);
  await withDir(async (dir) => {
    const dataDir = join(dir, 'n1');
    const addr = `127.0.0.1:${await freePort()}`;
    const start = () =>
      track(
        spawn(
          'unshare',
          [
            '--pid',
            '--fork',
            '--mount-proc',
            // unshare killed => its child (PID 1 of the namespace) killed too: no orphan keeps our pipes
            '--kill-child=SIGKILL',
            process.execPath,
            '--import',
            'tsx',
            CLI,
            'serve',
            '--id',
            'n1',
            '--listen',
            addr,
            '--data-dir',
            dataDir,
            '--tick-ms',
            '30',
          ],
          {
            cwd: ROOT,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, RAFTKV_LOG_FORMAT: 'json', RAFTKV_HOME: join(dir, 'home') },
          },
        ),
      );
    const client = new RaftKvClient({ endpoints: [addr], timeoutMs: 5_000, retries: 50 });
    try {
      let output = '';
      const first = start();
      first.stdout?.on('data', (b: Buffer) => (output += b.toString()));
      first.stderr?.on('data', (b: Buffer) => (output += b.toString()));
      await until('the node to serve', async () =>
        (await client.status({ timeoutMs: 1_000 })).leader ? true : undefined,
      );
      await client.put('k', 'before the crash');
      const rec = await currentRecord(dataDir);
      assert.equal(rec.owner['pid'], 1, 'the node is PID 1 in its namespace');
      // From the parent namespace the live PID 1 is found by its start time and namespace.
      await assert.rejects(DirLock.acquire(dataDir), (err: unknown) => {
        assert.ok(err instanceof StorageLockedError, String(err));
        assert.match(
          err.message,
          /is in use by process 1 .*the process is running \(pid \d+ in this PID namespace\)/,
        );
        return true;
      });
      // PID 1 of the namespace is unshare's child; kill -9 it (the namespace dies with it).
      const pid1 = await until('PID 1 of the namespace', async () => {
        const kids = await readFile(`/proc/${first.pid}/task/${first.pid}/children`, 'utf8');
        const p = Number(kids.trim().split(' ')[0]);
        return p > 0 ? p : undefined;
      });
      extraPids.add(pid1);
      process.kill(pid1, 'SIGKILL');
      await exited(first);
      assert.equal((await currentRecord(dataDir)).state, 'held', 'the dead node left its lock behind');
      let again = '';
      const second = start();
      second.stdout?.on('data', (b: Buffer) => (again += b.toString()));
      second.stderr?.on('data', (b: Buffer) => (again += b.toString()));
      await until(
        'the restarted node to serve',
        async () => {
          if (second.exitCode !== null) throw new Error(`the restarted node exited: ${again}`);
          return (await client.status({ timeoutMs: 1_000 })).leader ? true : undefined;
        },
        60_000,
      );
      assert.doesNotMatch(again, /StorageLockedError/);
      assert.equal((await client.get('k')).value, 'before the crash');
      assert.equal((await currentRecord(dataDir)).owner['pid'], 1);
      const pid1b = await until('PID 1 of the second namespace', async () => {
        const kids = await readFile(`/proc/${second.pid}/task/${second.pid}/children`, 'utf8');
        const p = Number(kids.trim().split(' ')[0]);
        return p > 0 ? p : undefined;
      });
      extraPids.add(pid1b);
      process.kill(pid1b, 'SIGKILL');
      second.kill('SIGKILL');
      await exited(second);
    } finally {
      client.close();
    }
  });
});

test('a zombie holder (killed, not yet reaped by its parent) is dead', async () => {
  await withDir(async (dir) => {
    // sh starts the holder in the background, then becomes `sleep`, which never reaps it.
    const sh = track(
      spawn('sh', ['-c', `"${process.execPath}" --import tsx "${CHILD}" hold "${dir}" & exec sleep 600`], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const next = lines(sh);
    const won = await next();
    const m = /^won (\d+)$/.exec(won);
    assert.ok(m, won);
    const pid = Number(m[1]);
    extraPids.add(pid);
    await assert.rejects(DirLock.acquire(dir), StorageLockedError, 'alive: locked');
    process.kill(pid, 'SIGKILL');
    await until('the holder to be a zombie', async () => (procState(pid) === 'Z' ? true : undefined));
    const lock = await DirLock.acquire(dir);
    assert.equal(procState(pid), 'Z', 'still a zombie while the lock was taken over');
    await lock.release();
    sh.kill('SIGKILL');
  });
});

test('another user: a live holder is alive; its pid reused by a process of another user is not the holder', async (t) => {
  if (!asRoot) return t.skip('needs root to run a process as nobody (CI runs as root)');
  await withDir(async (dir) => {
    await chmod(dir, 0o777);
    const data = join(dir, 'data');
    await mkdir(data, { mode: 0o777 });
    await chmod(data, 0o777);
    // A holder running as nobody, judged from root.
    const holder = track(
      spawn(process.execPath, ['--import', 'tsx', CHILD, 'hold', data], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...NOBODY,
      }),
    );
    const won = await lines(holder)();
    assert.match(won, /^won \d+$/);
    await assert.rejects(DirLock.acquire(data), (err: unknown) => {
      assert.ok(err instanceof StorageLockedError);
      assert.equal(err.holder.pid, holder.pid);
      assert.match(err.message, /the process is running/);
      return true;
    });
    // Root holds it; an opener running as nobody (kill(pid, 0) gives it EPERM) is refused.
    holder.kill('SIGKILL');
    await exited(holder);
    const deadRecord = await currentRecord(data);
    const mine = await DirLock.acquire(data);
    const other = track(
      spawn(process.execPath, ['--import', 'tsx', CHILD, 'hold', data], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        ...NOBODY,
      }),
    );
    const refused = await lines(other)();
    assert.match(refused, new RegExp(`^locked .*in use by process ${process.pid} .*the process is running`));
    await exited(other);
    await mine.release();
    // The dead holder's record, its pid now taken by a live process of another user (as after pid reuse).
    const sleeper = track(spawn('sleep', ['600'], { stdio: 'ignore', ...NOBODY }));
    const reused = { ...deadRecord, owner: { ...deadRecord.owner, pid: sleeper.pid } };
    const top = Number((await lockFiles(data)).at(-1)?.slice(5));
    await writeFile(join(data, `LOCK.${top + 1}`), `${JSON.stringify(reused)}\n`);
    const taken = await DirLock.acquire(data);
    assert.equal(taken.version, top + 2);
    await taken.release();
    sleeper.kill('SIGKILL');
  });
});

test('processes racing for one directory, free, released or left by a dead holder: exactly one wins every round', async () => {
  await withDir(async (dir) => {
    // A record left by a dead process, planted in some rounds so that the racers take over a stale lock.
    const dead = join(dir, 'dead');
    await mkdir(dead);
    const holder = track(
      spawn(process.execPath, ['--import', 'tsx', CHILD, 'hold', dead], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    assert.match(await lines(holder)(), /^won /);
    holder.kill('SIGKILL');
    await exited(holder);
    const stale = JSON.stringify(await currentRecord(dead));
    const racers = Array.from({ length: 3 }, () =>
      track(
        spawn(process.execPath, ['--import', 'tsx', CHILD, 'serve'], {
          cwd: ROOT,
          stdio: ['pipe', 'pipe', 'pipe'],
        }),
      ),
    );
    const next = racers.map(lines);
    const ROUNDS = 40;
    const kinds = { free: 0, released: 0, stale: 0 };
    for (let r = 0; r < ROUNDS; r++) {
      const d = join(dir, `r${r}`);
      await mkdir(d);
      const kind = (['free', 'released', 'stale'] as const)[r % 3]!;
      kinds[kind]++;
      if (kind === 'stale') await writeFile(join(d, 'LOCK.3'), stale);
      if (kind === 'released') await (await DirLock.acquire(d)).release();
      for (const c of racers) c.stdin?.write(`acquire ${d}\n`);
      const answers = await Promise.all(next.map((n) => n()));
      const winners = answers.flatMap((a, i) => (a === `won ${d}` ? [i] : []));
      assert.equal(winners.length, 1, `round ${r} (${kind}): ${answers.join(' | ')}`);
      for (const a of answers) assert.ok(a === `won ${d}` || a === `locked ${d}`, a);
      const w = winners[0]!;
      const rec = await currentRecord(d);
      assert.equal(rec.state, 'held');
      assert.equal(rec.owner['pid'], racers[w]!.pid, 'the lock file names the winner');
      assert.deepEqual(
        (await lockFiles(d)).filter((n) => !/^LOCK\.\d+$/.test(n)),
        [],
        'no temp files left behind',
      );
      racers[w]!.stdin?.write(`release ${d}\n`);
      assert.equal(await next[w]!(), `released ${d}`);
    }
    for (const c of racers) c.stdin?.end();
    await Promise.all(racers.map(exited));
    assert.deepEqual(kinds, { free: 14, released: 13, stale: 13 });
  });
});
