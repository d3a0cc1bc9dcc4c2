// Call deadlines of one server, served by a single timer instead of one timer per call.
//
// Invariants:
// - `size` is the number of calls waiting on a deadline; a call is in the set from its start until it leaves
//   OPEN (finished, cancelled, expired), so the set never outlives the calls in it.
// - At most one timer is armed, never later than the earliest deadline in the set (it may be earlier: removal
//   is lazy and does not re-arm). When it fires, every call whose deadline has passed expires, and the timer is
//   re-armed at the earliest remaining deadline. So a deadline fires no earlier than it is due, and no later
//   than the timer's own lateness.
// - The timer is unref'd: pending deadlines never keep the process alive on their own.
// - Times are performance.now() milliseconds: a step of the wall clock neither fires nor delays a deadline.
// Per call this costs a Set add and delete; the scan is O(waiting calls) once per earliest-deadline expiry.

const MAX_DELAY_MS = 2 ** 31 - 1;

export interface Expirable {
  /** When the call is due, in `performance.now()` milliseconds (monotonic: a wall-clock step moves nothing). */
  readonly dueAt: number;
  expire(): void;
}

export class Deadlines {
  readonly #waiting = new Set<Expirable>();
  #timer: NodeJS.Timeout | null = null;
  #armedAt = Number.POSITIVE_INFINITY;

  get size(): number {
    return this.#waiting.size;
  }

  add(call: Expirable, deadline: number): void {
    this.#waiting.add(call);
    if (deadline < this.#armedAt) this.#arm(deadline);
  }

  delete(call: Expirable): void {
    this.#waiting.delete(call);
  }

  /** Stops the timer (server shutdown); calls still waiting keep their place but no longer expire. */
  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#armedAt = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#armedAt = at;
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, at - performance.now()));
    this.#timer = setTimeout(fire, delay, this);
    this.#timer.unref();
  }

  /** The timer fired: expire what is due, re-arm for the rest. */
  run(): void {
    this.#timer = null;
    this.#armedAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    const due: Expirable[] = [];
    for (const c of this.#waiting) {
      const d = c.dueAt;
      if (d <= now) due.push(c);
      else if (d < next) next = d;
    }
    for (const c of due) {
      this.#waiting.delete(c);
      c.expire();
    }
    if (next !== Number.POSITIVE_INFINITY && this.#timer === null) this.#arm(next);
  }
}

function fire(d: Deadlines): void {
  d.run();
}
