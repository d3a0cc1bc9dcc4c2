// Input buffered per connection is bounded in bytes, whatever the number of streams (issue 16, "the HTTP/2
// engine bounds every client's cost"). Before: a connection could make the server hold max streams x stream
// window of request bytes (1,000 x 1 MiB by default), because the connection window was returned as DATA arrived
// and every stream could hold one window: in a paused stream's inbox (a streaming handler that does not read),
// or in a call's partial message (a unary request that never completes). Now the connection window is returned
// only as DATA leaves the engine (so inboxes hold at most 16 MiB), and a connection's calls may hold at most
// `maxPendingRequestBytes` (8 MiB) of partial and queued requests; a call beyond it ends RESOURCE_EXHAUSTED.
//
// Each attack opens the server's maximum of streams (100 here, to keep the unbounded server under ~150 MiB when
// the test is run against the old engine) and offers a full stream window (1 MiB) on each, never completing.

import * as assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { benignCall, DATA, echoMessage, frame, openStream, RawConn, ServerChild } from './h2-raw.ts';

const STREAMS = 100;
const STREAM_WINDOW = 1 << 20;
const MiB = 2 ** 20;

/**
 * Offers `perStream` bytes on every stream (each stream's bytes from `source(i)`), round robin in 16 KB DATA
 * frames, within the connection window the server grants. Stops when everything went, or when the server
 * granted nothing for three round trips. Returns the bytes sent.
 */
async function offer(
  c: RawConn,
  ids: number[],
  source: (i: number) => Buffer,
  perStream: number,
): Promise<number> {
  const sentOn = ids.map(() => 0);
  let sent = 0;
  let idle = 0;
  const total = ids.length * perStream;
  while (sent < total && idle < 3 && !c.closed) {
    let room = 65535 + (c.grants.get(0) ?? 0) - sent;
    if (room < 16384) {
      const before = c.grants.get(0) ?? 0;
      await c.sync();
      await new Promise((r) => setTimeout(r, 100));
      idle = (c.grants.get(0) ?? 0) === before ? idle + 1 : 0;
      continue;
    }
    const parts: Buffer[] = [];
    for (let k = 0; k < ids.length && room >= 16384; k++) {
      if (sentOn[k]! >= perStream) continue;
      const src = source(k);
      const n = Math.min(16384, perStream - sentOn[k]!);
      parts.push(frame(DATA, 0, ids[k]!, src.subarray(sentOn[k]!, sentOn[k]! + n)));
      sentOn[k]! += n;
      sent += n;
      room -= n;
    }
    await c.write(Buffer.concat(parts));
  }
  return sent;
}

describe('input buffered per connection', () => {
  // a server per test, so that one attack's garbage does not hide the next one's RSS growth
  let srv: ServerChild | undefined;
  beforeEach(async () => {
    srv = await ServerChild.start({ maxConcurrentStreams: STREAMS, maxReceiveMessageSize: 4 << 20 });
  });
  afterEach(() => {
    srv?.stop();
  });
  const started = (): ServerChild => {
    assert.ok(srv !== undefined);
    return srv;
  };

  it(`${STREAMS} unary calls each sent 1 MiB of a 4 MiB request, never finished: RSS +64 MiB at most`, {
    timeout: 180_000,
  }, async () => {
    const srv = started();
    const c = await RawConn.open(srv.port);
    try {
      const u0 = await srv.usage();
      const ids = Array.from({ length: STREAMS }, (_, i) => 2 * i + 1);
      await c.write(Buffer.concat(ids.map((id) => openStream(id, '/test.echo.Echo/Unary'))));
      // a 5-byte prefix declaring 4 MiB - 1, and then its body: the request is never complete
      const body = Buffer.alloc(STREAM_WINDOW, 7);
      body[0] = 0;
      body.writeUInt32BE((4 << 20) - 1, 1);
      const sent = await offer(c, ids, () => body, STREAM_WINDOW);
      await c.sync();
      const u1 = await srv.usage();
      const refused = ids.filter((id) => c.ended.has(id) || c.rst.has(id)).length;
      console.log(
        `# ${STREAMS} partial unary requests: ${(sent / MiB).toFixed(1)} MiB sent, ${refused} calls refused, server RSS +${((u1.rss - u0.rss) / MiB).toFixed(1)} MiB`,
      );
      assert.ok(refused > 0, 'some calls were refused');
      assert.ok(u1.rss - u0.rss < 64 * MiB, `RSS grew ${((u1.rss - u0.rss) / MiB).toFixed(1)} MiB`);
      assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
    } finally {
      c.destroy();
    }
  });

  it(`${STREAMS} streaming calls whose handler does not read, each offered 1 MiB: RSS +64 MiB at most`, {
    timeout: 180_000,
  }, async () => {
    const srv = started();
    const c = await RawConn.open(srv.port);
    try {
      const u0 = await srv.usage();
      const ids = Array.from({ length: STREAMS }, (_, i) => 2 * i + 1);
      // the Bidi handler takes the first message and then waits a minute before it reads again
      const first = echoMessage({ delay_ms: 60_000 });
      await c.write(
        Buffer.concat(
          ids.map((id) => Buffer.concat([openStream(id, '/test.echo.Echo/Bidi'), frame(DATA, 0, id, first)])),
        ),
      );
      const msg = echoMessage({ payload: Buffer.alloc(64 * 1024 - 16, 7) });
      const stream = Buffer.concat(
        Array.from({ length: Math.ceil(STREAM_WINDOW / msg.length) + 1 }, () => msg),
      );
      const sent = await offer(c, ids, () => stream, STREAM_WINDOW - first.length);
      const u1 = await srv.usage();
      console.log(
        `# ${STREAMS} paused streams (${ids.filter((id) => c.ended.has(id) || c.rst.has(id)).length} refused): ${(sent / MiB).toFixed(1)} MiB accepted of ${((STREAMS * STREAM_WINDOW) / MiB).toFixed(0)} MiB offered, server RSS +${((u1.rss - u0.rss) / MiB).toFixed(1)} MiB`,
      );
      // the inboxes hold one connection window (16 MiB), the calls' queues 64 KiB each at most
      assert.ok(sent < 32 * MiB + STREAMS * 64 * 1024, `the server accepted ${(sent / MiB).toFixed(1)} MiB`);
      assert.ok(u1.rss - u0.rss < 64 * MiB, `RSS grew ${((u1.rss - u0.rss) / MiB).toFixed(1)} MiB`);
      assert.equal(await benignCall(srv.address), '0', 'a concurrent benign call');
    } finally {
      c.destroy();
    }
  });
});
