/**
 * `raftkv bench`: closed-loop load against a running cluster (src/cli/kv-bench.ts),
 * with a progress line while it runs and throughput and latency percentiles at the end.
 */
import * as grpc from '@grpc/grpc-js';
import { bool, type CommandSpec, hostPort, int, type Parsed, str } from './args.ts';
import { CLIENT_GLOBALS, DEFAULT_ENDPOINTS, type Io, renderTable } from './commands.ts';
import { UsageError } from './errors.ts';
import { runBench } from './kv-bench.ts';

export const benchSpec: CommandSpec = {
  name: 'bench',
  summary: 'Load a running cluster with concurrent clients; print throughput and p50/p90/p99/max.',
  args: '',
  arity: [0, 0],
  flags: {
    clients: { type: 'string', value: 'N', help: 'concurrent clients', default: '16' },
    duration: { type: 'string', value: 'S', help: 'seconds to run', default: '10' },
    op: { type: 'string', value: 'put|get|mixed', help: 'operation', default: 'put' },
    'value-size': { type: 'string', value: 'BYTES', help: 'value size', default: '100' },
    keys: { type: 'string', value: 'N', help: 'distinct keys', default: '1000' },
    local: { type: 'boolean', help: 'local (possibly stale) reads' },
  },
  globals: CLIENT_GLOBALS,
};

export async function runBenchCommand(p: Parsed, io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const op = str(p, 'op') ?? 'put';
  if (op !== 'put' && op !== 'get' && op !== 'mixed') {
    throw new UsageError(`--op must be put, get or mixed, got ${JSON.stringify(op)}`, 'bench');
  }
  if (str(p, 'ca') !== undefined || str(p, 'cert') !== undefined || bool(p, 'tls')) {
    throw new UsageError('bench does not support TLS yet', 'bench');
  }
  const endpoints = (str(p, 'endpoints') ?? env['RAFTKV_ENDPOINTS'] ?? DEFAULT_ENDPOINTS)
    .split(',')
    .map((e) => hostPort(e.trim(), '--endpoints'));
  const tty = process.stderr.isTTY === true;
  const r = await runBench({
    endpoints,
    clients: int(p, 'clients', 1, 10_000) ?? 16,
    durationS: int(p, 'duration', 1, 86_400) ?? 10,
    op,
    valueSize: int(p, 'value-size', 0, 1 << 20) ?? 100,
    keys: int(p, 'keys', 1) ?? 1000,
    local: bool(p, 'local'),
    timeoutMs: int(p, 'timeout', 1) ?? 5_000,
    credentials: grpc.credentials.createInsecure(),
    onProgress: (s) =>
      io.err(
        `${tty ? '\r' : ''}${s.elapsedS.toFixed(0)} s: ${s.ops} ops, ${s.errors} errors${tty ? '   ' : '\n'}`,
      ),
  });
  if (tty) io.err('\n');
  if (bool(p, 'json')) {
    io.out(`${JSON.stringify(r)}\n`);
    return 0;
  }
  const ms = (n: number) => n.toFixed(2);
  io.out(
    renderTable([
      ['OP', 'CLIENTS', 'SECONDS', 'OPS', 'OPS/S', 'ERRORS', 'P50 MS', 'P90 MS', 'P99 MS', 'MAX MS'],
      [
        r.op,
        String(r.clients),
        String(r.durationS),
        String(r.ops),
        r.opsPerSec.toFixed(0),
        String(r.errors),
        ms(r.p50Ms),
        ms(r.p90Ms),
        ms(r.p99Ms),
        ms(r.maxMs),
      ],
    ]),
  );
  if (r.firstError) io.err(`first error: ${r.firstError}\n`);
  return r.ops === 0 ? 1 : 0;
}
