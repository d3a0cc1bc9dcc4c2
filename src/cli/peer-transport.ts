/**
 * The peer transport `raftkv serve` runs: the gRPC peer service (GrpcTransport) on the
 * node's own port, registered on the server that also serves the KV API.
 */
import type { GrpcServer } from '../grpc/index.ts';
import type { Logger } from '../node/raft-node.ts';
import type { NodeId } from '../raft/types.ts';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../transport/grpc.ts';
import type { Transport } from '../transport/transport.ts';

/** gRPC server options the peer service needs (frames up to 16 MiB, large windows). */
export { PEER_SERVER_OPTIONS };

export interface PeerTransportOptions {
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  readonly logger: Logger;
}

export function peerTransport(
  options: PeerTransportOptions,
): (grpc: GrpcServer, ctx: { id: NodeId; clusterId: string }) => Transport {
  return (grpc, ctx) => {
    const t = new GrpcTransport({
      id: ctx.id,
      clusterId: ctx.clusterId,
      peers: options.peers,
      logger: options.logger,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    t.register(grpc);
    return t;
  };
}
