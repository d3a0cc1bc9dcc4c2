// gRPC length-prefixed message framing (PROTOCOL-HTTP2.md, "Length-Prefixed-Message"), grpc-timeout parsing and
// message decompression.
//
// Invariants:
// - A frame is 1 flag byte (0 = plain, 1 = compressed; any other value is a protocol error), a 4-byte big-endian
//   length, then that many bytes. Frames may be split across chunks at any byte, and one chunk may hold many.
// - The Deframer never buffers more than one message: a length over the receive limit is rejected from its 5-byte
//   prefix alone, before any of the body is kept. A message that fits in the chunk is handed on as a view of it
//   (no copy); a split one is copied once into a buffer of its exact size.
// - After the sink reports an error (or `stop()` is called) the Deframer drops everything.

import { gunzipSync, inflateSync } from 'node:zlib';

/** Receives whole messages (and framing errors) from a Deframer. */
export interface FrameSink {
  /** One whole message; `compressed` is the frame's flag. Returns false to stop deframing. */
  onMessage(message: Buffer, compressed: boolean): boolean;
  /** A malformed prefix: `tooLarge` when the length exceeds the limit, otherwise a bad flag byte. */
  onFrameError(tooLarge: boolean, length: number): void;
}

export class Deframer {
  // Header bytes gathered so far when a 5-byte prefix is split across chunks.
  #hdr: Buffer | null = null;
  #hdrLen = 0;
  // The message being filled when its body is split across chunks.
  #body: Buffer | null = null;
  #bodyLen = 0;
  #compressed = false;
  #stopped = false;
  readonly maxLength: number;

  constructor(maxLength: number) {
    this.maxLength = maxLength;
  }

  /** True when a message or prefix has been started but not finished. */
  get partial(): boolean {
    return this.#hdrLen > 0 || this.#body !== null;
  }

  stop(): void {
    this.#stopped = true;
    this.#hdr = null;
    this.#body = null;
  }

  push(chunk: Buffer, sink: FrameSink): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.#stopped) {
      const body = this.#body;
      if (body !== null) {
        const take = Math.min(body.length - this.#bodyLen, n - off);
        chunk.copy(body, this.#bodyLen, off, off + take);
        this.#bodyLen += take;
        off += take;
        if (this.#bodyLen === body.length) {
          this.#body = null;
          if (!sink.onMessage(body, this.#compressed)) this.stop();
        }
        continue;
      }
      let flag: number;
      let len: number;
      if (this.#hdrLen === 0 && n - off >= 5) {
        flag = chunk[off]!;
        len = chunk.readUInt32BE(off + 1);
        off += 5;
      } else {
        let hdr = this.#hdr;
        if (hdr === null) hdr = this.#hdr = Buffer.allocUnsafe(5);
        const take = Math.min(5 - this.#hdrLen, n - off);
        chunk.copy(hdr, this.#hdrLen, off, off + take);
        this.#hdrLen += take;
        off += take;
        if (this.#hdrLen < 5) return;
        this.#hdrLen = 0;
        flag = hdr[0]!;
        len = hdr.readUInt32BE(1);
      }
      if (flag > 1 || len > this.maxLength) {
        this.stop();
        sink.onFrameError(flag <= 1, len);
        return;
      }
      this.#compressed = flag === 1;
      if (n - off >= len) {
        const msg = chunk.subarray(off, off + len);
        off += len;
        if (!sink.onMessage(msg, flag === 1)) this.stop();
      } else {
        this.#body = Buffer.allocUnsafe(len);
        this.#bodyLen = 0;
      }
    }
  }
}

/** A whole frame (prefix + body) for an uncompressed message. */
export function encodeFrame(message: Uint8Array): Buffer {
  const len = message.length;
  const f = Buffer.allocUnsafe(5 + len);
  f[0] = 0;
  f.writeUInt32BE(len, 1);
  f.set(message, 5);
  return f;
}

const UNIT_MS: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * Parses a grpc-timeout value (1-8 digits and a unit H M S m u n) into milliseconds; undefined when malformed.
 */
export function parseTimeout(value: string): number | undefined {
  const len = value.length;
  if (len < 2 || len > 9) return undefined;
  const unit = UNIT_MS[value.charAt(len - 1)];
  if (unit === undefined) return undefined;
  let n = 0;
  for (let i = 0; i < len - 1; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n * unit;
}

/** Message encodings this layer can decompress, in the order advertised in grpc-accept-encoding. */
export const ACCEPT_ENCODING = 'identity,deflate,gzip';

/**
 * Decompresses one message. Throws a RangeError when the result would exceed `maxLength` and an Error when the
 * data is corrupt.
 */
export function decompress(encoding: string, data: Buffer, maxLength: number): Buffer {
  const opts = { maxOutputLength: Math.max(1, Math.min(maxLength + 1, 2 ** 31 - 1)) };
  const out = encoding === 'gzip' ? gunzipSync(data, opts) : inflateSync(data, opts);
  if (out.length > maxLength) throw new RangeError('decompressed message too large');
  return out;
}

export function isSupportedEncoding(encoding: string): boolean {
  return encoding === 'gzip' || encoding === 'deflate';
}
