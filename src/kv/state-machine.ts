/**
 * The replicated key-value state machine: put, delete and compare-and-swap commands
 * applied in log order, point reads served locally, snapshot and restore.
 *
 * Client sessions make writes exactly-once: a command carries (client, seq); a client
 * issues seq in increasing order and retries a command with the same seq. A command whose
 * seq is not above the client's last applied one is not applied again: the last one gets
 * its recorded result back, older ones get `duplicate`.
 *
 * Invariants: `applied` only grows; state after applying a log prefix is a pure function
 * of that prefix, so every replica that applied index i holds the same state.
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
  | { readonly kind: 'duplicate' };

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

const enc = new TextEncoder();
const dec = new TextDecoder();

/*
 * Command encoding (one log entry = one command), little-endian:
 *   u8 version (1) | u8 kind (1 put, 2 delete, 3 cas) | f64 client | f64 seq
 *   | u32 keyLen | key utf8
 *   put:    | u32 valueLen | value
 *   cas:    | u8 flags (1: expected is null, 2: expectedVersion present)
 *           | [u32 expectedLen | expected] | [f64 expectedVersion] | u32 valueLen | value
 * Binary rather than JSON: it is encoded once per write and decoded once per write on
 * every replica, on the hot path.
 */
const VERSION = 1;
const KIND_PUT = 1;
const KIND_DELETE = 2;
const KIND_CAS = 3;

export function encodeRequest(req: KvRequest): Uint8Array {
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
  buf[0] = VERSION;
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

export function decodeRequest(data: Uint8Array): KvRequest {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const fail = (why: string): never => {
    throw new KvDecodeError(`malformed KV command (${buf.length} bytes): ${why}`);
  };
  if (buf.length < 22) fail('shorter than its header');
  if (buf[0] !== VERSION) fail(`unknown version ${buf[0]}`);
  const kind = buf[1];
  const client = buf.readDoubleLE(2);
  const seq = buf.readDoubleLE(10);
  if (!Number.isSafeInteger(client) || !Number.isSafeInteger(seq) || client < 0 || seq < 0) {
    fail('client and seq must be non-negative integers');
  }
  let at = 18;
  const str = (what: string): string => {
    if (at + 4 > buf.length) fail(`${what} length past the end`);
    const n = buf.readUInt32LE(at);
    if (at + 4 + n > buf.length) fail(`${what} past the end`);
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
    if (at >= buf.length) fail('cas flags past the end');
    const flags = buf[at++] as number;
    const expected = flags & 1 ? null : str('expected value');
    let expectedVersion: number | undefined;
    if (flags & 2) {
      if (at + 8 > buf.length) fail('expected version past the end');
      expectedVersion = buf.readDoubleLE(at);
      at += 8;
    }
    const value = str('value');
    cmd =
      expectedVersion === undefined
        ? { kind: 'cas', key, expected, value }
        : { kind: 'cas', key, expected, value, expectedVersion };
  } else {
    return fail(`unknown command kind ${kind}`);
  }
  if (at !== buf.length) fail('trailing bytes');
  return { client, seq, cmd };
}

export class KvStateMachine {
  private readonly data = new Map<string, KvValue>();
  private readonly sessions = new Map<number, { seq: number; result: KvResult }>();
  /** Member id -> peer address, replicated through membership changes (kept in snapshots). */
  readonly members = new Map<string, string>();
  applied = 0;

  get(key: string): KvValue | undefined {
    return this.data.get(key);
  }

  get size(): number {
    return this.data.size;
  }

  /** Keys starting with `prefix`, in order, at most `limit`. */
  list(prefix: string, limit: number): [string, KvValue][] {
    const keys = [...this.data.keys()].filter((k) => k.startsWith(prefix)).sort();
    return keys.slice(0, limit).map((k) => [k, this.data.get(k) as KvValue]);
  }

  /** Apply the request in the entry at `index` (an empty entry only advances `applied`). */
  apply(index: number, data: Uint8Array): KvResult | null {
    if (index <= this.applied) throw new RangeError(`apply of index ${index} after ${this.applied}`);
    this.applied = index;
    if (data.byteLength === 0) return null;
    const req = decodeRequest(data);
    if (req.client !== 0) {
      const s = this.sessions.get(req.client);
      if (s && req.seq <= s.seq) return req.seq === s.seq ? s.result : { kind: 'duplicate' };
    }
    const result = this.execute(index, req.cmd);
    if (req.client !== 0) this.sessions.set(req.client, { seq: req.seq, result });
    return result;
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

  restore(bytes: Uint8Array): void {
    const s = JSON.parse(dec.decode(bytes)) as {
      applied: number;
      data: [string, KvValue][];
      sessions: [number, { seq: number; result: KvResult }][];
      members?: [string, string][];
    };
    this.data.clear();
    this.sessions.clear();
    for (const [k, v] of s.data) this.data.set(k, v);
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
    readonly sessions: readonly [number, { seq: number; result: KvResult }][],
    readonly members: readonly [string, string][],
  ) {
    this.#parts.push(Buffer.from(`{"applied":${JSON.stringify(applied)},"data":[`));
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
