// Kills a child process that persists with fsync at random moments (SIGKILL) and checks
// that every acknowledged write survives and the log is consistent. More rounds:
// `npm run soak:storage` (or RAFTKV_CRASH_ROUNDS / RAFTKV_CRASH_SEED here).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { crashRounds } from './crash-harness.ts';
import { tempDir } from './helpers.ts';

const rounds = Number(process.env['RAFTKV_CRASH_ROUNDS'] ?? 12);
const seed = Number(process.env['RAFTKV_CRASH_SEED'] ?? Date.now() % 1_000_000);

test(`SIGKILL at random moments loses nothing acknowledged (3 x ${rounds} rounds, seed ${seed})`, async (t) => {
  const dirs = await Promise.all([
    tempDir('raftkv-crash-'),
    tempDir('raftkv-crash-'),
    tempDir('raftkv-crash-'),
  ]);
  try {
    // Three independent chains in parallel (fdatasync; O_DSYNC through the thread pool; O_DSYNC
    // written inline on the main thread, as a follower writes): more kills for the same wall time.
    // Every chain runs to its end before the directories go, even when one fails.
    const settled = await Promise.allSettled(
      dirs.map(({ dir }, i) =>
        crashRounds({
          dir,
          rounds,
          seed: seed + i,
          inflight: i === 0 ? 1 : 8,
          sync: (['fdatasync', 'dsync', 'dsync-inline'] as const)[i]!,
        }),
      ),
    );
    const results = settled.map((r) => {
      if (r.status === 'rejected') {
        // Kill moments are wall-clock, so a rerun replays the workloads and the kill schedule, not the timing.
        const why = r.reason instanceof Error ? r.reason.message : String(r.reason);
        throw new Error(`${why}\nrerun: RAFTKV_CRASH_SEED=${seed} node scripts/run-tests.mjs storage/crash`, {
          cause: r.reason,
        });
      }
      return r.value;
    });
    const all = results.flat();
    const acked = all.reduce((s, r) => s + r.acked, 0);
    const beyond = all.filter((r) => r.recovered > r.acked).length;
    t.diagnostic(
      `${all.length} kills, ${acked} acknowledged operations all recovered; ${beyond} rounds also kept unacknowledged ones`,
    );
    assert.ok(acked > 0, 'the children made progress');
  } finally {
    await Promise.all(dirs.map((d) => d.dispose()));
  }
});
