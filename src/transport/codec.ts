/**
 * The peer wire codec: a batch of Raft {@link Message}s as compact bytes (the `batch` field of a
 * PeerFrame, see docs/transport.md for the byte layout).
 *
 * Layout (version 1), all integers unsigned LEB128 varints unless said otherwise:
 *
 *   batch   = version:u8 (=1) · nIds · id* · nMsgs · message*
 *   id      = len · utf8 bytes                      (node ids, referenced by position)
 *   message = kind:u8 · from:idRef · to:idRef · term · body(kind)
 *   entry   = term · index · type:u8 · len · data bytes
 *
 * Invariants:
 * - decode(encode(batch)) deep-equals batch for every well-formed batch (property-tested).
 * - decodeBatch never returns a malformed Message: every count, length, id reference, enum,
 *   boolean and integer is checked, trailing bytes are refused, and any failure throws a
 *   {@link CodecError} naming what was wrong and where. It throws nothing else.
 * - Integers are JavaScript safe integers (< 2^53): varints are at most 8 bytes. Signed fields
 *   (ReadIndex ctxs and the ReadIndexResp index, which may be -1) are zigzag-encoded.
 * - Decoded entry data and snapshot chunks are fresh copies (one copy each), never views of the
 *   input, so a frame buffer is not kept alive by the log.
 */
import {
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type NodeId,
  type SnapshotMeta,
} from '../raft/types.ts';

/** The codec version written as the first byte of every batch. */
export const CODEC_VERSION = 1;

/** Input that is not a well-formed batch (or a message that cannot be encoded). */
export class CodecError extends Error {
  override readonly name = 'CodecError';
  /** Byte offset where decoding failed (-1 for encoding errors). */
  readonly offset: number;
  constructor(message: string, offset: number, options?: { cause?: unknown }) {
    super(offset >= 0 ? `${message} (at byte ${offset})` : message, options);
    this.offset = offset;
  }
}

const KIND: Readonly<Record<MessageType, number>> = {
  [MessageType.PreVote]: 1,
  [MessageType.PreVoteResp]: 2,
  [MessageType.Vote]: 3,
  [MessageType.VoteResp]: 4,
  [MessageType.Append]: 5,
  [MessageType.AppendResp]: 6,
  [MessageType.Heartbeat]: 7,
  [MessageType.HeartbeatResp]: 8,
  [MessageType.Snapshot]: 9,
  [MessageType.SnapshotResp]: 10,
  [MessageType.TimeoutNow]: 11,
  [MessageType.Propose]: 12,
  [MessageType.ReadIndex]: 13,
  [MessageType.ReadIndexResp]: 14,
};
const TYPE_OF_KIND: readonly (MessageType | undefined)[] = (() => {
  const t: (MessageType | undefined)[] = [];
  for (const [type, kind] of Object.entries(KIND)) t[kind] = type as MessageType;
  return t;
})();

/** Upper bound of one varint (safe integers need at most 8 bytes). */
const V = 8;

// ---------------------------------------------------------------- encoding

class Writer {
  readonly buf: Uint8Array;
  pos: number;
  readonly ids = new Map<NodeId, number>();
  constructor(buf: Uint8Array, pos: number) {
    this.buf = buf;
    this.pos = pos;
  }
  u8(v: number): void {
    this.buf[this.pos++] = v;
  }
  uint(v: number, what: string): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new CodecError(`cannot encode ${what}: ${v} is not a non-negative safe integer`, -1);
    }
    const b = this.buf;
    let p = this.pos;
    while (v >= 0x80) {
      b[p++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[p++] = v;
    this.pos = p;
  }
  sint(v: number, what: string): void {
    if (!Number.isSafeInteger(v) || Math.abs(v) > 2 ** 51) {
      throw new CodecError(`cannot encode ${what}: ${v} is not an integer within ±2^51`, -1);
    }
    this.uint(v >= 0 ? v * 2 : -v * 2 - 1, what);
  }
  bool(v: boolean): void {
    this.buf[this.pos++] = v ? 1 : 0;
  }
  bytes(d: Uint8Array): void {
    this.uint(d.length, 'byte length');
    this.buf.set(d, this.pos);
    this.pos += d.length;
  }
  id(s: NodeId): void {
    const i = this.ids.get(s);
    if (i === undefined) throw new CodecError(`node id ${JSON.stringify(s)} missing from the id table`, -1);
    this.uint(i, 'id reference');
  }
}

const utf8 = new TextEncoder();

function collectIds(msgs: readonly Message[]): NodeId[] {
  const seen = new Set<NodeId>();
  for (const m of msgs) {
    seen.add(m.from);
    seen.add(m.to);
    if (m.type === MessageType.Snapshot) {
      for (const v of m.meta.conf.voters) seen.add(v);
      for (const l of m.meta.conf.learners) seen.add(l);
    }
  }
  return [...seen];
}

/** An upper bound of the encoded size of `msgs` given their id table `idBytes`. */
function sizeBound(msgs: readonly Message[], idBytes: readonly Uint8Array[]): number {
  let n = 1 + V + V;
  for (const b of idBytes) n += V + b.length;
  for (const m of msgs) n += messageSizeBound(m);
  return n;
}

/** An upper bound of one message's encoded size, excluding the batch's id table. */
export function messageSizeBound(m: Message): number {
  let n = 1 + 3 * V;
  switch (m.type) {
    case MessageType.Append:
      n += 4 * V;
      for (const e of m.entries) n += 3 * V + 1 + e.data.length;
      return n;
    case MessageType.Propose:
      n += V;
      for (const e of m.entries) n += 1 + V + e.data.length;
      return n;
    case MessageType.Snapshot:
      return n + 4 * V + 2 + m.data.length + V * (m.meta.conf.voters.length + m.meta.conf.learners.length);
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResp:
      return n + 2 * V + V * m.ctxs.length;
    default:
      return n + 4 * V + 1;
  }
}

/**
 * Encodes `msgs` into a fresh buffer leaving `headroom` free bytes in front (the gRPC transport
 * writes its frame prefix there). Returns the buffer and the end of the batch; the batch occupies
 * [headroom, end).
 * @internal
 */
export function encodeBatchWithHeadroom(
  msgs: readonly Message[],
  headroom: number,
): { buf: Buffer; end: number } {
  const ids = collectIds(msgs);
  const idBytes = ids.map((s) => utf8.encode(s));
  const buf = Buffer.allocUnsafe(headroom + sizeBound(msgs, idBytes));
  const w = new Writer(buf, headroom);
  w.u8(CODEC_VERSION);
  w.uint(ids.length, 'id count');
  for (let i = 0; i < ids.length; i++) {
    w.ids.set(ids[i]!, i);
    w.bytes(idBytes[i]!);
  }
  w.uint(msgs.length, 'message count');
  for (const m of msgs) writeMessage(w, m);
  return { buf, end: w.pos };
}

/** Encodes a batch of messages (see the layout above). Throws CodecError on an unencodable field. */
export function encodeBatch(msgs: readonly Message[]): Uint8Array {
  const { buf, end } = encodeBatchWithHeadroom(msgs, 0);
  return new Uint8Array(buf.buffer, buf.byteOffset, end);
}

function writeConf(w: Writer, c: ConfState): void {
  w.uint(c.voters.length, 'voter count');
  for (const v of c.voters) w.id(v);
  w.uint(c.learners.length, 'learner count');
  for (const l of c.learners) w.id(l);
}

function writeMessage(w: Writer, m: Message): void {
  const kind = KIND[m.type];
  if (kind === undefined) throw new CodecError(`unknown message type ${String(m.type)}`, -1);
  w.u8(kind);
  w.id(m.from);
  w.id(m.to);
  w.uint(m.term, 'term');
  switch (m.type) {
    case MessageType.PreVote:
    case MessageType.Vote:
      w.uint(m.lastLogIndex, 'lastLogIndex');
      w.uint(m.lastLogTerm, 'lastLogTerm');
      w.bool(m.transfer);
      return;
    case MessageType.PreVoteResp:
    case MessageType.VoteResp:
      w.bool(m.reject);
      return;
    case MessageType.Append:
      w.uint(m.prevIndex, 'prevIndex');
      w.uint(m.prevTerm, 'prevTerm');
      w.uint(m.commit, 'commit');
      w.uint(m.entries.length, 'entry count');
      for (const e of m.entries) {
        w.uint(e.term, 'entry term');
        w.uint(e.index, 'entry index');
        w.u8(e.type);
        w.bytes(e.data);
      }
      return;
    case MessageType.AppendResp:
      w.uint(m.index, 'index');
      w.bool(m.reject);
      w.uint(m.hintIndex, 'hintIndex');
      w.uint(m.hintTerm, 'hintTerm');
      return;
    case MessageType.Heartbeat:
      w.uint(m.commit, 'commit');
      w.uint(m.readSeq, 'readSeq');
      return;
    case MessageType.HeartbeatResp:
      w.uint(m.readSeq, 'readSeq');
      return;
    case MessageType.Snapshot:
      w.uint(m.meta.index, 'snapshot index');
      w.uint(m.meta.term, 'snapshot term');
      writeConf(w, m.meta.conf);
      w.uint(m.offset, 'offset');
      w.bool(m.done);
      w.bytes(m.data);
      return;
    case MessageType.SnapshotResp:
      w.uint(m.index, 'index');
      w.uint(m.offset, 'offset');
      return;
    case MessageType.TimeoutNow:
      return;
    case MessageType.Propose:
      w.uint(m.entries.length, 'entry count');
      for (const e of m.entries) {
        w.u8(e.type);
        w.bytes(e.data);
      }
      return;
    case MessageType.ReadIndex:
      w.uint(m.ctxs.length, 'ctx count');
      for (const c of m.ctxs) w.sint(c, 'ctx');
      return;
    case MessageType.ReadIndexResp:
      w.uint(m.ctxs.length, 'ctx count');
      for (const c of m.ctxs) w.sint(c, 'ctx');
      w.sint(m.index, 'index');
      return;
  }
}

// ---------------------------------------------------------------- decoding

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

class Reader {
  readonly buf: Uint8Array;
  pos = 0;
  ids: NodeId[] = [];
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }
  fail(what: string, at = this.pos): never {
    throw new CodecError(what, at);
  }
  u8(what: string): number {
    if (this.pos >= this.buf.length) this.fail(`truncated input: missing ${what}`);
    return this.buf[this.pos++]!;
  }
  uint(what: string): number {
    const b = this.buf;
    const start = this.pos;
    let v = 0;
    let mul = 1;
    for (let i = 0; i < V; i++) {
      if (this.pos >= b.length) this.fail(`truncated input: varint ${what} cut short`, start);
      const byte = b[this.pos++]!;
      v += (byte & 0x7f) * mul;
      if (byte < 0x80) {
        if (byte === 0 && i > 0) this.fail(`non-canonical varint for ${what}`, start);
        if (!Number.isSafeInteger(v)) this.fail(`${what} exceeds 2^53-1`, start);
        return v;
      }
      mul *= 0x80;
    }
    return this.fail(`varint ${what} longer than ${V} bytes`, start);
  }
  sint(what: string): number {
    const z = this.uint(what);
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }
  /** A count of items each at least `minItemBytes` long: bounded by the bytes left. */
  count(what: string, minItemBytes: number): number {
    const at = this.pos;
    const n = this.uint(what);
    if (n * minItemBytes > this.buf.length - this.pos) {
      this.fail(`${what} ${n} exceeds what the remaining ${this.buf.length - this.pos} bytes can hold`, at);
    }
    return n;
  }
  bool(what: string): boolean {
    const at = this.pos;
    const v = this.u8(what);
    if (v > 1) this.fail(`${what} must be 0 or 1, got ${v}`, at);
    return v === 1;
  }
  /** A length-prefixed byte string, copied out of the input. */
  bytes(what: string): Uint8Array {
    const at = this.pos;
    const n = this.uint(`${what} length`);
    if (n > this.buf.length - this.pos) {
      this.fail(`truncated input: ${what} needs ${n} bytes, ${this.buf.length - this.pos} left`, at);
    }
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  id(what: string): NodeId {
    const at = this.pos;
    const i = this.uint(`${what} id reference`);
    const s = this.ids[i];
    if (s === undefined)
      this.fail(`${what} refers to node id #${i}, but the table has ${this.ids.length}`, at);
    return s;
  }
  entryType(): EntryType {
    const at = this.pos;
    const t = this.u8('entry type');
    if (t !== EntryType.Normal && t !== EntryType.ConfChange) this.fail(`unknown entry type ${t}`, at);
    return t;
  }
}

/**
 * Decodes a batch written by {@link encodeBatch}. Throws {@link CodecError} (and nothing else)
 * on truncated, trailing or malformed input.
 */
export function decodeBatch(bytes: Uint8Array): Message[] {
  // A plain Uint8Array view, so that slices are copies (Buffer#slice would be a view).
  const view =
    bytes.constructor === Uint8Array
      ? bytes
      : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(view);
  const version = r.u8('version byte');
  if (version !== CODEC_VERSION) {
    r.fail(`unsupported codec version ${version} (this build reads ${CODEC_VERSION})`, 0);
  }
  const nIds = r.count('node id count', 1);
  const ids: NodeId[] = [];
  for (let i = 0; i < nIds; i++) {
    const at = r.pos;
    const raw = r.bytes('node id');
    let s: string;
    try {
      s = utf8Strict.decode(raw);
    } catch (e) {
      throw new CodecError('node id is not valid UTF-8', at, { cause: e });
    }
    ids.push(s);
  }
  r.ids = ids;
  const n = r.count('message count', 4);
  const out: Message[] = [];
  for (let i = 0; i < n; i++) out.push(readMessage(r));
  if (r.pos !== view.length) r.fail(`${view.length - r.pos} trailing bytes after the last message`);
  return out;
}

function readConf(r: Reader): ConfState {
  const nv = r.count('voter count', 1);
  const voters: NodeId[] = [];
  for (let i = 0; i < nv; i++) voters.push(r.id('voter'));
  const nl = r.count('learner count', 1);
  const learners: NodeId[] = [];
  for (let i = 0; i < nl; i++) learners.push(r.id('learner'));
  return { voters, learners };
}

function readMessage(r: Reader): Message {
  const at = r.pos;
  const kind = r.u8('message kind');
  const type = TYPE_OF_KIND[kind];
  if (type === undefined) return r.fail(`unknown message kind ${kind}`, at);
  const from = r.id('from');
  const to = r.id('to');
  const term = r.uint('term');
  switch (type) {
    case MessageType.PreVote:
    case MessageType.Vote:
      return {
        type,
        from,
        to,
        term,
        lastLogIndex: r.uint('lastLogIndex'),
        lastLogTerm: r.uint('lastLogTerm'),
        transfer: r.bool('transfer flag'),
      };
    case MessageType.PreVoteResp:
    case MessageType.VoteResp:
      return { type, from, to, term, reject: r.bool('reject flag') };
    case MessageType.Append: {
      const prevIndex = r.uint('prevIndex');
      const prevTerm = r.uint('prevTerm');
      const commit = r.uint('commit');
      const ne = r.count('entry count', 4);
      const entries: Entry[] = [];
      for (let i = 0; i < ne; i++) {
        const eterm = r.uint('entry term');
        const index = r.uint('entry index');
        const etype = r.entryType();
        entries.push({ term: eterm, index, type: etype, data: r.bytes('entry data') });
      }
      return { type, from, to, term, prevIndex, prevTerm, entries, commit };
    }
    case MessageType.AppendResp:
      return {
        type,
        from,
        to,
        term,
        index: r.uint('index'),
        reject: r.bool('reject flag'),
        hintIndex: r.uint('hintIndex'),
        hintTerm: r.uint('hintTerm'),
      };
    case MessageType.Heartbeat:
      return { type, from, to, term, commit: r.uint('commit'), readSeq: r.uint('readSeq') };
    case MessageType.HeartbeatResp:
      return { type, from, to, term, readSeq: r.uint('readSeq') };
    case MessageType.Snapshot: {
      const index = r.uint('snapshot index');
      const sterm = r.uint('snapshot term');
      const conf = readConf(r);
      const meta: SnapshotMeta = { index, term: sterm, conf };
      const offset = r.uint('offset');
      const done = r.bool('done flag');
      return { type, from, to, term, meta, offset, data: r.bytes('snapshot chunk'), done };
    }
    case MessageType.SnapshotResp:
      return { type, from, to, term, index: r.uint('index'), offset: r.uint('offset') };
    case MessageType.TimeoutNow:
      return { type, from, to, term };
    case MessageType.Propose: {
      const ne = r.count('entry count', 2);
      const entries: { type: EntryType; data: Uint8Array }[] = [];
      for (let i = 0; i < ne; i++) {
        const etype = r.entryType();
        entries.push({ type: etype, data: r.bytes('proposal data') });
      }
      return { type, from, to, term, entries };
    }
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResp: {
      const nc = r.count('ctx count', 1);
      const ctxs: number[] = [];
      for (let i = 0; i < nc; i++) ctxs.push(r.sint('ctx'));
      if (type === MessageType.ReadIndex) return { type, from, to, term, ctxs };
      return { type, from, to, term, ctxs, index: r.sint('index') };
    }
  }
}
