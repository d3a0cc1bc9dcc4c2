// Storage benchmark: appends/s and fsyncs/s of FileStorage for 256-byte entries at batch
// sizes 1, 16 and 256, next to the raw fdatasync rate of the same disk in the same run.
// Usage: npm run bench:storage -- [--dir /tmp] [--duration 3] [--size 256] [--json]
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Entry } from '../src/raft/types.ts';
import { FileStorage } from '../src/storage/file-storage.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    duration: { type: 'string', default: '3' },
    size: { type: 'string', default: '256' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(values.duration) * 1000;
const size = Number(values.size);

interface Row {
  readonly case: string;
  readonly batch: number;
  readonly inflight: number;
  readonly appendsPerSec: number;
  readonly fsyncsPerSec: number;
  readonly persistsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly mbPerSec: number;
}

const pct = (sorted: Float64Array, q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
const round = (x: number, d = 0): number => Math.round(x * 10 ** d) / 10 ** d;

/** The floor: append `size` bytes and fdatasync, in a loop. */
function rawFdatasync(dir: string): Row {
  const file = join(dir, `raw-${process.pid}.log`);
  const fd = openSync(file, 'a');
  const buf = Buffer.alloc(size, 0x61);
  const lat: number[] = [];
  const start = performance.now();
  while (performance.now() - start < durationMs) {
    const t = performance.now();
    writeSync(fd, buf);
    fdatasyncSync(fd);
    lat.push(performance.now() - t);
  }
  const secs = (performance.now() - start) / 1000;
  closeSync(fd);
  unlinkSync(file);
  const sorted = Float64Array.from(lat).sort();
  return {
    case: 'raw write+fdatasync',
    batch: 1,
    inflight: 1,
    appendsPerSec: round(lat.length / secs),
    fsyncsPerSec: round(lat.length / secs),
    persistsPerSec: round(lat.length / secs),
    p50Ms: round(pct(sorted, 0.5), 3),
    p99Ms: round(pct(sorted, 0.99), 3),
    mbPerSec: round((lat.length * size) / secs / 1e6, 1),
  };
}

async function storageCase(
  dir: string,
  batch: number,
  inflight: number,
  sync: 'fdatasync' | 'dsync',
): Promise<Row> {
  const sub = await mkdtemp(join(dir, 'raftkv-bench-'));
  const storage = await FileStorage.open(sub, { nodeId: 'bench', clusterId: 'bench', sync });
  const data = new Uint8Array(size).fill(0x62);
  let next = 1;
  const makeBatch = (): Entry[] => {
    const es: Entry[] = [];
    for (let i = 0; i < batch; i++) es.push({ index: next++, term: 1, type: 0, data });
    return es;
  };
  const lat: number[] = [];
  const before = storage.stats();
  const start = performance.now();
  let persists = 0;
  // `inflight` independent writers, each awaiting its own persist before issuing the next.
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() - start < durationMs) {
        const t = performance.now();
        await storage.persist({ snapshot: null, entries: makeBatch(), hardState: null });
        lat.push(performance.now() - t);
        persists++;
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  const after = storage.stats();
  await storage.close();
  await rm(sub, { recursive: true, force: true });
  const sorted = Float64Array.from(lat).sort();
  return {
    case: `FileStorage batch=${batch} inflight=${inflight}${sync === 'dsync' ? ' (sync: dsync)' : ''}`,
    batch,
    inflight,
    appendsPerSec: round((after.appends - before.appends) / secs),
    fsyncsPerSec: round((after.fsyncs - before.fsyncs) / secs),
    persistsPerSec: round(persists / secs),
    p50Ms: round(pct(sorted, 0.5), 3),
    p99Ms: round(pct(sorted, 0.99), 3),
    mbPerSec: round((after.bytesWritten - before.bytesWritten) / secs / 1e6, 1),
  };
}

const loadBefore = loadavg()[0]!.toFixed(2);
const rows: Row[] = [rawFdatasync(values.dir)];
for (const [batch, inflight, sync] of [
  [1, 1, 'fdatasync'],
  [16, 1, 'fdatasync'],
  [256, 1, 'fdatasync'],
  [1, 64, 'fdatasync'],
  [16, 16, 'fdatasync'],
  [1, 1, 'dsync'],
  [16, 1, 'dsync'],
  [256, 1, 'dsync'],
] as const) {
  rows.push(await storageCase(values.dir, batch, inflight, sync));
}
rows.push(rawFdatasync(values.dir));

if (values.json) {
  for (const r of rows) console.log(JSON.stringify({ dir: values.dir, size, ...r }));
} else {
  console.log(
    `# ${size}-byte entries, ${values.duration}s per case, dir ${values.dir}, node ${process.version}, ` +
      `${cpus().length} CPUs, load average ${loadBefore} before / ${loadavg()[0]!.toFixed(2)} after`,
  );
  console.log('| case | appends/s | fsyncs/s | persists/s | p50 ms | p99 ms | MB/s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.case} | ${r.appendsPerSec} | ${r.fsyncsPerSec} | ${r.persistsPerSec} | ${r.p50Ms} | ${r.p99Ms} | ${r.mbPerSec} |`,
    );
  }
}
