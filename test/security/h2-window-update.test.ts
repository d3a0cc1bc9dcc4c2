// Flow-control abuse of the send side (issue 16: "connection-level WINDOW_UPDATEs rescan every blocked stream
// (300k frames of 13 bytes: 5.5 s of CPU, a concurrent call waited 4.8 s)"). DATA waiting for window sits in a
// ready queue (waiting for the connection window) or a starved heap (its stream window shut), so a connection
// WINDOW_UPDATE costs O(1) plus the frames it lets out, and a raised SETTINGS_INITIAL_WINDOW_SIZE wakes a
// starved stream only for a worthwhile window, not for every byte.

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  benignCall,
  benignLoad,
  echoMessage,
  frame,
  openStream,
  RawConn,
  ServerChild,
  settings,
  windowUpdate,
} from './h2-raw.ts';

const STREAMS = 1000;
const FRAMES = 300_000;
const CPU_FACTOR = 10;
const STREAMS_FACTOR = 2;
const CPU_SLACK_US = 100_000;
const RSS_BOUND = 64 << 20;
const END_STREAM = 0x1;
const DATA = 0x0;

/** Opens Unary calls whose replies carry `replySize` bytes, ids from `first`. */
async function openReplies(c: RawConn, n: number, replySize: number, first = 1): Promise<void> {
  const parts: Buffer[] = [];
  const msg = echoMessage({ reply_size: replySize });
  for (let i = 0; i < n; i++) {
    const id = first + 2 * i;
    parts.push(openStream(id, '/test.echo.Echo/Unary'), frame(DATA, END_STREAM, id, msg));
  }
  await c.pump(Buffer.concat(parts));
}

describe('WINDOW_UPDATE abuse', () => {
  let srv: ServerChild;
  before(async () => {
    srv = await ServerChild.start({ maxConcurrentStreams: 2 * STREAMS });
  });
  after(() => {
    srv?.stop();
  });

  it(`costs O(1) per frame: ${FRAMES} connection WINDOW_UPDATEs while ${STREAMS} replies wait for their stream windows`, {
    timeout: 180_000,
  }, async () => {
    const flood = Buffer.concat(Array.from({ length: FRAMES }, () => windowUpdate(0, 1)));
    const idle = await RawConn.open(srv.port);
    // a client window of 0: every reply waits for its stream's WINDOW_UPDATE
    const c = await RawConn.open(srv.port, [[0x4, 0]]);
    try {
      await openReplies(c, STREAMS, 1000);
      await c.waitFor(() => c.headers.size >= STREAMS, 'all reply headers', 60_000);
      await benignLoad(srv.address, 1 << 20, 1 << 20, 2);
      await idle.pump(flood.subarray(0, 13 * 20_000));
      await idle.sync();
      const u0 = await srv.usage();
      await benignLoad(srv.address, flood.length, 1 << 20, 2);
      const u1 = await srv.usage();
      assert.ok(await idle.pump(flood), 'the server kept the connection without streams');
      await idle.sync(60_000);
      const u2 = await srv.usage();
      const concurrent = benignCall(srv.address);
      assert.ok(await c.pump(flood), 'the server kept the connection');
      await c.sync(60_000);
      const u3 = await srv.usage();
      assert.equal(await concurrent, '0', 'a concurrent benign call');
      assert.equal(c.goaway, undefined, 'no GOAWAY for legal WINDOW_UPDATEs');
      // the replies are still served: open one stream's window
      assert.equal(c.ended.size, 0);
      await c.write(windowUpdate(1, 1 << 20));
      await c.waitFor(() => c.ended.has(1), 'the reply on stream 1');
      assert.ok((c.dataBytes.get(1) ?? 0) > 1000);
      const benign = u1.cpuUs - u0.cpuUs;
      const alone = u2.cpuUs - u1.cpuUs;
      const attack = u3.cpuUs - u2.cpuUs;
      console.log(
        `# ${FRAMES} connection WINDOW_UPDATEs (${flood.length} bytes): ${(attack / 1000).toFixed(1)} ms CPU with ${STREAMS} replies waiting, ${(alone / 1000).toFixed(1)} ms with none; benign load ${(benign / 1000).toFixed(1)} ms; RSS +${((u3.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.ok(
        attack <= CPU_FACTOR * benign + CPU_SLACK_US,
        `attack cost ${attack} us of CPU, a benign load of the same bytes ${benign} us`,
      );
      assert.ok(
        attack <= STREAMS_FACTOR * alone + CPU_SLACK_US,
        `with ${STREAMS} replies waiting the flood cost ${attack} us, without ${alone} us`,
      );
      assert.ok(u3.rss - u0.rss < RSS_BOUND, `RSS grew ${u3.rss - u0.rss} bytes`);
    } finally {
      c.destroy();
      idle.destroy();
    }
  });

  it('wakes starved streams for a worthwhile window, not for each byte the initial window grows', {
    timeout: 60_000,
  }, async () => {
    const n = 100;
    const c = await RawConn.open(srv.port, [[0x4, 0]]);
    try {
      await c.write(windowUpdate(0, 2 ** 30));
      await openReplies(c, n, 64 * 1024);
      await c.waitFor(() => c.headers.size >= n, 'all reply headers');
      // 2,000 frames raising the initial window by one byte each
      await c.pump(Buffer.concat(Array.from({ length: 2000 }, (_, i) => settings([[0x4, i + 1]]))));
      await c.sync();
      const nudged = c.dataFrames;
      console.log(
        `# 2,000 one-byte raises of the initial window, ${n} starved streams: ${nudged} DATA frames`,
      );
      // the previous engine sent a 1-byte DATA frame on every stream per frame: 200,000 frames
      assert.ok(nudged <= 50 * n, `${nudged} DATA frames for ${n} streams`);
      assert.ok(nudged >= n, `${nudged} DATA frames: the streams were woken`);
      // a window that covers the replies lets them all finish
      await c.write(settings([[0x4, 100_000]]));
      await c.waitFor(() => c.ended.size >= n, `all ${n} replies (${c.ended.size})`);
      for (let i = 0; i < n; i++) assert.ok((c.dataBytes.get(1 + 2 * i) ?? 0) > 64 * 1024);
      assert.equal(c.goaway, undefined);
    } finally {
      c.destroy();
    }
    assert.equal(await benignCall(srv.address), '0');
  });

  it('serves replies waiting on the connection window in order, through window changes both ways', {
    timeout: 60_000,
  }, async () => {
    const n = 20;
    // stream windows of 1 MiB, the connection window the default 65,535: most replies wait for the connection
    const c = await RawConn.open(srv.port, [[0x4, 1 << 20]]);
    try {
      await openReplies(c, n, 10_000);
      await c.waitFor(() => c.headers.size >= n, 'all reply headers');
      await c.sync();
      const first = c.ended.size;
      assert.ok(first < n, `${first} replies fit the first connection window`);
      // shut the stream windows (ready streams move to the heap), open the connection, open the streams again
      await c.write(settings([[0x4, 0]]));
      await c.write(windowUpdate(0, 1 << 20));
      await c.sync();
      const shut = c.ended.size;
      await c.write(settings([[0x4, 1 << 20]]));
      await c.waitFor(() => c.ended.size >= n, `all ${n} replies (${c.ended.size})`);
      assert.ok(shut < n, `${shut} replies while the stream windows were shut`);
      for (let i = 0; i < n; i++) assert.ok((c.dataBytes.get(1 + 2 * i) ?? 0) > 10_000);
      // and one stream WINDOW_UPDATE at a time serves a reply waiting only for its own window
      await c.write(settings([[0x4, 0]]));
      await openReplies(c, 1, 5000, 1 + 2 * n);
      await c.waitFor(() => c.headers.has(1 + 2 * n), 'the last reply headers');
      await c.sync();
      assert.equal(c.ended.has(1 + 2 * n), false);
      await c.write(windowUpdate(1 + 2 * n, 3000));
      await c.sync();
      assert.equal(c.dataBytes.get(1 + 2 * n), 3000);
      await c.write(windowUpdate(1 + 2 * n, 3000));
      await c.waitFor(() => c.ended.has(1 + 2 * n), 'the last reply');
      assert.equal(c.goaway, undefined);
    } finally {
      c.destroy();
    }
  });
});
