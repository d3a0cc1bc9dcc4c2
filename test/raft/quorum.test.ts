// Quorum arithmetic against a naive oracle (property tests, cf. etcd-io/raft quorum/quick_test.go).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { committedValue, majority, VoteResult, voteResult } from '../../src/raft/quorum.ts';

const ids = fc.uniqueArray(fc.constantFrom<string>('a', 'b', 'c', 'd', 'e', 'f', 'g'), {
  minLength: 1,
  maxLength: 7,
});

function naiveCommitted(voters: string[], match: Map<string, number>): number {
  // The largest v such that more than half the voters have match >= v.
  let best = 0;
  const candidates = new Set([0, ...voters.map((v) => match.get(v) ?? 0)]);
  for (const v of candidates) {
    const n = voters.filter((id) => (match.get(id) ?? 0) >= v).length;
    if (n * 2 > voters.length && v > best) best = v;
  }
  return best;
}

test('committedValue equals the naive majority oracle', () => {
  fc.assert(
    fc.property(ids, fc.array(fc.nat(50), { minLength: 7, maxLength: 7 }), (voters, values) => {
      const match = new Map(voters.map((id, i) => [id, values[i] ?? 0]));
      assert.equal(
        committedValue(voters, (id) => match.get(id) ?? 0),
        naiveCommitted(voters, match),
      );
    }),
    { numRuns: 2000 },
  );
});

test('voteResult equals the naive oracle', () => {
  fc.assert(
    fc.property(
      ids,
      fc.array(fc.constantFrom<boolean | undefined>(true, false, undefined), { minLength: 7, maxLength: 7 }),
      (voters, raw) => {
        const votes = new Map<string, boolean>();
        voters.forEach((id, i) => {
          const v = raw[i];
          if (v !== undefined) votes.set(id, v);
        });
        const yes = voters.filter((id) => votes.get(id) === true).length;
        const no = voters.filter((id) => votes.get(id) === false).length;
        const q = Math.floor(voters.length / 2) + 1;
        const expected =
          yes >= q ? VoteResult.Won : voters.length - no < q ? VoteResult.Lost : VoteResult.Pending;
        assert.equal(voteResult(voters, votes), expected);
      },
    ),
    { numRuns: 2000 },
  );
});

test('majority of n and edge cases', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
  assert.equal(
    committedValue([], () => 0),
    Number.POSITIVE_INFINITY,
  );
  assert.equal(voteResult([], new Map()), VoteResult.Won);
  // Votes from non-voters never count.
  assert.equal(
    voteResult(
      ['a', 'b', 'c'],
      new Map([
        ['x', true],
        ['y', true],
        ['a', true],
      ]),
    ),
    VoteResult.Pending,
  );
});
