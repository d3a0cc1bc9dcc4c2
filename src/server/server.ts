/**
 * A raftkv server: one node of the replicated KV store. It opens the data directory
 * (FileStorage), restores the state machine, starts the RaftNode, and serves
 * raft.KeyValueService (with reflection and health) and the peer service on one gRPC
 * port of the project's own gRPC layer.
 *
 * Invariants: the data directory is opened before anything listens (a wrong or corrupt
 * directory fails start-up and changes nothing); shutdown stops accepting calls first,
 * lets in-flight calls finish (up to a grace period), then stops the node, which syncs and
 * closes storage.
 */
import { createGrpcServer, type GrpcServer, type GrpcServerOptions, type TlsOptions } from '../grpc/index.ts';
import { type KvResult, KvStateMachine } from '../kv/state-machine.ts';
import { type Logger, RaftNode } from '../node/raft-node.ts';
import type { RaftConfig } from '../raft/raft.ts';
import type { RaftStorage } from '../raft/storage.ts';
import { ConfChangeType, type NodeId } from '../raft/types.ts';
import { FileStorage } from '../storage/file-storage.ts';
import type { Transport } from '../transport/transport.ts';
import { defaultLimits, type KvLimits, kvHandlers, kvServiceDefinition } from './kv-service.ts';

export interface ServerConfig {
  readonly id: NodeId;
  /**
   * Client sessions the state machine keeps (least recently used evicted first). Default
   * 10,000. Part of the replicated state: every member must use the same value.
   */
  readonly maxSessions?: number;
  /** host:port to listen on for clients and peers. Port 0 picks a free one. */
  readonly listen: string;
  /** Every founding member and its address (this node included). Needed to bootstrap. */
  readonly peers: ReadonlyMap<NodeId, string>;
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
  /** Options of the gRPC server (the peer transport may need larger messages and windows). */
  readonly grpcOptions?: Omit<GrpcServerOptions, 'tls'>;
  /** The peer transport, given the gRPC server it may register its service on. */
  readonly transport: (grpc: GrpcServer, ctx: { id: NodeId; clusterId: string }) => Transport;
  /** Storage override (tests); default FileStorage in dataDir. */
  readonly storage?: RaftStorage;
  readonly seed?: number;
}

export class ServerConfigError extends Error {
  override readonly name = 'ServerConfigError';
}

export interface RaftKvServer {
  readonly id: NodeId;
  /** The bound gRPC port. */
  readonly port: number;
  readonly node: RaftNode<KvResult | null>;
  readonly sm: KvStateMachine;
  readonly grpc: GrpcServer;
  /** Where `id` can be reached ('' if unknown). */
  address(id: NodeId): string;
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
  const { host, port } = parseHostPort(config.listen, '--listen');
  if (!config.joining && !config.peers.has(config.id)) {
    throw new ServerConfigError(`the peer list does not include this node (${config.id})`);
  }
  const log = config.logger;
  const storage =
    config.storage ??
    (await FileStorage.open(config.dataDir, {
      nodeId: config.id,
      clusterId,
      sync: config.walSync ?? 'dsync',
      ...(config.walInlineBytes !== undefined ? { inlineWriteBytes: config.walInlineBytes } : {}),
    }));
  const sm = new KvStateMachine({
    ...(config.maxSessions !== undefined ? { maxSessions: config.maxSessions } : {}),
    onInvalid: (index, reason) =>
      log?.warn({ index, reason }, 'committed entry is not a KV command; applied as a no-op'),
  });
  const addresses = new Map<NodeId, string>();
  const address = (id: NodeId): string =>
    addresses.get(id) ?? sm.members.get(id) ?? config.peers.get(id) ?? '';
  const grpc = createGrpcServer({ ...config.grpcOptions, ...(config.tls ? { tls: config.tls } : {}) });
  let transport: Transport;
  let node: RaftNode<KvResult | null>;
  try {
    transport = config.transport(grpc, { id: config.id, clusterId });
    for (const [id, addr] of config.peers) if (id !== config.id) transport.setPeer(id, addr);
    node = await RaftNode.start({
      id: config.id,
      storage,
      transport,
      stateMachine: sm,
      ...(config.joining ? {} : { bootstrap: [...config.peers.keys()] }),
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
          if (cc.node !== config.id) transport.removePeer(cc.node);
          return;
        }
        if (cc.context) {
          sm.members.set(cc.node, cc.context);
          addresses.set(cc.node, cc.context);
          if (cc.node !== config.id) transport.setPeer(cc.node, cc.context);
        }
      },
    });
  } catch (err) {
    await storage.close().catch(() => {});
    throw err;
  }
  // Addresses learned through membership changes before a restart live in the snapshot.
  for (const [id, addr] of sm.members)
    if (id !== config.id && !config.peers.has(id)) transport.setPeer(id, addr);

  const limits: KvLimits = { ...defaultLimits, ...config.limits };
  grpc.addService(kvServiceDefinition(), kvHandlers({ node, sm, clusterId, limits, address }));
  let bound: number;
  try {
    bound = await grpc.listen(host, port);
  } catch (err) {
    await node.stop();
    await grpc.close(0);
    throw new ServerConfigError(`cannot listen on ${config.listen}: ${(err as Error).message}`);
  }
  log?.info({ listen: `${host}:${bound}`, clusterId }, 'raftkv node serving');
  let closing: Promise<void> | null = null;
  return {
    id: config.id,
    port: bound,
    node,
    sm,
    grpc,
    address,
    close(graceMs = 2_000) {
      closing ??= (async () => {
        await grpc.close(graceMs);
        await node.stop();
        log?.info({}, 'raftkv node stopped');
      })();
      return closing;
    },
  };
}
