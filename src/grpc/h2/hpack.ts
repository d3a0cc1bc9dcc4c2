// HPACK (RFC 7541) for the server's own HTTP/2 connections: a complete decoder (static and dynamic tables,
// Huffman strings, table-size updates) and an encoder that never indexes.
//
// Invariants:
// - The decoder's dynamic table never holds more than its limit (the SETTINGS_HEADER_TABLE_SIZE we advertise);
//   entries are evicted oldest first. A size update above the limit, an index out of range, a truncated
//   integer or string, an integer over 2^28, Huffman padding that is not a prefix of EOS, or EOS inside a
//   string throws HpackError. After that the table is out of step with the peer's: the connection must end
//   with COMPRESSION_ERROR.
// - Header octets are read and written as latin1, one char per octet, so sizes are string lengths.
// - The encoder emits only static-table indexed fields and literals "without indexing": it never adds to the
//   peer's table, so an encoded block depends on nothing but its headers and may be cached and reused.

export class HpackError extends Error {
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = 'HpackError';
  }
}

/** RFC 7541 Appendix A. */
const STATIC: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

// ---- Huffman (RFC 7541 Appendix B) ----
// The code is canonical (codes ordered by length, then by symbol), so the bit lengths of the 257 symbols
// (0-255 and EOS = 256) define it entirely. One char per symbol: 'a' + (length - 5).
const LENGTHS =
  'isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhf' +
  'ibccccccccccccccccccccccdcdioijbkabababbbaccbbbabcbaabccccckgjix' +
  'prpprrrsrssssststtrstssssqrsrsstrqprrssqsrrtqrssqqrqsrssprrrsrrs' +
  'vvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwv' +
  'z';
const EOS = 256;
const MAX_CODE_BITS = 30;
/** Symbols sorted by (length, symbol); `first[L]` is the first code of length L, `offset[L]` its rank. */
const SORTED = new Uint16Array(257);
const FIRST = new Int32Array(MAX_CODE_BITS + 1);
const COUNT = new Int32Array(MAX_CODE_BITS + 1);
const OFFSET = new Int32Array(MAX_CODE_BITS + 1);
{
  for (let s = 0; s < 257; s++) COUNT[LENGTHS.charCodeAt(s) - 92]!++;
  let code = 0;
  let rank = 0;
  for (let len = 1; len <= MAX_CODE_BITS; len++) {
    FIRST[len] = code;
    OFFSET[len] = rank;
    rank += COUNT[len]!;
    code = (code + COUNT[len]!) << 1;
  }
  const next = OFFSET.slice();
  for (let s = 0; s < 257; s++) SORTED[next[LENGTHS.charCodeAt(s) - 92]!++] = s;
}

let huffScratch = Buffer.allocUnsafe(256);

/** Decodes a Huffman string of `buf[start, end)` to latin1. */
export function huffmanDecode(buf: Buffer, start: number, end: number): string {
  const maxOut = Math.ceil(((end - start) * 8) / 5);
  if (huffScratch.length < maxOut) huffScratch = Buffer.allocUnsafe(Math.max(maxOut, huffScratch.length * 2));
  const out = huffScratch;
  let n = 0;
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      if (len >= 5) {
        const k = code - FIRST[len]!;
        if (k >= 0 && k < COUNT[len]!) {
          const sym = SORTED[OFFSET[len]! + k]!;
          if (sym === EOS) throw new HpackError('EOS inside a Huffman string');
          out[n++] = sym;
          code = 0;
          len = 0;
        } else if (len === MAX_CODE_BITS) {
          throw new HpackError('invalid Huffman code');
        }
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (len > 7 || code !== (1 << len) - 1) throw new HpackError('invalid Huffman padding');
  return out.toString('latin1', 0, n);
}

/** Huffman-encodes a latin1 string (used by tests and available to callers that want short blocks). */
export function huffmanEncode(s: string): Buffer {
  const codes = symbolCodes();
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += LENGTHS.charCodeAt(s.charCodeAt(i) & 0xff) - 92;
  const out = Buffer.alloc(Math.ceil(bits / 8));
  let pos = 0;
  for (let i = 0; i < s.length; i++) {
    const sym = s.charCodeAt(i) & 0xff;
    const len = LENGTHS.charCodeAt(sym) - 92;
    const code = codes[sym]!;
    for (let b = len - 1; b >= 0; b--, pos++) {
      if ((code >>> b) & 1) out[pos >> 3]! |= 0x80 >> (pos & 7);
    }
  }
  for (; pos < out.length * 8; pos++) out[pos >> 3]! |= 0x80 >> (pos & 7);
  return out;
}

let codesCache: Uint32Array | null = null;
function symbolCodes(): Uint32Array {
  if (codesCache !== null) return codesCache;
  const codes = new Uint32Array(257);
  for (let len = 1; len <= MAX_CODE_BITS; len++) {
    for (let k = 0; k < COUNT[len]!; k++) codes[SORTED[OFFSET[len]! + k]!] = FIRST[len]! + k;
  }
  codesCache = codes;
  return codes;
}

// ---- decoder ----

/** Receives each decoded field in order. */
export type FieldSink = (name: string, value: string) => void;

export class HpackDecoder {
  /** Newest entry last. */
  readonly #names: string[] = [];
  readonly #values: string[] = [];
  #size = 0;
  /** What the peer last set with a table-size update (starts at the limit). */
  #maxSize: number;
  readonly #limit: number;
  #pos = 0;

  constructor(limit = 4096) {
    this.#limit = limit;
    this.#maxSize = limit;
  }

  get tableSize(): number {
    return this.#size;
  }
  get tableEntries(): number {
    return this.#names.length;
  }

  /** Decodes one complete header block, calling `sink` for each field. Throws HpackError. */
  decode(block: Buffer, sink: FieldSink): void {
    const end = block.length;
    this.#pos = 0;
    let fields = 0;
    while (this.#pos < end) {
      const b = block[this.#pos]!;
      if (b & 0x80) {
        const idx = this.#int(block, 7);
        if (idx === 0) throw new HpackError('index 0');
        sink(this.#name(idx), this.#value(idx));
        fields++;
      } else if (b & 0x40) {
        const idx = this.#int(block, 6);
        const name = idx === 0 ? this.#str(block) : this.#name(idx);
        const value = this.#str(block);
        this.#add(name, value);
        sink(name, value);
        fields++;
      } else if (b & 0x20) {
        if (fields > 0) throw new HpackError('table size update after a field');
        const size = this.#int(block, 5);
        if (size > this.#limit)
          throw new HpackError(`table size update to ${size} over the limit ${this.#limit}`);
        this.#maxSize = size;
        this.#evict(0);
      } else {
        // literal without indexing (0000) or never indexed (0001): same layout, 4-bit prefix
        const idx = this.#int(block, 4);
        const name = idx === 0 ? this.#str(block) : this.#name(idx);
        sink(name, this.#str(block));
        fields++;
      }
    }
  }

  #int(buf: Buffer, prefix: number): number {
    const mask = (1 << prefix) - 1;
    let v = buf[this.#pos++]! & mask;
    if (v < mask) return v;
    let m = 0;
    for (;;) {
      if (this.#pos >= buf.length) throw new HpackError('truncated integer');
      const b = buf[this.#pos++]!;
      v += (b & 0x7f) * 2 ** m;
      if ((b & 0x80) === 0) break;
      m += 7;
      if (m > 21) throw new HpackError('integer too large');
    }
    return v;
  }

  #str(buf: Buffer): string {
    if (this.#pos >= buf.length) throw new HpackError('truncated string');
    const huff = (buf[this.#pos]! & 0x80) !== 0;
    const len = this.#int(buf, 7);
    const start = this.#pos;
    const end = start + len;
    if (end > buf.length) throw new HpackError('truncated string');
    this.#pos = end;
    if (huff) return huffmanDecode(buf, start, end);
    return buf.toString('latin1', start, end);
  }

  #name(idx: number): string {
    if (idx <= STATIC.length) return STATIC[idx - 1]![0];
    const d = this.#names.length - (idx - STATIC.length);
    if (d < 0) throw new HpackError(`index ${idx} out of range`);
    return this.#names[d]!;
  }
  #value(idx: number): string {
    if (idx <= STATIC.length) return STATIC[idx - 1]![1];
    const d = this.#values.length - (idx - STATIC.length);
    if (d < 0) throw new HpackError(`index ${idx} out of range`);
    return this.#values[d]!;
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + 32;
    if (size > this.#maxSize) {
      // an entry larger than the table empties it and is not added
      this.#names.length = 0;
      this.#values.length = 0;
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#names.push(name);
    this.#values.push(value);
    this.#size += size;
  }

  /** Evicts oldest entries until `room` more octets fit. */
  #evict(room: number): void {
    let drop = 0;
    while (this.#size + room > this.#maxSize && drop < this.#names.length) {
      this.#size -= this.#names[drop]!.length + this.#values[drop]!.length + 32;
      drop++;
    }
    if (drop > 0) {
      this.#names.splice(0, drop);
      this.#values.splice(0, drop);
    }
  }
}

// ---- encoder ----

const STATIC_NAME = new Map<string, number>();
const STATIC_PAIR = new Map<string, number>();
for (let i = STATIC.length - 1; i >= 0; i--) {
  const [n, v] = STATIC[i]!;
  STATIC_NAME.set(n, i + 1);
  if (v !== '') STATIC_PAIR.set(`${n}\0${v}`, i + 1);
}

export type HeaderValue = string | number | readonly string[] | undefined;

/** Encodes header fields (names must already be lowercase) with no dynamic-table use. */
export function encodeHeaders(headers: Readonly<Record<string, HeaderValue>>): Buffer {
  const pieces: Buffer[] = [];
  const emit = (name: string, value: string): void => {
    const pair = STATIC_PAIR.get(`${name}\0${value}`);
    if (pair !== undefined) {
      pieces.push(intBytes(pair, 7, 0x80));
      return;
    }
    const idx = STATIC_NAME.get(name);
    if (idx !== undefined) {
      pieces.push(intBytes(idx, 4, 0x00));
    } else {
      pieces.push(Buffer.of(0x00), strBytes(name));
    }
    pieces.push(strBytes(value));
  };
  // Pseudo-headers first, as HTTP/2 requires.
  for (const pass of [true, false]) {
    for (const name of Object.keys(headers)) {
      if ((name.charCodeAt(0) === 58) !== pass) continue;
      const v = headers[name];
      if (v === undefined) continue;
      if (typeof v === 'object') for (const x of v) emit(name, x);
      else emit(name, String(v));
    }
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

function intBytes(v: number, prefix: number, flags: number): Buffer {
  const mask = (1 << prefix) - 1;
  if (v < mask) return Buffer.of(flags | v);
  const out = [flags | mask];
  v -= mask;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function strBytes(s: string): Buffer {
  const len = intBytes(s.length, 7, 0x00);
  const out = Buffer.allocUnsafe(len.length + s.length);
  len.copy(out, 0);
  out.write(s, len.length, 'latin1');
  return out;
}
