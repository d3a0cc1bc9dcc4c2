// The transport conformance suite against the in-memory network.
import { MemoryNetwork, type MemoryTransport } from '../../src/transport/memory.ts';
import { transportConformance } from './conformance.ts';

transportConformance('memory', async () => {
  const net = new MemoryNetwork();
  const ids = ['n1', 'n2', 'n3'];
  const ts = new Map<string, MemoryTransport>(ids.map((id) => [id, net.transport(id)]));
  return {
    ids,
    transport: (id) => ts.get(id)!,
    async stop(id) {
      await ts.get(id)!.close();
    },
    async restart(id) {
      const t = net.transport(id);
      ts.set(id, t);
      return t;
    },
    async close() {
      await Promise.all([...ts.values()].map((t) => t.close()));
    },
  };
});
