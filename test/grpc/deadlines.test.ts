// Deadlines: one shared timer serves every call's deadline, in any order of arrival.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Deadlines, type Expirable } from '../../src/grpc/deadlines.ts';
import { waitFor } from '../support/wait.ts';

class FakeCall implements Expirable {
  expiredAt: number | null = null;
  constructor(readonly dueAt: number) {}
  expire(): void {
    this.expiredAt = performance.now();
  }
}

const until = (cond: () => boolean, ms = 5000): Promise<true> => waitFor('the condition', () => cond(), ms);

describe('Deadlines', () => {
  it('expires each call no earlier than its deadline, also when a later arrival is due sooner', async () => {
    const d = new Deadlines();
    const now = performance.now();
    const late = new FakeCall(now + 300);
    const soon = new FakeCall(now + 40);
    const mid = new FakeCall(now + 120);
    d.add(late, late.dueAt);
    d.add(soon, soon.dueAt); // must re-arm the timer earlier
    d.add(mid, mid.dueAt);
    assert.equal(d.size, 3);
    await until(() => soon.expiredAt !== null);
    assert.ok(soon.expiredAt! >= soon.dueAt);
    assert.equal(late.expiredAt, null);
    await until(() => mid.expiredAt !== null && late.expiredAt !== null);
    assert.ok(mid.expiredAt! >= mid.dueAt);
    assert.ok(late.expiredAt! >= late.dueAt);
    assert.equal(d.size, 0);
  });

  it('never expires a call that was deleted, and expires the rest', async () => {
    const d = new Deadlines();
    const now = performance.now();
    const calls = Array.from({ length: 200 }, (_, i) => new FakeCall(now + 20 + (i % 7) * 10));
    for (const c of calls) d.add(c, c.dueAt);
    for (let i = 0; i < calls.length; i += 2) d.delete(calls[i]!);
    assert.equal(d.size, 100);
    await until(() => d.size === 0);
    await sleep(120);
    for (const [i, c] of calls.entries()) assert.equal(c.expiredAt === null, i % 2 === 0, `call ${i}`);
  });

  it('stop() cancels the timer', async () => {
    const d = new Deadlines();
    const c = new FakeCall(performance.now() + 20);
    d.add(c, c.dueAt);
    d.stop();
    await sleep(80);
    assert.equal(c.expiredAt, null);
  });
});
