// A client that stops reading at the TCP level (issue 16: "response bytes pending per connection capped, and a
// call whose client does not read for a bounded time is cancelled"). Its socket's receive buffer fills, then the
// server's send buffer, then the server's own socket buffer grows: before, only the keepalive reaped such a
// connection (a PING every 60 s, 20 s for its ACK), and the keepalive PING carried a constant payload (zeros), so
// a client that blindly sent PING ACKs without reading kept it alive for ever. Now:
// - a connection whose socket stays over its high-water mark (no 'drain') for `writeStallTimeoutMs` is destroyed
//   and counted (`writeStalls`);
// - each PING the server sends carries 8 random bytes, and only an ACK echoing an outstanding one answers it.
// Short timeouts are configured here; nothing asserts how long anything took.

import * as assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import {
  DATA,
  END_STREAM,
  echoMessage,
  frame,
  openStream,
  PING,
  RawConn,
  ServerChild,
  windowUpdate,
} from './h2-raw.ts';

const MiB = 2 ** 20;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;

async function waitUntil(
  cond: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a client that stops reading at the TCP level', () => {
  let srv: ServerChild | undefined;
  let conn: RawConn | undefined;
  afterEach(() => {
    conn?.destroy();
    srv?.stop();
    conn = undefined;
    srv = undefined;
  });

  it('is dropped and counted once its socket has not drained for writeStallTimeoutMs', {
    timeout: 120_000,
  }, async () => {
    // keepalive and the per-call stall watch off: only the write-stall bound can reap this connection
    srv = await ServerChild.start({ writeStallTimeoutMs: 500, keepaliveTimeMs: 0, sendStallTimeoutMs: 0 });
    conn = await RawConn.open(srv.port, [[SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31 - 1]]);
    const c = conn;
    // every window open, so that the responses go straight to the socket
    await c.write(windowUpdate(0, 2 ** 31 - 1 - 65535));
    await c.sync();
    c.sock.pause(); // from here the client reads nothing
    const u0 = await srv.usage();
    const started = Date.now();
    const req = echoMessage({ reply_size: 4 * MiB });
    const calls: Buffer[] = [];
    for (let i = 0; i < 16; i++) {
      const id = 2 * i + 1;
      calls.push(openStream(id, '/test.echo.Echo/Unary'), frame(DATA, END_STREAM, id, req));
    }
    await c.write(Buffer.concat(calls));
    await waitUntil(
      async () => ((await srv!.usage()).writeStalls ?? 0) >= 1,
      'the server to drop the connection',
      60_000,
    );
    const u1 = await srv.usage();
    console.log(
      `# a client that stopped reading: dropped ${Date.now() - started} ms after its requests (writeStallTimeoutMs 500), server RSS +${((u1.rss - u0.rss) / MiB).toFixed(1)} MiB, sessions ${u1.sessions}`,
    );
    assert.equal(u1.writeStalls, 1);
    await waitUntil(async () => (await srv!.usage()).sessions === 0, 'the session to be gone', 10_000);
  });

  it('a client that reads is not dropped however long its calls take', { timeout: 120_000 }, async () => {
    srv = await ServerChild.start({ writeStallTimeoutMs: 2000, keepaliveTimeMs: 0 });
    conn = await RawConn.open(srv.port, [[SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31 - 1]]);
    const c = conn;
    await c.write(windowUpdate(0, 2 ** 31 - 1 - 65535));
    const req = echoMessage({ reply_size: 4 * MiB });
    const calls: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      const id = 2 * i + 1;
      calls.push(openStream(id, '/test.echo.Echo/Unary'), frame(DATA, END_STREAM, id, req));
    }
    await c.write(Buffer.concat(calls));
    await c.waitFor(() => c.ended.size === 8, 'eight replies', 60_000);
    assert.equal((await srv.usage()).writeStalls, 0);
    assert.equal(c.closed, false);
  });

  it('sends a different PING payload each time', { timeout: 60_000 }, async () => {
    srv = await ServerChild.start({ keepaliveTimeMs: 100, keepaliveTimeoutMs: 30_000 });
    conn = await RawConn.open(srv.port);
    const c = conn;
    await c.waitFor(() => c.serverPings.length >= 1, 'a keepalive PING', 30_000);
    // answer it, so that the next keepalive sends another
    await c.write(frame(PING, 0x1, 0, c.serverPings[0]!));
    await c.waitFor(() => c.serverPings.length >= 2, 'a second keepalive PING', 30_000);
    assert.notDeepEqual(c.serverPings[0], c.serverPings[1]);
    assert.notDeepEqual(c.serverPings[0], Buffer.alloc(8));
  });

  it('does not count a PING ACK that echoes no PING it sent: the keepalive reaps the client', {
    timeout: 60_000,
  }, async () => {
    srv = await ServerChild.start({ keepaliveTimeMs: 100, keepaliveTimeoutMs: 1000 });
    conn = await RawConn.open(srv.port);
    const c = conn;
    // a client that cannot read the PINGs answers blindly, with a payload of its own, many times a second
    const blind = frame(PING, 0x1, 0, Buffer.from('notyours'));
    const zeros = frame(PING, 0x1, 0, Buffer.alloc(8));
    const end = Date.now() + 30_000;
    while (!c.closed && c.goaway === undefined && Date.now() < end) {
      await c.write(Buffer.concat([blind, zeros]));
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(c.closed || c.goaway !== undefined, 'the keepalive dropped a client whose ACKs echo nothing');
  });

  it('keeps a client that echoes its PINGs', { timeout: 60_000 }, async () => {
    srv = await ServerChild.start({ keepaliveTimeMs: 100, keepaliveTimeoutMs: 1000 });
    conn = await RawConn.open(srv.port);
    const c = conn;
    let answered = 0;
    while (answered < 15 && !c.closed) {
      await c.waitFor(() => c.serverPings.length > answered || c.closed, 'a keepalive PING', 30_000);
      if (c.closed) break;
      await c.write(frame(PING, 0x1, 0, c.serverPings[answered]!));
      answered++;
    }
    assert.equal(c.closed, false, 'a client that answers every PING stays connected');
    assert.equal((await srv.usage()).sessions, 1);
  });
});
