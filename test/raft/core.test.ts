// Unit tests of the core's pieces: the log (§5.3 consistency check and conflict
// resolution), fast backtracking hints, the Ready/advance contract and configuration errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogSafetyError, RaftLog } from '../../src/raft/log.ts';
import { bootstrapState, emptyState, Raft, RaftConfigError, RaftUsageError } from '../../src/raft/raft.ts';
import { SeededRng } from '../../src/raft/rng.ts';
import { type Entry, EntryType } from '../../src/raft/types.ts';

const ent = (index: number, term: number, s = ''): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: new TextEncoder().encode(s),
});

test('maybeAppend: consistency check, idempotence, conflict truncation (§5.3)', () => {
  const log = new RaftLog(0, 0, [ent(1, 1), ent(2, 1), ent(3, 2)], 0);
  assert.equal(log.maybeAppend(5, 2, [ent(6, 2)]), -1, 'gap: rejected');
  assert.equal(log.maybeAppend(3, 1, [ent(4, 2)]), -1, 'term mismatch at prevIndex: rejected');
  assert.equal(log.maybeAppend(1, 1, [ent(2, 1)]), 2, 'a duplicate is accepted...');
  assert.equal(log.lastIndex(), 3, '...and does not truncate what follows');
  log.stableTo(3, 2);
  assert.equal(log.maybeAppend(1, 1, [ent(2, 1), ent(3, 3), ent(4, 3)]), 4);
  assert.equal(log.term(3), 3, 'conflicting entry replaced');
  assert.equal(log.stable, 2, 'truncation pulls the durable mark back');
  assert.deepEqual(
    log.unstableEntries().map((e) => e.index),
    [3, 4],
  );
});

test('maybeAppend refuses to truncate a committed entry', () => {
  const log = new RaftLog(0, 0, [ent(1, 1), ent(2, 1)], 2);
  assert.throws(() => log.maybeAppend(1, 1, [ent(2, 2)]), LogSafetyError);
});

test('findConflictByTerm gives the largest index whose term is <= the given term', () => {
  const log = new RaftLog(0, 0, [ent(1, 1), ent(2, 1), ent(3, 4), ent(4, 4), ent(5, 6)], 0);
  assert.equal(log.findConflictByTerm(5, 5), 4);
  assert.equal(log.findConflictByTerm(5, 3), 2);
  assert.equal(log.findConflictByTerm(5, 0), 0);
  assert.equal(log.findConflictByTerm(9, 6), 5);
});

test('compaction keeps terms at the boundary and refuses unapplied entries', () => {
  const log = new RaftLog(0, 0, [ent(1, 1), ent(2, 2), ent(3, 2)], 3);
  assert.throws(() => log.compact(2), RaftUsageError);
  log.appliedTo(3);
  log.compact(2);
  assert.equal(log.firstIndex(), 3);
  assert.equal(log.term(2), 2);
  assert.equal(log.term(1), -1);
  assert.ok(
    log.maybeAppend(1, 1, [ent(2, 2), ent(3, 2), ent(4, 2)]) === 4,
    'entries below the offset are skipped',
  );
});

test('isUpToDate compares last term, then length (§5.4.1)', () => {
  const log = new RaftLog(0, 0, [ent(1, 1), ent(2, 3)], 0);
  assert.ok(log.isUpToDate(1, 4));
  assert.ok(log.isUpToDate(2, 3));
  assert.ok(!log.isUpToDate(1, 3));
  assert.ok(!log.isUpToDate(9, 2));
});

test('the Ready/advance contract is enforced', () => {
  const r = new Raft({ id: 'a', rng: new SeededRng(1) }, bootstrapState(['a']));
  assert.ok(r.hasReady());
  const rd = r.ready();
  assert.throws(() => r.ready(), RaftUsageError);
  assert.equal(r.hasReady(), false, 'nothing new while a Ready is outstanding');
  assert.throws(() => r.advance({ ...rd }), RaftUsageError);
  r.advance(rd);
  assert.throws(() => r.compact(99, new Uint8Array()), RaftUsageError);
});

test('a single voter elects itself and commits on its own durability', () => {
  const r = new Raft({ id: 'a', rng: new SeededRng(2) }, bootstrapState(['a']));
  const drain = () => {
    while (r.hasReady()) r.advance(r.ready());
  };
  drain();
  for (let i = 0; i < 30 && r.currentRole !== 'leader'; i++) {
    r.tick();
    drain();
  }
  assert.equal(r.currentRole, 'leader');
  const out = r.propose(new TextEncoder().encode('x'));
  assert.equal(out.kind, 'appended');
  const rd = r.ready();
  assert.equal(rd.committedEntries.length, 0, 'not committed before it is durable');
  assert.equal(rd.entries.length, 1);
  r.advance(rd);
  const rd2 = r.ready();
  assert.equal(rd2.committedEntries.at(-1)?.index, out.kind === 'appended' ? out.index : -1);
  r.advance(rd2);
  r.readIndex(7);
  const rd3 = r.ready();
  assert.deepEqual(rd3.readStates, [{ ctx: 7, index: r.commitIndex }]);
});

test('configuration errors name the bad setting', () => {
  const rng = new SeededRng(1);
  assert.throws(() => new Raft({ id: '', rng }, emptyState()), RaftConfigError);
  assert.throws(() => new Raft({ id: 'a', rng, electionTick: 1 }, emptyState()), /electionTick/);
  assert.throws(() => new Raft({ id: 'a', rng, heartbeatTick: 10 }, emptyState()), /heartbeatTick/);
  assert.throws(
    () => new Raft({ id: 'a', rng, readOnly: 'lease', checkQuorum: false }, emptyState()),
    /lease/,
  );
  assert.throws(() => new Raft({ id: 'a', rng, maxInflight: 0 }, emptyState()), /maxInflight/);
  assert.throws(() => bootstrapState([]), /at least one voter/);
  assert.throws(() => bootstrapState(['a', 'a']), /duplicate/);
});

test('a node without a leader refuses proposals and reads with a reason', () => {
  const r = new Raft({ id: 'a', rng: new SeededRng(3) }, bootstrapState(['a', 'b', 'c']));
  const out = r.propose(new Uint8Array([1]));
  assert.equal(out.kind, 'rejected');
  if (out.kind === 'rejected') assert.equal(out.reason, 'no-leader');
  r.readIndex(1);
  assert.deepEqual(r.ready().readFailures, [{ ctx: 1, reason: 'no-leader' }]);
});

test('the seeded RNG is deterministic and roughly uniform', () => {
  const a = new SeededRng(42);
  const b = new SeededRng(42);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 10_000; i++) {
    const x = a.int(10);
    assert.equal(x, b.int(10));
    counts[x]++;
  }
  for (const c of counts) assert.ok(c > 850 && c < 1150, `bucket ${c}`);
});
