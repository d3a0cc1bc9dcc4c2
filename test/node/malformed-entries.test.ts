// Apply never throws (issue 16, part 4), end to end: three in-process RaftNodes on
// FileStorage with the KV state machine. Garbage proposed by a library user, a forwarded
// ConfChange (refused by the leader), and malformed ConfChange entries already in the
// logs (as an older version could have committed them) all leave the cluster serving,
// with the same state on every member, and again after a full restart that replays them.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import { bootstrapState } from '../../src/raft/raft.ts';
import { EntryType, MessageType } from '../../src/raft/types.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';

type KvNode = RaftNode<KvResult | null>;
const IDS = ['n1', 'n2', 'n3'];
const te = new TextEncoder();
const put = (key: string, value: string) =>
  encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key, value } });

async function waitFor<T>(what: string, f: () => T | null | undefined | false, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Cluster {
  nodes: Map<string, KvNode>;
  sms: Map<string, KvStateMachine>;
  net: MemoryNetwork;
  stop(): Promise<void>;
}

async function start(root: string): Promise<Cluster> {
  const net = new MemoryNetwork();
  const c: Cluster = {
    nodes: new Map(),
    sms: new Map(),
    net,
    async stop() {
      await Promise.all([...c.nodes.values()].map((n) => n.stop()));
    },
  };
  for (const id of IDS) {
    const storage = await FileStorage.open(join(root, id), { nodeId: id, clusterId: 'malformed' });
    const sm = new KvStateMachine();
    const node = await RaftNode.start({
      id,
      storage,
      transport: net.transport(id),
      stateMachine: sm,
      bootstrap: IDS,
      tickMs: 10,
      seed: Number(id.slice(1)),
      snapshotEntries: 0,
    });
    c.nodes.set(id, node);
    c.sms.set(id, sm);
  }
  return c;
}

const leaderOf = (c: Cluster) => [...c.nodes.values()].find((n) => n.role === 'leader');

async function serves(c: Cluster, key: string, value: string): Promise<void> {
  const l = await waitFor('a leader', () => leaderOf(c));
  const r = await l.propose(put(key, value), Date.now() + 10_000);
  assert.equal(r.result?.kind, 'put');
  await waitFor(`${key} on every member`, () =>
    [...c.sms.values()].every((sm) => sm.get(key)?.value === value),
  );
}

test('garbage entries and malformed ConfChange entries are committed without stopping anyone, also across a full restart', async () => {
  const root = await mkdtemp(join(tmpdir(), 'raftkv-malformed-'));
  let c: Cluster | null = null;
  try {
    // Malformed ConfChange entries in every member's log (after the bootstrap entries), as
    // a version that let followers forward ConfChange entries could have committed them.
    for (const id of IDS) {
      const s = await FileStorage.open(join(root, id), { nodeId: id, clusterId: 'malformed' });
      const boot = bootstrapState(IDS);
      await s.persist({
        snapshot: null,
        entries: [
          ...boot.entries,
          { term: 1, index: 4, type: EntryType.ConfChange, data: te.encode('{"type":"remove"') },
          { term: 1, index: 5, type: EntryType.ConfChange, data: new Uint8Array([0xde, 0xad]) },
        ],
        hardState: boot.hardState,
      });
      await s.close();
    }
    c = await start(root);
    await serves(c, 'before', '1');
    const cluster = c;
    for (const n of c.nodes.values()) {
      assert.equal(n.status().refused.malformedConfChanges, 2, `${n.id} applied them as no-ops`);
      assert.deepEqual([...n.status().conf.voters].sort(), IDS);
    }

    // A library user proposes raw garbage, on the leader and through a follower.
    const l = await waitFor('a leader', () => leaderOf(cluster));
    const f = [...c.nodes.values()].find((n) => n !== l) as KvNode;
    const garbage = [new Uint8Array([1]), new Uint8Array([2, 255, 0, 0]), te.encode('{"not":"a command"}')];
    for (const g of garbage) {
      const r = await l.propose(g, Date.now() + 10_000);
      assert.equal(r.result?.kind, 'invalid', `leader: ${r.result?.kind}`);
      const rf = await f.propose(g, Date.now() + 10_000);
      assert.equal(rf.result?.kind, 'invalid', `follower: ${rf.result?.kind}`);
    }

    // A member forwards a bare KV command (no envelope) whose first byte is the envelope's
    // version (issue 16): it is a data entry, so it is appended and committed; whatever it
    // means to the members, it means the same to each, and stops none.
    const bare = encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: 'x', value: 'y' } }, 1);
    c.net.route(f.id, [
      {
        type: MessageType.Propose,
        from: f.id,
        to: l.id,
        term: l.status().term,
        entries: [{ type: EntryType.Normal, data: bare }],
      },
    ]);
    // And a ConfChange entry that does not decode: the leader refuses it.
    await serves(c, 'between', '0');
    const lastBefore = l.status().lastIndex;
    c.net.route(f.id, [
      {
        type: MessageType.Propose,
        from: f.id,
        to: l.id,
        term: l.status().term,
        entries: [{ type: EntryType.ConfChange, data: te.encode('not json') }],
      },
    ]);
    await waitFor('the refusal', () => l.status().refused.forwardedProposals === 1);
    assert.equal(l.status().lastIndex, lastBefore, 'nothing appended');

    await serves(c, 'after', '2');
    const snapshots = [...c.sms.values()].map((sm) => Buffer.from(sm.snapshot()).toString());
    assert.ok(
      snapshots.every((s) => s === snapshots[0]),
      'every member holds the same state',
    );
    for (const sm of c.sms.values()) assert.ok(sm.stats.invalid >= 2 * garbage.length);

    // A full restart replays every one of those entries.
    await c.stop();
    c = await start(root);
    await serves(c, 'restarted', '3');
    for (const [id, sm] of c.sms) {
      assert.equal(sm.get('before')?.value, '1', id);
      assert.equal(sm.get('after')?.value, '2', id);
    }
    const again = [...c.sms.values()].map((sm) => JSON.stringify(sm.list('', 100)));
    assert.ok(
      again.every((s) => s === again[0]),
      'the same state on every member after the restart',
    );
    for (const n of c.nodes.values()) assert.equal(n.status().refused.malformedConfChanges, 2);
  } finally {
    await c?.stop();
    await rm(root, { recursive: true, force: true });
  }
});
