// The peer plane with TLS (docs/security.md), on real processes: three `raftkv serve` nodes
// with mTLS for clients (--cert/--key/--ca) and each its own peer certificate naming its
// node id (--peer-cert/--peer-key). An ordinary client certificate (clientAuth only), even
// one whose CN is a node id, is refused on the peer port; a valid peer certificate whose
// hello claims another sender is refused; no certificate at all fails the TLS handshake.
// The cluster keeps taking writes with the same leader and term throughout. Admin calls need
// a client certificate named in --admin-cert-allowed-cn. Skips when openssl is missing.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RaftKvClient } from '../../src/client/index.ts';
import { CLI, distinctFreePort } from '../e2e/cluster.ts';
import { CLIENT_EXT, haveOpenssl, makeCa, makeLeaf, NODE_EXT, peerExt } from '../support/certs.ts';
import { type ForgeResult, forgePeerStream, heartbeat } from './peer-forge.ts';

const UNIMPLEMENTED = 12;
const UNAUTHENTICATED = 16;
const ids = ['n1', 'n2', 'n3'];

describe('peer plane with TLS', { skip: haveOpenssl ? false : 'SKIPPED: openssl is not installed' }, () => {
  let dir = '';
  const children: ChildProcess[] = [];
  const exits: Promise<unknown>[] = [];
  const client = new Map<string, string>();
  const peer = new Map<string, string>();
  let kv: RaftKvClient | undefined;
  const f = (name: string) => join(dir, name);
  const creds = (name: string) => ({
    cert: readFileSync(f(`${name}.pem`)),
    key: readFileSync(f(`${name}.key`)),
    ca: readFileSync(f('ca.pem')),
  });
  const clientAs = (name: string) =>
    new RaftKvClient({
      endpoints: ids.map((id) => client.get(id) as string),
      timeoutMs: 20_000,
      attemptTimeoutMs: 20_000, // a transfer on a busy machine takes more than the default 2 s attempt
      retries: 200,
      tls: { ca: f('ca.pem'), cert: f(`${name}.pem`), key: f(`${name}.key`) },
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftkv-peers-tls-'));
    makeCa(dir, 'ca', 'raftkv test ca');
    makeLeaf(dir, 'node', 'ca', NODE_EXT);
    for (const id of ids) makeLeaf(dir, id, 'ca', peerExt(id));
    makeLeaf(dir, 'admin', 'ca', CLIENT_EXT);
    makeLeaf(dir, 'user', 'ca', CLIENT_EXT);
    // an ordinary client certificate whose CN happens to be a node id
    makeLeaf(dir, 'client-n2', 'ca', CLIENT_EXT, 'n2');
    const taken = new Set<number>();
    for (const id of ids) client.set(id, `127.0.0.1:${await distinctFreePort(taken)}`);
    for (const id of ids) peer.set(id, `127.0.0.1:${await distinctFreePort(taken)}`);
    const peers = ids.map((id) => `${id}=${client.get(id)}/${peer.get(id)}`).join(',');
    for (const id of ids) {
      const c = spawn(
        process.execPath,
        [
          '--import',
          'tsx',
          CLI,
          'serve',
          '--id',
          id,
          '--listen',
          client.get(id) as string,
          '--peer-listen',
          peer.get(id) as string,
          '--peers',
          peers,
          '--data-dir',
          f(id),
          '--tick-ms',
          '50',
          '--cert',
          f('node.pem'),
          '--key',
          f('node.key'),
          '--ca',
          f('ca.pem'),
          '--peer-cert',
          f(`${id}.pem`),
          '--peer-key',
          f(`${id}.key`),
          '--peer-cert-allowed-cn',
          ids.join(','),
          '--admin-cert-allowed-cn',
          'admin',
        ],
        { stdio: 'ignore' },
      );
      children.push(c);
      exits.push(new Promise((r) => c.once('exit', r)));
    }
    kv = clientAs('user');
    const end = Date.now() + 60_000;
    for (;;) {
      const st = await kv.status({ timeoutMs: 1_000 }).catch(() => undefined);
      if (st?.leader) break;
      if (Date.now() > end) throw new Error('no leader over TLS');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    kv?.close();
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(exits);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function leaderAndTerm(): Promise<{ leader: string; term: number }> {
    const st = await (kv as RaftKvClient).status();
    return { leader: st.leader, term: st.term };
  }

  /** Runs `attack` repeatedly for ~1.5 s while writing; asserts the writes succeed and leader and term hold. */
  async function underAttack(
    attack: (leader: string, term: number) => Promise<ForgeResult>,
  ): Promise<ForgeResult[]> {
    const c = kv as RaftKvClient;
    const before = await leaderAndTerm();
    const results: ForgeResult[] = [];
    const end = Date.now() + 1_500;
    for (let i = 0; i < 200 && Date.now() < end; i++) {
      results.push(await attack(before.leader, before.term));
      await c.put(`tls-attack-${i}`, 'v');
    }
    for (const id of ids) {
      const st = await c.status({ endpoint: client.get(id) as string });
      assert.equal(st.leader, before.leader, `${id} follows the same leader`);
      assert.equal(st.term, before.term, `${id} is in the same term`);
    }
    return results;
  }

  test('an ordinary client certificate (clientAuth only, even with CN n2) is refused on the peer port', async () => {
    const results = await underAttack((leader, term) =>
      forgePeerStream(peer.get(leader) as string, {
        hello: { from: 'n2', to: leader },
        messages: [heartbeat('n2', leader, term + 1)],
        tls: creds('client-n2'),
      }),
    );
    for (const r of results) {
      assert.equal(r.code, UNAUTHENTICATED, JSON.stringify(r));
      assert.match(r.message, /not a peer certificate/);
    }
  });

  test('a valid peer certificate whose hello claims another sender is refused', async () => {
    const results = await underAttack((leader, term) => {
      const holder = ids.find((id) => id !== leader) as string;
      const claimed = ids.find((id) => id !== leader && id !== holder) as string;
      return forgePeerStream(peer.get(leader) as string, {
        hello: { from: claimed, to: leader },
        messages: [heartbeat(claimed, leader, term + 1)],
        tls: creds(holder),
      });
    });
    for (const r of results) {
      assert.equal(r.code, UNAUTHENTICATED, JSON.stringify(r));
      assert.match(r.message, /not the node id/);
    }
  });

  test('no client certificate: the TLS handshake fails; the client port answers peer traffic UNIMPLEMENTED', async () => {
    const { leader, term } = await leaderAndTerm();
    const ca = readFileSync(f('ca.pem'));
    const none = await forgePeerStream(peer.get(leader) as string, {
      hello: { from: 'mallory', to: leader },
      messages: [heartbeat('mallory', leader, term + 1)],
      tls: { ca } as { cert: Buffer; key: Buffer; ca: Buffer },
    });
    assert.equal(none.acked, false);
    assert.notEqual(none.code, 0);
    const api = await forgePeerStream(client.get(leader) as string, {
      hello: { from: 'mallory', to: leader },
      messages: [heartbeat('mallory', leader, term + 1)],
      tls: creds('admin'),
    });
    assert.equal(api.code, UNIMPLEMENTED, JSON.stringify(api));
    assert.deepEqual(await leaderAndTerm(), { leader, term });
  });

  test('admin calls: a client certificate not named in --admin-cert-allowed-cn gets PERMISSION_DENIED; "admin" moves the leader', async () => {
    const { leader } = await leaderAndTerm();
    const target = ids.find((id) => id !== leader) as string;
    const user = clientAs('user');
    const admin = clientAs('admin');
    try {
      const denied = (e: Error & { code?: string }) => {
        assert.equal(e.code, 'PERMISSION_DENIED', e.message);
        assert.match(e.message, /use an admin client certificate/);
        return true;
      };
      await assert.rejects(user.transferLeader(target), denied);
      await assert.rejects(user.removeMember(target), denied);
      await assert.rejects(user.addMember('n9', '127.0.0.1:1', { learner: true }), denied);
      assert.equal((await leaderAndTerm()).leader, leader);
      const r = await admin.transferLeader(target, { timeoutMs: 20_000 });
      assert.equal(r.leader, target);
    } finally {
      user.close();
      admin.close();
    }
  });
});
