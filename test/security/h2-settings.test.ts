// SETTINGS abuse (issue 16: "SETTINGS frames with thousands of INITIAL_WINDOW_SIZE entries while 1,000 streams
// are open cost ~8 ms of CPU per 16 KB frame"). A frame may carry at most 32 entries (more is ENHANCE_YOUR_CALM,
// as nghttp2 does, CVE-2020-11080), and a change of SETTINGS_INITIAL_WINDOW_SIZE costs O(1) whatever the number
// of open streams. Measured on the server process alone (a child), against a benign load of the same bytes.

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  benignCall,
  benignLoad,
  Code,
  DATA,
  END_STREAM,
  echoMessage,
  frame,
  openStream,
  RawConn,
  ServerChild,
  settings,
} from './h2-raw.ts';

const STREAMS = 1000;
const ATTACK_BYTES = 4 << 20;
/** The bound: an attack costs at most 10x a benign request of the same size ... */
const CPU_FACTOR = 10;
/** ... plus this much, for timer and GC noise on a loaded machine (the old engine spends seconds here). */
const CPU_SLACK_US = 100_000;
/** Open streams may make the same frames cost at most this much more (noise; O(streams) work is 6-16x). */
const STREAMS_FACTOR = 2;
const RSS_BOUND = 64 << 20;
/** The benign load: the same bytes as Unary requests of 1 MiB (echoed back). */
const BENIGN_SIZE = 1 << 20;

/** Opens `n` Unary calls that stay open (their handler waits a minute). */
async function openHeldStreams(c: RawConn, n: number): Promise<void> {
  const parts: Buffer[] = [];
  const msg = echoMessage({ delay_ms: 60_000 });
  for (let i = 0; i < n; i++) {
    const id = 2 * i + 1;
    parts.push(openStream(id, '/test.echo.Echo/Unary'), frame(DATA, END_STREAM, id, msg));
  }
  await c.pump(Buffer.concat(parts));
}

/** `count` SETTINGS frames of `entries` INITIAL_WINDOW_SIZE entries each, the values moving both ways. */
function settingsFlood(bytes: number, entries: number): Buffer {
  const one = 9 + 6 * entries;
  const frames: Buffer[] = [];
  for (let i = 0; i * one < bytes; i++) {
    frames.push(
      settings(Array.from({ length: entries }, (_, k) => [0x4, 65535 + ((i + k) % 7) * 1000] as const)),
    );
  }
  return Buffer.concat(frames);
}

describe('SETTINGS abuse', () => {
  let srv: ServerChild;
  before(async () => {
    srv = await ServerChild.start({ maxConcurrentStreams: 2 * STREAMS });
  });
  after(() => {
    srv?.stop();
  });

  it('ends a connection sending a SETTINGS frame of 2,730 entries with ENHANCE_YOUR_CALM', async () => {
    const c = await RawConn.open(srv.port);
    try {
      await openHeldStreams(c, 100);
      await c.write(settings(Array.from({ length: 2730 }, (_, k) => [0x4, 65535 + (k % 2)] as const)));
      assert.equal(await c.goawayCode(), Code.ENHANCE_YOUR_CALM);
    } finally {
      c.destroy();
    }
    assert.equal(await benignCall(srv.address), '0');
  });

  for (const entries of [32, 1]) {
    it(`costs O(1) per frame, within ${CPU_FACTOR}x a benign load: 4 MiB of ${entries}-entry SETTINGS frames changing the initial window while ${STREAMS} streams are open`, {
      timeout: 180_000,
    }, async () => {
      const idle = await RawConn.open(srv.port);
      const c = await RawConn.open(srv.port);
      try {
        await openHeldStreams(c, STREAMS);
        await c.sync();
        // warm up both paths, so that neither measurement pays for compilation
        await benignLoad(srv.address, 2 << 20, BENIGN_SIZE, 2);
        await idle.pump(settingsFlood(256 << 10, entries));
        await idle.sync();
        const u0 = await srv.usage();
        assert.ok(u0.calls >= STREAMS, `${u0.calls} calls open`);
        await benignLoad(srv.address, ATTACK_BYTES, BENIGN_SIZE, 2);
        const u1 = await srv.usage();
        const flood = settingsFlood(ATTACK_BYTES, entries);
        // the same flood on a connection without streams: what the frames cost by themselves
        assert.ok(await idle.pump(flood), 'the server kept the connection without streams');
        await idle.sync(60_000);
        const u2 = await srv.usage();
        const concurrent = benignCall(srv.address);
        assert.ok(await c.pump(flood), 'the server kept the connection');
        await c.sync(60_000);
        const u3 = await srv.usage();
        assert.equal(await concurrent, '0', 'a concurrent benign call');
        assert.equal(c.goaway, undefined, 'no GOAWAY for legal SETTINGS');
        const benign = u1.cpuUs - u0.cpuUs;
        const alone = u2.cpuUs - u1.cpuUs;
        const attack = u3.cpuUs - u2.cpuUs;
        console.log(
          `# ${entries}-entry SETTINGS, ${flood.length} bytes: ${(attack / 1000).toFixed(1)} ms CPU with ${STREAMS} streams open, ${(alone / 1000).toFixed(1)} ms with none; benign load ${(benign / 1000).toFixed(1)} ms; RSS +${((u3.rss - u0.rss) / 2 ** 20).toFixed(1)} MiB`,
        );
        assert.ok(
          attack <= CPU_FACTOR * benign + CPU_SLACK_US,
          `attack cost ${attack} us of CPU, a benign load of the same bytes ${benign} us`,
        );
        // the open streams must not multiply the cost (the previous engine: 6x to 16x here)
        assert.ok(
          attack <= STREAMS_FACTOR * alone + CPU_SLACK_US,
          `with ${STREAMS} streams open the flood cost ${attack} us, without ${alone} us`,
        );
        assert.ok(u3.rss - u0.rss < RSS_BOUND, `RSS grew ${u3.rss - u0.rss} bytes`);
      } finally {
        c.destroy();
        idle.destroy();
      }
    });
  }
});
