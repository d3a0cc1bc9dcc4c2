/**
 * End-of-run check of a simulated client history against the KV model with the
 * linearizability checker (per-key partitions; timed-out writes may or may not have
 * happened). A search that exceeds its state budget counts as a failure: a run must
 * prove its history linearizable, not merely fail to refute it.
 */
import { kvModel } from '../check/kv-model.ts';
import { checkLinearizable } from '../check/linearizability.ts';
import type { Simulator } from './simulator.ts';

export function checkKvHistory(sim: Simulator, maxStates = 2_000_000): string | null {
  const r = checkLinearizable(kvModel, sim.history, { maxStates });
  if (r.ok === true) return null;
  if (r.ok === 'unknown') return `could not decide for key ${r.partition}: ${r.reason}`;
  return `key ${r.partition}:\n${r.explanation}`;
}
