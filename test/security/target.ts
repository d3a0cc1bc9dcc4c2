// A raftkv node for the hostile-client tests, as a child process: startServer (the code `raftkv serve` runs) on
// a free client port of 127.0.0.1, with gRPC options from a JSON argument, so tests can shorten timeouts. One
// node, so its transport is the in-memory one (the attacks are on the client port). Prints `READY <port>` once
// serving; SIGTERM shuts it down.
// RAFTKV_TARGET_ROOT=/path/to/another/checkout runs that checkout's server instead (to show a test fails there).

import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

interface TargetConfig {
  readonly dataDir: string;
  readonly grpc?: Record<string, unknown>;
  readonly maxRequestBytes?: number;
  readonly maxConnections?: number;
}

const cfg = JSON.parse(process.argv[2] ?? '{}') as TargetConfig;
const root = resolve(process.env['RAFTKV_TARGET_ROOT'] ?? join(import.meta.dirname, '../..'));
const load = <T>(p: string): Promise<T> => import(pathToFileURL(join(root, p)).href) as Promise<T>;
const { startServer } = await load<typeof import('../../src/server/server.ts')>('src/server/server.ts');
const { MemoryNetwork } =
  await load<typeof import('../../src/transport/memory.ts')>('src/transport/memory.ts');

const line = (level: string, o: object, msg: string): void => {
  process.stderr.write(`${JSON.stringify({ level, msg, ...o })}\n`);
};
const quiet = {
  info: () => {},
  warn: (o: object, m: string) => line('warn', o, m),
  error: (o: object, m: string) => line('error', o, m),
};

const server = await startServer({
  id: 'n1',
  listen: '127.0.0.1:0',
  peers: new Map([['n1', '127.0.0.1:0']]),
  dataDir: cfg.dataDir,
  tickMs: 20,
  grpcOptions: { ...cfg.grpc },
  ...(cfg.maxRequestBytes !== undefined ? { maxRequestBytes: cfg.maxRequestBytes } : {}),
  ...(cfg.maxConnections !== undefined ? { maxConnections: cfg.maxConnections } : {}),
  logger: quiet,
  transport: () => new MemoryNetwork().transport('n1'),
});
process.stdout.write(`READY ${server.port}\n`);
process.on('SIGTERM', () => {
  void server.close(200).then(() => process.exit(0));
});
