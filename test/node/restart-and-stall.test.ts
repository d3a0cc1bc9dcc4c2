// RaftNode across restarts and stalls, with the in-memory network holding back chosen
// messages: what a node proposed or asked in an earlier run must never answer a request of
// the current run (proposal numbers and read contexts are unique per start), and a node
// resuming from a stall catches up its ticks before it handles anything (a lease that
// expired while it stood still serves no read).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import { type Message, MessageType, type NodeId } from '../../src/raft/types.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { waitFor } from '../support/wait.ts';

type KvNode = RaftNode<KvResult | null>;
const IDS = ['n1', 'n2', 'n3'];
const TICK_MS = 10;

const put = (key: string, value: string) =>
  encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key, value } });

class Cluster {
  readonly net = new MemoryNetwork();
  readonly nodes = new Map<NodeId, KvNode>();
  readonly sms = new Map<NodeId, KvStateMachine>();
  readonly storages = new Map<NodeId, MemoryStorage>();
  /** Decides each message: 'pass', 'drop', or 'hold' (kept in `held`). */
  rule: (m: Message) => 'pass' | 'drop' | 'hold' = () => 'pass';
  readonly held: Message[] = [];

  constructor(readonly readOnly: 'safe' | 'lease' = 'safe') {
    this.net.filter = (m) => {
      const r = this.rule(m);
      if (r === 'hold') this.held.push(m);
      return r === 'pass';
    };
  }

  async start(id: NodeId): Promise<KvNode> {
    const prev = this.storages.get(id);
    const storage = new MemoryStorage(prev ? prev.initialState() : undefined);
    const sm = new KvStateMachine();
    const node = await RaftNode.start({
      id,
      storage,
      transport: this.net.transport(id),
      stateMachine: sm,
      bootstrap: IDS,
      tickMs: TICK_MS,
      // The same seed on every start, as a deployment that pins it would have.
      seed: id.charCodeAt(1),
      snapshotEntries: 0,
      raft: { readOnly: this.readOnly, checkQuorum: true },
    });
    this.nodes.set(id, node);
    this.sms.set(id, sm);
    this.storages.set(id, storage);
    return node;
  }

  node(id: NodeId): KvNode {
    const n = this.nodes.get(id);
    assert.ok(n, `no node ${id}`);
    return n;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop()));
  }

  /** Deliver the held messages that match, in order. */
  release(pred: (m: Message) => boolean): number {
    let k = 0;
    for (let i = 0; i < this.held.length; ) {
      const m = this.held[i] as Message;
      if (pred(m)) {
        this.held.splice(i, 1);
        this.net.deliverTo(m.to, [m]);
        k++;
      } else i++;
    }
    return k;
  }
}

async function stableLeader(c: Cluster): Promise<{ leader: NodeId; follower: NodeId; third: NodeId }> {
  const leader = await waitFor('a leader', () => {
    for (const [id, n] of c.nodes) if (n.role === 'leader') return id;
    return null;
  });
  // Every node knows it, and the leader's first entry is applied everywhere.
  const l = c.node(leader);
  await l.propose(put('warm', 'up'));
  await waitFor('every node to follow', () =>
    [...c.nodes.values()].every((n) => n.leader === leader && n.appliedIndex >= l.appliedIndex),
  );
  const others = IDS.filter((id) => id !== leader);
  return { leader, follower: others[0] as NodeId, third: others[1] as NodeId };
}

/** Settles `p` within `ms`: 'resolved' with its value, 'rejected', or 'pending'. */
async function outcome<T>(
  p: Promise<T>,
  ms: number,
): Promise<{ s: 'resolved'; v: T } | { s: 'rejected' | 'pending' }> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<{ s: 'pending' }>((r) => {
    timer = setTimeout(() => r({ s: 'pending' }), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (v) => ({ s: 'resolved' as const, v }),
        () => ({ s: 'rejected' as const }),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test('after a restart, an entry proposed in the earlier run never acknowledges a new proposal', async () => {
  const c = new Cluster();
  for (const id of IDS) await c.start(id);
  try {
    const { leader, follower } = await stableLeader(c);
    // The leader's entries to the follower are held back: x=old commits on the other two only.
    c.rule = (m) =>
      m.from === leader && m.to === follower && m.type === MessageType.Append ? 'hold' : 'pass';
    const old = c.node(follower).propose(put('x', 'old'));
    old.catch(() => {});
    await waitFor('x=old applied on the leader', () => c.sms.get(leader)?.get('x')?.value === 'old');
    // The follower restarts: a new run, proposal numbers start again.
    await c.node(follower).stop();
    c.held.length = 0; // what was in flight to the old process is gone with it
    const f = await c.start(follower);
    await waitFor('the restarted follower to know the leader', () => f.leader === leader);
    // Its next proposal, y=NEW, is lost on the way to the leader.
    c.rule = (m) => {
      if (m.from === follower && m.type === MessageType.Propose) return 'hold';
      if (m.from === leader && m.to === follower && m.type === MessageType.Append) return 'hold';
      return 'pass';
    };
    const y = f.propose(put('y', 'NEW'), Date.now() + 1_500);
    await waitFor('y=NEW to leave the follower', () => c.held.some((m) => m.type === MessageType.Propose));
    c.held.splice(
      c.held.findIndex((m) => m.type === MessageType.Propose),
      1,
    );
    // Now the leader's entries reach the follower, x=old among them.
    c.rule = () => 'pass';
    c.release(() => true);
    await waitFor(
      'x=old applied on the restarted follower',
      () => c.sms.get(follower)?.get('x')?.value === 'old',
    );
    const r = await outcome(y, 3_000);
    assert.notEqual(
      r.s,
      'resolved',
      `propose(y=NEW) was acknowledged by the entry x=old of the earlier run (${JSON.stringify(r.s === 'resolved' ? r.v : null)}); y is on no node: ${c.sms.get(leader)?.get('y')?.value}`,
    );
    assert.equal(c.sms.get(leader)?.get('y'), undefined, 'y never reached the log');
  } finally {
    await c.stop();
  }
});

test('after a restart, a read answered for the earlier run never satisfies a new read', async () => {
  const c = new Cluster();
  for (const id of IDS) await c.start(id);
  try {
    const { leader, follower } = await stableLeader(c);
    await c.node(leader).propose(put('x', '1'));
    await waitFor('x=1 on the follower', () => c.sms.get(follower)?.get('x')?.value === '1');
    // The follower asks for a read index; the answer is held back.
    c.rule = (m) => (m.type === MessageType.ReadIndexResp && m.to === follower ? 'hold' : 'pass');
    const early = c.node(follower).read();
    early.catch(() => {});
    await waitFor('the leader to answer the read', () => c.held.length > 0);
    await c.node(follower).stop();
    c.rule = (m) =>
      m.from === leader && m.to === follower && m.type === MessageType.Append ? 'drop' : 'pass';
    const f = await c.start(follower);
    await waitFor('the restarted follower to know the leader', () => f.leader === leader);
    await waitFor('the restarted follower to apply x=1', () => c.sms.get(follower)?.get('x')?.value === '1');
    // x=2 is acknowledged; the follower does not have it (its appends are dropped).
    const w = await c.node(leader).propose(put('x', '2'));
    // A new read on the follower: its own request is lost, and the old answer arrives.
    c.rule = (m) => {
      if (m.from === follower && m.type === MessageType.ReadIndex) return 'drop';
      if (m.from === leader && m.to === follower && m.type === MessageType.Append) return 'drop';
      return 'pass';
    };
    const late = f.read(Date.now() + 1_500);
    assert.ok(c.release((m) => m.type === MessageType.ReadIndexResp) > 0);
    const r = await outcome(late, 3_000);
    if (r.s === 'resolved') {
      assert.ok(
        r.v >= w.index,
        `read resolved at index ${r.v} < ${w.index}, the acknowledged x=2; it would return x=${c.sms.get(follower)?.get('x')?.value}`,
      );
    }
  } finally {
    await c.stop();
  }
});

test('a leader resuming from a stall longer than its lease serves no read from the lease', async () => {
  const c = new Cluster('lease');
  for (const id of IDS) await c.start(id);
  try {
    const { leader } = await stableLeader(c);
    const l = c.node(leader);
    // The lease holds: a read is served without a round (control).
    assert.equal((await outcome(l.read(), 2_000)).s, 'resolved');
    // The leader is cut off and the event loop stands still for many election timeouts
    // (SIGSTOP, a long GC, a blocking write): meanwhile the others may elect and commit.
    c.rule = (m) => (m.from === leader || m.to === leader ? 'drop' : 'pass');
    const until = Date.now() + 40 * TICK_MS;
    while (Date.now() < until) {
      // a stall
    }
    // The first thing it handles on resuming is a read: its lease expired meanwhile.
    const r = await outcome(l.read(Date.now() + 300), 1_000);
    assert.notEqual(r.s, 'resolved', 'a read was served from a lease that expired during the stall');
  } finally {
    await c.stop();
  }
});
