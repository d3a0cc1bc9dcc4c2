/**
 * The transport boundary: how Raft messages travel between nodes. The node runtime
 * (src/node/) hands every outgoing message to `send` and feeds every inbound batch to the
 * core. Implementations: {@link MemoryNetwork} for tests (in process), and the gRPC peer
 * transport for real clusters.
 *
 * Contract:
 * - `send` never blocks and never throws for network reasons: Raft tolerates loss, so a
 *   message to a peer that cannot be reached is dropped and the peer is reported through
 *   `onUnreachable` (the leader then probes instead of streaming blindly).
 * - Messages to one peer are delivered in the order sent, or not at all (streams);
 *   batches sent in one event-loop turn may be coalesced into one frame.
 * - Inbound messages are delivered in batches to the handler given to `start`.
 */
import type { Message, NodeId } from '../raft/types.ts';

export interface TransportHandlers {
  /** Inbound messages, in arrival order. */
  onMessages(batch: readonly Message[]): void;
  /** A message to `peer` was dropped because it is unreachable. */
  onUnreachable?(peer: NodeId): void;
}

export interface Transport {
  start(handlers: TransportHandlers): void;
  send(messages: readonly Message[]): void;
  /** Learn or update where a peer is (its address, for network transports). */
  setPeer(id: NodeId, address: string): void;
  removePeer(id: NodeId): void;
  close(): Promise<void>;
}
