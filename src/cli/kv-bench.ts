/**
 * `raftkv bench`: closed-loop load from this process (grpc-js clients), for a quick look
 * at a cluster's throughput and latency. For comparisons with etcd use the C++ load
 * generator (npm run bench:etcd), which costs the machine about 8x less CPU per call.
 *
 * Writes go to the leader (found with GetClusterStatus); reads are linearizable unless
 * `local` is set. Percentiles come from all recorded latencies (exact, not sampled).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface BenchOptions {
  readonly endpoints: readonly string[];
  readonly clients: number;
  readonly durationS: number;
  readonly op: 'put' | 'get' | 'mixed';
  readonly valueSize: number;
  readonly keys: number;
  readonly local?: boolean;
  readonly timeoutMs?: number;
  /** Called about once a second with progress. */
  readonly onProgress?: (p: { elapsedS: number; ops: number; errors: number }) => void;
  readonly credentials?: grpc.ChannelCredentials;
}

export interface BenchResult {
  readonly op: string;
  readonly clients: number;
  readonly durationS: number;
  readonly ops: number;
  readonly opsPerSec: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

type Unary = (
  req: object,
  opts: { deadline: number },
  cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void,
) => void;
type KvClient = grpc.Client & Record<string, Unary>;

const PROTO = fileURLToPath(new URL('../../proto/raftkv.proto', import.meta.url));

function loadClientCtor() {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
  return (
    grpc.loadPackageDefinition(def) as unknown as {
      raft: { KeyValueService: new (addr: string, creds: grpc.ChannelCredentials) => KvClient };
    }
  ).raft.KeyValueService;
}

function unary(c: KvClient, method: string, req: object, ms: number): Promise<Record<string, unknown>> {
  return new Promise((res, rej) => {
    (c[method] as Unary).call(c, req, { deadline: Date.now() + ms }, (err, r) => (err ? rej(err) : res(r)));
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  if (o.endpoints.length === 0) throw new RangeError('bench needs at least one endpoint');
  if (!(o.clients >= 1) || !(o.durationS > 0)) throw new RangeError('clients must be >= 1 and duration > 0');
  const Ctor = loadClientCtor();
  const creds = o.credentials ?? grpc.credentials.createInsecure();
  const timeout = o.timeoutMs ?? 5_000;
  // Find the leader: writes go there.
  let target = o.endpoints[0] as string;
  for (const ep of o.endpoints) {
    const c = new Ctor(ep, creds);
    try {
      const st = await unary(c, 'GetClusterStatus', {}, 2_000);
      if (typeof st['leader_address'] === 'string' && st['leader_address']) {
        target = st['leader_address'];
        break;
      }
    } catch {
      // try the next one
    } finally {
      c.close();
    }
  }
  const client = new Ctor(target, creds);
  const value = 'x'.repeat(o.valueSize);
  const lat: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let stop = false;
  const t0 = performance.now();
  const timer = setInterval(() => {
    o.onProgress?.({ elapsedS: (performance.now() - t0) / 1000, ops: lat.length, errors });
  }, 1000);
  const loop = async (): Promise<void> => {
    while (!stop) {
      const key = `bench/${String(Math.floor(Math.random() * o.keys)).padStart(8, '0')}`;
      const isPut = o.op === 'put' || (o.op === 'mixed' && Math.random() < 0.5);
      const s = performance.now();
      try {
        if (isPut) await unary(client, 'Put', { key, value }, timeout);
        else await unary(client, 'Get', { key, local: o.local === true }, timeout);
        if (!stop) lat.push(performance.now() - s);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const loops = Array.from({ length: o.clients }, () => loop());
  await new Promise((r) => setTimeout(r, o.durationS * 1000));
  stop = true;
  const elapsed = (performance.now() - t0) / 1000;
  await Promise.all(loops);
  clearInterval(timer);
  client.close();
  const sorted = Float64Array.from(lat).sort();
  return {
    op: o.op,
    clients: o.clients,
    durationS: Number(elapsed.toFixed(2)),
    ops: lat.length,
    opsPerSec: Math.round(lat.length / elapsed),
    errors,
    firstError,
    p50Ms: Number(percentile(sorted, 50).toFixed(3)),
    p90Ms: Number(percentile(sorted, 90).toFixed(3)),
    p99Ms: Number(percentile(sorted, 99).toFixed(3)),
    maxMs: Number((sorted[sorted.length - 1] ?? 0).toFixed(3)),
  };
}
