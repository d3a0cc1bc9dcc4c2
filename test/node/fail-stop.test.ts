// Fail-stop: a write or fsync that fails stops the node for good. It reports the failure
// once (RaftNodeOptions.onFatal, which `raftkv serve` turns into a non-zero exit) and every
// call fails at once with that error, reads and membership changes as well as proposals:
// a node that kept answering from frozen state would be worse than one that is down.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRequest, type KvResult, KvStateMachine } from '../../src/kv/state-machine.ts';
import { RejectedError } from '../../src/node/errors.ts';
import { RaftNode } from '../../src/node/raft-node.ts';
import { ConfChangeType, type DurableState, type Snapshot } from '../../src/raft/types.ts';
import type { PersistBatch, RaftStorage, StorageStats } from '../../src/storage/contract.ts';
import { StorageIOError } from '../../src/storage/errors.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../../src/transport/memory.ts';
import { waitFor } from '../support/wait.ts';

/** MemoryStorage whose writes fail, as a disk does, once `failing` is set. */
class FailingStorage implements RaftStorage {
  private readonly inner = new MemoryStorage();
  failing = false;
  persists = 0;
  initialState(): DurableState {
    return this.inner.initialState();
  }
  persist(batch: PersistBatch): Promise<void> {
    this.persists++;
    if (this.failing) {
      const cause = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
      return Promise.reject(new StorageIOError('/data/n1/wal/0000000000000001.wal', 'write', { cause }));
    }
    return this.inner.persist(batch);
  }
  compact(snapshot: Snapshot, retain?: number): Promise<void> {
    return this.inner.compact(snapshot, retain);
  }
  stats(): StorageStats {
    return this.inner.stats();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const put = (key: string, value: string) =>
  encodeRequest({ client: 0, seq: 0, cmd: { kind: 'put', key, value } });

test('a failed write stops the node: reported once, and every later call fails at once with it', async () => {
  const storage = new FailingStorage();
  const fatals: Error[] = [];
  const node: RaftNode<KvResult | null> = await RaftNode.start({
    id: 'n1',
    storage,
    transport: new MemoryNetwork().transport('n1'),
    stateMachine: new KvStateMachine(),
    bootstrap: ['n1'],
    tickMs: 10,
    onFatal: (e) => fatals.push(e),
  });
  try {
    await waitFor('leadership', () => node.role === 'leader');
    await node.propose(put('a', '1'));
    assert.equal(node.failure, null);
    storage.failing = true;
    await assert.rejects(node.propose(put('a', '2')), StorageIOError, 'the write that failed');
    await waitFor('the failure to be reported', () => fatals.length > 0);
    assert.equal(fatals.length, 1);
    assert.ok(fatals[0] instanceof StorageIOError);
    assert.match(fatals[0].message, /wal\/0000000000000001\.wal/, 'names the file');
    assert.match(fatals[0].message, /EIO/, 'names the error');
    assert.equal(node.failure, fatals[0]);
    const before = storage.persists;
    // Every call fails at once, with the same error: no hidden retry, no frozen answers.
    await assert.rejects(node.propose(put('a', '3')), (e) => e === fatals[0]);
    await assert.rejects(node.read(), (e) => e === fatals[0]);
    await assert.rejects(
      node.changeMembership({ type: ConfChangeType.AddLearner, node: 'n2' }),
      (e) => e === fatals[0],
    );
    assert.throws(
      () => node.transferLeadership('n2'),
      (e) => e === fatals[0],
    );
    // And the node does no more work: no more writes are attempted.
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(storage.persists, before, 'no write after the failure');
    assert.equal(fatals.length, 1, 'reported once');
  } finally {
    await node.stop();
  }
});

test('an entry above maxEntryBytes is refused for good (RejectedError), not as a retryable no-leader', async () => {
  const node: RaftNode<KvResult | null> = await RaftNode.start({
    id: 'n1',
    storage: new MemoryStorage(),
    transport: new MemoryNetwork().transport('n1'),
    stateMachine: new KvStateMachine(),
    bootstrap: ['n1'],
    tickMs: 10,
    raft: { maxEntryBytes: 1024 },
  });
  try {
    await waitFor('leadership', () => node.role === 'leader');
    await assert.rejects(node.propose(new Uint8Array(4096)), (e: unknown) => {
      assert.ok(e instanceof RejectedError, String(e));
      assert.equal(e.reason, 'entry-too-large');
      assert.equal(e.retryable, false);
      return true;
    });
  } finally {
    await node.stop();
  }
});
