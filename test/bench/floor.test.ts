// The put floor of bench:etcd: real durable writes and real loopback round trips, small counts.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  measureDurableWrites,
  measureLoopbackRtt,
  measurePutFloor,
  percentiles,
} from '../../bench/lib/floor.ts';

describe('put floor', () => {
  it('percentiles picks the samples at p50 and p99, and refuses no samples', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
    assert.deepEqual(percentiles(xs), { p50Ms: 51, p99Ms: 100, samples: 100 });
    assert.deepEqual(percentiles([7]), { p50Ms: 7, p99Ms: 7, samples: 1 });
    assert.throws(() => percentiles([]), RangeError);
  });

  it('times durable writes in both modes and leaves nothing behind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'floor-test-'));
    try {
      for (const mode of ['dsync', 'fdatasync'] as const) {
        const p = measureDurableWrites(dir, mode, 20, 320);
        assert.equal(p.samples, 20);
        assert.ok(
          p.p50Ms > 0 && p.p50Ms <= p.p99Ms && Number.isFinite(p.p99Ms),
          `${mode}: ${JSON.stringify(p)}`,
        );
      }
      assert.deepEqual(readdirSync(dir), []);
      assert.throws(() => measureDurableWrites(dir, 'dsync', 0, 320), RangeError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('times loopback round trips to an echo server in a child process', async () => {
    const p = await measureLoopbackRtt(50);
    assert.equal(p.samples, 50);
    assert.ok(p.p50Ms > 0 && p.p50Ms <= p.p99Ms, JSON.stringify(p));
    await assert.rejects(measureLoopbackRtt(0), RangeError);
  });

  it('the floor is two durable writes (the cheaper mode) plus two round trips', async () => {
    const f = await measurePutFloor({ writes: 10, roundTrips: 20 });
    const disk = Math.min(f.dsyncWrite.p50Ms, f.fdatasyncAppend.p50Ms);
    assert.equal(f.floorMs, 2 * disk + 2 * f.loopbackRtt.p50Ms);
    assert.equal(f.recordBytes, 320);
  });
});
