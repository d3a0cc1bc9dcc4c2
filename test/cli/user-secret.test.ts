// The per-user peer secret file (src/cli/user-secret.ts): where it lives, that it is created
// 0600 in a 0700 directory, that racing starters converge on one secret, and that a file or
// directory other users could read or write is refused with an error naming it and the fix,
// changing nothing. Every file is under a temporary directory, never the real home.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  loadOrCreateUserSecret,
  raftkvHome,
  UserSecretError,
  userSecretPath,
} from '../../src/cli/user-secret.ts';

const root = mkdtempSync(join(tmpdir(), 'raftkv-user-secret-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `home-${n++}`);
const asRoot = process.getuid?.() === 0;

test('where the file is: RAFTKV_HOME, else XDG_CONFIG_HOME/raftkv, else ~/.config/raftkv; one file per cluster id', () => {
  assert.equal(raftkvHome({ RAFTKV_HOME: '/x/y' }), '/x/y');
  assert.equal(raftkvHome({ XDG_CONFIG_HOME: '/cfg' }), '/cfg/raftkv');
  assert.match(raftkvHome({}), /\/\.config\/raftkv$/);
  assert.equal(userSecretPath('raftkv', { RAFTKV_HOME: '/h' }), '/h/peer-secrets/raftkv');
  assert.notEqual(userSecretPath('a', { RAFTKV_HOME: '/h' }), userSecretPath('b', { RAFTKV_HOME: '/h' }));
  // a cluster id that is no safe file name never escapes the directory
  for (const id of ['../../etc/passwd', '..', '.hidden', 'a/b', '']) {
    const p = userSecretPath(id, { RAFTKV_HOME: '/h' });
    assert.match(p, /^\/h\/peer-secrets\/id-[0-9a-f]*$/, id);
  }
});

test('created when absent: 0600 in a 0700 directory, at least 32 bytes; the same secret on every later start', async () => {
  const home = fresh();
  const file = userSecretPath('raftkv', { RAFTKV_HOME: home });
  const first = await loadOrCreateUserSecret(file);
  assert.equal(first.created, true);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(home, 'peer-secrets')).mode & 0o777, 0o700);
  assert.ok(first.secret.length >= 32);
  assert.equal(readFileSync(file, 'utf8').trim(), first.secret.toString('utf8'));
  const again = await loadOrCreateUserSecret(file);
  assert.equal(again.created, false);
  assert.deepEqual(again.secret, first.secret);
  assert.deepEqual(readdirSync(join(home, 'peer-secrets')), ['raftkv'], 'no temporary file is left');
  // another cluster id: another secret
  const other = await loadOrCreateUserSecret(userSecretPath('other', { RAFTKV_HOME: home }));
  assert.notDeepEqual(other.secret, first.secret);
});

test('racing starters converge on one secret: 16 in this process and 4 processes at once, exactly one creates it', async () => {
  const home = fresh();
  const file = userSecretPath('raftkv', { RAFTKV_HOME: home });
  const mod = fileURLToPath(new URL('../../src/cli/user-secret.ts', import.meta.url));
  const code = `import('${mod}').then(async (m) => { const r = await m.loadOrCreateUserSecret(${JSON.stringify(file)}); process.stdout.write(JSON.stringify({ s: r.secret.toString('hex'), c: r.created })); })`;
  const child = () =>
    new Promise<{ s: string; c: boolean }>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '-e', code], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      p.stdout.on('data', (b: Buffer) => (out += b.toString()));
      p.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
      p.once('exit', (c) => {
        clearTimeout(timer);
        if (c === 0) resolve(JSON.parse(out) as { s: string; c: boolean });
        else reject(new Error(`child exited ${c}: ${err}`));
      });
    });
  const results = await Promise.all([
    ...Array.from({ length: 4 }, child),
    ...Array.from({ length: 16 }, async () => {
      const r = await loadOrCreateUserSecret(file);
      return { s: r.secret.toString('hex'), c: r.created };
    }),
  ]);
  assert.equal(new Set(results.map((r) => r.s)).size, 1, 'one secret');
  assert.equal(results.filter((r) => r.c).length, 1, 'exactly one starter created it');
  assert.equal(results[0]?.s, readFileSync(file).toString('hex').replace(/0a$/, ''));
  assert.deepEqual(readdirSync(join(home, 'peer-secrets')), ['raftkv'], 'no temporary file is left');
});

/** Asserts that loading `file` is refused with a message matching `re`, and that the file is unchanged. */
async function refused(file: string, re: RegExp): Promise<void> {
  const before = statSync(file, { throwIfNoEntry: false });
  const content = before?.isFile() ? readFileSync(file) : null;
  await assert.rejects(loadOrCreateUserSecret(file), (e: unknown) => {
    assert.ok(e instanceof UserSecretError, String(e));
    assert.match(e.message, re);
    return true;
  });
  const after = statSync(file, { throwIfNoEntry: false });
  assert.equal(after?.mode, before?.mode, 'the mode is unchanged');
  if (content !== null) assert.deepEqual(readFileSync(file), content, 'the content is unchanged');
}

test('a file other users may read or write is refused, naming the file and the fix', async () => {
  for (const mode of [0o640, 0o604, 0o620, 0o666]) {
    const file = userSecretPath('raftkv', { RAFTKV_HOME: fresh() });
    await loadOrCreateUserSecret(file);
    chmodSync(file, mode);
    await refused(
      file,
      new RegExp(
        `refusing the peer secret file ${file}: other users may read or write it \\(mode ${mode.toString(8)}\\); chmod 600 ${file}`,
      ),
    );
  }
});

test('a directory other users may write, a symbolic link, a short secret: refused', async () => {
  const home = fresh();
  const dir = join(home, 'peer-secrets');
  const file = join(dir, 'raftkv');
  await loadOrCreateUserSecret(file);
  chmodSync(dir, 0o777);
  await refused(
    file,
    new RegExp(
      `refusing the peer secret directory ${dir}: other users may write to it \\(mode 777\\); chmod 700 ${dir}`,
    ),
  );
  chmodSync(dir, 0o700);
  const target = join(home, 'elsewhere');
  writeFileSync(target, 'x'.repeat(64), { mode: 0o600 });
  const link = join(dir, 'linked');
  symlinkSync(target, link);
  await refused(link, /refusing the peer secret file .*linked: it is a symbolic link/);
  const short = join(dir, 'short');
  writeFileSync(short, 'abc\n', { mode: 0o600 });
  await refused(short, /peer secret file .*short holds 3 bytes; at least 16 are needed/);
});

test('a file or directory owned by another user is refused', {
  skip: !asRoot && 'needs root to chown',
}, async () => {
  const home = fresh();
  const file = userSecretPath('raftkv', { RAFTKV_HOME: home });
  await loadOrCreateUserSecret(file);
  chownSync(file, 65534, 65534);
  await refused(
    file,
    /refusing the peer secret file .*: it is owned by uid 65534, not by this user \(uid 0\)/,
  );
  const home2 = fresh();
  mkdirSync(join(home2, 'peer-secrets'), { recursive: true, mode: 0o700 });
  chownSync(join(home2, 'peer-secrets'), 65534, 65534);
  await assert.rejects(
    loadOrCreateUserSecret(join(home2, 'peer-secrets', 'raftkv')),
    /refusing the peer secret directory .*peer-secrets: it is owned by uid 65534/,
  );
});

test('a home that cannot be made: the error names the directory and the ways out', async () => {
  const notDir = join(root, 'a-file');
  writeFileSync(notDir, 'x');
  await assert.rejects(
    loadOrCreateUserSecret(userSecretPath('raftkv', { RAFTKV_HOME: join(notDir, 'home') })),
    (e: unknown) => {
      assert.ok(e instanceof UserSecretError);
      assert.match(
        e.message,
        /cannot create the peer secret directory .*a-file\/home\/peer-secrets: .*give every node the same --peer-secret-file, or set RAFTKV_HOME/,
      );
      return true;
    },
  );
});
