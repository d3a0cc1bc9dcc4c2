// The server side of one HTTP/2 connection (RFC 9113), written for gRPC: frames are parsed straight from the
// socket's chunks and every frame the connection sends in one event-loop turn leaves in one socket write.
// It replaces node:http2 for the gRPC server because node:http2 costs a native stream object, a Duplex and
// several header objects per call; those live until a major GC (native handles pin them through scavenges),
// which cost both CPU per call and long GC pauses under load.
//
// Invariants:
// - Frames go out in the order they are queued. A stream's DATA never exceeds the peer's stream or connection
//   window nor its SETTINGS_MAX_FRAME_SIZE; DATA that does not fit waits on the stream, and anything queued
//   after it on that stream (trailers, END_STREAM) waits behind it.
// - Inbound flow control: the peer may never exceed the windows we granted (that is FLOW_CONTROL_ERROR).
//   The connection window is replenished as frames arrive; a stream's window as its data is delivered, so a
//   paused stream stops its sender after one window.
// - A stream closes exactly once ('close' is emitted once), when both sides have ended, on RST_STREAM either
//   way, or when the connection goes. A stream we end before the peer does is reset with NO_ERROR.
// - Connection errors (malformed frames, HPACK failures, window overflows) send GOAWAY with the error code
//   and destroy the socket; stream errors reset only that stream. Nothing the peer sends throws out.
// - Header blocks are decoded in full even for streams that are refused, so the HPACK table stays in step.
// - Input held between reads is bounded by one frame: a frame whose header is in is copied into a buffer of
//   its announced size (at most 16 KiB + 9) as its bytes come, each byte once; only an unfinished frame
//   header (< 9 bytes) or preface (< 24) is held as pieces.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { encodeHeaders, type HeaderValue, HpackDecoder, HpackError } from './hpack.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

const DEFAULT_WINDOW = 65535;
const MAX_WINDOW = 2 ** 31 - 1;
const OUR_MAX_FRAME = 16384;
const HEADER_TABLE_SIZE = 4096;
/** A stream buffers this much unsent DATA before write() asks the caller to wait for 'drain'. */
const STREAM_HIGH_WATER = 64 * 1024;
/**
 * Streams the peer may reset before we answered them: a burst of this many, refilled at RESET_RATE per second.
 * Beyond that the connection is dropped (ENHANCE_YOUR_CALM), the "rapid reset" defence (CVE-2023-44487).
 */
const RESET_BURST = 1000;
const RESET_RATE = 100;
/** Largest header block we assemble from HEADERS + CONTINUATION before giving up on the connection. */
const MAX_HEADER_BLOCK = 256 * 1024;
/** Each HEADERS/CONTINUATION frame counts this much on top of its payload (so empty CONTINUATIONs add up). */
const HEADER_FRAME_COST = 9;
/** After our final GOAWAY and end(), how long the peer has to close its side before the socket is destroyed. */
const END_GRACE_MS = 5000;
/** Output the socket may hold before we stop reading from it. */
const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;

export type IncomingHeaders = Record<string, string | string[] | undefined>;
export type OutgoingHeaders = Readonly<Record<string, HeaderValue>>;

export interface H2SessionOptions {
  readonly maxConcurrentStreams: number;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: how much each stream may send before we replenish. */
  readonly streamWindow: number;
  /** Our connection receive window. */
  readonly connectionWindow: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: larger request headers reset the stream. */
  readonly maxHeaderListSize: number;
  readonly onStream: (stream: H2Stream, headers: IncomingHeaders) => void;
}

class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

interface PendingData {
  readonly buf: Buffer;
  off: number;
}

/** One request/response stream. Its surface is the part of node:http2's ServerHttp2Stream the gRPC layer uses. */
export class H2Stream extends EventEmitter {
  readonly id: number;
  readonly session: H2Session;
  headersSent = false;
  destroyed = false;
  /** Set when the stream was reset (by either side) or lost with its connection. */
  rstCode: number | undefined = undefined;
  /** @internal */ remoteEnded = false;
  /** @internal */ localEnded = false;
  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal */ unacked = 0;
  /** @internal */ pending: PendingData[] | null = null;
  /** @internal */ pendingBytes = 0;
  /** @internal end requested but DATA still waits for window: 1 = END_STREAM, 2 = trailers wanted */
  endAfterPending = 0;
  /** @internal */ paused = false;
  /** @internal */ inbox: Buffer[] | null = null;
  /** @internal */ inboxEnd = false;
  #waitForTrailers = false;
  /** @internal */ needDrain = false;

  constructor(session: H2Session, id: number, sendWindow: number, recvWindow: number) {
    super();
    this.session = session;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get writableNeedDrain(): boolean {
    return this.needDrain;
  }

  /** Sends the response headers; with `endStream` they end the stream (a trailers-only response). */
  respond(headers: OutgoingHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void {
    if (this.destroyed) throw new Error('stream destroyed');
    if (this.headersSent) throw new Error('response headers already sent');
    this.headersSent = true;
    const end = options?.endStream === true;
    this.#waitForTrailers = options?.waitForTrailers === true;
    this.session.sendHeaders(this, encodeBlock(headers), end);
    if (end) this.session.localEnd(this);
  }

  /** Queues DATA; false when the caller should wait for 'drain'. */
  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.localEnded || this.endAfterPending !== 0) return false;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (buf.length > 0) this.session.sendData(this, buf);
    if (this.pendingBytes > STREAM_HIGH_WATER || this.session.congested) {
      this.needDrain = true;
      this.session.wantsDrain(this);
      return false;
    }
    return true;
  }

  /** Ends the response: emits 'wantTrailers' when the data is out (if asked for), else sends END_STREAM. */
  end(chunk?: Buffer | string): void {
    if (this.destroyed || this.localEnded || this.endAfterPending !== 0) return;
    if (chunk !== undefined) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (buf.length > 0) this.session.sendData(this, buf);
    }
    this.endAfterPending = this.#waitForTrailers ? 2 : 1;
    if (this.pending === null) this.finishEnd();
  }

  /** @internal all DATA is out: send END_STREAM, or ask for trailers. */
  finishEnd(): void {
    const how = this.endAfterPending;
    this.endAfterPending = 0;
    if (how === 2) {
      this.emit('wantTrailers');
      // a listener that sent no trailers still has to end the stream
      if (!this.localEnded && !this.destroyed) this.sendTrailers({});
    } else if (how === 1) {
      this.session.sendEmptyEnd(this);
      this.session.localEnd(this);
    }
  }

  sendTrailers(headers: OutgoingHeaders): void {
    if (this.destroyed || this.localEnded) return;
    this.session.sendHeaders(this, encodeBlock(headers), true);
    this.session.localEnd(this);
  }

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    if (!this.paused) return this;
    this.paused = false;
    const inbox = this.inbox;
    if (inbox !== null || this.inboxEnd) {
      process.nextTick(drainInbox, this);
    }
    return this;
  }

  /** Resets the stream (RST_STREAM with `code`, CANCEL by default). */
  close(code: number = H2Error.CANCEL): void {
    if (this.destroyed) return;
    this.session.reset(this, code);
  }
}

function drainInbox(s: H2Stream): void {
  while (!s.paused && !s.destroyed) {
    const inbox = s.inbox;
    if (inbox !== null && inbox.length > 0) {
      const chunk = inbox.shift()!;
      if (inbox.length === 0) s.inbox = null;
      s.session.deliver(s, chunk);
      continue;
    }
    if (s.inboxEnd) {
      s.inboxEnd = false;
      s.emit('end');
    }
    return;
  }
}

/** The server side of one HTTP/2 connection over `socket` (plain TCP or TLS with ALPN h2). */
export class H2Session extends EventEmitter {
  readonly socket: Socket;
  destroyed = false;
  readonly #opts: H2SessionOptions;
  readonly #streams = new Map<number, H2Stream>();
  readonly #decoder = new HpackDecoder(HEADER_TABLE_SIZE);
  #prefaceSeen = false;
  /** Input not parsed yet (an incomplete frame), in the chunks it came in, and how many bytes they hold. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** Bytes needed before parsing can go on: the rest of a frame header, or of the frame it announces. */
  #need = 0;
  /** A frame whose header is in but whose payload is not: filled up to `#asmLen` of its length. */
  #asm: Buffer | null = null;
  #asmLen = 0;
  #lastStreamId = 0;
  #goawaySent = false;
  // peer settings
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16384;
  #connSendWindow = DEFAULT_WINDOW;
  #connRecvWindow = DEFAULT_WINDOW;
  #connUnacked = 0;
  // header block being assembled from HEADERS + CONTINUATION
  #hbStream = 0;
  #hbEndStream = false;
  #hbParts: Buffer[] | null = null;
  #hbBytes = 0;
  // output
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  #blocked: H2Stream[] = [];
  #drainWaiters: H2Stream[] = [];
  #closed: H2Stream[] = [];
  #pings: ((err: Error | null) => void)[] = [];
  #resetTokens = RESET_BURST;
  #readPaused = false;
  /** The peer lowered SETTINGS_HEADER_TABLE_SIZE: our next header block must start with a size update. */
  #tableSizeUpdate = false;
  #resetRefilledAt = performance.now();

  constructor(socket: Socket, opts: H2SessionOptions) {
    super();
    this.socket = socket;
    this.#opts = opts;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {
      // 'close' follows
    });
    socket.on('close', () => this.#onSocketClose());
    socket.on('drain', () => this.#onSocketDrain());
    // Our SETTINGS, then open the connection window beyond the default.
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(SETTINGS_MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(opts.maxConcurrentStreams, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(opts.streamWindow, 8);
    settings.writeUInt16BE(SETTINGS_MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(opts.maxHeaderListSize, 14);
    this.#frame(SETTINGS, 0, 0, settings);
    if (opts.connectionWindow > DEFAULT_WINDOW) {
      this.#windowUpdate(0, opts.connectionWindow - DEFAULT_WINDOW);
      this.#connRecvWindow = opts.connectionWindow;
    }
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** True while the socket's own buffer is over its high-water mark. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Sends PING; `cb` gets null on the ACK, or an error if the connection ends first. */
  ping(cb: (err: Error | null) => void): boolean {
    if (this.destroyed) return false;
    this.#pings.push(cb);
    this.#frame(PING, 0, 0, Buffer.alloc(8));
    return true;
  }

  /** Graceful close: GOAWAY, refuse new streams, end the connection when the open ones are done. */
  close(): void {
    if (this.destroyed) return;
    this.#goaway(H2Error.NO_ERROR);
    this.#maybeEnd();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.#flush();
    this.socket.destroy();
    this.#onSocketClose();
  }

  // ---- output ----

  #frame(type: number, flags: number, stream: number, payload: Buffer | null): void {
    const len = payload === null ? 0 : payload.length;
    const h = Buffer.allocUnsafe(9);
    h[0] = len >>> 16;
    h[1] = (len >>> 8) & 0xff;
    h[2] = len & 0xff;
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    this.#push(h);
    if (payload !== null && len > 0) this.#push(payload);
  }

  #push(b: Buffer): void {
    this.#out.push(b);
    this.#outBytes += b.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(flushSession, this);
    }
  }

  /** @internal Writes everything queued in one socket write. */
  flushNow(): void {
    this.#flush();
  }

  #flush(): void {
    this.#flushScheduled = false;
    const out = this.#out;
    if (out.length > 0 && !this.destroyed && !this.socket.writableEnded) {
      const buf = out.length === 1 ? out[0]! : Buffer.concat(out, this.#outBytes);
      this.#out = [];
      this.#outBytes = 0;
      this.socket.write(buf);
      // A client that sends but does not read (PINGs, SETTINGS, refused streams) must not grow our buffer
      // without bound: stop reading it until the socket drains.
      if (this.socket.writableLength > OUTPUT_HIGH_WATER && !this.#readPaused) {
        this.#readPaused = true;
        this.socket.pause();
      }
    } else {
      this.#out = [];
      this.#outBytes = 0;
    }
    const closed = this.#closed;
    if (closed.length > 0) {
      this.#closed = [];
      for (const s of closed) s.emit('close');
      this.#maybeEnd();
    }
  }

  #windowUpdate(stream: number, inc: number): void {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(inc, 0);
    this.#frame(WINDOW_UPDATE, 0, stream, p);
  }

  /** @internal */
  sendHeaders(s: H2Stream, headerBlock: Buffer, endStream: boolean): void {
    let block = headerBlock;
    if (s.pending !== null) {
      // trailers after DATA still waiting for window: they wait too (only via finishEnd, so never here)
      throw new Error('headers queued behind pending data');
    }
    if (this.#tableSizeUpdate) {
      this.#tableSizeUpdate = false;
      block = Buffer.concat([TABLE_SIZE_ZERO, block]);
    }
    const max = this.#peerMaxFrame;
    if (block.length <= max) {
      this.#frame(HEADERS, FLAG_END_HEADERS | (endStream ? FLAG_END_STREAM : 0), s.id, block);
      return;
    }
    this.#frame(HEADERS, endStream ? FLAG_END_STREAM : 0, s.id, block.subarray(0, max));
    for (let off = max; off < block.length; off += max) {
      const end = Math.min(block.length, off + max);
      this.#frame(CONTINUATION, end === block.length ? FLAG_END_HEADERS : 0, s.id, block.subarray(off, end));
    }
  }

  /** @internal */
  sendData(s: H2Stream, buf: Buffer): void {
    if (s.pending !== null) {
      s.pending.push({ buf, off: 0 });
      s.pendingBytes += buf.length;
      return;
    }
    const off = this.#sendSome(s, buf, 0);
    if (off < buf.length) {
      s.pending = [{ buf, off }];
      s.pendingBytes = buf.length - off;
      this.#blocked.push(s);
    }
  }

  /** Sends as much of buf[off..] as the windows allow; returns the new offset. */
  #sendSome(s: H2Stream, buf: Buffer, off: number): number {
    while (off < buf.length) {
      const n = Math.min(buf.length - off, s.sendWindow, this.#connSendWindow, this.#peerMaxFrame);
      if (n <= 0) break;
      this.#frame(DATA, 0, s.id, off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
      s.sendWindow -= n;
      this.#connSendWindow -= n;
      off += n;
    }
    return off;
  }

  /** @internal */
  sendEmptyEnd(s: H2Stream): void {
    this.#frame(DATA, FLAG_END_STREAM, s.id, null);
  }

  /** Resumes streams waiting for window, in order. */
  #unblock(): void {
    if (this.#blocked.length === 0) return;
    const still: H2Stream[] = [];
    for (const s of this.#blocked) {
      if (s.destroyed || s.pending === null) continue;
      const q = s.pending;
      while (q.length > 0) {
        const p = q[0]!;
        const before = p.off;
        p.off = this.#sendSome(s, p.buf, p.off);
        s.pendingBytes -= p.off - before;
        if (p.off < p.buf.length) break;
        q.shift();
      }
      if (q.length > 0) {
        still.push(s);
        continue;
      }
      s.pending = null;
      s.pendingBytes = 0;
      if (s.endAfterPending !== 0) s.finishEnd();
      if (s.needDrain) {
        if (this.congested) {
          this.#drainWaiters.push(s);
        } else {
          s.needDrain = false;
          s.emit('drain');
        }
      }
    }
    this.#blocked = still;
  }

  /** @internal */
  wantsDrain(s: H2Stream): void {
    if (s.pending === null) this.#drainWaiters.push(s);
  }

  #onSocketDrain(): void {
    if (this.#readPaused && !this.socket.writableEnded) {
      this.#readPaused = false;
      this.socket.resume();
    }
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const s of w) {
      if (!s.needDrain || s.destroyed) continue;
      // a stream still waiting for flow-control window is woken by #unblock instead
      if (s.pending !== null) continue;
      s.needDrain = false;
      s.emit('drain');
    }
  }

  /** @internal Our side of the stream ended. */
  localEnd(s: H2Stream): void {
    s.localEnded = true;
    if (!s.remoteEnded) {
      // We answered before the client finished sending: ask it to stop, without error (RFC 9113 8.1).
      this.#rst(s.id, H2Error.NO_ERROR);
    }
    this.#close(s, undefined);
  }

  /** @internal */
  reset(s: H2Stream, code: number): void {
    this.#rst(s.id, code);
    this.#close(s, code);
  }

  #rst(id: number, code: number): void {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(code, 0);
    this.#frame(RST_STREAM, 0, id, p);
  }

  #close(s: H2Stream, code: number | undefined): void {
    if (s.destroyed) return;
    s.destroyed = true;
    s.rstCode = code;
    s.pending = null;
    s.inbox = null;
    this.#streams.delete(s.id);
    this.#closed.push(s);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(flushSession, this);
    }
  }

  #goaway(code: number): void {
    if (this.#goawaySent) return;
    this.#goawaySent = true;
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(this.#lastStreamId, 0);
    p.writeUInt32BE(code, 4);
    this.#frame(GOAWAY, 0, 0, p);
  }

  #maybeEnd(): void {
    if (this.#goawaySent && this.#streams.size === 0 && !this.destroyed && !this.socket.writableEnded) {
      this.#flush();
      // From here nothing more is written (#flush drops it: writing after end() would cut off what is still
      // buffered) and what arrives is ignored; the socket closes when the peer closes its side, or soon after.
      this.socket.end();
      setTimeout(destroySocket, END_GRACE_MS, this.socket).unref();
    }
  }

  #onSocketClose(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const s of this.#streams.values()) {
      s.destroyed = true;
      s.rstCode = H2Error.CANCEL;
      this.#closed.push(s);
    }
    this.#streams.clear();
    const pings = this.#pings;
    this.#pings = [];
    for (const cb of pings) cb(new Error('connection closed'));
    const closed = this.#closed;
    this.#closed = [];
    for (const s of closed) s.emit('close');
    this.emit('close');
  }

  #connectionError(code: number): void {
    this.#goaway(code);
    this.#flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.#onSocketClose();
  }

  // ---- input ----

  #onData(chunk: Buffer): void {
    if (this.destroyed || this.socket.writableEnded) return;
    let buf = chunk;
    const asm = this.#asm;
    if (asm !== null) {
      // A frame whose header we have: its bytes are copied into its own buffer as they come (one copy, and
      // the memory held is the frame's size however many reads it takes).
      const take = Math.min(chunk.length, asm.length - this.#asmLen);
      chunk.copy(asm, this.#asmLen, 0, take);
      this.#asmLen += take;
      if (this.#asmLen < asm.length) return;
      this.#asm = null;
      this.#parse(asm);
      if (take === chunk.length || this.destroyed || this.socket.writableEnded) return;
      buf = chunk.subarray(take);
    } else if (this.#heldBytes > 0) {
      // the rest of a frame header (under 9 bytes) or of the preface (under 24): a few pieces at most
      if (!this.#prefaceSeen) {
        // A preface in pieces is checked piece by piece: junk after a good start is refused at once.
        const n = Math.min(chunk.length, PREFACE.length - this.#heldBytes);
        if (!PREFACE.subarray(this.#heldBytes, this.#heldBytes + n).equals(chunk.subarray(0, n))) {
          this.#connectionError(H2Error.PROTOCOL_ERROR);
          return;
        }
      }
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      if (this.#heldBytes < this.#need) return;
      buf = Buffer.concat(this.#held, this.#heldBytes);
      this.#held = [];
      this.#heldBytes = 0;
    }
    this.#parse(buf);
  }

  #parse(buf: Buffer): void {
    try {
      let pos = 0;
      if (!this.#prefaceSeen) {
        if (buf.length < PREFACE.length) {
          if (!PREFACE.subarray(0, buf.length).equals(buf))
            throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad preface');
          this.#hold(buf, PREFACE.length);
          return;
        }
        if (!PREFACE.equals(buf.subarray(0, PREFACE.length)))
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad preface');
        this.#prefaceSeen = true;
        pos = PREFACE.length;
      }
      const end = buf.length;
      while (end - pos >= 9) {
        const len = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
        if (len > OUR_MAX_FRAME) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `frame of ${len} bytes`);
        if (end - pos - 9 < len) break;
        const type = buf[pos + 3]!;
        const flags = buf[pos + 4]!;
        const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
        const payload = buf.subarray(pos + 9, pos + 9 + len);
        pos += 9 + len;
        this.#onFrame(type, flags, id, payload);
        if (this.destroyed) return;
      }
      if (pos < end) {
        const rest = buf.subarray(pos);
        if (rest.length < 9) {
          this.#hold(rest, 9);
        } else {
          // header known (len checked above): a fresh buffer, since payload views are handed out
          const asm = Buffer.allocUnsafe(9 + ((rest[0]! << 16) | (rest[1]! << 8) | rest[2]!));
          rest.copy(asm, 0);
          this.#asm = asm;
          this.#asmLen = rest.length;
        }
      }
    } catch (e) {
      if (e instanceof ConnectionError) {
        this.#connectionError(e.code);
        return;
      }
      if (e instanceof HpackError) {
        this.#connectionError(H2Error.COMPRESSION_ERROR);
        return;
      }
      this.#connectionError(H2Error.INTERNAL_ERROR);
    }
  }

  #hold(rest: Buffer, need: number): void {
    this.#held = [rest];
    this.#heldBytes = rest.length;
    this.#need = need;
  }

  #onFrame(type: number, flags: number, id: number, p: Buffer): void {
    if (this.#hbParts !== null && type !== CONTINUATION) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'expected CONTINUATION');
    }
    switch (type) {
      case DATA:
        this.#onDataFrame(flags, id, p);
        return;
      case HEADERS:
        this.#onHeaders(flags, id, p);
        return;
      case CONTINUATION:
        if (this.#hbParts === null || id !== this.#hbStream) {
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        }
        this.#addBlock(p);
        if (flags & FLAG_END_HEADERS) this.#endBlock();
        return;
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (p.length !== 5) this.#streamError(id, H2Error.FRAME_SIZE_ERROR);
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM size');
        if (id > this.#lastStreamId)
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on idle stream');
        const s = this.#streams.get(id);
        if (s !== undefined) {
          this.#close(s, p.readUInt32BE(0));
          this.#chargeReset();
        }
        return;
      }
      case SETTINGS:
        this.#onSettings(flags, id, p);
        return;
      case PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case PING:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (p.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING size');
        if (flags & FLAG_ACK) {
          const cb = this.#pings.shift();
          cb?.(null);
        } else {
          this.#frame(PING, FLAG_ACK, 0, Buffer.from(p));
        }
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        // The client is leaving; it closes the connection when its calls are done.
        return;
      case WINDOW_UPDATE:
        this.#onWindowUpdate(id, p);
        return;
      default:
      // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  /** A stream the peer reset before we answered it costs a token; none left means the peer is abusive. */
  #chargeReset(): void {
    const now = performance.now();
    this.#resetTokens = Math.min(
      RESET_BURST,
      this.#resetTokens + ((now - this.#resetRefilledAt) * RESET_RATE) / 1000,
    );
    this.#resetRefilledAt = now;
    this.#resetTokens -= 1;
    if (this.#resetTokens < 0) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many stream resets');
  }

  #onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (p.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with payload');
      return;
    }
    if (p.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS size');
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (key === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW)
          throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
        const delta = v - this.#peerInitialWindow;
        this.#peerInitialWindow = v;
        for (const s of this.#streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW)
            throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
        }
      } else if (key === SETTINGS_MAX_FRAME_SIZE) {
        if (v < 16384 || v > 16777215)
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'MAX_FRAME_SIZE out of range');
        this.#peerMaxFrame = v;
      } else if (key === SETTINGS_ENABLE_PUSH) {
        if (v > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'ENABLE_PUSH out of range');
      } else if (key === SETTINGS_HEADER_TABLE_SIZE) {
        // Our encoder never uses the dynamic table; if the peer shrinks it, RFC 7541 4.2 still wants the change
        // acknowledged by a size update at the start of our next header block.
        if (v < HEADER_TABLE_SIZE) this.#tableSizeUpdate = true;
      }
    }
    this.#frame(SETTINGS, FLAG_ACK, 0, null);
    this.#unblock();
  }

  #onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE size');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.#connSendWindow += inc;
      if (this.#connSendWindow > MAX_WINDOW)
        throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
      this.#unblock();
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#lastStreamId)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE on idle stream');
      return; // a stream we already closed
    }
    if (inc === 0) {
      this.#streamError(id, H2Error.PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      this.#streamError(id, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.pending !== null) this.#unblock();
  }

  #streamError(id: number, code: number): void {
    const s = this.#streams.get(id);
    if (s !== undefined) {
      this.reset(s, code);
      // a reset the peer provoked frees a stream slot just like one it sent (the "MadeYouReset" pattern)
      this.#chargeReset();
    } else if (id <= this.#lastStreamId) {
      this.#rst(id, code);
    }
    // an idle stream gets nothing: RST_STREAM on an idle stream is itself a protocol error
  }

  #onHeaders(flags: number, id: number, p: Buffer): void {
    if (id === 0 || (id & 1) === 0)
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS on a bad stream id');
    let start = 0;
    let end = p.length;
    if (flags & FLAG_PADDED) {
      if (p.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'HEADERS padding');
      const pad = p[0]!;
      start = 1;
      end -= pad;
    }
    if (flags & FLAG_PRIORITY) start += 5;
    if (start > end) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding exceeds payload');
    this.#hbStream = id;
    this.#hbEndStream = (flags & FLAG_END_STREAM) !== 0;
    this.#hbParts = [];
    this.#hbBytes = 0;
    this.#addBlock(p.subarray(start, end));
    if (flags & FLAG_END_HEADERS) this.#endBlock();
  }

  #addBlock(b: Buffer): void {
    this.#hbBytes += b.length + HEADER_FRAME_COST;
    if (this.#hbBytes > MAX_HEADER_BLOCK)
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    if (b.length > 0) this.#hbParts!.push(b);
  }

  #endBlock(): void {
    const parts = this.#hbParts!;
    this.#hbParts = null;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const maxList = this.#opts.maxHeaderListSize;
    const id = this.#hbStream;
    const endStream = this.#hbEndStream;
    // no prototype: a header named "constructor" or "__proto__" is just a header
    const headers = Object.create(null) as IncomingHeaders;
    let listSize = 0;
    let bad: string | null = null;
    let regularSeen = false;
    this.#decoder.decode(block, (name, value) => {
      listSize += name.length + value.length + 32;
      if (bad !== null || listSize > maxList) return; // keep decoding (HPACK state) but stop collecting
      if (BAD_VALUE.test(value)) {
        bad = `invalid value of ${name}`;
        return;
      }
      if (name.charCodeAt(0) === 58) {
        if (regularSeen) bad = 'pseudo-header after a regular header';
        else if (name !== ':method' && name !== ':path' && name !== ':scheme' && name !== ':authority')
          bad = `unknown pseudo-header ${name}`;
        else if (headers[name] !== undefined) bad = `duplicate ${name}`;
      } else {
        regularSeen = true;
        if (!FIELD_NAME.test(name)) bad = 'invalid header name';
        else if (
          name === 'connection' ||
          name === 'keep-alive' ||
          name === 'proxy-connection' ||
          name === 'transfer-encoding' ||
          name === 'upgrade'
        )
          bad = `connection-specific header ${name}`;
        else if (name === 'te' && value !== 'trailers') bad = 'te other than trailers';
      }
      if (bad !== null) return;
      const prev = headers[name];
      if (prev === undefined) headers[name] = value;
      else if (typeof prev === 'string') headers[name] = [prev, value];
      else prev.push(value);
    });
    const existing = this.#streams.get(id);
    if (existing !== undefined) {
      // Trailers from the client: they must end the stream.
      if (!endStream || existing.remoteEnded) {
        this.#streamError(id, H2Error.PROTOCOL_ERROR);
        return;
      }
      this.#remoteEnd(existing);
      return;
    }
    if (id <= this.#lastStreamId) {
      // A stream we already closed (e.g. reset with NO_ERROR after answering): frames after our RST_STREAM
      // are ignored (RFC 9113 5.1); the block was decoded above, so the HPACK table stays in step.
      return;
    }
    this.#lastStreamId = id;
    if (this.#goawaySent || this.#streams.size >= this.#opts.maxConcurrentStreams) {
      this.#rst(id, H2Error.REFUSED_STREAM);
      return;
    }
    if (listSize > maxList) {
      this.#rst(id, H2Error.ENHANCE_YOUR_CALM);
      return;
    }
    if (
      bad === null &&
      (headers[':method'] === undefined || headers[':path'] === undefined || headers[':scheme'] === undefined)
    ) {
      bad = 'missing pseudo-header';
    }
    if (bad !== null) {
      this.#rst(id, H2Error.PROTOCOL_ERROR);
      return;
    }
    const s = new H2Stream(this, id, this.#peerInitialWindow, this.#opts.streamWindow);
    this.#streams.set(id, s);
    if (endStream) s.remoteEnded = true;
    this.#opts.onStream(s, headers);
    if (endStream && !s.destroyed) {
      if (s.paused) s.inboxEnd = true;
      else s.emit('end');
    }
  }

  #onDataFrame(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    const len = p.length;
    this.#connRecvWindow -= len;
    if (this.#connRecvWindow < 0)
      throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window exceeded');
    this.#connUnacked += len;
    if (this.#connUnacked >= this.#opts.connectionWindow / 2) {
      this.#windowUpdate(0, this.#connUnacked);
      this.#connRecvWindow += this.#connUnacked;
      this.#connUnacked = 0;
    }
    const s = this.#streams.get(id);
    if (s === undefined || s.remoteEnded) {
      if (id > this.#lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on idle stream');
      if (s !== undefined) this.#streamError(id, H2Error.STREAM_CLOSED);
      return; // data for a stream we already closed: dropped
    }
    let data = p;
    if (flags & FLAG_PADDED) {
      if (len < 1 || p[0]! >= len) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA padding');
      data = p.subarray(1, len - p[0]!);
    }
    s.recvWindow -= len;
    if (s.recvWindow < 0) {
      this.#streamError(id, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    // padding counts against the window but is never delivered: acknowledge it now
    s.unacked += len - data.length;
    if (data.length === 0 && s.unacked >= this.#opts.streamWindow / 2 && !s.remoteEnded) {
      this.#windowUpdate(s.id, s.unacked);
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (endStream) s.remoteEnded = true;
    if (data.length > 0) {
      if (s.paused || s.inbox !== null) {
        if (s.inbox === null) s.inbox = [data];
        else s.inbox.push(data);
      } else {
        this.deliver(s, data);
      }
    }
    if (endStream && !s.destroyed) {
      if (s.paused || s.inbox !== null) s.inboxEnd = true;
      else s.emit('end');
    }
  }

  /** @internal Hands data to the stream's reader and replenishes its window. */
  deliver(s: H2Stream, data: Buffer): void {
    s.emit('data', data);
    if (s.destroyed || s.remoteEnded) return;
    s.unacked += data.length;
    if (s.unacked >= this.#opts.streamWindow / 2) {
      this.#windowUpdate(s.id, s.unacked);
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  #remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (s.paused || s.inbox !== null) s.inboxEnd = true;
    else s.emit('end');
  }
}

/**
 * Header blocks of frozen header objects (the gRPC layer's constant response headers and OK trailers) are
 * encoded once: the encoder uses no dynamic table, so a block depends on nothing but its headers.
 */
const frozenBlocks = new WeakMap<OutgoingHeaders, Buffer>();
function encodeBlock(headers: OutgoingHeaders): Buffer {
  if (!Object.isFrozen(headers)) return encodeHeaders(headers);
  let block = frozenBlocks.get(headers);
  if (block === undefined) {
    block = encodeHeaders(headers);
    frozenBlocks.set(headers, block);
  }
  return block;
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}

function flushSession(s: H2Session): void {
  s.flushNow();
}

/** A regular field name: lowercase token characters only (RFC 9113 8.2.1, RFC 9110 5.1). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** Field values must not hold NUL, CR or LF (RFC 9113 8.2.1). */
const BAD_VALUE = /[\0\r\n]/;
/** An HPACK dynamic table size update to 0. */
const TABLE_SIZE_ZERO = Buffer.of(0x20);
