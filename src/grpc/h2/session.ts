// The server side of one HTTP/2 connection (RFC 9113), written for gRPC: the connection and stream state machine.
// Frames are parsed straight from the socket's chunks (reader.ts) and every frame the connection sends in one
// event-loop turn leaves in one socket write (writer.ts); H2Session extends both (writer <- reader <- session),
// and is the only class of the chain that is instantiated. It replaces node:http2 for the gRPC server because
// node:http2 costs a native stream object, a Duplex and several header objects per call; those live until a
// major GC (native handles pin them through scavenges), which cost both CPU per call and long GC pauses under load.
//
// Invariants:
// - Stream states follow RFC 9113 5.1: ids only grow (a lower new id is a connection PROTOCOL_ERROR); DATA or
//   HEADERS on a half-closed (remote) or closed stream is STREAM_CLOSED, except on a stream we reset, whose late
//   frames are ignored. How each of the last CLOSED_RING stream ids closed is kept in a ring of bytes.
// - Inbound flow control: the peer may never exceed the windows we granted (that is FLOW_CONTROL_ERROR).
//   A stream's window is replenished as its data is delivered to the reader, so a paused stream (the reader
//   holds enough) stops its sender after one stream window. The connection window is replenished as DATA leaves
//   the engine (delivered, or dropped), not as it arrives, so the inboxes of all paused streams together hold at
//   most one connection window (`connectionWindow`, 16 MiB by default), however many streams are open.
// - A stream closes exactly once ('close' is emitted once), when both sides have ended, on RST_STREAM either
//   way, or when the connection goes. A stream we end before the peer does is reset with NO_ERROR.
// - Streams the peer resets (or makes us reset) cost a token of a bucket of RESET_BURST refilled at RESET_RATE
//   a second; an empty bucket is GOAWAY ENHANCE_YOUR_CALM.
// - Each PING we send carries 8 random bytes; only an ACK echoing an outstanding one answers it (others are
//   ignored), so a client that does not read cannot fake keepalive answers.
// - Connection errors (malformed frames, HPACK failures, window overflows) send GOAWAY with the error code
//   and destroy the socket; stream errors reset only that stream. Nothing the peer sends throws out.

import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import {
  CLOSED_RING,
  ConnectionError,
  DEFAULT_WINDOW,
  END_GRACE_MS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  GOAWAY,
  H2Error,
  ID_CLOSED,
  ID_FORGOTTEN,
  ID_OPEN,
  ID_RESET_BY_US,
  ID_SKIPPED,
  type IncomingHeaders,
  PING,
  RESET_BURST,
  RESET_RATE,
  SETTINGS,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_HEADER_LIST_SIZE,
} from './frames.ts';
import { H2Reader, type H2SessionOptions } from './reader.ts';
import { H2Stream } from './stream.ts';
import { flushSession } from './writer.ts';

export {
  H2Error,
  type IncomingHeaders,
  MAX_SETTINGS_ENTRIES,
  type OutgoingHeaders,
} from './frames.ts';
export type { H2SessionOptions } from './reader.ts';
export { H2Stream } from './stream.ts';

interface OutstandingPing {
  readonly data: Buffer;
  readonly cb: (err: Error | null) => void;
}

/** The server side of one HTTP/2 connection over `socket` (plain TCP or TLS with ALPN h2). */
export class H2Session extends H2Reader {
  protected goawaySent = false;
  protected connRecvWindow = DEFAULT_WINDOW;
  protected connUnacked = 0;
  /** How recent stream ids closed (ID_*), at (id >>> 1) & (CLOSED_RING - 1); made on the first stream. */
  protected idStates: Uint8Array | null = null;
  /** Our PINGs not acknowledged yet: each one's payload (8 random bytes, unique per ping) and callback. */
  protected pings: OutstandingPing[] = [];
  protected resetTokens = RESET_BURST;
  protected resetRefilledAt = performance.now();

  constructor(socket: Socket, opts: H2SessionOptions) {
    super(socket, opts);
    this.writeStallMs = opts.writeStallTimeoutMs ?? 0;
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => {
      // 'close' follows
    });
    socket.on('close', () => this.onSocketClose());
    socket.on('drain', () => this.onSocketDrain());
    // Our SETTINGS, then open the connection window beyond the default.
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(SETTINGS_MAX_CONCURRENT_STREAMS, 0);
    settings.writeUInt32BE(opts.maxConcurrentStreams, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(opts.streamWindow, 8);
    settings.writeUInt16BE(SETTINGS_MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(opts.maxHeaderListSize, 14);
    this.frame(SETTINGS, 0, 0, settings);
    if (opts.connectionWindow > DEFAULT_WINDOW) {
      this.windowUpdate(0, opts.connectionWindow - DEFAULT_WINDOW);
      this.connRecvWindow = opts.connectionWindow;
    }
  }

  /**
   * Request bytes the gRPC layer's calls hold on this connection (partial messages, decoded requests waiting for
   * their handler). Owned by call.ts, which refuses a call that would take it past its cap.
   */
  heldRequestBytes = 0;

  /** Streams open now. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Sends PING; `cb` gets null on the ACK, or an error if the connection ends first. */
  ping(cb: (err: Error | null) => void): boolean {
    if (this.destroyed) return false;
    const data = randomBytes(8);
    this.pings.push({ data, cb });
    this.frame(PING, 0, 0, data);
    return true;
  }

  /** Graceful close: GOAWAY, refuse new streams, end the connection when the open ones are done. */
  close(): void {
    if (this.destroyed) return;
    this.goaway(H2Error.NO_ERROR);
    this.maybeEnd();
  }

  protected destroyConnection(): void {
    this.destroy();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.flush();
    this.socket.destroy();
    this.onSocketClose();
  }

  /** @internal Our side of the stream ended. */
  localEnd(s: H2Stream): void {
    s.localEnded = true;
    if (!s.remoteEnded) {
      // We answered before the client finished sending: ask it to stop, without error (RFC 9113 8.1).
      this.rst(s.id, H2Error.NO_ERROR);
      this.closeStream(s, undefined, ID_RESET_BY_US);
      return;
    }
    this.closeStream(s, undefined, ID_CLOSED);
  }

  /** @internal */
  reset(s: H2Stream, code: number): void {
    this.rst(s.id, code);
    this.closeStream(s, code, ID_RESET_BY_US);
  }

  protected closeStream(s: H2Stream, code: number | undefined, how: number): void {
    if (s.destroyed) return;
    s.destroyed = true;
    s.rstCode = code;
    this.queuedData -= s.pendingBytes;
    s.pendingBytes = 0;
    s.pending = null;
    s.inbox = null;
    if (s.inboxBytes > 0) {
      this.releaseInput(s.inboxBytes);
      s.inboxBytes = 0;
    }
    if (s.heapIndex >= 0) this.heapRemove(s);
    this.streams.delete(s.id);
    this.setIdState(s.id, how);
    this.closed.push(s);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(flushSession, this);
    }
  }

  /** How stream `id` (not open now) ended, as far as we remember (ID_*). */
  protected idState(id: number): number {
    if ((id & 1) === 0) return ID_SKIPPED;
    if (this.lastStreamId - id >= 2 * CLOSED_RING) return ID_FORGOTTEN;
    const ring = this.idStates;
    return ring === null ? ID_SKIPPED : ring[(id >>> 1) & (CLOSED_RING - 1)]!;
  }

  protected setIdState(id: number, how: number): void {
    const ring = this.idStates;
    // a stream that outlived the ring no longer owns its slot
    if (ring !== null && this.lastStreamId - id < 2 * CLOSED_RING) ring[(id >>> 1) & (CLOSED_RING - 1)] = how;
  }

  /** A new stream id (above the last): the ids it skips are closed without ever opening (RFC 9113 5.1.1). */
  protected advanceStreamId(id: number): void {
    let ring = this.idStates;
    if (ring === null) ring = this.idStates = new Uint8Array(CLOSED_RING);
    const skipped = Math.min(((id - this.lastStreamId) >>> 1) - 1, CLOSED_RING);
    for (let k = 1; k <= skipped; k++) ring[((id >>> 1) - k) & (CLOSED_RING - 1)] = ID_SKIPPED;
    ring[(id >>> 1) & (CLOSED_RING - 1)] = ID_OPEN;
    this.lastStreamId = id;
  }

  protected goaway(code: number): void {
    if (this.goawaySent) return;
    this.goawaySent = true;
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(this.lastStreamId, 0);
    p.writeUInt32BE(code, 4);
    this.frame(GOAWAY, 0, 0, p);
  }

  protected maybeEnd(): void {
    if (this.goawaySent && this.streams.size === 0 && !this.destroyed && !this.socket.writableEnded) {
      this.flush();
      // From here nothing more is written (flush() drops it: writing after end() would cut off what is still
      // buffered) and what arrives is ignored; the socket closes when the peer closes its side, or soon after.
      this.socket.end();
      setTimeout(destroySocket, END_GRACE_MS, this.socket).unref();
    }
  }

  protected onSocketClose(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.clearWriteStall();
    this.queuedData = 0;
    for (const s of this.streams.values()) {
      s.destroyed = true;
      s.rstCode = H2Error.CANCEL;
      this.closed.push(s);
    }
    this.streams.clear();
    const pings = this.pings;
    this.pings = [];
    for (const p of pings) p.cb(new Error('connection closed'));
    const closed = this.closed;
    this.closed = [];
    for (const s of closed) s.emit('close');
    this.emit('close');
  }

  protected connectionError(code: number): void {
    this.goaway(code);
    this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.onSocketClose();
  }

  /** A stream the peer reset before we answered it costs a token; none left means the peer is abusive. */
  protected chargeReset(): void {
    const now = performance.now();
    this.resetTokens = Math.min(
      RESET_BURST,
      this.resetTokens + ((now - this.resetRefilledAt) * RESET_RATE) / 1000,
    );
    this.resetRefilledAt = now;
    this.resetTokens -= 1;
    if (this.resetTokens < 0) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many stream resets');
  }

  /** A stream error the peer provoked: RST_STREAM (on an open or closed stream), charged to the reset budget. */
  protected streamError(id: number, code: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) this.reset(s, code);
    else if (id <= this.lastStreamId) this.rst(id, code);
    else return; // an idle stream gets nothing: RST_STREAM on an idle stream is itself a protocol error
    // a reset the peer provoked frees a stream slot just like one it sent (the "MadeYouReset" pattern)
    this.chargeReset();
  }

  /** Resets a stream as it opens (it never reaches the reader). */
  protected refuse(id: number, code: number): void {
    this.rst(id, code);
    this.setIdState(id, ID_RESET_BY_US);
  }

  protected onDataFrame(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    const len = p.length;
    this.connRecvWindow -= len;
    if (this.connRecvWindow < 0)
      throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window exceeded');
    const s = this.streams.get(id);
    if (s === undefined || s.remoteEnded) {
      this.releaseInput(len);
      if (id > this.lastStreamId || (id & 1) === 0)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on idle stream');
      // RFC 9113 6.1: DATA on a half-closed (remote) or closed stream is STREAM_CLOSED, but after our
      // RST_STREAM (or too long ago to tell) it is dropped; either way it counted against the connection window
      const how = s !== undefined ? ID_CLOSED : this.idState(id);
      if (how === ID_CLOSED || how === ID_SKIPPED) this.streamError(id, H2Error.STREAM_CLOSED);
      return;
    }
    let data = p;
    if (flags & FLAG_PADDED) {
      if (len < 1 || p[0]! >= len) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA padding');
      data = p.subarray(1, len - p[0]!);
    }
    s.recvWindow -= len;
    if (s.recvWindow < 0) {
      this.releaseInput(len);
      this.streamError(id, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (s.contentLength >= 0) {
      // RFC 9113 8.1.1: content-length must equal the DATA received
      s.dataReceived += data.length;
      if (s.dataReceived > s.contentLength || (endStream && s.dataReceived !== s.contentLength)) {
        this.releaseInput(len);
        this.streamError(id, H2Error.PROTOCOL_ERROR);
        return;
      }
    }
    // padding counts against the windows but is never delivered: acknowledge it now
    if (len !== data.length) this.releaseInput(len - data.length);
    s.unacked += len - data.length;
    if (data.length === 0 && s.unacked >= this.opts.streamWindow / 2 && !s.remoteEnded) {
      this.windowUpdate(s.id, s.unacked);
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
    if (endStream) s.remoteEnded = true;
    if (data.length > 0) {
      if (s.paused || s.inbox !== null) {
        // Held until the reader resumes; its window is not returned meanwhile, so this is at most one stream
        // window. A small view of a large read is copied, so that it does not pin the whole read.
        // It also keeps its share of the connection window: the connection holds at most that much in inboxes.
        const kept = data.length * 2 < data.buffer.byteLength ? Buffer.from(data) : data;
        s.inboxBytes += data.length;
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

  /**
   * `n` bytes of DATA received are no longer held by the engine (handed to a reader, or dropped): they count
   * towards the connection WINDOW_UPDATE, sent once half the window is owed. So the connection window bounds
   * what paused streams hold in their inboxes, whatever the number of streams.
   */
  protected releaseInput(n: number): void {
    this.connUnacked += n;
    if (this.connUnacked >= this.opts.connectionWindow / 2) {
      this.windowUpdate(0, this.connUnacked);
      this.connRecvWindow += this.connUnacked;
      this.connUnacked = 0;
    }
  }

  /** @internal Hands data to the stream's reader and replenishes its window and the connection's. */
  deliver(s: H2Stream, data: Buffer): void {
    this.releaseInput(data.length);
    s.emit('data', data);
    if (s.destroyed || s.remoteEnded) return;
    s.unacked += data.length;
    if (s.unacked >= this.opts.streamWindow / 2) {
      this.windowUpdate(s.id, s.unacked);
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  protected remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    if (s.paused || s.inbox !== null) s.inboxEnd = true;
    else s.emit('end');
  }

  protected onHeaderBlock(
    id: number,
    endStream: boolean,
    existing: H2Stream | undefined,
    headers: IncomingHeaders,
    bad: string | null,
    listSize: number,
  ): void {
    const maxList = this.opts.maxHeaderListSize;
    if (existing !== undefined) {
      // Trailers from the client (RFC 9113 8.1): only on an open stream, ending it, with no pseudo-header.
      if (existing.remoteEnded) {
        this.streamError(id, H2Error.STREAM_CLOSED);
        return;
      }
      if (
        !endStream ||
        bad !== null ||
        this.hbSelfDep ||
        (existing.contentLength >= 0 && existing.dataReceived !== existing.contentLength)
      ) {
        this.streamError(id, H2Error.PROTOCOL_ERROR);
        return;
      }
      this.remoteEnd(existing);
      return;
    }
    if (id <= this.lastStreamId) {
      // Not a new stream. The block was decoded above, so the HPACK table stays in step.
      const how = this.idState(id);
      if (how === ID_SKIPPED || (how === ID_FORGOTTEN && !endStream))
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, `stream ${id} opened after ${this.lastStreamId}`);
      if (how === ID_CLOSED) this.streamError(id, H2Error.STREAM_CLOSED);
      // after our RST_STREAM the peer's late frames are ignored (RFC 9113 5.1)
      return;
    }
    this.advanceStreamId(id);
    if (this.goawaySent || this.streams.size >= this.opts.maxConcurrentStreams) {
      this.refuse(id, H2Error.REFUSED_STREAM);
      return;
    }
    if (listSize > maxList) {
      this.refuse(id, H2Error.ENHANCE_YOUR_CALM);
      return;
    }
    let contentLength = -1;
    if (bad === null) {
      const path = headers[':path'];
      if (headers[':method'] === undefined || path === undefined || headers[':scheme'] === undefined)
        bad = 'missing pseudo-header';
      else if (path === '')
        bad = 'empty :path'; // RFC 9113 8.3.1
      else if (this.hbSelfDep) bad = 'stream depends on itself';
      else if (headers['content-length'] !== undefined) {
        contentLength = parseContentLength(headers['content-length']);
        if (contentLength < 0 || (endStream && contentLength !== 0)) bad = 'bad content-length';
      }
    }
    if (bad !== null) {
      this.refuse(id, H2Error.PROTOCOL_ERROR);
      return;
    }
    const s = new H2Stream(this, id, this.opts.streamWindow);
    s.contentLength = contentLength;
    this.streams.set(id, s);
    if (endStream) s.remoteEnded = true;
    this.opts.onStream(s, headers);
    if (endStream && !s.destroyed) {
      if (s.paused) s.inboxEnd = true;
      else s.emit('end');
    }
  }

  protected onRstStream(s: H2Stream, code: number): void {
    this.closeStream(s, code, ID_CLOSED);
    this.chargeReset();
  }

  /**
   * A PING ACK answers the outstanding PING whose payload it echoes (RFC 9113 6.7). One that echoes none is
   * ignored: the RFC names no error for it, and it proves nothing (a client that stopped reading cannot know our
   * random payloads, so it cannot keep the keepalive happy by sending ACKs blindly).
   */
  protected onPingAck(p: Buffer): void {
    const pings = this.pings;
    for (let i = 0; i < pings.length; i++) {
      const o = pings[i]!;
      if (o.data.equals(p)) {
        pings.splice(i, 1);
        o.cb(null);
        return;
      }
    }
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
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
