/**
 * One complete simulated run: a chaos phase (clients and faults), a calm phase (faults
 * undone, clients finish), then the end-of-run checks: the cluster recovers (a leader,
 * every live member catches up) and the client history is linearizable.
 */
import { chaosOptions, SimFailure, type SimOptions, Simulator } from './simulator.ts';

export interface RunResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly steps: number;
  readonly virtualMs: number;
  readonly ops: number;
  readonly unknownOps: number;
  readonly applied: number;
  readonly committed: number;
  /** Local reads checked against the committed log's prefix their node had applied. */
  readonly localReads: number;
  /** Writes refused with "session expired" (their session was evicted). */
  readonly sessionsExpired: number;
  /** Hash of the whole event trace: two runs with equal hashes processed the same events. */
  readonly traceHash: number;
  readonly stats: Simulator['stats'];
  readonly error?: SimFailure;
}

/** Checks a finished history; supplied by the caller so this module stays checker-agnostic. */
export type HistoryCheck = (sim: Simulator) => string | null;

export function replayCommand(seed: number, steps: number, extra = ''): string {
  return `npm run sim -- --seed ${seed} --steps ${steps}${extra ? ` ${extra}` : ''}`;
}

export async function runSeed(
  seed: number,
  steps: number,
  overrides: Partial<SimOptions> = {},
  checkHistory: HistoryCheck | null = null,
): Promise<RunResult> {
  const sim: Simulator = new Simulator(chaosOptions(seed, overrides));
  try {
    sim.startClients();
    sim.startFaults();
    while (sim.steps < steps) await sim.runFor(50);
    sim.calm();
    // Recovery: with every fault undone, a leader must emerge and clients must finish.
    const leader = await sim.waitForLeader(20_000);
    if (!leader) sim.fail('no stable leader within 20 s (virtual) after faults stopped');
    sim.stopClients();
    if (!(await sim.runUntil(() => sim.clientsIdle(), 20_000)))
      sim.fail('clients did not finish after faults stopped');
    // Every live member converges on the leader's commit index.
    const l = await sim.waitForLeader(5_000);
    if (!l) sim.fail('leader lost during the calm phase');
    const target = sim.raft(l).commitIndex;
    const converged = await sim.runUntil(() => {
      const r = sim.node(l).raft;
      if (!r) return false;
      const conf = r.configuration;
      return [...conf.voters, ...conf.learners].every((id) => {
        const n = sim.node(id);
        return n.alive && n.node !== null && n.node.appliedIndex >= target;
      });
    }, 20_000);
    if (!converged) sim.fail(`members did not all apply up to ${target} after faults stopped`);
    if (checkHistory) {
      const why = checkHistory(sim);
      if (why) sim.fail(`history is not linearizable: ${why}`);
    }
    return result(sim, seed, true);
  } catch (err) {
    if (err instanceof SimFailure) return { ...result(sim, seed, false), error: err };
    throw err;
  }
}

function result(sim: Simulator, seed: number, ok: boolean): RunResult {
  return {
    seed,
    ok,
    steps: sim.steps,
    virtualMs: Math.round(sim.now),
    ops: sim.history.length,
    unknownOps: sim.history.filter((o) => o.ret === null).length,
    applied: sim.inv.appliedMax,
    committed: sim.inv.committedMax,
    localReads: sim.localReads,
    sessionsExpired: sim.sessionsExpired,
    traceHash: sim.traceHash,
    stats: { ...sim.stats },
  };
}
