/**
 * Logs of `raftkv serve`: JSON lines via pino (one object per event, `jq`-friendly), or a
 * short human-readable line per event when stdout is a terminal (or `--log-format pretty`).
 */
import { pino } from 'pino';

export type LogFormat = 'json' | 'pretty';

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const COLORS: Record<number, string> = { 40: '\x1b[33m', 50: '\x1b[31m', 60: '\x1b[31m' };
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** One pino JSON line as `12:00:01.123 INFO  msg key=value ...`. */
export function formatPretty(line: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = typeof o['level'] === 'number' ? o['level'] : 30;
  const t = typeof o['time'] === 'number' ? new Date(o['time']).toISOString().slice(11, 23) : '';
  const name = (LEVELS[level] ?? String(level)).padEnd(5);
  const fields = Object.entries(o)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  const c = color ? (COLORS[level] ?? '') : '';
  const reset = c ? '\x1b[0m' : '';
  return `${t} ${c}${name}${reset} ${String(o['msg'] ?? '')}${fields ? ` ${fields}` : ''}`;
}

export function createLogger(format: LogFormat, level = 'info', out: NodeJS.WritableStream = process.stdout) {
  if (format === 'json') return pino({ level, base: { pid: process.pid } }, out as pino.DestinationStream);
  const color = (out as NodeJS.WriteStream).isTTY === true;
  const dest: pino.DestinationStream = {
    write(s: string) {
      for (const line of s.split('\n')) if (line) out.write(`${formatPretty(line, color)}\n`);
    },
  };
  return pino({ level, base: null }, dest);
}
