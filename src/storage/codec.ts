/**
 * Byte layout of raftkv's files (all integers little-endian; docs/storage.md has the
 * same tables).
 *
 * WAL segment `wal-<seq:16 digits>.log`:
 *   header (24 bytes): magic "RAFTKVWL" | u32 version=1 | u64 seq | u32 crc32c(bytes 0..20)
 *   then records, back to back:
 *     u32 len  = 1 + body length
 *     u32 crc  = crc32c(len bytes ++ type byte ++ body)
 *     u8  type = record type | 0x80 on the last record of a persist batch (END)
 *     body
 *
 *   Entry     (1): u64 index | u64 term | u8 entry type | data (rest)
 *   HardState (2): u64 term  | u64 commit | vote (utf-8, rest)
 *   Snapshot  (3): u64 index | u64 term  | u8 flags (bit 0: entries after index were kept)
 *   Truncate  (4): u64 from   (drop entries with index >= from)
 *   Continue  (5): u64 seq    (last record of a full segment: the log goes on in segment `seq`)
 *
 * A persist batch is written as consecutive records, the last one flagged END; on recovery
 * a batch counts only if its END record is intact, so a batch is all-or-nothing.
 *
 * Snapshot file `snap-<index:16>-<term:16>.snap`:
 *   magic "RAFTKVSN" | u32 version=1 | u32 metaLen | u64 dataLen | meta JSON | data | u32 crc32c(all before)
 */

import type { Entry, EntryType, HardState, SnapshotMeta } from '../raft/types.ts';
import { crc32c } from './crc32c.ts';

export const FORMAT_VERSION = 1;
export const SEGMENT_MAGIC = 'RAFTKVWL';
export const SEGMENT_HEADER_BYTES = 24;
export const SNAPSHOT_MAGIC = 'RAFTKVSN';
export const RECORD_HEADER_BYTES = 8;
/** Upper bound on one record's `len`, so a corrupt length is recognised as such. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;
export const END_OF_BATCH = 0x80;

export const RecordType = {
  Entry: 1,
  HardState: 2,
  Snapshot: 3,
  Truncate: 4,
  Continue: 5,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

const TWO_32 = 2 ** 32;

export function writeU64(buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n >>> 0, off);
  buf.writeUInt32LE(Math.floor(n / TWO_32), off + 4);
}

export function readU64(buf: Uint8Array, off: number): number {
  const lo = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
  const hi = (buf[off + 4]! | (buf[off + 5]! << 8) | (buf[off + 6]! << 16) | (buf[off + 7]! << 24)) >>> 0;
  return hi * TWO_32 + lo;
}

function readU32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
}

export type WalRecord =
  | { readonly kind: 'entry'; readonly entry: Entry }
  | { readonly kind: 'hardState'; readonly hardState: HardState }
  | { readonly kind: 'snapshot'; readonly index: number; readonly term: number; readonly keep: boolean }
  | { readonly kind: 'truncate'; readonly from: number }
  | { readonly kind: 'continue'; readonly nextSeq: number };

/** What one persist batch writes, in this order: snapshot marker, truncate, entries, hard state. */
export interface BatchRecords {
  readonly snapshot: { readonly index: number; readonly term: number; readonly keep: boolean } | null;
  readonly truncateFrom: number | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

const ENTRY_FIXED = 17;
const HARD_STATE_FIXED = 16;
const SNAPSHOT_BODY = 17;
const TRUNCATE_BODY = 8;

function recordCount(b: BatchRecords): number {
  return (b.snapshot ? 1 : 0) + (b.truncateFrom !== null ? 1 : 0) + b.entries.length + (b.hardState ? 1 : 0);
}

/** Encodes a batch into one buffer: every entry is copied exactly once, straight into place. */
export function encodeBatch(b: BatchRecords): Buffer {
  const n = recordCount(b);
  if (n === 0) return Buffer.alloc(0);
  const vote = b.hardState ? Buffer.from(b.hardState.vote, 'utf8') : null;
  let size = 0;
  if (b.snapshot) size += RECORD_HEADER_BYTES + 1 + SNAPSHOT_BODY;
  if (b.truncateFrom !== null) size += RECORD_HEADER_BYTES + 1 + TRUNCATE_BODY;
  for (const e of b.entries) size += RECORD_HEADER_BYTES + 1 + ENTRY_FIXED + e.data.length;
  if (vote) size += RECORD_HEADER_BYTES + 1 + HARD_STATE_FIXED + vote.length;
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  let left = n;
  const begin = (type: RecordType, bodyLen: number): number => {
    buf.writeUInt32LE(1 + bodyLen, off);
    left--;
    buf[off + RECORD_HEADER_BYTES] = left === 0 ? type | END_OF_BATCH : type;
    return off + RECORD_HEADER_BYTES + 1;
  };
  const finish = (bodyEnd: number): void => {
    let c = crc32c(buf, 0, off, off + 4);
    c = crc32c(buf, c, off + RECORD_HEADER_BYTES, bodyEnd);
    buf.writeUInt32LE(c, off + 4);
    off = bodyEnd;
  };
  if (b.snapshot) {
    const p = begin(RecordType.Snapshot, SNAPSHOT_BODY);
    writeU64(buf, p, b.snapshot.index);
    writeU64(buf, p + 8, b.snapshot.term);
    buf[p + 16] = b.snapshot.keep ? 1 : 0;
    finish(p + SNAPSHOT_BODY);
  }
  if (b.truncateFrom !== null) {
    const p = begin(RecordType.Truncate, TRUNCATE_BODY);
    writeU64(buf, p, b.truncateFrom);
    finish(p + TRUNCATE_BODY);
  }
  for (const e of b.entries) {
    const p = begin(RecordType.Entry, ENTRY_FIXED + e.data.length);
    writeU64(buf, p, e.index);
    writeU64(buf, p + 8, e.term);
    buf[p + 16] = e.type;
    buf.set(e.data, p + ENTRY_FIXED);
    finish(p + ENTRY_FIXED + e.data.length);
  }
  if (b.hardState && vote) {
    const p = begin(RecordType.HardState, HARD_STATE_FIXED + vote.length);
    writeU64(buf, p, b.hardState.term);
    writeU64(buf, p + 8, b.hardState.commit);
    buf.set(vote, p + HARD_STATE_FIXED);
    finish(p + HARD_STATE_FIXED + vote.length);
  }
  return buf;
}

/** The one-record batch that closes a full segment, naming the segment the log continues in. */
export function encodeContinue(nextSeq: number): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + 1 + 8);
  buf.writeUInt32LE(9, 0);
  buf[RECORD_HEADER_BYTES] = RecordType.Continue | END_OF_BATCH;
  writeU64(buf, RECORD_HEADER_BYTES + 1, nextSeq);
  buf.writeUInt32LE(crc32c(buf, crc32c(buf, 0, 0, 4), RECORD_HEADER_BYTES, buf.length), 4);
  return buf;
}

export function encodeSegmentHeader(seq: number): Buffer {
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  buf.write(SEGMENT_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(FORMAT_VERSION, 8);
  writeU64(buf, 12, seq);
  buf.writeUInt32LE(crc32c(buf, 0, 0, 20), 20);
  return buf;
}

/** Why a segment header is unusable, or null when it is fine. */
export function checkSegmentHeader(buf: Uint8Array, seq: number): string | null {
  if (buf.length < SEGMENT_HEADER_BYTES)
    return `file is ${buf.length} bytes, shorter than the segment header`;
  if (Buffer.from(buf.buffer, buf.byteOffset, 8).toString('latin1') !== SEGMENT_MAGIC) {
    return 'bad magic (not a raftkv WAL segment)';
  }
  if (readU32(buf, 20) !== crc32c(buf, 0, 0, 20)) return 'segment header checksum mismatch';
  const version = readU32(buf, 8);
  if (version !== FORMAT_VERSION) return `unsupported WAL format version ${version}`;
  const stored = readU64(buf, 12);
  if (stored !== seq) return `header says sequence ${stored} but the file name says ${seq}`;
  return null;
}

export interface DecodedRecord {
  readonly offset: number;
  readonly end: number;
  readonly last: boolean;
  readonly record: WalRecord;
}

export type RecordResult =
  | { readonly ok: true; readonly rec: DecodedRecord }
  /** `bytes`: damaged or incomplete framing (possibly a torn write). `format`: intact bytes that make no sense. */
  | { readonly ok: false; readonly kind: 'bytes' | 'format'; readonly reason: string };

/** Reads the record at `off`; `buf.length` is the end of valid data. */
export function readRecord(buf: Uint8Array, off: number): RecordResult {
  const avail = buf.length - off;
  if (avail < RECORD_HEADER_BYTES + 1) {
    return {
      ok: false,
      kind: 'bytes',
      reason: `incomplete record header (${avail} bytes before end of file)`,
    };
  }
  const len = readU32(buf, off);
  if (len < 1 || len > MAX_RECORD_BYTES)
    return { ok: false, kind: 'bytes', reason: `invalid record length ${len}` };
  const end = off + RECORD_HEADER_BYTES + len;
  if (end > buf.length) {
    return { ok: false, kind: 'bytes', reason: `record of ${len} bytes runs past the end of the file` };
  }
  const stored = readU32(buf, off + 4);
  const computed = crc32c(buf, crc32c(buf, 0, off, off + 4), off + RECORD_HEADER_BYTES, end);
  if (stored !== computed) {
    return {
      ok: false,
      kind: 'bytes',
      reason: `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`,
    };
  }
  const typeByte = buf[off + RECORD_HEADER_BYTES]!;
  const last = (typeByte & END_OF_BATCH) !== 0;
  const type = typeByte & ~END_OF_BATCH;
  const p = off + RECORD_HEADER_BYTES + 1;
  const bodyLen = len - 1;
  const bad = (what: string): RecordResult => ({ ok: false, kind: 'format', reason: what });
  let record: WalRecord;
  switch (type) {
    case RecordType.Entry: {
      if (bodyLen < ENTRY_FIXED) return bad(`entry record body of ${bodyLen} bytes is too short`);
      const et = buf[p + 16]!;
      if (et !== 0 && et !== 1) return bad(`unknown entry type ${et}`);
      const entry: Entry = {
        index: readU64(buf, p),
        term: readU64(buf, p + 8),
        type: et as EntryType,
        // a copy: a view would keep the whole segment buffer (up to a preallocated 64 MiB) alive
        data: Buffer.from(buf.subarray(p + ENTRY_FIXED, end)),
      };
      record = { kind: 'entry', entry };
      break;
    }
    case RecordType.HardState: {
      if (bodyLen < HARD_STATE_FIXED) return bad(`hard state record body of ${bodyLen} bytes is too short`);
      const hardState: HardState = {
        term: readU64(buf, p),
        vote: Buffer.from(
          buf.buffer,
          buf.byteOffset + p + HARD_STATE_FIXED,
          end - p - HARD_STATE_FIXED,
        ).toString('utf8'),
        commit: readU64(buf, p + 8),
      };
      record = { kind: 'hardState', hardState };
      break;
    }
    case RecordType.Snapshot:
      if (bodyLen !== SNAPSHOT_BODY) return bad(`snapshot record body of ${bodyLen} bytes (expected 17)`);
      record = {
        kind: 'snapshot',
        index: readU64(buf, p),
        term: readU64(buf, p + 8),
        keep: (buf[p + 16]! & 1) === 1,
      };
      break;
    case RecordType.Truncate:
      if (bodyLen !== TRUNCATE_BODY) return bad(`truncate record body of ${bodyLen} bytes (expected 8)`);
      record = { kind: 'truncate', from: readU64(buf, p) };
      break;
    case RecordType.Continue:
      if (bodyLen !== 8) return bad(`continue record body of ${bodyLen} bytes (expected 8)`);
      record = { kind: 'continue', nextSeq: readU64(buf, p) };
      break;
    default:
      return bad(`unknown record type ${type}`);
  }
  return { ok: true, rec: { offset: off, end, last, record } };
}

/** True when an intact record starts somewhere in `buf[from..]` (used to tell a torn tail from corruption). */
export function findIntactRecord(buf: Uint8Array, from: number, limit = buf.length): number {
  for (let p = from; p + RECORD_HEADER_BYTES + 1 <= limit; p++) {
    const len = readU32(buf, p);
    if (len < 1 || len > limit - p - RECORD_HEADER_BYTES) continue;
    const type = buf[p + RECORD_HEADER_BYTES]! & ~END_OF_BATCH;
    if (type < RecordType.Entry || type > RecordType.Continue) continue;
    if (readRecord(buf, p).ok) return p;
  }
  return -1;
}

export function encodeSnapshotFile(meta: SnapshotMeta, data: Uint8Array): Buffer {
  const metaJson = Buffer.from(
    JSON.stringify({
      index: meta.index,
      term: meta.term,
      conf: { voters: meta.conf.voters, learners: meta.conf.learners },
    }),
    'utf8',
  );
  const size = 24 + metaJson.length + data.length + 4;
  const buf = Buffer.allocUnsafe(size);
  buf.write(SNAPSHOT_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(FORMAT_VERSION, 8);
  buf.writeUInt32LE(metaJson.length, 12);
  writeU64(buf, 16, data.length);
  metaJson.copy(buf, 24);
  buf.set(data, 24 + metaJson.length);
  buf.writeUInt32LE(crc32c(buf, 0, 0, size - 4), size - 4);
  return buf;
}

/** Decodes a snapshot file; returns the reason it is unusable as a string. */
export function decodeSnapshotFile(buf: Uint8Array): { meta: SnapshotMeta; data: Uint8Array } | string {
  if (buf.length < 28) return `file is ${buf.length} bytes, too short for a snapshot`;
  if (Buffer.from(buf.buffer, buf.byteOffset, 8).toString('latin1') !== SNAPSHOT_MAGIC) return 'bad magic';
  const version = readU32(buf, 8);
  if (version !== FORMAT_VERSION) return `unsupported snapshot format version ${version}`;
  const metaLen = readU32(buf, 12);
  const dataLen = readU64(buf, 16);
  if (24 + metaLen + dataLen + 4 !== buf.length) return 'length fields do not match the file size';
  const stored = readU32(buf, buf.length - 4);
  const computed = crc32c(buf, 0, 0, buf.length - 4);
  if (stored !== computed) {
    return `checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 24, metaLen).toString('utf8'));
  } catch (err) {
    return `snapshot metadata is not JSON (${(err as Error).message})`;
  }
  const meta = parseSnapshotMeta(parsed);
  if (meta === null) return 'snapshot metadata has the wrong shape';
  return { meta, data: buf.slice(24 + metaLen, 24 + metaLen + dataLen) };
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function parseSnapshotMeta(v: unknown): SnapshotMeta | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const conf = o['conf'];
  if (typeof o['index'] !== 'number' || typeof o['term'] !== 'number') return null;
  if (typeof conf !== 'object' || conf === null) return null;
  const c = conf as Record<string, unknown>;
  const voters = c['voters'];
  const learners = c['learners'];
  if (!isStringArray(voters) || !isStringArray(learners)) return null;
  return { index: o['index'], term: o['term'], conf: { voters, learners } };
}

const PAD = 16;
export function segmentName(seq: number): string {
  return `wal-${String(seq).padStart(PAD, '0')}.log`;
}
export function snapshotName(index: number, term: number): string {
  return `snap-${String(index).padStart(PAD, '0')}-${String(term).padStart(PAD, '0')}.snap`;
}
export const SEGMENT_RE = /^wal-(\d{16})\.log$/;
export const SNAPSHOT_RE = /^snap-(\d{16})-(\d{16})\.snap$/;
export const META_FILE = 'meta.json';
