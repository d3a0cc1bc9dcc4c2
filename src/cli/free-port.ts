/**
 * A TCP port on 127.0.0.1 that is free right now (the OS picks it). Used by `raftkv
 * cluster` when a configured port is taken, and by tests and benchmarks. Another process
 * may still take it before it is used: callers that bind it retry or report clearly.
 */
import { createServer } from 'node:net';

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
