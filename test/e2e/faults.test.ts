// Real processes, real faults: concurrent clients against a 3-node cluster while nodes
// are killed with SIGKILL and frozen with SIGSTOP/SIGCONT; the history (with unknown
// outcomes for writes that failed or timed out) must be linearizable, and every
// acknowledged write must survive a whole-cluster restart.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kvModel } from '../../src/check/kv-model.ts';
import { checkLinearizable } from '../../src/check/linearizability.ts';
import type { HistoryOp, KvInput, KvOutput } from '../../src/sim/simulator.ts';
import { ProcCluster, rpc } from './cluster.ts';

const RUN_MS = Number(process.env['RAFTKV_E2E_MS'] ?? 12_000);

function toRequest(input: KvInput): [string, object] {
  switch (input.kind) {
    case 'put':
      return ['Put', { key: input.key, value: input.value }];
    case 'get':
      return ['Get', { key: input.key }];
    case 'delete':
      return ['Delete', { key: input.key }];
    case 'cas':
      return [
        'CompareAndSwap',
        input.expected === null
          ? { key: input.key, value: input.value, expect_absent: true }
          : { key: input.key, value: input.value, expected_value: input.expected },
      ];
  }
}

function toOutput(input: KvInput, r: Record<string, unknown>): KvOutput {
  switch (input.kind) {
    case 'put':
      return { kind: 'put' };
    case 'get':
      return { kind: 'get', value: r['found'] ? (r['value'] as string) : null };
    case 'delete':
      return { kind: 'delete', existed: r['deleted'] === true };
    case 'cas':
      return { kind: 'cas', swapped: r['swapped'] === true };
  }
}

test('linearizable under SIGKILL and SIGSTOP of random nodes, and nothing acknowledged is lost', async () => {
  const c = await ProcCluster.start(3, ['--tick-ms', '20']);
  try {
    await c.leader();
    const history: HistoryOp[] = [];
    let opId = 0;
    let stop = false;
    const t0 = performance.now();
    const now = () => performance.now() - t0;
    const clientLoop = async (client: number) => {
      let n = 0;
      let seq = 0;
      // Writes carry a client session, opened first (its id comes from the cluster).
      let session = 0;
      for (let attempt = 0; attempt < 200 && session === 0 && !stop; attempt++) {
        const node = c.ids[Math.floor(Math.random() * c.ids.length)] as string;
        try {
          session = Number((await rpc(c.client(node), 'RegisterSession', {}, 1_500))['client_id']);
        } catch {
          await new Promise((res) => setTimeout(res, 50));
        }
      }
      if (session === 0) return;
      while (!stop) {
        const key = `k${Math.floor(Math.random() * 5)}`;
        const r = Math.random();
        const value = `c${client}.${++n}`;
        const input: KvInput =
          r < 0.4
            ? { kind: 'get', key }
            : r < 0.75
              ? { kind: 'put', key, value }
              : r < 0.85
                ? { kind: 'delete', key }
                : { kind: 'cas', key, expected: Math.random() < 0.3 ? null : `c${client}.${n - 1}`, value };
        const [method, base] = toRequest(input);
        // A retry of the same (client_id, sequence) is applied at most once, so a write is
        // retried until it is acknowledged or we give up.
        const req = input.kind === 'get' ? base : { ...base, client_id: session, sequence: ++seq };
        const op: HistoryOp = { id: ++opId, client, input, call: now(), ret: null, output: null };
        const attempts = input.kind === 'get' ? 1 : 8;
        for (let attempt = 0; attempt < attempts && op.ret === null; attempt++) {
          const node = c.ids[Math.floor(Math.random() * c.ids.length)] as string;
          try {
            const res = await rpc(c.client(node), method, req, 1_500);
            op.ret = now();
            op.output = toOutput(input, res);
          } catch {
            await new Promise((res) => setTimeout(res, 50));
          }
        }
        // A write that never got an answer may or may not have happened; a failed read tells nothing.
        if (op.ret !== null || input.kind !== 'get') history.push(op);
      }
    };
    const faults = async () => {
      while (!stop) {
        await new Promise((r) => setTimeout(r, 800 + Math.random() * 800));
        if (stop) break;
        const id = c.ids[Math.floor(Math.random() * c.ids.length)] as string;
        if (Math.random() < 0.5) {
          await c.kill(id);
          await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
          c.startNode(id);
        } else {
          c.signal(id, 'SIGSTOP');
          await new Promise((r) => setTimeout(r, 300 + Math.random() * 1_200));
          c.signal(id, 'SIGCONT');
        }
      }
    };
    const loops = [faults(), ...Array.from({ length: 6 }, (_, i) => clientLoop(i + 1))];
    await new Promise((r) => setTimeout(r, RUN_MS));
    stop = true;
    await Promise.all(loops);
    const ok = history.filter((o) => o.ret !== null).length;
    assert.ok(ok > 50, `only ${ok} operations succeeded; logs:\n${c.tail()}`);

    // Whole-cluster restart: every node killed, then started again; the data must be back.
    for (const id of c.ids) await c.kill(id);
    for (const id of c.ids) c.startNode(id);
    let l = await c.leader();
    for (const key of ['k0', 'k1', 'k2']) {
      const op: HistoryOp = {
        id: ++opId,
        client: 0,
        input: { kind: 'get', key },
        call: now(),
        ret: null,
        output: null,
      };
      // A freshly restarted cluster may still change leaders: retry UNAVAILABLE, as clients do.
      let res: Record<string, unknown> | null = null;
      for (let attempt = 1; res === null; attempt++) {
        try {
          res = await rpc(c.client(l), 'Get', { key }, 5_000);
        } catch (e) {
          if ((e as { code?: number }).code !== 14 || attempt >= 20) throw e;
          await new Promise((r) => setTimeout(r, 100));
          l = await c.leader();
        }
      }
      op.ret = now();
      op.output = toOutput(op.input, res);
      history.push(op);
    }
    const verdict = checkLinearizable(kvModel, history, { maxStates: 2_000_000 });
    assert.equal(verdict.ok, true, verdict.ok === false ? verdict.explanation : JSON.stringify(verdict));
  } finally {
    await c.destroy();
  }
});
