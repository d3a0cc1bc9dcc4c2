// Durability across crashes (Raft §5.2 persistent state) and the Figure 8 scenario
// (Raft §5.4.2: a leader commits only entries of its own term by counting replicas).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Simulator } from '../../src/sim/simulator.ts';
import { appliedCount, checkOneLeader, cluster, data, one, payload } from './helpers.ts';

function alive(sim: Simulator): string[] {
  return sim.ids.filter((id) => sim.node(id).alive);
}

test('restart of one follower, of the leader, and of all nodes keeps committed entries', async () => {
  const sim = cluster(3, 21);
  const l = await checkOneLeader(sim);
  const i1 = await one(sim, 'a', 3);
  const f = sim.ids.find((id) => id !== l) as string;
  sim.crash(f);
  sim.restart(f);
  await one(sim, 'b', 3);
  sim.crash(l);
  sim.restart(l);
  await one(sim, 'c', 3);
  for (const id of sim.ids) sim.crash(id);
  for (const id of sim.ids) sim.restart(id);
  const i4 = await one(sim, 'd', 3);
  assert.ok(i4 > i1);
  // Each node replays its durable log: all of them re-apply everything.
  assert.equal(appliedCount(sim, i4), 3);
});

test('a node restarted mid-write loses only unacknowledged entries', async () => {
  const sim = cluster(3, 22, { faults: { ...cluster(3, 0).opts.faults, partialWrites: true } });
  const l = await checkOneLeader(sim);
  for (let round = 0; round < 30; round++) {
    const leader = sim.leader() ?? l;
    for (let i = 0; i < 5; i++) sim.propose(leader, data(`r${round}.${i}`));
    await sim.runFor(sim.rng.float() * 3);
    const victim = sim.rng.pick(sim.ids);
    sim.crash(victim);
    await sim.runFor(sim.rng.float() * 20);
    sim.restart(victim);
  }
  await one(sim, 'final', 3, 20_000);
});

async function figure8(seed: number, reliable: boolean): Promise<void> {
  const sim = cluster(5, seed, {
    maxMsgEntries: 1,
    maxInflight: 1,
    net: reliable
      ? { minDelay: 0.3, maxDelay: 4, drop: 0, duplicate: 0 }
      : { minDelay: 0.3, maxDelay: 30, drop: 0.1, duplicate: 0.05 },
  });
  await one(sim, 'init', 1);
  for (let iter = 0; iter < 300; iter++) {
    const l = sim.leader();
    if (l) sim.propose(l, data(`f8.${iter}`));
    await sim.runFor(sim.rng.chance(0.1) ? sim.rng.float() * 500 : sim.rng.float() * 13);
    if (l && sim.node(l).alive && sim.rng.chance(0.5)) sim.crash(l);
    if (!reliable && sim.rng.chance(0.1)) {
      const ids = sim.ids.slice();
      sim.partition([ids.splice(0, 1 + sim.rng.int(3))]);
    } else if (!reliable && sim.rng.chance(0.3)) {
      sim.heal();
    }
    if (alive(sim).length < 3) {
      const down = sim.ids.filter((id) => !sim.node(id).alive);
      sim.restart(sim.rng.pick(down));
    }
  }
  sim.calm();
  await one(sim, 'end', 5, 30_000);
}

test('Figure 8, scripted as in the paper: an old-term entry on a majority is not committed by counting', async () => {
  // S1..S5 of Figure 8 map to the nodes below as their roles emerge. maxMsgEntries 1 lets a
  // leader replicate an old entry without its own term's entry behind it (step c).
  const sim = cluster(5, 41, { maxMsgEntries: 1, maxInflight: 1 });
  const s1 = await checkOneLeader(sim);
  await one(sim, 'base', 5);
  const s2 = sim.ids.find((id) => id !== s1) as string;
  // (a) S1 replicates X at index p to S2 only.
  sim.partition([[s1, s2]]);
  const x = sim.propose(s1, data('X'));
  assert.equal(x.kind, 'appended');
  if (x.kind !== 'appended') return;
  const p = x.index;
  assert.ok(await sim.runUntil(() => sim.raft(s2).lastIndex >= p, 1_000));
  // (b) S1 crashes; S5 is elected by S3 and S4 and appends its own entry at p, which nobody gets.
  sim.crash(s1);
  const three = sim.ids.filter((id) => id !== s1 && id !== s2);
  sim.partition([three]);
  assert.ok(await sim.runUntil(() => three.includes(sim.leader() ?? ''), 5_000), 'a leader among S3-S5');
  const s5 = sim.leader() as string;
  sim.isolate(s5);
  assert.equal(sim.raft(s5).termAt(p), sim.raft(s5).currentTerm);
  // Let S5's entry reach its disk before it crashes.
  assert.ok(await sim.runUntil(() => sim.node(s5).disk.durableTermAt(p) === sim.raft(s5).currentTerm, 100));
  // Let what S5 already sent die on the cut links (packets outlive a crash).
  await sim.runFor(10);
  const [s3, s4] = three.filter((id) => id !== s5) as [string, string];
  // (c) S5 crashes; S1 restarts; S1 or S2 (both hold X) is elected and replicates X to S3.
  sim.crash(s5);
  sim.restart(s1);
  sim.partition([[s1, s2, s3]]);
  assert.ok(await sim.runUntil(() => [s1, s2].includes(sim.leader() ?? ''), 5_000), 'S1 or S2 elected');
  const lead = sim.leader() as string;
  const leadTerm = sim.raft(lead).currentTerm;
  assert.ok(
    await sim.runUntil(
      () =>
        (sim
          .raft(lead)
          .status()
          .progress.find((pr) => pr.id === s3)?.match ?? 0) >= p,
      2_000,
    ),
    'S3 acknowledged X',
  );
  sim.partition([[s3], [s4]]);
  await sim.runFor(50);
  // X is on a majority (S1, S2, S3), but the leader's own-term entry is not: X must not commit.
  assert.ok(
    sim.raft(lead).commitIndex < p,
    `the leader committed X (commit ${sim.raft(lead).commitIndex}, p ${p}) by counting replicas of an old term`,
  );
  assert.equal(sim.raft(lead).termAt(p + 1), leadTerm);
  // (d) The leader crashes; S5 restarts and is elected by S3 and S4: it overwrites X.
  sim.crash(lead);
  sim.restart(s5);
  sim.partition([[s5, s3, s4]]);
  assert.ok(await sim.runUntil(() => sim.leader() === s5, 5_000), 'S5 elected again');
  await one(sim, 'after', 3, 5_000);
  assert.notEqual(
    payload(sim.raft(s3).entryAt(p)?.data),
    'X',
    'X was overwritten, which Figure 8 (d) shows is legal',
  );
  sim.calm();
  await one(sim, 'end', 5, 10_000);
});

test('Figure 8: leaders crash at random moments, 300 iterations, over many seeds', async () => {
  for (let seed = 1; seed <= 8; seed++) await figure8(100 + seed, true);
});

test('Figure 8 on an unreliable network (drops, duplicates, long delays, partitions)', async () => {
  for (let seed = 1; seed <= 8; seed++) await figure8(200 + seed, false);
});

test('agreement on an unreliable network', async () => {
  const sim = cluster(5, 31, { net: { minDelay: 0.3, maxDelay: 40, drop: 0.1, duplicate: 0.1 } });
  await checkOneLeader(sim, 20_000);
  for (let i = 0; i < 40; i++) await one(sim, `u${i}`, 5, 20_000);
});

test('churn: random crashes, restarts and partitions while entries keep committing', async () => {
  const sim = cluster(5, 32, { snapshotEvery: 20, retain: 2 });
  await checkOneLeader(sim);
  for (let iter = 0; iter < 60; iter++) {
    const l = sim.leader();
    if (l) for (let i = 0; i < 3; i++) sim.propose(l, data(`c${iter}.${i}`));
    const r = sim.rng.int(10);
    const id = sim.rng.pick(sim.ids);
    if (r < 3) sim.crash(id);
    else if (r < 6) sim.restart(id);
    else if (r < 8) sim.isolate(id);
    else sim.heal();
    await sim.runFor(sim.rng.float() * 200);
  }
  sim.calm();
  await one(sim, 'after-churn', 5, 30_000);
});
