// The output half of one HTTP/2 connection: frame serialisation, the queue of frames written in one socket write
// per event-loop turn, and the flow-controlled DATA queue (RFC 9113 5.2, 6.9). The base of H2Session (reader.ts
// extends it, session.ts extends that): a class chain rather than objects that call each other, so that a frame
// costs no extra indirection, and every call stays monomorphic (H2Session is the only concrete class).
//
// Invariants:
// - Frames go out in the order they are queued, all those queued in one event-loop turn in one socket write.
// - A stream's DATA never exceeds the peer's stream or connection window nor its SETTINGS_MAX_FRAME_SIZE; DATA
//   that does not fit waits on the stream, and anything queued after it on that stream (trailers, END_STREAM)
//   waits behind it.
// - Outbound windows cost O(1) per frame received, whatever the number of streams (docs/http2-limits.md): a
//   stream's send window is kept as `sendCredit` relative to the peer's SETTINGS_INITIAL_WINDOW_SIZE, so a
//   settings change touches no stream. A stream with DATA waiting is in exactly one of two places: the ready
//   queue (its own window was open when it joined, it waits for the connection window; FIFO; a stream whose
//   window a lowered setting shut moves to the heap when the queue reaches it) or the starved heap (its own
//   window is shut; a max-heap on sendCredit). A connection WINDOW_UPDATE serves the ready queue from its head
//   and stops when the window is spent; a stream WINDOW_UPDATE moves one stream; a raised initial window moves
//   only the heap's top streams that now have at least `wakeMin()` bytes of window.
// - `queuedData` is the sum of the open streams' `pendingBytes`; `pendingOutput` adds what is not yet written and
//   the socket's own buffer. Once the socket holds OUTPUT_HIGH_WATER, the socket is not read until it drains.
// - Streams that closed during a turn get their 'close' event at the flush that ends the turn (`closed`).
// - A socket that stays over its high-water mark (no 'drain') for `writeStallMs` (the server's
//   `writeStallTimeoutMs`, 20 s by default) means a client that stopped reading at the TCP level: the connection
//   emits 'writeStall' and is destroyed. One timer per congestion episode, none per frame.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import {
  CONTINUATION,
  DATA,
  DEFAULT_WINDOW,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  HEADERS,
  MAX_WINDOW,
  OUTPUT_HIGH_WATER,
  RST_STREAM,
  TABLE_SIZE_ZERO,
  WAKE_MIN,
  WINDOW_UPDATE,
} from './frames.ts';
import type { H2Stream } from './stream.ts';

export abstract class H2Writer extends EventEmitter {
  readonly socket: Socket;
  destroyed = false;
  protected readonly streams = new Map<number, H2Stream>();
  protected lastStreamId = 0;
  // peer settings
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrame = 16384;
  protected connSendWindow = DEFAULT_WINDOW;
  // output
  protected out: Buffer[] = [];
  protected outBytes = 0;
  protected flushScheduled = false;
  /** Sum of the streams' pendingBytes: DATA waiting for flow-control window. */
  protected queuedData = 0;
  /** Streams whose own window is open, waiting for the connection window (FIFO from readyHead). */
  protected ready: H2Stream[] = [];
  protected readyHead = 0;
  /** Streams with DATA waiting whose own window is shut: a max-heap on sendCredit. */
  protected starved: H2Stream[] = [];
  /** An upper bound of every open stream's sendCredit (exact after maxCredit() recomputes it). */
  protected creditBound = 0;
  protected drainWaiters: H2Stream[] = [];
  protected closed: H2Stream[] = [];
  protected readPaused = false;
  /** How long the socket may stay over its high-water mark (no 'drain') before the connection is dropped; 0: never. */
  protected writeStallMs = 0;
  /** Armed while the socket is over its high-water mark (between a write that returned false and 'drain'). */
  protected writeStallTimer: NodeJS.Timeout | null = null;
  /** The peer lowered SETTINGS_HEADER_TABLE_SIZE: our next header block must start with a size update. */
  protected tableSizeUpdate = false;

  /**
   * Output this connection holds that the client has not taken: DATA waiting for window, frames not yet
   * written, and the socket's unsent buffer. The gRPC layer refuses responses beyond its cap.
   */
  get pendingOutput(): number {
    return this.queuedData + this.outBytes + this.socket.writableLength;
  }

  /** True while the socket's own buffer is over its high-water mark. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  // ---- output ----

  protected frame(type: number, flags: number, stream: number, payload: Buffer | null): void {
    const len = payload === null ? 0 : payload.length;
    const h = Buffer.allocUnsafe(9);
    h[0] = len >>> 16;
    h[1] = (len >>> 8) & 0xff;
    h[2] = len & 0xff;
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(stream, 5);
    this.push(h);
    if (payload !== null && len > 0) this.push(payload);
  }

  protected push(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(flushSession, this);
    }
  }

  /** @internal Writes everything queued in one socket write. */
  flushNow(): void {
    this.flush();
  }

  protected flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (out.length > 0 && !this.destroyed && !this.socket.writableEnded) {
      const buf = out.length === 1 ? out[0]! : Buffer.concat(out, this.outBytes);
      this.out = [];
      this.outBytes = 0;
      if (!this.socket.write(buf) && this.writeStallTimer === null && this.writeStallMs > 0) {
        // the socket holds more than its high-water mark: from now on the client has writeStallMs to take it
        this.writeStallTimer = setTimeout(writeStalled, this.writeStallMs, this);
        this.writeStallTimer.unref();
      }
      // A client that sends but does not read (PINGs, SETTINGS, refused streams) must not grow our buffer
      // without bound: stop reading it until the socket drains.
      if (this.socket.writableLength > OUTPUT_HIGH_WATER && !this.readPaused) {
        this.readPaused = true;
        this.socket.pause();
      }
    } else {
      this.out = [];
      this.outBytes = 0;
    }
    const closed = this.closed;
    if (closed.length > 0) {
      this.closed = [];
      for (const s of closed) s.emit('close');
      this.maybeEnd();
    }
  }

  protected windowUpdate(stream: number, inc: number): void {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(inc, 0);
    this.frame(WINDOW_UPDATE, 0, stream, p);
  }

  /** @internal */
  sendHeaders(s: H2Stream, headerBlock: Buffer, endStream: boolean): void {
    let block = headerBlock;
    if (s.pending !== null) {
      // trailers after DATA still waiting for window: they wait too (only via finishEnd, so never here)
      throw new Error('headers queued behind pending data');
    }
    if (this.tableSizeUpdate) {
      this.tableSizeUpdate = false;
      block = Buffer.concat([TABLE_SIZE_ZERO, block]);
    }
    const max = this.peerMaxFrame;
    if (block.length <= max) {
      this.frame(HEADERS, FLAG_END_HEADERS | (endStream ? FLAG_END_STREAM : 0), s.id, block);
      return;
    }
    this.frame(HEADERS, endStream ? FLAG_END_STREAM : 0, s.id, block.subarray(0, max));
    for (let off = max; off < block.length; off += max) {
      const end = Math.min(block.length, off + max);
      this.frame(CONTINUATION, end === block.length ? FLAG_END_HEADERS : 0, s.id, block.subarray(off, end));
    }
  }

  /** @internal */
  sendData(s: H2Stream, buf: Buffer): void {
    if (s.pending !== null) {
      s.pending.push({ buf, off: 0 });
      s.pendingBytes += buf.length;
      this.queuedData += buf.length;
      return;
    }
    const off = this.sendSome(s, buf, 0);
    if (off < buf.length) {
      s.pending = [{ buf, off }];
      s.pendingBytes = buf.length - off;
      this.queuedData += buf.length - off;
      if (s.sendCredit + this.peerInitialWindow > 0) this.readyPush(s);
      else this.heapPush(s);
    }
  }

  /** Sends as much of buf[off..] as the windows allow; returns the new offset. */
  protected sendSome(s: H2Stream, buf: Buffer, off: number): number {
    while (off < buf.length) {
      const n = Math.min(
        buf.length - off,
        s.sendCredit + this.peerInitialWindow,
        this.connSendWindow,
        this.peerMaxFrame,
      );
      if (n <= 0) break;
      this.frame(DATA, 0, s.id, off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
      s.sendCredit -= n;
      this.connSendWindow -= n;
      off += n;
    }
    return off;
  }

  /** @internal */
  sendEmptyEnd(s: H2Stream): void {
    this.frame(DATA, FLAG_END_STREAM, s.id, null);
  }

  /** Sends what the windows allow of a stream's waiting DATA; true when none is left. */
  protected sendPending(s: H2Stream): boolean {
    const q = s.pending!;
    while (q.length > 0) {
      const p = q[0]!;
      const before = p.off;
      p.off = this.sendSome(s, p.buf, p.off);
      s.pendingBytes -= p.off - before;
      this.queuedData -= p.off - before;
      if (p.off < p.buf.length) return false;
      q.shift();
    }
    return true;
  }

  /** All of a stream's waiting DATA is out: what was queued behind it (END_STREAM, trailers, 'drain') goes. */
  protected pendingDone(s: H2Stream): void {
    s.pending = null;
    s.pendingBytes = 0;
    if (s.endAfterPending !== 0) s.finishEnd();
    if (s.needDrain) {
      if (this.congested) {
        this.drainWaiters.push(s);
      } else {
        s.needDrain = false;
        s.emit('drain');
      }
    }
  }

  protected readyPush(s: H2Stream): void {
    s.inReady = true;
    this.ready.push(s);
  }

  /**
   * Serves the ready queue while the connection window lasts. Each stream taken off the queue either finished,
   * or moved to the heap (its own window shut); the loop stops at the first stream the connection window could
   * not satisfy, so the work is O(1) plus the frames sent. Invariant after: the queue is empty or the
   * connection window is spent.
   */
  protected serveReady(): void {
    const q = this.ready;
    let head = this.readyHead;
    while (head < q.length && this.connSendWindow > 0) {
      const s = q[head]!;
      if (s.destroyed || s.pending === null) {
        s.inReady = false;
        head++;
        continue;
      }
      if (this.sendPending(s)) {
        s.inReady = false;
        head++;
        this.readyHead = head;
        this.pendingDone(s); // may queue more (trailers, writes after 'drain'): q may grow, never shrink
        continue;
      }
      if (s.sendCredit + this.peerInitialWindow <= 0) {
        s.inReady = false;
        head++;
        this.heapPush(s);
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
    this.readyHead = head;
  }

  // The starved heap: streams with DATA waiting whose own window is shut, the largest sendCredit on top.
  protected heapPush(s: H2Stream): void {
    const h = this.starved;
    s.heapIndex = h.length;
    h.push(s);
    this.siftUp(s.heapIndex);
  }

  protected heapRemove(s: H2Stream): void {
    const h = this.starved;
    const i = s.heapIndex;
    s.heapIndex = -1;
    const last = h.pop()!;
    if (last === s) return;
    h[i] = last;
    last.heapIndex = i;
    this.siftUp(i);
    this.siftDown(last.heapIndex);
  }

  protected siftUp(i: number): void {
    const h = this.starved;
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

  protected siftDown(i: number): void {
    const h = this.starved;
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
  protected wakeMin(): number {
    return Math.max(1, Math.min(WAKE_MIN, this.peerInitialWindow >>> 2));
  }

  /** After the initial window grew: the heap's top streams with enough window move to the ready queue. */
  protected wakeStarved(): void {
    const h = this.starved;
    const need = this.wakeMin() - this.peerInitialWindow;
    while (h.length > 0 && h[0]!.sendCredit >= need) {
      const s = h[0]!;
      this.heapRemove(s);
      if (!s.destroyed && s.pending !== null) this.readyPush(s);
    }
    this.serveReady();
  }

  /** @internal */
  wantsDrain(s: H2Stream): void {
    if (s.pending === null) this.drainWaiters.push(s);
  }

  protected onSocketDrain(): void {
    this.clearWriteStall();
    if (this.readPaused && !this.socket.writableEnded) {
      this.readPaused = false;
      this.socket.resume();
    }
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const s of w) {
      if (!s.needDrain || s.destroyed) continue;
      // a stream still waiting for flow-control window is woken when its DATA is out instead
      if (s.pending !== null) continue;
      s.needDrain = false;
      s.emit('drain');
    }
  }

  protected rst(id: number, code: number): void {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(code, 0);
    this.frame(RST_STREAM, 0, id, p);
  }

  /** The largest sendCredit of an open stream (O(streams): only when the cheap bound says a window may overflow). */
  protected maxCredit(): number {
    let m = 0;
    for (const s of this.streams.values()) if (s.sendCredit > m) m = s.sendCredit;
    this.creditBound = m;
    return m;
  }

  // ---- what the peer grants: windows and the initial window ----

  /** A connection WINDOW_UPDATE of `inc` (> 0); false when the window would pass 2^31-1. */
  protected grantConnection(inc: number): boolean {
    this.connSendWindow += inc;
    if (this.connSendWindow > MAX_WINDOW) return false;
    if (this.readyHead < this.ready.length) this.serveReady();
    return true;
  }

  /** A WINDOW_UPDATE of `inc` (> 0) on open stream `s`; false when its window would pass 2^31-1. */
  protected grantStream(s: H2Stream, inc: number): boolean {
    s.sendCredit += inc;
    if (s.sendCredit + this.peerInitialWindow > MAX_WINDOW) return false;
    if (s.sendCredit > this.creditBound) this.creditBound = s.sendCredit;
    if (s.heapIndex < 0) return true; // no DATA waiting, or waiting for the connection window only
    if (s.sendCredit + this.peerInitialWindow > 0) {
      this.heapRemove(s);
      this.readyPush(s);
      this.serveReady();
    } else {
      this.siftUp(s.heapIndex);
    }
    return true;
  }

  /** The peer's SETTINGS_INITIAL_WINDOW_SIZE is now `initial` (checked against overflow by the caller). */
  protected setPeerInitialWindow(initial: number): void {
    const raised = initial > this.peerInitialWindow;
    this.peerInitialWindow = initial;
    // a lowered window needs nothing now: ready streams whose window shut move to the heap when served
    if (raised && this.starved.length > 0) this.wakeStarved();
  }

  protected clearWriteStall(): void {
    if (this.writeStallTimer !== null) {
      clearTimeout(this.writeStallTimer);
      this.writeStallTimer = null;
    }
  }

  /** @internal The socket did not drain for writeStallMs: the client stopped reading; 'writeStall', then gone. */
  onWriteStall(): void {
    this.writeStallTimer = null;
    if (this.destroyed || !this.socket.writableNeedDrain) return;
    this.emit('writeStall', this.writeStallMs, this.socket.writableLength);
    this.destroyConnection();
  }

  constructor(socket: Socket) {
    super();
    this.socket = socket;
  }

  /** The connection may end now if it is closing and no stream is left (session.ts). */
  protected abstract maybeEnd(): void;
  /** Drops the connection at once, cancelling its streams (session.ts). */
  protected abstract destroyConnection(): void;
}

/** The nextTick callback of a scheduled flush (a shared function: no closure per flush). */
function writeStalled(w: H2Writer): void {
  w.onWriteStall();
}

/** The nextTick callback of a scheduled flush (a shared function: no closure per flush). */
export function flushSession(s: H2Writer): void {
  s.flushNow();
}
