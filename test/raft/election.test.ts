// Leader election (Raft §5.2), PreVote (dissertation §9.6) and CheckQuorum (§6.2).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkNoLeader, checkOneLeader, cluster, terms } from './helpers.ts';

test('initial election: one leader, and the term holds steady without failures', async () => {
  const sim = cluster(3, 1);
  const l = await checkOneLeader(sim);
  const t1 = terms(sim);
  assert.ok(t1 >= 2, 'bootstrap term is 1; an election moves past it');
  await sim.runFor(3_000);
  assert.equal(terms(sim), t1, 'no election without failures');
  assert.equal(await checkOneLeader(sim), l);
});

test('re-election after leader loss, and the old leader rejoining does not disturb the new one', async () => {
  const sim = cluster(3, 2);
  const l1 = await checkOneLeader(sim);
  sim.isolate(l1);
  await sim.runFor(1_000);
  const l2 = await checkOneLeader(sim);
  assert.notEqual(l2, l1);
  sim.heal();
  await sim.runFor(1_000);
  assert.equal(await checkOneLeader(sim), l2);
});

test('no leader without a quorum; one again when a quorum returns', async () => {
  const sim = cluster(3, 3);
  const l = await checkOneLeader(sim);
  const others = sim.ids.filter((id) => id !== l);
  sim.crash(l);
  sim.crash(others[0] as string);
  await sim.runFor(3_000);
  checkNoLeader(sim, sim.ids);
  sim.restart(others[0] as string);
  await checkOneLeader(sim);
});

test('many elections with random disconnects (7 nodes)', async () => {
  const sim = cluster(7, 4);
  await checkOneLeader(sim);
  for (let i = 0; i < 12; i++) {
    const ids = sim.ids.slice();
    const cut: string[] = [];
    for (let k = 0; k < 3; k++) cut.push(ids.splice(sim.rng.int(ids.length), 1)[0] as string);
    sim.partition([cut]);
    // The 4 connected nodes are a quorum: they must have (or elect) a leader.
    const ok = await sim.runUntil(() => {
      const l = sim.leader();
      return l !== null && !cut.includes(l);
    }, 5_000);
    assert.ok(ok, `iteration ${i}: no leader among the connected majority`);
    sim.heal();
    await sim.runFor(200);
  }
  await checkOneLeader(sim);
});

test('PreVote: a partitioned node rejoining does not disrupt a healthy leader', async () => {
  const sim = cluster(3, 5);
  const l = await checkOneLeader(sim);
  const t = terms(sim);
  const f = sim.ids.find((id) => id !== l) as string;
  sim.isolate(f);
  await sim.runFor(3_000);
  assert.equal(sim.raft(f).currentTerm, t, 'pre-votes do not raise the term');
  sim.heal();
  await sim.runFor(1_000);
  assert.equal(await checkOneLeader(sim), l);
  assert.equal(terms(sim), t);
});

test('without PreVote the same partition does disrupt the leader (the test above can fail)', async () => {
  const sim = cluster(3, 5, { preVote: false, checkQuorum: false });
  await checkOneLeader(sim);
  const t = terms(sim);
  const f = sim.ids.find((id) => id !== sim.leader()) as string;
  sim.isolate(f);
  await sim.runFor(3_000);
  assert.ok(sim.raft(f).currentTerm > t + 5, 'an isolated candidate keeps raising its term');
  sim.heal();
  await sim.runFor(1_000);
  await checkOneLeader(sim);
  assert.ok(terms(sim) > t + 5, 'its term forces the cluster into a new election');
});

test('CheckQuorum: a leader cut off from its quorum steps down', async () => {
  const sim = cluster(5, 6);
  const l = await checkOneLeader(sim);
  sim.isolate(l);
  // electionTick (10) ticks of 10 ms without a quorum, with slack for the check's phase.
  await sim.runFor(250);
  assert.notEqual(sim.raft(l).currentRole, 'leader');
});

test('without CheckQuorum an isolated leader stays leader (the test above can fail)', async () => {
  const sim = cluster(5, 6, { checkQuorum: false });
  const l = await checkOneLeader(sim);
  sim.isolate(l);
  await sim.runFor(1_000);
  assert.equal(sim.raft(l).currentRole, 'leader');
});

test('a follower in lease ignores a vote request, unless it comes from a leadership transfer', async () => {
  const sim = cluster(3, 7);
  const l = await checkOneLeader(sim);
  const t = terms(sim);
  const [a, b] = sim.ids.filter((id) => id !== l) as [string, string];
  const req = { type: 'vote', from: a, to: b, term: t + 1, lastLogIndex: 1_000, lastLogTerm: t } as const;
  sim.raft(b).step({ ...req, transfer: false });
  assert.equal(sim.raft(b).currentTerm, t, 'in lease: the request is ignored');
  sim.raft(b).step({ ...req, transfer: true });
  assert.equal(sim.raft(b).currentTerm, t + 1, 'a transfer overrides the lease');
  assert.equal(sim.raft(b).status().vote, a);
});
