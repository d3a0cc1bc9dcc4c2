/**
 * The peer transport `raftkv serve` runs: the gRPC peer service (GrpcTransport) registered
 * on the node's peer port (never its client port), authenticated as `auth` says, and the
 * discovery of seed-style peers (addresses without ids) through it.
 *
 * Invariant: `discover` resolves only once every listed address answered an authenticated
 * probe, and never hands this node's own id to `onPeer`.
 */
import type { GrpcServer } from '../grpc/index.ts';
import type { Logger } from '../node/raft-node.ts';
import type { NodeId } from '../raft/types.ts';
import type { MemberAddress } from '../server/member-address.ts';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../transport/grpc.ts';
import type { PeerAuth } from '../transport/peer-auth.ts';
import type { Transport } from '../transport/transport.ts';

/** gRPC server options the peer service needs (frames up to 16 MiB, large windows). */
export { PEER_SERVER_OPTIONS };

export interface PeerTransportOptions {
  /** Peer addresses of the known members. */
  readonly peers: ReadonlyMap<NodeId, string>;
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  readonly auth: PeerAuth;
  /** This node's client address as advertised to peers (the peer address comes from the bound port). */
  readonly clientAddress: string;
  /** This node's peer listen host (advertised with the bound port). */
  readonly peerHost: string;
  readonly logger: Logger;
}

export interface PeerTransportHandle {
  readonly factory: (
    grpc: GrpcServer | null,
    ctx: { id: NodeId; clusterId: string; peerPort: number },
  ) => Transport;
  /**
   * Probes every address until each answered (forever, retrying every `retryMs`, logging the
   * missing ones now and then), handing each peer's id and addresses to `onPeer`.
   */
  discover(
    addresses: readonly string[],
    onPeer: (id: NodeId, address: MemberAddress) => void,
    retryMs?: number,
  ): Promise<void>;
}

export function peerTransport(options: PeerTransportOptions): PeerTransportHandle {
  let transport: GrpcTransport | null = null;
  let self = '';
  return {
    factory(grpc, ctx) {
      self = ctx.id;
      const t = new GrpcTransport({
        id: ctx.id,
        clusterId: ctx.clusterId,
        peers: options.peers,
        logger: options.logger,
        auth: options.auth,
        advertise: { client: options.clientAddress, peer: `${options.peerHost}:${ctx.peerPort}` },
        ...(options.tls ? { tls: options.tls } : {}),
      });
      if (grpc !== null) t.register(grpc);
      transport = t;
      return t;
    },
    async discover(addresses, onPeer, retryMs = 200) {
      const missing = new Set(addresses);
      const seen = new Map<NodeId, string>();
      let lastLog = 0;
      while (missing.size > 0) {
        const t = transport;
        if (t === null || t.closed) throw new Error('the peer transport is not running');
        const errors: string[] = [];
        await Promise.all(
          [...missing].map(async (addr) => {
            try {
              const who = await t.probe(addr, 2_000);
              missing.delete(addr);
              if (who.id === self) return; // this node listed itself: fine
              const before = seen.get(who.id);
              if (before !== undefined && before !== addr) {
                options.logger.warn(
                  { peer: who.id, addresses: [before, addr] },
                  'two peer addresses answer as one node',
                );
              }
              seen.set(who.id, addr);
              onPeer(who.id, { client: who.clientAddress, peer: addr });
              options.logger.info({ peer: who.id, address: addr }, 'learned a peer’s node id');
            } catch (e) {
              errors.push((e as Error).message);
            }
          }),
        );
        if (missing.size === 0) break;
        if (Date.now() - lastLog > 5_000) {
          lastLog = Date.now();
          options.logger.info({ waitingFor: [...missing], errors }, 'waiting for peers to answer');
        }
        await new Promise((r) => setTimeout(r, retryMs));
      }
    },
  };
}
