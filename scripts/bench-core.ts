/**
 * CPU cost of the pure Raft core per replicated entry: three cores in one process pass
 * messages directly (no I/O, storage "durable" at once), a leader proposes entries of
 * `--size` bytes in batches of `--batch` per Ready, until `--entries` are committed on all.
 *   npm run bench:core -- [--entries 200000] [--batch 64] [--size 256]
 */
import { bootstrapState, Raft } from '../src/raft/raft.ts';
import { SeededRng } from '../src/raft/rng.ts';
import type { Message } from '../src/raft/types.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const total = opt('entries', 200_000);
const batch = opt('batch', 64);
const size = opt('size', 256);

const ids = ['a', 'b', 'c'];
const nodes = new Map(
  ids.map((id, i) => [id, new Raft({ id, rng: new SeededRng(i + 1), maxInflight: 64 }, bootstrapState(ids))]),
);
const queue: Message[] = [];
let applied = 0;
function pump(): void {
  for (let guard = 0; guard < 1000; guard++) {
    let any = false;
    for (const [id, r] of nodes) {
      if (!r.hasReady()) continue;
      any = true;
      const rd = r.ready();
      for (const m of rd.eagerMessages) queue.push(m);
      for (const m of rd.messages) queue.push(m);
      if (id === 'a') applied += rd.committedEntries.length;
      r.advance(rd);
    }
    while (queue.length > 0) {
      const m = queue.shift() as Message;
      nodes.get(m.to)?.step(m);
      any = true;
    }
    if (!any) return;
  }
}
// Elect a.
const a = nodes.get('a') as Raft;
for (let i = 0; i < 40 && a.currentRole !== 'leader'; i++) {
  a.tick();
  pump();
}
if (a.currentRole !== 'leader') throw new Error('no leader');
pump();
const payload = new Uint8Array(size);
const start = applied;
const t0 = process.cpuUsage();
const w0 = performance.now();
let proposed = 0;
while (proposed < total) {
  for (let i = 0; i < batch && proposed < total; i++, proposed++) a.propose(payload);
  pump();
}
while (applied - start < total) pump();
const cpu = process.cpuUsage(t0);
const wall = performance.now() - w0;
const us = (cpu.user + cpu.system) / total;
console.log(
  JSON.stringify({
    entries: total,
    batch,
    size,
    cpu_us_per_entry_all_3_cores: Number(us.toFixed(3)),
    wall_ms: Math.round(wall),
  }),
);
