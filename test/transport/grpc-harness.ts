// Three GrpcTransports on 127.0.0.1, each registered on its own gRPC server at a port chosen
// free at run time, with optional TLS; log lines are captured per node.
import { createGrpcServer, type GrpcServer, type TlsOptions } from '../../src/grpc/index.ts';
import type { NodeId } from '../../src/raft/types.ts';
import {
  GrpcTransport,
  type GrpcTransportOptions,
  type GrpcTransportTls,
  PEER_SERVER_OPTIONS,
  type TransportLogger,
} from '../../src/transport/grpc.ts';
import type { TransportHarness } from './conformance.ts';

export interface LogLine {
  readonly level: 'info' | 'warn' | 'error';
  readonly msg: string;
  readonly obj: Record<string, unknown>;
}

export class CapturingLogger implements TransportLogger {
  readonly lines: LogLine[] = [];
  info(obj: object, msg: string): void {
    this.lines.push({ level: 'info', msg, obj: { ...obj } });
  }
  warn(obj: object, msg: string): void {
    this.lines.push({ level: 'warn', msg, obj: { ...obj } });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: 'error', msg, obj: { ...obj } });
  }
  find(msg: string): LogLine[] {
    return this.lines.filter((l) => l.msg === msg);
  }
}

const quiet = { error() {}, warn() {} };

export interface GrpcHarnessOptions {
  readonly ids?: readonly NodeId[];
  readonly clusterId?: string;
  readonly serverTls?: TlsOptions;
  readonly clientTls?: GrpcTransportTls;
  readonly transport?: Partial<Omit<GrpcTransportOptions, 'id' | 'clusterId' | 'peers' | 'tls' | 'logger'>>;
}

export class GrpcHarness implements TransportHarness {
  readonly ids: readonly NodeId[];
  readonly addresses = new Map<NodeId, string>();
  readonly servers = new Map<NodeId, GrpcServer>();
  readonly transports = new Map<NodeId, GrpcTransport>();
  readonly logs = new Map<NodeId, CapturingLogger>();
  readonly #opts: GrpcHarnessOptions;

  private constructor(opts: GrpcHarnessOptions) {
    this.ids = opts.ids ?? ['n1', 'n2', 'n3'];
    this.#opts = opts;
  }

  static async start(opts: GrpcHarnessOptions = {}): Promise<GrpcHarness> {
    const h = new GrpcHarness(opts);
    for (const id of h.ids) {
      const server = h.#server();
      const port = await server.listen('127.0.0.1', 0);
      h.servers.set(id, server);
      h.addresses.set(id, `127.0.0.1:${port}`);
    }
    for (const id of h.ids) h.#transport(id);
    return h;
  }

  #server(): GrpcServer {
    return createGrpcServer({
      ...PEER_SERVER_OPTIONS,
      health: false,
      reflection: false,
      log: quiet,
      ...(this.#opts.serverTls === undefined ? {} : { tls: this.#opts.serverTls }),
    });
  }

  /** Restarts `id` at the same port with other transport options (e.g. another secret). */
  async restartWith(id: NodeId, transport: GrpcHarnessOptions['transport']): Promise<GrpcTransport> {
    const server = this.#server();
    await server.listen('127.0.0.1', Number(this.addresses.get(id)!.split(':')[1]));
    this.servers.set(id, server);
    return this.#transport(id, transport);
  }

  #transport(id: NodeId, override?: GrpcHarnessOptions['transport']): GrpcTransport {
    const log = new CapturingLogger();
    this.logs.set(id, log);
    const t = new GrpcTransport({
      id,
      clusterId: this.#opts.clusterId ?? 'test-cluster',
      peers: new Map([...this.addresses].filter(([p]) => p !== id)),
      logger: log,
      backoffMinMs: 10,
      backoffMaxMs: 200,
      ...this.#opts.transport,
      ...override,
      ...(this.#opts.clientTls === undefined ? {} : { tls: this.#opts.clientTls }),
    });
    t.register(this.servers.get(id)!);
    this.transports.set(id, t);
    return t;
  }

  transport(id: NodeId): GrpcTransport {
    return this.transports.get(id)!;
  }

  async stop(id: NodeId): Promise<void> {
    await this.transports.get(id)?.close();
    await this.servers.get(id)?.close(200);
  }

  /** Restarts `id` at the same port, or (`newPort`) at a fresh one, updating `addresses`. */
  async restart(id: NodeId, newPort = false): Promise<GrpcTransport> {
    const server = this.#server();
    const port = newPort ? 0 : Number(this.addresses.get(id)!.split(':')[1]);
    this.addresses.set(id, `127.0.0.1:${await server.listen('127.0.0.1', port)}`);
    this.servers.set(id, server);
    return this.#transport(id);
  }

  async close(): Promise<void> {
    await Promise.all([...this.transports.values()].map((t) => t.close()));
    await Promise.all([...this.servers.values()].map((s) => s.close(200)));
  }
}
