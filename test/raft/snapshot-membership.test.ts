// Snapshots and log compaction (dissertation §5), membership changes (§4), leadership
// transfer (§3.10) and linearizable reads (§6.4).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfChangeType } from '../../src/raft/types.ts';
import { appliedCount, checkOneLeader, cluster, data, one } from './helpers.ts';

test('a follower that restarts behind the compaction point catches up by snapshot, in chunks', async () => {
  const sim = cluster(3, 51, { snapshotEvery: 10, retain: 0, maxSnapshotChunk: 64 });
  const l = await checkOneLeader(sim);
  const f = sim.ids.find((id) => id !== l) as string;
  sim.crash(f);
  let last = 0;
  for (let i = 0; i < 60; i++) last = await one(sim, `s${i}-${'x'.repeat(20)}`, 2, 10_000, true, `key${i}`);
  assert.ok(sim.raft(l).status().firstIndex > 10, 'the leader compacted its log');
  const chunksBefore = sim.sent.get('snap') ?? 0;
  sim.restart(f);
  assert.ok(await sim.runUntil(() => sim.raft(f).status().applied >= last, 5_000), 'the follower caught up');
  assert.ok((sim.sent.get('snap') ?? 0) - chunksBefore > 3, 'the snapshot went in several chunks');
  // The restored state machine holds what was written.
  assert.equal(sim.node(f).kv?.get('t')?.value, sim.node(l).kv?.get('t')?.value);
});

test('snapshot transfer survives lost chunks and a receiver that restarts midway', async () => {
  const sim = cluster(3, 52, { snapshotEvery: 10, maxSnapshotChunk: 32 });
  const l = await checkOneLeader(sim);
  const f = sim.ids.find((id) => id !== l) as string;
  sim.crash(f);
  let last = 0;
  for (let i = 0; i < 40; i++) last = await one(sim, `v${i}-${'y'.repeat(30)}`, 2);
  sim.setDrop(0.2);
  sim.restart(f);
  await sim.runFor(30);
  sim.crash(f);
  sim.restart(f);
  assert.ok(await sim.runUntil(() => sim.raft(f).status().applied >= last, 20_000));
  sim.setDrop(0);
  await one(sim, 'after', 3);
});

test('membership: add a learner, promote it, remove a voter, remove the leader', async () => {
  const sim = cluster(3, 53, { spares: 1 });
  let l = await checkOneLeader(sim);
  await one(sim, 'a', 3);
  const add = sim.raft(l).proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n4' });
  assert.equal(add.kind, 'appended');
  // A second change while the first is pending is refused.
  const twice = sim.raft(l).proposeConfChange({ type: ConfChangeType.AddLearner, node: 'n4' });
  assert.equal(twice.kind, 'rejected');
  const i1 = await one(sim, 'b', 4);
  assert.deepEqual(sim.raft('n4').configuration.learners, ['n4']);
  assert.ok(sim.raft('n4').status().applied >= i1, 'the learner receives the log');
  assert.equal(
    sim.raft(l).proposeConfChange({ type: ConfChangeType.AddVoter, node: 'n4' }).kind,
    'appended',
    'promote the learner',
  );
  await one(sim, 'c', 4);
  assert.equal(sim.raft(l).configuration.voters.length, 4);
  // Remove the leader itself: it steps down once the change applies; the rest elect anew.
  l = sim.leader() as string;
  assert.equal(sim.raft(l).proposeConfChange({ type: ConfChangeType.Remove, node: l }).kind, 'appended');
  assert.ok(await sim.runUntil(() => sim.leader() !== null && sim.leader() !== l, 5_000), 'a new leader');
  const l2 = await checkOneLeader(sim);
  assert.ok(!sim.raft(l2).configuration.voters.includes(l));
  await one(sim, 'd', 3);
  // Invalid changes are refused with a reason.
  const bad = sim.raft(l2).proposeConfChange({ type: ConfChangeType.Remove, node: 'n9' });
  assert.equal(bad.kind, 'rejected');
  if (bad.kind === 'rejected') assert.match(bad.message, /not a member/);
});

test('leadership transfer hands over within an election timeout, with no lost entries', async () => {
  const sim = cluster(3, 54);
  const l = await checkOneLeader(sim);
  const i = await one(sim, 'before', 3);
  const to = sim.ids.find((id) => id !== l) as string;
  const t = sim.raft(l).currentTerm;
  assert.deepEqual(sim.raft(l).transferLeadership(to), { ok: true });
  const out = sim.propose(l, data('during'));
  assert.equal(out.kind, 'rejected', 'proposals wait while leadership moves');
  assert.ok(
    await sim.runUntil(() => sim.leader() === to, 100),
    'transfer is faster than an election timeout',
  );
  assert.equal(sim.raft(to).currentTerm, t + 1);
  assert.equal(appliedCount(sim, i), 3);
  await one(sim, 'after', 3);
  assert.equal(sim.raft(to).transferLeadership('n9').ok, false);
});

test('a read on a deposed leader is never served stale (ReadIndex)', async () => {
  const sim = cluster(3, 55);
  const l1 = await checkOneLeader(sim);
  await one(sim, 'old', 3);
  sim.isolate(l1);
  const r1 = sim.raft(l1);
  let served = false;
  let failed = false;
  sim
    .node(l1)
    .node?.read()
    .then(
      () => {
        served = true;
      },
      () => {
        failed = true;
      },
    );
  // The deposed leader cannot confirm its leadership: the read must not be released.
  await sim.runFor(1_000);
  const l2 = await checkOneLeader(sim);
  assert.notEqual(l2, l1);
  await one(sim, 'new', 2);
  sim.heal();
  await sim.runFor(500);
  // The read was answered with a failure, never served.
  assert.equal(served, false);
  assert.equal(failed, true);
  assert.ok(r1.currentRole !== 'leader');
});

test('reads are released only after a quorum confirms leadership, and many share one round', async () => {
  const sim = cluster(3, 56);
  const l = await checkOneLeader(sim);
  await one(sim, 'x', 3);
  const node = sim.node(l).node;
  assert.ok(node);
  let served = 0;
  const read = (): void => {
    node.read().then(
      () => {
        served++;
      },
      () => {},
    );
  };
  // Cut off from its followers, the leader cannot release a read (before CheckQuorum fires).
  sim.isolate(l);
  read();
  await sim.runFor(40);
  assert.equal(served, 0, 'no read served without a quorum');
  sim.heal();
  assert.ok(await sim.runUntil(() => served === 1, 100), 'released once followers answer');
  // 100 reads issued together share heartbeat rounds.
  const hbBefore = sim.sent.get('hb') ?? 0;
  for (let i = 0; i < 100; i++) read();
  assert.ok(await sim.runUntil(() => served === 101, 100));
  const hbs = (sim.sent.get('hb') ?? 0) - hbBefore;
  assert.ok(hbs <= 4, `100 reads took ${hbs} heartbeat messages to 2 followers`);
});
