// Input held for a paused stream costs about its own bytes: a DATA frame of one byte that arrived inside a large
// socket read is copied out of it, so a client cannot pin a whole read per byte of stream window (1 MiB of
// window would otherwise hold 48 GiB). Run on one session over a fake socket, so the reads are exactly as sent.

import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { H2Session, type H2Stream } from '../../src/grpc/h2/session.ts';
import { DATA, END_HEADERS, frame, HEADERS, PREFACE, requestBlock, settings } from './h2-raw.ts';

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

describe('input held for a paused stream', () => {
  it('is copied out of large reads: 1,000 one-byte DATA frames in 48 KB reads hold ~1 KB, not 48 MB', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const streams: H2Stream[] = [];
    const sock = new FakeSocket();
    const session = new H2Session(sock as unknown as Socket, {
      maxConcurrentStreams: 10,
      streamWindow: 1 << 20,
      connectionWindow: 16 << 20,
      maxHeaderListSize: 65536,
      onStream: (s) => {
        s.pause(); // a reader that takes nothing
        streams.push(s);
      },
    });
    sock.emit(
      'data',
      Buffer.concat([
        PREFACE,
        settings([]),
        frame(HEADERS, END_HEADERS, 1, requestBlock('/test.echo.Echo/Bidi')),
      ]),
    );
    assert.equal(streams.length, 1);
    // each read: one byte of DATA for the paused stream, then unknown frames (ignored): 48 KB
    const filler = Buffer.concat(Array.from({ length: 3 }, () => frame(0xfa, 0, 0, Buffer.alloc(16384))));
    const read = Buffer.concat([frame(DATA, 0, 1, Buffer.of(7)), filler]);
    gc();
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 1000; i++) {
      const chunk = Buffer.from(new ArrayBuffer(read.length)); // its own memory, as a socket read has
      read.copy(chunk);
      sock.emit('data', chunk);
    }
    // backing stores are released after the GC that finds them dead: let that finish
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.equal(session.destroyed, false);
    assert.equal(streams[0]!.inbox?.length, 1000, 'the bytes are held for the stream');
    assert.ok(
      grown < 8 << 20,
      `holding 1,000 bytes for a paused stream grew array buffers by ${grown} bytes`,
    );
    session.destroy();
  });
});
