// Abuse that the engine already withstood (issue 16: "What held up and must keep holding") and must keep
// withstanding: PING and SETTINGS floods from a client that never reads, HPACK bombs, Rapid Reset, 3,000 idle
// connections. The server runs in a child process; each test bounds its RSS growth and checks that a benign call
// on another connection is answered. (CONTINUATION floods, MAX_CONCURRENT_STREAMS and window overflows are rows
// of h2-conformance.test.ts and test/grpc/h2.test.ts.)

import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import {
  benignCall,
  CONTINUATION,
  Code,
  DATA,
  END_HEADERS,
  END_STREAM,
  echoMessage,
  frame,
  HEADERS,
  openStream,
  PING,
  RawConn,
  requestBlock,
  rstStream,
  ServerChild,
  settings,
} from './h2-raw.ts';

const RSS_BOUND = 64 << 20;

/** Writes `unit` repeatedly until `cap` bytes went or the server stops reading for 3 s. */
async function floodUnread(c: RawConn, unit: Buffer, cap: number): Promise<number> {
  const chunk = Buffer.concat(Array.from({ length: Math.ceil(65536 / unit.length) }, () => unit));
  let offered = 0;
  while (offered < cap && !c.closed) {
    offered += chunk.length;
    if (!c.sock.write(chunk)) {
      const drained = await Promise.race([
        once(c.sock, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 3000)),
      ]);
      if (!drained) break;
    }
  }
  return offered;
}

describe('floods that must keep holding', () => {
  let srv: ServerChild;
  before(async () => {
    srv = await ServerChild.start({ maxConcurrentStreams: 1000 });
  });
  after(() => {
    srv?.stop();
  });

  for (const [what, unit] of [
    ['PING', frame(PING, 0, 0, Buffer.alloc(8))],
    ['SETTINGS', settings([[0x4, 65535]])],
  ] as const) {
    it(`stops reading a client that floods ${what} frames and never reads their ACKs`, {
      timeout: 60_000,
    }, async () => {
      const u0 = await srv.usage();
      const c = await RawConn.open(srv.port);
      try {
        c.sock.pause(); // never read again
        const offered = await floodUnread(c, unit, 256 << 20);
        const u1 = await srv.usage();
        console.log(
          `# ${what} flood, never read: ${(offered / 2 ** 20).toFixed(1)} MiB taken before the server stopped reading; RSS +${((u1.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`,
        );
        assert.ok(offered < 256 << 20, 'the server stopped reading');
        assert.ok(u1.rss - u0.rss < RSS_BOUND, `RSS grew ${u1.rss - u0.rss} bytes`);
        assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
      } finally {
        c.destroy();
      }
    });
  }

  it('resets streams whose header list decodes past the limit (HPACK bomb: 4 KB entry referenced 16,000 times)', {
    timeout: 60_000,
  }, async () => {
    const value = 'v'.repeat(4000);
    // literal with incremental indexing, new name "x-bomb", a 4,000-byte value (length 4000 = 127 + 33 + 30 * 128)
    const add = Buffer.concat([Buffer.of(0x40, 6), Buffer.from('x-bomb'), Buffer.of(0x7f, 0x80 | 33, 30)]);
    const literal = Buffer.concat([add, Buffer.from(value)]);
    const refs = Buffer.alloc(16_000, 0xbe); // index 62: the newest dynamic entry
    const u0 = await srv.usage();
    const c = await RawConn.open(srv.port);
    try {
      const streams = 100;
      for (let i = 0; i < streams; i++) {
        const id = 2 * i + 1;
        const block = Buffer.concat([requestBlock('/test.echo.Echo/Unary'), literal, refs]);
        const parts = [frame(HEADERS, END_STREAM, id, block.subarray(0, 16384))];
        for (let off = 16384; off < block.length; off += 16384) {
          const end = Math.min(block.length, off + 16384);
          parts.push(
            frame(CONTINUATION, end === block.length ? END_HEADERS : 0, id, block.subarray(off, end)),
          );
        }
        await c.write(Buffer.concat(parts));
      }
      await c.waitFor(() => c.rst.size >= streams || c.closed, 'a reset per stream');
      const u1 = await srv.usage();
      console.log(
        `# HPACK bomb: ${streams} header lists of ~64 MB each decoded; RSS +${((u1.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.equal(c.goaway, undefined);
      assert.deepEqual(new Set(c.rst.values()), new Set([Code.ENHANCE_YOUR_CALM]));
      assert.ok(u1.rss - u0.rss < RSS_BOUND, `RSS grew ${u1.rss - u0.rss} bytes`);
      assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
    } finally {
      c.destroy();
    }
  });

  it('ends a connection that resets 1,500 streams in a burst (Rapid Reset) with ENHANCE_YOUR_CALM', {
    timeout: 60_000,
  }, async () => {
    const c = await RawConn.open(srv.port);
    try {
      const msg = echoMessage({ delay_ms: 60_000 });
      const parts: Buffer[] = [];
      for (let i = 0; i < 1500; i++) {
        const id = 2 * i + 1;
        parts.push(
          openStream(id, '/test.echo.Echo/Unary'),
          frame(DATA, END_STREAM, id, msg),
          rstStream(id, 0x8),
        );
      }
      await c.pump(Buffer.concat(parts));
      assert.equal(await c.goawayCode(), Code.ENHANCE_YOUR_CALM);
    } finally {
      c.destroy();
    }
    assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
    const u = await srv.usage();
    assert.ok(u.calls <= 1, `${u.calls} calls left open`);
  });

  it('holds 3,000 idle connections and serves a call beside them', { timeout: 120_000 }, async () => {
    const u0 = await srv.usage();
    const conns: RawConn[] = [];
    try {
      for (let i = 0; i < 3000; i++) conns.push(await RawConn.open(srv.port));
      await conns[0]!.waitFor(
        () => conns.every((c) => c.settingsAcks > 0 || c.closed),
        'every SETTINGS ACK',
        60_000,
      );
      const u1 = await srv.usage();
      console.log(`# 3,000 idle connections: RSS +${((u1.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`);
      assert.ok(u1.sessions >= 3000, `${u1.sessions} sessions`);
      assert.equal(conns.filter((c) => c.closed).length, 0, 'no idle connection was dropped');
      assert.equal(await benignCall(srv.address), '0', 'a benign call beside them');
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});
