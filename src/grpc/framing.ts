// gRPC length-prefixed message framing (PROTOCOL-HTTP2.md, "Length-Prefixed-Message") and grpc-timeout parsing.
//
// Invariants:
// - A frame is 1 flag byte (0 = plain, 1 = compressed; any other value is a protocol error), a 4-byte big-endian
//   length, then that many bytes. Frames may be split across chunks at any byte, and one chunk may hold many.
// - The Deframer never buffers more than one message: a length over the receive limit is rejected from its 5-byte
//   prefix alone, before any of the body is kept. A message that fits in the chunk is handed on as a view of it
//   (no copy).
// - Memory follows the bytes that arrived, never the declared length: a split message is gathered in a buffer
//   that starts at the size of its first piece (at least MIN_GATHER) and doubles as more arrives, capped at the
//   message's length. So it holds at most 2x the bytes received (+ MIN_GATHER) and each byte is copied at most
//   twice on average; a prefix declaring 4 GiB followed by nothing costs MIN_GATHER bytes.
// - After the sink reports an error (or `stop()` is called) the Deframer drops everything.
// - Only `identity` messages are decoded: this layer does no decompression (a 16 KB gzip bomb inflates to
//   megabytes of CPU work); call.ts answers compressed messages UNIMPLEMENTED with the truthful
//   grpc-accept-encoding below.

/** Receives whole messages (and framing errors) from a Deframer. */
export interface FrameSink {
  /** One whole message; `compressed` is the frame's flag. Returns false to stop deframing. */
  onMessage(message: Buffer, compressed: boolean): boolean;
  /** A malformed prefix: `tooLarge` when the length exceeds the limit, otherwise a bad flag byte. */
  onFrameError(tooLarge: boolean, length: number): void;
}

/** Smallest buffer a split message is gathered in (it grows by doubling from there). */
const MIN_GATHER = 1024;

export class Deframer {
  // Header bytes gathered so far when a 5-byte prefix is split across chunks.
  #hdr: Buffer | null = null;
  #hdrLen = 0;
  // The message being gathered when its body is split across chunks: `#body` holds `#bodyLen` bytes of the
  // `#want` the prefix announced; it grows (doubling) as they arrive.
  #body: Buffer | null = null;
  #bodyLen = 0;
  #want = 0;
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

  /** Bytes held for an unfinished message (its gathering buffer's size). */
  get bufferedBytes(): number {
    return this.#body === null ? 0 : this.#body.length;
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
      let body = this.#body;
      if (body !== null) {
        const take = Math.min(this.#want - this.#bodyLen, n - off);
        const need = this.#bodyLen + take;
        if (need > body.length) {
          const grown = Buffer.allocUnsafe(Math.min(this.#want, Math.max(need, body.length * 2)));
          body.copy(grown, 0, 0, this.#bodyLen);
          body = this.#body = grown;
        }
        chunk.copy(body, this.#bodyLen, off, off + take);
        this.#bodyLen = need;
        off += take;
        if (need === this.#want) {
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
        // Sized by what is here (the loop copies it next), never by the declared length alone.
        this.#body = Buffer.allocUnsafe(Math.min(len, Math.max(n - off, MIN_GATHER)));
        this.#bodyLen = 0;
        this.#want = len;
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

/**
 * What this layer accepts in grpc-accept-encoding: identity only. Compressed messages are refused (UNIMPLEMENTED)
 * rather than inflated: decompression lets a small request cost a large multiple of its size in CPU and memory.
 */
export const ACCEPT_ENCODING = 'identity';
