/**
 * The simulator's command line.
 *   npm run sim -- --seed 7 [--steps 6000]      one run, replayable exactly
 *   npm run sim -- --seeds 10000 [--from 1]    the soak: many seeds, stops at the first failure
 * Options: --lease (lease reads), --no-prevote, --no-checkquorum, --trace N (lines shown on failure).
 */
import { checkKvHistory } from '../src/sim/history.ts';
import { replayCommand, runSeed } from '../src/sim/run.ts';
import type { SimOptions } from '../src/sim/simulator.ts';

function usage(msg: string): never {
  console.error(
    `sim: ${msg}\nusage: npm run sim -- [--seed N | --seeds K [--from N]] [--steps M] [--lease] [--no-prevote] [--no-checkquorum] [--trace N]`,
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let seed: number | null = null;
let seeds = 0;
let from = 1;
let steps = 6_000;
let traceLines = 60;
const extra: string[] = [];
const overrides: Partial<SimOptions> = {};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const num = (): number => {
    const v = Number(args[++i]);
    if (!Number.isInteger(v) || v < 0) usage(`${a} needs a non-negative integer`);
    return v;
  };
  switch (a) {
    case '--seed':
      seed = num();
      break;
    case '--seeds':
      seeds = num();
      break;
    case '--from':
      from = num();
      break;
    case '--steps':
      steps = num();
      break;
    case '--trace':
      traceLines = num();
      break;
    case '--lease':
      overrides.readOnly = 'lease';
      extra.push(a);
      break;
    case '--no-prevote':
      overrides.preVote = false;
      extra.push(a);
      break;
    case '--no-checkquorum':
      overrides.checkQuorum = false;
      extra.push(a);
      break;
    default:
      usage(`unknown argument ${a}`);
  }
}
if (seed === null && seeds === 0) seed = 1;
const list = seed !== null ? [seed] : Array.from({ length: seeds }, (_, i) => from + i);
const t0 = process.hrtime.bigint();
let totalSteps = 0;
let totalOps = 0;
let faults = 0;
let expired = 0;
for (const s of list) {
  const r = await runSeed(s, steps, overrides, checkKvHistory);
  totalSteps += r.steps;
  totalOps += r.ops;
  faults += Object.values(r.stats).reduce((a, b) => a + b, 0);
  expired += r.sessionsExpired;
  if (!r.ok) {
    const e = r.error;
    console.error(`\nFAIL seed ${s}: ${e?.message}`);
    console.error(`--- last ${traceLines} trace lines ---`);
    for (const line of (e?.trace ?? []).slice(-traceLines)) console.error(line);
    console.error(`--- replay: ${replayCommand(s, steps, extra.join(' '))}`);
    process.exit(1);
  }
  if (list.length === 1 || s % 100 === 0) {
    console.log(
      `seed ${s}: ok, ${r.steps} steps, ${r.virtualMs} virtual ms, ${r.ops} ops (${r.unknownOps} unknown, ${r.sessionsExpired} session expiries), applied ${r.applied}, ` +
        `committed ${r.committed}, trace ${r.traceHash.toString(16)}, ${JSON.stringify(r.stats)}`,
    );
  }
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(
  `${list.length} seeds passed: ${totalSteps} steps, ${totalOps} client ops (${expired} writes met an expired session), ${faults} faults, ${secs.toFixed(1)} s`,
);
