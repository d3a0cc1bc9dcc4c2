// The full-fault simulation over many seeds: every safety invariant after every event,
// recovery once faults stop, and a linearizable client history at the end.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkKvHistory } from '../../src/sim/history.ts';
import { replayCommand, runSeed } from '../../src/sim/run.ts';

const SEEDS = Number(process.env['RAFTKV_SIM_SEEDS'] ?? 200);
const STEPS = 20_000;

function report(seed: number, message: string, trace: readonly string[]): string {
  return `seed ${seed}: ${message}\n${trace.slice(-40).join('\n')}\nreplay: ${replayCommand(seed, STEPS)}`;
}

test(`chaos: ${SEEDS} seeds with crashes, torn writes, pauses, partitions, drops, membership changes and transfers`, () => {
  let ops = 0;
  let faults = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = runSeed(seed, STEPS, {}, checkKvHistory);
    if (!r.ok) assert.fail(report(seed, r.error?.message ?? 'failed', r.error?.trace ?? []));
    ops += r.ops;
    faults += r.stats.crashes + r.stats.partitions + r.stats.pauses + r.stats.confChanges + r.stats.transfers;
  }
  assert.ok(ops > SEEDS * 100, `clients completed ${ops} operations`);
  assert.ok(faults > SEEDS * 30, `${faults} faults injected`);
});

test('chaos with lease reads (30 seeds)', () => {
  for (let seed = 1; seed <= 30; seed++) {
    const r = runSeed(seed, STEPS, { readOnly: 'lease' }, checkKvHistory);
    if (!r.ok) assert.fail(report(seed, r.error?.message ?? 'failed', r.error?.trace ?? []));
  }
});

test('the checker catches stale reads: serving gets locally without ReadIndex fails some seed', () => {
  let caught = 0;
  for (let seed = 1; seed <= 40 && caught === 0; seed++) {
    const r = runSeed(seed, STEPS, { unsafeLocalReads: true }, checkKvHistory);
    if (!r.ok) {
      assert.match(r.error?.message ?? '', /not linearizable/);
      caught++;
    }
  }
  assert.ok(caught > 0, 'local reads on followers and deposed leaders must produce a stale read somewhere');
});

test('a run is deterministic: the same seed gives the same run', () => {
  const a = runSeed(77, 5_000, {}, null);
  const b = runSeed(77, 5_000, {}, null);
  assert.deepEqual(a, b);
});
