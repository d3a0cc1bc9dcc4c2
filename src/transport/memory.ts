/**
 * An in-process transport for tests: every node of a {@link MemoryNetwork} reaches the
 * others through the event loop (delivery on a later macrotask, in order per link), and
 * links can be cut to make partitions. Same interface as the gRPC transport.
 */
import type { Message, NodeId } from '../raft/types.ts';
import type { Transport, TransportHandlers } from './transport.ts';

export class MemoryNetwork {
  private readonly endpoints = new Map<NodeId, MemoryTransport>();
  private readonly cut = new Set<string>();
  /** Messages delivered so far (for tests). */
  delivered = 0;
  /**
   * Tests: called for every message about to leave; false drops it (a test may keep it and
   * hand it over later with {@link deliverTo}, to reorder or delay it at will).
   */
  filter: ((m: Message) => boolean) | null = null;

  transport(id: NodeId): MemoryTransport {
    const t = new MemoryTransport(id, this);
    this.endpoints.set(id, t);
    return t;
  }

  /** Cut (or restore) both directions between a and b. */
  setLink(a: NodeId, b: NodeId, up: boolean): void {
    for (const k of [`${a}>${b}`, `${b}>${a}`]) {
      if (up) this.cut.delete(k);
      else this.cut.add(k);
    }
  }

  isolate(id: NodeId): void {
    for (const other of this.endpoints.keys()) if (other !== id) this.setLink(id, other, false);
  }

  heal(): void {
    this.cut.clear();
  }

  /** @internal */
  route(from: NodeId, batch: readonly Message[]): NodeId[] {
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of batch) {
      if (this.filter !== null && !this.filter(m)) continue;
      let list = byPeer.get(m.to);
      if (!list) {
        list = [];
        byPeer.set(m.to, list);
      }
      list.push(m);
    }
    const unreachable: NodeId[] = [];
    for (const [to, msgs] of byPeer) {
      const dst = this.endpoints.get(to);
      if (!dst || dst.closed || this.cut.has(`${from}>${to}`)) {
        unreachable.push(to);
        continue;
      }
      setImmediate(() => {
        if (!dst.closed && !this.cut.has(`${from}>${to}`)) {
          this.delivered += msgs.length;
          dst.deliver(msgs);
        }
      });
    }
    return unreachable;
  }

  /** Tests: deliver `batch` to `to` now, bypassing links and the filter (false when `to` is gone). */
  deliverTo(to: NodeId, batch: readonly Message[]): boolean {
    const dst = this.endpoints.get(to);
    if (!dst || dst.closed) return false;
    this.delivered += batch.length;
    dst.deliver(batch);
    return true;
  }

  /** @internal */
  remove(id: NodeId, t: MemoryTransport): void {
    if (this.endpoints.get(id) === t) this.endpoints.delete(id);
  }
}

export class MemoryTransport implements Transport {
  readonly id: NodeId;
  private readonly net: MemoryNetwork;
  private handlers: TransportHandlers | null = null;
  closed = false;

  constructor(id: NodeId, net: MemoryNetwork) {
    this.id = id;
    this.net = net;
  }

  start(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  send(messages: readonly Message[]): void {
    if (this.closed || messages.length === 0) return;
    for (const peer of this.net.route(this.id, messages)) this.handlers?.onUnreachable?.(peer);
  }

  deliver(batch: readonly Message[]): void {
    this.handlers?.onMessages(batch);
  }

  setPeer(): void {}
  removePeer(): void {}

  async close(): Promise<void> {
    this.closed = true;
    this.net.remove(this.id, this);
  }
}
