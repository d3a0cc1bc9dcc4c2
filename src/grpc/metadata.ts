// gRPC metadata <-> HTTP/2 headers, and the grpc-message percent-encoding.
//
// Invariants:
// - Keys are lowercase; a key ending in `-bin` carries bytes (a Buffer), base64 on the wire (sent unpadded,
//   accepted padded or not); every other key carries a printable-ASCII string.
// - Headers the transport owns (pseudo-headers, content-type, te, grpc-timeout, grpc-encoding, grpc-status,
//   grpc-accept-encoding, ...; user-agent is kept) never appear in incoming metadata, and user metadata never sets them.
// - Incoming metadata is built lazily from the raw header object, only when a handler asks for it.

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

export type MetadataValue = string | Buffer;
/** Metadata to send: one value or several per key. `-bin` keys take Buffers (or Uint8Arrays). */
export type OutgoingMetadata = Readonly<
  Record<string, MetadataValue | Uint8Array | readonly (MetadataValue | Uint8Array)[]>
>;

const RESERVED = new Set([
  'content-type',
  'te',
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'grpc-status',
  'grpc-message',
  'grpc-status-details-bin',
  'content-length',
  'connection',
  'host',
  'transfer-encoding',
  'upgrade',
  'keep-alive',
  'proxy-connection',
]);
const KEY_RE = /^[0-9a-z_.-]+$/;
// Printable ASCII, the only legal characters in a non-binary metadata value.
const VALUE_RE = /^[\x20-\x7e]*$/;

/** Incoming call metadata (request headers minus the transport's own). */
export class Metadata {
  readonly #map = new Map<string, MetadataValue[]>();

  /** Builds metadata from HTTP/2 request headers. */
  static fromHeaders(headers: IncomingHttpHeaders): Metadata {
    const md = new Metadata();
    for (const key of Object.keys(headers)) {
      if (key.charCodeAt(0) === 58 /* ':' */ || RESERVED.has(key)) continue;
      const raw = headers[key];
      if (raw === undefined) continue;
      const values = Array.isArray(raw) ? raw : [raw];
      const out: MetadataValue[] = [];
      if (key.endsWith('-bin')) {
        // Several binary values may arrive joined by commas.
        for (const v of values) for (const part of v.split(',')) out.push(Buffer.from(part.trim(), 'base64'));
      } else {
        for (const v of values) out.push(v);
      }
      md.#map.set(key, out);
    }
    return md;
  }

  /** The first value of `key`, or undefined. */
  get(key: string): MetadataValue | undefined {
    return this.#map.get(key.toLowerCase())?.[0];
  }
  /** Every value of `key` (empty if absent). */
  getAll(key: string): readonly MetadataValue[] {
    return this.#map.get(key.toLowerCase()) ?? [];
  }
  keys(): IterableIterator<string> {
    return this.#map.keys();
  }
  toJSON(): Record<string, readonly MetadataValue[]> {
    return Object.fromEntries(this.#map);
  }
}

function encodeValue(key: string, v: MetadataValue | Uint8Array): string {
  if (key.endsWith('-bin')) {
    const b = typeof v === 'string' ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    return b.toString('base64').replace(/=+$/, '');
  }
  if (typeof v !== 'string' || !VALUE_RE.test(v)) {
    throw new TypeError(`metadata value for "${key}" must be a printable ASCII string`);
  }
  return v;
}

/**
 * Copies user metadata into an HTTP/2 header object. Throws TypeError on an illegal key or value, or on a key the
 * transport owns.
 */
export function addMetadataToHeaders(out: OutgoingHttpHeaders, md: OutgoingMetadata): void {
  for (const rawKey of Object.keys(md)) {
    const key = rawKey.toLowerCase();
    if (!KEY_RE.test(key) || RESERVED.has(key) || key.startsWith('grpc-')) {
      throw new TypeError(`illegal metadata key "${rawKey}"`);
    }
    const v = md[rawKey];
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      out[key] = (v as readonly (MetadataValue | Uint8Array)[]).map((x) => encodeValue(key, x));
    } else {
      out[key] = encodeValue(key, v as MetadataValue | Uint8Array);
    }
  }
}

/**
 * Percent-encodes a grpc-message: UTF-8 bytes outside printable ASCII, and '%' itself, become %XX
 * (PROTOCOL-HTTP2.md, "Status-Message").
 */
export function percentEncode(message: string): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return message;
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
  }
  return out;
}

/** Decodes a percent-encoded grpc-message; malformed escapes are kept as they are. */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25 && i + 2 < s.length && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(c & 0xff);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}
