// PendingWork, the calls a RaftNode holds: how a snapshot from the leader settles proposals.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OutcomeUnknownError, ProposalDroppedError } from '../../src/node/errors.ts';
import { PendingWork } from '../../src/node/pending.ts';
import { realRuntime } from '../../src/node/runtime.ts';

function settle(pending: PendingWork<string>, seq: number, index: number): Promise<string> {
  return new Promise((resolve) =>
    pending.addProposal(
      seq,
      index,
      2,
      undefined,
      (a) => resolve(`applied ${a.index}`),
      (e: Error) => resolve(e.name),
    ),
  );
}

test('a snapshot from the leader: forwarded proposals become unknown, ours at or below it dropped, ours above it wait', async () => {
  const pending = new PendingWork<string>(realRuntime);
  const forwarded = settle(pending, 1, 0);
  const below = settle(pending, 2, 7);
  const above = settle(pending, 3, 12);
  pending.snapshotInstalled(10);
  assert.equal(pending.requests, 1, 'only the proposal above the snapshot still waits');
  // The forwarded one's entry may be inside the snapshot: a later copy of it (a duplicated
  // message appends it twice) must not answer it as if it had never been applied.
  assert.equal(await forwarded, new OutcomeUnknownError('').name);
  assert.equal(await below, new ProposalDroppedError(7).name);
  pending.proposalApplied(3, 12, 'ok');
  assert.equal(await above, 'applied 12');
  assert.equal(pending.requests, 0);
});
