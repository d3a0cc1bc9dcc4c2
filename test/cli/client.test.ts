// The client library against an in-process 3-node cluster (in-memory peers, memory
// storage, real gRPC for the API): leader discovery, retries across a leader change,
// exactly-once writes on retry, deadlines, typed errors.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RaftKvClient, RaftKvClosedError, RaftKvError, RaftKvTimeoutError } from '../../src/client/index.ts';
import { type RaftKvServer, startServer } from '../../src/server/server.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { waitFor } from '../support/wait.ts';

const net = new MemoryNetwork();
const ids = ['n1', 'n2', 'n3'];
const servers = new Map<string, RaftKvServer>();
let endpoints: string[] = [];
const clients: RaftKvClient[] = [];

function client(opts: Partial<ConstructorParameters<typeof RaftKvClient>[0]> = {}): RaftKvClient {
  const c = new RaftKvClient({ endpoints, timeoutMs: 5_000, ...opts });
  clients.push(c);
  return c;
}

const leader = () => [...servers.values()].find((s) => s.node.role === 'leader');

before(async () => {
  // Bind first with port 0, then tell each node its peers' real addresses.
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
      limits: { maxValueBytes: 1000 },
    });
    servers.set(id, s);
  }
  endpoints = ids.map((id) => `127.0.0.1:${(servers.get(id) as RaftKvServer).port}`);
  // The servers learned '127.0.0.1:0' for their peers; patch the address book the API
  // reports through membership (the memory transport does not need addresses).
  for (const s of servers.values()) {
    for (const [i, id] of ids.entries()) s.sm.members.set(id, endpoints[i] as string);
  }
  await waitFor('a leader', leader);
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all([...servers.values()].map((s) => s.close(100)));
});

test('put, get, delete, cas and list through the client', async () => {
  const c = client();
  const p = await c.put('a', '1');
  assert.ok(p.revision > 0);
  assert.deepEqual(await c.get('a'), { found: true, value: '1', modRevision: p.revision, version: 1 });
  assert.equal((await c.compareAndSwap('a', '2', { expectedValue: '1' })).swapped, true);
  assert.equal((await c.compareAndSwap('a', '3', { expectedValue: '1' })).swapped, false);
  assert.equal((await c.compareAndSwap('b', 'x', { expectAbsent: true })).swapped, true);
  assert.equal((await c.compareAndSwap('b', 'y', { expectedVersion: 1 })).swapped, true);
  for (let i = 0; i < 4; i++) await c.put(`p/${i}`, String(i));
  const l = await c.list('p/', { limit: 3 });
  assert.deepEqual(
    l.items.map((i) => i.key),
    ['p/0', 'p/1', 'p/2'],
  );
  assert.equal(l.more, true);
  assert.equal((await c.delete('a')).deleted, true);
  assert.equal((await c.get('a')).found, false);
  assert.equal((await c.delete('a')).deleted, false);
});

test('leader discovery: writes go to the leader found through GetClusterStatus', async () => {
  const c = client();
  await c.put('disc', 'x');
  const l = leader() as RaftKvServer;
  assert.equal(c.leader, `127.0.0.1:${l.port}`);
  const st = await c.status();
  assert.equal(st.leader, l.id);
  assert.deepEqual(st.members.map((m) => m.id).sort(), ids);
});

test('status of one endpoint only, and a local read from the first endpoint', async () => {
  const c = client();
  await c.put('loc', 'v');
  for (const [i, e] of endpoints.entries()) {
    const st = await c.status({ endpoint: e });
    assert.equal(st.id, ids[i]);
  }
  // A local read may be stale; wait until the first endpoint applied the write.
  const c1 = client({ endpoints: [endpoints[0] as string] });
  const end = Date.now() + 5_000;
  for (;;) {
    const g = await c1.get('loc', { local: true });
    if (g.found) break;
    assert.ok(Date.now() < end, 'local read never saw the write');
    await new Promise((r) => setTimeout(r, 20));
  }
});

test('typed errors: INVALID_ARGUMENT is not retried and names the problem', async () => {
  const c = client();
  await assert.rejects(c.put('', 'x'), (e: unknown) => {
    assert.ok(e instanceof RaftKvError);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.equal(e.retryable, false);
    assert.match(e.message, /key must not be empty/);
    return true;
  });
  await assert.rejects(c.put('big', 'x'.repeat(1001)), /limit is 1000/);
});

test('an unreachable endpoint is skipped: retries try the others', async () => {
  const dead = '127.0.0.1:1';
  const c = client({ endpoints: [dead, ...endpoints] });
  await c.put('skip', 'ok');
  assert.equal((await c.get('skip')).value, 'ok');
});

test('exactly-once: a write retried after its first attempt timed out applies once', async () => {
  const c = client({ attemptTimeoutMs: 150, timeoutMs: 10_000, retries: 50 });
  await c.put('once', 'v0');
  const l = leader() as RaftKvServer;
  // Cut the leader off: the write is appended but cannot commit, the attempt times out;
  // retries with the same (client_id, sequence) reach the new leader.
  net.isolate(l.id);
  const p = c.put('once', 'v1');
  await new Promise((r) => setTimeout(r, 400));
  net.heal();
  await p;
  assert.ok(c.stats.retries > 0, 'the write was retried');
  const g = await client().get('once');
  assert.equal(g.value, 'v1');
  assert.equal(g.version, 2, 'the retried write applied exactly once');
});

test('retries across a leader change: writes keep succeeding while leadership moves', async () => {
  const c = client({ timeoutMs: 10_000, retries: 50 });
  const old = leader() as RaftKvServer;
  const target = ids.find((id) => id !== old.id) as string;
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 20; i++) writes.push(c.put(`lc/${i}`, String(i)));
  await client().transferLeader(target);
  for (let i = 20; i < 40; i++) writes.push(c.put(`lc/${i}`, String(i)));
  await Promise.all(writes);
  const l = await client().list('lc/', { limit: 100 });
  assert.equal(l.items.length, 40);
  for (const kv of l.items) assert.equal(kv.version, 1, `${kv.key} written once`);
});

test('deadlines: with no quorum a write fails with a typed timeout or UNAVAILABLE within its deadline', async () => {
  const c = client({ timeoutMs: 600, attemptTimeoutMs: 200 });
  await c.put('dl', 'before');
  for (const id of ids) net.isolate(id);
  try {
    await assert.rejects(c.put('dl', 'after'), (e: unknown) => {
      assert.ok(e instanceof RaftKvError);
      assert.ok(e instanceof RaftKvTimeoutError || e.code === 'UNAVAILABLE', `${e.name} ${e.code}`);
      return true;
    });
  } finally {
    net.heal();
  }
});

test('close(): later calls fail with a closed error', async () => {
  const c = client();
  c.close();
  await assert.rejects(
    c.get('x'),
    (e: unknown) => e instanceof RaftKvClosedError && /closed/.test(e.message),
  );
});
