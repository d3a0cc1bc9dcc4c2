// RaftConfig: every default in DEFAULT_RAFT_CONFIG (and docs/raft.md lists exactly those),
// every rule of validateRaftConfig, which the Raft constructor applies, and the documented
// commitBroadcast default being the one the core runs with.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  bootstrapState,
  DEFAULT_RAFT_CONFIG,
  emptyState,
  type Message,
  MessageType,
  NONE,
  Raft,
  type RaftConfig,
  RaftConfigError,
  RaftError,
  SeededRng,
  validateRaftConfig,
} from '../../src/raft/index.ts';

const rng = new SeededRng(1);

test('DEFAULT_RAFT_CONFIG is frozen and is what an unset setting becomes', () => {
  assert.ok(Object.isFrozen(DEFAULT_RAFT_CONFIG));
  assert.throws(() => {
    (DEFAULT_RAFT_CONFIG as { electionTick: number }).electionTick = 3;
  }, TypeError);
  assert.deepEqual(validateRaftConfig({ id: 'a', rng }), { ...DEFAULT_RAFT_CONFIG, id: 'a', rng });
  const set = validateRaftConfig({
    id: 'a',
    rng,
    electionTick: 20,
    readOnly: 'lease',
    commitBroadcast: 'piggyback',
  });
  assert.equal(set.electionTick, 20);
  assert.equal(set.readOnly, 'lease');
  assert.equal(set.commitBroadcast, 'piggyback');
  assert.equal(set.heartbeatTick, DEFAULT_RAFT_CONFIG.heartbeatTick);
});

/** Each case: a setting that breaks a rule, the field named, and the message (exact). */
const BAD: readonly [Partial<Record<keyof RaftConfig, unknown>>, string, string][] = [
  [{ id: '' }, 'id', 'id must be a non-empty string, got ""'],
  [{ id: 7 }, 'id', 'id must be a non-empty string, got 7'],
  [{ electionTick: 1 }, 'electionTick', 'electionTick must be an integer >= 2, got 1'],
  [{ electionTick: 2.5 }, 'electionTick', 'electionTick must be an integer >= 2, got 2.5'],
  [{ heartbeatTick: 0 }, 'heartbeatTick', 'heartbeatTick must be a positive integer, got 0'],
  [{ heartbeatTick: 10 }, 'heartbeatTick', 'heartbeatTick must be < electionTick, got 10 >= 10'],
  [
    { electionTick: 4, heartbeatTick: 5 },
    'heartbeatTick',
    'heartbeatTick must be < electionTick, got 5 >= 4',
  ],
  [{ preVote: 'yes' }, 'preVote', 'preVote must be a boolean, got "yes"'],
  [{ checkQuorum: 0 }, 'checkQuorum', 'checkQuorum must be a boolean, got 0'],
  [{ readOnly: 'fast' }, 'readOnly', `readOnly must be one of 'safe', 'lease', got "fast"`],
  [
    { readOnly: 'lease', checkQuorum: false },
    'readOnly',
    "readOnly 'lease' needs checkQuorum: without it a deposed leader may serve stale reads",
  ],
  [{ maxMsgEntries: 0 }, 'maxMsgEntries', 'maxMsgEntries must be a positive integer, got 0'],
  [{ maxMsgBytes: -1 }, 'maxMsgBytes', 'maxMsgBytes must be a positive integer, got -1'],
  [{ maxInflight: 1.5 }, 'maxInflight', 'maxInflight must be a positive integer, got 1.5'],
  [
    { maxSnapshotChunk: Number.NaN },
    'maxSnapshotChunk',
    'maxSnapshotChunk must be a positive integer, got NaN',
  ],
  [
    { maxEntryBytes: Number.POSITIVE_INFINITY },
    'maxEntryBytes',
    'maxEntryBytes must be a positive integer, got Infinity',
  ],
  [
    { commitBroadcast: 'lazy' },
    'commitBroadcast',
    `commitBroadcast must be one of 'eager', 'piggyback', got "lazy"`,
  ],
  [{ rng: undefined }, 'rng', 'rng must be an Rng (an object with int(n)), got undefined'],
  [{ rng: {} }, 'rng', 'rng must be an Rng (an object with int(n)), got [object Object]'],
];

for (const [bad, field, message] of BAD) {
  test(`a RaftConfig with ${JSON.stringify(bad)} is refused, naming ${field}`, () => {
    const config = { id: 'a', rng, ...bad } as unknown as RaftConfig;
    const copy = { ...config };
    const check = (e: unknown): boolean => {
      assert.ok(e instanceof RaftConfigError, String(e));
      assert.ok(e instanceof RaftError);
      assert.equal(e.name, 'RaftConfigError');
      assert.equal(e.field, field);
      assert.equal(e.message, message);
      return true;
    };
    assert.throws(() => validateRaftConfig(config), check);
    // The constructor applies the same rules, before it touches anything.
    assert.throws(() => new Raft(config, bootstrapState(['a'])), check);
    assert.deepEqual(config, copy, 'the config given is not changed');
  });
}

test('bootstrapState refuses bad voter lists naming the field', () => {
  for (const [voters, message] of [
    [[], 'a cluster needs at least one voter'],
    [['a', 'a'], 'duplicate voter ids'],
  ] as const) {
    assert.throws(
      () => bootstrapState(voters),
      (e: unknown) => e instanceof RaftConfigError && e.field === 'voters' && e.message === message,
    );
  }
});

test('docs/raft.md lists exactly the defaults of DEFAULT_RAFT_CONFIG', () => {
  const doc = readFileSync(new URL('../../docs/raft.md', import.meta.url), 'utf8');
  const rows = new Map<string, string>();
  for (const m of doc.matchAll(/^\| `(\w+)` \| `([^`]+)`/gm)) rows.set(m[1] as string, m[2] as string);
  const shown = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : String(v));
  const want = new Map(Object.entries(DEFAULT_RAFT_CONFIG).map(([k, v]) => [k, shown(v)]));
  assert.deepEqual(rows, want);
});

/** Three cores with storage that is instant; returns every message each sent. */
function threeCores(extra: Partial<RaftConfig>): { nodes: Map<string, Raft>; pump: () => Message[] } {
  const ids = ['a', 'b', 'c'];
  const nodes = new Map<string, Raft>();
  for (const [i, id] of ids.entries())
    nodes.set(id, new Raft({ id, rng: new SeededRng(10 + i), ...extra }, bootstrapState(ids)));
  const pump = (): Message[] => {
    const all: Message[] = [];
    for (let round = 0; round < 100; round++) {
      const out: Message[] = [];
      for (const r of nodes.values()) {
        while (r.hasReady()) {
          const rd = r.ready();
          out.push(...rd.eagerMessages, ...rd.messages);
          r.advance(rd);
        }
      }
      if (out.length === 0) return all;
      all.push(...out);
      for (const m of out) nodes.get(m.to)?.step(m);
    }
    assert.fail('the network did not quiesce in 100 rounds');
  };
  return { nodes, pump };
}

/** Empty Appends a leader sent only to carry a new commit index, once a write committed. */
function commitOnlyAppends(extra: Partial<RaftConfig>): number {
  const { nodes, pump } = threeCores(extra);
  const a = nodes.get('a') as Raft;
  for (let i = 0; i < 50 && a.currentRole !== 'leader'; i++) {
    a.tick();
    pump();
  }
  assert.equal(a.currentRole, 'leader');
  pump();
  const out = a.propose(new Uint8Array([1]));
  assert.equal(out.kind, 'appended');
  const sent = pump();
  assert.ok(a.commitIndex >= (out.kind === 'appended' ? out.index : Number.POSITIVE_INFINITY));
  return sent.filter((m) => m.type === MessageType.Append && m.from === 'a' && m.entries.length === 0).length;
}

test("commitBroadcast: the core's documented default ('eager') is its default", () => {
  assert.equal(DEFAULT_RAFT_CONFIG.commitBroadcast, 'eager');
  const byDefault = commitOnlyAppends({});
  assert.equal(byDefault, commitOnlyAppends({ commitBroadcast: 'eager' }));
  assert.ok(byDefault > 0, 'eager: each follower hears of the commit at once');
  assert.equal(commitOnlyAppends({ commitBroadcast: 'piggyback' }), 0);
});

test('a joining node with an empty state accepts the defaults', () => {
  const r = new Raft({ id: 'x', rng }, emptyState());
  assert.equal(r.leader, NONE);
});
