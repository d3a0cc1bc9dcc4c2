// npm run tmux (scripts/tmux.sh): seed 004's command lines in one tmux window per node and a
// client window; the three nodes form one cluster that takes writes. The session is killed
// (with its processes) at the end, also on failure.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RaftKvClient } from '../../src/client/index.ts';
import { waitFor } from '../support/wait.ts';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const hasTmux = spawnSync('tmux', ['-V'], { stdio: 'ignore' }).status === 0;
const skip = hasTmux ? false : 'SKIPPED: tmux is not installed (apt-get install -y tmux)';
if (skip) console.log(`# tmux: ${skip}`);

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** A base port whose three client ports and their peer ports (+1000) are all free now. */
async function freeBase(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const all = [0, 1, 2].flatMap((k) => [base + k, base + k + 1000]);
    if ((await Promise.all(all.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free base port');
}

test('npm run tmux: three windows running seed 004 lines form a cluster that takes writes', {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-tmux-'));
  const session = `raftkv-test-${process.pid}`;
  const base = await freeBase();
  let client: RaftKvClient | undefined;
  try {
    const r = spawnSync(
      'bash',
      [
        join(REPO, 'scripts/tmux.sh'),
        '--session',
        session,
        '--base-port',
        String(base),
        '--data-dir',
        dir,
        '--detach',
      ],
      // the nodes' per-user peer secret under the test's directory, not the real home
      { encoding: 'utf8', timeout: 30_000, env: { ...process.env, RAFTKV_HOME: join(dir, 'home') } },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /windows node1 node2 node3 client/);
    const windows = spawnSync('tmux', ['list-windows', '-t', session, '-F', '#{window_name}'], {
      encoding: 'utf8',
    });
    assert.deepEqual(windows.stdout.trim().split('\n'), ['node1', 'node2', 'node3', 'client']);
    const endpoints = [0, 1, 2].map((k) => `127.0.0.1:${base + k}`);
    client = new RaftKvClient({ endpoints, timeoutMs: 5_000 });
    const c = client;
    const st = await waitFor(
      'a leader followed by all three',
      async () => {
        const s = await c.status({ timeoutMs: 2_000 });
        return s.leader !== '' && s.members.length === 3 ? s : undefined;
      },
      { timeoutMs: 120_000, everyMs: 500, retryErrors: true },
    );
    assert.deepEqual(st.members.map((m) => m.id).sort(), ['node1', 'node2', 'node3']);
    // they authenticate each other by the per-user secret, in the RAFTKV_HOME given to the script
    assert.equal(statSync(join(dir, 'home', 'peer-secrets', 'raftkv')).mode & 0o777, 0o600);
    await c.put('tmux', 'works');
    assert.equal((await c.get('tmux')).value, 'works');
    // A second run with the same session name is refused and changes nothing.
    const again = spawnSync('bash', [join(REPO, 'scripts/tmux.sh'), '--session', session, '--detach'], {
      encoding: 'utf8',
    });
    assert.equal(again.status, 1);
    assert.match(again.stderr, /exists already/);
  } finally {
    client?.close();
    spawnSync('tmux', ['kill-session', '-t', session]);
    rmSync(dir, { recursive: true, force: true });
  }
});
