// Log replication and commitment (Raft §5.3, §5.4).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfChangeType } from '../../src/raft/types.ts';
import { appliedCount, checkOneLeader, cluster, data, one, payload, totalSent } from './helpers.ts';

test('basic agreement: entries commit in order on every node', async () => {
  const sim = cluster(3, 11);
  await checkOneLeader(sim);
  let prev = 0;
  for (let i = 0; i < 5; i++) {
    const idx = await one(sim, `cmd${i}`, 3);
    assert.ok(idx > prev, 'indices increase');
    prev = idx;
  }
});

test('agreement despite a follower failure; none without a majority', async () => {
  const sim = cluster(3, 12);
  const l = await checkOneLeader(sim);
  await one(sim, 'a', 3);
  const [f1, f2] = sim.ids.filter((id) => id !== l) as [string, string];
  sim.crash(f1);
  await one(sim, 'b', 2);
  sim.crash(f2);
  const out = sim.propose(l, data('c'));
  assert.equal(out.kind, 'appended');
  if (out.kind !== 'appended') return;
  await sim.runFor(2_000);
  assert.equal(appliedCount(sim, out.index), 0, 'nothing commits on one node of three');
  sim.restart(f1);
  sim.restart(f2);
  await one(sim, 'd', 3);
});

test('agreement after leader failure', async () => {
  const sim = cluster(3, 13);
  const l1 = await checkOneLeader(sim);
  await one(sim, 'a', 3);
  sim.crash(l1);
  await one(sim, 'b', 2);
  const l2 = await checkOneLeader(sim);
  sim.crash(l2);
  sim.restart(l1);
  await one(sim, 'c', 2);
});

test('a reconnected follower catches up', async () => {
  const sim = cluster(3, 14);
  const l = await checkOneLeader(sim);
  const f = sim.ids.find((id) => id !== l) as string;
  sim.isolate(f);
  let last = 0;
  for (let i = 0; i < 20; i++) last = await one(sim, `x${i}`, 2);
  sim.heal();
  assert.ok(await sim.runUntil(() => sim.raft(f).status().applied >= last, 3_000));
});

test('no commit without a majority (5 nodes, 3 cut off), then commit once they return', async () => {
  const sim = cluster(5, 15);
  const l = await checkOneLeader(sim);
  await one(sim, 'a', 5);
  const others = sim.ids.filter((id) => id !== l);
  const down = others.slice(1);
  for (const id of down) sim.crash(id);
  const out = sim.propose(l, data('b'));
  assert.equal(out.kind, 'appended');
  if (out.kind !== 'appended') return;
  await sim.runFor(150);
  assert.equal(appliedCount(sim, out.index), 0);
  assert.ok(sim.raft(l).commitIndex < out.index);
  for (const id of down) sim.restart(id);
  await one(sim, 'c', 5);
});

test('concurrent proposals all commit, in one order everywhere', async () => {
  const sim = cluster(3, 16);
  const l = await checkOneLeader(sim);
  const idx: number[] = [];
  for (let i = 0; i < 100; i++) {
    const out = sim.propose(l, data(`p${i}`));
    assert.equal(out.kind, 'appended');
    if (out.kind === 'appended') idx.push(out.index);
  }
  await sim.runFor(0);
  const last = idx[idx.length - 1] as number;
  assert.ok(await sim.runUntil(() => appliedCount(sim, last) === 3, 3_000));
  for (let i = 0; i < idx.length; i++) {
    const e = sim.raft(l).entryAt(idx[i] as number);
    assert.equal(payload(e?.data), `p${i}`);
  }
});

test('a partitioned leader with uncommitted entries rejoins and its entries are replaced', async () => {
  const sim = cluster(3, 17);
  const l1 = await checkOneLeader(sim);
  await one(sim, 'base', 3);
  sim.isolate(l1);
  const doomed: number[] = [];
  for (let i = 0; i < 5; i++) {
    const out = sim.propose(l1, data(`lost${i}`));
    if (out.kind === 'appended') doomed.push(out.index);
  }
  await sim.runFor(500);
  const l2 = await checkOneLeader(sim);
  assert.notEqual(l2, l1);
  for (let i = 0; i < 8; i++) await one(sim, `won${i}`, 2);
  sim.heal();
  const last = await one(sim, 'after', 3);
  assert.ok(appliedCount(sim, last) === 3);
  for (const i of doomed) {
    const e = sim.raft(l1).entryAt(i);
    if (e) assert.ok(!(payload(e.data) ?? '').startsWith('lost'), `index ${i} was overwritten`);
  }
});

test('fast backup: a leader repairs 50+ divergent entries with few messages', async () => {
  const sim = cluster(5, 18, { maxMsgEntries: 1000 });
  const l1 = await checkOneLeader(sim);
  await one(sim, 'start', 5);
  // The leader and one follower go off alone and append 60 entries that never commit.
  const f1 = sim.ids.find((id) => id !== l1) as string;
  const rest = sim.ids.filter((id) => id !== l1 && id !== f1);
  sim.partition([[l1, f1]]);
  for (let i = 0; i < 60; i++) sim.propose(l1, data(`bad${i}`));
  await sim.runFor(100);
  // The other three elect a leader and commit 60 entries of their own.
  assert.ok(await sim.runUntil(() => rest.includes(sim.leader() ?? ''), 3_000));
  for (let i = 0; i < 60; i++) sim.propose(sim.leader() as string, data(`good${i}`));
  await sim.runFor(300);
  // Everyone meets again; the divergent logs must be repaired in a handful of round trips.
  const before = sim.sent.get('app') ?? 0;
  sim.heal();
  const last = await one(sim, 'end', 5);
  const appends = (sim.sent.get('app') ?? 0) - before;
  assert.ok(appliedCount(sim, last) === 5);
  assert.ok(appends < 150, `repair took ${appends} Append messages`);
});

test('message counts stay bounded: per election, per entry, and when idle', async () => {
  const sim = cluster(3, 19);
  const l = await checkOneLeader(sim);
  const electionMsgs = totalSent(sim);
  assert.ok(electionMsgs < 60, `election took ${electionMsgs} messages`);
  await sim.runFor(500);
  const base = totalSent(sim);
  await sim.runFor(1_000);
  const idle = totalSent(sim) - base;
  // 2 followers x (heartbeat + reply) every heartbeatTick (2 ticks of 10 ms): 200 per second.
  assert.ok(idle <= 220, `idle second cost ${idle} messages`);
  assert.ok(idle >= 100, 'heartbeats flow while idle');
  const b2 = totalSent(sim);
  for (let i = 0; i < 10; i++) await one(sim, `m${i}`, 3);
  const perEntry = (totalSent(sim) - b2 - idle / 10) / 10;
  assert.ok(perEntry < 15, `${perEntry} messages per entry`);
  assert.equal(sim.leader(), l);
});

test('piggybacked commits: no Append for the commit alone, every follower still applies everything', async () => {
  const appends = (sim: ReturnType<typeof cluster>): number => sim.sent.get('app') ?? 0;
  const run = async (mode: 'eager' | 'piggyback'): Promise<number> => {
    const sim = cluster(3, 31, { commitBroadcast: mode });
    await checkOneLeader(sim);
    await one(sim, 'warm', 3);
    const before = appends(sim);
    let last = 0;
    // One write at a time, as one client would: each must reach every node.
    for (let i = 0; i < 20; i++) last = await one(sim, `w${i}`, 3);
    for (const id of sim.ids) assert.ok(sim.raft(id).status().applied >= last, `${mode}: ${id} applied all`);
    return appends(sim) - before;
  };
  const eager = await run('eager');
  const piggy = await run('piggyback');
  assert.ok(piggy < eager, `piggyback sent ${piggy} Appends, eager ${eager}`);
});

test('piggybacked commits: a leader that removes itself still tells the others, who elect a new leader', async () => {
  for (const mode of ['eager', 'piggyback'] as const) {
    for (const seed of [1, 2, 3]) {
      const sim = cluster(2, seed, { commitBroadcast: mode });
      await checkOneLeader(sim);
      await one(sim, 'first', 2); // an entry of the leader's term commits before any membership change
      const l = sim.leader() as string;
      const other = sim.ids.find((id) => id !== l) as string;
      const out = sim.raft(l).proposeConfChange({ type: ConfChangeType.Remove, node: l });
      assert.equal(out.kind, 'appended');
      if (out.kind !== 'appended') return;
      // The removed node stops as soon as it applied its removal (as an operator would).
      assert.ok(await sim.runUntil(() => sim.raft(l).status().applied >= out.index, 10_000));
      sim.crash(l);
      assert.ok(
        await sim.runUntil(() => sim.leader() === other, 20_000),
        `${mode}, seed ${seed}: ${other} alone never became leader (commit ${sim.raft(other).status().commit}, removal at ${out.index})`,
      );
    }
  }
});
