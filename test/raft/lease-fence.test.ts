// Lease reads and leadership transfer (§6.4, §3.10): once a leader has sent TimeoutNow in
// term t, the target may win an election at once, and the third voter grants despite its
// lease. So no read in term t may be served from the lease after that point, even if the
// transfer is given up and new heartbeats seem to renew the lease.
// Driven on the pure core with a hand-routed network, so a message can be held back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bootstrapState, Raft } from '../../src/raft/raft.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import { type Message, MessageType, type NodeId, type ReadState } from '../../src/raft/types.ts';

const IDS = ['a', 'b', 'c'] as const;

class Net {
  readonly nodes = new Map<NodeId, Raft>();
  readonly readStates = new Map<NodeId, ReadState[]>();
  /** Links that drop messages, as "from>to". */
  readonly cut = new Set<string>();
  /** Messages held back by `hold`, delivered later by hand. */
  readonly held: Message[] = [];
  hold: (m: Message) => boolean = () => false;

  constructor(seed: number) {
    for (const [i, id] of IDS.entries()) {
      this.nodes.set(
        id,
        new Raft(
          {
            id,
            rng: new SeededRng(seed + i),
            electionTick: 10,
            heartbeatTick: 1,
            readOnly: 'lease',
            checkQuorum: true,
            preVote: true,
          },
          bootstrapState([...IDS]),
        ),
      );
      this.readStates.set(id, []);
    }
  }

  node(id: NodeId): Raft {
    const r = this.nodes.get(id);
    assert.ok(r);
    return r;
  }

  /** Run every Ready (storage is instant) and deliver messages until the network is quiet. */
  pump(): void {
    for (let round = 0; round < 1000; round++) {
      const out: Message[] = [];
      for (const [id, r] of this.nodes) {
        while (r.hasReady()) {
          const rd = r.ready();
          out.push(...rd.eagerMessages, ...rd.messages);
          this.readStates.get(id)?.push(...rd.readStates);
          r.advance(rd);
        }
      }
      if (out.length === 0) return;
      for (const m of out) {
        if (this.cut.has(`${m.from}>${m.to}`)) continue;
        if (this.hold(m)) {
          this.held.push(m);
          continue;
        }
        this.nodes.get(m.to)?.step(m);
      }
    }
    assert.fail('network did not quiesce');
  }

  tick(ids: readonly NodeId[] = IDS, n = 1): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids) this.node(id).tick();
      this.pump();
    }
  }

  isolate(id: NodeId): void {
    for (const o of IDS) {
      if (o === id) continue;
      this.cut.add(`${id}>${o}`);
      this.cut.add(`${o}>${id}`);
    }
  }
}

/** Elects a leader (whichever times out first) and lets every node learn it. */
function elect(net: Net): { L: NodeId; F: NodeId; G: NodeId } {
  for (let i = 0; i < 100; i++) {
    const leaders = IDS.filter((id) => net.node(id).currentRole === 'leader');
    if (leaders.length === 1 && IDS.every((id) => net.node(id).leader === leaders[0])) {
      net.tick(IDS, 2);
      const [F, G] = IDS.filter((id) => id !== leaders[0]) as [NodeId, NodeId];
      return { L: leaders[0] as NodeId, F, G };
    }
    net.tick();
  }
  return assert.fail('no leader elected');
}

test('a lease read is served at once while the lease holds (the control case)', () => {
  const net = new Net(11);
  const { L } = elect(net);
  const a = net.node(L);
  const before = net.readStates.get(L)?.length ?? 0;
  a.readIndex(1);
  // No network round: the Ready alone carries the read state.
  const rd = a.ready();
  a.advance(rd);
  assert.equal(rd.readStates.length, 1, 'served from the lease');
  assert.equal(net.readStates.get(L)?.length, before);
});

test('a late TimeoutNow: no lease read in the term once TimeoutNow was sent in it', () => {
  const net = new Net(12);
  const { L, F } = elect(net);
  const a = net.node(L);
  const b = net.node(F);
  const term = a.currentTerm;
  // Hold back the TimeoutNow a sends to b for the transfer.
  net.hold = (m) => m.type === MessageType.TimeoutNow;
  assert.deepEqual(a.transferLeadership(F), { ok: true });
  net.pump();
  assert.equal(net.held.length, 1, 'TimeoutNow held back');
  net.hold = () => false;
  // a gives up the transfer after electionTick, and its heartbeats are acknowledged again.
  net.tick(IDS, 25);
  assert.equal(a.currentRole, 'leader');
  assert.equal(a.currentTerm, term);
  // The held TimeoutNow arrives: b campaigns with transfer=true; c grants despite its lease.
  // a is cut off from both at the same moment, and hears nothing of it.
  net.isolate(L);
  const tn = net.held.shift();
  assert.ok(tn);
  b.step(tn);
  net.pump();
  assert.equal(b.currentRole, 'leader', 'the target won at once');
  assert.ok(b.currentTerm > term);
  // b commits a write that a cannot know of.
  const out = b.propose(new TextEncoder().encode('x=2'));
  assert.equal(out.kind, 'appended');
  net.pump();
  assert.ok(b.commitIndex >= (out.kind === 'appended' ? out.index : 0));
  // a, still leader of term t in its own eyes, must not answer a read from its lease.
  a.readIndex(42);
  net.pump();
  net.tick([L], 1);
  const served = net.readStates.get(L)?.filter((r) => r.ctx === 42) ?? [];
  assert.deepEqual(
    served,
    [],
    `a served a read at index ${served[0]?.index} after b committed in a newer term`,
  );
});

test('catchUp(n) after a stall: the lease is gone, the leader stays, one heartbeat round (§6.4)', () => {
  const net = new Net(13);
  const { L, F, G } = elect(net);
  const a = net.node(L);
  const term = a.currentTerm;
  // a stood still for 5 election timeouts; its followers' replies queued meanwhile.
  a.catchUp(50);
  assert.equal(a.currentRole, 'leader', 'no step-down before the queued replies are read');
  assert.equal(a.currentTerm, term);
  const rd0 = a.ready();
  a.advance(rd0);
  const hbs = [...rd0.eagerMessages, ...rd0.messages].filter((m) => m.type === MessageType.Heartbeat);
  assert.deepEqual(
    hbs.map((m) => m.to).sort(),
    [F, G].sort(),
    'one heartbeat round, not one per missed tick',
  );
  // A read now needs a round of its own: the lease expired during the stall.
  a.readIndex(7);
  const rd = a.ready();
  a.advance(rd);
  assert.equal(rd.readStates.length, 0, 'no read from the expired lease');
  for (const m of [...rd0.eagerMessages, ...rd0.messages, ...rd.eagerMessages, ...rd.messages]) {
    net.node(m.to).step(m);
  }
  net.pump();
  assert.deepEqual(net.readStates.get(L)?.filter((r) => r.ctx === 7).length, 1, 'released by the new round');
  assert.equal(a.currentRole, 'leader');
  // The same stall delivered tick by tick deposes the leader: it reads no reply in between.
  const net2 = new Net(13);
  const a2 = net2.node(elect(net2).L);
  for (let i = 0; i < 50; i++) a2.tick();
  assert.notEqual(a2.currentRole, 'leader');
});

test('catchUp(n) on a follower moves its timers but leaves the campaign to its next tick', () => {
  const net = new Net(14);
  const { F } = elect(net);
  const b = net.node(F);
  const term = b.currentTerm;
  b.catchUp(50);
  assert.equal(b.currentRole, 'follower');
  assert.equal(b.hasReady() ? b.ready().messages.length : 0, 0, 'no vote request during the catch-up');
  // Its leader is silent: the next tick starts the (pre-)campaign.
  net.isolate(F);
  b.tick();
  assert.notEqual(b.currentRole, 'follower');
  assert.ok(b.currentTerm >= term);
});

test('the lease lasts electionTick - 2 leader ticks after the acknowledged round: one tick of margin for drift', () => {
  const servedAfter = (k: number): boolean => {
    const net = new Net(15);
    const { L } = elect(net);
    const a = net.node(L);
    net.isolate(L);
    for (let i = 0; i < k; i++) {
      a.tick();
      net.pump();
    }
    assert.equal(a.currentRole, 'leader');
    a.readIndex(100 + k);
    const rd = a.ready();
    a.advance(rd);
    return rd.readStates.length === 1;
  };
  // electionTick 10: followers refuse votes for more than 9 of their ticks after the round.
  assert.equal(servedAfter(7), true, 'inside the lease');
  assert.equal(servedAfter(8), false, 'electionTick - 2 ticks after the round: the lease is over');
});
