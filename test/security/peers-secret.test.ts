// The peer plane without TLS (docs/security.md), on real processes: three `raftkv serve`
// nodes with a cluster secret and an admin token. An attacker who knows every address and
// the cluster id forges peer traffic ("mallory" heartbeats at a higher term: what took a
// cluster over before the peer plane had its own authenticated port) on the client port
// (UNIMPLEMENTED) and on the peer port without the secret (UNAUTHENTICATED), while the
// cluster keeps taking writes and keeps its leader and term. Admin calls need the token.
// A node with neither TLS nor a secret refuses to serve peers on a non-loopback address.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RaftKvClient } from '../../src/client/index.ts';
import { CLI, freePort, ProcCluster, rpc } from '../e2e/cluster.ts';
import { isolatedHome, type RaftkvHome } from '../support/raftkv-home.ts';
import { type ForgeResult, forgePeerStream, heartbeat } from './peer-forge.ts';

const UNIMPLEMENTED = 12;
const UNAUTHENTICATED = 16;

describe('peer plane with a cluster secret', () => {
  let c: ProcCluster;
  let client: RaftKvClient;
  let secretFile = '';
  let tokenFile = '';

  before(async () => {
    c = await ProcCluster.prepare(3);
    secretFile = join(c.dir, 'peer-secret');
    tokenFile = join(c.dir, 'admin-token');
    writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    writeFileSync(tokenFile, 'the-admin-token-of-this-test\n', { mode: 0o600 });
    c.setExtra(['--peer-secret-file', secretFile, '--admin-token-file', tokenFile, '--tick-ms', '50']);
    for (const id of c.ids) c.startNode(id);
    await c.leader(60_000);
    client = new RaftKvClient({
      endpoints: c.ids.map((id) => c.address(id)),
      timeoutMs: 20_000,
      retries: 200,
    });
  });

  after(async () => {
    client?.close();
    await c?.destroy();
  });

  /** Runs `attack` over and over for ~1.5 s while writing; asserts writes succeed and leader and term hold. */
  async function underAttack(attack: () => Promise<ForgeResult>): Promise<ForgeResult[]> {
    const leader = await c.leader(30_000);
    // every node up and following the leader first (a process may still be starting on a busy machine)
    for (let i = 0; ; i++) {
      const sts = await Promise.all(
        c.ids.map((id) => rpc(c.client(id), 'GetClusterStatus', {}, 1_000).catch(() => undefined)),
      );
      if (sts.every((st) => st?.['leader'] === leader)) break;
      if (i >= 300) throw new Error(`not every node follows ${leader}\n${c.tail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const before = await rpc(c.client(leader), 'GetClusterStatus', {});
    const results: ForgeResult[] = [];
    const end = Date.now() + 1_500;
    let writes = 0;
    for (let i = 0; i < 200 && Date.now() < end; i++) {
      results.push(await attack());
      await client.put(`attack-${i}`, 'v');
      writes++;
    }
    assert.ok(writes > 0);
    const after = await rpc(c.client(leader), 'GetClusterStatus', {});
    assert.equal(after['leader'], leader, 'the leader did not change');
    assert.equal(after['term'], before['term'], 'the term did not change');
    for (const id of c.ids) {
      const p = c.procs.get(id);
      assert.ok(p?.exitCode === null && p.signalCode === null, `${id} is still running\n${c.tail()}`);
      const st = await rpc(c.client(id), 'GetClusterStatus', {});
      assert.equal(st['leader'], leader, `${id} follows the same leader`);
    }
    return results;
  }

  test('a forged hello from "mallory" on the client port: UNIMPLEMENTED (peers have a port of their own)', async () => {
    const leader = await c.leader();
    const term = Number((await rpc(c.client(leader), 'GetClusterStatus', {}))['term']);
    const results = await underAttack(() =>
      forgePeerStream(c.address(leader), {
        hello: { from: 'mallory', to: leader, nonce: randomBytes(32) },
        messages: [heartbeat('mallory', leader, term + 1)],
      }),
    );
    for (const r of results) assert.equal(r.code, UNIMPLEMENTED, JSON.stringify(r));
  });

  test('on the peer port without the secret: UNAUTHENTICATED, with no nonce, a wrong proof, or no proof', async () => {
    const leader = await c.leader();
    const term = Number((await rpc(c.client(leader), 'GetClusterStatus', {}))['term']);
    const peer = c.peerAddress(leader);
    const member = c.ids.find((id) => id !== leader) as string;
    const kinds = [
      // knows the cluster id, sends no challenge
      () =>
        forgePeerStream(peer, {
          hello: { from: 'mallory', to: leader },
          messages: [heartbeat('mallory', leader, term + 1)],
        }),
      // a challenge, then a made-up proof, claiming to be another member
      () =>
        forgePeerStream(peer, {
          hello: { from: member, to: leader, nonce: randomBytes(32) },
          proof: randomBytes(32),
          messages: [heartbeat(member, leader, term + 1)],
        }),
      // a challenge, then Raft messages instead of a proof
      () =>
        forgePeerStream(peer, {
          hello: { from: 'mallory', to: leader, nonce: randomBytes(32) },
          messages: [heartbeat('mallory', leader, term + 1)],
        }),
    ];
    let i = 0;
    const results = await underAttack(() => (kinds[i++ % kinds.length] as () => Promise<ForgeResult>)());
    for (const r of results) {
      assert.equal(r.code, UNAUTHENTICATED, JSON.stringify(r));
      assert.match(r.message, /peer authentication/);
    }
  });

  test('a peer that never finishes the handshake is cut off: UNAUTHENTICATED after the handshake timeout', async () => {
    const leader = await c.leader();
    // a challenge and then silence: the server must not wait forever (its limit is 10 s)
    const r = await forgePeerStream(c.peerAddress(leader), {
      hello: { from: 'mallory', to: leader, nonce: randomBytes(32) },
      timeoutMs: 20_000,
    });
    assert.equal(r.acked, true, 'the server answered the challenge');
    assert.equal(r.code, UNAUTHENTICATED, JSON.stringify(r));
    assert.match(r.message, /handshake not completed/);
  });

  test('admin calls: PERMISSION_DENIED without the token or with a wrong one; AddMember, RemoveMember and TransferLeader work with it', async () => {
    const leader = await c.leader();
    const other = c.ids.find((id) => id !== leader) as string;
    const addr = c.address(leader);
    const calls: [string, object][] = [
      ['AddMember', { id: 'n9', address: '127.0.0.1:1', learner: true }],
      ['RemoveMember', { id: other }],
      ['TransferLeader', { id: other }],
    ];
    for (const [method, req] of calls) {
      for (const token of [undefined, 'not-the-token']) {
        const bad = new RaftKvClient({
          endpoints: [addr],
          timeoutMs: 10_000,
          ...(token !== undefined ? { adminToken: token } : {}),
        });
        try {
          const p =
            method === 'AddMember'
              ? bad.addMember('n9', '127.0.0.1:1', { learner: true })
              : method === 'RemoveMember'
                ? bad.removeMember((req as { id: string }).id)
                : bad.transferLeader((req as { id: string }).id);
          await assert.rejects(p, (e: Error & { code?: string }) => {
            assert.match(`${e.code} ${e.message}`, /PERMISSION_DENIED/);
            assert.match(e.message, /needs an admin identity/);
            return true;
          });
        } finally {
          bad.close();
        }
      }
    }
    const st = await client.status({ endpoint: addr });
    assert.equal(st.members.length, 3, 'nothing changed');
    assert.equal(st.leader, leader, 'nothing changed');
    // With the token: each of the three goes through.
    const admin = new RaftKvClient({
      endpoints: c.ids.map((id) => c.address(id)),
      timeoutMs: 20_000,
      attemptTimeoutMs: 20_000, // a transfer on a busy machine takes more than the default 2 s attempt
      retries: 100,
      adminToken: 'the-admin-token-of-this-test',
    });
    try {
      await admin.addMember('n9', '127.0.0.1:1', { learner: true, peerAddress: '127.0.0.1:2' });
      let n9: { role: string; peerAddress: string } | undefined;
      for (let i = 0; i < 100 && n9 === undefined; i++) {
        n9 = (await admin.status()).members.find((m) => m.id === 'n9');
        if (n9 === undefined) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(n9?.role, 'learner');
      assert.equal(n9?.peerAddress, '127.0.0.1:2', 'the peer address travels in the membership');
      await admin.removeMember('n9');
      let gone = false;
      for (let i = 0; i < 100 && !gone; i++) {
        gone = !(await admin.status()).members.some((m) => m.id === 'n9');
        if (!gone) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(gone, 'n9 was removed');
      const moved = await admin.transferLeader(other, { timeoutMs: 20_000 });
      assert.equal(moved.leader, other);
    } finally {
      admin.close();
    }
  });
});

describe('start-up refusals', () => {
  async function serve(args: string[], home?: RaftkvHome): Promise<{ code: number | null; out: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: (home ?? isolatedHome()).env(),
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((r) => {
      child.once('exit', (c) => r(c));
      // a node that starts serves until told to stop: stop it once it says it serves
      child.stdout.on('data', () => {
        if (/now leader/.test(out)) child.kill('SIGTERM');
      });
      setTimeout(() => child.kill('SIGKILL'), 60_000).unref();
    });
    return { code, out };
  }

  test('no TLS and no secret with a non-loopback peer address: refused, unless --insecure-peers (said loudly)', async () => {
    const c = await ProcCluster.prepare(0);
    try {
      const base = ['--id', 'n1', '--listen', `127.0.0.1:${await freePort()}`, '--data-dir'];
      const refused = await serve([...base, join(c.dir, 'a'), '--peer-listen', '0.0.0.0:0']);
      assert.equal(refused.code, 2, refused.out);
      assert.match(refused.out, /refusing to serve unauthenticated peer traffic on 0\.0\.0\.0:0/);
      const insecure = await serve([
        ...base,
        join(c.dir, 'b'),
        '--peer-listen',
        '0.0.0.0:0',
        '--insecure-peers',
        '--log-format',
        'json',
      ]);
      assert.equal(insecure.code, 0, insecure.out);
      assert.match(insecure.out, /INSECURE: peer traffic on a non-loopback address without authentication/);
      const short = join(c.dir, 'short-secret');
      writeFileSync(short, 'abc\n', { mode: 0o600 });
      const weak = await serve([
        ...base,
        join(c.dir, 'c'),
        '--peer-listen',
        '0.0.0.0:0',
        '--peer-secret-file',
        short,
      ]);
      assert.equal(weak.code, 1, weak.out);
      assert.match(weak.out, /--peer-secret-file .* holds 3 bytes; at least 16 are needed/);
    } finally {
      await c.destroy();
    }
  });

  test('loopback peers without TLS or a secret: the per-user secret file; an unsafe one is refused, naming it and the fix', async () => {
    const c = await ProcCluster.prepare(0);
    const home = isolatedHome(c.dir);
    try {
      const base = ['--id', 'n1', '--listen', `127.0.0.1:${await freePort()}`, '--log-format', 'json'];
      const file = join(home.dir, 'peer-secrets', 'raftkv');
      const ok = await serve([...base, '--data-dir', join(c.dir, 'a')], home);
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, /peers prove the per-user secret file/);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const secret = readFileSync(file);
      chmodSync(file, 0o644);
      const bad = await serve([...base, '--data-dir', join(c.dir, 'b')], home);
      assert.equal(bad.code, 1, bad.out);
      assert.match(
        bad.out,
        new RegExp(
          `refusing the peer secret file ${file}: other users may read or write it \\(mode 644\\); chmod 600 ${file}`,
        ),
      );
      assert.deepEqual(readFileSync(file), secret, 'the file is unchanged');
      assert.equal(statSync(file).mode & 0o777, 0o644, 'its mode too');
    } finally {
      await c.destroy();
    }
  });

  test('--insecure-peers turns peer authentication off on loopback too, loudly, and writes no secret; it contradicts --peer-secret-file', async () => {
    const c = await ProcCluster.prepare(0);
    const home = isolatedHome(c.dir);
    try {
      const base = ['--id', 'n1', '--listen', `127.0.0.1:${await freePort()}`, '--log-format', 'json'];
      const insecure = await serve([...base, '--data-dir', join(c.dir, 'a'), '--insecure-peers'], home);
      assert.equal(insecure.code, 0, insecure.out);
      assert.match(insecure.out, /INSECURE: peer traffic on a loopback address without authentication/);
      assert.ok(!existsSync(join(home.dir, 'peer-secrets')), 'no per-user secret was made');
      const secretFile = join(c.dir, 'secret');
      writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
      const both = await serve(
        [...base, '--data-dir', join(c.dir, 'b'), '--insecure-peers', '--peer-secret-file', secretFile],
        home,
      );
      assert.equal(both.code, 2, both.out);
      assert.match(
        both.out,
        /--insecure-peers turns peer authentication off, but --peer-secret-file turns it on/,
      );
    } finally {
      await c.destroy();
    }
  });
});
