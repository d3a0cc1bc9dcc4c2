/**
 * Seeded pseudo-random numbers for the core and the simulator. The core never touches
 * the global random generator: randomized election timeouts come from an injected
 * {@link Rng}, so a seed replays a run exactly.
 */
import { RaftUsageError } from './errors.ts';

export interface Rng {
  /** A uniformly distributed integer in [0, n). `n` must be a positive integer. */
  int(n: number): number;
}

/** sfc32 seeded through splitmix32: fast, 128-bit state, good statistical quality. */
export class SeededRng implements Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** The next 32 random bits as an unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  int(n: number): number {
    return Math.floor((this.u32() / 0x100000000) * n);
  }

  /** A float in [0, 1). */
  float(): number {
    return this.u32() / 0x100000000;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RaftUsageError('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  /** A derived, independent generator (for a sub-component that must not perturb this one). */
  fork(): SeededRng {
    return new SeededRng(this.u32());
  }
}
