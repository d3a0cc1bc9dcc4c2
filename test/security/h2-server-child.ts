// The Echo test server in a process of its own, for tests that measure the server's CPU time and RSS apart
// from the attacking client. argv[2]: GrpcServerOptions as JSON. Sends {port} over IPC once listening; answers
// each 'usage' message with {cpuUs, rss, sessions, calls, writeStalls}. Exits when its parent goes (IPC disconnect).

import { startEcho } from '../grpc/helpers.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as object;
const s = await startEcho(options);
const gc = (globalThis as { gc?: () => void }).gc;
process.on('message', (m) => {
  if (m !== 'usage') return;
  gc?.();
  const cpu = process.cpuUsage();
  const st = s.server.stats();
  process.send?.({
    cpuUs: cpu.user + cpu.system,
    rss: process.memoryUsage().rss,
    sessions: st.sessions,
    calls: st.calls,
    writeStalls: s.server.writeStalls,
  });
});
process.on('disconnect', () => process.exit(0));
process.send?.({ port: s.port });
