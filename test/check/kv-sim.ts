/**
 * Test helper: histories produced by a simulated, correct (linearizable) KV store.
 *
 * Each operation gets a linearization point inside its [call, ret] window; operations are
 * applied to a sequential store in the order of those points, which yields the outputs.
 * Clients are sequential (a client's next call comes after its previous return or timeout),
 * operations of different clients overlap freely. Operations marked unknown record
 * `ret: null`; they either take effect at some point after their call (possibly much
 * later, like a delayed message) or never.
 */
import { applyKv, type KvInput, type KvOperation, type KvState } from '../../src/check/kv-model.ts';

export interface SimOpSpec {
  readonly client: number;
  /** 0 put, 1 get, 2 delete, 3 cas */
  readonly kind: number;
  readonly key: number;
  /** Idle time of the client before the call. */
  readonly gap: number;
  /** Call to linearization point. */
  readonly toLin: number;
  /** Linearization point to return (or to the client's timeout). */
  readonly toRet: number;
  readonly unknown: boolean;
  /** For unknown operations: whether it takes effect at all. */
  readonly takesEffect: boolean;
  /** For cas: even = expect the current value (swaps), odd = expect something else. */
  readonly casPick: number;
}

interface Pending {
  readonly index: number;
  readonly spec: SimOpSpec;
  readonly call: number;
  readonly lin: number;
  readonly ret: number;
}

/**
 * Build a history from operation specs. With `sequential`, one global clock is used so
 * no two operations overlap in real time.
 */
export function simulate(specs: readonly SimOpSpec[], opts: { sequential?: boolean } = {}): KvOperation[] {
  const clocks = new Map<number, number>();
  let globalClock = 0;
  const pending: Pending[] = specs.map((spec, index) => {
    const start = opts.sequential === true ? globalClock : (clocks.get(spec.client) ?? 0);
    const call = start + spec.gap;
    // Unknown operations may take effect long after the client gave up on them.
    const lin = call + (spec.unknown && opts.sequential !== true ? spec.toLin * 5 : spec.toLin);
    const ret = spec.unknown && opts.sequential !== true ? call + spec.toLin + spec.toRet : lin + spec.toRet;
    clocks.set(spec.client, ret + 1);
    globalClock = Math.max(globalClock, ret + 1, lin + 1);
    return { index, spec, call, lin, ret };
  });

  const byLin = [...pending].sort((a, b) => a.lin - b.lin || a.index - b.index);
  const store = new Map<string, KvState>();
  const written: string[] = [];
  const history: (KvOperation | undefined)[] = new Array(specs.length);
  for (const p of byLin) {
    const key = `k${p.spec.key}`;
    const value = `v${p.index}`;
    const current = store.get(key) ?? null;
    let input: KvInput;
    switch (p.spec.kind % 4) {
      case 0:
        input = { kind: 'put', key, value };
        break;
      case 1:
        input = { kind: 'get', key };
        break;
      case 2:
        input = { kind: 'delete', key };
        break;
      default: {
        let expected: string | null = current;
        if (p.spec.casPick % 2 === 1) {
          const other = written[p.spec.casPick % Math.max(1, written.length)];
          expected = other === undefined || other === current ? `never-${p.index}` : other;
        }
        input = { kind: 'cas', key, expected, value };
      }
    }
    if (input.kind === 'put' || input.kind === 'cas') written.push(value);
    const effective = !p.spec.unknown || p.spec.takesEffect;
    const r = applyKv(current, input);
    if (effective) store.set(key, r.state);
    history[p.index] = {
      id: p.index,
      client: p.spec.client,
      input,
      call: p.call,
      ret: p.spec.unknown ? null : p.ret,
      output: p.spec.unknown ? null : r.output,
    };
  }
  return history.map((op) => op!);
}

/** A small deterministic PRNG (mulberry32) for reproducible large histories. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random specs without fast-check (for the performance test). */
export function randomSpecs(
  seed: number,
  n: number,
  p: { clients: number; keys: number; unknownRate: number; maxGap: number; maxLatency: number },
): SimOpSpec[] {
  const rnd = prng(seed);
  const int = (k: number) => Math.floor(rnd() * k);
  const specs: SimOpSpec[] = [];
  for (let i = 0; i < n; i++) {
    specs.push({
      client: int(p.clients),
      kind: int(4),
      key: int(p.keys),
      gap: int(p.maxGap),
      toLin: int(p.maxLatency),
      toRet: int(p.maxLatency),
      unknown: rnd() < p.unknownRate,
      takesEffect: rnd() < 0.5,
      casPick: int(1000),
    });
  }
  return specs;
}
