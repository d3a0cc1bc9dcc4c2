/**
 * Command-line parsing: each command declares its flags and positionals once, from which
 * come strict parsing (node:util parseArgs), typed values and the `--help` text.
 * Every mistake becomes a UsageError naming the flag or argument (exit code 2).
 */
import { parseArgs } from 'node:util';
import { UsageError } from './errors.ts';

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly help: string;
  /** Shown in help as the value name, e.g. `host:port`. */
  readonly value?: string;
  readonly default?: string;
}

export type Flags = Readonly<Record<string, FlagSpec>>;

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  /** Positional arguments as written in the usage line, e.g. `KEY VALUE`. */
  readonly args: string;
  /** How many positionals: [min, max]. */
  readonly arity: readonly [number, number];
  readonly flags: Flags;
  /** Flags shared with other commands (shown apart in help). */
  readonly globals?: Flags;
  readonly details?: string;
}

export interface Parsed {
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
}

export const HELP_FLAG: FlagSpec = { type: 'boolean', short: 'h', help: 'show this help' };

interface ParseArgsError extends Error {
  code?: string;
}

/** Strictly parses `argv` for `spec`; `--help` is always accepted. */
export function parseCommand(spec: CommandSpec, argv: readonly string[]): Parsed {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, f] of Object.entries({ ...spec.globals, ...spec.flags, help: HELP_FLAG })) {
    options[name] = f.short ? { type: f.type, short: f.short } : { type: f.type };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as ParseArgsError;
    throw new UsageError(rewordParseError(err, spec), spec.name);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  for (const [name, f] of Object.entries({ ...spec.globals, ...spec.flags })) {
    if (values[name] === undefined && f.default !== undefined) values[name] = f.default;
    const v = values[name];
    if (f.type === 'string' && v === '') throw new UsageError(`--${name} needs a value`, spec.name);
  }
  if (values['help']) return { values, positionals: parsed.positionals };
  const [min, max] = spec.arity;
  const n = parsed.positionals.length;
  if (n < min) {
    const names = spec.args.split(/\s+/).filter((s) => !s.startsWith('['));
    throw new UsageError(`missing ${names.slice(n).join(' ') || 'argument'}`, spec.name);
  }
  if (n > max) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[max])}`, spec.name);
  }
  return { values, positionals: parsed.positionals };
}

function rewordParseError(err: ParseArgsError, spec: CommandSpec): string {
  const m = err.message;
  const flag = /'(-{1,2}[^' ]+)/.exec(m)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${flag ?? m} for '${spec.name}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /argument missing/.test(m)
        ? `${flag ?? 'a flag'} needs a value`
        : `${flag ?? 'a flag'} takes no value`;
    default:
      return m;
  }
}

/** The string value of a flag (undefined when absent). */
export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function bool(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** An integer flag within [min, max], or a UsageError naming it. */
export function int(p: Parsed, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}

const HOST_PORT = /^(\[[^\]]+\]|[^:\s/=,]+):(\d{1,5})$/;

export function isHostPort(s: string): boolean {
  const m = HOST_PORT.exec(s);
  return m !== null && Number(m[2]) <= 65535;
}

export function hostPort(s: string, what: string): string {
  if (!isHostPort(s)) throw new UsageError(`${what} must be host:port, got ${JSON.stringify(s)}`);
  return s;
}

/**
 * `n1=127.0.0.1:50051,n2=...` into a map; every mistake names the item. With `withPeer`, an
 * address may also be `CLIENT/PEER` (a member's client and peer addresses).
 */
export function parsePeers(s: string, flag = '--peers', withPeer = false): Map<string, string> {
  const out = new Map<string, string>();
  for (const item of s.split(',')) {
    const m = /^([A-Za-z0-9_.-]{1,64})=(.+)$/.exec(item.trim());
    if (!m) {
      throw new UsageError(
        `${flag}: ${JSON.stringify(item)} is not id=host:port (expected e.g. n1=127.0.0.1:50051,n2=127.0.0.1:50052)`,
      );
    }
    const [, id, addr] = m as unknown as [string, string, string];
    const parts = withPeer ? addr.split('/') : [addr];
    if (parts.length > 2 || !parts.every(isHostPort)) {
      throw new UsageError(
        `${flag}: address of ${id} must be host:port${withPeer ? ' or client-host:port/peer-host:port' : ''}, got ${JSON.stringify(addr)}`,
      );
    }
    if (out.has(id)) throw new UsageError(`${flag}: ${id} is listed twice`);
    out.set(id, addr);
  }
  return out;
}

export function renderHelp(spec: CommandSpec, bin = 'raftkv'): string {
  const lines = [`${bin} ${spec.name}${spec.args ? ` ${spec.args}` : ''} [flags]`, '', `  ${spec.summary}`];
  if (spec.details) lines.push('', ...spec.details.split('\n').map((l) => `  ${l}`));
  const section = (title: string, flags: Flags) => {
    const entries = Object.entries(flags);
    if (entries.length === 0) return;
    lines.push('', title);
    const rows = entries.map(([name, f]) => {
      const left = `${f.short ? `-${f.short}, ` : '    '}--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
      const def = f.default !== undefined ? ` (default ${f.default})` : '';
      return [left, `${f.help}${def}`] as const;
    });
    const w = Math.max(...rows.map(([l]) => l.length));
    for (const [l, r] of rows) lines.push(`  ${l.padEnd(w)}  ${r}`);
  };
  section('Flags:', spec.flags);
  section('Global flags:', spec.globals ?? {});
  lines.push('', `  -h, --help  show this help`);
  return `${lines.join('\n')}\n`;
}
