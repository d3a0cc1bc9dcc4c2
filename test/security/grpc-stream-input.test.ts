// Input buffered for one streaming call (issue 16: 40 messages of 8 MiB were accepted on one stream, +306 MiB):
// a client opens a reflection stream with its own window shut, so the handler waits to write and stops reading,
// and the client keeps sending 4 MiB requests. The call's queue of decoded messages is bounded in bytes (1 MiB):
// past it the stream is paused, its flow-control window is not returned, and HTTP/2 stops the sender. The call,
// whose client takes nothing, is then cancelled after sendStallTimeoutMs, without any grpc-timeout.

import * as assert from 'node:assert/strict';
import type * as http2 from 'node:http2';
import { describe, it } from 'node:test';
import { encodeFrame } from '../../src/grpc/index.ts';
import { connectRaw, GRPC_REQUEST, kvClient, rpc, Target, within } from './harness.ts';

const STALL_MS = 1500;

/** A ServerReflectionRequest: `host` (field 1) and file_containing_symbol (field 4). */
function reflectionRequest(host: string, symbol: string): Buffer {
  const str = (tag: number, s: string): Buffer => {
    const b = Buffer.from(s);
    const len: number[] = [];
    let n = b.length;
    while (n > 0x7f) {
      len.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    len.push(n);
    return Buffer.concat([Buffer.from([tag, ...len]), b]);
  };
  return encodeFrame(Buffer.concat([str(0x0a, host), str(0x22, symbol)]));
}

/** Opens a reflection stream on a session whose window is shut and sends 40 small then 24 ~4 MiB requests. */
function flood(sess: http2.ClientHttp2Session): { closed: Promise<number> } {
  const req = sess.request({
    ...GRPC_REQUEST,
    ':path': '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
  });
  req.on('error', () => {});
  const closed = new Promise<number>((r) => req.on('close', () => r(req.rstCode ?? 0)));
  // Enough answers to fill the stream's output (the handler then waits for 'drain')...
  for (let i = 0; i < 40; i++) req.write(reflectionRequest('', 'raft.KeyValueService'));
  // ...then 24 messages of ~4 MiB (96 MiB), which the server can only queue.
  const big = reflectionRequest('h'.repeat((4 << 20) - 64), 'raft.KeyValueService');
  for (let i = 0; i < 24; i++) req.write(big);
  return { closed };
}

describe('a streaming call whose client sends without reading', () => {
  it('gets a bounded share of memory: the stream is paused and HTTP/2 stops the sender', async (ctx) => {
    const t = await Target.start({ grpc: { sendStallTimeoutMs: 0 } });
    const sess = connectRaw(t.address, { initialWindowSize: 0 });
    const benign = kvClient(t.address);
    try {
      const m = await t.measure(async () => {
        flood(sess);
        const got = await rpc(benign, 'GetClusterStatus', {}, 10_000);
        assert.equal(got['role'], 'leader');
        // The sender is held back for good: memory sampled over 5 s stays flat (the old code took it all).
        await new Promise((r) => setTimeout(r, 5000));
      });
      ctx.diagnostic(
        `server RSS ${m.rssBeforeMiB.toFixed(0)} -> peak ${m.peakRssMiB.toFixed(0)} MiB, CPU ${m.cpuMs} ms`,
      );
      const grown = m.peakRssMiB - m.rssBeforeMiB;
      assert.ok(grown < 64, `RSS grew ${grown.toFixed(0)} MiB`);
    } finally {
      sess.destroy();
      benign.close();
      await t.stop();
    }
  });

  it('is cancelled when its client leaves the window shut, without any grpc-timeout', async () => {
    const t = await Target.start({ grpc: { sendStallTimeoutMs: STALL_MS } });
    const sess = connectRaw(t.address, { initialWindowSize: 0 });
    const benign = kvClient(t.address);
    try {
      const { closed } = flood(sess);
      const got = await rpc(benign, 'GetClusterStatus', {}, 10_000);
      assert.equal(got['role'], 'leader');
      assert.equal(await within(closed, 10 * STALL_MS + 10_000, 'the stalled call ending'), 0xb);
      assert.ok(
        t.logs.some((l) => /Client read none of the response for 1500 ms/.test(l)),
        t.logs.join('\n'),
      );
      await rpc(benign, 'Put', { key: 'after', value: 'x' }, 10_000);
    } finally {
      sess.destroy();
      benign.close();
      await t.stop();
    }
  });
});
