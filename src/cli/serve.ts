/**
 * `raftkv serve`: runs one node until SIGINT/SIGTERM, then shuts down gracefully
 * (stop accepting calls, let in-flight ones finish, sync and close storage) and exits 0.
 *
 * `--join host:port` adds a node to a running cluster: it learns the members from that
 * node, starts without bootstrapping, asks the cluster to add it as a learner, waits until
 * it has caught up with the leader's commit index, then asks to promote it to voter.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RaftKvClient } from '../client/client.ts';
import { RaftKvError } from '../client/errors.ts';
import { type HttpServerHandle, startHttpServer } from '../server/http.ts';
import { instrumentStorage } from '../server/metrics.ts';
import { type RaftKvServer, ServerConfigError, startServer } from '../server/server.ts';
import { StorageError } from '../storage/errors.ts';
import { DEFAULT_INLINE_WRITE_BYTES, FileStorage, MAX_INLINE_WRITE_BYTES } from '../storage/file-storage.ts';
import { type CommandSpec, hostPort, int, type Parsed, parsePeers, str } from './args.ts';
import { CliError, UsageError } from './errors.ts';
import { createLogger, type LogFormat } from './log.ts';
import { PEER_SERVER_OPTIONS, peerTransport } from './peer-transport.ts';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Run one raftkv node (API and peer traffic on one port).',
  args: '',
  arity: [0, 0],
  details:
    'Start a new cluster: give every node the same --peers list (itself included).\n' +
    'Join a running cluster: --join with the address of any member (the data dir must be new).\n' +
    'Example: raftkv serve --id n1 --listen 127.0.0.1:50051 \\\n' +
    '           --peers n1=127.0.0.1:50051,n2=127.0.0.1:50052,n3=127.0.0.1:50053',
  flags: {
    id: { type: 'string', value: 'ID', help: 'this node’s id, e.g. n1 (required)' },
    listen: {
      type: 'string',
      value: 'host:port',
      help: 'address to serve on (default: this node’s address in --peers, else 127.0.0.1:50051)',
    },
    peers: {
      type: 'string',
      value: 'id=host:port,...',
      help: 'founding members, this node included (default: a one-node cluster)',
    },
    join: {
      type: 'string',
      value: 'host:port',
      help: 'join the running cluster that this member belongs to',
    },
    'data-dir': { type: 'string', value: 'DIR', help: 'data directory (default state/<id>)' },
    'cluster-id': {
      type: 'string',
      value: 'NAME',
      help: 'refuse peers and data of another cluster',
      default: 'raftkv',
    },
    cert: { type: 'string', value: 'FILE', help: 'TLS certificate (PEM); enables TLS with --key' },
    key: { type: 'string', value: 'FILE', help: 'TLS private key (PEM)' },
    ca: {
      type: 'string',
      value: 'FILE',
      help: 'CA (PEM): clients and peers must present a certificate it signed',
    },
    'tick-ms': {
      type: 'string',
      value: 'MS',
      help: 'Raft tick (election timeout is 10-20 ticks)',
      default: '100',
    },
    'snapshot-entries': {
      type: 'string',
      value: 'N',
      help: 'take a snapshot every N applied entries (0 = never)',
      default: '100000',
    },
    'wal-sync': {
      type: 'string',
      value: 'dsync|fdatasync',
      help: 'how WAL writes are made durable: O_DSYNC writes, or write then fdatasync',
      default: 'dsync',
    },
    'wal-inline-bytes': {
      type: 'string',
      value: 'N',
      help: 'on a follower or an idle leader, write WAL groups of at most N bytes on the main thread, not the thread pool (dsync only; 0 = never)',
      default: String(DEFAULT_INLINE_WRITE_BYTES),
    },
    http: {
      type: 'string',
      value: 'host:port',
      help: 'serve the dashboard (/), /status and /metrics over HTTP here (off by default)',
    },
    'http-peers': {
      type: 'string',
      value: 'id=host:port,...',
      help: 'the other nodes’ --http addresses, for the dashboard to poll',
    },
    'log-format': {
      type: 'string',
      value: 'json|pretty',
      help: 'log format (default: pretty on a terminal)',
    },
    'log-level': { type: 'string', value: 'LEVEL', help: 'debug, info, warn or error', default: 'info' },
  },
};

const ID = /^[A-Za-z0-9_.-]{1,64}$/;

export interface ServeIo {
  readonly err: (s: string) => void;
}

async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch {
    return true;
  }
}

export async function runServe(p: Parsed, io: ServeIo): Promise<number> {
  const id = str(p, 'id');
  if (id === undefined) throw new UsageError('--id is required', 'serve');
  if (!ID.test(id))
    throw new UsageError(
      `--id must be 1-64 characters of [A-Za-z0-9_.-], got ${JSON.stringify(id)}`,
      'serve',
    );
  const peersArg = str(p, 'peers');
  const joinAddr = str(p, 'join');
  if (peersArg !== undefined && joinAddr !== undefined) {
    throw new UsageError('give either --peers (a new cluster) or --join (a running one), not both', 'serve');
  }
  let peers = peersArg !== undefined ? parsePeers(peersArg) : undefined;
  if (peers && !peers.has(id)) {
    throw new UsageError(
      `--peers must include this node (${id}); it lists ${[...peers.keys()].join(', ')}`,
      'serve',
    );
  }
  const listen = hostPort(str(p, 'listen') ?? peers?.get(id) ?? '127.0.0.1:50051', '--listen');
  if (joinAddr !== undefined) hostPort(joinAddr, '--join');
  const dataDir = str(p, 'data-dir') ?? join('state', id);
  const clusterId = str(p, 'cluster-id') ?? 'raftkv';
  const tickMs = int(p, 'tick-ms', 1, 60_000) ?? 100;
  const snapshotEntries = int(p, 'snapshot-entries', 0) ?? 100_000;
  const walSync = str(p, 'wal-sync') ?? 'dsync';
  const walInlineBytes = int(p, 'wal-inline-bytes', 0, MAX_INLINE_WRITE_BYTES) ?? DEFAULT_INLINE_WRITE_BYTES;
  if (walSync !== 'dsync' && walSync !== 'fdatasync') {
    throw new UsageError(`--wal-sync must be dsync or fdatasync, not "${walSync}"`, 'serve');
  }
  const certFile = str(p, 'cert');
  const keyFile = str(p, 'key');
  const caFile = str(p, 'ca');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError('--cert and --key go together', 'serve');
  }
  const httpListen = str(p, 'http');
  if (httpListen !== undefined) hostPort(httpListen, '--http');
  const httpPeersArg = str(p, 'http-peers');
  if (httpPeersArg !== undefined && httpListen === undefined) {
    throw new UsageError('--http-peers needs --http', 'serve');
  }
  const httpPeers =
    httpPeersArg !== undefined ? parsePeers(httpPeersArg, '--http-peers') : new Map<string, string>();
  const fmt = str(p, 'log-format');
  if (fmt !== undefined && fmt !== 'json' && fmt !== 'pretty') {
    throw new UsageError(`--log-format must be json or pretty, got ${JSON.stringify(fmt)}`, 'serve');
  }
  const level = str(p, 'log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new UsageError(
      `--log-level must be debug, info, warn or error, got ${JSON.stringify(level)}`,
      'serve',
    );
  }
  const format: LogFormat =
    (fmt as LogFormat | undefined) ??
    (process.env['RAFTKV_LOG_FORMAT'] === 'pretty' ||
    (process.env['RAFTKV_LOG_FORMAT'] !== 'json' && process.stdout.isTTY)
      ? 'pretty'
      : 'json');
  const root = createLogger(format, level);
  // Lines name this node as `id` (the transport's own lines say `node`).
  const logger = root.child({ id });

  const read = async (f: string, what: string) => {
    try {
      return await readFile(f);
    } catch (e) {
      throw new CliError(`cannot read ${what} ${f}: ${(e as Error).message}`);
    }
  };
  const tls =
    certFile !== undefined && keyFile !== undefined
      ? {
          cert: await read(certFile, '--cert'),
          key: await read(keyFile, '--key'),
          ...(caFile !== undefined ? { ca: await read(caFile, '--ca') } : {}),
        }
      : undefined;
  if (caFile !== undefined && !tls) throw new UsageError('--ca needs --cert and --key', 'serve');

  // Joining: learn the members (and their addresses) from the given node.
  let joinClient: RaftKvClient | undefined;
  let alreadyMember = false;
  if (joinAddr !== undefined) {
    joinClient = new RaftKvClient({
      endpoints: [joinAddr],
      timeoutMs: 30_000,
      retries: 100,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) } } : {}),
    });
    let st: Awaited<ReturnType<RaftKvClient['status']>>;
    try {
      st = await joinClient.status({ timeoutMs: 10_000 });
    } catch (e) {
      joinClient.close();
      throw new CliError(`cannot reach ${joinAddr} to join its cluster: ${(e as Error).message}`);
    }
    if (st.clusterId !== clusterId) {
      joinClient.close();
      throw new CliError(
        `${joinAddr} belongs to cluster ${JSON.stringify(st.clusterId)}, not ${JSON.stringify(clusterId)} (--cluster-id)`,
      );
    }
    peers = new Map(st.members.filter((m) => m.address).map((m) => [m.id, m.address]));
    alreadyMember = st.members.some((m) => m.id === id && m.role === 'voter');
    if (!alreadyMember && !st.members.some((m) => m.id === id) && !(await isEmptyDir(dataDir))) {
      logger.warn({ dataDir }, 'joining with a non-empty data directory');
    }
    peers.delete(id);
  }

  let server: RaftKvServer;
  // A storage failure before the stop logic below exists is kept and handled there.
  let fatalEarly: Error | null = null;
  let onFatal = (err: Error): void => {
    fatalEarly ??= err;
  };
  let http: HttpServerHandle | undefined;
  try {
    // With the HTTP side on, open the storage here so its latency shows in /metrics.
    const storage =
      httpListen !== undefined
        ? instrumentStorage(
            await FileStorage.open(dataDir, {
              nodeId: id,
              clusterId,
              sync: walSync,
              inlineWriteBytes: walInlineBytes,
            }),
          )
        : undefined;
    server = await startServer({
      ...(storage ? { storage } : {}),
      id,
      listen,
      peers: peers ?? new Map([[id, listen]]),
      dataDir,
      clusterId,
      ...(tls ? { tls } : {}),
      tickMs,
      snapshotEntries,
      walSync,
      walInlineBytes,
      logger,
      onFatal: (err) => onFatal(err),
      ...(joinAddr !== undefined ? { joining: true } : {}),
      grpcOptions: PEER_SERVER_OPTIONS,
      transport: peerTransport({ peers: peers ?? new Map(), ...(tls ? { tls } : {}), logger: root }),
    });
    if (httpListen !== undefined && storage) {
      const { host, port } = splitHostPort(httpListen);
      const urls = new Map([...httpPeers].map(([peer, a]) => [peer, `http://${a}`]));
      try {
        http = await startHttpServer({ host, port, server, storage, peersHttp: () => urls });
      } catch (e) {
        await server.close();
        throw new CliError(`cannot serve HTTP on ${httpListen}: ${(e as Error).message}`);
      }
      urls.set(id, `http://${host}:${http.port}`);
      logger.info({ url: `http://${host}:${http.port}/` }, 'dashboard serving');
    }
  } catch (e) {
    joinClient?.close();
    if (e instanceof StorageError) throw new CliError(`${e.name} [${e.code}]: ${e.message}`);
    if (e instanceof ServerConfigError) throw new CliError(e.message);
    throw e;
  }

  let stopping = false;
  const done = new Promise<number>((resolve) => {
    const stop = (signal: string, code = 0) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down');
      const force = setTimeout(() => resolve(1), 15_000);
      force.unref();
      joinClient?.close();
      (http ? http.close() : Promise.resolve())
        .then(() => server.close())
        .then(
          () => resolve(code),
          (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            resolve(1);
          },
        );
    };
    // Fail-stop: a failed write or fsync ends the process with a non-zero exit.
    onFatal = (err) => {
      logger.error(
        { err: err.message, name: err.name, dataDir },
        'fatal storage failure: stopping this node',
      );
      io.err(`raftkv serve: fatal: ${err.name}: ${err.message}\n`);
      stop('fatal', 1);
    };
    if (fatalEarly) onFatal(fatalEarly);
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });

  if (joinClient && !alreadyMember) {
    const advertised = listen.endsWith(':0') ? listen.replace(/:0$/, `:${server.port}`) : listen;
    try {
      const st = await joinClient.status();
      if (!st.members.some((m) => m.id === id)) {
        logger.info({ via: joinAddr }, 'asking the cluster to add this node as a learner');
        await joinClient.addMember(id, advertised, { learner: true, timeoutMs: 30_000 });
      }
      // Caught up when this node applied what the leader had committed when we asked.
      const target = (await joinClient.status()).commitIndex;
      while (!stopping && server.node.status().applied < target) await new Promise((r) => setTimeout(r, 50));
      if (!stopping) {
        logger.info({ applied: server.node.status().applied }, 'caught up; asking to be promoted to voter');
        await joinClient.addMember(id, advertised, { learner: false, timeoutMs: 30_000 });
        logger.info({}, 'joined the cluster as a voter');
      }
    } catch (e) {
      if (!stopping) {
        const msg = e instanceof RaftKvError ? `${e.code}: ${e.message}` : (e as Error).message;
        io.err(`raftkv serve: joining through ${joinAddr} failed: ${msg}\n`);
        stopping = true;
        await http?.close();
        await server.close();
        return 1;
      }
    } finally {
      joinClient.close();
    }
  }
  return done;
}

function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}
