/**
 * End-of-run check of a simulated client history against the versioned KV model with the
 * linearizability checker (per-key partitions; timed-out writes may or may not have
 * happened). A list of every key is checked as one get per key over the same interval (each
 * projection of a linearizable list is a linearizable get: sound, if weaker than checking
 * the snapshot as a whole); local gets are checked per node by the simulator, not here. A
 * search that exceeds its state budget counts as a failure: a run must prove its history
 * linearizable, not merely fail to refute it.
 */
import { type KvvInput, type KvvOutput, kvvModel } from '../check/kv-model.ts';
import { checkLinearizable, type Operation } from '../check/linearizability.ts';
import type { SimOp, Simulator } from './simulator.ts';

/** The linearizable part of a simulated history, in the versioned model's terms. */
export function linearizableHistory(
  history: readonly SimOp[],
  keys: number,
): Operation<KvvInput, KvvOutput>[] {
  const out: Operation<KvvInput, KvvOutput>[] = [];
  let ids = history.reduce((m, o) => Math.max(m, o.id), 0);
  for (const op of history) {
    const { input, output } = op;
    if (input.kind === 'local-get') continue;
    if (input.kind !== 'list') {
      out.push({ ...op, input, output: output as KvvOutput | null });
      continue;
    }
    if (output === null || output.kind !== 'list' || output.more) continue;
    for (let k = 0; k < keys; k++) {
      const key = `k${k}`;
      const item = output.items.find((i) => i.key === key);
      out.push({
        id: ++ids,
        client: op.client,
        input: { kind: 'get', key },
        call: op.call,
        ret: op.ret,
        output: { kind: 'get', value: item ? item.value : null, version: item ? item.version : 0 },
      });
    }
  }
  return out;
}

export function checkKvHistory(sim: Simulator, maxStates = 2_000_000): string | null {
  const r = checkLinearizable(kvvModel, linearizableHistory(sim.history, sim.opts.keys), { maxStates });
  if (r.ok === true) return null;
  if (r.ok === 'unknown') return `could not decide for key ${r.partition}: ${r.reason}`;
  return `key ${r.partition}:\n${r.explanation}`;
}
