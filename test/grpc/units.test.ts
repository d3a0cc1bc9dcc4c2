// Unit and property tests of the small pure pieces: grpc-timeout parsing, grpc-message percent-encoding,
// metadata conversion, status errors; and the HTTP/2 settings a client sees.

import * as assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  createGrpcServer,
  GrpcError,
  Metadata,
  parseTimeout,
  percentDecode,
  percentEncode,
  Status,
  statusName,
} from '../../src/grpc/index.ts';
import { addMetadataToHeaders } from '../../src/grpc/metadata.ts';

describe('grpc-timeout', () => {
  it('parses every unit and rejects malformed values', () => {
    assert.equal(parseTimeout('1H'), 3_600_000);
    assert.equal(parseTimeout('2M'), 120_000);
    assert.equal(parseTimeout('3S'), 3000);
    assert.equal(parseTimeout('250m'), 250);
    assert.equal(parseTimeout('1500u'), 1.5);
    assert.equal(parseTimeout('2000000n'), 2);
    assert.equal(parseTimeout('99999999S'), 99_999_999_000);
    for (const bad of ['', 'S', '10', '123456789S', '1.5S', '-1S', '10x', ' 1S'])
      assert.equal(parseTimeout(bad), undefined, bad);
  });
});

describe('grpc-message percent-encoding', () => {
  it('leaves printable ASCII alone and escapes the rest as UTF-8 bytes', () => {
    assert.equal(percentEncode('plain text: ok!'), 'plain text: ok!');
    assert.equal(percentEncode('50%'), '50%25');
    assert.equal(percentEncode('a\nb'), 'a%0Ab');
    assert.equal(percentEncode('é'), '%C3%A9');
    assert.equal(percentEncode('✓'), '%E2%9C%93');
  });
  it('round-trips any string (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), (s) => {
        const e = percentEncode(s);
        assert.match(e, /^[\x20-\x7e]*$/);
        assert.equal(percentDecode(e), s);
      }),
    );
  });
  it('keeps malformed escapes when decoding', () => {
    assert.equal(percentDecode('100%'), '100%');
    assert.equal(percentDecode('%zz%4'), '%zz%4');
  });
});

describe('metadata', () => {
  it('reads request headers without the transport ones, decoding -bin values', () => {
    const md = Metadata.fromHeaders({
      ':path': '/a/b',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '1S',
      'user-agent': 'x',
      'x-a': 'v',
      'x-b-bin': 'AAEC,/w',
    });
    assert.deepEqual([...md.keys()].sort(), ['user-agent', 'x-a', 'x-b-bin']);
    assert.equal(md.get('X-A'), 'v');
    assert.deepEqual(md.getAll('x-b-bin'), [Buffer.from([0, 1, 2]), Buffer.from([255])]);
  });
  it('writes user metadata, unpadded base64 for -bin, and refuses reserved or bad keys and values', () => {
    const h: http2.OutgoingHttpHeaders = {};
    addMetadataToHeaders(h, { 'x-one': 'v', 'x-bin': Buffer.from([1]), 'x-many': ['a', 'b'] });
    assert.deepEqual(h, { 'x-one': 'v', 'x-bin': 'AQ', 'x-many': ['a', 'b'] });
    assert.throws(() => addMetadataToHeaders({}, { 'grpc-status': '0' }), TypeError);
    assert.throws(() => addMetadataToHeaders({}, { 'content-type': 'x' }), TypeError);
    assert.throws(() => addMetadataToHeaders({}, { 'bad key': 'x' }), TypeError);
    assert.throws(() => addMetadataToHeaders({}, { 'x-a': 'line\nbreak' }), TypeError);
  });
});

describe('status', () => {
  it('names codes and clamps unknown ones', () => {
    assert.equal(statusName(Status.DEADLINE_EXCEEDED), 'DEADLINE_EXCEEDED');
    const e = new GrpcError(99 as never, 'x');
    assert.equal(e.code, Status.UNKNOWN);
    assert.equal(e.name, 'GrpcError');
    assert.ok(e instanceof Error);
  });
});

describe('HTTP/2 settings', () => {
  it('advertises big windows and the stream limit by default, and takes other values', async () => {
    for (const [opts, want] of [
      [{}, { maxConcurrentStreams: 1000, initialWindowSize: 1 << 20 }],
      [
        { maxConcurrentStreams: 7, streamWindowSize: 100_000 },
        { maxConcurrentStreams: 7, initialWindowSize: 100_000 },
      ],
    ] as const) {
      const server = createGrpcServer({ ...opts, reflection: false, health: false });
      const port = await server.listen('127.0.0.1', 0);
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const settings = await new Promise<http2.Settings>((resolve) =>
        session.once('remoteSettings', resolve),
      );
      assert.equal(settings.maxConcurrentStreams, want.maxConcurrentStreams);
      assert.equal(settings.initialWindowSize, want.initialWindowSize);
      // The connection window is raised with a WINDOW_UPDATE right after the preface.
      await new Promise((r) => setTimeout(r, 50));
      if (Object.keys(opts).length === 0)
        assert.ok(session.state.remoteWindowSize! >= 16 * 1024 * 1024 - 65_535);
      session.close();
      await server.close(500);
    }
  });
});
