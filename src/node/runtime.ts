/**
 * The runtime a RaftNode lives in: its scheduler (setImmediate, timers), its clocks
 * (monotonic and wall) and its source of randomness. `realRuntime` is Node's own, the
 * default; the simulator (src/sim/) injects a virtual one, so the code that ships is the
 * code it runs.
 *
 * Invariants an implementation keeps (RaftNode relies on them):
 * - callbacks never run synchronously inside the call that scheduled them;
 * - `setImmediate` callbacks run in the order scheduled, after the I/O already received
 *   (Node's check phase); an interval fires at most once per due time, never re-entrantly;
 * - `now()` is monotonic (never goes back); `dateNow()` is the clock deadlines are given in.
 * The real runtime adds no allocation per call: each method forwards to Node's global.
 */
import { randomInt } from 'node:crypto';

/** An opaque handle for clearTimer. */
export type TimerHandle = { readonly __timer?: never } | NodeJS.Timeout;

export interface Runtime {
  /** Run `cb` after the current event-loop turn's I/O (Node's check phase). */
  setImmediate(cb: () => void): void;
  /** Run `cb` every `ms` milliseconds until cleared. */
  setInterval(cb: () => void, ms: number): TimerHandle;
  /** Run `cb` once after `ms` milliseconds unless cleared. */
  setTimeout(cb: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /** Monotonic milliseconds (performance.now()). */
  now(): number;
  /** Wall-clock milliseconds since the epoch (Date.now()): the clock of deadlines. */
  dateNow(): number;
  /** A uniformly random integer in [0, max). */
  randomInt(max: number): number;
}

/** Node's own scheduler, clocks and randomness. */
export const realRuntime: Runtime = {
  setImmediate(cb) {
    setImmediate(cb);
  },
  setInterval: (cb, ms) => setInterval(cb, ms),
  setTimeout: (cb, ms) => setTimeout(cb, ms),
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
  now: () => performance.now(),
  dateNow: () => Date.now(),
  randomInt: (max) => randomInt(max),
};
