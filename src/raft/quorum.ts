/**
 * Majority quorum arithmetic, kept apart so it can be checked against a naive oracle
 * (test/raft/quorum.test.ts). Pure functions over plain maps.
 *
 * Invariant: an index (or sequence number) is "committed" by a majority of `voters` iff at
 * least floor(n/2)+1 of them report a value >= it; the result is the largest such value.
 */
import type { NodeId } from './types.ts';

export const VoteResult = { Pending: 'pending', Won: 'won', Lost: 'lost' } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest value v such that a majority of `voters` have `valueFor(id) >= v`.
 * Missing voters count as 0. With no voters, returns +Infinity (nothing constrains it),
 * mirroring the convention that an empty configuration agrees on everything.
 */
export function committedValue(voters: readonly NodeId[], valueFor: (id: NodeId) => number): number {
  const n = voters.length;
  if (n === 0) return Number.POSITIVE_INFINITY;
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = valueFor(voters[i] as NodeId);
  values.sort((a, b) => b - a);
  return values[majority(n) - 1] as number;
}

/** Outcome of an election given the votes received so far (true = granted). */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const n = voters.length;
  if (n === 0) return VoteResult.Won;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const q = majority(n);
  if (granted >= q) return VoteResult.Won;
  if (n - rejected < q) return VoteResult.Lost;
  return VoteResult.Pending;
}
