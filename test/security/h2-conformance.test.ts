// A conformance sweep of the MUST rules of RFC 9113 (HTTP/2) and RFC 7541 (HPACK) that a server can be held to,
// over raw frames: each row is a frame sequence (after the preface and a SETTINGS frame) and the answer the RFC
// names: a connection error (GOAWAY with its code), a stream error (RST_STREAM with its code on that stream), or
// nothing (the frames are legal or must be ignored). Each row runs on a fresh connection against one server,
// which must serve a benign call after the sweep.

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeHeaders } from '../../src/grpc/h2/hpack.ts';
import { type Started, startEcho } from '../grpc/helpers.ts';
import {
  benignCall,
  CONTINUATION,
  Code,
  DATA,
  END_HEADERS,
  END_STREAM,
  echoMessage,
  frame,
  GOAWAY,
  HEADERS,
  openStream,
  PING,
  PRIORITY,
  PRIORITY_FLAG,
  RawConn,
  requestBlock,
  rstStream,
  SETTINGS,
  settings,
  windowUpdate,
} from './h2-raw.ts';

const UNARY = '/test.echo.Echo/Unary';
const UNKNOWN = '/no.Such/Method';
/** Opens stream `id` on a Unary call that stays open (the handler waits 20 s) with the client side ended. */
const held = (id: number): Buffer =>
  Buffer.concat([openStream(id, UNARY), frame(DATA, END_STREAM, id, echoMessage({ delay_ms: 20_000 }))]);
/** Opens stream `id` on a Unary call whose client side is still open. */
const open = (id: number): Buffer => openStream(id, UNARY);
const data = (id: number, n = 5, flags = 0): Buffer => frame(DATA, flags, id, Buffer.alloc(n));
const block = (h: Record<string, string>): Buffer => encodeHeaders(h);
const req = (extra: Record<string, string> = {}): Record<string, string> => ({
  ':method': 'POST',
  ':scheme': 'http',
  ':path': UNARY,
  'content-type': 'application/grpc',
  ...extra,
});
const priority = (dep: number): Buffer => {
  const p = Buffer.alloc(5);
  p.writeUInt32BE(dep, 0);
  p[4] = 15;
  return p;
};

type Step = Buffer | { readonly waitEnd: number };
type Expect =
  | { readonly goaway: number }
  | { readonly rst: readonly [number, number] }
  | { readonly none: true; readonly rstOnly?: readonly [number, number] };

interface Row {
  readonly rule: string;
  readonly what: string;
  readonly steps: readonly Step[];
  readonly expect: Expect;
  /** Skip the client's SETTINGS frame after the preface. */
  readonly noSettings?: boolean;
}

const hpack = (hex: string): Buffer => frame(HEADERS, END_STREAM | END_HEADERS, 1, Buffer.from(hex, 'hex'));

const ROWS: readonly Row[] = [
  // ---- RFC 9113 ----
  {
    rule: '3.4',
    what: 'a PING before the SETTINGS frame',
    steps: [frame(PING, 0, 0, Buffer.alloc(8))],
    expect: { goaway: Code.PROTOCOL_ERROR },
    noSettings: true,
  },
  {
    rule: '4.2',
    what: 'a DATA frame over SETTINGS_MAX_FRAME_SIZE',
    steps: [held(1), data(1, 16385)],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '4.3',
    what: 'a header block interrupted by another frame',
    steps: [frame(HEADERS, 0, 1, requestBlock(UNARY)), frame(PING, 0, 0, Buffer.alloc(8))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  { rule: '5.1', what: 'DATA on an idle stream', steps: [data(1)], expect: { goaway: Code.PROTOCOL_ERROR } },
  {
    rule: '5.1',
    what: 'RST_STREAM on an idle stream',
    steps: [rstStream(1, Code.NO_ERROR)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1',
    what: 'WINDOW_UPDATE on an idle stream',
    steps: [windowUpdate(1, 1)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1',
    what: 'CONTINUATION on an idle stream',
    steps: [frame(CONTINUATION, END_HEADERS, 1, requestBlock(UNARY))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1',
    what: 'DATA on a half-closed (remote) stream',
    steps: [held(1), data(1)],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'HEADERS on a half-closed (remote) stream',
    steps: [held(1), frame(HEADERS, END_HEADERS | END_STREAM, 1, block({ 'x-t': '1' }))],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'DATA on a stream the client reset',
    steps: [open(1), rstStream(1, 0x8), data(1)],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'HEADERS on a stream the client reset',
    steps: [open(1), rstStream(1, 0x8), openStream(1, UNARY, true)],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'DATA on a stream closed by END_STREAM both ways',
    steps: [openStream(1, UNKNOWN, true), { waitEnd: 1 }, data(1)],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'HEADERS on a stream closed by END_STREAM both ways',
    steps: [openStream(1, UNKNOWN, true), { waitEnd: 1 }, openStream(1, UNKNOWN, true)],
    expect: { rst: [1, Code.STREAM_CLOSED] },
  },
  {
    rule: '5.1',
    what: 'frames after our RST_STREAM are ignored',
    steps: [
      openStream(1, UNKNOWN),
      { waitEnd: 1 },
      data(1),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, block({ 'x-t': '1' })),
      windowUpdate(1, 5),
    ],
    expect: { none: true, rstOnly: [1, Code.NO_ERROR] },
  },
  {
    rule: '5.1',
    what: 'WINDOW_UPDATE and PRIORITY on a closed stream are ignored',
    steps: [
      openStream(1, UNKNOWN, true),
      { waitEnd: 1 },
      windowUpdate(1, 5),
      frame(PRIORITY, 0, 1, priority(0)),
    ],
    expect: { none: true },
  },
  {
    rule: '5.1.1',
    what: 'HEADERS on an even stream id',
    steps: [openStream(2, UNARY, true)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1.1',
    what: 'a new stream id lower than the last',
    steps: [openStream(5, UNKNOWN, true), openStream(3, UNKNOWN, true)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1.1',
    what: 'a new stream id lower than the last, after the higher one closed',
    steps: [openStream(5, UNKNOWN, true), { waitEnd: 5 }, openStream(3, UNKNOWN, false)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.1.1',
    what: 'skipping stream ids is allowed',
    steps: [openStream(9, UNKNOWN, true), { waitEnd: 9 }],
    expect: { none: true },
  },
  {
    rule: '5.1.2',
    what: 'a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS (4)',
    steps: [held(1), held(3), held(5), held(7), held(9)],
    expect: { rst: [9, Code.REFUSED_STREAM] },
  },
  {
    rule: '5.3.1',
    what: 'HEADERS whose priority depends on its own stream',
    steps: [
      frame(
        HEADERS,
        END_HEADERS | END_STREAM | PRIORITY_FLAG,
        1,
        Buffer.concat([priority(1), requestBlock(UNARY)]),
      ),
    ],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '5.3.1',
    what: 'PRIORITY making an open stream depend on itself',
    steps: [held(1), frame(PRIORITY, 0, 1, priority(1))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '5.3.1',
    what: 'PRIORITY making an idle stream depend on itself',
    steps: [frame(PRIORITY, 0, 3, priority(3))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '5.3.2',
    what: 'PRIORITY on an idle stream is allowed',
    steps: [frame(PRIORITY, 0, 3, priority(1))],
    expect: { none: true },
  },
  {
    rule: '5.5',
    what: 'an unknown frame type is ignored',
    steps: [frame(0xfa, 0xff, 0, Buffer.alloc(7))],
    expect: { none: true },
  },
  { rule: '6.1', what: 'DATA on stream 0', steps: [data(0)], expect: { goaway: Code.PROTOCOL_ERROR } },
  {
    rule: '6.1',
    what: 'DATA whose padding fills the payload',
    steps: [open(1), frame(DATA, 0x8, 1, Buffer.of(4, 0, 0, 0))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.2',
    what: 'HEADERS on stream 0',
    steps: [openStream(0, UNARY, true)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.2',
    what: 'HEADERS whose padding exceeds the payload',
    steps: [frame(HEADERS, END_HEADERS | 0x8, 1, Buffer.of(10, 0x82))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.3',
    what: 'PRIORITY on stream 0',
    steps: [frame(PRIORITY, 0, 0, priority(1))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.3',
    what: 'PRIORITY of 4 bytes on an open stream',
    steps: [held(1), frame(PRIORITY, 0, 1, Buffer.alloc(4))],
    expect: { rst: [1, Code.FRAME_SIZE_ERROR] },
  },
  {
    rule: '6.4',
    what: 'RST_STREAM on stream 0',
    steps: [rstStream(0, 0)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.4',
    what: 'RST_STREAM of 3 bytes',
    steps: [held(1), frame(0x3, 0, 1, Buffer.alloc(3))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.5',
    what: 'SETTINGS ACK with a payload',
    steps: [frame(SETTINGS, 0x1, 0, Buffer.alloc(6))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.5',
    what: 'SETTINGS on a stream',
    steps: [frame(SETTINGS, 0, 1, Buffer.alloc(6))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.5',
    what: 'SETTINGS of 5 bytes',
    steps: [frame(SETTINGS, 0, 0, Buffer.alloc(5))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.5',
    what: 'an unknown setting is ignored',
    steps: [settings([[0x99, 7]])],
    expect: { none: true },
  },
  {
    rule: '6.5 (nghttp2 max_settings)',
    what: 'SETTINGS with 33 entries',
    steps: [settings(Array.from({ length: 33 }, () => [0x4, 65535] as const))],
    expect: { goaway: Code.ENHANCE_YOUR_CALM },
  },
  {
    rule: '6.5',
    what: 'SETTINGS with 32 entries is fine',
    steps: [settings(Array.from({ length: 32 }, (_, i) => [0x4, 65535 + i] as const))],
    expect: { none: true },
  },
  {
    rule: '6.5.2',
    what: 'SETTINGS_ENABLE_PUSH of 2',
    steps: [settings([[0x2, 2]])],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.5.2',
    what: 'SETTINGS_INITIAL_WINDOW_SIZE of 2^31',
    steps: [settings([[0x4, 2 ** 31]])],
    expect: { goaway: Code.FLOW_CONTROL_ERROR },
  },
  {
    rule: '6.5.2',
    what: 'SETTINGS_MAX_FRAME_SIZE of 16383',
    steps: [settings([[0x5, 16383]])],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.5.2',
    what: 'SETTINGS_MAX_FRAME_SIZE of 2^24',
    steps: [settings([[0x5, 2 ** 24]])],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.7',
    what: 'PING of 7 bytes',
    steps: [frame(PING, 0, 0, Buffer.alloc(7))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.7',
    what: 'PING on a stream',
    steps: [frame(PING, 0, 1, Buffer.alloc(8))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.8',
    what: 'GOAWAY on a stream',
    steps: [frame(GOAWAY, 0, 1, Buffer.alloc(8))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.8 (as nghttp2)',
    what: 'GOAWAY of 4 bytes',
    steps: [frame(GOAWAY, 0, 0, Buffer.alloc(4))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.9',
    what: 'WINDOW_UPDATE of 0 on the connection',
    steps: [windowUpdate(0, 0)],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.9',
    what: 'WINDOW_UPDATE of 0 on a stream',
    steps: [held(1), windowUpdate(1, 0)],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '6.9',
    what: 'WINDOW_UPDATE of 3 bytes',
    steps: [frame(0x8, 0, 0, Buffer.alloc(3))],
    expect: { goaway: Code.FRAME_SIZE_ERROR },
  },
  {
    rule: '6.9.1',
    what: 'the connection window over 2^31-1',
    steps: [windowUpdate(0, 2 ** 31 - 1)],
    expect: { goaway: Code.FLOW_CONTROL_ERROR },
  },
  {
    rule: '6.9.1',
    what: 'a stream window over 2^31-1',
    steps: [held(1), windowUpdate(1, 2 ** 31 - 1)],
    expect: { rst: [1, Code.FLOW_CONTROL_ERROR] },
  },
  {
    rule: '6.9.2',
    what: 'SETTINGS_INITIAL_WINDOW_SIZE pushing an open stream window over 2^31-1',
    steps: [held(1), windowUpdate(1, 2 ** 31 - 1 - 65535), settings([[0x4, 65536]])],
    expect: { goaway: Code.FLOW_CONTROL_ERROR },
  },
  {
    rule: '6.9.2',
    what: 'SETTINGS_INITIAL_WINDOW_SIZE up to the limit, then down, is fine',
    steps: [
      held(1),
      windowUpdate(1, 2 ** 31 - 1 - 65535 - 10),
      settings([
        [0x4, 65545],
        [0x4, 0],
      ]),
    ],
    expect: { none: true },
  },
  {
    rule: '6.10',
    what: 'CONTINUATION after END_HEADERS',
    steps: [held(1), frame(CONTINUATION, END_HEADERS, 1, block({ 'x-t': '1' }))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '6.10',
    what: 'CONTINUATION on another stream',
    steps: [frame(HEADERS, 0, 1, requestBlock(UNARY)), frame(CONTINUATION, END_HEADERS, 3, Buffer.alloc(0))],
    expect: { goaway: Code.PROTOCOL_ERROR },
  },
  {
    rule: '8.1',
    what: 'trailers without END_STREAM',
    steps: [open(1), frame(HEADERS, END_HEADERS, 1, block({ 'x-t': '1' }))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1',
    what: 'a pseudo-header in trailers',
    steps: [open(1), frame(HEADERS, END_HEADERS | END_STREAM, 1, block({ ':path': '/x' }))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length above the DATA received',
    steps: [frame(HEADERS, END_HEADERS, 1, block(req({ 'content-length': '10' }))), data(1, 5, END_STREAM)],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length below the DATA received',
    steps: [frame(HEADERS, END_HEADERS, 1, block(req({ 'content-length': '4' }))), data(1, 5)],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length that trailers cut short',
    steps: [
      frame(HEADERS, END_HEADERS, 1, block(req({ 'content-length': '10' }))),
      data(1, 5),
      frame(HEADERS, END_HEADERS | END_STREAM, 1, block({ 'x-t': '1' })),
    ],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length on a request with no DATA',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ 'content-length': '3' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length that is not a number',
    steps: [frame(HEADERS, END_HEADERS, 1, block(req({ 'content-length': '1x' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.1.1',
    what: 'content-length equal to the DATA is fine',
    steps: [
      frame(
        HEADERS,
        END_HEADERS,
        1,
        block(req({ 'content-length': String(echoMessage({ text: 'cl' }).length) })),
      ),
      frame(DATA, END_STREAM, 1, echoMessage({ text: 'cl' })),
      { waitEnd: 1 },
    ],
    expect: { none: true },
  },
  {
    rule: '8.2',
    what: 'an uppercase field name',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ 'X-Upper': '1' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.2.1',
    what: 'a field value with a line feed',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ 'x-v': 'a\nb' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.2.2',
    what: 'a connection-specific field',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ connection: 'close' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.2.2',
    what: 'TE other than trailers',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ te: 'gzip' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3',
    what: 'an unknown pseudo-header',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ ':foo': 'x' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3',
    what: 'a response pseudo-header in a request',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ ':status': '200' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3',
    what: 'a pseudo-header after a regular field',
    steps: [
      frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        Buffer.concat([
          block({ ':method': 'POST', ':scheme': 'http', 'x-a': '1' }),
          block({ ':path': UNARY }),
        ]),
      ),
    ],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3',
    what: 'a duplicate :path',
    steps: [
      frame(HEADERS, END_HEADERS | END_STREAM, 1, Buffer.concat([block({ ':path': UNARY }), block(req())])),
    ],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3.1',
    what: 'no :method',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block({ ':scheme': 'http', ':path': UNARY }))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  {
    rule: '8.3.1',
    what: 'an empty :path',
    steps: [frame(HEADERS, END_HEADERS | END_STREAM, 1, block(req({ ':path': '' })))],
    expect: { rst: [1, Code.PROTOCOL_ERROR] },
  },
  // ---- RFC 7541 ----
  {
    rule: '7541 2.3.3',
    what: 'an index of 0',
    steps: [hpack('80')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 2.3.3',
    what: 'an index beyond the tables',
    steps: [hpack('ff10')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 4.2',
    what: 'a table size update above SETTINGS_HEADER_TABLE_SIZE',
    steps: [hpack('3fe21f')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 4.2',
    what: 'a table size update after a field',
    steps: [hpack('8220')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 5.1',
    what: 'an integer past 2^28',
    steps: [hpack('ffffffffff0f')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 5.2',
    what: 'a Huffman string holding EOS',
    steps: [hpack('0084ffffffff')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 5.2',
    what: 'Huffman padding of zeros',
    steps: [hpack('008100')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 5.2',
    what: 'Huffman padding longer than 7 bits',
    steps: [hpack('00820fff')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
  {
    rule: '7541 4.3 (RFC 9113 4.3)',
    what: 'a truncated header block',
    steps: [hpack('0003616263')],
    expect: { goaway: Code.COMPRESSION_ERROR },
  },
];

describe('RFC 9113 and RFC 7541 conformance over raw frames', () => {
  let s: Started;
  before(async () => {
    s = await startEcho({ maxConcurrentStreams: 4 });
  });
  after(async () => {
    await s.server.close(100);
  });

  for (const row of ROWS) {
    it(`${row.rule}: ${row.what}`, { timeout: 20_000 }, async () => {
      const c = await RawConn.open(s.port, []);
      try {
        if (row.noSettings === true) {
          // RawConn.open sent a SETTINGS frame: use a bare socket instead
          c.destroy();
          const bare = await RawConn.openBare(s.port);
          await bare.write(Buffer.concat(row.steps as Buffer[]));
          assert.equal(await bare.goawayCode(), (row.expect as { goaway: number }).goaway);
          bare.destroy();
          return;
        }
        for (const step of row.steps) {
          if (Buffer.isBuffer(step)) await c.write(step);
          else await c.waitFor(() => c.ended.has(step.waitEnd), `the end of stream ${step.waitEnd}`);
        }
        const e = row.expect;
        if ('goaway' in e) {
          assert.equal(await c.goawayCode(), e.goaway, 'GOAWAY code');
        } else if ('rst' in e) {
          const [id, code] = e.rst;
          await c.waitFor(() => c.rst.has(id) || c.closed, `RST_STREAM on ${id}`);
          assert.equal(c.rst.get(id), code, 'RST_STREAM code');
          await c.sync();
          assert.equal(c.goaway, undefined, 'no GOAWAY');
        } else {
          await c.sync();
          assert.equal(c.goaway, undefined, 'no GOAWAY');
          assert.equal(c.closed, false, 'connection open');
          const want = e.rstOnly === undefined ? [] : [e.rstOnly];
          assert.deepEqual([...c.rst.entries()], want, 'RST_STREAM frames');
        }
      } finally {
        c.destroy();
      }
    });
  }

  it('5.1: remembers how recent streams closed past a long-lived stream (a ring of 2,048 ids)', {
    timeout: 30_000,
  }, async () => {
    const c = await RawConn.open(s.port, []);
    try {
      // stream 1 stays open while 2,048 later streams are answered early (and so reset by the server)
      const later = Array.from({ length: 2048 }, (_, i) => openStream(3 + 2 * i, UNKNOWN));
      await c.write(Buffer.concat([held(1), ...later]));
      await c.waitFor(() => c.ended.has(4097), 'the last answer');
      // stream 1 ends long after: the record of stream 4097 (same slot) must survive it
      await c.write(rstStream(1, 0x8));
      await c.write(data(4097));
      await c.sync();
      assert.equal(c.rst.get(4097), Code.NO_ERROR, 'late DATA after our RST_STREAM is ignored');
      assert.equal(c.goaway, undefined);
      // and a late HEADERS without END_STREAM on a stream older than the ring is a new stream with a lower id
      await c.write(openStream(1, UNKNOWN));
      assert.equal(await c.goawayCode(), Code.PROTOCOL_ERROR);
    } finally {
      c.destroy();
    }
  });

  it('serves a benign call after the sweep', async () => {
    assert.equal(await benignCall(s.address), '0');
  });
});
