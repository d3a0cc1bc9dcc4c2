// The core trusts no sender (the sender rule in src/raft/raft.ts's header): messages from
// ids in no configuration a node knows of are dropped and counted, forwarded proposals are
// validated as local ones, and the legitimate strangers still get through: a node joining
// with an empty log, and a node that was away while the whole membership changed.
// Driven on the pure core with a hand-routed network and instant, tracked storage.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeConfChange } from '../../src/raft/confchange.ts';
import { bootstrapState, emptyState, Raft, type RaftConfig } from '../../src/raft/raft.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import {
  type DurableState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  type NodeId,
  type Snapshot,
} from '../../src/raft/types.ts';

const te = new TextEncoder();

interface Disk {
  hs: HardState;
  snapshot: Snapshot | null;
  entries: Entry[];
}

class Net {
  readonly nodes = new Map<NodeId, Raft>();
  readonly disks = new Map<NodeId, Disk>();
  readonly down = new Set<NodeId>();
  /** Nodes whose links are all cut (they run, but hear nothing and are not heard). */
  readonly isolated = new Set<NodeId>();
  readonly applied = new Map<NodeId, Entry[]>();
  private seed: number;

  constructor(
    readonly cfg: Partial<Omit<RaftConfig, 'id' | 'rng'>>,
    seed: number,
  ) {
    this.seed = seed;
  }

  add(id: NodeId, durable: DurableState): Raft {
    const disk: Disk = {
      hs: durable.hardState,
      snapshot: durable.snapshot,
      entries: [...durable.entries],
    };
    this.disks.set(id, disk);
    this.applied.set(id, []);
    return this.boot(id);
  }

  private boot(id: NodeId): Raft {
    const d = this.disks.get(id);
    assert.ok(d);
    const r = new Raft(
      { electionTick: 10, heartbeatTick: 1, ...this.cfg, id, rng: new SeededRng(this.seed++) },
      { hardState: d.hs, snapshot: d.snapshot, entries: d.entries },
    );
    this.nodes.set(id, r);
    this.down.delete(id);
    return r;
  }

  /** A process restart: everything not on the disk is lost. */
  restart(id: NodeId): Raft {
    this.applied.set(id, []);
    return this.boot(id);
  }

  node(id: NodeId): Raft {
    const r = this.nodes.get(id);
    assert.ok(r, `no node ${id}`);
    return r;
  }

  private linked(from: NodeId, to: NodeId): boolean {
    return !this.isolated.has(from) && !this.isolated.has(to) && !this.down.has(to);
  }

  /** Hand-deliver a message (a forged one, for instance). */
  inject(m: Message): void {
    this.node(m.to).step(m);
    this.pump();
  }

  pump(): void {
    for (let round = 0; round < 2000; round++) {
      const out: Message[] = [];
      for (const [id, r] of this.nodes) {
        if (this.down.has(id)) continue;
        while (r.hasReady()) {
          const rd = r.ready();
          const d = this.disks.get(id) as Disk;
          if (rd.snapshot) {
            d.snapshot = rd.snapshot;
            d.entries = d.entries.filter((e) => e.index > (rd.snapshot as Snapshot).meta.index);
          }
          if (rd.entries.length > 0) {
            const first = (rd.entries[0] as Entry).index;
            d.entries = d.entries.filter((e) => e.index < first).concat(rd.entries);
          }
          if (rd.hardState) d.hs = rd.hardState;
          out.push(...rd.eagerMessages, ...rd.messages);
          this.applied.get(id)?.push(...rd.committedEntries);
          r.advance(rd);
        }
      }
      if (out.length === 0) return;
      for (const m of out) if (this.linked(m.from, m.to)) this.nodes.get(m.to)?.step(m);
    }
    assert.fail('network did not quiesce');
  }

  tick(n = 1, ids: readonly NodeId[] = [...this.nodes.keys()]): void {
    for (let i = 0; i < n; i++) {
      for (const id of ids) if (!this.down.has(id)) this.node(id).tick();
      this.pump();
    }
  }

  leader(among: readonly NodeId[] = [...this.nodes.keys()]): NodeId | null {
    let best: NodeId | null = null;
    let term = -1;
    for (const id of among) {
      if (this.down.has(id) || this.isolated.has(id)) continue;
      const r = this.node(id);
      if (r.currentRole === 'leader' && r.currentTerm > term) {
        best = id;
        term = r.currentTerm;
      }
    }
    return best;
  }

  /** Tick until some node of `among` leads, within `max` ticks. */
  elect(among: readonly NodeId[] = [...this.nodes.keys()], max = 300): NodeId {
    for (let i = 0; i < max; i++) {
      const l = this.leader(among);
      if (l !== null && this.node(l).commitIndex >= this.node(l).lastIndex) return l;
      this.tick();
    }
    assert.fail(`no leader among ${among.join(',')} after ${max} ticks`);
  }

  /** Apply a membership change through the leader and wait until every live node has it. */
  change(type: 'add-voter' | 'add-learner' | 'remove', node: NodeId): void {
    for (let i = 0; i < 300; i++) {
      const l = this.leader();
      if (l !== null) {
        const out = this.node(l).proposeConfChange({ type, node });
        if (out.kind === 'appended') {
          for (let k = 0; k < 300 && this.node(l).status().applied < out.index; k++) this.tick();
          this.tick(3);
          return;
        }
      }
      this.tick();
    }
    assert.fail(`membership change ${type} ${node} did not go through`);
  }
}

const heartbeat = (from: NodeId, to: NodeId, term: number): Message => ({
  type: MessageType.Heartbeat,
  from,
  to,
  term,
  commit: 0,
  readSeq: 0,
});

function three(cfg: Partial<Omit<RaftConfig, 'id' | 'rng'>> = {}, seed = 1): Net {
  const net = new Net(cfg, seed);
  for (const id of ['a', 'b', 'c']) net.add(id, bootstrapState(['a', 'b', 'c']));
  return net;
}

test('a stranger cannot take over: heartbeats, appends and votes at higher terms from a non-member are dropped and counted', () => {
  // Without PreVote and CheckQuorum nothing else would stop a higher term: only the rule does.
  const net = three({ preVote: false, checkQuorum: false }, 3);
  const l = net.elect();
  const term = net.node(l).currentTerm;
  for (let i = 0; i < 20; i++) {
    for (const to of ['a', 'b', 'c']) {
      net.inject(heartbeat('mallory', to, term + 1 + i));
      net.inject({
        type: MessageType.Vote,
        from: 'mallory',
        to,
        term: term + 100 + i,
        lastLogIndex: 1e9,
        lastLogTerm: 1e9,
        transfer: true,
      });
      net.inject({
        type: MessageType.Append,
        from: 'mallory',
        to,
        term: term + 200 + i,
        prevIndex: 0,
        prevTerm: 0,
        entries: [],
        commit: 0,
      });
    }
    net.tick();
  }
  assert.equal(net.leader(), l, 'the leader is unchanged');
  for (const id of ['a', 'b', 'c']) {
    assert.equal(net.node(id).currentTerm, term, `${id} kept its term`);
    assert.equal(net.node(id).status().refused.nonMemberMessages, 60, `${id} counted 60 drops`);
  }
});

test('a forwarded proposal with a configuration change, or an entry above maxEntryBytes, is dropped whole', () => {
  const net = three({ maxEntryBytes: 64 }, 5);
  const l = net.elect();
  const f = ['a', 'b', 'c'].find((id) => id !== l) as NodeId;
  const last = net.node(l).lastIndex;
  const cc = encodeConfChange({ type: 'add-voter', node: 'mallory' });
  net.inject({
    type: MessageType.Propose,
    from: f,
    to: l,
    term: net.node(l).currentTerm,
    entries: [
      { type: EntryType.Normal, data: te.encode('x') },
      { type: EntryType.ConfChange, data: cc },
    ],
  });
  net.inject({
    type: MessageType.Propose,
    from: f,
    to: l,
    term: net.node(l).currentTerm,
    entries: [{ type: EntryType.Normal, data: new Uint8Array(65) }],
  });
  // And from a non-member, even a well-formed one.
  net.inject({
    type: MessageType.Propose,
    from: 'mallory',
    to: l,
    term: net.node(l).currentTerm,
    entries: [{ type: EntryType.Normal, data: te.encode('y') }],
  });
  net.tick(3);
  assert.equal(net.node(l).lastIndex, last, 'nothing appended');
  assert.deepEqual(net.node(l).status().refused, {
    nonMemberMessages: 1,
    forwardedProposals: 2,
    malformedConfChanges: 0,
  });
  assert.deepEqual(net.node(l).configuration.voters, ['a', 'b', 'c']);
  // A local proposal above the limit is refused the same way, with a reason.
  const out = net.node(l).propose(new Uint8Array(65));
  assert.equal(out.kind, 'rejected');
  assert.equal(out.kind === 'rejected' && out.reason, 'entry-too-large');
  // A good forwarded proposal still goes through.
  const fw = net.node(f).propose(te.encode('ok'));
  assert.equal(fw.kind, 'forwarded');
  net.tick(3);
  assert.equal(net.node(l).lastIndex, last + 1);
});

test('a removed voter that never heard of its removal cannot disrupt the cluster (§4.2.3)', () => {
  const net = three({ preVote: false, checkQuorum: false }, 7);
  const l = net.elect();
  const victim = ['a', 'b', 'c'].find((id) => id !== l) as NodeId;
  // The victim hears nothing from now on, so it never learns it was removed.
  net.isolated.add(victim);
  net.change('remove', victim);
  assert.deepEqual(
    [...net.node(l).configuration.voters].sort(),
    ['a', 'b', 'c'].filter((x) => x !== victim),
  );
  const term = net.node(l).currentTerm;
  // It times out and campaigns at higher and higher terms.
  net.tick(60, [victim]);
  assert.ok(net.node(victim).currentTerm > term, 'the removed node campaigned');
  net.isolated.delete(victim);
  net.tick(60);
  assert.equal(net.leader(['a', 'b', 'c'].filter((x) => x !== victim)), l, 'the leader is unchanged');
  assert.equal(net.node(l).currentTerm, term, 'no term was disrupted');
  assert.ok(net.node(l).status().refused.nonMemberMessages > 0);
});

test('a node away while the whole membership changed catches up from a leader it has never heard of, then after a restart', () => {
  // {a, b, x} becomes {x, d, e} while x is cut off: when x is back, the leader is d, which
  // x's configuration does not name, and a and b are gone.
  const net = new Net({}, 11);
  for (const id of ['a', 'b', 'x']) net.add(id, bootstrapState(['a', 'b', 'x']));
  net.isolated.add('x');
  net.elect(['a', 'b']);
  for (const id of ['d', 'e']) {
    net.add(id, emptyState());
    net.change('add-learner', id);
    net.change('add-voter', id);
  }
  // Hand leadership to d, then remove a and b.
  for (let i = 0; i < 50 && net.leader() !== 'd'; i++) {
    const l = net.leader();
    if (l !== null && l !== 'd') net.node(l).transferLeadership('d');
    net.tick();
  }
  assert.equal(net.leader(), 'd');
  net.change('remove', 'a');
  net.change('remove', 'b');
  net.down.add('a');
  net.down.add('b');
  const d = net.node('d');
  const out = d.propose(te.encode('after'));
  assert.equal(out.kind, 'appended');
  net.tick(5);
  assert.deepEqual([...d.configuration.voters].sort(), ['d', 'e', 'x']);
  // x comes back and restarts: its configuration is {a, b, x}.
  net.isolated.delete('x');
  const x = net.restart('x');
  assert.deepEqual([...x.configuration.voters].sort(), ['a', 'b', 'x']);
  for (let i = 0; i < 200 && x.commitIndex < d.commitIndex; i++) net.tick();
  assert.equal(x.commitIndex, d.commitIndex, 'x caught up from d');
  assert.deepEqual([...x.configuration.voters].sort(), ['d', 'e', 'x']);
  // Now d is known to x: a quorum of {x, d, e} works without e.
  net.down.add('e');
  const w = d.propose(te.encode('needs x'));
  assert.equal(w.kind, 'appended');
  net.tick(5);
  assert.ok(x.commitIndex >= (w.kind === 'appended' ? w.index : Infinity), 'x counts for the quorum');
  assert.equal(net.leader(), 'd');
});

test('a node joining with an empty log accepts the leader at once', () => {
  const net = three({}, 13);
  const l = net.elect();
  const n4 = net.add('n4', emptyState());
  net.change('add-learner', 'n4');
  for (let i = 0; i < 20 && n4.commitIndex < net.node(l).commitIndex; i++) net.tick();
  assert.equal(n4.commitIndex, net.node(l).commitIndex);
  assert.equal(n4.status().refused.nonMemberMessages, 0);
});

test('a forged leader does not hold back the election of a real one', () => {
  // Every node lost its leader (and, cut off from each other for a while, has campaigned in
  // vain); then a stranger heartbeats them all, each tick, at a higher term each time.
  const net = three({}, 17);
  const l = net.elect();
  net.down.add(l);
  const rest = ['a', 'b', 'c'].filter((x) => x !== l);
  for (const id of rest) net.isolated.add(id);
  net.tick(40, rest);
  for (const id of rest) net.isolated.delete(id);
  assert.equal(net.leader(rest), null);
  const forgedTerm = Math.max(...rest.map((id) => net.node(id).currentTerm)) + 5;
  let real: NodeId | null = null;
  for (let i = 0; i < 300 && real === null; i++) {
    for (const to of rest) net.inject(heartbeat('mallory', to, forgedTerm + i));
    net.tick(1, rest);
    real = net.leader(rest);
  }
  assert.ok(real !== null, 'a real leader was elected despite the stranger');
  // Once a node hears its known leader, the stranger is dropped again.
  const before = net.node(rest[0] as NodeId).status().refused.nonMemberMessages;
  net.tick(2, rest);
  for (const to of rest) net.inject(heartbeat('mallory', to, forgedTerm + 50));
  assert.equal(net.leader(rest), real);
  assert.ok(net.node(rest[0] as NodeId).status().refused.nonMemberMessages > before);
});

test('a committed configuration change that does not decode is a no-op everywhere, also on restart', () => {
  const bad: Entry[] = [
    { term: 1, index: 4, type: EntryType.ConfChange, data: te.encode('{not json') },
    { term: 1, index: 5, type: EntryType.ConfChange, data: te.encode('{"type":"remove","node":7}') },
    { term: 1, index: 6, type: EntryType.ConfChange, data: new Uint8Array([0xff, 0xfe, 0x00]) },
  ];
  const boot = bootstrapState(['a', 'b', 'c']);
  const durable: DurableState = {
    hardState: { ...boot.hardState, commit: 6 },
    snapshot: null,
    entries: [...boot.entries, ...bad],
  };
  const net = new Net({}, 19);
  for (const id of ['a', 'b', 'c']) net.add(id, durable);
  for (const id of ['a', 'b', 'c']) {
    assert.deepEqual(net.node(id).configuration.voters, ['a', 'b', 'c']);
    assert.equal(net.node(id).status().refused.malformedConfChanges, 3);
  }
  const l = net.elect();
  const out = net.node(l).propose(te.encode('served'));
  assert.equal(out.kind, 'appended');
  net.tick(3);
  for (const id of ['a', 'b', 'c']) assert.ok(net.node(id).commitIndex >= 7);
  // The same entries arriving by replication to a new member: no-ops there too.
  const n4 = net.add('n4', emptyState());
  net.change('add-learner', 'n4');
  for (let i = 0; i < 20 && n4.commitIndex < net.node(l).commitIndex; i++) net.tick();
  assert.equal(n4.commitIndex, net.node(l).commitIndex);
  assert.equal(n4.status().refused.malformedConfChanges, 3);
  assert.deepEqual([...n4.configuration.voters].sort(), ['a', 'b', 'c']);
  net.restart('a');
  assert.equal(net.node('a').status().refused.malformedConfChanges, 3);
});

test('a stranger followed by an out-of-touch node gives it no lease: it still votes for a real candidate', () => {
  const net = three({}, 23);
  const l = net.elect();
  net.down.add(l);
  const [b, c] = ['a', 'b', 'c'].filter((x) => x !== l) as [NodeId, NodeId];
  net.isolated.add(b);
  net.isolated.add(c);
  // c campaigns in vain (its election timer restarts), then follows a stranger at once.
  for (let i = 0; i < 60 && net.node(c).currentRole === 'follower'; i++) net.tick(1, [c]);
  assert.notEqual(net.node(c).currentRole, 'follower');
  const t = net.node(c).currentTerm + 1;
  net.inject(heartbeat('mallory', c, t));
  assert.equal(net.node(c).leader, 'mallory');
  const rb = net.node(b);
  net.inject({
    type: MessageType.Vote,
    from: b,
    to: c,
    term: t + 1,
    lastLogIndex: rb.lastIndex,
    lastLogTerm: rb.termAt(rb.lastIndex),
    transfer: false,
  });
  assert.equal(net.node(c).status().vote, b, 'c voted for the real candidate');
});

test('a voter added while unreachable votes before it knows any configuration: a cluster that needs its vote elects a leader (§4.2.1)', () => {
  // The change adding d commits without it; then the leader dies. The other two old voters
  // are 2 of the 4: every election needs d, which holds no configuration to judge the
  // candidates by. Raft has servers vote without consulting their configuration (§4.2.1).
  const net = three({ preVote: true, checkQuorum: true }, 11);
  net.add('d', emptyState());
  net.isolated.add('d');
  const l = net.elect(['a', 'b', 'c']);
  net.change('add-voter', 'd');
  assert.deepEqual([...net.node(l).configuration.voters].sort(), ['a', 'b', 'c', 'd']);
  assert.equal(net.node('d').lastIndex, 0, 'd heard nothing');
  net.down.add(l);
  net.isolated.delete('d');
  const rest = ['a', 'b', 'c'].filter((x) => x !== l);
  const next = net.elect(rest);
  assert.notEqual(next, l);
  assert.equal(net.node('d').commitIndex, net.node(next).commitIndex, 'the new leader brought d up to date');
});
