// Input held per stream is bounded in bytes by the stream window (issue 16: "input buffered per stream is bounded
// by message count, not bytes (40 x 8 MiB accepted on one stream: +306 MiB)"). A streaming call pauses its
// stream once 64 KiB of requests wait for the handler; the engine then holds what arrives without returning
// stream window for it, so a client that respects flow control can make the server hold about one stream window
// more, and one that does not gets FLOW_CONTROL_ERROR. A handler that reads gets everything.

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  benignCall,
  Code,
  DATA,
  END_STREAM,
  echoMessage,
  frame,
  openStream,
  RawConn,
  ServerChild,
} from './h2-raw.ts';

const STREAM_WINDOW = 1 << 20; // the server's default SETTINGS_INITIAL_WINDOW_SIZE
const CONN_WINDOW = 16 << 20; // and connection window
const MESSAGE = 1 << 20;
const CAP = 48 << 20;

/**
 * Sends `msg` repeatedly on `id` in 16 KB DATA frames as far as the windows allow, and on as the server returns
 * window, until `cap` bytes went or the server grants nothing more for a few round trips. Returns the bytes sent.
 */
async function sendWithinWindows(
  c: RawConn,
  id: number,
  msg: Buffer,
  cap: number,
  already = 0,
): Promise<number> {
  let sent = already;
  let off = 0;
  let idleRounds = 0;
  while (sent < cap && idleRounds < 3 && !c.closed) {
    const streamLeft = STREAM_WINDOW + (c.grants.get(id) ?? 0) - sent;
    const connLeft = 65535 + (c.grants.get(0) ?? 0) - sent;
    const room = Math.min(streamLeft, connLeft, cap - sent);
    if (room <= 0) {
      const before = (c.grants.get(id) ?? 0) + (c.grants.get(0) ?? 0);
      await c.sync();
      await new Promise((r) => setTimeout(r, 50));
      idleRounds = (c.grants.get(id) ?? 0) + (c.grants.get(0) ?? 0) === before ? idleRounds + 1 : 0;
      continue;
    }
    const parts: Buffer[] = [];
    let n = 0;
    while (n < room) {
      const take = Math.min(16384, room - n, msg.length - off);
      parts.push(frame(DATA, 0, id, msg.subarray(off, off + take)));
      off = (off + take) % msg.length;
      n += take;
    }
    await c.write(Buffer.concat(parts));
    sent += n;
  }
  return sent - already;
}

describe('input per stream', () => {
  let srv: ServerChild;
  before(async () => {
    srv = await ServerChild.start({ maxReceiveMessageSize: 4 << 20 });
  });
  after(() => {
    srv?.stop();
  });

  it('holds about one stream window for a handler that does not read, however much the client offers', {
    timeout: 120_000,
  }, async () => {
    const c = await RawConn.open(srv.port);
    try {
      const u0 = await srv.usage();
      // the Bidi handler takes the first message and then waits a minute before it reads again
      const first = echoMessage({ delay_ms: 60_000 });
      await c.write(Buffer.concat([openStream(1, '/test.echo.Echo/Bidi'), frame(DATA, 0, 1, first)]));
      const msg = echoMessage({ payload: Buffer.alloc(MESSAGE - 16, 7) });
      const sent = await sendWithinWindows(c, 1, msg, CAP, first.length);
      const u1 = await srv.usage();
      console.log(
        `# a non-reading handler: the server accepted ${(sent / 2 ** 20).toFixed(2)} MiB of ${CAP / 2 ** 20} MiB offered; RSS +${((u1.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`,
      );
      // one stream window held by the engine, plus what the call took before it paused: two messages
      assert.ok(sent <= STREAM_WINDOW + 2 * MESSAGE + (64 << 10), `the server accepted ${sent} bytes`);
      assert.ok(u1.rss - u0.rss < 64 << 20, `RSS grew ${u1.rss - u0.rss} bytes`);
      assert.equal(c.rst.get(1), undefined);
      assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
      // a client that ignores the window is stopped at it
      const over = Buffer.concat(Array.from({ length: 80 }, () => frame(DATA, 0, 1, Buffer.alloc(16384))));
      await c.write(over);
      await c.waitFor(() => c.rst.has(1) || c.goaway !== undefined, 'RST_STREAM or GOAWAY');
      assert.equal(c.rst.get(1), Code.FLOW_CONTROL_ERROR);
    } finally {
      c.destroy();
    }
  });

  it('returns the window as a reading handler consumes: 24 MiB through one client-streaming call', {
    timeout: 120_000,
  }, async () => {
    const c = await RawConn.open(srv.port);
    try {
      await c.write(openStream(1, '/test.echo.Echo/ClientStream'));
      const msg = echoMessage({ text: 'x', payload: Buffer.alloc(MESSAGE - 16, 7) });
      const total = 24 * msg.length;
      const sent = await sendWithinWindows(c, 1, msg, total);
      assert.equal(sent, total, 'the server returned window for everything the handler read');
      await c.write(frame(DATA, END_STREAM, 1));
      await c.waitFor(() => c.ended.has(1), 'the reply');
      assert.equal(c.rst.get(1), undefined);
      assert.ok((c.grants.get(0) ?? 0) >= CONN_WINDOW - 65535, 'the connection window');
    } finally {
      c.destroy();
    }
  });
});
