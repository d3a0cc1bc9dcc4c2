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
// - Outbound windows cost O(1) per frame received, whatever the number of streams (docs/http2-limits.md):
//   a stream's send window is kept as `sendCredit` relative to the peer's SETTINGS_INITIAL_WINDOW_SIZE, so a
//   settings change touches no stream. A stream with DATA waiting is in exactly one of two places: the ready
//   queue (its own window was open when it joined, it waits for the connection window; FIFO; a stream whose
//   window a lowered setting shut moves to the heap when the queue reaches it) or the starved heap (its own
//   window is shut; a max-heap on sendCredit). A connection WINDOW_UPDATE serves the ready queue from its head
//   and stops when the window is spent; a stream WINDOW_UPDATE moves one stream; a raised initial window moves
//   only the heap's top streams that now have at least `wakeMin()` bytes of window.
// - Inbound flow control: the peer may never exceed the windows we granted (that is FLOW_CONTROL_ERROR).
//   The connection window is replenished as frames arrive; a stream's window as its data is delivered to the
//   reader, so a paused stream (the reader holds enough) stops its sender after one stream window.
// - Stream states follow RFC 9113 5.1: ids only grow (a lower new id is a connection PROTOCOL_ERROR); DATA or
//   HEADERS on a half-closed (remote) or closed stream is STREAM_CLOSED, except on a stream we reset, whose late
//   frames are ignored. How each of the last CLOSED_RING stream ids closed is kept in a ring of bytes.
// - At most MAX_SETTINGS_ENTRIES entries per SETTINGS frame (more is ENHANCE_YOUR_CALM, as nghttp2 does).
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
/** Entries a SETTINGS frame may carry (nghttp2's default max_settings); there are only 6 settings defined. */
export const MAX_SETTINGS_ENTRIES = 32;
/**
 * A stream starved by its own window is woken by a raised SETTINGS_INITIAL_WINDOW_SIZE only once it may send at
 * least this much (or a quarter of the initial window, if smaller): a peer nudging the setting by one byte per
 * frame must not make us send a 1-byte DATA frame on every blocked stream per frame.
 */
const WAKE_MIN = 1024;
/** How many of the most recent stream ids remember how they closed (a power of two). */
const CLOSED_RING = 2048;
/** How a stream id below the highest one seen ended (RFC 9113 5.1), in the ring. */
const ID_SKIPPED = 0; // never opened (implicitly closed), or an even id
const ID_OPEN = 1;
const ID_RESET_BY_US = 2; // we sent RST_STREAM: the peer's late frames are ignored
const ID_CLOSED = 3; // both sides ended, or the peer reset it: more DATA/HEADERS is STREAM_CLOSED
const ID_FORGOTTEN = 4; // older than the ring

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
  /** @internal send window minus the peer's SETTINGS_INITIAL_WINDOW_SIZE (so a settings change is O(1)) */
  sendCredit = 0;
  /** @internal index in the session's starved heap, or -1 */
  heapIndex = -1;
  /** @internal in the session's ready queue */
  inReady = false;
  /** @internal the request's content-length, or -1 */
  contentLength = -1;
  /** @internal DATA bytes received, counted only when contentLength >= 0 */
  dataReceived = 0;
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

  constructor(session: H2Session, id: number, recvWindow: number) {
    super();
    this.session = session;
    this.id = id;
    this.recvWindow = recvWindow;
  }

  get writableNeedDrain(): boolean {
    return this.needDrain;
  }

  /** DATA written but not sent yet (waiting for flow-control window), as on a Writable. */
  get writableLength(): number {
    return this.pendingBytes;
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
  #hbSelfDep = false;
  // output
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  /** Sum of the streams' pendingBytes: DATA waiting for flow-control window. */
  #queuedData = 0;
  /** Streams whose own window is open, waiting for the connection window (FIFO from #readyHead). */
  #ready: H2Stream[] = [];
  #readyHead = 0;
  /** Streams with DATA waiting whose own window is shut: a max-heap on sendCredit. */
  #starved: H2Stream[] = [];
  /** An upper bound of every open stream's sendCredit (exact after #maxCredit recomputes it). */
  #creditBound = 0;
  /** How recent stream ids closed (ID_*), at (id >>> 1) & (CLOSED_RING - 1); made on the first stream. */
  #idStates: Uint8Array | null = null;
  #settingsSeen = false;
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

  /**
   * Output this connection holds that the client has not taken: DATA waiting for window, frames not yet
   * written, and the socket's unsent buffer. The gRPC layer refuses responses beyond its cap.
   */
  get pendingOutput(): number {
    return this.#queuedData + this.#outBytes + this.socket.writableLength;
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
      this.#queuedData += buf.length;
      return;
    }
    const off = this.#sendSome(s, buf, 0);
    if (off < buf.length) {
      s.pending = [{ buf, off }];
      s.pendingBytes = buf.length - off;
      this.#queuedData += buf.length - off;
      if (s.sendCredit + this.#peerInitialWindow > 0) this.#readyPush(s);
      else this.#heapPush(s);
    }
  }

  /** Sends as much of buf[off..] as the windows allow; returns the new offset. */
  #sendSome(s: H2Stream, buf: Buffer, off: number): number {
    while (off < buf.length) {
      const n = Math.min(
        buf.length - off,
        s.sendCredit + this.#peerInitialWindow,
        this.#connSendWindow,
        this.#peerMaxFrame,
      );
      if (n <= 0) break;
      this.#frame(DATA, 0, s.id, off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
      s.sendCredit -= n;
      this.#connSendWindow -= n;
      off += n;
    }
    return off;
  }

  /** @internal */
  sendEmptyEnd(s: H2Stream): void {
    this.#frame(DATA, FLAG_END_STREAM, s.id, null);
  }

  /** Sends what the windows allow of a stream's waiting DATA; true when none is left. */
  #sendPending(s: H2Stream): boolean {
    const q = s.pending!;
    while (q.length > 0) {
      const p = q[0]!;
      const before = p.off;
      p.off = this.#sendSome(s, p.buf, p.off);
      s.pendingBytes -= p.off - before;
      this.#queuedData -= p.off - before;
      if (p.off < p.buf.length) return false;
      q.shift();
    }
    return true;
  }

  /** All of a stream's waiting DATA is out: what was queued behind it (END_STREAM, trailers, 'drain') goes. */
  #pendingDone(s: H2Stream): void {
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

  #readyPush(s: H2Stream): void {
    s.inReady = true;
    this.#ready.push(s);
  }

  /**
   * Serves the ready queue while the connection window lasts. Each stream taken off the queue either finished,
   * or moved to the heap (its own window shut); the loop stops at the first stream the connection window could
   * not satisfy, so the work is O(1) plus the frames sent. Invariant after: the queue is empty or the
   * connection window is spent.
   */
  #serveReady(): void {
    const q = this.#ready;
    let head = this.#readyHead;
    while (head < q.length && this.#connSendWindow > 0) {
      const s = q[head]!;
      if (s.destroyed || s.pending === null) {
        s.inReady = false;
        head++;
        continue;
      }
      if (this.#sendPending(s)) {
        s.inReady = false;
        head++;
        this.#readyHead = head;
        this.#pendingDone(s); // may queue more (trailers, writes after 'drain'): q may grow, never shrink
        continue;
      }
      if (s.sendCredit + this.#peerInitialWindow <= 0) {
        s.inReady = false;
        head++;
        this.#heapPush(s);
        continue;
      }
      break;
    }
    if (head >= q.length) {
      q.length = 0;
      head = 0;
    } else if (head > 1024 && head * 2 > q.length) {
      q.splice(0, head);
      head = 0;
    }
    this.#readyHead = head;
  }

  // The starved heap: streams with DATA waiting whose own window is shut, the largest sendCredit on top.
  #heapPush(s: H2Stream): void {
    const h = this.#starved;
    s.heapIndex = h.length;
    h.push(s);
    this.#siftUp(s.heapIndex);
  }

  #heapRemove(s: H2Stream): void {
    const h = this.#starved;
    const i = s.heapIndex;
    s.heapIndex = -1;
    const last = h.pop()!;
    if (last === s) return;
    h[i] = last;
    last.heapIndex = i;
    this.#siftUp(i);
    this.#siftDown(last.heapIndex);
  }

  #siftUp(i: number): void {
    const h = this.#starved;
    const s = h[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent]!;
      if (p.sendCredit >= s.sendCredit) break;
      h[i] = p;
      p.heapIndex = i;
      i = parent;
    }
    h[i] = s;
    s.heapIndex = i;
  }

  #siftDown(i: number): void {
    const h = this.#starved;
    const n = h.length;
    const s = h[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1]!.sendCredit > h[c]!.sendCredit) c++;
      const child = h[c]!;
      if (child.sendCredit <= s.sendCredit) break;
      h[i] = child;
      child.heapIndex = i;
      i = c;
    }
    h[i] = s;
    s.heapIndex = i;
  }

  /** The window a starved stream needs before a raised initial window wakes it. */
  #wakeMin(): number {
    return Math.max(1, Math.min(WAKE_MIN, this.#peerInitialWindow >>> 2));
  }

  /** After the initial window grew: the heap's top streams with enough window move to the ready queue. */
  #wakeStarved(): void {
    const h = this.#starved;
    const need = this.#wakeMin() - this.#peerInitialWindow;
    while (h.length > 0 && h[0]!.sendCredit >= need) {
      const s = h[0]!;
      this.#heapRemove(s);
      if (!s.destroyed && s.pending !== null) this.#readyPush(s);
    }
    this.#serveReady();
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
      // a stream still waiting for flow-control window is woken when its DATA is out instead
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
      this.#close(s, undefined, ID_RESET_BY_US);
      return;
    }
    this.#close(s, undefined, ID_CLOSED);
  }

  /** @internal */
  reset(s: H2Stream, code: number): void {
    this.#rst(s.id, code);
    this.#close(s, code, ID_RESET_BY_US);
  }

  #rst(id: number, code: number): void {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(code, 0);
    this.#frame(RST_STREAM, 0, id, p);
  }

  #close(s: H2Stream, code: number | undefined, how: number): void {
    if (s.destroyed) return;
    s.destroyed = true;
    s.rstCode = code;
    this.#queuedData -= s.pendingBytes;
    s.pendingBytes = 0;
    s.pending = null;
    s.inbox = null;
    if (s.heapIndex >= 0) this.#heapRemove(s);
    this.#streams.delete(s.id);
    this.#setIdState(s.id, how);
    this.#closed.push(s);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      process.nextTick(flushSession, this);
    }
  }

  /** How stream `id` (not open now) ended, as far as we remember (ID_*). */
  #idState(id: number): number {
    if ((id & 1) === 0) return ID_SKIPPED;
    if (this.#lastStreamId - id >= 2 * CLOSED_RING) return ID_FORGOTTEN;
    const ring = this.#idStates;
    return ring === null ? ID_SKIPPED : ring[(id >>> 1) & (CLOSED_RING - 1)]!;
  }

  #setIdState(id: number, how: number): void {
    const ring = this.#idStates;
    // a stream that outlived the ring no longer owns its slot
    if (ring !== null && this.#lastStreamId - id < 2 * CLOSED_RING)
      ring[(id >>> 1) & (CLOSED_RING - 1)] = how;
  }

  /** A new stream id (above the last): the ids it skips are closed without ever opening (RFC 9113 5.1.1). */
  #advanceStreamId(id: number): void {
    let ring = this.#idStates;
    if (ring === null) ring = this.#idStates = new Uint8Array(CLOSED_RING);
    const skipped = Math.min(((id - this.#lastStreamId) >>> 1) - 1, CLOSED_RING);
    for (let k = 1; k <= skipped; k++) ring[((id >>> 1) - k) & (CLOSED_RING - 1)] = ID_SKIPPED;
    ring[(id >>> 1) & (CLOSED_RING - 1)] = ID_OPEN;
    this.#lastStreamId = id;
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
    this.#queuedData = 0;
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
    if (!this.#settingsSeen) {
      // RFC 9113 3.4: the client's preface ends with a SETTINGS frame
      if (type !== SETTINGS || (flags & FLAG_ACK) !== 0)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'first frame is not SETTINGS');
      this.#settingsSeen = true;
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
        this.#onPriority(id, p);
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM size');
        if (id > this.#lastStreamId)
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on idle stream');
        const s = this.#streams.get(id);
        if (s !== undefined) {
          this.#close(s, p.readUInt32BE(0), ID_CLOSED);
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
        if (p.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'GOAWAY size');
        // The client is leaving; it closes the connection when its calls are done.
        return;
      case WINDOW_UPDATE:
        this.#onWindowUpdate(id, p);
        return;
      default:
      // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  /** PRIORITY is advisory and ignored (RFC 9113 5.3.2), but its form is checked. */
  #onPriority(id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    const open = this.#streams.has(id);
    if (p.length !== 5) {
      // a stream error, but an idle or closed stream cannot be reset: then the connection goes
      if (!open) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PRIORITY size');
      this.#streamError(id, H2Error.FRAME_SIZE_ERROR);
      return;
    }
    if ((p.readUInt32BE(0) & 0x7fffffff) === id) {
      // RFC 9113 5.3.1: a stream cannot depend on itself
      if (!open) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY: stream depends on itself');
      this.#streamError(id, H2Error.PROTOCOL_ERROR);
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
    if (p.length > 6 * MAX_SETTINGS_ENTRIES)
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `SETTINGS with ${p.length / 6} entries`);
    // Entries are checked in order; the initial window is applied once, after the last one.
    let initial = -1;
    let maxInitial = -1;
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (key === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW)
          throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'INITIAL_WINDOW_SIZE too large');
        initial = v;
        if (v > maxInitial) maxInitial = v;
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
    this.#push(SETTINGS_ACK);
    if (initial < 0) return;
    // RFC 9113 6.9.2: no stream's window may pass 2^31-1, at any value this frame set
    if (maxInitial + this.#creditBound > MAX_WINDOW && maxInitial + this.#maxCredit() > MAX_WINDOW)
      throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
    const raised = initial > this.#peerInitialWindow;
    this.#peerInitialWindow = initial;
    // a lowered window needs nothing now: ready streams whose window shut move to the heap when served
    if (raised && this.#starved.length > 0) this.#wakeStarved();
  }

  /** The largest sendCredit of an open stream (O(streams): only when the cheap bound says a window may overflow). */
  #maxCredit(): number {
    let m = 0;
    for (const s of this.#streams.values()) if (s.sendCredit > m) m = s.sendCredit;
    this.#creditBound = m;
    return m;
  }

  #onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE size');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.#connSendWindow += inc;
      if (this.#connSendWindow > MAX_WINDOW)
        throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
      if (this.#readyHead < this.#ready.length) this.#serveReady();
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
    s.sendCredit += inc;
    if (s.sendCredit + this.#peerInitialWindow > MAX_WINDOW) {
      this.#streamError(id, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    if (s.sendCredit > this.#creditBound) this.#creditBound = s.sendCredit;
    if (s.heapIndex < 0) return; // no DATA waiting, or waiting for the connection window only
    if (s.sendCredit + this.#peerInitialWindow > 0) {
      this.#heapRemove(s);
      this.#readyPush(s);
      this.#serveReady();
    } else {
      this.#siftUp(s.heapIndex);
    }
  }

  /** A stream error the peer provoked: RST_STREAM (on an open or closed stream), charged to the reset budget. */
  #streamError(id: number, code: number): void {
    const s = this.#streams.get(id);
    if (s !== undefined) this.reset(s, code);
    else if (id <= this.#lastStreamId) this.#rst(id, code);
    else return; // an idle stream gets nothing: RST_STREAM on an idle stream is itself a protocol error
    // a reset the peer provoked frees a stream slot just like one it sent (the "MadeYouReset" pattern)
    this.#chargeReset();
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
    this.#hbSelfDep = false;
    if (flags & FLAG_PRIORITY) {
      start += 5;
      // RFC 9113 5.3.1: a stream cannot depend on itself (a stream error, once the block is decoded)
      if (start <= end) this.#hbSelfDep = (p.readUInt32BE(start - 5) & 0x7fffffff) === id;
    }
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
    const existing = this.#streams.get(id);
    this.#decoder.decode(block, (name, value) => {
      listSize += name.length + value.length + 32;
      if (bad !== null || listSize > maxList) return; // keep decoding (HPACK state) but stop collecting
      if (BAD_VALUE.test(value)) {
        bad = `invalid value of ${name}`;
        return;
      }
      if (name.charCodeAt(0) === 58) {
        if (existing !== undefined) bad = 'pseudo-header in trailers';
        else if (regularSeen) bad = 'pseudo-header after a regular header';
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
    if (existing !== undefined) {
      // Trailers from the client (RFC 9113 8.1): only on an open stream, ending it, with no pseudo-header.
      if (existing.remoteEnded) {
        this.#streamError(id, H2Error.STREAM_CLOSED);
        return;
      }
      if (
        !endStream ||
        bad !== null ||
        this.#hbSelfDep ||
        (existing.contentLength >= 0 && existing.dataReceived !== existing.contentLength)
      ) {
        this.#streamError(id, H2Error.PROTOCOL_ERROR);
        return;
      }
      this.#remoteEnd(existing);
      return;
    }
    if (id <= this.#lastStreamId) {
      // Not a new stream. The block was decoded above, so the HPACK table stays in step.
      const how = this.#idState(id);
      if (how === ID_SKIPPED || (how === ID_FORGOTTEN && !endStream))
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, `stream ${id} opened after ${this.#lastStreamId}`);
      if (how === ID_CLOSED) this.#streamError(id, H2Error.STREAM_CLOSED);
      // after our RST_STREAM the peer's late frames are ignored (RFC 9113 5.1)
      return;
    }
    this.#advanceStreamId(id);
    if (this.#goawaySent || this.#streams.size >= this.#opts.maxConcurrentStreams) {
      this.#refuse(id, H2Error.REFUSED_STREAM);
      return;
    }
    if (listSize > maxList) {
      this.#refuse(id, H2Error.ENHANCE_YOUR_CALM);
      return;
    }
    let contentLength = -1;
    if (bad === null) {
      const path = headers[':path'];
      if (headers[':method'] === undefined || path === undefined || headers[':scheme'] === undefined)
        bad = 'missing pseudo-header';
      else if (path === '')
        bad = 'empty :path'; // RFC 9113 8.3.1
      else if (this.#hbSelfDep) bad = 'stream depends on itself';
      else if (headers['content-length'] !== undefined) {
        contentLength = parseContentLength(headers['content-length']);
        if (contentLength < 0 || (endStream && contentLength !== 0)) bad = 'bad content-length';
      }
    }
    if (bad !== null) {
      this.#refuse(id, H2Error.PROTOCOL_ERROR);
      return;
    }
    const s = new H2Stream(this, id, this.#opts.streamWindow);
    s.contentLength = contentLength;
    this.#streams.set(id, s);
    if (endStream) s.remoteEnded = true;
    this.#opts.onStream(s, headers);
    if (endStream && !s.destroyed) {
      if (s.paused) s.inboxEnd = true;
      else s.emit('end');
    }
  }

  /** Resets a stream as it opens (it never reaches the reader). */
  #refuse(id: number, code: number): void {
    this.#rst(id, code);
    this.#setIdState(id, ID_RESET_BY_US);
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
      if (id > this.#lastStreamId || (id & 1) === 0)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on idle stream');
      // RFC 9113 6.1: DATA on a half-closed (remote) or closed stream is STREAM_CLOSED, but after our
      // RST_STREAM (or too long ago to tell) it is dropped; either way it counted against the connection window
      const how = s !== undefined ? ID_CLOSED : this.#idState(id);
      if (how === ID_CLOSED || how === ID_SKIPPED) this.#streamError(id, H2Error.STREAM_CLOSED);
      return;
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
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (s.contentLength >= 0) {
      // RFC 9113 8.1.1: content-length must equal the DATA received
      s.dataReceived += data.length;
      if (s.dataReceived > s.contentLength || (endStream && s.dataReceived !== s.contentLength)) {
        this.#streamError(id, H2Error.PROTOCOL_ERROR);
        return;
      }
    }
    // padding counts against the window but is never delivered: acknowledge it now
    s.unacked += len - data.length;
    if (data.length === 0 && s.unacked >= this.#opts.streamWindow / 2 && !s.remoteEnded) {
      this.#windowUpdate(s.id, s.unacked);
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
    if (endStream) s.remoteEnded = true;
    if (data.length > 0) {
      if (s.paused || s.inbox !== null) {
        // Held until the reader resumes; its window is not returned meanwhile, so this is at most one stream
        // window. A small view of a large read is copied, so that it does not pin the whole read.
        const kept = data.length * 2 < data.buffer.byteLength ? Buffer.from(data) : data;
        if (s.inbox === null) s.inbox = [kept];
        else s.inbox.push(kept);
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

/** A content-length value (RFC 9110 8.6): digits, repeated values equal; -1 when malformed. */
function parseContentLength(v: string | string[]): number {
  const list = typeof v === 'string' ? [v] : v;
  let n = -1;
  for (const x of list) {
    if (!/^[0-9]{1,15}$/.test(x)) return -1;
    const k = Number(x);
    if (n >= 0 && k !== n) return -1;
    n = k;
  }
  return n;
}

/** A regular field name: lowercase token characters only (RFC 9113 8.2.1, RFC 9110 5.1). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** Field values must not hold NUL, CR or LF (RFC 9113 8.2.1). */
const BAD_VALUE = /[\0\r\n]/;
/** A SETTINGS ACK frame (never written to, so one serves every ACK). */
const SETTINGS_ACK = Buffer.of(0, 0, 0, SETTINGS, FLAG_ACK, 0, 0, 0, 0);
/** An HPACK dynamic table size update to 0. */
const TABLE_SIZE_ZERO = Buffer.of(0x20);
