// The nemesis's pure parts: fault plans (who is cut from whom, per kind), the iptables
// rules they become, the fault schedule, how a failed call is classified, the figures, and
// the verdict on a history with a lost write. No root, no processes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KvInput, KvOutput } from '../../src/check/kv-model.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import { FAULT_KINDS, type FaultKind, kindsFor, planFault, Schedule } from './faults.ts';
import { computeFigures, type FaultRecord } from './figures.ts';
import { type Cut, renderRules } from './netlab.ts';
import { verdictOf } from './run.ts';
import { classify, type OpRecord, type Outcome } from './workload.ts';

const ids3 = ['n1', 'n2', 'n3'];
const ids5 = ['n1', 'n2', 'n3', 'n4', 'n5'];
const key = (c: Cut) => `${c.from}>${c.to}`;
const keys = (cuts: readonly Cut[]) => new Set(cuts.map(key));
const both = (a: readonly string[], b: readonly string[]) =>
  new Set(a.flatMap((x) => b.flatMap((y) => [`${x}>${y}`, `${y}>${x}`])));

describe('fault plans', () => {
  test('isolate-leader cuts the leader from every other node, both ways, and nothing else', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const p = planFault('isolate-leader', ids5, 'n3', new SeededRng(seed));
      assert.deepEqual(keys(p.cuts), both(['n3'], ['n1', 'n2', 'n4', 'n5']));
      assert.deepEqual([p.kill, p.pause], [[], []]);
    }
  });

  test('isolate-follower cuts one node that is not the leader, both ways', () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 30; seed++) {
      const p = planFault('isolate-follower', ids3, 'n1', new SeededRng(seed));
      const victim = [...new Set(p.cuts.map((c) => c.from))].find((x) =>
        p.cuts.every((c) => c.from === x || c.to === x),
      );
      assert.ok(victim && victim !== 'n1', p.description);
      assert.deepEqual(
        keys(p.cuts),
        both(
          [victim],
          ids3.filter((x) => x !== victim),
        ),
      );
      seen.add(victim);
    }
    assert.deepEqual([...seen].sort(), ['n2', 'n3']);
  });

  test('majority-minority: two sides of floor(n/2) and the rest, every link across cut both ways, the leader on either side', () => {
    const leaderSide = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const p = planFault('majority-minority', ids5, 'n2', new SeededRng(seed));
      // Sides: the connected components of the uncut graph.
      const cut = keys(p.cuts);
      const side = (x: string) => ids5.filter((y) => y === x || !cut.has(`${x}>${y}`));
      const minority = [side('n1'), side('n2'), side('n3'), side('n4'), side('n5')].find(
        (s) => s.length === 2,
      );
      assert.ok(minority, p.description);
      const majority = ids5.filter((x) => !minority.includes(x));
      assert.equal(majority.length, 3);
      assert.deepEqual(cut, both(minority, majority));
      leaderSide.add(minority.includes('n2') ? 'minority' : 'majority');
    }
    assert.deepEqual([...leaderSide].sort(), ['majority', 'minority']);
  });

  test('one-way: only the leader’s outgoing links are cut, it still receives', () => {
    const p = planFault('one-way', ids3, 'n2', new SeededRng(1));
    assert.deepEqual(keys(p.cuts), new Set(['n2>n1', 'n2>n3']));
  });

  test('bridge: two halves cut from each other, one node connected to both', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const p = planFault('bridge', ids5, 'n1', new SeededRng(seed));
      const touched = new Set(p.cuts.flatMap((c) => [c.from, c.to]));
      const bridge = ids5.filter((x) => !touched.has(x));
      assert.equal(bridge.length, 1, p.description);
      const rest = ids5.filter((x) => x !== bridge[0]);
      const a = rest.filter((x) => !p.cuts.some((c) => c.from === rest[0] && c.to === x));
      const b = rest.filter((x) => !a.includes(x));
      assert.deepEqual([a.length, b.length], [2, 2], p.description);
      assert.deepEqual(keys(p.cuts), both(a, b));
    }
    assert.throws(() => planFault('bridge', ids3, 'n1', new SeededRng(1)), /bridge needs at least 5 nodes/);
  });

  test('kill and pause: one node, the leader or a follower', () => {
    for (const kind of ['kill', 'pause'] as const) {
      const victims = new Set<string>();
      for (let seed = 1; seed <= 30; seed++) {
        const p = planFault(kind, ids3, 'n3', new SeededRng(seed));
        const list = kind === 'kill' ? p.kill : p.pause;
        assert.equal(list.length, 1);
        assert.equal(p.cuts.length, 0);
        victims.add(list[0] as string);
      }
      assert.deepEqual([...victims].sort(), ids3);
    }
  });

  test('no plan cuts a node from itself; leader faults without a leader say so', () => {
    for (const kind of kindsFor(5)) {
      for (let seed = 1; seed <= 10; seed++) {
        const p = planFault(kind, ids5, '', new SeededRng(seed));
        assert.ok(p.cuts.every((c) => c.from !== c.to && ids5.includes(c.from) && ids5.includes(c.to)));
        if (kind === 'isolate-leader' || kind === 'one-way') assert.match(p.description, /leader unknown/);
      }
    }
    assert.throws(() => planFault('kill', ids3, 'n9', new SeededRng(1)), /leader n9 is not a node/);
  });

  test('the schedule runs every kind once per block; no bridge with 3 nodes', () => {
    for (const [n, want] of [
      [3, FAULT_KINDS.filter((k) => k !== 'bridge')],
      [5, [...FAULT_KINDS]],
    ] as const) {
      const s = new Schedule(n, new SeededRng(9));
      for (let block = 0; block < 3; block++) {
        const got = Array.from({ length: want.length }, () => s.next());
        assert.deepEqual([...got].sort(), [...want].sort());
      }
    }
  });
});

describe('iptables rules', () => {
  const ip = (id: string) => `10.213.7.${id.slice(1)}`;
  test('a directed cut drops, at the receiver only, packets from the sender’s address', () => {
    const cuts: Cut[] = [
      { from: 'n1', to: 'n2' },
      { from: 'n3', to: 'n2' },
    ];
    const at2 = renderRules('n2', cuts, ip);
    assert.match(at2, /^-A INPUT -s 10\.213\.7\.1\/32 -j DROP$/m);
    assert.match(at2, /^-A INPUT -s 10\.213\.7\.3\/32 -j DROP$/m);
    assert.equal(at2.match(/-j DROP/g)?.length, 2);
    assert.doesNotMatch(renderRules('n1', cuts, ip), /-A /);
  });
  test('the heal is empty chains with ACCEPT policies, committed', () => {
    assert.equal(
      renderRules('n1', [], ip),
      '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n',
    );
  });
});

describe('failed calls', () => {
  const put: KvInput = { kind: 'put', key: 'k', value: 'v' };
  test('a failed read is a definite failure; so is a write refused before it was proposed, or never sent', () => {
    assert.equal(classify({ kind: 'get', key: 'k' }, { code: 4, details: 'Deadline exceeded' }), 'fail');
    assert.equal(classify(put, { code: 14, details: 'no leader: an election is in progress' }), 'fail');
    assert.equal(
      classify(put, { code: 14, details: 'not the leader; the leader is n2 at 10.0.0.2:1' }),
      'fail',
    );
    assert.equal(classify(put, { code: 3, details: 'key must not be empty' }), 'fail');
    const refused = 'No connection established. Last error: connect ECONNREFUSED 10.213.1.2:50051';
    assert.equal(classify(put, { code: 14, details: refused }), 'fail');
  });
  test('any other failed write may have happened', () => {
    assert.equal(classify(put, { code: 4, details: 'Deadline exceeded' }), 'unknown');
    assert.equal(
      classify(put, { code: 14, details: 'proposal at index 9 was replaced by another leader’s entry' }),
      'unknown',
    );
    assert.equal(
      classify(put, { code: 14, details: 'leadership moved away from n1 while the proposal was forwarded' }),
      'unknown',
    );
    assert.equal(classify(put, { code: 14, details: 'Connection dropped' }), 'unknown');
    assert.equal(classify({ kind: 'delete', key: 'k' }, { code: 13, details: 'boom' }), 'unknown');
  });
});

let nextId = 1;
function op(
  input: KvInput,
  call: number,
  ret: number | null,
  output: KvOutput | null,
  outcome: Outcome = ret === null ? 'unknown' : 'ok',
): OpRecord {
  return { id: nextId++, client: 1, node: 'n1', input, call, ret, output, outcome, error: '' };
}

describe('verdict', () => {
  test('an acknowledged write missing from the final read-back fails the run', () => {
    const ops = [
      op({ kind: 'put', key: 'a', value: '1.1' }, 0, 5, { kind: 'put' }),
      op({ kind: 'get', key: 'a' }, 100, 101, { kind: 'get', value: null }),
    ];
    const v = verdictOf(ops);
    assert.equal(v.ok, false);
    assert.match(v.text, /NOT linearizable, key a/);
  });
  test('the same write with an unknown outcome may never have happened', () => {
    const ops = [
      op({ kind: 'put', key: 'a', value: '1.1' }, 0, null, null),
      op({ kind: 'get', key: 'a' }, 100, 101, { kind: 'get', value: null }),
    ];
    assert.equal(verdictOf(ops).ok, true);
  });
  test('a definite failure is left out: its write never happened', () => {
    const ops = [
      op({ kind: 'put', key: 'a', value: '1.1' }, 0, 5, { kind: 'put' }),
      op({ kind: 'delete', key: 'a' }, 10, null, null, 'fail'),
      op({ kind: 'get', key: 'a' }, 100, 101, { kind: 'get', value: '1.1' }),
    ];
    assert.equal(verdictOf(ops).ok, true);
    // Had it been kept as unknown it could explain an absent key; as a failure it cannot.
    const lost = [...ops.slice(0, 2), op({ kind: 'get', key: 'a' }, 100, 101, { kind: 'get', value: null })];
    assert.equal(verdictOf(lost).ok, false);
  });
});

describe('figures', () => {
  test('unavailability runs from a fault’s start to the first write acknowledged that was sent after it', () => {
    const w = (call: number, ret: number | null, outcome: Outcome = ret === null ? 'unknown' : 'ok') =>
      op(
        { kind: 'put', key: 'k', value: `v${call}` },
        call,
        ret,
        ret === null ? null : { kind: 'put' },
        outcome,
      );
    const ops = [
      w(0, 1_500), // sent before the fault: does not count
      op({ kind: 'get', key: 'k' }, 1_100, 1_120, { kind: 'get', value: null }), // a read: does not count
      w(1_050, null), // indeterminate
      w(1_060, 1_100, 'fail'),
      w(1_200, 3_000),
      w(1_300, 2_400), // sent later, answered first: this one ends the unavailability
      w(5_000, 5_100),
      w(5_050, 5_070),
    ];
    const faults: FaultRecord[] = [
      {
        cycle: 1,
        kind: 'isolate-leader' as FaultKind,
        description: '',
        start: 1_000,
        healed: 3_000,
        serving: 3_000,
        recovered: 3_700,
      },
      {
        cycle: 2,
        kind: 'isolate-leader' as FaultKind,
        description: '',
        start: 4_900,
        healed: 5_500,
        serving: 5_500,
        recovered: 5_600,
      },
      // Restarted 2 s after the heal, then every node writing 0.5 s later.
      {
        cycle: 3,
        kind: 'kill' as FaultKind,
        description: '',
        start: 9_000,
        healed: 9_100,
        serving: 11_100,
        recovered: 11_600,
      },
      {
        cycle: 4,
        kind: 'kill' as FaultKind,
        description: '',
        start: 12_000,
        healed: 12_100,
        serving: 12_900,
        recovered: null,
      },
    ];
    const f = computeFigures(3, ops, faults, 13_000);
    assert.deepEqual(f.byFault['isolate-leader'], {
      count: 2,
      maxUnavailableMs: 1_400,
      maxRecoveryMs: 700,
      maxRestartMs: null,
    });
    // Recovery after a kill counts from the restarted node's first answer; its start-up apart.
    assert.deepEqual(f.byFault['kill'], {
      count: 2,
      maxUnavailableMs: null,
      maxRecoveryMs: 500,
      maxRestartMs: 2_000,
    });
    assert.equal(f.byFault['bridge'], undefined);
    assert.deepEqual(f.total, { ok: 6, failed: 1, indeterminate: 1 });
    assert.deepEqual(f.byOp.get, { ok: 1, failed: 0, indeterminate: 0 });
    assert.equal(f.ops, 8);
  });
});
