/**
 * The RaftStorage contract (src/storage/contract.ts), as tests that run against any
 * implementation: `storageConformance('FileStorage', harness)` registers them.
 */
import { strict as assert } from 'node:assert';
import { describe as suite, test } from 'node:test';
import type { RaftStorage } from '../../src/storage/contract.ts';
import { SnapshotOutOfDateError, StorageClosedError, StorageUsageError } from '../../src/storage/errors.ts';
import { MemoryStorage } from '../../src/storage/memory-storage.ts';
import { describe, ent, ents, hs, snap } from './helpers.ts';
import { run, Workload } from './workload.ts';

export interface StorageHarness {
  /** A fresh, empty storage. */
  open(): Promise<RaftStorage>;
  /** Closes `s` and opens the same storage again, as a restarted node would. */
  reopen(s: RaftStorage): Promise<RaftStorage>;
  /** Releases everything (temp directories). */
  dispose(): Promise<void>;
}

const NO_BATCH = { snapshot: null, entries: [], hardState: null } as const;

export function storageConformance(name: string, makeHarness: () => Promise<StorageHarness>): void {
  suite(`RaftStorage conformance: ${name}`, () => {
    /** Runs `body` with a fresh storage; checks the state survives a reopen; cleans up. */
    async function withStorage(body: (s: RaftStorage) => Promise<RaftStorage | undefined>): Promise<void> {
      const h = await makeHarness();
      try {
        let s = await h.open();
        s = (await body(s)) ?? s;
        const before = describe(s.initialState());
        s = await h.reopen(s);
        assert.deepEqual(describe(s.initialState()), before, 'reopen yields the same state');
        await s.close();
      } finally {
        await h.dispose();
      }
    }

    test('an empty storage has no snapshot, no entries and a zero hard state', () =>
      withStorage(async (s) => {
        assert.deepEqual(describe(s.initialState()), {
          hardState: { term: 0, vote: '', commit: 0 },
          snapshot: null,
          entries: [],
        });
        return undefined;
      }));

    test('appends are kept in order, across batches', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 3, 1) });
        await s.persist({ ...NO_BATCH, entries: ents(4, 6, 2) });
        assert.deepEqual(
          describe(s.initialState()),
          describe({ hardState: hs(0, 0), snapshot: null, entries: [...ents(1, 3, 1), ...ents(4, 6, 2)] }),
        );
        return undefined;
      }));

    test('an overlapping append truncates the conflicting suffix (§5.3)', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 5, 1) });
        await s.persist({ ...NO_BATCH, entries: ents(3, 4, 2) });
        assert.deepEqual(
          s.initialState().entries.map((e) => `${e.index}/${e.term}`),
          ['1/1', '2/1', '3/2', '4/2'],
        );
        // Rewriting from the very first index replaces everything.
        await s.persist({ ...NO_BATCH, entries: ents(1, 1, 3) });
        assert.deepEqual(
          s.initialState().entries.map((e) => `${e.index}/${e.term}`),
          ['1/3'],
        );
        return undefined;
      }));

    test('a batch that leaves a gap, or is not contiguous, is rejected and changes nothing', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 2, 1) });
        await assert.rejects(s.persist({ ...NO_BATCH, entries: ents(4, 5, 1) }), StorageUsageError);
        await assert.rejects(s.persist({ ...NO_BATCH, entries: [ent(3, 1), ent(5, 1)] }), StorageUsageError);
        await assert.rejects(
          s.persist({ ...NO_BATCH, entries: [ent(3, 0)] }),
          StorageUsageError,
          'term goes down',
        );
        await assert.rejects(
          s.persist({ ...NO_BATCH, hardState: hs(1, 3) }),
          StorageUsageError,
          'commit > last',
        );
        assert.equal(s.initialState().entries.length, 2);
        await s.persist({ ...NO_BATCH, entries: ents(3, 3, 1) });
        assert.equal(s.initialState().entries.length, 3);
        return undefined;
      }));

    test('hard state is stored with the entries of the same batch', () =>
      withStorage(async (s) => {
        await s.persist({ snapshot: null, entries: ents(1, 2, 1), hardState: hs(1, 1, 'n2') });
        await s.persist({ ...NO_BATCH, hardState: hs(2, 2, '') });
        assert.deepEqual(s.initialState().hardState, hs(2, 2, ''));
        await s.persist({ ...NO_BATCH, hardState: hs(3, 2, 'nœud-ü') });
        assert.deepEqual(s.initialState().hardState, hs(3, 2, 'nœud-ü'));
        return undefined;
      }));

    test('entry types and empty, large and binary payloads round-trip', () =>
      withStorage(async (s) => {
        const big = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
        await s.persist({
          ...NO_BATCH,
          entries: [
            { index: 1, term: 1, type: 0, data: new Uint8Array(0) },
            {
              index: 2,
              term: 1,
              type: 1,
              data: new TextEncoder().encode('{"type":"add-voter","node":"n4"}'),
            },
            { index: 3, term: 1, type: 0, data: big },
          ],
        });
        const e = s.initialState().entries;
        assert.equal(e[0]!.data.length, 0);
        assert.equal(e[1]!.type, 1);
        assert.deepEqual(Buffer.from(e[2]!.data), Buffer.from(big));
        return undefined;
      }));

    test('a snapshot beyond the log replaces it (InstallSnapshot, §7)', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 3, 1) });
        await s.persist({ snapshot: snap(10, 2), entries: ents(11, 12, 2), hardState: hs(2, 10, 'n1') });
        const st = s.initialState();
        assert.equal(st.snapshot?.meta.index, 10);
        assert.deepEqual(st.snapshot?.meta.conf, { voters: ['n1', 'n2', 'n3'], learners: [] });
        assert.deepEqual(
          st.entries.map((e) => e.index),
          [11, 12],
        );
        assert.deepEqual(st.hardState, hs(2, 10, 'n1'));
        return undefined;
      }));

    test('a snapshot that matches the log keeps the entries after it', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 6, 1) });
        await s.persist({ ...NO_BATCH, snapshot: snap(4, 1) });
        assert.deepEqual(
          s.initialState().entries.map((e) => e.index),
          [5, 6],
        );
        return undefined;
      }));

    test('a snapshot that disagrees with the log at its index drops the whole log', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 6, 1) });
        await s.persist({ ...NO_BATCH, snapshot: snap(4, 2), hardState: hs(2, 4) });
        assert.deepEqual(s.initialState().entries, []);
        assert.equal(s.initialState().snapshot?.meta.term, 2);
        await s.persist({ ...NO_BATCH, entries: ents(5, 5, 2) });
        assert.deepEqual(
          s.initialState().entries.map((e) => e.index),
          [5],
        );
        return undefined;
      }));

    test('compact stores the snapshot and drops the entries it covers', () =>
      withStorage(async (s) => {
        await s.persist({ snapshot: null, entries: ents(1, 10, 1), hardState: hs(1, 8) });
        await s.compact(snap(5, 1));
        let st = s.initialState();
        assert.equal(st.snapshot?.meta.index, 5);
        assert.deepEqual(
          st.entries.map((e) => e.index),
          [6, 7, 8, 9, 10],
        );
        await s.compact(snap(8, 1), 2);
        st = s.initialState();
        assert.equal(st.snapshot?.meta.index, 8);
        assert.deepEqual(
          st.entries.map((e) => e.index),
          [9, 10],
        );
        assert.deepEqual(st.hardState, hs(1, 8));
        await assert.rejects(s.compact(snap(7, 1)), SnapshotOutOfDateError);
        await assert.rejects(s.compact(snap(11, 1)), StorageUsageError);
        await assert.rejects(s.compact(snap(9, 5)), StorageUsageError, 'wrong term');
        await assert.rejects(s.persist({ ...NO_BATCH, snapshot: snap(3, 1) }), SnapshotOutOfDateError);
        await assert.rejects(
          s.persist({ ...NO_BATCH, entries: ents(8, 8, 1) }),
          StorageUsageError,
          'into the snapshot',
        );
        return undefined;
      }));

    test('concurrent persists take effect and resolve in call order (group commit)', () =>
      withStorage(async (s) => {
        const resolved: number[] = [];
        const all: Promise<void>[] = [];
        for (let i = 1; i <= 200; i++) {
          // Every 50th batch rewrites its predecessor, so order matters.
          const entries = i % 50 === 0 ? [ent(i - 1, 2), ent(i, 2)] : [ent(i, i >= 50 ? 2 : 1)];
          all.push(
            s
              .persist({ snapshot: null, entries, hardState: hs(2, Math.max(0, i - 3)) })
              .then(() => void resolved.push(i)),
          );
        }
        await Promise.all(all);
        assert.deepEqual(
          resolved,
          Array.from({ length: 200 }, (_, k) => k + 1),
        );
        const st = s.initialState();
        assert.equal(st.entries.length, 200);
        assert.ok(st.entries.every((e, k) => e.index === k + 1));
        assert.equal(st.entries[48]!.term, 2, 'entry 49 was rewritten by batch 50');
        assert.deepEqual(st.hardState, hs(2, 197));
        assert.ok(s.stats().appends >= 200);
        return undefined;
      }));

    test('a rejected batch in a group does not disturb the others', () =>
      withStorage(async (s) => {
        const a = s.persist({ ...NO_BATCH, entries: ents(1, 2, 1) });
        const b = assert.rejects(s.persist({ ...NO_BATCH, entries: ents(9, 9, 1) }), StorageUsageError);
        const c = s.persist({ ...NO_BATCH, entries: ents(3, 3, 1) });
        await a;
        await b;
        await c;
        assert.deepEqual(
          s.initialState().entries.map((e) => e.index),
          [1, 2, 3],
        );
        return undefined;
      }));

    test('an empty batch resolves after the batches before it', () =>
      withStorage(async (s) => {
        let first = false;
        const p = s.persist({ ...NO_BATCH, entries: ents(1, 1, 1) }).then(() => {
          first = true;
        });
        await s.persist(NO_BATCH);
        assert.ok(first);
        await p;
        return undefined;
      }));

    test('stats count appended entries', () =>
      withStorage(async (s) => {
        await s.persist({ ...NO_BATCH, entries: ents(1, 7, 1) });
        assert.equal(s.stats().appends, 7);
        assert.ok(s.stats().fsyncs >= 1);
        return undefined;
      }));

    test('after close, persist rejects', async () => {
      const h = await makeHarness();
      try {
        const s = await h.open();
        await s.close();
        await assert.rejects(s.persist({ ...NO_BATCH, entries: ents(1, 1, 1) }), StorageClosedError);
      } finally {
        await h.dispose();
      }
    });

    test('a random workload matches the reference model across reopens', async () => {
      const h = await makeHarness();
      try {
        let s = await h.open();
        const w = new Workload(s.initialState(), 42);
        const model = new MemoryStorage();
        for (let round = 0; round < 6; round++) {
          const pending: Promise<void>[] = [];
          for (let i = 0; i < 60; i++) {
            const op = w.next();
            await run(model, op);
            pending.push(run(s, op));
            if (i % 7 === 0) await Promise.all(pending.splice(0));
          }
          await Promise.all(pending);
          assert.deepEqual(describe(s.initialState()), describe(model.initialState()), `round ${round}`);
          s = await h.reopen(s);
          assert.deepEqual(
            describe(s.initialState()),
            describe(model.initialState()),
            `round ${round} reopened`,
          );
        }
        await s.close();
      } finally {
        await h.dispose();
      }
    });
  });
}
