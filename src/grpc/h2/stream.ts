// One request/response stream of the HTTP/2 engine: the part of node:http2's ServerHttp2Stream the gRPC layer
// uses (respond, write, end, sendTrailers, pause/resume, close, and the 'data', 'end', 'drain', 'wantTrailers',
// 'close' events). It holds the stream's own state; the session (session.ts) owns the transitions.
//
// Invariants:
// - Fields marked @internal are written by the session, the reader and the writer only; the gRPC layer reads
//   `destroyed`, `headersSent`, `rstCode`, `writableNeedDrain` and `writableLength`.
// - DATA written after end() (or after the stream is gone) is dropped; END_STREAM or trailers go only after every
//   byte of DATA queued before them (`endAfterPending`).
// - While paused, delivered input waits in `inbox` (its stream window not returned), and 'end' waits behind it;
//   resume() replays it on the next tick, in order.
// - Frozen header objects are HPACK-encoded once (the encoder uses no dynamic table, so a block depends on
//   nothing but its headers).

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { H2Error, type OutgoingHeaders, STREAM_HIGH_WATER } from './frames.ts';
import { encodeHeaders } from './hpack.ts';

/**
 * What a stream needs of its connection: session.ts's H2Session, the only implementation (named here so that this
 * file does not import the session, which imports it).
 */
export interface H2StreamHost {
  readonly socket: Socket;
  /** True while the socket's own buffer is over its high-water mark. */
  readonly congested: boolean;
  /** Output the connection holds that the client has not taken. */
  readonly pendingOutput: number;
  /** Request bytes the gRPC layer's calls hold on this connection (kept by call.ts). */
  heldRequestBytes: number;
  sendHeaders(s: H2Stream, headerBlock: Buffer, endStream: boolean): void;
  sendData(s: H2Stream, buf: Buffer): void;
  sendEmptyEnd(s: H2Stream): void;
  wantsDrain(s: H2Stream): void;
  localEnd(s: H2Stream): void;
  reset(s: H2Stream, code: number): void;
  deliver(s: H2Stream, data: Buffer): void;
}

export interface PendingData {
  readonly buf: Buffer;
  off: number;
}

/** One request/response stream. Its surface is the part of node:http2's ServerHttp2Stream the gRPC layer uses. */
export class H2Stream extends EventEmitter {
  readonly id: number;
  readonly session: H2StreamHost;
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
  /** @internal bytes of DATA in `inbox` (their connection window is returned when they leave it) */
  inboxBytes = 0;
  #waitForTrailers = false;
  /** @internal */ needDrain = false;

  constructor(session: H2StreamHost, id: number, recvWindow: number) {
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
      s.inboxBytes -= chunk.length;
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
