// Calls whose client stopped reading: a response waits for flow-control window the client never opens.
//
// Invariants:
// - A call is watched only while some of what it wrote is unsent (it entered when a write left bytes waiting for
//   window, and leaves when they are out, when its stream closes, or when it is cancelled here). Calls whose
//   responses fit the window, the usual small unary ones, never enter: the hot path pays one property read.
// - A watched call whose sent-bytes count has not moved for `limitMs` (measured on the monotonic clock, sampled
//   every limitMs/4) is cancelled: `abortStalled()` ends it RESOURCE_EXHAUSTED and resets its stream, dropping
//   what it held. So a client that reads nothing pins a response for at most ~1.25 x limitMs, with or without a
//   grpc-timeout.
// - One unref'd interval timer serves every watched call, and runs only while some call is watched.

export interface Stallable {
  /** Bytes the call has handed to its stream. */
  readonly bytesOut: number;
  /** Of those, bytes not yet sent (waiting for the client's flow-control window). */
  readonly unsentBytes: number;
  /** True once the stream is gone. */
  readonly streamClosed: boolean;
  /** Owned by StallWatch: whether the call is watched, its sent bytes when last seen moving, and since when. */
  stallWatched: boolean;
  stallSent: number;
  stallSince: number;
  /** The client read nothing for `ms`: cancel the call and drop its stream. */
  abortStalled(ms: number): void;
}

export class StallWatch {
  readonly #calls = new Set<Stallable>();
  #timer: NodeJS.Timeout | null = null;
  /** How long a call may make no progress; 0 disables the watch. */
  readonly limitMs: number;

  constructor(limitMs: number) {
    this.limitMs = limitMs;
  }

  get size(): number {
    return this.#calls.size;
  }

  /** Starts watching `c` (its unsent bytes are > 0); no-op when already watched or the watch is off. */
  watch(c: Stallable): void {
    if (this.limitMs <= 0 || c.stallWatched) return;
    c.stallWatched = true;
    c.stallSent = c.bytesOut - c.unsentBytes;
    c.stallSince = performance.now();
    this.#calls.add(c);
    if (this.#timer === null) {
      this.#timer = setInterval(sweep, Math.max(10, this.limitMs / 4), this);
      this.#timer.unref();
    }
  }

  delete(c: Stallable): void {
    if (!c.stallWatched) return;
    c.stallWatched = false;
    this.#calls.delete(c);
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const c of this.#calls) c.stallWatched = false;
    this.#calls.clear();
  }

  /** One sample: forget calls that are done or drained, cancel those that made no progress for limitMs. */
  run(): void {
    const now = performance.now();
    for (const c of this.#calls) {
      const unsent = c.streamClosed ? 0 : c.unsentBytes;
      if (unsent === 0) {
        this.delete(c);
        continue;
      }
      const sent = c.bytesOut - unsent;
      if (sent !== c.stallSent) {
        c.stallSent = sent;
        c.stallSince = now;
      } else if (now - c.stallSince >= this.limitMs) {
        this.delete(c);
        c.abortStalled(this.limitMs);
      }
    }
    if (this.#calls.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}

function sweep(w: StallWatch): void {
  w.run();
}
