/**
 * `raftkv serve`: runs one node until SIGINT/SIGTERM, then shuts down gracefully
 * (stop accepting calls, let in-flight ones finish, sync and close storage) and exits 0.
 *
 * Two ports (docs/security.md): the client port (`--listen`) serves the API, the peer port
 * (`--peer-listen`, default the client port + 1000) serves raft.PeerService only. Peers
 * authenticate by TLS certificates (`--peer-cert`..., default the `--cert` ones) or by a
 * cluster secret (`--peer-secret-file`); with neither, the peer port must be loopback and
 * peers prove the per-user secret file (user-secret.ts); only `--insecure-peers` turns
 * peer authentication off.
 *
 * `--join host:port` adds a node to a running cluster: it learns the members from that
 * node, starts without bootstrapping, asks the cluster to add it as a learner, waits until
 * it has caught up with the leader's commit index, then asks to promote it to voter.
 *
 * The seeds' command lines work as written (docs/cli.md): `--node-id ID --port P --peers
 * host:port,...` (the peers' client ports) and `--ip IP --client-port C --node-port N
 * --peers host:port,...` (the peers' node ports); the peers' ids are learned in the peer
 * handshake before the cluster is bootstrapped.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { RaftKvClient } from '../client/client.ts';
import { RaftKvError } from '../client/errors.ts';
import { type HttpServerHandle, startHttpServer } from '../server/http.ts';
import type { AdminAuth } from '../server/kv-service.ts';
import {
  defaultPeerAddress,
  formatMemberAddress,
  type MemberAddress,
  MemberAddressError,
  PEER_PORT_OFFSET,
  parseMemberAddress,
} from '../server/member-address.ts';
import { instrumentStorage } from '../server/metrics.ts';
import { type RaftKvServer, ServerConfigError, startServer } from '../server/server.ts';
import { StorageError } from '../storage/errors.ts';
import { DEFAULT_INLINE_WRITE_BYTES, FileStorage, MAX_INLINE_WRITE_BYTES } from '../storage/file-storage.ts';
import { isLoopbackHost, MIN_SECRET_BYTES, type PeerAuth } from '../transport/peer-auth.ts';
import { bool, type CommandSpec, hostPort, int, isHostPort, type Parsed, parsePeers, str } from './args.ts';
import { CliError, serveStorageError, UsageError } from './errors.ts';
import { createLogger, type LogFormat } from './log.ts';
import { PEER_SERVER_OPTIONS, peerTransport } from './peer-transport.ts';
import { loadOrCreateUserSecret, type UserSecret, UserSecretError, userSecretPath } from './user-secret.ts';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary: 'Run one raftkv node (the API on its client port, Raft traffic on its peer port).',
  args: '',
  arity: [0, 0],
  details:
    'Start a new cluster: give every node the same --peers list (itself included).\n' +
    'Join a running cluster: --join with the address of any member (the data dir must be new).\n' +
    'Each --peers item is ID=CLIENT or ID=CLIENT/PEER; PEER defaults to the client port + 1000.\n' +
    'Example: raftkv serve --id n1 --listen 127.0.0.1:50051 \\\n' +
    '           --peers n1=127.0.0.1:50051,n2=127.0.0.1:50052,n3=127.0.0.1:50053\n' +
    'The seeds’ forms (peers listed without ids, learned in the handshake):\n' +
    '  raftkv serve --node-id node1 --port 50051 --peers localhost:50052,localhost:50053\n' +
    '  raftkv serve --ip 127.0.0.1 --client-port 8001 --node-port 9001 --peers 127.0.0.1:9002,127.0.0.1:9003\n' +
    'Security (peer authentication, admin identities): docs/security.md.',
  flags: {
    id: { type: 'string', value: 'ID', help: 'this node’s id, e.g. n1 (required)' },
    listen: {
      type: 'string',
      value: 'host:port',
      help: 'client (API) address to serve on (default: this node’s address in --peers, else 127.0.0.1:50051)',
    },
    'peer-listen': {
      type: 'string',
      value: 'host:port',
      help: `peer address to serve Raft traffic on (default: this node’s in --peers, else the --listen port + ${PEER_PORT_OFFSET})`,
    },
    peers: {
      type: 'string',
      value: 'id=client[/peer],...',
      help: 'founding members, this node included (default: a one-node cluster); or host:port,... without ids (seed form)',
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
    'peer-cert': { type: 'string', value: 'FILE', help: 'peer TLS certificate (default --cert)' },
    'peer-key': { type: 'string', value: 'FILE', help: 'peer TLS key (default --key)' },
    'peer-ca': { type: 'string', value: 'FILE', help: 'CA of peer certificates (default --ca)' },
    'peer-cert-allowed-cn': {
      type: 'string',
      value: 'NAME,...',
      help: 'peer certificates must name one of these (CN or DNS SAN)',
    },
    'peer-secret-file': {
      type: 'string',
      value: 'FILE',
      help: 'cluster secret peers prove in the handshake (without TLS; same file on every node). Default on loopback: the per-user file $RAFTKV_HOME/peer-secrets/<cluster id> (~/.config/raftkv/...)',
    },
    'insecure-peers': {
      type: 'boolean',
      help: 'turn peer authentication off, on any address (anyone reaching the peer port controls the cluster)',
    },
    'admin-token-file': {
      type: 'string',
      value: 'FILE',
      help: 'token admin calls (members, transfer-leader) must send as "authorization: Bearer"',
    },
    'admin-cert-allowed-cn': {
      type: 'string',
      value: 'NAME,...',
      help: 'client certificates naming one of these (CN or DNS SAN) may make admin calls',
    },
    'node-id': { type: 'string', value: 'ID', help: 'same as --id (seed form)' },
    port: {
      type: 'string',
      value: 'PORT',
      help: `client port (seed form; --peers then lists the peers’ client ports, peer port = port + ${PEER_PORT_OFFSET})`,
    },
    ip: {
      type: 'string',
      value: 'IP',
      help: 'host of the client and peer ports (seed form; default 127.0.0.1)',
    },
    'client-port': { type: 'string', value: 'PORT', help: 'client port (seed form, same as --port)' },
    'node-port': {
      type: 'string',
      value: 'PORT',
      help: 'peer port (seed form; --peers then lists the peers’ node ports)',
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
    'max-request-bytes': {
      type: 'string',
      value: 'N',
      help: 'largest API request message; larger ones get RESOURCE_EXHAUSTED (docs/grpc-limits.md)',
      default: String(4 * 1024 * 1024),
    },
    'max-connections': {
      type: 'string',
      value: 'N',
      help: 'concurrent connections; more are closed as soon as accepted',
      default: '4096',
    },
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

/** Reads a secret or token file: its trimmed content, at least `min` bytes; warns when others may read it. */
async function readSecret(
  file: string,
  what: string,
  min: number,
  warn: (msg: string) => void,
): Promise<string> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0) warn(`${what} ${file} can be read by other users (chmod 600 it)`);
  } catch (e) {
    throw new CliError(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
  if (Buffer.byteLength(text) < min) {
    throw new CliError(`${what} ${file} holds ${Buffer.byteLength(text)} bytes; at least ${min} are needed`);
  }
  return text;
}

const names = (v: string | undefined): string[] | null =>
  v === undefined
    ? null
    : v
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);

/** Where this node listens and who its founding peers are, from either the canonical or a seed form. */
interface Layout {
  readonly id: string;
  readonly listen: string;
  readonly peerListen: string;
  /** Founding members (canonical form): id -> CLIENT/PEER. */
  readonly peers: Map<string, string> | undefined;
  /** Seed form: the peers' peer addresses, ids unknown. */
  readonly seeds: string[] | undefined;
}

function layout(p: Parsed): Layout {
  const idFlag = str(p, 'id');
  const nodeId = str(p, 'node-id');
  if (idFlag !== undefined && nodeId !== undefined && idFlag !== nodeId) {
    throw new UsageError(`--id ${idFlag} and --node-id ${nodeId} disagree (give one)`, 'serve');
  }
  const port = int(p, 'port', 1, 65535);
  const clientPort = int(p, 'client-port', 1, 65535);
  const nodePort = int(p, 'node-port', 1, 65535);
  const ip = str(p, 'ip');
  // Seed 000's line names no id: IP-NODEPORT then (unique as long as the node addresses are).
  const id =
    idFlag ??
    nodeId ??
    (nodePort !== undefined
      ? `${ip ?? '127.0.0.1'}-${nodePort}`.replace(/[^A-Za-z0-9_.-]/g, '_')
      : undefined);
  if (id === undefined)
    throw new UsageError('--id is required (or --node-id; seed 000 lines: --node-port)', 'serve');
  if (!ID.test(id))
    throw new UsageError(
      `--id must be 1-64 characters of [A-Za-z0-9_.-], got ${JSON.stringify(id)}`,
      'serve',
    );
  if (port !== undefined && clientPort !== undefined && port !== clientPort) {
    throw new UsageError(`--port ${port} and --client-port ${clientPort} disagree (give one)`, 'serve');
  }
  const seedForm =
    port !== undefined || clientPort !== undefined || nodePort !== undefined || ip !== undefined;
  if (seedForm && str(p, 'listen') !== undefined) {
    throw new UsageError('give either --listen or --ip/--port/--client-port, not both', 'serve');
  }
  if (nodePort !== undefined && str(p, 'peer-listen') !== undefined) {
    throw new UsageError('give either --peer-listen or --node-port, not both', 'serve');
  }
  const host = ip ?? '127.0.0.1';
  if (ip !== undefined && !isHostPort(`${ip.includes(':') ? `[${ip}]` : ip}:1`)) {
    throw new UsageError(`--ip must be an IP address or host name, got ${JSON.stringify(ip)}`, 'serve');
  }
  const h = host.includes(':') ? `[${host}]` : host;
  const peersArg = str(p, 'peers');
  const items = peersArg?.split(',').map((x) => x.trim()) ?? [];
  // any item with an id: the canonical form (parsePeers names an item without one)
  const withIds = items.filter((x) => x.includes('='));
  let peers: Map<string, string> | undefined;
  let seeds: string[] | undefined;
  if (peersArg !== undefined && withIds.length > 0) {
    peers = parsePeers(peersArg, '--peers', true);
    if (!peers.has(id)) {
      throw new UsageError(
        `--peers must include this node (${id}); it lists ${[...peers.keys()].join(', ')}`,
        'serve',
      );
    }
  } else if (peersArg !== undefined) {
    // Seed form: with --node-port (seed 000) the items are the peers' node (peer) ports; otherwise their
    // client ports, whose peer ports are the client port + PEER_PORT_OFFSET (seed 004).
    seeds = items.map((a) => {
      hostPort(a, '--peers item');
      try {
        return nodePort !== undefined ? a : defaultPeerAddress(a);
      } catch (e) {
        throw new UsageError(`--peers: ${(e as Error).message} (--peers ID=CLIENT/PEER,...)`, 'serve');
      }
    });
  }
  const cPort = port ?? clientPort;
  const own = peers?.get(id);
  let ownAddr: MemberAddress | undefined;
  try {
    ownAddr = own !== undefined ? parseMemberAddress(own) : undefined;
  } catch (e) {
    throw new UsageError(`--peers: ${(e as Error).message}`, 'serve');
  }
  const listen = hostPort(
    str(p, 'listen') ?? (cPort !== undefined ? `${h}:${cPort}` : (ownAddr?.client ?? `${h}:50051`)),
    '--listen',
  );
  let peerListen: string;
  try {
    peerListen = hostPort(
      str(p, 'peer-listen') ??
        (nodePort !== undefined
          ? `${h}:${nodePort}`
          : own?.includes('/') && ownAddr !== undefined
            ? ownAddr.peer
            : defaultPeerAddress(listen)),
      '--peer-listen',
    );
  } catch (e) {
    if (e instanceof MemberAddressError)
      throw new UsageError(`--listen: ${e.message} (--peer-listen)`, 'serve');
    throw e;
  }
  if (peerListen === listen && !listen.endsWith(':0')) {
    throw new UsageError(`the peer port must differ from the client port (${listen})`, 'serve');
  }
  return { id, listen, peerListen, peers, seeds };
}

export async function runServe(p: Parsed, io: ServeIo): Promise<number> {
  const where = layout(p);
  const { id, listen, peerListen, seeds } = where;
  let peers = where.peers;
  const joinAddr = str(p, 'join');
  if ((peers !== undefined || seeds !== undefined) && joinAddr !== undefined) {
    throw new UsageError('give either --peers (a new cluster) or --join (a running one), not both', 'serve');
  }
  if (joinAddr !== undefined) hostPort(joinAddr, '--join');
  const dataDir = str(p, 'data-dir') ?? join('state', id);
  const clusterId = str(p, 'cluster-id') ?? 'raftkv';
  const tickMs = int(p, 'tick-ms', 1, 60_000) ?? 100;
  const snapshotEntries = int(p, 'snapshot-entries', 0) ?? 100_000;
  const walSync = str(p, 'wal-sync') ?? 'dsync';
  const walInlineBytes = int(p, 'wal-inline-bytes', 0, MAX_INLINE_WRITE_BYTES) ?? DEFAULT_INLINE_WRITE_BYTES;
  const maxRequestBytes = int(p, 'max-request-bytes', 1, 2 ** 31 - 1);
  const maxConnections = int(p, 'max-connections', 1, 1_000_000);
  if (walSync !== 'dsync' && walSync !== 'fdatasync') {
    throw new UsageError(`--wal-sync must be dsync or fdatasync, not "${walSync}"`, 'serve');
  }
  const certFile = str(p, 'cert');
  const keyFile = str(p, 'key');
  const caFile = str(p, 'ca');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError('--cert and --key go together', 'serve');
  }
  if (caFile !== undefined && certFile === undefined)
    throw new UsageError('--ca needs --cert and --key', 'serve');
  const peerCertFile = str(p, 'peer-cert') ?? certFile;
  const peerKeyFile = str(p, 'peer-key') ?? keyFile;
  const peerCaFile = str(p, 'peer-ca') ?? caFile;
  if ((peerCertFile === undefined) !== (peerKeyFile === undefined)) {
    throw new UsageError('--peer-cert and --peer-key go together', 'serve');
  }
  if (peerCertFile !== undefined && peerCaFile === undefined) {
    throw new UsageError(
      'peer TLS needs a CA to check the other peers’ certificates: give --peer-ca (or --ca)',
      'serve',
    );
  }
  if (peerCaFile !== undefined && peerCertFile === undefined) {
    throw new UsageError('--peer-ca needs --peer-cert and --peer-key (or --cert and --key)', 'serve');
  }
  const secretFile = str(p, 'peer-secret-file');
  if (secretFile !== undefined && peerCertFile !== undefined) {
    throw new UsageError(
      '--peer-secret-file is for peers without TLS; with peer certificates, peers authenticate by certificate',
      'serve',
    );
  }
  const allowedPeerNames = names(str(p, 'peer-cert-allowed-cn'));
  if (allowedPeerNames !== null && peerCertFile === undefined) {
    throw new UsageError('--peer-cert-allowed-cn needs peer TLS (--peer-cert or --cert)', 'serve');
  }
  const insecurePeers = bool(p, 'insecure-peers');
  const peerHost = peerListen.slice(0, peerListen.lastIndexOf(':'));
  if (insecurePeers && (peerCertFile !== undefined || secretFile !== undefined)) {
    throw new UsageError(
      `--insecure-peers turns peer authentication off, but ${secretFile !== undefined ? '--peer-secret-file' : 'peer TLS'} turns it on: give one`,
      'serve',
    );
  }
  if (peerCertFile === undefined && secretFile === undefined && !isLoopbackHost(peerHost) && !insecurePeers) {
    throw new UsageError(
      `refusing to serve unauthenticated peer traffic on ${peerListen}: anyone who reaches it could ` +
        'take over the cluster. Give peer TLS (--peer-cert/--peer-key/--peer-ca, or --cert/--key/--ca) or ' +
        '--peer-secret-file, listen for peers on a loopback address (peers then prove a per-user secret ' +
        'file), or accept the risk with --insecure-peers',
      'serve',
    );
  }
  const adminTokenFile = str(p, 'admin-token-file');
  const adminNames = names(str(p, 'admin-cert-allowed-cn'));
  if (adminNames !== null && (certFile === undefined || caFile === undefined)) {
    throw new UsageError('--admin-cert-allowed-cn needs mTLS for clients (--cert, --key and --ca)', 'serve');
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
  const peerTls =
    peerCertFile !== undefined && peerKeyFile !== undefined && peerCaFile !== undefined
      ? {
          cert: await read(peerCertFile, '--peer-cert'),
          key: await read(peerKeyFile, '--peer-key'),
          ca: await read(peerCaFile, '--peer-ca'),
        }
      : undefined;
  const warn = (msg: string) => logger.warn({}, msg);
  // One path: peer TLS, else --peer-secret-file, else (loopback peers) the per-user secret file;
  // only --insecure-peers turns authentication off.
  let auth: PeerAuth;
  if (peerTls !== undefined) auth = { kind: 'tls', allowedNames: allowedPeerNames };
  else if (secretFile !== undefined) {
    const secret = await readSecret(secretFile, '--peer-secret-file', MIN_SECRET_BYTES, warn);
    auth = {
      kind: 'secret',
      secret: Buffer.from(secret, 'utf8'),
      source: { kind: 'peer-secret-file', file: secretFile },
    };
  } else if (insecurePeers) {
    auth = { kind: 'none' };
    logger.warn(
      { peerListen },
      `INSECURE: peer traffic on ${isLoopbackHost(peerHost) ? 'a loopback' : 'a non-loopback'} address without authentication (--insecure-peers): ` +
        `anyone who reaches this port${isLoopbackHost(peerHost) ? ' (any local user or process)' : ''} can take over the cluster`,
    );
  } else {
    const file = userSecretPath(clusterId);
    let us: UserSecret;
    try {
      us = await loadOrCreateUserSecret(file);
    } catch (e) {
      if (e instanceof UserSecretError) throw new CliError(e.message);
      throw e;
    }
    auth = { kind: 'secret', secret: us.secret, source: { kind: 'user-file', file } };
    logger.info(
      { peerListen, secretFile: file, created: us.created },
      'peers prove the per-user secret file (no TLS and no --peer-secret-file; see docs/security.md)',
    );
  }
  const adminToken =
    adminTokenFile !== undefined
      ? await readSecret(adminTokenFile, '--admin-token-file', 16, warn)
      : undefined;
  const admin: AdminAuth = {
    ...(adminToken !== undefined ? { tokens: [adminToken] } : {}),
    ...(adminNames !== null ? { certNames: adminNames } : {}),
  };

  // Joining: learn the members (and their addresses) from the given node.
  let joinClient: RaftKvClient | undefined;
  let alreadyMember = false;
  if (joinAddr !== undefined) {
    joinClient = new RaftKvClient({
      endpoints: [joinAddr],
      timeoutMs: 30_000,
      retries: 100,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) } } : {}),
      ...(adminToken !== undefined ? { adminToken } : {}),
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
    peers = new Map(
      st.members
        .filter((m) => m.address)
        .map((m) => [m.id, m.peerAddress ? `${m.address}/${m.peerAddress}` : m.address]),
    );
    alreadyMember = st.members.some((m) => m.id === id && m.role === 'voter');
    if (!alreadyMember && !st.members.some((m) => m.id === id) && !(await isEmptyDir(dataDir))) {
      logger.warn({ dataDir }, 'joining with a non-empty data directory');
    }
    peers.delete(id);
  }

  const advertisedClient = (port: number) =>
    listen.endsWith(':0') ? listen.replace(/:0$/, `:${port}`) : listen;
  const transport = peerTransport({
    peers: new Map(
      [...(peers ?? new Map<string, string>())]
        .filter(([p]) => p !== id)
        .map(([p, a]) => [p, parseMemberAddress(a).peer]),
    ),
    ...(peerTls ? { tls: peerTls } : {}),
    auth,
    clientAddress: listen,
    peerHost,
    logger: root,
  });

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
              onWarning: (msg, err) => logger.warn({ err: String(err) }, msg),
            }),
          )
        : undefined;
    const self = formatMemberAddress({ client: listen, peer: peerListen });
    server = await startServer({
      ...(storage ? { storage } : {}),
      id,
      listen,
      peers: peers ?? new Map([[id, self]]),
      peer: {
        listen: peerListen,
        ...(peerTls ? { tls: peerTls } : {}),
        grpcOptions: { ...PEER_SERVER_OPTIONS, health: false },
      },
      ...(seeds !== undefined ? { discover: (onPeer) => transport.discover(seeds, onPeer) } : {}),
      admin,
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
      ...(maxRequestBytes !== undefined ? { maxRequestBytes } : {}),
      ...(maxConnections !== undefined ? { maxConnections } : {}),
      transport: transport.factory,
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
    if (e instanceof StorageError) throw serveStorageError(e);
    if (e instanceof ServerConfigError) throw new CliError(e.message);
    if (e instanceof MemberAddressError) throw new CliError(e.message);
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
    const advertised = advertisedClient(server.port);
    const advertisedPeer = peerListen.endsWith(':0')
      ? peerListen.replace(/:0$/, `:${server.peerPort}`)
      : peerListen;
    try {
      const st = await joinClient.status();
      if (!st.members.some((m) => m.id === id)) {
        logger.info({ via: joinAddr }, 'asking the cluster to add this node as a learner');
        await joinClient.addMember(id, advertised, {
          learner: true,
          peerAddress: advertisedPeer,
          timeoutMs: 30_000,
        });
      }
      // Caught up when this node applied what the leader had committed when we asked.
      const target = (await joinClient.status()).commitIndex;
      while (!stopping && server.node.status().applied < target) await new Promise((r) => setTimeout(r, 50));
      if (!stopping) {
        logger.info({ applied: server.node.status().applied }, 'caught up; asking to be promoted to voter');
        await joinClient.addMember(id, advertised, {
          learner: false,
          peerAddress: advertisedPeer,
          timeoutMs: 30_000,
        });
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
