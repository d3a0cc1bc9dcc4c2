// The node runtime on real timers, with the in-memory network and storage: proposals
// resolve on apply, reads are linearizable barriers, leaders fail over, restarts replay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { NoLeaderError, ProposalDroppedError, TimeoutError } from '../../src/node/errors.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import { ConfChangeType, type HeartbeatRequest, MessageType } from '../../src/raft/types.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { waitFor as waitUntil } from '../support/wait.ts';

type KvNode = RaftNode<KvResult | null>;

const put = (key: string, value: string) =>
  encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key, value } });

interface Cluster {
  net: MemoryNetwork;
  nodes: Map<string, KvNode>;
  sms: Map<string, KvStateMachine>;
  storages: Map<string, MemoryStorage>;
  stop(): Promise<void>;
}

async function startCluster(ids: string[], snapshotEntries = 0): Promise<Cluster> {
  const net = new MemoryNetwork();
  const c: Cluster = {
    net,
    nodes: new Map(),
    sms: new Map(),
    storages: new Map(),
    async stop() {
      await Promise.all([...c.nodes.values()].map((n) => n.stop()));
    },
  };
  for (const id of ids) await startNode(c, id, ids, snapshotEntries);
  return c;
}

async function startNode(c: Cluster, id: string, ids: string[], snapshotEntries = 0): Promise<KvNode> {
  const prev = c.storages.get(id);
  const storage = new MemoryStorage(prev ? prev.initialState() : undefined);
  const sm = new KvStateMachine();
  const node = await RaftNode.start({
    id,
    storage,
    transport: c.net.transport(id),
    stateMachine: sm,
    bootstrap: ids,
    tickMs: 10,
    seed: id.charCodeAt(1),
    snapshotEntries,
    retainEntries: 5,
  });
  c.nodes.set(id, node);
  c.sms.set(id, sm);
  c.storages.set(id, storage);
  return node;
}

const waitFor = <T>(f: () => T | null | undefined | false, ms = 10_000) => waitUntil('the condition', f, ms);

function leaderOf(c: Cluster): KvNode | null {
  for (const n of c.nodes.values()) if (n.role === 'leader') return n;
  return null;
}

test('proposals resolve when applied, with the state machine result; reads see them', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    const r = await l.propose(put('a', '1'));
    assert.equal(r.result?.kind, 'put');
    // Through a follower: forwarded to the leader, resolved when applied on the follower.
    const f = [...c.nodes.values()].find((n) => n !== l) as KvNode;
    const r2 = await f.propose(put('a', '2'), AbortSignal.timeout(5_000));
    assert.ok(r2.index > r.index);
    // A linearizable read on the other follower sees the write.
    const f2 = [...c.nodes.values()].find((n) => n !== l && n !== f) as KvNode;
    await f2.read(AbortSignal.timeout(5_000));
    assert.equal(c.sms.get(f2.id)?.get('a')?.value, '2');
  } finally {
    await c.stop();
  }
});

test('many concurrent proposals share few fsyncs (group commit)', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    await l.propose(put('warm', 'up'));
    const before = l.counters.persists;
    const all = [];
    for (let i = 0; i < 500; i++) all.push(l.propose(put(`k${i}`, `v${i}`)));
    const res = await Promise.all(all);
    assert.equal(new Set(res.map((r) => r.index)).size, 500);
    const persists = l.counters.persists - before;
    assert.ok(persists < 50, `500 proposals took ${persists} leader writes`);
  } finally {
    await c.stop();
  }
});

test('leader failover: the new leader has every acknowledged write; a stopped node restarts from storage', async () => {
  const ids = ['n1', 'n2', 'n3'];
  const c = await startCluster(ids, 20);
  try {
    const l = await waitFor(() => leaderOf(c));
    for (let i = 0; i < 60; i++) await l.propose(put(`k${i}`, `v${i}`));
    // Snapshots (sliced: KvStateMachine has beginSnapshot) were taken and compacted the log.
    await waitFor(() => l.counters.snapshots >= 2);
    assert.ok(l.status().firstIndex > 1, `log compacted: ${JSON.stringify(l.status())}`);
    await l.stop();
    c.nodes.delete(l.id);
    const l2 = await waitFor(() => leaderOf(c));
    assert.notEqual(l2.id, l.id);
    await l2.read();
    for (let i = 0; i < 60; i++) assert.equal(c.sms.get(l2.id)?.get(`k${i}`)?.value, `v${i}`);
    await l2.propose(put('after', 'failover'));
    // The old leader comes back with its durable state (snapshots were taken) and catches up.
    const back = await startNode(c, l.id, ids, 20);
    await waitFor(() => back.appliedIndex >= l2.appliedIndex);
    assert.equal(c.sms.get(back.id)?.get('after')?.value, 'failover');
    assert.equal(c.sms.get(back.id)?.get('k0')?.value, 'v0');
  } finally {
    await c.stop();
  }
});

test('without a quorum, proposals time out and reads fail or time out; nothing hangs', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    c.net.isolate(l.id);
    await assert.rejects(l.propose(put('x', 'y'), AbortSignal.timeout(300)), TimeoutError);
    await assert.rejects(
      l.read(AbortSignal.timeout(300)),
      (e: Error) => e instanceof TimeoutError || e instanceof NoLeaderError || e.name === 'NotLeaderError',
    );
    c.net.heal();
    const l2 = await waitFor(() => leaderOf(c));
    await l2.propose(put('x', 'z'));
  } finally {
    await c.stop();
  }
});

test('a proposal whose log index is taken by an entry of another leader is rejected as dropped', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    c.net.isolate(l.id);
    // Appended at the old leader's next index, never committed.
    const lost = l.propose(put('lost', 'x'));
    const l2 = await waitFor(() => {
      const n = leaderOf(c);
      return n !== null && n.id !== l.id ? n : null;
    });
    for (let i = 0; i < 5; i++) await l2.propose(put(`new${i}`, 'y'));
    c.net.heal();
    const settled = Promise.race([
      lost,
      new Promise((_, rej) => setTimeout(() => rej(new Error('still pending after 15 s')), 15_000).unref()),
    ]);
    await assert.rejects(settled, ProposalDroppedError);
    await waitFor(() => (l.appliedIndex >= l2.appliedIndex ? true : undefined));
    assert.equal(c.sms.get(l.id)?.get('lost'), undefined);
  } finally {
    await c.stop();
  }
});

test('a numeric deadline (no AbortSignal) expires proposals and reads without a quorum', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    c.net.isolate(l.id);
    const t0 = Date.now();
    await assert.rejects(l.propose(put('x', 'y'), Date.now() + 300), TimeoutError);
    assert.ok(Date.now() - t0 >= 300, 'a deadline never fires early');
    await assert.rejects(
      l.read(Date.now() + 300),
      (e: Error) => e instanceof TimeoutError || e instanceof NoLeaderError || e.name === 'NotLeaderError',
    );
    c.net.heal();
    const l2 = await waitFor(() => leaderOf(c));
    // A deadline in the future does not get in the way of a healthy proposal.
    const r = await l2.propose(put('x', 'z'), Date.now() + 60_000);
    assert.ok(r.index > 0);
    // Deadlines from grpc-timeout can be fractional (units u, n) or huge (H): membership changes take them too.
    const at = await l2.changeMembership(
      { type: ConfChangeType.AddLearner, node: 'n9', context: '127.0.0.1:1' },
      Date.now() + 5000.123456,
    );
    assert.ok(at > r.index);
    await waitFor(() => l2.status().applied >= at);
    assert.ok(
      (await l2.changeMembership({ type: ConfChangeType.Remove, node: 'n9' }, Date.now() + 1e15)) > at,
    );
  } finally {
    await c.stop();
  }
});

test('a proposal forwarded to a leader that loses leadership settles without a deadline', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    const f = [...c.nodes.values()].find((n) => n !== l) as KvNode;
    // Cut the leader off before the forwarded proposal can reach it.
    c.net.isolate(l.id);
    const p = f.propose(put('fwd', 'x')).then(
      () => 'applied',
      (e: Error) => e.name,
    );
    const outcome = await p;
    assert.ok(['applied', 'OutcomeUnknownError', 'NoLeaderError'].includes(outcome), outcome);
  } finally {
    c.net.heal();
    await c.stop();
  }
});

/**
 * A storage that records the inline-write hints: each call (`hints`) and the hint in force at each
 * persist (`persists`).
 */
class HintedStorage extends MemoryStorage {
  readonly hints: boolean[] = [];
  readonly persists: { on: boolean; entries: number }[] = [];
  private on = false;
  setInlineWrites(on: boolean): void {
    this.hints.push(on);
    this.on = on;
  }
  override persist(b: Parameters<MemoryStorage['persist']>[0]) {
    this.persists.push({ on: this.on, entries: b.entries.length });
    return super.persist(b);
  }
}

/** Three RaftNodes on HintedStorage; stop them with `stop()`. */
async function startHinted(): Promise<{
  nodes: KvNode[];
  storage: (n: KvNode) => HintedStorage;
  stop(): Promise<void>;
}> {
  const net = new MemoryNetwork();
  const ids = ['n1', 'n2', 'n3'];
  const storages = new Map<string, HintedStorage>();
  const nodes: KvNode[] = [];
  const stop = () => Promise.all(nodes.map((n) => n.stop())).then(() => undefined);
  try {
    for (const id of ids) {
      const storage = new HintedStorage();
      storages.set(id, storage);
      nodes.push(
        await RaftNode.start({
          id,
          storage,
          transport: net.transport(id),
          stateMachine: new KvStateMachine(),
          bootstrap: ids,
          tickMs: 10,
          seed: id.charCodeAt(1),
        }),
      );
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { nodes, storage: (n) => storages.get(n.id)!, stop };
}

test('writes may block the loop (inline) on followers and on a leader with one request pending, not on a busy leader', async () => {
  const { nodes, storage, stop } = await startHinted();
  try {
    const hints = (n: KvNode) => storage(n).hints;
    const l = await waitFor(() => nodes.find((n) => n.role === 'leader'));
    // A read resolves once the leader's no-op committed: the proposal then has a Ready of its own.
    await l.read();
    await l.propose(put('a', '1'));
    assert.equal(hints(l).at(-1), true, 'a leader with one request pending writes inline');
    const mark = hints(l).length;
    await Promise.all(Array.from({ length: 50 }, (_, i) => l.propose(put(`k${i}`, 'v'))));
    assert.ok(
      hints(l).slice(mark).includes(false),
      'a leader with 50 requests pending writes through the pool',
    );
    for (const n of nodes) {
      if (n !== l)
        assert.ok(hints(n).length > 0 && hints(n).every((h) => h), `${n.id}: a follower always inline`);
    }
    // After a transfer the old leader is a follower: inline whatever the load.
    const to = nodes.find((n) => n !== l)!;
    l.transferLeadership(to.id);
    await waitFor(() => to.role === 'leader' && l.role !== 'leader');
    const mark2 = hints(l).length;
    await Promise.all(Array.from({ length: 50 }, (_, i) => to.propose(put(`j${i}`, 'v'))));
    await waitFor(() => hints(l).length > mark2);
    assert.ok(
      hints(l)
        .slice(mark2)
        .every((h) => h),
    );
  } finally {
    await stop();
  }
});

test('a leader whose load arrives forwarded from followers writes through the pool', async () => {
  const { nodes, storage, stop } = await startHinted();
  try {
    const l = await waitFor(() => nodes.find((n) => n.role === 'leader'));
    const f = nodes.find((n) => n !== l)!;
    await waitFor(() => f.leader === l.id);
    const mark = storage(l).persists.length;
    await Promise.all(Array.from({ length: 50 }, (_, i) => f.propose(put(`k${i}`, 'v'))));
    const big = storage(l)
      .persists.slice(mark)
      .filter((p) => p.entries > 1);
    assert.ok(big.length > 0, 'the forwarded proposals were written in groups');
    assert.ok(
      big.every((p) => !p.on),
      `groups of forwarded entries go to the pool: ${JSON.stringify(big)}`,
    );
  } finally {
    await stop();
  }
});

test('a read on a node that knows no leader yet waits for one, then sees every write acknowledged before it', async () => {
  const ids = ['n1', 'n2', 'n3'];
  const c = await startCluster(ids);
  try {
    const l = await waitFor(() => leaderOf(c));
    const f = [...c.nodes.values()].find((n) => n !== l) as KvNode;
    await f.stop();
    c.nodes.delete(f.id);
    const w = await l.propose(put('late', 'write'));
    // Restarted from its storage, the follower has heard from no leader yet.
    const back = await startNode(c, f.id, ids);
    assert.equal(back.leader, '', 'a fresh process knows no leader');
    const index = await back.read(AbortSignal.timeout(5_000));
    assert.ok(index >= w.index, `read index ${index} covers the write at ${w.index}`);
    assert.equal(c.sms.get(back.id)?.get('late')?.value, 'write');
  } finally {
    await c.stop();
  }
});

test('a read queued while the leader was briefly unknown is sent once the same leader is known again', async () => {
  const c = await startCluster(['n1', 'n2', 'n3']);
  try {
    const l = await waitFor(() => leaderOf(c));
    await l.read();
    const f = await waitFor(() => [...c.nodes.values()].find((n) => n !== l && n.leader === l.id));
    // In one turn, with no Ready in between: the follower's election timer fires (no leader)...
    const core = f.core;
    for (let i = 0; i < 100 && core.currentRole === 'follower'; i++) core.tick();
    assert.equal(core.leader, '', 'the follower lost its leader');
    const read = f.read(AbortSignal.timeout(5_000));
    // ...and a heartbeat of the same term makes it the same leader's follower again: no soft
    // state change is ever reported, yet the waiting read must go out.
    const hb: HeartbeatRequest = {
      type: MessageType.Heartbeat,
      from: l.id,
      to: f.id,
      term: core.currentTerm,
      commit: 0,
      readSeq: 0,
    };
    core.step(hb);
    assert.equal(core.leader, l.id);
    assert.ok((await read) >= 1);
  } finally {
    await c.stop();
  }
});

test('a read that finds no leader for a whole election timeout fails with NoLeaderError; its deadline still comes first', async () => {
  // One member of three started: it never hears from a leader and cannot become one.
  const c: Cluster = {
    net: new MemoryNetwork(),
    nodes: new Map(),
    sms: new Map(),
    storages: new Map(),
    async stop() {
      await Promise.all([...c.nodes.values()].map((n) => n.stop()));
    },
  };
  try {
    const n = await startNode(c, 'n1', ['n1', 'n2', 'n3']);
    const t0 = performance.now();
    await assert.rejects(n.read(), NoLeaderError);
    const waited = performance.now() - t0;
    // Two election timeouts (electionTick 10 x tickMs 10 x 2): about 200 ms (checked on timers).
    assert.ok(waited >= 190, `failed after ${waited.toFixed(0)} ms, before two election timeouts`);
    await assert.rejects(n.read(Date.now() + 20), TimeoutError);
    // Several waiting reads fail together; none is left behind.
    const many = await Promise.allSettled([n.read(), n.read(), n.read()]);
    assert.deepEqual(
      many.map((r) => r.status === 'rejected' && r.reason instanceof NoLeaderError),
      [true, true, true],
    );
  } finally {
    await c.stop();
  }
});
