// A client that asks for large responses and never opens its flow-control window (issue 16: 50 List calls from
// ~4 KB of requests raised the server's RSS from 109 to 648 MiB, and calls without grpc-timeout waited forever).
// Now a connection may hold maxPendingResponseBytes of output its client has not taken: further responses are
// refused RESOURCE_EXHAUSTED before they are even serialized, and a call whose client takes nothing for
// sendStallTimeoutMs is cancelled (RST_STREAM ENHANCE_YOUR_CALM, RESOURCE_EXHAUSTED in the log).

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeFrame, loadProtoFiles } from '../../src/grpc/index.ts';
import { connectRaw, kvClient, rawRequest, rpc, Target, within } from './harness.ts';

const ListRequest = loadProtoFiles('proto/raftkv.proto').lookupType('raft.ListRequest');
const STALL_MS = 1500;
const CALLS = 50;

describe('a client that never reads its responses', () => {
  let t: Target;
  before(async () => {
    t = await Target.start({ grpc: { sendStallTimeoutMs: STALL_MS } });
    const c = kvClient(t.address);
    // 10 values of 1 MiB: each List below answers ~10 MiB.
    for (let i = 0; i < 10; i++) await rpc(c, 'Put', { key: `big/${i}`, value: 'v'.repeat(1 << 20) }, 30_000);
    // a benign List first, so the baseline RSS includes what serving one costs
    const r = await rpc(c, 'List', { prefix: 'big/', limit: 100 }, 30_000);
    assert.equal((r['items'] as unknown[]).length, 10);
    c.close();
  });
  after(async () => {
    await t?.stop();
  });

  it('is refused beyond the connection cap, cancelled when stalled, and costs little', async (ctx) => {
    const body = encodeFrame(ListRequest.encode({ prefix: 'big/', limit: 100 }).finish());
    const benign = kvClient(t.address);
    const sess = connectRaw(t.address, { initialWindowSize: 0 });
    try {
      const m = await t.measure(async () => {
        const calls = Array.from({ length: CALLS }, () =>
          rawRequest(sess, '/raft.KeyValueService/List', body),
        );
        // while those wait on the client, another client is served
        const got = await rpc(benign, 'Get', { key: 'big/3' }, 10_000);
        assert.equal(got['found'], true);
        return within(Promise.all(calls), 10 * STALL_MS + 10_000, 'the attacker calls ending');
      });
      const outcomes = m.result;
      const refused = outcomes.filter((o) => o.grpcStatus === 8);
      const stalled = outcomes.filter((o) => o.grpcStatus === undefined && o.rstCode === 0xb);
      assert.equal(refused.length + stalled.length, CALLS, JSON.stringify(outcomes.slice(0, 3)));
      // one held at a time; more only if a handler answers after an earlier held call was cancelled (slow machine)
      assert.ok(stalled.length >= 1 && stalled.length <= 10, `${stalled.length} calls held their response`);
      assert.match(
        refused[0]!.grpcMessage,
        /Response of \d+ bytes refused: the connection already holds \d+ bytes/,
      );
      assert.ok(
        t.logs.some((l) => /Client read none of the response for 1500 ms/.test(l)),
        'the stall is logged',
      );
      const grown = m.peakRssMiB - m.rssBeforeMiB;
      ctx.diagnostic(
        `RSS ${m.rssBeforeMiB.toFixed(0)} -> peak ${m.peakRssMiB.toFixed(0)} MiB, CPU ${m.cpuMs} ms`,
      );
      assert.ok(grown < 64, `RSS grew ${grown.toFixed(0)} MiB`);
      // a reading client is still served in full afterwards
      const r = await rpc(benign, 'List', { prefix: 'big/', limit: 100 }, 30_000);
      assert.equal((r['items'] as unknown[]).length, 10);
    } finally {
      sess.destroy();
      benign.close();
    }
  });
});
