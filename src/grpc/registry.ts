/**
 * The part of a gRPC server that built-in services (health, reflection) register with: kept
 * apart from server.ts so that they depend on this small contract, not on the server that
 * adds them (no import cycle). Invariant: `services` lists every service added, in order.
 */
import type { Handler } from './call.ts';
import type { ServiceDefinition } from './proto.ts';

/** Per-service settings given to addService. */
export interface ServiceOptions {
  /** Largest request message of this service's methods, in bytes (default: the server's maxReceiveMessageSize). */
  readonly maxReceiveMessageSize?: number;
}

export interface ServiceRegistry {
  /**
   * Serves a service. `handlers` maps each method name (as in the .proto) to its handler; a method without a
   * handler answers UNIMPLEMENTED. Throws on a handler name the service does not have, a service added twice,
   * or a limit that is not a positive integer.
   */
  addService(
    service: ServiceDefinition,
    handlers: Readonly<Record<string, Handler>>,
    options?: ServiceOptions,
  ): void;
  /** Services added so far (including health and reflection). */
  readonly services: readonly ServiceDefinition[];
}
