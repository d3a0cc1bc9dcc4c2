// A follower that was down for thousands of writes catches up by snapshot (the leader
// compacted its log past what the follower has), with real processes and disks.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProcCluster, rpc } from './cluster.ts';

test('a follower restarted after thousands of writes catches up by snapshot', async () => {
  const c = await ProcCluster.start(3, ['--snapshot-entries', '300']);
  try {
    const l = await c.leader();
    const f = c.ids.find((id) => id !== l) as string;
    await c.kill(f);
    const total = 3_000;
    let next = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        for (let attempt = 0; ; attempt++) {
          try {
            await rpc(c.client(l), 'Put', { key: `snap/${i}`, value: `v${i}` }, 5_000);
            break;
          } catch (err) {
            if (attempt > 20) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 32 }, () => worker()));
    const st = await rpc(c.client(l), 'GetClusterStatus', {});
    const target = Number(st['commit_index']);
    c.startNode(f);
    const end = Date.now() + 60_000;
    for (;;) {
      try {
        const fs = await rpc(c.client(f), 'GetClusterStatus', {}, 1_000);
        if (Number(fs['applied_index']) >= target) break;
      } catch {
        // starting
      }
      if (Date.now() > end) assert.fail(`follower did not catch up; logs:\n${c.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const i of [0, 1, 1234, total - 1]) {
      const g = await rpc(c.client(f), 'Get', { key: `snap/${i}`, local: true });
      assert.equal(g['value'], `v${i}`);
    }
    const logs = (c.logs.get(f) ?? []).join('\n');
    assert.match(logs, /installed snapshot from leader/, 'the follower caught up through a snapshot');
  } finally {
    await c.destroy();
  }
});
