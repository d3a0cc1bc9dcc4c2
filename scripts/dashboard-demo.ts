// A 3-node in-process cluster (memory network and storage) with the HTTP endpoints and a
// steady trickle of writes, to look at the dashboard without real processes:
//   node --import tsx scripts/dashboard-demo.ts [--port 8080] [--rate 200] [--churn]
// Then open http://127.0.0.1:8080/ (n1; n2 and n3 on the next ports). --churn transfers
// leadership every 10 s.
import { parseArgs } from 'node:util';
import { encodeRequest } from '../src/kv/state-machine.ts';
import { startHttpServer } from '../src/server/http.ts';
import { instrumentStorage } from '../src/server/metrics.ts';
import { type RaftKvServer, startServer } from '../src/server/server.ts';
import { MemoryStorage } from '../src/storage/memory-storage.ts';
import { MemoryNetwork } from '../src/transport/memory.ts';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    rate: { type: 'string', default: '200' },
    churn: { type: 'boolean', default: false },
  },
});
const base = Number(values.port);
const rate = Number(values.rate);
const ids = ['n1', 'n2', 'n3'];
const net = new MemoryNetwork();
const peers = new Map(ids.map((id) => [id, '127.0.0.1:0']));
const httpUrls = new Map(ids.map((id, i) => [id, `http://127.0.0.1:${base + i}`]));
const servers: RaftKvServer[] = [];
const closers: (() => Promise<void>)[] = [];
for (const [i, id] of ids.entries()) {
  const storage = instrumentStorage(new MemoryStorage());
  const s = await startServer({
    id,
    listen: '127.0.0.1:0',
    peers,
    dataDir: '',
    storage,
    transport: () => net.transport(id),
    tickMs: 20,
    snapshotEntries: 5_000,
  });
  servers.push(s);
  const h = await startHttpServer({
    host: '127.0.0.1',
    port: base + i,
    server: s,
    storage,
    peersHttp: () => httpUrls,
  });
  closers.push(
    () => h.close(),
    () => s.close(100),
  );
  console.log(`${id}: dashboard http://127.0.0.1:${h.port}/  status /status  metrics /metrics`);
}

let seq = 0;
const writer = setInterval(() => {
  const leader = servers.find((s) => s.node.role === 'leader');
  if (!leader) return;
  for (let i = 0; i < Math.max(1, Math.round(rate / 20)); i++) {
    const req = encodeRequest({
      client: 0,
      seq: 0,
      cmd: { kind: 'put', key: `k${seq % 100}`, value: `v${seq}` },
    });
    seq++;
    leader.node.propose(req).catch(() => {});
  }
}, 50);
const churn = values.churn
  ? setInterval(() => {
      const leader = servers.find((s) => s.node.role === 'leader');
      const next = servers.find((s) => s !== leader);
      if (leader && next) {
        try {
          leader.node.transferLeadership(next.id);
        } catch {}
      }
    }, 10_000)
  : null;

process.on('SIGINT', () => {
  clearInterval(writer);
  if (churn) clearInterval(churn);
  void Promise.all(closers.map((c) => c())).then(() => process.exit(0));
});
