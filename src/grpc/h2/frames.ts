// The vocabulary of the HTTP/2 engine (RFC 9113): frame types and flags, error and settings codes, the engine's
// fixed limits, and the one exception type frame handling throws. Shared by the reader (reader.ts), the writer
// (writer.ts), the stream (stream.ts) and the session (session.ts); it holds no state.
//
// Invariants: every limit here is documented in docs/http2-limits.md; a ConnectionError thrown while a frame is
// handled is caught by the reader's parse loop and becomes GOAWAY with its code (nothing the peer sends throws
// out of the engine).

import type { HeaderValue } from './hpack.ts';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const DATA = 0x0;
export const HEADERS = 0x1;
export const PRIORITY = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PUSH_PROMISE = 0x5;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;

export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const FLAG_PADDED = 0x8;
export const FLAG_PRIORITY = 0x20;

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

export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

export const DEFAULT_WINDOW = 65535;
export const MAX_WINDOW = 2 ** 31 - 1;
export const OUR_MAX_FRAME = 16384;
export const HEADER_TABLE_SIZE = 4096;
/** A stream buffers this much unsent DATA before write() asks the caller to wait for 'drain'. */
export const STREAM_HIGH_WATER = 64 * 1024;
/**
 * Streams the peer may reset before we answered them: a burst of this many, refilled at RESET_RATE per second.
 * Beyond that the connection is dropped (ENHANCE_YOUR_CALM), the "rapid reset" defence (CVE-2023-44487).
 */
export const RESET_BURST = 1000;
export const RESET_RATE = 100;
/** Largest header block we assemble from HEADERS + CONTINUATION before giving up on the connection. */
export const MAX_HEADER_BLOCK = 256 * 1024;
/** Each HEADERS/CONTINUATION frame counts this much on top of its payload (so empty CONTINUATIONs add up). */
export const HEADER_FRAME_COST = 9;
/** After our final GOAWAY and end(), how long the peer has to close its side before the socket is destroyed. */
export const END_GRACE_MS = 5000;
/** Output the socket may hold before we stop reading from it. */
export const OUTPUT_HIGH_WATER = 4 * 1024 * 1024;
/** Entries a SETTINGS frame may carry (nghttp2's default max_settings); there are only 6 settings defined. */
export const MAX_SETTINGS_ENTRIES = 32;
/**
 * A stream starved by its own window is woken by a raised SETTINGS_INITIAL_WINDOW_SIZE only once it may send at
 * least this much (or a quarter of the initial window, if smaller): a peer nudging the setting by one byte per
 * frame must not make us send a 1-byte DATA frame on every blocked stream per frame.
 */
export const WAKE_MIN = 1024;
/** How many of the most recent stream ids remember how they closed (a power of two). */
export const CLOSED_RING = 2048;
/** How a stream id below the highest one seen ended (RFC 9113 5.1), in the ring. */
export const ID_SKIPPED = 0; // never opened (implicitly closed), or an even id
export const ID_OPEN = 1;
export const ID_RESET_BY_US = 2; // we sent RST_STREAM: the peer's late frames are ignored
export const ID_CLOSED = 3; // both sides ended, or the peer reset it: more DATA/HEADERS is STREAM_CLOSED
export const ID_FORGOTTEN = 4; // older than the ring

export type IncomingHeaders = Record<string, string | string[] | undefined>;
export type OutgoingHeaders = Readonly<Record<string, HeaderValue>>;

export class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A SETTINGS ACK frame (never written to, so one serves every ACK). */
export const SETTINGS_ACK = Buffer.of(0, 0, 0, SETTINGS, FLAG_ACK, 0, 0, 0, 0);
/** An HPACK dynamic table size update to 0. */
export const TABLE_SIZE_ZERO = Buffer.of(0x20);
