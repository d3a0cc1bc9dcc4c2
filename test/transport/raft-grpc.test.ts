// A real cluster over the network: three RaftNodes (memory storage, KV state machine) talking
// through GrpcTransport on 127.0.0.1 elect a leader and commit 1000 proposals, some of them
// forwarded by followers over the same peer streams.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createGrpcServer, type GrpcServer } from '../../src/grpc/index.ts';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../../src/transport/grpc.ts';
import { waitFor } from './conformance.ts';
import { CapturingLogger } from './grpc-harness.ts';

type KvNode = RaftNode<KvResult | null>;
const quiet = { info() {}, warn() {}, error() {} };

test('3 RaftNodes over GrpcTransport elect a leader and commit 1000 proposals', async () => {
  const ids = ['n1', 'n2', 'n3'];
  const servers = new Map<string, GrpcServer>();
  const addresses = new Map<string, string>();
  for (const id of ids) {
    const s = createGrpcServer({ ...PEER_SERVER_OPTIONS, health: false, reflection: false, log: quiet });
    addresses.set(id, `127.0.0.1:${await s.listen('127.0.0.1', 0)}`);
    servers.set(id, s);
  }
  const nodes = new Map<string, KvNode>();
  const sms = new Map<string, KvStateMachine>();
  const transports: GrpcTransport[] = [];
  try {
    for (const id of ids) {
      const transport = new GrpcTransport({
        id,
        clusterId: 'raft-test',
        peers: new Map([...addresses].filter(([p]) => p !== id)),
        logger: new CapturingLogger(),
      });
      transport.register(servers.get(id)!);
      transports.push(transport);
      const sm = new KvStateMachine();
      sms.set(id, sm);
      nodes.set(
        id,
        await RaftNode.start({
          id,
          storage: new MemoryStorage(),
          transport,
          stateMachine: sm,
          bootstrap: ids,
          tickMs: 10,
          seed: id.charCodeAt(1),
          logger: quiet,
        }),
      );
    }
    const leader = await waitFor(
      () => [...nodes.values()].find((n) => n.role === 'leader'),
      'a leader',
      15_000,
    );
    const leaderId = ids.find((id) => nodes.get(id) === leader)!;
    await waitFor(
      () => [...nodes.values()].every((n) => n.leader === leaderId),
      'every node knows the leader',
    );
    const follower = [...nodes.values()].find((n) => n !== leader)!;
    const N = 1000;
    const results: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      const via = i % 10 === 0 ? follower : leader; // every 10th forwarded by a follower
      results.push(
        via.propose(encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: `k${i}`, value: `v${i}` } })),
      );
      if (i % 100 === 99) await Promise.all(results.splice(0));
    }
    await Promise.all(results);
    const target = leader.appliedIndex;
    await waitFor(() => [...nodes.values()].every((n) => n.appliedIndex >= target), 'all nodes applied');
    for (const [id, sm] of sms) {
      assert.equal(sm.size, N, `${id} holds every key`);
      assert.equal(sm.get('k999')?.value, 'v999');
    }
    // batched: the leader replicated 1000 entries to two followers in far fewer messages than entries,
    // and never more frames than messages (a frame carries one message or more)
    const lt = transports[ids.indexOf(leaderId)]!;
    assert.ok(lt.stats.messagesSent < N, JSON.stringify(lt.stats));
    assert.ok(lt.stats.framesSent <= lt.stats.messagesSent, JSON.stringify(lt.stats));
  } finally {
    await Promise.all([...nodes.values()].map((n) => n.stop()));
    await Promise.all([...servers.values()].map((s) => s.close(200)));
  }
});
