/**
 * The nemesis's faults, planned as data (pure: no I/O, randomness from the seeded RNG given).
 *
 * A plan is a set of directed link cuts (see `Cut` in netlab.ts) plus processes to kill -9
 * or SIGSTOP; healing a plan means: no cuts, SIGCONT the paused, restart the killed.
 *
 * Invariants: a plan never cuts a node from itself or from the host (clients reach every
 * node throughout, so requests through an isolated node stay in the history); a partition
 * kind cuts every link between its sides in both directions, `one-way` only the target's
 * outgoing ones; `bridge` leaves its bridge node connected to both halves; the schedule
 * runs every kind once, in a seeded order, in each block of `kindsFor(n).length` cycles.
 */
import type { SeededRng } from '../../src/raft/rng.ts';
import type { Cut } from './netlab.ts';

export const FAULT_KINDS = [
  'isolate-leader',
  'isolate-follower',
  'majority-minority',
  'one-way',
  'bridge',
  'kill',
  'pause',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** The kinds that make sense with `n` nodes (`bridge` needs two halves of two and a bridge node). */
export function kindsFor(n: number): FaultKind[] {
  return FAULT_KINDS.filter((k) => k !== 'bridge' || n >= 5);
}

export interface FaultPlan {
  readonly kind: FaultKind;
  readonly cuts: readonly Cut[];
  readonly kill: readonly string[];
  readonly pause: readonly string[];
  /** One line for the log, e.g. `isolate-leader: n2 | n1 n3`. */
  readonly description: string;
}

function shuffle<T>(items: readonly T[], rng: SeededRng): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

/** Every link between `a` and `b`, both directions. */
export function cutBetween(a: readonly string[], b: readonly string[]): Cut[] {
  const out: Cut[] = [];
  for (const x of a) {
    for (const y of b) {
      if (x === y) continue;
      out.push({ from: x, to: y }, { from: y, to: x });
    }
  }
  return out;
}

/**
 * Plans one fault of `kind` over `ids`, given the current leader (`''` if unknown: leader
 * faults then pick a node at random and say so).
 */
export function planFault(
  kind: FaultKind,
  ids: readonly string[],
  leader: string,
  rng: SeededRng,
): FaultPlan {
  if (ids.length < 3) throw new RangeError(`the nemesis needs at least 3 nodes, not ${ids.length}`);
  if (leader !== '' && !ids.includes(leader)) throw new RangeError(`leader ${leader} is not a node`);
  const others = (x: string) => ids.filter((y) => y !== x);
  const lead = leader || rng.pick(ids);
  const tag = leader ? '' : ' (leader unknown: a random node)';
  const followerOrLeader = () =>
    leader && rng.chance(0.5) ? leader : rng.pick(leader ? others(leader) : ids);
  const none = { cuts: [], kill: [], pause: [] };
  switch (kind) {
    case 'isolate-leader':
      return {
        ...none,
        kind,
        cuts: cutBetween([lead], others(lead)),
        description: `${kind}: ${lead} | ${others(lead).join(' ')}${tag}`,
      };
    case 'isolate-follower': {
      const f = rng.pick(others(lead));
      return {
        ...none,
        kind,
        cuts: cutBetween([f], others(f)),
        description: `${kind}: ${f} | ${others(f).join(' ')}`,
      };
    }
    case 'majority-minority': {
      // The leader lands on either side with equal odds.
      const rest = shuffle(others(lead), rng);
      const small = Math.floor(ids.length / 2);
      const minority = rng.chance(0.5) ? [lead, ...rest.slice(0, small - 1)] : rest.slice(0, small);
      const majority = ids.filter((x) => !minority.includes(x));
      return {
        ...none,
        kind,
        cuts: cutBetween(minority, majority),
        description: `${kind}: ${minority.join(' ')} | ${majority.join(' ')}${leader ? ` (leader ${leader})` : tag}`,
      };
    }
    case 'one-way':
      return {
        ...none,
        kind,
        cuts: others(lead).map((to) => ({ from: lead, to })),
        description: `${kind}: ${lead} cannot send to ${others(lead).join(' ')}, still receives${tag}`,
      };
    case 'bridge': {
      if (ids.length < 5) throw new RangeError(`bridge needs at least 5 nodes, not ${ids.length}`);
      const order = shuffle(ids, rng);
      const bridge = order[0] as string;
      const half = Math.floor((ids.length - 1) / 2);
      const a = order.slice(1, 1 + half);
      const b = order.slice(1 + half);
      return {
        ...none,
        kind,
        cuts: cutBetween(a, b),
        description: `${kind}: ${a.join(' ')} | ${b.join(' ')}, ${bridge} sees both${leader ? ` (leader ${leader})` : ''}`,
      };
    }
    case 'kill': {
      const v = followerOrLeader();
      return {
        ...none,
        kind,
        kill: [v],
        description: `${kind}: kill -9 ${v}${v === leader ? ' (leader)' : ''}`,
      };
    }
    case 'pause': {
      const v = followerOrLeader();
      return {
        ...none,
        kind,
        pause: [v],
        description: `${kind}: SIGSTOP ${v}${v === leader ? ' (leader)' : ''}`,
      };
    }
  }
}

/** Fault kinds in seeded blocks: each block is every kind once, shuffled. */
export class Schedule {
  private block: FaultKind[] = [];
  private readonly kinds: readonly FaultKind[];
  private readonly rng: SeededRng;

  constructor(n: number, rng: SeededRng) {
    this.kinds = kindsFor(n);
    this.rng = rng;
  }

  next(): FaultKind {
    if (this.block.length === 0) this.block = shuffle(this.kinds, this.rng);
    return this.block.pop() as FaultKind;
  }
}
