/**
 * The part of a gRPC server that built-in services (health, reflection) register with: kept
 * apart from server.ts so that they depend on this small contract, not on the server that
 * adds them (no import cycle). Invariant: `services` lists every service added, in order.
 */
import type { Handler } from './call.ts';
import type { ServiceDefinition } from './proto.ts';

export interface ServiceRegistry {
  /**
   * Serves a service. `handlers` maps each method name (as in the .proto) to its handler; a method without a
   * handler answers UNIMPLEMENTED. Throws on a handler name the service does not have, or a service added twice.
   */
  addService(service: ServiceDefinition, handlers: Readonly<Record<string, Handler>>): void;
  /** Services added so far (including health and reflection). */
  readonly services: readonly ServiceDefinition[];
}
