/**
 * The peer transport `raftkv serve` runs: the gRPC peer service on the node's own port.
 */
import type { GrpcServer } from '../grpc/index.ts';
import type { Logger } from '../node/raft-node.ts';
import type { NodeId } from '../raft/types.ts';
import type { Transport } from '../transport/transport.ts';
import { CliError } from './errors.ts';

export interface PeerTransportOptions {
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  readonly logger: Logger;
}

export function peerTransport(
  _options: PeerTransportOptions,
): (grpc: GrpcServer, ctx: { id: NodeId; clusterId: string }) => Transport {
  return () => {
    throw new CliError('the gRPC peer transport (src/transport/grpc.ts) is not available in this build');
  };
}
