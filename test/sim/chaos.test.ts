// The full-fault simulation of the product (RaftNode, KV state machine, KV handlers) over
// many seeds: every safety invariant after every event, recovery once faults stop, and a
// linearizable client history at the end.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkKvHistory } from '../../src/sim/history.ts';
import { replayCommand, runSeed } from '../../src/sim/run.ts';

const SEEDS = Number(process.env['RAFTKV_SIM_SEEDS'] ?? 300);
const LEASE_SEEDS = Number(process.env['RAFTKV_SIM_LEASE_SEEDS'] ?? 60);
const STEPS = 6_000;

function report(seed: number, message: string, trace: readonly string[], extra = ''): string {
  return `seed ${seed}: ${message}\n${trace.slice(-40).join('\n')}\nreplay: ${replayCommand(seed, STEPS, extra)}`;
}

test(`chaos: ${SEEDS} seeds with crashes, crash loops (also right after forwards), torn writes, pauses, partitions (one-way, non-transitive), drops, held and redelivered messages, clock drift, membership changes and transfers (also with a late TimeoutNow)`, async () => {
  let ops = 0;
  let faults = 0;
  let localReads = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = await runSeed(seed, STEPS, {}, checkKvHistory);
    if (!r.ok) assert.fail(report(seed, r.error?.message ?? 'failed', r.error?.trace ?? []));
    ops += r.ops;
    localReads += r.localReads;
    faults += Object.values(r.stats).reduce((a, b) => a + b, 0);
  }
  assert.ok(ops > SEEDS * 40, `clients completed ${ops} operations`);
  assert.ok(faults > SEEDS * 8, `${faults} faults injected`);
  assert.ok(localReads > SEEDS, `${localReads} local reads checked`);
});

test(`chaos with lease reads (${LEASE_SEEDS} seeds)`, async () => {
  for (let seed = 1; seed <= LEASE_SEEDS; seed++) {
    const r = await runSeed(seed, STEPS, { readOnly: 'lease' }, checkKvHistory);
    if (!r.ok) assert.fail(report(seed, r.error?.message ?? 'failed', r.error?.trace ?? [], '--lease'));
  }
});

/** Runs seeds 1..40 with a deliberately wrong option until one fails; asserts the failure is
 * the one `expected` describes. A checker that cannot fail here would prove nothing. */
async function assertCaught(
  options: Parameters<typeof runSeed>[2],
  expected: RegExp,
  what: string,
): Promise<void> {
  for (let seed = 1; seed <= 40; seed++) {
    const r = await runSeed(seed, STEPS, options, checkKvHistory);
    if (!r.ok) {
      assert.match(r.error?.message ?? '', expected, `seed ${seed}`);
      return;
    }
  }
  assert.fail(`no seed of 1..40 failed: ${what}`);
}

test('the checker catches stale reads: gets sent as local reads through the request path fail some seed', () =>
  assertCaught(
    { unsafeLocalReads: true },
    /not linearizable/,
    'local reads on followers and deposed leaders must produce a stale read somewhere',
  ));

test('the local-read check catches a local get that matches no prefix its node applied', () =>
  assertCaught(
    { misroutedLocalReads: true },
    /local read of k\d on n\d+ \(applied \d+\) returned/,
    'local gets answered from another node at another applied index must be caught somewhere',
  ));

test('the history check catches a second apply of a write retried after its session was evicted', () =>
  assertCaught(
    { legacySessions: true, maxSessions: 3 },
    /not linearizable/,
    'a write applied again after its session expired must break the history somewhere',
  ));

test('a run is deterministic: the same seed gives the very same event trace', async () => {
  const a = await runSeed(77, 3_000, {}, null);
  const b = await runSeed(77, 3_000, {}, null);
  const c = await runSeed(78, 3_000, {}, null);
  assert.equal(a.traceHash, b.traceHash);
  assert.deepEqual(a, b);
  assert.notEqual(a.traceHash, c.traceHash, 'the hash tells runs apart');
});
