/**
 * The application's side of the node runtime: the replicated state machine RaftNode applies
 * committed entries to, and snapshots to compact the log.
 *
 * Contract: `apply` is called once per entry, in log order, and must give the same result on
 * every member for the same bytes: bytes it cannot decode are applied as a no-op, not thrown
 * on (a throw stops the node for good, RaftNodeOptions.onFatal). `snapshot`, and a job from `beginSnapshot`, capture the state
 * as of the index last applied when they were called; `restore` replaces the whole state.
 */

/** A snapshot being serialized a slice at a time: `step` returns the bytes once done, null before. */
export interface SnapshotJob {
  step(budgetMs: number): Uint8Array | null;
}

/** The application's replicated state. `apply` is called once per entry, in log order. */
export interface StateMachine<R> {
  /** Apply the entry at `index`. `data` is empty for entries that carry nothing for the application. */
  apply(index: number, data: Uint8Array): R;
  /** Serialize the state as of the last applied index. */
  snapshot(): Uint8Array;
  /** Replace the state by a snapshot taken at `index`. */
  restore(data: Uint8Array, index: number): void;
  /**
   * Optional: start a snapshot of the state as of now, serialized a slice per event-loop turn
   * (`step(budgetMs)` returns the bytes once done, null before) while entries keep being applied.
   * When present, RaftNode uses it instead of `snapshot()`, so big states never stall the loop.
   */
  beginSnapshot?(): SnapshotJob;
}
