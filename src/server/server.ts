/**
 * A raftkv server: one node of the replicated KV store. It opens the data directory
 * (FileStorage), restores the state machine, starts the RaftNode, and serves two planes on
 * two ports of the project's own gRPC layer (docs/security.md): the client port
 * (raft.KeyValueService, reflection, health) and the peer port (raft.PeerService only).
 *
 * Invariants: the data directory is opened before anything listens (a wrong or corrupt
 * directory fails start-up and changes nothing); the client port never serves
 * raft.PeerService (UNIMPLEMENTED); the peer port listens before the node starts (peers
 * learn its id from it during discovery) and the client port after; shutdown stops
 * accepting calls first, lets in-flight calls finish (up to a grace period), then stops the
 * node, which syncs and closes storage.
 */
import { createGrpcServer, type GrpcServer, type GrpcServerOptions, type TlsOptions } from '../grpc/index.ts';
import { type KvResult, KvStateMachine } from '../kv/state-machine.ts';
import { type Logger, RaftNode } from '../node/raft-node.ts';
import type { RaftConfig } from '../raft/raft.ts';
import { ConfChangeType, type NodeId } from '../raft/types.ts';
import type { RaftStorage } from '../storage/contract.ts';
import { FileStorage } from '../storage/file-storage.ts';
import type { Transport } from '../transport/transport.ts';
import {
  type AdminAuth,
  defaultLimits,
  type KvLimits,
  kvHandlers,
  kvServiceDefinition,
} from './kv-service.ts';
import { type MemberAddress, MemberAddressError, parseMemberAddress } from './member-address.ts';

export interface ServerConfig {
  readonly id: NodeId;
  /**
   * Client sessions the state machine keeps (least recently used evicted first). Default
   * 10,000. Part of the replicated state: every member must use the same value.
   */
  readonly maxSessions?: number;
  /** host:port to listen on for clients. Port 0 picks a free one. */
  readonly listen: string;
  /**
   * Every founding member and its addresses, `CLIENT/PEER` or `CLIENT` (member-address.ts),
   * this node included. Needed to bootstrap.
   */
  readonly peers: ReadonlyMap<NodeId, string>;
  /**
   * The peer plane: raft.PeerService on a port of its own, given to `transport` (absent: the
   * transport needs no server, e.g. the in-memory one of tests).
   */
  readonly peer?: {
    /** host:port; port 0 picks a free one. */
    readonly listen: string;
    readonly tls?: TlsOptions;
    readonly grpcOptions?: Omit<GrpcServerOptions, 'tls'>;
  };
  /**
   * Founding members known only by peer address, their ids unknown (seed-style lists): called
   * once the peer port listens, resolves with each one's id and addresses. Awaited before
   * bootstrapping an empty data directory; otherwise run in the background, each peer added
   * to the transport as it answers.
   */
  readonly discover?: (onPeer: (id: NodeId, address: MemberAddress) => void) => Promise<void>;
  /** Who may call AddMember, RemoveMember and TransferLeader (kv-service.ts; default: anyone). */
  readonly admin?: AdminAuth;
  readonly dataDir: string;
  /** Refuses peers and data directories of another cluster. Default 'raftkv'. */
  readonly clusterId?: string;
  readonly tls?: TlsOptions;
  readonly tickMs?: number;
  readonly raft?: Partial<Omit<RaftConfig, 'id' | 'rng'>>;
  readonly snapshotEntries?: number;
  /** How the WAL makes writes durable (FileStorage's `sync`; default dsync: one thread-pool trip per group). */
  readonly walSync?: 'dsync' | 'fdatasync';
  /** FileStorage's `inlineWriteBytes`: on a follower or an idle leader, WAL groups up to this size are written on the main thread. */
  readonly walInlineBytes?: number;
  readonly retainEntries?: number;
  readonly limits?: Partial<KvLimits>;
  readonly logger?: Logger;
  /** Called once if the node stops for good on a storage failure (see RaftNodeOptions.onFatal). */
  readonly onFatal?: (err: Error) => void;
  /** Do not bootstrap an empty data directory: wait to be added by an existing cluster. */
  readonly joining?: boolean;
  /** Options of the client port's gRPC server. */
  readonly grpcOptions?: Omit<GrpcServerOptions, 'tls'>;
  /** Largest KV API request message (default 4 MiB, RESOURCE_EXHAUSTED beyond); the peer service keeps its own. */
  readonly maxRequestBytes?: number;
  /** Concurrent client-port connections (default 4096; see docs/grpc-limits.md). */
  readonly maxConnections?: number;
  /** The peer transport, given the peer port's server (null without `peer`) to register its service on. */
  readonly transport: (
    peerServer: GrpcServer | null,
    ctx: { id: NodeId; clusterId: string; peerPort: number },
  ) => Transport;
  /** Storage override (tests); default FileStorage in dataDir. */
  readonly storage?: RaftStorage;
  readonly seed?: number;
}

export class ServerConfigError extends Error {
  override readonly name = 'ServerConfigError';
}

export interface RaftKvServer {
  readonly id: NodeId;
  /** The bound client (API) port. */
  readonly port: number;
  /** The bound peer port (0 without a peer plane). */
  readonly peerPort: number;
  readonly node: RaftNode<KvResult | null>;
  readonly sm: KvStateMachine;
  readonly grpc: GrpcServer;
  /** Where clients reach `id` ('' if unknown). */
  address(id: NodeId): string;
  /** Where peers reach `id` ('' if unknown). */
  peerAddress(id: NodeId): string;
  close(graceMs?: number): Promise<void>;
}

export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || port > 65535) throw new ServerConfigError(`${what} must be host:port, got ${JSON.stringify(s)}`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

export async function startServer(config: ServerConfig): Promise<RaftKvServer> {
  const clusterId = config.clusterId ?? 'raftkv';
  const { host, port } = parseHostPort(config.listen, 'config.listen');
  const peerHostPort = config.peer ? parseHostPort(config.peer.listen, 'config.peer.listen') : null;
  if (!config.joining && !config.discover && !config.peers.has(config.id)) {
    throw new ServerConfigError(`the peer list does not include this node (${config.id})`);
  }
  const founders = new Map<NodeId, MemberAddress>();
  for (const [id, a] of config.peers) {
    try {
      founders.set(id, parseMemberAddress(a));
    } catch (e) {
      throw new ServerConfigError(`address of ${id}: ${(e as Error).message}`);
    }
  }
  const log = config.logger;
  const storage =
    config.storage ??
    (await FileStorage.open(config.dataDir, {
      nodeId: config.id,
      clusterId,
      sync: config.walSync ?? 'dsync',
      ...(config.walInlineBytes !== undefined ? { inlineWriteBytes: config.walInlineBytes } : {}),
      ...(log ? { onWarning: (msg: string, err: unknown) => log.warn({ err: String(err) }, msg) } : {}),
    }));
  const sm = new KvStateMachine({
    ...(config.maxSessions !== undefined ? { maxSessions: config.maxSessions } : {}),
    onInvalid: (index, reason) =>
      log?.warn({ index, reason }, 'committed entry is not a KV command; applied as a no-op'),
  });
  /** Addresses learned at run time (membership changes, discovery), over the founders'. */
  const learned = new Map<NodeId, MemberAddress>();
  const member = (id: NodeId): MemberAddress | undefined => {
    const l = learned.get(id);
    if (l !== undefined) return l;
    const m = sm.members.get(id);
    if (m !== undefined) {
      try {
        return parseMemberAddress(m);
      } catch {
        // a malformed entry in the member table: fall back to the founders'
      }
    }
    return founders.get(id);
  };
  const address = (id: NodeId): string => member(id)?.client ?? '';
  const peerAddress = (id: NodeId): string => member(id)?.peer ?? '';
  const grpc = createGrpcServer({
    ...config.grpcOptions,
    ...(config.maxRequestBytes !== undefined ? { maxReceiveMessageSize: config.maxRequestBytes } : {}),
    ...(config.maxConnections !== undefined ? { maxConnections: config.maxConnections } : {}),
    ...(config.tls ? { tls: config.tls } : {}),
  });
  const peerServer = config.peer
    ? createGrpcServer({
        reflection: false,
        ...config.peer.grpcOptions,
        ...(config.peer.tls ? { tls: config.peer.tls } : {}),
      })
    : null;
  let transport: Transport;
  let created: Transport | undefined;
  let node: RaftNode<KvResult | null>;
  let peerPort = 0;
  try {
    if (peerServer !== null && peerHostPort !== null) {
      const what = config.peer?.listen ?? '';
      if (peerHostPort.port === 0) {
        // the transport advertises its bound port: bind first (UNIMPLEMENTED until it registers, a moment later)
        peerPort = await listenOrFail(peerServer, peerHostPort.host, 0, what);
        transport = config.transport(peerServer, { id: config.id, clusterId, peerPort });
      } else {
        peerPort = peerHostPort.port;
        transport = config.transport(peerServer, { id: config.id, clusterId, peerPort });
        await listenOrFail(peerServer, peerHostPort.host, peerPort, what);
      }
    } else {
      transport = config.transport(null, { id: config.id, clusterId, peerPort: 0 });
    }
    created = transport;
    for (const [id, a] of founders) if (id !== config.id) transport.setPeer(id, a.peer);
    const t = transport;
    const onPeer = (id: NodeId, a: MemberAddress): void => {
      if (id === config.id) return;
      learned.set(id, a);
      t.setPeer(id, a.peer);
    };
    const durable = storage.initialState();
    const empty = durable.hardState.term === 0 && durable.entries.length === 0 && durable.snapshot === null;
    let bootstrap = [...config.peers.keys()];
    if (config.discover) {
      if (empty && !config.joining) {
        log?.info({}, 'waiting for every listed peer to answer, to learn their node ids');
        await config.discover(onPeer);
        bootstrap = [...new Set([config.id, ...bootstrap, ...learned.keys()])].sort();
        log?.info({ members: bootstrap }, 'learned the founding members');
      } else {
        config.discover(onPeer).catch((err: unknown) => log?.warn({ err }, 'peer discovery failed'));
      }
    }
    node = await RaftNode.start({
      id: config.id,
      storage,
      transport,
      stateMachine: sm,
      ...(config.joining ? {} : { bootstrap }),
      ...(config.tickMs !== undefined ? { tickMs: config.tickMs } : {}),
      ...(config.raft ? { raft: config.raft } : {}),
      ...(config.snapshotEntries !== undefined ? { snapshotEntries: config.snapshotEntries } : {}),
      ...(config.retainEntries !== undefined ? { retainEntries: config.retainEntries } : {}),
      ...(log ? { logger: log } : {}),
      ...(config.seed !== undefined ? { seed: config.seed } : {}),
      ...(config.onFatal ? { onFatal: config.onFatal } : {}),
      onConfChange: (cc) => {
        if (cc.type === ConfChangeType.Remove) {
          sm.members.delete(cc.node);
          learned.delete(cc.node);
          if (cc.node !== config.id) t.removePeer(cc.node);
          return;
        }
        if (cc.context) {
          let a: MemberAddress;
          try {
            a = parseMemberAddress(cc.context);
          } catch (e) {
            if (!(e instanceof MemberAddressError)) throw e;
            log?.error(
              { node: cc.node, context: cc.context, err: e },
              'membership change with a malformed address',
            );
            return;
          }
          sm.members.set(cc.node, cc.context);
          learned.set(cc.node, a);
          if (cc.node !== config.id) t.setPeer(cc.node, a.peer);
        }
      },
    });
  } catch (err) {
    await created?.close().catch(() => {});
    await peerServer?.close(0);
    await storage.close().catch(() => {});
    throw err;
  }
  // Addresses learned through membership changes before a restart live in the snapshot.
  for (const id of sm.members.keys()) {
    const a = member(id);
    if (id !== config.id && !config.peers.has(id) && a !== undefined) transport.setPeer(id, a.peer);
  }

  const limits: KvLimits = { ...defaultLimits, ...config.limits };
  grpc.addService(
    kvServiceDefinition(),
    kvHandlers({
      node,
      sm,
      clusterId,
      limits,
      address,
      peerAddress,
      ...(config.admin ? { admin: config.admin } : {}),
    }),
  );
  let bound: number;
  try {
    bound = await grpc.listen(host, port);
  } catch (err) {
    await node.stop();
    await grpc.close(0);
    await peerServer?.close(0);
    throw new ServerConfigError(`cannot listen on ${config.listen}: ${(err as Error).message}`);
  }
  log?.info(
    {
      listen: `${host}:${bound}`,
      ...(peerHostPort ? { peerListen: `${peerHostPort.host}:${peerPort}` } : {}),
      clusterId,
    },
    'raftkv node serving',
  );
  let closing: Promise<void> | null = null;
  return {
    id: config.id,
    port: bound,
    peerPort,
    node,
    sm,
    grpc,
    address,
    peerAddress,
    close(graceMs = 2_000) {
      closing ??= (async () => {
        await grpc.close(graceMs);
        await node.stop();
        await peerServer?.close(Math.min(graceMs, 500));
        log?.info({}, 'raftkv node stopped');
      })();
      return closing;
    },
  };
}

async function listenOrFail(server: GrpcServer, host: string, port: number, what: string): Promise<number> {
  try {
    return await server.listen(host, port);
  } catch (err) {
    throw new ServerConfigError(`cannot listen for peers on ${what}: ${(err as Error).message}`);
  }
}
