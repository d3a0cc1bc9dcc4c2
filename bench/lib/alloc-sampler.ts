// Preload module for `npm run profile:alloc` (node --import .../alloc-sampler.js): V8's sampling heap
// profiler, counting every sampled allocation including the objects that minor and major GCs collect
// since then, so it shows where the bytes a put allocates come from (what the scavenger has to
// handle), not just what is still live.
//
// Invariants: nothing runs until the first SIGUSR2; that starts sampling, the second one stops it
// and writes `alloc-<pid>.heapprofile` (Chrome DevTools format) into $RAFTKV_ALLOC_DIR, synchronously,
// before the next signal is taken. Without $RAFTKV_ALLOC_DIR the module does nothing.

import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env['RAFTKV_ALLOC_DIR'];
if (dir !== undefined && dir !== '') {
  const session = new Session();
  session.connect();
  let sampling = false;
  process.on('SIGUSR2', () => {
    if (!sampling) {
      sampling = true;
      session.post('HeapProfiler.enable');
      session.post('HeapProfiler.startSampling', {
        samplingInterval: Number(process.env['RAFTKV_ALLOC_INTERVAL'] ?? 8192),
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      return;
    }
    sampling = false;
    // In-process sessions answer synchronously: the file is written before this handler returns.
    session.post('HeapProfiler.stopSampling', (err, r) => {
      if (err === null)
        writeFileSync(join(dir, `alloc-${process.pid}.heapprofile`), JSON.stringify(r.profile));
      else process.stderr.write(`alloc-sampler: ${err.message}\n`);
    });
  });
}
