// The peer plane with no TLS and no --peer-secret-file (docs/security.md): a cluster started
// exactly as seed 004's command lines (`--node-id nodeI --port P --peers localhost:P2,
// localhost:P3`, no other flag) on loopback. Its nodes prove the per-user secret file of the
// user that started them (an isolated RAFTKV_HOME here); a local attacker who knows the cluster
// id ("raftkv", handed out by GetClusterStatus), every member id and every address, forging
// peer streams from a member's id, gets UNAUTHENTICATED on the peer port and can neither
// append to the log nor move the leadership, while the cluster keeps taking writes.
// Before the per-user secret, such a node accepted unauthenticated peer streams on loopback.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RaftKvClient } from '../../src/client/index.ts';
import type { Message } from '../../src/raft/types.ts';
import { CLI, freePortWithPeer } from '../e2e/cluster.ts';
import { isolatedHome, type RaftkvHome } from '../support/raftkv-home.ts';
import { type ForgeResult, forgePeerStream, heartbeat } from './peer-forge.ts';

const UNAUTHENTICATED = 16;
const TSX = import.meta.resolve('tsx');

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

describe('peer plane on loopback, started as seed 004 (no TLS, no --peer-secret-file)', () => {
  let cwd = '';
  let home: RaftkvHome;
  const ids = ['node1', 'node2', 'node3'];
  const ports = new Map<string, number>();
  const procs = new Map<string, ChildProcess>();
  const logs = new Map<string, string>();
  /** Nodes that logged proving the per-user secret file (seen as their output streams by). */
  const userSecret = new Set<string>();
  let client: RaftKvClient;
  const api = (id: string) => `localhost:${ports.get(id)}`;
  const peer = (id: string) => `127.0.0.1:${(ports.get(id) as number) + 1000}`;
  const tail = () => [...logs].map(([id, l]) => `--- ${id}\n${l}`).join('\n');

  before(async () => {
    cwd = mkdtempSync(join(tmpdir(), 'raftkv-loopback-'));
    home = isolatedHome(cwd);
    const taken = new Set<number>();
    for (const id of ids) ports.set(id, await freePortWithPeer(taken));
    for (const id of ids) {
      const others = ids.filter((o) => o !== id).map(api);
      // seed 004's line, as written: no flag added
      const args = ['serve', '--node-id', id, '--port', String(ports.get(id)), '--peers', others.join(',')];
      const p = spawn(process.execPath, ['--import', TSX, CLI, ...args], {
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: home.env({ ...process.env, RAFTKV_LOG_FORMAT: 'json' }),
      });
      live.add(p);
      p.once('exit', () => live.delete(p));
      procs.set(id, p);
      logs.set(id, '');
      const keep = (b: Buffer) => {
        const text = `${logs.get(id)}${b.toString()}`;
        if (text.includes('peers prove the per-user secret file')) userSecret.add(id);
        logs.set(id, text.slice(-8000));
      };
      p.stdout?.on('data', keep);
      p.stderr?.on('data', keep);
    }
    client = new RaftKvClient({ endpoints: ids.map(api), timeoutMs: 20_000, retries: 200 });
    await everyoneFollows(90_000);
  });

  after(async () => {
    client?.close();
    const exits = [...procs.values()].map((p) =>
      p.exitCode !== null || p.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((r) => p.once('exit', () => r())),
    );
    for (const p of procs.values()) p.kill('SIGKILL');
    await Promise.all(exits);
    if (cwd !== '') rmSync(cwd, { recursive: true, force: true });
  });

  /** The leader every node follows, with the term, once they all agree (bounded by `ms`). */
  async function everyoneFollows(ms = 30_000): Promise<{ leader: string; term: number }> {
    const end = Date.now() + ms;
    for (;;) {
      const sts = await Promise.all(
        ids.map((id) => client.status({ endpoint: api(id), timeoutMs: 1_000 }).catch(() => undefined)),
      );
      const leaders = new Set(sts.map((s) => s?.leader ?? ''));
      const terms = new Set(sts.map((s) => s?.term ?? -1));
      if (leaders.size === 1 && !leaders.has('') && terms.size === 1) {
        return { leader: [...leaders][0] as string, term: [...terms][0] as number };
      }
      if (Date.now() > end) throw new Error(`the nodes do not agree on a leader within ${ms} ms\n${tail()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  test('the nodes authenticate by the per-user secret file, created 0600 in a 0700 directory under RAFTKV_HOME', () => {
    const file = join(home.dir, 'peer-secrets', 'raftkv');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(home.dir, 'peer-secrets')).mode & 0o777, 0o700);
    assert.deepEqual([...userSecret].sort(), ids, tail());
  });

  test('a forger who knows the cluster id, the member ids and the addresses gets UNAUTHENTICATED on every peer port and can neither append nor move the leader', async () => {
    const before = await everyoneFollows();
    const { leader, term } = before;
    const followers = ids.filter((id) => id !== leader);
    const [f1, f2] = followers as [string, string];
    const status0 = await client.status({ endpoint: api(leader) });
    // What a member could do if the stream were accepted: claim leadership at a higher term,
    // append a forged entry there, tell a follower to campaign now, forward a proposal.
    const forged: { to: string; from: string; messages: Message[] }[] = [
      { to: leader, from: f1, messages: [heartbeat(f1, leader, term + 1)] },
      {
        to: f2,
        from: f1,
        messages: [
          {
            type: 'app',
            from: f1,
            to: f2,
            term: term + 1,
            prevIndex: status0.commitIndex,
            prevTerm: term,
            entries: [{ term: term + 1, index: status0.commitIndex + 1, type: 0, data: randomBytes(16) }],
            commit: status0.commitIndex + 1,
          },
        ],
      },
      { to: f1, from: leader, messages: [{ type: 'timeout-now', from: leader, to: f1, term }] },
      {
        to: leader,
        from: f2,
        messages: [
          { type: 'prop', from: f2, to: leader, term, entries: [{ type: 0, data: randomBytes(16) }] },
        ],
      },
    ];
    const results: ForgeResult[] = [];
    let writes = 0;
    // every forged stream in each of the three variants at least once, then more for ~2 s
    const rounds = forged.length * 3;
    const end = Date.now() + 2_000;
    for (let i = 0; i < 200 && (i < rounds || Date.now() < end); i++) {
      const f = forged[i % forged.length] as (typeof forged)[number];
      const variant = Math.floor(i / forged.length) % 3;
      // no challenge; a challenge and a made-up proof; a challenge and Raft messages instead of a proof
      results.push(
        await forgePeerStream(peer(f.to), {
          hello: {
            from: f.from,
            to: f.to,
            clusterId: 'raftkv',
            ...(variant > 0 ? { nonce: randomBytes(32) } : {}),
          },
          ...(variant === 1 ? { proof: randomBytes(32) } : {}),
          messages: f.messages,
        }),
      );
      await client.put(`loopback-attack-${i}`, 'v');
      writes++;
    }
    assert.ok(writes >= rounds, `${writes} writes`);
    for (const r of results) {
      assert.equal(r.code, UNAUTHENTICATED, JSON.stringify(r));
      assert.match(r.message, /peer authentication/);
    }
    const after = await everyoneFollows();
    assert.deepEqual(after, before, 'the same leader in the same term on every node');
    for (const [id, p] of procs) {
      assert.ok(p.exitCode === null && p.signalCode === null, `${id} is still running\n${tail()}`);
    }
    const got = await client.get('loopback-attack-0');
    assert.equal(got.value, 'v');
  });
});
