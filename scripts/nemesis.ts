/**
 * `npm run nemesis`: network partitions, kill -9 and SIGSTOP against real `raftkv serve`
 * processes in network namespaces, with a checked history (see docs/nemesis.md).
 *   npm run nemesis -- --cycles 100 --nodes 5 --seed 7
 * Needs root, iproute2 and iptables. Exit code 0 when the run passed, 1 when it failed,
 * 2 on a usage mistake, 3 when this machine cannot run it, 130 when interrupted.
 */

import { existsSync } from 'node:fs';
import { renderFigures } from '../test/nemesis/figures.ts';
import { NetLabError, netLabUnavailable } from '../test/nemesis/netlab.ts';
import { BUILT_MAIN } from '../test/nemesis/nodes.ts';
import { DEFAULTS, type NemesisOptions, runNemesis } from '../test/nemesis/run.ts';

const USAGE = `usage: npm run nemesis -- [--cycles N] [--nodes 3|5] [--seed S] [--hold MIN-MAX] [--calm MS]
                        [--clients-per-node K] [--op-timeout MS] [--keys-per-cycle K] [--tick-ms MS] [--built] [--keep]
  --cycles N          faults to inject, one per cycle (default ${DEFAULTS.cycles})
  --nodes 3|5         cluster size (default ${DEFAULTS.nodes}; the bridge fault needs 5)
  --seed S            seeds the fault schedule, the targets, hold times and the workload (default ${DEFAULTS.seed})
  --hold MIN-MAX      how long each fault is held, ms (default ${DEFAULTS.holdMs[0]}-${DEFAULTS.holdMs[1]})
  --calm MS           quiet time after each recovery (default ${DEFAULTS.calmMs})
  --clients-per-node  clients pinned to each node (default ${DEFAULTS.clientsPerNode})
  --op-timeout MS     deadline of one call; past it a write is indeterminate (default ${DEFAULTS.opTimeoutMs})
  --keys-per-cycle K  keys each cycle's operations use (default ${DEFAULTS.keysPerCycle})
  --tick-ms MS        passed to raftkv serve (its default when absent)
  --built             run the compiled CLI (bin/raftkv.mjs, as installed; npm run build first), not tsx
  --keep              keep data directories and logs even when the run passes`;

function usage(msg: string): never {
  console.error(`nemesis: ${msg}\n${USAGE}`);
  process.exit(2);
}

function parse(argv: readonly string[]): Omit<NemesisOptions, 'log'> {
  const o: { -readonly [K in keyof typeof DEFAULTS]: (typeof DEFAULTS)[K] } = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) usage(`${a} needs a value`);
      return v;
    };
    const int = (min: number, max = Number.MAX_SAFE_INTEGER): number => {
      const s = value();
      const v = Number(s);
      if (!/^\d+$/.test(s) || v < min || v > max)
        usage(`${a} must be an integer from ${min} to ${max}, not ${JSON.stringify(s)}`);
      return v;
    };
    switch (a) {
      case '--cycles':
        o.cycles = int(1, 100_000);
        break;
      case '--nodes': {
        const n = int(3, 5);
        if (n !== 3 && n !== 5) usage(`--nodes must be 3 or 5, not ${n}`);
        o.nodes = n;
        break;
      }
      case '--seed':
        o.seed = int(0, 2 ** 32 - 1);
        break;
      case '--hold': {
        const s = value();
        const m = /^(\d+)-(\d+)$/.exec(s);
        if (!m || Number(m[1]) > Number(m[2]) || Number(m[2]) > 600_000)
          usage(`--hold must be MIN-MAX in ms (MIN <= MAX <= 600000), not ${JSON.stringify(s)}`);
        o.holdMs = [Number(m[1]), Number(m[2])];
        break;
      }
      case '--calm':
        o.calmMs = int(0, 600_000);
        break;
      case '--clients-per-node':
        o.clientsPerNode = int(1, 64);
        break;
      case '--op-timeout':
        o.opTimeoutMs = int(50, 600_000);
        break;
      case '--keys-per-cycle':
        o.keysPerCycle = int(1, 10_000);
        break;
      case '--tick-ms':
        o.serveArgs = ['--tick-ms', String(int(1, 60_000))];
        break;
      case '--keep':
        o.keep = true;
        break;
      case '--built':
        o.built = true;
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        usage(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  return o;
}

const opts = parse(process.argv.slice(2));
if (opts.built && !existsSync(BUILT_MAIN)) {
  console.error(`nemesis: --built needs the compiled CLI (${BUILT_MAIN} is missing): run npm run build`);
  process.exit(2);
}
const why = netLabUnavailable();
if (why !== null) {
  console.error(`nemesis: cannot run on this machine: ${why}`);
  process.exit(3);
}

const ac = new AbortController();
let signals = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    signals++;
    console.log(`\nnemesis: ${sig}: healing and tearing down (again to exit at once)`);
    ac.abort();
    // A second signal exits now; the lab's exit handler still tears everything down.
    if (signals > 1) process.exit(130);
  });
}

console.log(
  `nemesis: ${opts.nodes} nodes, ${opts.cycles} cycles, seed ${opts.seed}, hold ${opts.holdMs[0]}-${opts.holdMs[1]} ms` +
    ` (the same schedule and targets again: npm run nemesis -- ${process.argv.slice(2).join(' ')})`,
);
try {
  const r = await runNemesis({ ...opts, log: (s) => console.log(s), signal: ac.signal });
  console.log(`\n${renderFigures(r.figures)}`);
  console.log(`\nfinal read-back: ${r.finalKeys} keys, ${r.finalPresent} with a value`);
  console.log(`history: ${r.verdict}`);
  if (r.kept) console.log(`data and logs: ${r.dir}`);
  if (ac.signal.aborted) {
    console.log('\nINTERRUPTED: the run was stopped; everything it started is gone');
    process.exit(130);
  }
  if (!r.ok) {
    console.log(`\nFAILED:\n${r.failures.join('\n')}`);
    process.exit(1);
  }
  console.log('\nPASSED');
  process.exit(0);
} catch (e) {
  console.error(`nemesis: ${e instanceof NetLabError ? e.message : ((e as Error).stack ?? String(e))}`);
  process.exit(ac.signal.aborted ? 130 : 1);
}
