/**
 * The replicated key-value state machine: put, delete and compare-and-swap commands
 * applied in log order, point reads served locally, snapshot and restore.
 *
 * Apply never throws on what an entry holds: any bytes give a result, the same on every
 * replica (`invalid` with the reason for bytes that are not a command), so a malformed
 * committed entry can never stop a node. (A non-increasing index is a driver bug and does
 * throw.)
 *
 * Client sessions make writes exactly-once. A client registers a session (a `register`
 * command, client 0): its id is the log index of that entry, so ids are never reused. A
 * write carries (client, seq); a client issues seq in increasing order and retries a write
 * with the same seq. A write whose seq is not above the session's last applied one is not
 * applied again: the last one gets its recorded result back, older ones get `duplicate`.
 * The table holds at most `maxSessions` sessions: registering one more evicts the least
 * recently used (by log order: registration, writes and retries count as use), as
 * dragonboat does. A write naming a session that is not in the table (evicted, or never
 * registered) gets `session-expired` and changes nothing: never a second apply.
 * Commands of format version 1 (written before registration existed) keep their old
 * meaning when a log is replayed: their first write creates the session.
 *
 * Invariants: `applied` only grows; state after applying a log prefix is a pure function
 * of that prefix (and of maxSessions, which must be the same on every replica), so every
 * replica that applied index i holds the same state, sessions and their order included.
 */

export type KvCommand =
  | { readonly kind: 'put'; readonly key: string; readonly value: string }
  | { readonly kind: 'delete'; readonly key: string }
  | {
      readonly kind: 'cas';
      readonly key: string;
      /** The value the key must hold (null: the key must be absent). Ignored when expectedVersion is set. */
      readonly expected: string | null;
      readonly value: string;
      /** When set (> 0), compare the key's version instead of its value. */
      readonly expectedVersion?: number;
    };

export type KvResult =
  | { readonly kind: 'put'; readonly revision: number }
  | { readonly kind: 'delete'; readonly existed: boolean; readonly revision: number }
  | { readonly kind: 'cas'; readonly swapped: boolean; readonly revision: number }
  | { readonly kind: 'duplicate' }
  /** A session was opened (see {@link encodeRegister}): `client` is its id. */
  | { readonly kind: 'register'; readonly client: number }
  /** The write's session is not in the table (evicted, or never registered): nothing was applied. */
  | { readonly kind: 'session-expired'; readonly client: number }
  /** The entry is not a KV command; nothing was applied. */
  | { readonly kind: 'invalid'; readonly reason: string };

export interface KvRequest {
  /** Client session id (0: no session, never deduplicated). */
  readonly client: number;
  readonly seq: number;
  readonly cmd: KvCommand;
}

export interface KvValue {
  readonly value: string;
  /** Index of the entry that last wrote the key. */
  readonly modRevision: number;
  /** Number of writes since the key was created (1 on creation). */
  readonly version: number;
}

export class KvDecodeError extends Error {
  override readonly name = 'KvDecodeError';
}

/** A snapshot this version cannot read (a newer format, or bytes that are not a snapshot). */
export class KvSnapshotError extends Error {
  override readonly name = 'KvSnapshotError';
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/*
 * Command encoding (one log entry = one command), little-endian:
 *   u8 version (2; 1 is the legacy format) | u8 kind (1 put, 2 delete, 3 cas, 4 register)
 *   | f64 client | f64 seq | u32 keyLen | key utf8
 *   put:    | u32 valueLen | value
 *   cas:    | u8 flags (1: expected is null, 2: expectedVersion present)
 *           | [u32 expectedLen | expected] | [f64 expectedVersion] | u32 valueLen | value
 *   register: client 0, seq 0, empty key, nothing after (version 2 only)
 * Binary rather than JSON: it is encoded once per write and decoded once per write on
 * every replica, on the hot path.
 */
/** Current command format: writes need a registered session. */
export const COMMAND_VERSION = 2;
/** Legacy command format: a write's first use of a client id creates its session. */
export const LEGACY_COMMAND_VERSION = 1;
const KIND_PUT = 1;
const KIND_DELETE = 2;
const KIND_CAS = 3;
const KIND_REGISTER = 4;

/** Sessions kept by default; every replica of a cluster must use the same number. */
export const DEFAULT_MAX_SESSIONS = 10_000;
/** Snapshot format written by this version (absent in the first format). */
export const SNAPSHOT_FORMAT = 2;

/** The command that opens a session; applied, it gives `{ kind: 'register', client }`. */
export function encodeRegister(): Uint8Array {
  const buf = Buffer.alloc(22);
  buf[0] = COMMAND_VERSION;
  buf[1] = KIND_REGISTER;
  return buf;
}

/** Encode `req` (format `version`: the current one unless writing legacy commands, as tests and the simulator may). */
export function encodeRequest(req: KvRequest, version: 1 | 2 = COMMAND_VERSION): Uint8Array {
  const cmd = req.cmd;
  const keyLen = Buffer.byteLength(cmd.key);
  let size = 2 + 16 + 4 + keyLen;
  let valueLen = 0;
  let expectedLen = 0;
  if (cmd.kind !== 'delete') {
    valueLen = Buffer.byteLength(cmd.value);
    size += 4 + valueLen;
  }
  const hasVersion = cmd.kind === 'cas' && cmd.expectedVersion !== undefined && cmd.expectedVersion > 0;
  if (cmd.kind === 'cas') {
    size += 1;
    if (cmd.expected !== null) {
      expectedLen = Buffer.byteLength(cmd.expected);
      size += 4 + expectedLen;
    }
    if (hasVersion) size += 8;
  }
  const buf = Buffer.allocUnsafe(size);
  buf[0] = version;
  buf[1] = cmd.kind === 'put' ? KIND_PUT : cmd.kind === 'delete' ? KIND_DELETE : KIND_CAS;
  buf.writeDoubleLE(req.client, 2);
  buf.writeDoubleLE(req.seq, 10);
  buf.writeUInt32LE(keyLen, 18);
  let at = 22 + buf.write(cmd.key, 22);
  if (cmd.kind === 'cas') {
    buf[at++] = (cmd.expected === null ? 1 : 0) | (hasVersion ? 2 : 0);
    if (cmd.expected !== null) {
      buf.writeUInt32LE(expectedLen, at);
      at += 4 + buf.write(cmd.expected, at + 4);
    }
    if (hasVersion) {
      buf.writeDoubleLE(cmd.expectedVersion as number, at);
      at += 8;
    }
  }
  if (cmd.kind !== 'delete') {
    buf.writeUInt32LE(valueLen, at);
    buf.write(cmd.value, at + 4);
  }
  return buf;
}

/** A decoded command with its format version, a registration, or why the bytes are not one. Never throws. */
type Parsed = { readonly req: KvRequest; readonly version: 1 | 2 } | 'register' | { readonly error: string };

function parseRequest(data: Uint8Array): Parsed {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const bad = (error: string): Parsed => ({ error });
  if (buf.length < 22) return bad('shorter than its header');
  const version = buf[0];
  if (version !== COMMAND_VERSION && version !== LEGACY_COMMAND_VERSION)
    return bad(`unknown version ${version}`);
  const kind = buf[1];
  const client = buf.readDoubleLE(2);
  const seq = buf.readDoubleLE(10);
  if (!Number.isSafeInteger(client) || !Number.isSafeInteger(seq) || client < 0 || seq < 0) {
    return bad('client and seq must be non-negative integers');
  }
  let at = 18;
  let err = '';
  const str = (what: string): string => {
    if (err !== '') return '';
    if (at + 4 > buf.length) {
      err = `${what} length past the end`;
      return '';
    }
    const n = buf.readUInt32LE(at);
    if (at + 4 + n > buf.length) {
      err = `${what} past the end`;
      return '';
    }
    const v = buf.toString('utf8', at + 4, at + 4 + n);
    at += 4 + n;
    return v;
  };
  const key = str('key');
  let cmd: KvCommand;
  if (kind === KIND_PUT) {
    cmd = { kind: 'put', key, value: str('value') };
  } else if (kind === KIND_DELETE) {
    cmd = { kind: 'delete', key };
  } else if (kind === KIND_CAS) {
    if (err === '' && at >= buf.length) return bad('cas flags past the end');
    const flags = buf[at++] as number;
    const expected = flags & 1 ? null : str('expected value');
    let expectedVersion: number | undefined;
    if (err === '' && flags & 2) {
      if (at + 8 > buf.length) return bad('expected version past the end');
      expectedVersion = buf.readDoubleLE(at);
      at += 8;
    }
    const value = str('value');
    cmd =
      expectedVersion === undefined
        ? { kind: 'cas', key, expected, value }
        : { kind: 'cas', key, expected, value, expectedVersion };
  } else if (kind === KIND_REGISTER && version === COMMAND_VERSION) {
    if (client !== 0 || seq !== 0 || key !== '' || at !== buf.length) {
      return bad('register with a client, seq, key or trailing bytes');
    }
    return 'register';
  } else {
    return bad(`unknown command kind ${kind}`);
  }
  if (err !== '') return bad(err);
  if (at !== buf.length) return bad('trailing bytes');
  return { req: { client, seq, cmd }, version };
}

/** Decode a write command; a registration or bytes that are not a command are a {@link KvDecodeError}. */
export function decodeRequest(data: Uint8Array): KvRequest {
  const p = parseRequest(data);
  if (p === 'register') throw new KvDecodeError('a session registration, not a write command');
  if ('error' in p) throw new KvDecodeError(`malformed KV command (${data.byteLength} bytes): ${p.error}`);
  return p.req;
}

/** Whether `data` is a session registration command. */
export function isRegister(data: Uint8Array): boolean {
  return parseRequest(data) === 'register';
}

interface Session {
  readonly seq: number;
  readonly result: KvResult;
}

export interface KvStateMachineOptions {
  /**
   * Most sessions kept (least recently used evicted first). Default {@link DEFAULT_MAX_SESSIONS}.
   * Part of the replicated state's definition: every replica must use the same value.
   */
  readonly maxSessions?: number;
  /** Called for each entry that is not a KV command (to log it); must not throw. */
  readonly onInvalid?: (index: number, reason: string) => void;
}

const NO_RESULT: KvResult = { kind: 'duplicate' };

export class KvStateMachine {
  private readonly data = new Map<string, KvValue>();
  /** Sessions by client id, least recently used first (Map order is the LRU order). */
  private readonly sessions = new Map<number, Session>();
  /** Member id -> peer address, replicated through membership changes (kept in snapshots). */
  readonly members = new Map<string, string>();
  readonly maxSessions: number;
  applied = 0;
  /** Counters for metrics (not replicated state; reset on restart). */
  readonly stats = { invalid: 0, sessionsExpired: 0, sessionsEvicted: 0 };
  private readonly onInvalid: ((index: number, reason: string) => void) | undefined;

  constructor(options: KvStateMachineOptions = {}) {
    const max = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(max) || max < 1)
      throw new RangeError(`maxSessions must be a positive integer, got ${max}`);
    this.maxSessions = max;
    this.onInvalid = options.onInvalid;
  }

  get(key: string): KvValue | undefined {
    return this.data.get(key);
  }

  get size(): number {
    return this.data.size;
  }

  /** Sessions in the table. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Keys starting with `prefix`, in order, at most `limit`. */
  list(prefix: string, limit: number): [string, KvValue][] {
    const keys = [...this.data.keys()].filter((k) => k.startsWith(prefix)).sort();
    return keys.slice(0, limit).map((k) => [k, this.data.get(k) as KvValue]);
  }

  /**
   * Apply the entry at `index` (an empty entry only advances `applied`). Any bytes give a
   * result; only an index that does not grow throws (a driver bug).
   */
  apply(index: number, data: Uint8Array): KvResult | null {
    if (index <= this.applied) throw new RangeError(`apply of index ${index} after ${this.applied}`);
    this.applied = index;
    if (data.byteLength === 0) return null;
    const p = parseRequest(data);
    if (p === 'register') {
      this.openSession(index);
      return { kind: 'register', client: index };
    }
    if ('error' in p) {
      this.stats.invalid++;
      const reason = `not a KV command (${data.byteLength} bytes): ${p.error}`;
      this.onInvalid?.(index, reason);
      return { kind: 'invalid', reason };
    }
    const { req, version } = p;
    const client = req.client;
    if (client === 0) return this.execute(index, req.cmd);
    const s = this.sessions.get(client);
    if (s === undefined) {
      if (version === COMMAND_VERSION) {
        this.stats.sessionsExpired++;
        return { kind: 'session-expired', client };
      }
      this.openSession(client); // legacy: the first write opens the session
    } else if (req.seq <= s.seq) {
      this.touch(client, s);
      return req.seq === s.seq ? s.result : { kind: 'duplicate' };
    }
    const result = this.execute(index, req.cmd);
    this.sessions.delete(client);
    this.sessions.set(client, { seq: req.seq, result });
    return result;
  }

  private openSession(client: number): void {
    while (this.sessions.size >= this.maxSessions) {
      const lru = this.sessions.keys().next().value as number;
      this.sessions.delete(lru);
      this.stats.sessionsEvicted++;
    }
    this.sessions.set(client, { seq: 0, result: NO_RESULT });
  }

  /** Mark a session used: it moves to the most recently used end. */
  private touch(client: number, s: Session): void {
    this.sessions.delete(client);
    this.sessions.set(client, s);
  }

  private execute(index: number, cmd: KvCommand): KvResult {
    const cur = this.data.get(cmd.key);
    switch (cmd.kind) {
      case 'put':
        this.data.set(cmd.key, { value: cmd.value, modRevision: index, version: (cur?.version ?? 0) + 1 });
        return { kind: 'put', revision: index };
      case 'delete':
        this.data.delete(cmd.key);
        return { kind: 'delete', existed: cur !== undefined, revision: index };
      case 'cas': {
        const matches =
          cmd.expectedVersion !== undefined && cmd.expectedVersion > 0
            ? cur?.version === cmd.expectedVersion
            : cmd.expected === null
              ? cur === undefined
              : cur?.value === cmd.expected;
        if (!matches) return { kind: 'cas', swapped: false, revision: index };
        this.data.set(cmd.key, { value: cmd.value, modRevision: index, version: (cur?.version ?? 0) + 1 });
        return { kind: 'cas', swapped: true, revision: index };
      }
    }
  }

  snapshot(): Uint8Array {
    return enc.encode(
      JSON.stringify({
        format: SNAPSHOT_FORMAT,
        applied: this.applied,
        data: [...this.data.entries()],
        sessions: [...this.sessions.entries()],
        members: [...this.members.entries()],
      }),
    );
  }

  /**
   * Starts a snapshot of the state as of now, to be serialized a slice at a time (see SnapshotJob):
   * values and sessions are replaced, never mutated, so copying the map entries (references) is a
   * consistent view while later writes go on. The bytes are the same as snapshot()'s.
   */
  beginSnapshot(): SnapshotJob {
    return new KvSnapshotJob(
      this.applied,
      [...this.data.entries()],
      [...this.sessions.entries()],
      [...this.members.entries()],
    );
  }

  /**
   * Replace the state by a snapshot. Reads the first format (no `format` field) and the
   * current one; anything else is a {@link KvSnapshotError} naming what is wrong.
   */
  restore(bytes: Uint8Array): void {
    let s: {
      format?: number;
      applied: number;
      data: [string, KvValue][];
      sessions: [number, Session][];
      members?: [string, string][];
    };
    try {
      s = JSON.parse(dec.decode(bytes));
    } catch (err) {
      throw new KvSnapshotError(`snapshot (${bytes.byteLength} bytes) is not valid JSON`, { cause: err });
    }
    if (typeof s !== 'object' || s === null) throw new KvSnapshotError('snapshot is not an object');
    if (s.format !== undefined && s.format !== SNAPSHOT_FORMAT) {
      throw new KvSnapshotError(
        `snapshot format ${JSON.stringify(s.format)} is not one this version reads (1, ${SNAPSHOT_FORMAT})`,
      );
    }
    if (!Number.isSafeInteger(s.applied) || !Array.isArray(s.data) || !Array.isArray(s.sessions)) {
      throw new KvSnapshotError('snapshot lacks applied, data or sessions');
    }
    this.data.clear();
    this.sessions.clear();
    for (const [k, v] of s.data) this.data.set(k, v);
    // Both formats list sessions least recently used first (the first one listed them in
    // the order they were opened, which is how it would have evicted them).
    for (const [k, v] of s.sessions) this.sessions.set(k, v);
    this.members.clear();
    for (const [k, v] of s.members ?? []) this.members.set(k, v);
    this.applied = s.applied;
  }
}

/** A snapshot serialized in slices, so that a big state does not stall the event loop. */
export interface SnapshotJob {
  /** Serializes for about `budgetMs`; returns the snapshot once complete, else null (call again). */
  step(budgetMs: number): Uint8Array | null;
}

class KvSnapshotJob implements SnapshotJob {
  readonly #parts: Buffer[] = [];
  #next = 0;
  #done: Uint8Array | null = null;

  constructor(
    readonly applied: number,
    readonly data: readonly [string, KvValue][],
    readonly sessions: readonly [number, Session][],
    readonly members: readonly [string, string][],
  ) {
    this.#parts.push(
      Buffer.from(`{"format":${SNAPSHOT_FORMAT},"applied":${JSON.stringify(applied)},"data":[`),
    );
  }

  step(budgetMs: number): Uint8Array | null {
    if (this.#done !== null) return this.#done;
    const until = performance.now() + budgetMs;
    const out: string[] = [];
    const data = this.data;
    while (this.#next < data.length) {
      out.push(JSON.stringify(data[this.#next]));
      this.#next++;
      if ((this.#next & 127) === 0 && performance.now() >= until) break;
    }
    if (out.length > 0) {
      // A comma before this slice unless it starts the array.
      const lead = this.#next - out.length > 0 ? ',' : '';
      this.#parts.push(Buffer.from(lead + out.join(',')));
    }
    if (this.#next < data.length) return null;
    this.#parts.push(
      Buffer.from(`],"sessions":${JSON.stringify(this.sessions)},"members":${JSON.stringify(this.members)}}`),
    );
    const all = Buffer.concat(this.#parts);
    this.#parts.length = 0;
    this.#done = new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
    return this.#done;
  }
}
