// Storage soak: many more SIGKILL rounds than CI runs, on several chains in parallel.
// Usage: npm run soak:storage -- [--rounds 300] [--chains 4] [--seed N] [--max-run-ms 300]
// On a failure the data directory is kept and the command to replay the seed is printed.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { crashRounds } from '../test/storage/crash-harness.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '300' },
    chains: { type: 'string', default: '4' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    'max-run-ms': { type: 'string', default: '300' },
  },
});
const rounds = Number(values.rounds);
const chains = Number(values.chains);
const seed = Number(values.seed);
const maxRunMs = Number(values['max-run-ms']);
const started = performance.now();
let kills = 0;
let acked = 0;
let failed = false;
await Promise.all(
  Array.from({ length: chains }, async (_, i) => {
    const dir = await mkdtemp(join(tmpdir(), 'raftkv-soak-'));
    const chainSeed = seed + i;
    const inflight = [1, 4, 16, 64][i % 4]!;
    try {
      await crashRounds({
        dir,
        rounds,
        seed: chainSeed,
        inflight,
        maxRunMs,
        sync: i % 2 === 0 ? 'fdatasync' : 'dsync',
        log: (line) => {
          kills++;
          const m = /acked (\d+)/.exec(line);
          acked += Number(m?.[1] ?? 0);
          if (kills % 50 === 0) console.log(`${kills} kills, ${acked} acknowledged operations verified`);
        },
      });
      await rm(dir, { recursive: true, force: true });
    } catch (err) {
      failed = true;
      console.error(`chain ${i} FAILED (inflight ${inflight}); data directory kept at ${dir}`);
      console.error(String(err));
      console.error(`replay: npm run soak:storage -- --chains ${i + 1} --seed ${seed} --rounds ${rounds}`);
    }
  }),
);
const secs = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `${failed ? 'FAILED' : 'ok'}: ${kills} kills, ${acked} acknowledged operations verified in ${secs}s (seed ${seed})`,
);
process.exit(failed ? 1 : 0);
