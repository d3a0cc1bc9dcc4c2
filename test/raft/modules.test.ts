// Unit tests of the concepts split out of raft.ts, each against the invariants its header
// states: tracker.ts (Progress reconciliation with the configuration), snapshot-transfer.ts
// (chunked InstallSnapshot, §5), read-only.ts (ReadIndex rounds and the lease fence, §6.4)
// and membership.ts (configuration history and the members the log adds).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeConfChange } from '../../src/raft/confchange.ts';
import { RaftLog } from '../../src/raft/log.ts';
import { Membership } from '../../src/raft/membership.ts';
import { Progress, ProgressState } from '../../src/raft/progress.ts';
import { ReadOnlyState } from '../../src/raft/read-only.ts';
import { nextSnapshotChunk, SNAPSHOT_COMPLETE, SnapshotReceiver } from '../../src/raft/snapshot-transfer.ts';
import { ProgressTracker } from '../../src/raft/tracker.ts';
import {
  type ConfChange,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type ReadFailure,
  type ReadState,
  type Snapshot,
  type SnapshotRequest,
} from '../../src/raft/types.ts';

test('tracker: reconcile promotes, adds at next, drops the removed, never tracks itself', () => {
  const t = new ProgressTracker();
  t.initLeader({ voters: ['a', 'b', 'c'], learners: ['l'] }, 'a', 11);
  assert.deepEqual([...t.prs.keys()].sort(), ['b', 'c', 'l']);
  const b = t.prs.get('b') as Progress;
  b.maybeUpdate(9);
  t.prs.get('l')?.maybeUpdate(7);
  t.reconcile({ voters: ['a', 'b', 'l', 'n'], learners: [] }, 'a', 20);
  assert.deepEqual([...t.prs.keys()].sort(), ['b', 'l', 'n']);
  assert.equal(t.prs.get('b'), b, 'a member that stays keeps its progress');
  assert.equal(b.match, 9);
  assert.equal(t.prs.get('l')?.learner, false, 'a promoted learner votes');
  assert.equal(t.prs.get('n')?.next, 20, 'a new member probes from the next index');
  assert.equal(t.prs.get('n')?.state, ProgressState.Probe);
  // Quorum questions count this node with the value given, not from the map.
  assert.equal(t.committed(['a', 'b', 'l', 'n'], 'a', 15), 7);
  assert.equal(t.committed(['a', 'b', 'l', 'n'], 'a', 8), 7);
  assert.equal(t.committed(['a', 'b', 'l', 'n'], 'a', 6), 6);
  t.reset();
  assert.equal(t.prs.size, 0);
});

test('tracker: the first answer of a voter counts', () => {
  const t = new ProgressTracker();
  t.recordVote('b', false);
  t.recordVote('b', true);
  t.recordVote('a', true);
  assert.equal(t.tallyVotes(['a', 'b', 'c']), 'pending');
  t.recordVote('c', true);
  assert.equal(t.tallyVotes(['a', 'b', 'c']), 'won');
});

const META = { index: 50, term: 3, conf: { voters: ['a'], learners: [] } };
function chunk(offset: number, data: number[], done: boolean, meta = META): SnapshotRequest {
  return {
    type: MessageType.Snapshot,
    from: 'a',
    to: 'b',
    term: 3,
    meta,
    offset,
    data: new Uint8Array(data),
    done,
  };
}

test('snapshot transfer: chunks are accepted only in order, a gap answers with what is held (§5)', () => {
  const r = new SnapshotReceiver();
  assert.equal(r.receive(chunk(0, [1, 2], false)), 2);
  assert.equal(r.receive(chunk(5, [9], false)), 2, 'a gap: the leader resends from 2');
  assert.equal(r.receive(chunk(2, [3], false)), 3);
  assert.equal(r.receive(chunk(3, [9], false, { ...META, index: 60 })), 0, 'another snapshot: start over');
  assert.equal(r.receive(chunk(3, [4], false)), 0, 'the chunks held before were dropped');
  assert.equal(r.receive(chunk(0, [1, 2, 3], false)), 3);
  assert.equal(r.receive(chunk(3, [4], true)), SNAPSHOT_COMPLETE);
  assert.deepEqual([...r.take()], [1, 2, 3, 4]);
  assert.equal(r.receive(chunk(4, [5], true)), 0, 'nothing held after completion');
});

test('snapshot transfer: the sender sends from the acknowledged offset, one chunk, restarting on a newer snapshot', () => {
  const snap: Snapshot = { meta: META, data: new Uint8Array([1, 2, 3, 4, 5]) };
  const pr = new Progress('b', 1, false);
  pr.becomeSnapshot(50);
  const first = nextSnapshotChunk(pr, snap, 2, 'a', 3);
  assert.deepEqual([first?.offset, [...(first?.data ?? [])], first?.done], [0, [1, 2], false]);
  pr.snapshotOffset = 4;
  const last = nextSnapshotChunk(pr, snap, 2, 'a', 3);
  assert.deepEqual([last?.offset, [...(last?.data ?? [])], last?.done], [4, [5], true]);
  pr.snapshotOffset = 5;
  assert.equal(nextSnapshotChunk(pr, snap, 2, 'a', 3), null, 'all sent: wait for the final acknowledgement');
  const newer: Snapshot = { meta: { ...META, index: 70 }, data: new Uint8Array([7]) };
  const restart = nextSnapshotChunk(pr, newer, 2, 'a', 3);
  assert.equal(pr.pendingSnapshot, 70);
  assert.deepEqual([restart?.offset, restart?.done], [0, true]);
});

test('read-only: a read waits for a round sent after it; a fenced lease serves nothing (§6.4)', () => {
  const ro = new ReadOnlyState();
  ro.reset();
  const states: ReadState[] = [];
  ro.add(1, 'a', 10);
  assert.equal(ro.needRound, true);
  ro.release(0, 'a', states);
  assert.deepEqual(states, [], 'round 0 was sent before the read');
  const seq = ro.startRound();
  ro.add(2, 'f', 11);
  ro.release(seq, 'a', states);
  assert.deepEqual(states, [{ ctx: 1, index: 10 }], "only the read queued before the round; this node's own");
  assert.deepEqual(ro.remoteReads.get('f') ?? [], [], "the follower's read waits for the next round");
  ro.release(ro.startRound(), 'a', states);
  assert.deepEqual(ro.remoteReads.get('f'), [{ ctxs: [2], index: 11 }]);
  // The lease: a quorum-acknowledged round counts for electionTick - 2 ticks after it was sent.
  assert.equal(ro.leaseValid(2, 10), true);
  for (let i = 0; i < 8; i++) ro.leaderTicks++;
  assert.equal(ro.leaseValid(2, 10), false);
  const fresh = ro.startRound();
  assert.equal(ro.leaseValid(fresh, 10), true);
  ro.fenceLease();
  assert.equal(ro.leaseValid(fresh, 10), false);
  assert.equal(ro.leaseValid(ro.startRound(), 10), false, 'no later round of the term either');
});

test('read-only: losing leadership fails every parked and queued read, in order', () => {
  const ro = new ReadOnlyState();
  ro.reset();
  ro.awaitCommit(1, 'a');
  ro.add(2, 'f', 5);
  ro.add(3, 'a', 5);
  const failures: ReadFailure[] = [];
  const out: Message[] = [];
  ro.failAll('a', 7, failures, out);
  assert.deepEqual(failures, [
    { ctx: 1, reason: 'not-leader' },
    { ctx: 3, reason: 'not-leader' },
  ]);
  assert.deepEqual(out, [
    { type: MessageType.ReadIndexResp, from: 'a', to: 'f', term: 7, ctxs: [2], index: -1 },
  ]);
  assert.equal(ro.hasQueued(), false);
  assert.equal(ro.takeAwaitingCommit(), null);
});

function confEntry(index: number, cc: ConfChange): Entry {
  return { term: 1, index, type: EntryType.ConfChange, data: encodeConfChange(cc) };
}

test('membership: configurations by index, the members the log adds, malformed entries as no-ops', () => {
  const m = new Membership();
  assert.equal(m.knowsNone(), true);
  const log = new RaftLog(
    0,
    0,
    [
      confEntry(1, { type: 'add-voter', node: 'a' }),
      confEntry(2, { type: 'add-voter', node: 'b' }),
      { term: 1, index: 3, type: EntryType.ConfChange, data: new Uint8Array([0xff]) },
      confEntry(4, { type: 'add-learner', node: 'l' }),
    ],
    0,
  );
  m.rescan(log);
  assert.equal(m.isKnown('l'), true, 'added by an entry not yet applied');
  assert.equal(m.isVoter('a'), false);
  for (let i = 1; i <= 3; i++) m.apply(log.entry(i) as Entry);
  assert.equal(m.apply(log.entry(2) as Entry), false, 'applying twice is a no-op');
  assert.deepEqual(m.conf, { voters: ['a', 'b'], learners: [] });
  assert.equal(m.malformed, 1);
  assert.equal(m.isKnown('l'), true);
  assert.deepEqual(m.at(1), { voters: ['a'], learners: [] });
  assert.deepEqual(m.at(3), { voters: ['a', 'b'], learners: [] });
  m.compact(2);
  assert.deepEqual(
    m.at(2),
    { voters: ['a', 'b'], learners: [] },
    'the configuration in force at the snapshot stays',
  );
  m.restore(10, { voters: ['x'], learners: [] });
  assert.equal(m.isKnown('l'), false, 'a snapshot replaces what the log added');
  assert.equal(m.isKnown('x'), true);
});
