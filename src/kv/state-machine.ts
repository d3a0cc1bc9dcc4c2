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

export function encodeRequest(req: KvRequest): Uint8Array {
  return enc.encode(JSON.stringify(req));
}

export function decodeRequest(data: Uint8Array): KvRequest {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch (err) {
    throw new KvDecodeError('KV command is not valid JSON', { cause: err });
  }
  const o = v as Partial<KvRequest> | null;
  if (!o || typeof o !== 'object' || typeof o.client !== 'number' || typeof o.seq !== 'number' || !o.cmd) {
    throw new KvDecodeError('KV command lacks client, seq or cmd');
  }
  const c = o.cmd as Partial<{ kind: string; key: unknown; value: unknown; expected: unknown }>;
  if (typeof c.key !== 'string') throw new KvDecodeError('KV command without a string key');
  if (c.kind === 'put' && typeof c.value === 'string') return o as KvRequest;
  if (c.kind === 'delete') return o as KvRequest;
  if (
    c.kind === 'cas' &&
    typeof c.value === 'string' &&
    (c.expected === null || typeof c.expected === 'string')
  ) {
    return o as KvRequest;
  }
  throw new KvDecodeError(`unknown or malformed KV command ${JSON.stringify(c.kind)}`);
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
      }),
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
