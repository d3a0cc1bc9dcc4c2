// The server's own HTTP/2 engine (src/grpc/h2): HPACK against RFC 7541's examples and random round trips, and
// the connection against node:http2's client (nghttp2, an independent implementation) and hand-made frames:
// flow control both ways, padding, CONTINUATION, oversized headers, PING, and connection errors that must end
// with the right GOAWAY code while the server keeps serving other clients.

import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  encodeHeaders,
  HpackDecoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
} from '../../src/grpc/h2/hpack.ts';
import { encodeFrame } from '../../src/grpc/index.ts';
import { echoService, type Started, startEcho, waitIdle } from './helpers.ts';

const EchoReq = echoService().methods[0]!.requestType;
const EchoRep = echoService().methods[0]!.responseType;

function decodeAll(d: HpackDecoder, hex: string): [string, string][] {
  const out: [string, string][] = [];
  d.decode(Buffer.from(hex, 'hex'), (n, v) => out.push([n, v]));
  return out;
}

describe('HPACK', () => {
  it('decodes the request examples of RFC 7541 C.3 (plain) and C.4 (Huffman), tracking the table size', () => {
    for (const [blocks, label] of [
      [
        [
          '828684410f7777772e6578616d706c652e636f6d',
          '828684be58086e6f2d6361636865',
          '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565',
        ],
        'C.3',
      ],
      [
        [
          '828684418cf1e3c2e5f23a6ba0ab90f4ff',
          '828684be5886a8eb10649cbf',
          '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf',
        ],
        'C.4',
      ],
    ] as const) {
      const d = new HpackDecoder();
      const base: [string, string][] = [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
      ];
      assert.deepEqual(decodeAll(d, blocks[0]), base, label);
      assert.equal(d.tableSize, 57);
      assert.deepEqual(decodeAll(d, blocks[1]), [...base, ['cache-control', 'no-cache']], label);
      assert.equal(d.tableSize, 110);
      assert.deepEqual(
        decodeAll(d, blocks[2]),
        [
          [':method', 'GET'],
          [':scheme', 'https'],
          [':path', '/index.html'],
          [':authority', 'www.example.com'],
          ['custom-key', 'custom-value'],
        ],
        label,
      );
      assert.equal(d.tableSize, 164);
    }
  });

  it('Huffman-decodes what it encodes, for any octets', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const s = Buffer.from(bytes).toString('latin1');
        const e = huffmanEncode(s);
        assert.equal(huffmanDecode(e, 0, e.length), s);
      }),
    );
  });

  it('round-trips encoded header blocks, with long names and values and repeated fields', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.stringMatching(/^[a-z][a-z0-9-]{0,200}$/),
          fc.oneof(
            fc.stringMatching(/^[ -~]{0,300}$/),
            fc.array(fc.stringMatching(/^[!-~]{0,20}$/), { minLength: 1, maxLength: 3 }),
          ),
        ),
        (h) => {
          const got: Record<string, string[]> = {};
          new HpackDecoder().decode(encodeHeaders({ ':status': 200, ...h }), (n, v) => {
            const list = got[n];
            if (list === undefined) got[n] = [v];
            else list.push(v);
          });
          const want: Record<string, string[]> = { ':status': ['200'] };
          for (const [k, v] of Object.entries(h)) want[k] = typeof v === 'string' ? [v] : [...v];
          assert.deepEqual(got, want);
        },
      ),
    );
  });

  it('evicts oldest entries to stay within the table size, and honours size updates', () => {
    const d = new HpackDecoder(100);
    // two literal-with-indexing fields of 32+1+30 = 63 octets each: the second evicts the first
    const lit = (name: string, value: string): string =>
      Buffer.concat([
        Buffer.of(0x40, name.length),
        Buffer.from(name),
        Buffer.of(value.length),
        Buffer.from(value),
      ]).toString('hex');
    decodeAll(d, lit('a', 'x'.repeat(30)));
    decodeAll(d, lit('b', 'y'.repeat(30)));
    assert.equal(d.tableEntries, 1);
    assert.deepEqual(decodeAll(d, 'be'), [['b', 'y'.repeat(30)]]);
    assert.throws(() => decodeAll(d, 'bf'), HpackError); // the evicted entry
    decodeAll(d, '20'); // size update to 0 empties the table
    assert.equal(d.tableEntries, 0);
    assert.throws(() => decodeAll(new HpackDecoder(100), '3f46'), /over the limit/); // update to 101
  });

  it('rejects malformed blocks', () => {
    const bad = [
      '80', // index 0
      'ff00', // index 127: beyond the static and the (empty) dynamic table
      '7f', // truncated integer
      '7fffffffffff0f', // integer too large
      '0003616263', // literal name "abc" with no value
      '0001610561', // value length 5 but one byte
      '008100', // Huffman name whose padding is zeros
      '0084ffffffff', // Huffman string holding EOS
      '8220', // size update after a field
    ];
    for (const hex of bad) assert.throws(() => decodeAll(new HpackDecoder(), hex), HpackError, hex);
  });
});

// ---- the connection ----

const GRPC_HEADERS = {
  ':method': 'POST',
  'content-type': 'application/grpc',
  te: 'trailers',
};

interface Reply {
  status: number | undefined;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
  rst: number;
}

function call(
  sess: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<Reply> {
  return new Promise((resolve) => {
    const r = sess.request({ ...GRPC_HEADERS, ':path': path, ...extra });
    const chunks: Buffer[] = [];
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    r.on('response', (h) => {
      headers = h;
    });
    r.on('trailers', (t) => {
      trailers = t;
    });
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('error', () => {});
    r.on('close', () =>
      resolve({
        status: headers[':status'] as number | undefined,
        headers,
        trailers,
        body: Buffer.concat(chunks),
        rst: r.rstCode ?? 0,
      }),
    );
    r.end(body);
  });
}

function echoFrame(req: object): Buffer {
  return encodeFrame(EchoReq.encode(req).finish());
}

function connectH2(address: string, options: http2.ClientSessionOptions = {}): http2.ClientHttp2Session {
  const s = http2.connect(`http://${address}`, options);
  s.on('error', () => {});
  return s;
}

/** Sends raw bytes after the preface and a SETTINGS frame; resolves with the GOAWAY error code, or -1 on close. */
function rawGoaway(port: number, frames: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const sock: Socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (code: number): void => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(code);
    };
    sock.on('connect', () => {
      sock.write(
        Buffer.concat([
          Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
          frame(4, 0, 0, Buffer.alloc(0)),
          frames,
        ]),
      );
    });
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        if (buf[3] === 7) finish(buf.readUInt32BE(9 + 4));
        buf = buf.subarray(9 + len);
      }
    });
    sock.on('error', () => finish(-1));
    sock.on('close', () => finish(-1));
  });
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

describe('HTTP/2 engine', () => {
  let s: Started;
  before(async () => {
    s = await startEcho();
  });
  after(async () => {
    await s.server.close(100);
  });

  async function stillServing(): Promise<void> {
    const sess = connectH2(s.address);
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'ok' }));
    sess.close();
    assert.equal(r.trailers['grpc-status'], '0');
    assert.equal((EchoRep.decode(r.body.subarray(5)) as { text?: string }).text, 'ok');
  }

  it('sends a 1 MiB reply within a client window of 1 KiB (stream and connection flow control)', async () => {
    const sess = connectH2(s.address, { settings: { initialWindowSize: 1024 } });
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ reply_size: 1 << 20 }));
    sess.close();
    assert.equal(r.trailers['grpc-status'], '0');
    const rep = EchoRep.decode(r.body.subarray(5)) as { payload?: Uint8Array };
    assert.equal(rep.payload?.length, 1 << 20);
  });

  it('receives padded HEADERS and DATA, and requests larger than a stream window', async () => {
    const sess = connectH2(s.address, { paddingStrategy: http2.constants.PADDING_STRATEGY_MAX });
    const payload = Buffer.alloc(3 << 20, 7);
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'padded', payload }));
    sess.close();
    assert.equal(r.trailers['grpc-status'], '0');
    assert.equal((EchoRep.decode(r.body.subarray(5)) as { text?: string }).text, 'padded');
  });

  it('assembles header blocks split over CONTINUATION frames, and echoes a 40 KB header back', async () => {
    const sess = connectH2(s.address);
    const big = 'v'.repeat(40_000);
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'hi' }), { 'x-echo-header': big });
    sess.close();
    assert.equal(r.trailers['grpc-status'], '0');
    assert.equal(r.headers['x-echo-header'], big);
  });

  it('resets a stream whose headers exceed the header list limit, and serves the next one', async () => {
    const sess = connectH2(s.address, { maxSendHeaderBlockLength: 1 << 20 });
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'x' }), {
      'x-big': 'v'.repeat(70_000),
    });
    assert.notEqual(r.rst, 0);
    assert.equal(r.trailers['grpc-status'], undefined);
    const ok = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'next' }));
    sess.close();
    assert.equal(ok.trailers['grpc-status'], '0');
  });

  it('takes header names that are Object.prototype properties as plain metadata', async () => {
    const sess = connectH2(s.address);
    const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'proto' }), {
      constructor: 'c',
      tostring: 't',
      'x-echo-header': 'still here',
    });
    sess.close();
    assert.equal(r.trailers['grpc-status'], '0');
    assert.equal(r.headers['x-echo-header'], 'still here');
  });

  it('answers PING, and serves many concurrent calls on one connection', async () => {
    const sess = connectH2(s.address);
    await once(sess, 'connect'); // node cancels a ping sent before the session connects
    const rtt = await new Promise<number>((resolve, reject) =>
      sess.ping((err, ms) => (err === null ? resolve(ms) : reject(err))),
    );
    assert.ok(rtt >= 0);
    const replies = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        call(sess, '/test.echo.Echo/Unary', echoFrame({ text: `m${i}` })),
      ),
    );
    sess.close();
    replies.forEach((r, i) => {
      assert.equal(r.trailers['grpc-status'], '0');
      assert.equal((EchoRep.decode(r.body.subarray(5)) as { text?: string }).text, `m${i}`);
    });
  });

  it('ends connections that break the protocol with the right GOAWAY code', async () => {
    const hdr = (id: number, block: Buffer, flags = 0x5): Buffer => frame(1, flags, id, block);
    const cases: [string, Buffer, number][] = [
      ['frame over SETTINGS_MAX_FRAME_SIZE', frame(0, 0, 1, Buffer.alloc(16385)), 0x6],
      ['DATA on stream 0', frame(0, 0, 0, Buffer.alloc(1)), 0x1],
      ['DATA on an idle stream', frame(0, 0, 5, Buffer.alloc(1)), 0x1],
      ['HEADERS with an HPACK index out of range', hdr(1, Buffer.of(0xff, 0x10)), 0x9],
      ['HEADERS on an even stream id', hdr(2, Buffer.of(0x83)), 0x1],
      ['connection WINDOW_UPDATE overflow', frame(8, 0, 0, Buffer.of(0x7f, 0xff, 0xff, 0xff)), 0x3],
      ['WINDOW_UPDATE of 0 on the connection', frame(8, 0, 0, Buffer.alloc(4)), 0x1],
      ['PING of 7 bytes', frame(6, 0, 0, Buffer.alloc(7)), 0x6],
      ['SETTINGS of 5 bytes', frame(4, 0, 0, Buffer.alloc(5)), 0x6],
      ['PUSH_PROMISE from a client', frame(5, 0x4, 1, Buffer.alloc(4)), 0x1],
      ['CONTINUATION without HEADERS', frame(9, 0x4, 1, Buffer.of(0x83)), 0x1],
      [
        'HEADERS interrupted by another frame',
        Buffer.concat([hdr(1, Buffer.of(0x83), 0x0), frame(6, 0, 0, Buffer.alloc(8))]),
        0x1,
      ],
      ['MAX_FRAME_SIZE below 16384', frame(4, 0, 0, Buffer.of(0, 5, 0, 0, 0x10, 0)), 0x1],
    ];
    // A flood of empty CONTINUATION frames is bounded like a large header block.
    cases.push([
      'endless empty CONTINUATION frames',
      Buffer.concat([
        hdr(1, Buffer.alloc(0), 0x0),
        ...Array.from({ length: 30_000 }, () => frame(9, 0, 1, Buffer.alloc(0))),
      ]),
      0xb,
    ]);
    // Streams the server resets because the client misbehaved count against the rapid-reset budget.
    const open = encodeHeaders({
      ':method': 'POST',
      ':scheme': 'http',
      ':path': '/test.echo.Echo/Unary',
      'content-type': 'application/grpc',
    });
    const provoked: Buffer[] = [];
    for (let i = 0; i < 1100; i++) {
      const id = 2 * i + 1;
      provoked.push(frame(1, 0x4, id, open), frame(8, 0, id, Buffer.alloc(4)));
    }
    cases.push(['1100 streams reset for WINDOW_UPDATE of 0', Buffer.concat(provoked), 0xb]);
    for (const [what, bytes, code] of cases) {
      assert.equal(await rawGoaway(s.port, bytes), code, what);
      await waitIdle(s.server, true).catch(() => assert.fail(`session left open after: ${what}`));
    }
    await waitIdle(s.server, true);
    await stillServing();
  });

  it('ignores unknown frame types and PRIORITY, and closes a connection with a bad preface', async () => {
    // an unknown frame type, then PRIORITY, then a PING with its ACK expected
    const got = await new Promise<Buffer>((resolve) => {
      const sock = connect(s.port, '127.0.0.1');
      let buf = Buffer.alloc(0);
      sock.on('connect', () =>
        sock.write(
          Buffer.concat([
            Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
            frame(4, 0, 0, Buffer.alloc(0)),
            frame(0xfa, 0, 0, Buffer.alloc(3)),
            frame(2, 0, 3, Buffer.alloc(5)),
            frame(6, 0, 0, Buffer.from('pingpong')),
          ]),
        ),
      );
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        const i = buf.indexOf('pingpong');
        if (i >= 9 && buf[i - 6] === 6 && buf[i - 5] === 1) {
          sock.destroy();
          resolve(buf);
        }
      });
    });
    assert.ok(got.length > 0);
    const closed = await new Promise<boolean>((resolve) => {
      const sock = connect(s.port, '127.0.0.1');
      sock.on('connect', () => sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      sock.on('data', () => {});
      sock.on('close', () => resolve(true));
      sock.on('error', () => {});
    });
    assert.ok(closed);
    await stillServing();
  });

  it('parses a connection whose bytes arrive one at a time, and in random pieces', {
    timeout: 30_000,
  }, async () => {
    // A 30 KB request in two DATA frames (each under the 16 KB frame limit), so pieces end inside
    // frame headers, inside payloads and exactly on frame boundaries.
    const body = echoFrame({ text: 'piecewise', payload: Buffer.alloc(30_000, 3) });
    const half = 15_000;
    const request = Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      frame(4, 0, 0, Buffer.alloc(0)),
      frame(
        1,
        0x4,
        1,
        encodeHeaders({
          ':method': 'POST',
          ':scheme': 'http',
          ':path': '/test.echo.Echo/Unary',
          'content-type': 'application/grpc',
        }),
      ),
      frame(0, 0, 1, body.subarray(0, half)),
      frame(0, 0x1, 1, body.subarray(half)),
    ]);
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const pieces of ['bytes', 'random'] as const) {
      const got = await new Promise<Buffer>((resolve) => {
        const sock = connect(s.port, '127.0.0.1');
        sock.setNoDelay(true);
        let buf = Buffer.alloc(0);
        const done = (): void => {
          sock.destroy();
          resolve(buf);
        };
        sock.on('data', (c: Buffer) => {
          buf = Buffer.concat([buf, c]);
          if (buf.includes('piecewise')) done();
        });
        // A connection the server ends (a parse error) fails the assertion below instead of hanging.
        sock.on('close', done);
        sock.on('error', done);
        sock.on('connect', async () => {
          let pos = 0;
          while (pos < request.length && !sock.destroyed) {
            const n = pieces === 'bytes' ? 1 : 1 + rand(3000);
            sock.write(request.subarray(pos, pos + n));
            pos += n;
            // Byte by byte only through the preface, the headers and the first DATA frame's header.
            if (pieces === 'bytes' && pos > 200) {
              sock.write(request.subarray(pos));
              pos = request.length;
            }
            await new Promise((r) => setImmediate(r));
          }
        });
      });
      assert.ok(got.includes('piecewise'), `${pieces}: got ${got.length} bytes without the echo`);
    }
    await stillServing();
  });

  it('serves the same calls on the node:http2 engine (http2Engine: "node")', async () => {
    const n = await startEcho({ http2Engine: 'node' });
    try {
      const sess = connectH2(n.address);
      const r = await call(sess, '/test.echo.Echo/Unary', echoFrame({ text: 'node' }));
      sess.close();
      assert.equal(r.trailers['grpc-status'], '0');
      assert.equal((EchoRep.decode(r.body.subarray(5)) as { text?: string }).text, 'node');
    } finally {
      await n.server.close(100);
    }
  });
});

describe('HTTP/2 engine input', () => {
  it('holds a frame that arrives one byte per read in about its own size, not a Buffer per read', async () => {
    const { H2Session } = await import('../../src/grpc/h2/session.ts');
    const { EventEmitter } = await import('node:events');
    const v8 = await import('node:v8');
    const vm = await import('node:vm');
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    class FakeSocket extends EventEmitter {
      writableEnded = false;
      writableLength = 0;
      writableNeedDrain = false;
      write(): boolean {
        return true;
      }
      end(): void {
        this.writableEnded = true;
      }
      destroy(): void {}
      pause(): void {}
      resume(): void {}
    }
    const opts = {
      maxConcurrentStreams: 10,
      streamWindow: 65535,
      connectionWindow: 65535,
      maxHeaderListSize: 65536,
      onStream: () => {},
    };
    const head = Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      frame(0xfa, 0, 0, Buffer.alloc(0)),
    ]);
    head.writeUIntBE(16384, head.length - 9, 3); // an unknown frame type announcing 16 KB
    gc();
    const before = process.memoryUsage().heapUsed;
    const sessions: unknown[] = [];
    for (let c = 0; c < 20; c++) {
      const sock = new FakeSocket();
      sessions.push(new H2Session(sock as unknown as Socket, opts));
      sock.emit('data', head);
      // Each read its own ArrayBuffer, as a socket's are; the last byte never comes.
      for (let i = 0; i < 16383; i++) sock.emit('data', Buffer.from(new ArrayBuffer(1)));
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    assert.equal(sessions.length, 20);
    // 20 frames of 16 KB are 320 KB; a Buffer kept per read would be ~3 MB per connection.
    assert.ok(grown < 8 * 1024 * 1024, `20 connections holding 16 KB each grew the heap by ${grown} bytes`);
  });

  it('refuses junk after a good start of the preface at once, not after 24 bytes', {
    timeout: 10_000,
  }, async () => {
    const s = await startEcho();
    try {
      const sock = connect(s.port, '127.0.0.1');
      await once(sock, 'connect');
      sock.write('PRI * HTTP/2.0\r\n');
      await new Promise((r) => setTimeout(r, 20));
      const closed = once(sock, 'close');
      sock.on('error', () => {});
      sock.on('data', () => {});
      sock.write('XXXX');
      await closed; // without the piecewise check the server waits for 4 more bytes: this times out
    } finally {
      await s.server.close(100);
    }
  });
});
