// Client sessions that do not grow forever (issue 15, part 6), through the client library
// against an in-process 3-node cluster whose session table holds only 2 sessions: a write
// on an evicted session is refused, never applied twice; the client opens a new session
// when that is safe and raises RaftKvSessionExpiredError when the outcome is unknown.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RaftKvClient, RaftKvSessionExpiredError } from '../../src/client/index.ts';
import { type RaftKvServer, startServer } from '../../src/server/server.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';

const net = new MemoryNetwork();
const ids = ['n1', 'n2', 'n3'];
const servers = new Map<string, RaftKvServer>();
let endpoints: string[] = [];
const clients: RaftKvClient[] = [];

function client(): RaftKvClient {
  const c = new RaftKvClient({ endpoints, timeoutMs: 5_000 });
  clients.push(c);
  return c;
}

const leader = () => [...servers.values()].find((s) => s.node.role === 'leader');

before(async () => {
  const peers = new Map(ids.map((id) => [id, '127.0.0.1:0']));
  for (const id of ids) {
    const s = await startServer({
      id,
      listen: '127.0.0.1:0',
      peers,
      dataDir: '',
      storage: new MemoryStorage(),
      transport: () => net.transport(id),
      tickMs: 10,
      seed: Number(id.slice(1)),
      maxSessions: 2,
    });
    servers.set(id, s);
  }
  endpoints = ids.map((id) => `127.0.0.1:${(servers.get(id) as RaftKvServer).port}`);
  for (const s of servers.values()) {
    for (const [i, id] of ids.entries()) s.sm.members.set(id, endpoints[i] as string);
  }
  for (let i = 0; i < 1000 && !leader(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(leader(), 'a leader');
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all([...servers.values()].map((s) => s.close(100)));
});

test('a client registers one session for its sequential writes', async () => {
  const c = client();
  for (let i = 0; i < 5; i++) await c.put('seq', String(i));
  assert.equal(c.stats.sessionsOpened, 1);
  assert.equal((await c.get('seq')).version, 5);
});

test('a session evicted while idle: the next write (one attempt, refused) goes again on a new session, applied once', async () => {
  const a = client();
  await a.put('idle', '1');
  // Two other clients open sessions: a's is now the least recently used, and is evicted.
  await client().put('other', 'b');
  await client().put('other', 'c');
  await a.put('idle', '2');
  assert.equal(a.stats.sessionsExpired, 1);
  assert.equal(a.stats.sessionsOpened, 2);
  const g = await a.get('idle');
  assert.equal(g.value, '2');
  assert.equal(g.version, 2, 'applied exactly once');
  for (const s of servers.values()) assert.ok(s.sm.sessionCount <= 2);
});

test('a write retried after its session was evicted: RaftKvSessionExpiredError, never a second apply', async () => {
  const a = client();
  await a.put('retry', '1');
  await client().put('other', 'd');
  await client().put('other', 'e');
  // The next attempt of a's write goes first to a dead address, so the write takes two
  // attempts: the second is refused for its expired session, and the first could have been
  // applied, as far as the client knows.
  (a as unknown as { leaderAddress: string }).leaderAddress = '127.0.0.1:1';
  await assert.rejects(a.put('retry', '2'), (e: unknown) => {
    assert.ok(e instanceof RaftKvSessionExpiredError, String(e));
    assert.equal(e.code, 'FAILED_PRECONDITION');
    assert.equal(e.attempts, 2);
    assert.match(e.message, /session expired.*may or may not have been applied/);
    return true;
  });
  const g = await a.get('retry');
  assert.deepEqual([g.value, g.version], ['1', 1], 'the refused write changed nothing');
  // The client goes on with a new session.
  await a.put('retry', '3');
  assert.equal((await a.get('retry')).version, 2);
});
