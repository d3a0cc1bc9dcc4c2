/**
 * The durable state a node starts from when its storage is empty: a founding member's
 * ({@link bootstrapState}) or a joining node's ({@link emptyState}).
 *
 * Invariants: a bootstrapped log holds one committed add-voter entry per founding voter, at
 * indices 1..n of term 1, in the order given, so every founding member derives the same
 * configuration from the same log; a joining node's log is empty at term 0 and learns
 * everything from the leader.
 */
import { encodeConfChange } from './confchange.ts';
import { RaftConfigError } from './errors.ts';
import { type DurableState, type Entry, EntryType, NONE, type NodeId } from './types.ts';

/** The durable state of a brand-new cluster member that bootstraps a cluster of `voters`. */
export function bootstrapState(voters: readonly NodeId[]): DurableState {
  if (voters.length === 0) throw new RaftConfigError('voters', 'a cluster needs at least one voter');
  if (new Set(voters).size !== voters.length) throw new RaftConfigError('voters', 'duplicate voter ids');
  const entries: Entry[] = voters.map((node, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: 'add-voter', node }),
  }));
  return { hardState: { term: 1, vote: NONE, commit: entries.length }, snapshot: null, entries };
}

/** The durable state of a node that will join an existing cluster (it learns everything from the leader). */
export function emptyState(): DurableState {
  return { hardState: { term: 0, vote: NONE, commit: 0 }, snapshot: null, entries: [] };
}
