// RaftNode takes its scheduler, clocks and randomness from the injected Runtime: with a
// manual runtime nothing happens until the test advances it, and deadlines are read on its clock.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { TimeoutError } from '../../src/node/errors.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import type { Runtime, TimerHandle } from '../../src/node/runtime.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';

/** A runtime that runs nothing by itself: `advance` moves its clocks and fires what is due. */
class ManualRuntime implements Runtime {
  t = 0;
  wall = 1_000_000;
  randomCalls = 0;
  immediates: (() => void)[] = [];
  timers = new Map<number, { at: number; every: number; cb: () => void }>();
  private ids = 0;
  setImmediate(cb: () => void): void {
    this.immediates.push(cb);
  }
  setInterval(cb: () => void, ms: number): TimerHandle {
    const id = ++this.ids;
    this.timers.set(id, { at: this.t + ms, every: ms, cb });
    return { id } as TimerHandle;
  }
  setTimeout(cb: () => void, ms: number): TimerHandle {
    const id = ++this.ids;
    this.timers.set(id, { at: this.t + ms, every: 0, cb });
    return { id } as TimerHandle;
  }
  clearTimer(h: TimerHandle): void {
    this.timers.delete((h as unknown as { id: number }).id);
  }
  now(): number {
    return this.t;
  }
  dateNow(): number {
    return this.wall + this.t;
  }
  randomInt(max: number): number {
    this.randomCalls++;
    return 7 % max;
  }
  /** Moves time by `ms`, firing due timers, then runs immediates (and the microtasks between them). */
  async advance(ms: number): Promise<void> {
    this.t += ms;
    for (const [id, tm] of [...this.timers]) {
      if (tm.at > this.t) continue;
      if (tm.every > 0) tm.at = this.t + tm.every;
      else this.timers.delete(id);
      tm.cb();
    }
    for (let rounds = 0; rounds < 100 && this.immediates.length > 0; rounds++) {
      const run = this.immediates;
      this.immediates = [];
      for (const cb of run) cb();
      await new Promise((r) => setImmediate(r));
    }
  }
}

test('RaftNode runs on the injected runtime: its timers, clock, deadlines and seed', async () => {
  const rt = new ManualRuntime();
  const net = new MemoryNetwork();
  const sm = new KvStateMachine();
  const node = await RaftNode.start<KvResult | null>({
    id: 'n1',
    storage: new MemoryStorage(),
    transport: net.transport('n1'),
    stateMachine: sm,
    bootstrap: ['n1'],
    tickMs: 10,
    runtime: rt,
  });
  try {
    assert.ok(rt.randomCalls >= 1, 'the election seed and start nonces come from the runtime');
    assert.equal(rt.timers.size, 1, 'the tick interval is a runtime timer');
    // Real time passes, virtual time does not: no tick, no election.
    await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setImmediate(r));
    assert.equal(node.role, 'follower');
    const role = (): string => node.role;
    for (let i = 0; i < 40 && role() !== 'leader'; i++) await rt.advance(10);
    assert.equal(role(), 'leader', 'ticks on the virtual clock elect the single voter');
    const put = encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key: 'k', value: 'v' } });
    const p = node.propose(put);
    await rt.advance(0);
    const applied = await p;
    assert.equal(sm.get('k')?.value, 'v');
    assert.ok(applied.index > 0);
    // A deadline is read on the runtime's wall clock: a proposal that cannot commit (the
    // node is paused between advances) expires when virtual time passes it.
    const late = node.propose(put, rt.dateNow() + 25);
    const outcome = late.then(
      () => 'applied',
      (e: unknown) => (e instanceof TimeoutError ? 'timeout' : String(e)),
    );
    // Expired on the next tick at or after the deadline, before the drive that would apply it.
    rt.t += 30;
    for (const tm of rt.timers.values()) if (tm.at <= rt.t) tm.cb();
    assert.equal(await outcome, 'timeout');
  } finally {
    const stopping = node.stop();
    await rt.advance(0);
    await stopping;
  }
});
