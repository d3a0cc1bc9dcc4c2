// The KV API over real gRPC (the project's layer, called by @grpc/grpc-js), on a 3-node
// cluster in one process (in-memory peers, memory storage).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { freePort } from '../../src/cli/free-port.ts';
import { runBench } from '../../src/cli/kv-bench.ts';
import type { ServerCall } from '../../src/grpc/index.ts';
import { type AdminAuth, authorizeAdmin, PROTO_FILE } from '../../src/server/kv-service.ts';
import { type RaftKvServer, ServerConfigError, startServer } from '../../src/server/server.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';

type Unary = (
  req: object,
  opts: { deadline: number },
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;
type KvClient = grpc.Client & Record<string, Unary>;

const def = protoLoader.loadSync(PROTO_FILE, { keepCase: true, longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(def) as unknown as {
  raft: { KeyValueService: new (addr: string, creds: grpc.ChannelCredentials) => KvClient };
};

function once(c: KvClient, method: string, req: object, ms = 5_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const fn = c[method] as Unary;
    fn.call(c, req, { deadline: Date.now() + ms }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Like a real client: retry while the cluster is electing a leader (a busy machine may cause elections). */
async function call(c: KvClient, method: string, req: object, ms = 5_000): Promise<Record<string, unknown>> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await once(c, method, req, ms);
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (e.code !== grpc.status.UNAVAILABLE || !/no leader|not the leader/.test(e.details) || attempt >= 50)
        throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function waitLeader(): Promise<RaftKvServer> {
  for (let i = 0; i < 500; i++) {
    const l = servers.find((s) => s.node.role === 'leader');
    if (l) return l;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no leader');
}

const net = new MemoryNetwork();
const servers: RaftKvServer[] = [];
const clients = new Map<string, KvClient>();
const ids = ['n1', 'n2', 'n3'];

before(async () => {
  const ports = await Promise.all(ids.map(() => freePort()));
  const peers = new Map(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
  for (const id of ids) {
    const s = await startServer({
      id,
      listen: peers.get(id) as string,
      peers,
      dataDir: '',
      storage: new MemoryStorage(),
      transport: () => net.transport(id),
      tickMs: 50,
      seed: Number(id.slice(1)),
      limits: { maxValueBytes: 1000 },
    });
    servers.push(s);
    clients.set(id, new pkg.raft.KeyValueService(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure()));
  }
  const end = Date.now() + 10_000;
  while (!servers.some((s) => s.node.role === 'leader')) {
    if (Date.now() > end) throw new Error('no leader');
    await new Promise((r) => setTimeout(r, 10));
  }
});

after(async () => {
  for (const c of clients.values()) c.close();
  await Promise.all(servers.map((s) => s.close(100)));
});

const client = (id: string) => clients.get(id) as KvClient;

test('raftkv bench: closed-loop clients find the leader and report throughput and percentiles', async () => {
  const r = await runBench({
    endpoints: ids.map((id) => `127.0.0.1:${servers.find((s) => s.id === id)?.port}`),
    clients: 4,
    durationS: 1,
    op: 'mixed',
    valueSize: 16,
    keys: 50,
  });
  // Errors may only be the retryable kind (an election on a busy machine).
  if (r.errors > 0) assert.match(r.firstError ?? '', /UNAVAILABLE|DEADLINE_EXCEEDED/);
  assert.ok(r.ops > 10, `${r.ops} ops`);
  assert.ok(r.p50Ms <= r.p99Ms && r.p99Ms <= r.maxMs);
});

test('put, get and delete through every node; reads are linearizable from followers', async () => {
  for (const [i, id] of ids.entries()) {
    const put = await call(client(id), 'Put', { key: `k${i}`, value: `v${i}` });
    assert.ok((put['revision'] as number) > 0);
    for (const reader of ids) {
      const got = await call(client(reader), 'Get', { key: `k${i}` });
      assert.equal(got['found'], true);
      assert.equal(got['value'], `v${i}`);
    }
  }
  const del = await call(client('n2'), 'Delete', { key: 'k0' });
  assert.equal(del['deleted'], true);
  const gone = await call(client('n3'), 'Get', { key: 'k0' });
  assert.equal(gone['found'], false);
  const again = await call(client('n1'), 'Delete', { key: 'k0' });
  assert.equal(again['deleted'], false);
});

test('compare-and-swap on value, on absence and on version; list by prefix with a limit', async () => {
  assert.equal(
    (await call(client('n1'), 'CompareAndSwap', { key: 'c', value: 'a', expect_absent: true }))['swapped'],
    true,
  );
  assert.equal(
    (await call(client('n2'), 'CompareAndSwap', { key: 'c', value: 'b', expect_absent: true }))['swapped'],
    false,
  );
  assert.equal(
    (await call(client('n3'), 'CompareAndSwap', { key: 'c', value: 'b', expected_value: 'a' }))['swapped'],
    true,
  );
  const g = await call(client('n1'), 'Get', { key: 'c' });
  assert.equal(g['version'], 2);
  assert.equal(
    (await call(client('n1'), 'CompareAndSwap', { key: 'c', value: 'x', expected_version: 1 }))['swapped'],
    false,
  );
  assert.equal(
    (await call(client('n1'), 'CompareAndSwap', { key: 'c', value: 'x', expected_version: 2 }))['swapped'],
    true,
  );
  for (let i = 0; i < 5; i++) await call(client('n2'), 'Put', { key: `list/${i}`, value: String(i) });
  const l = await call(client('n3'), 'List', { prefix: 'list/', limit: 3 });
  assert.deepEqual(
    (l['items'] as { key: string }[]).map((x) => x.key),
    ['list/0', 'list/1', 'list/2'],
  );
  assert.equal(l['more'], true);
});

test('exactly-once writes: a retried (client_id, sequence) of a registered session applies once', async () => {
  const s = await call(client('n2'), 'RegisterSession', {});
  const id = Number(s['client_id']);
  assert.ok(id > 0);
  const req = { key: 'once', value: 'v', client_id: id, sequence: 1 };
  const a = await call(client('n1'), 'Put', req);
  const b = await call(client('n2'), 'Put', req);
  assert.equal(a['revision'], b['revision'], 'the retry returns the first result');
  const g = await call(client('n3'), 'Get', { key: 'once' });
  assert.equal(g['version'], 1);
});

test('a write on a session that is not registered (or was evicted) is FAILED_PRECONDITION "session expired" and changes nothing', async () => {
  await assert.rejects(
    call(client('n1'), 'Put', { key: 'ghost', value: 'v', client_id: 987654321, sequence: 3 }),
    (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
      assert.match(e.details, /^session expired: client 987654321 has no session/);
      return true;
    },
  );
  assert.equal((await call(client('n3'), 'Get', { key: 'ghost' }))['found'], false);
});

test('startServer and the admin check name their own options, not the CLI flags', async () => {
  const bad = [
    [{ listen: 'nowhere' }, /^config\.listen must be host:port, got "nowhere"$/],
    [{ listen: '127.0.0.1:0', peer: { listen: 'x' } }, /^config\.peer\.listen must be host:port, got "x"$/],
  ] as const;
  for (const [cfg, re] of bad) {
    const start = startServer({
      id: 'z',
      peers: new Map(),
      dataDir: '',
      storage: new MemoryStorage(),
      transport: () => net.transport('z'),
      ...cfg,
    });
    await assert.rejects(start, (e: Error) => {
      assert.ok(e instanceof ServerConfigError, String(e));
      assert.match(e.message, re);
      return true;
    });
  }
  const call = (authorization: string) =>
    ({ metadata: { get: () => authorization }, peerCertificate: () => null }) as unknown as ServerCall;
  const denied = (auth: AdminAuth, re: RegExp) =>
    assert.throws(
      () => authorizeAdmin(auth, call('Bearer wrong'), 'TransferLeader'),
      (e: Error) => {
        assert.match(e.message, re);
        assert.doesNotMatch(e.message, /--/);
        return true;
      },
    );
  denied(
    { tokens: ['the-admin-token'] },
    /TransferLeader needs an admin identity: send an admin token \(metadata authorization: Bearer TOKEN\)$/,
  );
  denied({ certNames: ['ops'] }, /needs an admin identity: use an admin client certificate$/);
  denied(
    {},
    /this node has no admin identity configured \(neither an admin token nor an admin certificate name\)$/,
  );
  authorizeAdmin({ tokens: ['the-admin-token'] }, call('Bearer the-admin-token'), 'TransferLeader');
});

test('bad input: empty key, oversized value, half a session: INVALID_ARGUMENT and nothing changes', async () => {
  await assert.rejects(call(client('n1'), 'Put', { key: '', value: 'x' }), (e: grpc.ServiceError) => {
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e.details, /key must not be empty/);
    return true;
  });
  await assert.rejects(
    call(client('n2'), 'Put', { key: 'big', value: 'x'.repeat(1001) }),
    (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.INVALID_ARGUMENT);
      assert.match(e.details, /1001 bytes; the limit is 1000/);
      return true;
    },
  );
  await assert.rejects(once(client('n2'), 'Put', { key: 'half', value: 'x', client_id: 5 }), /both set/);
  assert.equal((await call(client('n3'), 'Get', { key: 'big' }))['found'], false);
});

test('GetClusterStatus reports id, role, term, leader, indices and members', async () => {
  await waitLeader();
  let st = await call(client('n2'), 'GetClusterStatus', {});
  for (let i = 0; i < 100 && !st['leader']; i++) {
    await new Promise((r) => setTimeout(r, 50));
    st = await call(client('n2'), 'GetClusterStatus', {});
  }
  assert.equal(st['id'], 'n2');
  assert.ok(['leader', 'follower'].includes(st['role'] as string));
  assert.ok((st['term'] as number) >= 2);
  assert.ok(ids.includes(st['leader'] as string));
  assert.ok((st['commit_index'] as number) > 0);
  assert.deepEqual((st['members'] as { id: string }[]).map((m) => m.id).sort(), ids);
});

test('membership admin: invalid requests are refused with a reason', async () => {
  const leader = await waitLeader();
  await assert.rejects(call(client(leader.id), 'AddMember', { id: 'bad id!', address: 'x:1' }), /member id/);
  await assert.rejects(call(client(leader.id), 'AddMember', { id: 'n9', address: 'nope' }), /host:port/);
  await assert.rejects(call(client(leader.id), 'RemoveMember', { id: 'n9' }), (e: grpc.ServiceError) => {
    assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
    assert.match(e.details, /not a member/);
    return true;
  });
});

test('no quorum: writes and linearizable reads fail with UNAVAILABLE or DEADLINE_EXCEEDED, local reads still answer', async () => {
  const leader = await waitLeader();
  net.isolate(leader.id);
  try {
    await assert.rejects(
      call(client(leader.id), 'Put', { key: 'q', value: '1' }, 400),
      (e: grpc.ServiceError) => {
        assert.ok(
          [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(e.code),
          `code ${e.code}`,
        );
        return true;
      },
    );
    const local = await call(client(leader.id), 'Get', { key: 'k1', local: true });
    assert.equal(local['found'], true);
  } finally {
    net.heal();
  }
});
