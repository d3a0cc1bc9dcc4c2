// One conformance suite for the Transport interface, run against every implementation
// (in-memory and gRPC). A harness owns three endpoints n1..n3 that can be stopped and
// restarted at the same address.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Entry, HeartbeatRequest, Message, NodeId } from '../../src/raft/types.ts';
import type { Transport, TransportHandlers } from '../../src/transport/transport.ts';
import { type Settled, waitFor as waitUntil } from '../support/wait.ts';

export interface TransportHarness {
  readonly ids: readonly NodeId[];
  transport(id: NodeId): Transport;
  /** Stops `id`'s endpoint: its transport and (for network transports) its server. */
  stop(id: NodeId): Promise<void>;
  /** Starts `id` again at the same address; returns its new (not yet started) transport. */
  restart(id: NodeId): Promise<Transport>;
  close(): Promise<void>;
}
export type HarnessFactory = () => Promise<TransportHarness>;

/** Records what a transport hands to its handlers. */
export class Inbox {
  readonly batches: Message[][] = [];
  readonly unreachable: NodeId[] = [];
  readonly handlers: TransportHandlers = {
    onMessages: (b) => {
      this.batches.push([...b]);
    },
    onUnreachable: (p) => {
      this.unreachable.push(p);
    },
  };
  messages(): Message[] {
    return this.batches.flat();
  }
}

/** test/support/wait.ts's waitFor with this file's argument order (condition first). */
export function waitFor<T>(
  f: () => T | null | undefined | false,
  what: string,
  ms = 10_000,
): Promise<Settled<T>> {
  return waitUntil(what, f, ms);
}

export const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

export function hb(from: NodeId, to: NodeId, seq: number): HeartbeatRequest {
  return { type: 'hb', from, to, term: 1, commit: seq, readSeq: seq };
}

async function withHarness(
  factory: HarnessFactory,
  body: (h: TransportHarness, inbox: Map<NodeId, Inbox>) => Promise<void>,
): Promise<void> {
  const h = await factory();
  const inbox = new Map<NodeId, Inbox>();
  for (const id of h.ids) {
    const i = new Inbox();
    inbox.set(id, i);
    h.transport(id).start(i.handlers);
  }
  try {
    await body(h, inbox);
  } finally {
    await h.close();
  }
}

const resourceKinds = ['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap', 'Timeout', 'Immediate', 'Http2Session'];
function openResources(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) {
    if (resourceKinds.includes(r)) m.set(r, (m.get(r) ?? 0) + 1);
  }
  return m;
}

/** Registers the conformance tests for a transport implementation. */
export function transportConformance(name: string, factory: HarnessFactory): void {
  test(`${name}: delivers every message once, in order per peer`, async () => {
    await withHarness(factory, async (h, inbox) => {
      const n1 = h.transport('n1');
      const N = 2000;
      for (let i = 0; i < N; i++) {
        n1.send([hb('n1', 'n2', i), hb('n1', 'n3', i)]);
        if (i % 100 === 99) await turn();
      }
      for (const id of ['n2', 'n3']) {
        const ib = inbox.get(id)!;
        await waitFor(() => ib.messages().length >= N, `${N} messages at ${id}`);
        const got = ib.messages();
        assert.equal(got.length, N);
        got.forEach((m, i) => {
          assert.equal(m.type, 'hb');
          assert.equal(m.from, 'n1');
          assert.equal(m.to, id);
          assert.equal((m as HeartbeatRequest).readSeq, i);
        });
      }
      assert.deepEqual(inbox.get('n1')!.unreachable, []);
    });
  });

  test(`${name}: the messages of one send() arrive together, in one batch`, async () => {
    await withHarness(factory, async (h, inbox) => {
      h.transport('n2').send([hb('n2', 'n1', 0)]); // warm up the link
      await waitFor(() => inbox.get('n1')!.batches.length === 1, 'warm-up message');
      h.transport('n2').send([hb('n2', 'n1', 1), hb('n2', 'n3', 1), hb('n2', 'n1', 2), hb('n2', 'n1', 3)]);
      await waitFor(() => inbox.get('n1')!.batches.length === 2, 'second batch');
      const b = inbox.get('n1')!.batches[1]!;
      assert.deepEqual(
        b.map((m) => (m as HeartbeatRequest).readSeq),
        [1, 2, 3],
      );
      await waitFor(() => inbox.get('n3')!.batches.length === 1, 'message at n3');
    });
  });

  test(`${name}: messages to unknown or stopped peers are dropped and reported unreachable`, async () => {
    await withHarness(factory, async (h, inbox) => {
      const n1 = h.transport('n1');
      n1.send([hb('n1', 'n9', 0)]);
      await waitFor(() => inbox.get('n1')!.unreachable.includes('n9'), 'n9 reported');
      await h.stop('n3');
      await waitFor(() => {
        n1.send([hb('n1', 'n3', 1)]);
        return inbox.get('n1')!.unreachable.includes('n3');
      }, 'n3 reported unreachable');
      // the other peer is unaffected
      n1.send([hb('n1', 'n2', 2)]);
      await waitFor(() => inbox.get('n2')!.messages().length === 1, 'delivery to n2');
    });
  });

  test(`${name}: reconnects after the peer restarts`, async () => {
    await withHarness(factory, async (h, inbox) => {
      const n1 = h.transport('n1');
      n1.send([hb('n1', 'n2', 0)]);
      await waitFor(() => inbox.get('n2')!.messages().length === 1, 'first delivery');
      await h.stop('n2');
      const t2 = await h.restart('n2');
      const again = new Inbox();
      t2.start(again.handlers);
      let seq = 1;
      await waitFor(() => {
        n1.send([hb('n1', 'n2', seq++)]);
        return again.messages().length > 0;
      }, 'delivery after restart');
      // from then on, in order
      const first = (again.messages()[0] as HeartbeatRequest).readSeq;
      await waitFor(() => again.messages().length >= seq - first, 'the rest');
      assert.deepEqual(
        again.messages().map((m) => (m as HeartbeatRequest).readSeq),
        Array.from({ length: seq - first }, (_, i) => first + i),
      );
    });
  });

  test(`${name}: large messages: a 4 MiB snapshot chunk and a 10,000-entry Append`, async () => {
    await withHarness(factory, async (h, inbox) => {
      const chunk: Message = {
        type: 'snap',
        from: 'n1',
        to: 'n2',
        term: 7,
        meta: { index: 12345, term: 6, conf: { voters: ['n1', 'n2', 'n3'], learners: [] } },
        offset: 4 * 1024 * 1024,
        data: new Uint8Array(randomBytes(4 * 1024 * 1024)),
        done: false,
      };
      const entries: Entry[] = [];
      const pool = randomBytes(64 * 10_000);
      for (let i = 0; i < 10_000; i++) {
        const len = i % 65;
        entries.push({
          term: 7,
          index: 1001 + i,
          type: 0,
          data: new Uint8Array(pool.subarray(i * 64, i * 64 + len)),
        });
      }
      const app: Message = {
        type: 'app',
        from: 'n1',
        to: 'n3',
        term: 7,
        prevIndex: 1000,
        prevTerm: 6,
        commit: 999,
        entries,
      };
      h.transport('n1').send([chunk, app]);
      await waitFor(() => inbox.get('n2')!.messages().length === 1, 'the snapshot chunk');
      await waitFor(() => inbox.get('n3')!.messages().length === 1, 'the append');
      assert.deepStrictEqual(inbox.get('n2')!.messages()[0], chunk);
      assert.deepStrictEqual(inbox.get('n3')!.messages()[0], app);
    });
  });

  test(`${name}: close() leaves no open handles`, async () => {
    const before = openResources();
    await withHarness(factory, async (h, inbox) => {
      for (const from of h.ids) {
        h.transport(from).send(h.ids.filter((to) => to !== from).map((to) => hb(from, to, 0)));
      }
      await waitFor(() => [...inbox.values()].every((i) => i.messages().length === 2), 'all-to-all delivery');
    });
    for (let i = 0; i < 5; i++) await turn();
    const after = openResources();
    for (const [k, n] of after)
      assert.ok(n <= (before.get(k) ?? 0), `${k}: ${before.get(k) ?? 0} before, ${n} after`);
  });
}
