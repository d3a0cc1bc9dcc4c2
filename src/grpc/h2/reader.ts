// The input half of one HTTP/2 connection: the socket's bytes cut into frames (the preface, frames split across
// reads, several frames per read), each frame's form checked (RFC 9113 4-6: sizes, stream ids, flags, padding,
// SETTINGS values, CONTINUATION order), header blocks assembled and HPACK-decoded into checked fields. What a
// frame means for a stream (its state, its windows, its reader) is session.ts's, through the abstract hooks at
// the end of this class; what it means for our output (windows the peer grants, settings it sets) is writer.ts's.
//
// Invariants:
// - Input held between reads is bounded by one frame: a frame whose header is in is copied into a buffer of its
//   announced size (at most 16 KiB + 9) as its bytes come, each byte once; only an unfinished frame header
//   (< 9 bytes) or preface (< 24) is held as pieces.
// - At most MAX_SETTINGS_ENTRIES entries per SETTINGS frame (more is ENHANCE_YOUR_CALM, as nghttp2 does), and a
//   SETTINGS_INITIAL_WINDOW_SIZE change is applied once per frame.
// - A header block (HEADERS + CONTINUATION) is at most MAX_HEADER_BLOCK bytes, each frame counting
//   HEADER_FRAME_COST more; it is decoded in full even for streams that are refused, so the HPACK table stays in
//   step; fields beyond maxHeaderListSize are decoded but not kept.
// - Nothing the peer sends throws out: a ConnectionError or an HpackError becomes GOAWAY with its code.

import type { Socket } from 'node:net';
import {
  CONTINUATION,
  ConnectionError,
  DATA,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  GOAWAY,
  H2Error,
  HEADER_FRAME_COST,
  HEADER_TABLE_SIZE,
  HEADERS,
  type IncomingHeaders,
  MAX_HEADER_BLOCK,
  MAX_SETTINGS_ENTRIES,
  MAX_WINDOW,
  OUR_MAX_FRAME,
  PING,
  PREFACE,
  PRIORITY,
  PUSH_PROMISE,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ACK,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_FRAME_SIZE,
  WINDOW_UPDATE,
} from './frames.ts';
import { HpackDecoder, HpackError } from './hpack.ts';
import type { H2Stream } from './stream.ts';
import { H2Writer } from './writer.ts';

/** What a connection is configured with (the server's options, session.ts). */
export interface H2SessionOptions {
  readonly maxConcurrentStreams: number;
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: how much each stream may send before we replenish. */
  readonly streamWindow: number;
  /** Our connection receive window. */
  readonly connectionWindow: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: larger request headers reset the stream. */
  readonly maxHeaderListSize: number;
  /**
   * How long the socket may hold more than its high-water mark without draining before the connection is
   * destroyed ('writeStall' is emitted first); 0 or absent: never.
   */
  readonly writeStallTimeoutMs?: number;
  readonly onStream: (stream: H2Stream, headers: IncomingHeaders) => void;
}

export abstract class H2Reader extends H2Writer {
  protected readonly opts: H2SessionOptions;
  protected readonly decoder = new HpackDecoder(HEADER_TABLE_SIZE);
  protected prefaceSeen = false;
  /** Input not parsed yet (an incomplete frame), in the chunks it came in, and how many bytes they hold. */
  protected held: Buffer[] = [];
  protected heldBytes = 0;
  /** Bytes needed before parsing can go on: the rest of a frame header, or of the frame it announces. */
  protected need = 0;
  /** A frame whose header is in but whose payload is not: filled up to `asmLen` of its length. */
  protected asm: Buffer | null = null;
  protected asmLen = 0;
  // header block being assembled from HEADERS + CONTINUATION
  protected hbStream = 0;
  protected hbEndStream = false;
  protected hbParts: Buffer[] | null = null;
  protected hbBytes = 0;
  protected hbSelfDep = false;
  protected settingsSeen = false;

  // ---- input ----

  protected onSocketData(chunk: Buffer): void {
    if (this.destroyed || this.socket.writableEnded) return;
    let buf = chunk;
    const asm = this.asm;
    if (asm !== null) {
      // A frame whose header we have: its bytes are copied into its own buffer as they come (one copy, and
      // the memory held is the frame's size however many reads it takes).
      const take = Math.min(chunk.length, asm.length - this.asmLen);
      chunk.copy(asm, this.asmLen, 0, take);
      this.asmLen += take;
      if (this.asmLen < asm.length) return;
      this.asm = null;
      this.parse(asm);
      if (take === chunk.length || this.destroyed || this.socket.writableEnded) return;
      buf = chunk.subarray(take);
    } else if (this.heldBytes > 0) {
      // the rest of a frame header (under 9 bytes) or of the preface (under 24): a few pieces at most
      if (!this.prefaceSeen) {
        // A preface in pieces is checked piece by piece: junk after a good start is refused at once.
        const n = Math.min(chunk.length, PREFACE.length - this.heldBytes);
        if (!PREFACE.subarray(this.heldBytes, this.heldBytes + n).equals(chunk.subarray(0, n))) {
          this.connectionError(H2Error.PROTOCOL_ERROR);
          return;
        }
      }
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.heldBytes < this.need) return;
      buf = Buffer.concat(this.held, this.heldBytes);
      this.held = [];
      this.heldBytes = 0;
    }
    this.parse(buf);
  }

  protected parse(buf: Buffer): void {
    try {
      let pos = 0;
      if (!this.prefaceSeen) {
        if (buf.length < PREFACE.length) {
          if (!PREFACE.subarray(0, buf.length).equals(buf))
            throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad preface');
          this.hold(buf, PREFACE.length);
          return;
        }
        if (!PREFACE.equals(buf.subarray(0, PREFACE.length)))
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'bad preface');
        this.prefaceSeen = true;
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
        this.onFrame(type, flags, id, payload);
        if (this.destroyed) return;
      }
      if (pos < end) {
        const rest = buf.subarray(pos);
        if (rest.length < 9) {
          this.hold(rest, 9);
        } else {
          // header known (len checked above): a fresh buffer, since payload views are handed out
          const asm = Buffer.allocUnsafe(9 + ((rest[0]! << 16) | (rest[1]! << 8) | rest[2]!));
          rest.copy(asm, 0);
          this.asm = asm;
          this.asmLen = rest.length;
        }
      }
    } catch (e) {
      if (e instanceof ConnectionError) {
        this.connectionError(e.code);
        return;
      }
      if (e instanceof HpackError) {
        this.connectionError(H2Error.COMPRESSION_ERROR);
        return;
      }
      this.connectionError(H2Error.INTERNAL_ERROR);
    }
  }

  protected hold(rest: Buffer, need: number): void {
    this.held = [rest];
    this.heldBytes = rest.length;
    this.need = need;
  }

  protected onFrame(type: number, flags: number, id: number, p: Buffer): void {
    if (this.hbParts !== null && type !== CONTINUATION) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'expected CONTINUATION');
    }
    if (!this.settingsSeen) {
      // RFC 9113 3.4: the client's preface ends with a SETTINGS frame
      if (type !== SETTINGS || (flags & FLAG_ACK) !== 0)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'first frame is not SETTINGS');
      this.settingsSeen = true;
    }
    switch (type) {
      case DATA:
        this.onDataFrame(flags, id, p);
        return;
      case HEADERS:
        this.onHeaders(flags, id, p);
        return;
      case CONTINUATION:
        if (this.hbParts === null || id !== this.hbStream) {
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'unexpected CONTINUATION');
        }
        this.addBlock(p);
        if (flags & FLAG_END_HEADERS) this.endBlock();
        return;
      case PRIORITY:
        this.onPriority(id, p);
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM size');
        if (id > this.lastStreamId)
          throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'RST_STREAM on idle stream');
        const s = this.streams.get(id);
        if (s !== undefined) this.onRstStream(s, p.readUInt32BE(0));
        return;
      }
      case SETTINGS:
        this.onSettings(flags, id, p);
        return;
      case PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case PING:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PING on a stream');
        if (p.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING size');
        if (flags & FLAG_ACK) {
          this.onPingAck(p);
        } else {
          this.frame(PING, FLAG_ACK, 0, Buffer.from(p));
        }
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (p.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'GOAWAY size');
        // The client is leaving; it closes the connection when its calls are done.
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(id, p);
        return;
      default:
      // unknown frame types are ignored (RFC 9113 4.1)
    }
  }

  /** PRIORITY is advisory and ignored (RFC 9113 5.3.2), but its form is checked. */
  protected onPriority(id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
    const open = this.streams.has(id);
    if (p.length !== 5) {
      // a stream error, but an idle or closed stream cannot be reset: then the connection goes
      if (!open) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PRIORITY size');
      this.streamError(id, H2Error.FRAME_SIZE_ERROR);
      return;
    }
    if ((p.readUInt32BE(0) & 0x7fffffff) === id) {
      // RFC 9113 5.3.1: a stream cannot depend on itself
      if (!open) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'PRIORITY: stream depends on itself');
      this.streamError(id, H2Error.PROTOCOL_ERROR);
    }
  }

  protected onSettings(flags: number, id: number, p: Buffer): void {
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
        this.peerMaxFrame = v;
      } else if (key === SETTINGS_ENABLE_PUSH) {
        if (v > 1) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'ENABLE_PUSH out of range');
      } else if (key === SETTINGS_HEADER_TABLE_SIZE) {
        // Our encoder never uses the dynamic table; if the peer shrinks it, RFC 7541 4.2 still wants the change
        // acknowledged by a size update at the start of our next header block.
        if (v < HEADER_TABLE_SIZE) this.tableSizeUpdate = true;
      }
    }
    this.push(SETTINGS_ACK);
    if (initial < 0) return;
    // RFC 9113 6.9.2: no stream's window may pass 2^31-1, at any value this frame set
    if (maxInitial + this.creditBound > MAX_WINDOW && maxInitial + this.maxCredit() > MAX_WINDOW)
      throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
    this.setPeerInitialWindow(initial);
  }

  protected onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE size');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      if (!this.grantConnection(inc))
        throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'window overflow');
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) {
      if (id > this.lastStreamId)
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE on idle stream');
      return; // a stream we already closed
    }
    if (inc === 0) {
      this.streamError(id, H2Error.PROTOCOL_ERROR);
      return;
    }
    if (!this.grantStream(s, inc)) this.streamError(id, H2Error.FLOW_CONTROL_ERROR);
  }

  protected onHeaders(flags: number, id: number, p: Buffer): void {
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
    this.hbSelfDep = false;
    if (flags & FLAG_PRIORITY) {
      start += 5;
      // RFC 9113 5.3.1: a stream cannot depend on itself (a stream error, once the block is decoded)
      if (start <= end) this.hbSelfDep = (p.readUInt32BE(start - 5) & 0x7fffffff) === id;
    }
    if (start > end) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'HEADERS padding exceeds payload');
    this.hbStream = id;
    this.hbEndStream = (flags & FLAG_END_STREAM) !== 0;
    this.hbParts = [];
    this.hbBytes = 0;
    this.addBlock(p.subarray(start, end));
    if (flags & FLAG_END_HEADERS) this.endBlock();
  }

  protected addBlock(b: Buffer): void {
    this.hbBytes += b.length + HEADER_FRAME_COST;
    if (this.hbBytes > MAX_HEADER_BLOCK)
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'header block too large');
    if (b.length > 0) this.hbParts!.push(b);
  }

  protected endBlock(): void {
    const parts = this.hbParts!;
    this.hbParts = null;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const maxList = this.opts.maxHeaderListSize;
    const id = this.hbStream;
    const endStream = this.hbEndStream;
    // no prototype: a header named "constructor" or "__proto__" is just a header
    const headers = Object.create(null) as IncomingHeaders;
    let listSize = 0;
    let bad: string | null = null;
    let regularSeen = false;
    const existing = this.streams.get(id);
    this.decoder.decode(block, (name, value) => {
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
    this.onHeaderBlock(id, endStream, existing, headers, bad, listSize);
  }

  // ---- what frames mean for streams: session.ts ----

  /** A whole header block, decoded: a new stream, trailers, or one for a closed stream. */
  protected abstract onHeaderBlock(
    id: number,
    endStream: boolean,
    existing: H2Stream | undefined,
    headers: IncomingHeaders,
    bad: string | null,
    listSize: number,
  ): void;
  /** A DATA frame (its form is checked there too, since padding and windows are the stream's). */
  protected abstract onDataFrame(flags: number, id: number, p: Buffer): void;
  /** The peer reset an open stream. */
  protected abstract onRstStream(s: H2Stream, code: number): void;
  /** A PING ACK (its 8-byte payload). */
  protected abstract onPingAck(p: Buffer): void;
  /** A stream error the peer provoked: RST_STREAM, charged to its reset budget. */
  protected abstract streamError(id: number, code: number): void;
  /** GOAWAY with `code` and the end of the connection. */
  protected abstract connectionError(code: number): void;

  constructor(socket: Socket, opts: H2SessionOptions) {
    super(socket);
    this.opts = opts;
  }
}

/** A regular field name: lowercase token characters only (RFC 9113 8.2.1, RFC 9110 5.1). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** Field values must not hold NUL, CR or LF (RFC 9113 8.2.1). */
const BAD_VALUE = /[\0\r\n]/;
