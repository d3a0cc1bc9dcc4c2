// The simulator's own machinery: the commitment check sees acknowledgements that run ahead
// of the disk, and a paused node sees what it missed in the order Node's event loop gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Message } from '../../src/raft/types.ts';
import { SimRuntime } from '../../src/sim/env.ts';
import { runSeed } from '../../src/sim/run.ts';
import { Simulator } from '../../src/sim/simulator.ts';

test('the commitment check catches a storage that acknowledges before its fsync', async () => {
  const r = await runSeed(3, 2_000, { ackBeforeFsync: true, fsyncMin: 20, fsyncMax: 40 }, null);
  assert.equal(r.ok, false);
  assert.match(r.error?.message ?? '', /commits \d+, durable on only \d+ of voters/);
  const good = await runSeed(3, 2_000, { fsyncMin: 20, fsyncMax: 40 }, null);
  assert.equal(good.ok, true, good.error?.message);
});

test('a paused node holds timers, messages and immediates; on resume: timers, then I/O, then immediates', async () => {
  const sim = new Simulator({ seed: 5, voters: 3 });
  await sim.runFor(300);
  const n = sim.node('n1');
  const rt = new SimRuntime(sim, 'n1', n.inc);
  const order: string[] = [];
  const transport = n.transport;
  assert.ok(transport?.handlers);
  sim.pause('n1');
  transport.handlers = {
    onMessages: (b) => {
      if (b[0]?.term === 999) order.push('message');
    },
  };
  rt.setImmediate(() => order.push('immediate'));
  rt.setTimeout(() => order.push('timer'), 1);
  sim.send({ type: 'hb', from: 'n2', to: 'n1', term: 999, commit: 0, seq: 0 } as unknown as Message);
  await sim.runFor(100);
  assert.deepEqual(order, [], 'nothing runs while paused');
  sim.resume('n1');
  await sim.runFor(0.001);
  assert.deepEqual(order, ['timer', 'message', 'immediate']);
});
