/**
 * The one polling helper of the test suite: waitFor(what, f) calls `f` (sync or async) until it
 * gives a value other than undefined, null or false, and returns that value; past the timeout
 * it throws an error naming `what` (and the last error `f` threw, with `retryErrors`).
 * Bounded in time by construction; polls every `everyMs` on the event loop, never spins.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this many ms (default 10 s). */
  readonly timeoutMs?: number;
  /** Poll interval (default 5 ms). */
  readonly everyMs?: number;
  /** Treat an exception from `f` as "not yet" instead of failing at once. */
  readonly retryErrors?: boolean;
}

export type Settled<T> = Exclude<T, undefined | null | false>;

export async function waitFor<T>(
  what: string,
  f: () => T | PromiseLike<T>,
  opts: WaitOptions | number = {},
): Promise<Settled<T>> {
  const o: WaitOptions = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  const end = Date.now() + (o.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== null && v !== false) return v as Settled<T>;
    } catch (e) {
      if (!o.retryErrors) throw e;
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}${last !== undefined ? `: ${String(last)}` : ''}`);
    }
    await sleep(o.everyMs ?? 5);
  }
}
