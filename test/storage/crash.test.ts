// Kills a child process that persists with fsync at random moments (SIGKILL) and checks
// that every acknowledged write survives and the log is consistent. More rounds:
// `npm run soak:storage` (or RAFTKV_CRASH_ROUNDS / RAFTKV_CRASH_SEED here).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { LogView } from '../../src/storage/log-view.ts';
import { crashRounds, digest, WORKLOAD, whichOperation } from './crash-harness.ts';
import { tempDir } from './helpers.ts';
import { Workload } from './workload.ts';

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

// Regression: the child's stdout is a non-blocking Unix socket that holds ~280 short lines; when
// the parent stopped reading (busy verifying another chain), later acks waited inside the child,
// which went on, and died with it: the recovered state was ~130 operations past acked + inflight.
// Here the parent sleeps for ~1000 of the child's acks without reading, then kills it.
test(`the ack count holds when the parent stops reading before the kill (seed ${seed})`, async (t) => {
  const { dir, dispose } = await tempDir('raftkv-crash-');
  try {
    const results = await crashRounds({
      dir,
      rounds: 2,
      seed,
      inflight: 8,
      sync: 'dsync',
      parentStall: { afterAcks: 20, acks: 1000, maxMs: 3000 },
    });
    t.diagnostic(
      results
        .map((r) => `stalled ${r.parentStallMs} ms: acked ${r.acked}, recovered ${r.recovered}`)
        .join('; '),
    );
    assert.ok(
      results.every((r) => r.parentStallMs > 0 && r.acked >= 20),
      'every round stalled the parent with the child running',
    );
  } finally {
    await dispose();
  }
});

test('whichOperation names the operation that left a state, or null', () => {
  const start = new LogView().state();
  const w = new Workload(start, 7, WORKLOAD);
  for (let n = 0; n < 40; n++) w.next();
  const at40 = w.state();
  const n = whichOperation(start, 7, at40, 100);
  assert.ok(n !== null && n <= 40, `found ${n}`);
  const again = new Workload(start, 7, WORKLOAD);
  for (let k = 0; k < n; k++) again.next();
  assert.equal(digest(again.state()), digest(at40));
  assert.equal(whichOperation(start, 7, at40, n - 1), null, 'not within a shorter search');
  assert.equal(whichOperation(start, 8, at40, 100), null, 'another seed never reaches it');
});
