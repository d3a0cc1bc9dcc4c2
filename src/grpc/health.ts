// grpc.health.v1.Health (Check and Watch), served by this layer from an embedded health.proto.
//
// Invariants:
// - The overall status has the service name "" and is SERVING from creation until shutdown; every added
//   service is SERVING when added. `setStatus` changes one entry and notifies its watchers.
// - Check of an unknown service is NOT_FOUND; Watch of an unknown service reports SERVICE_UNKNOWN and keeps
//   watching (the service may appear later), as the health-checking spec says.
// - A watcher sees the current status first, then every change; it is removed when its call ends.
// - shutdown() sets every status to NOT_SERVING, tells the watchers, and ends their calls (so graceful
//   shutdown does not wait for them).

import type { ServerStreamCall } from './call.ts';
import { parseProto, serviceDefinition } from './proto.ts';
import type { ServiceRegistry } from './registry.ts';
import { GrpcError, Status } from './status.ts';

export const HEALTH_PROTO = `syntax = "proto3";
package grpc.health.v1;
option java_package = "io.grpc.health.v1";
message HealthCheckRequest {
  string service = 1;
}
message HealthCheckResponse {
  enum ServingStatus {
    UNKNOWN = 0;
    SERVING = 1;
    NOT_SERVING = 2;
    SERVICE_UNKNOWN = 3;
  }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
`;

const STATUS_NUMBER = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;
export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'UNKNOWN';

interface HealthCheckRequest {
  service?: string;
}
interface HealthCheckResponse {
  status: number;
}
type Watcher = ServerStreamCall<HealthCheckRequest, HealthCheckResponse>;

export class HealthService {
  readonly #statuses = new Map<string, ServingStatus>([['', 'SERVING']]);
  readonly #watchers = new Map<string, Set<Watcher>>();
  #shutdown = false;

  /** Sets a service's status ("" is the server overall). Ignored after shutdown. */
  setStatus(service: string, status: ServingStatus): void {
    if (this.#shutdown) return;
    this.#set(service, status);
  }

  getStatus(service: string): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  #set(service: string, status: ServingStatus): void {
    const prev = this.#statuses.get(service);
    this.#statuses.set(service, status);
    if (prev === status) return;
    const ws = this.#watchers.get(service);
    if (ws !== undefined) for (const w of ws) w.write({ status: STATUS_NUMBER[status] });
  }

  /** Every status becomes NOT_SERVING; watchers are told and their calls end. */
  shutdown(): void {
    if (this.#shutdown) return;
    for (const k of this.#statuses.keys()) this.#set(k, 'NOT_SERVING');
    this.#shutdown = true;
    for (const ws of this.#watchers.values()) for (const w of ws) w.end();
    this.#watchers.clear();
  }

  check(req: HealthCheckRequest): HealthCheckResponse {
    const s = this.#statuses.get(req.service ?? '');
    if (s === undefined) throw new GrpcError(Status.NOT_FOUND, `unknown service "${req.service ?? ''}"`);
    return { status: STATUS_NUMBER[s] };
  }

  async watch(call: Watcher): Promise<void> {
    let req: HealthCheckRequest = {};
    for await (const r of call) req = r;
    const service = req.service ?? '';
    const s = this.#statuses.get(service);
    call.write({ status: s === undefined ? STATUS_NUMBER.SERVICE_UNKNOWN : STATUS_NUMBER[s] });
    if (this.#shutdown) return;
    let set = this.#watchers.get(service);
    if (set === undefined) {
      set = new Set();
      this.#watchers.set(service, set);
    }
    const watchers = set;
    watchers.add(call);
    await new Promise<void>((resolve) => {
      if (call.signal.aborted) resolve();
      else call.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    watchers.delete(call);
    if (watchers.size === 0 && this.#watchers.get(service) === watchers) this.#watchers.delete(service);
  }
}

/** Adds grpc.health.v1.Health to a server and returns its status table. */
export function addHealthService(server: ServiceRegistry): HealthService {
  const health = new HealthService();
  const def = serviceDefinition(
    parseProto(HEALTH_PROTO, 'grpc/health/v1/health.proto'),
    'grpc.health.v1.Health',
  );
  server.addService(def, {
    Check: (req: HealthCheckRequest) => health.check(req),
    Watch: (call: Watcher) => health.watch(call),
  });
  return health;
}
