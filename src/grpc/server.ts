// The gRPC server: HTTP/2 sessions (h2c, or TLS with optional client certificates), routing of streams to
// methods, limits and graceful shutdown. Health and reflection are ordinary services added here.
//
// Invariants:
// - Every accepted stream gets exactly one answer: HTTP 405/415 for non-gRPC requests, a trailers-only
//   UNIMPLEMENTED for unknown methods, otherwise a Call that ends with one status (see call.ts).
// - Nothing a client sends can throw out of a listener: malformed traffic ends that stream (or that session),
//   never the process, and other calls keep being served.
// - `stats()` counts live sessions, calls and deadline timers; all three return to zero once clients are gone
//   and calls are over.
// - close(graceMs): stop accepting connections, send GOAWAY on every session, let in-flight calls finish; when
//   graceMs passes, cancel what is left (UNAVAILABLE) and destroy the sessions. Resolves when everything is closed.
// - Flow-control windows default to 1 MiB per stream and 16 MiB per connection.
// - What one client can cost is bounded (docs/grpc-limits.md): request messages per service
//   (`maxReceiveMessageSize`, or the service's own limit given to addService), output a connection holds that
//   its client has not read (`maxPendingResponseBytes`), how long a call may wait on a client that does not read
//   (`sendStallTimeoutMs`), and concurrent connections (`maxConnections`: beyond it a new connection is closed at
//   once). Accept errors (EMFILE, ENFILE...) are logged (at most one line a second) and the server keeps
//   listening: they never reach the process as an unhandled 'error'.
// - HTTP/2 is served by this layer's own connection code (h2/session.ts) unless `http2Engine: 'node'` picks
//   node:http2; both present the same stream surface to call.ts, so calls behave the same on either.

import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import * as net from 'node:net';
import * as tls from 'node:tls';
import {
  Call,
  type GrpcLogger,
  type GrpcStream,
  type Handler,
  type RegisteredMethod,
  respondStatus,
  type ServerState,
} from './call.ts';
import { Deadlines } from './deadlines.ts';
import { parseTimeout } from './framing.ts';
import { H2Session, type IncomingHeaders } from './h2/session.ts';
import { addHealthService, type HealthService } from './health.ts';
import type { ServiceDefinition } from './proto.ts';
import { addReflectionServices } from './reflection.ts';
import type { ServiceOptions, ServiceRegistry } from './registry.ts';
import { StallWatch } from './stalls.ts';
import { Status } from './status.ts';

export interface TlsOptions {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** With a CA, clients must present a certificate signed by it (mutual TLS). */
  readonly ca?: string | Buffer;
}

export interface GrpcServerOptions {
  /**
   * Largest request message accepted, in bytes (default 4 MiB), for services added without a limit of their own
   * (see {@link ServiceOptions}). Larger ones end the call RESOURCE_EXHAUSTED before their body is buffered.
   */
  readonly maxReceiveMessageSize?: number;
  /**
   * Output one connection may hold that its client has not read (DATA waiting for flow-control window, and the
   * socket's buffer), in bytes (default 16 MiB). A response that would go beyond it, while the connection holds
   * anything, ends its call RESOURCE_EXHAUSTED instead of being queued. Own engine only.
   */
  readonly maxPendingResponseBytes?: number;
  /**
   * Request bytes the calls of one connection may hold (messages partly received, and decoded requests waiting
   * for a streaming handler), in bytes (default 8 MiB). A call whose input would take its connection beyond it,
   * while other calls of the connection hold some, ends RESOURCE_EXHAUSTED. Own engine only.
   */
  readonly maxPendingRequestBytes?: number;
  /**
   * A call whose client takes none of its response (flow-control window shut) for this long is cancelled: the
   * handler's signal aborts with RESOURCE_EXHAUSTED and the stream is reset with ENHANCE_YOUR_CALM (default
   * 30 s; 0 disables). This applies with or without a grpc-timeout.
   */
  readonly sendStallTimeoutMs?: number;
  /** Concurrent connections accepted (default 4096); a connection beyond it is closed as soon as it is accepted. */
  readonly maxConnections?: number;
  /** Largest response message sent, in bytes (default 2^31-1). Larger ones end the call RESOURCE_EXHAUSTED. */
  readonly maxSendMessageSize?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 1000). */
  readonly maxConcurrentStreams?: number;
  /** Per-stream flow-control window, bytes (default 1 MiB). */
  readonly streamWindowSize?: number;
  /** Per-connection flow-control window, bytes (default 16 MiB). */
  readonly connectionWindowSize?: number;
  /** Node's per-session memory cap in MB (default 64; must exceed the connection window). node engine only. */
  readonly maxSessionMemory?: number;
  /** Largest request header list accepted, in bytes (default 64 KiB). */
  readonly maxHeaderListSize?: number;
  /**
   * Which HTTP/2 implementation serves the connections: 'own' (default), this layer's, which costs less CPU per
   * call and allocates nothing that outlives a call; or 'node', node:http2.
   */
  readonly http2Engine?: 'own' | 'node';
  /**
   * Every this many ms the server pings each connection (default 60 s; 0 disables). A connection that does not
   * answer within `keepaliveTimeoutMs` (default 20 s) is destroyed and its calls cancelled. This also reaps
   * connections Node's HTTP/2 stack has stopped reading (e.g. after it refused a rapid-reset burst).
   */
  readonly keepaliveTimeMs?: number;
  readonly keepaliveTimeoutMs?: number;
  /**
   * A connection whose socket holds more output than its high-water mark and does not drain for this long (its
   * client stopped reading at the TCP level) is destroyed, its calls cancelled, and counted in
   * `server.writeStalls` (default 20 s; 0 disables). Own engine only.
   */
  readonly writeStallTimeoutMs?: number;
  /** Extra HTTP/2 settings, applied over the ones above (node engine only). */
  readonly http2Settings?: http2.Settings;
  /** Serve TLS (h2 with ALPN) instead of h2c. */
  readonly tls?: TlsOptions;
  /** Serve grpc.reflection.v1 and v1alpha (default true). */
  readonly reflection?: boolean;
  /** Serve grpc.health.v1.Health (default true). */
  readonly health?: boolean;
  readonly log?: GrpcLogger;
}

export interface GrpcServerStats {
  readonly sessions: number;
  readonly calls: number;
  /** Calls waiting on a deadline. */
  readonly timers: number;
}

export interface GrpcServer extends ServiceRegistry {
  /** Starts listening; resolves to the bound port (pass port 0 for a free one). */
  listen(host?: string, port?: number): Promise<number>;
  /** Graceful shutdown (see the invariants above). */
  close(graceMs?: number): Promise<void>;
  /** Health statuses, per service and overall (""); undefined when health is disabled. */
  readonly health: HealthService | undefined;
  stats(): GrpcServerStats;
  /** Connections destroyed because their socket did not drain for `writeStallTimeoutMs` (own engine). */
  readonly writeStalls: number;
}

const defaultLog: GrpcLogger = {
  error(obj, msg) {
    process.stderr.write(`${JSON.stringify({ level: 'error', msg, ...serializable(obj) })}\n`);
  },
  warn(obj, msg) {
    process.stderr.write(`${JSON.stringify({ level: 'warn', msg, ...serializable(obj) })}\n`);
  },
};
/** A logger whose failures are swallowed: logging must never turn into a crash. */
function guarded(log: GrpcLogger): GrpcLogger {
  return {
    error(obj, msg) {
      try {
        log.error(obj, msg);
      } catch {
        // nothing sensible left to do
      }
    },
    warn(obj, msg) {
      try {
        log.warn(obj, msg);
      } catch {
        // nothing sensible left to do
      }
    },
  };
}

function serializable(obj: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    out[k] = v instanceof Error ? { name: v.name, message: v.message, stack: v.stack } : v;
  }
  return out;
}

const NOT_GRPC_HEADERS = { ':status': 415, 'content-type': 'text/plain' } as const;

class Server implements GrpcServer {
  readonly #state: ServerState;
  readonly #maxReceive: number;
  #acceptErrorLoggedAt = Number.NEGATIVE_INFINITY;
  /** Set while listen() waits: an error then is the listen's own (EADDRINUSE...), not an accept error. */
  #listenReject: ((e: Error) => void) | null = null;
  readonly #methods = new Map<string, RegisteredMethod>();
  readonly #services: ServiceDefinition[] = [];
  readonly #sessions = new Set<SessionLike>();
  readonly #http: http2.Http2Server | http2.Http2SecureServer | net.Server;
  readonly #connectionWindow: number;
  readonly #keepaliveTimeMs: number;
  readonly #keepaliveTimeoutMs: number;
  readonly health: HealthService | undefined;
  #closing: Promise<void> | null = null;
  #writeStalls = 0;

  constructor(options: GrpcServerOptions) {
    this.#maxReceive = checkLimit(options.maxReceiveMessageSize ?? 4 * 1024 * 1024, 'maxReceiveMessageSize');
    const maxConnections = checkLimit(options.maxConnections ?? 4096, 'maxConnections');
    this.#state = {
      maxSendMessageSize: options.maxSendMessageSize ?? 2 ** 31 - 1,
      maxPendingResponseBytes: checkLimit(
        options.maxPendingResponseBytes ?? 16 * 1024 * 1024,
        'maxPendingResponseBytes',
      ),
      maxPendingRequestBytes: checkLimit(
        options.maxPendingRequestBytes ?? 8 * 1024 * 1024,
        'maxPendingRequestBytes',
      ),
      stalls: new StallWatch(
        options.sendStallTimeoutMs === 0
          ? 0
          : checkLimit(options.sendStallTimeoutMs ?? 30_000, 'sendStallTimeoutMs'),
      ),
      log: options.log === undefined ? defaultLog : guarded(options.log),
      calls: 0,
      deadlines: new Deadlines(),
      live: new Set(),
    };
    this.#connectionWindow = options.connectionWindowSize ?? 16 * 1024 * 1024;
    this.#keepaliveTimeMs = options.keepaliveTimeMs ?? 60_000;
    this.#keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 20_000;
    const settings: http2.Settings = {
      initialWindowSize: options.streamWindowSize ?? 1024 * 1024,
      maxConcurrentStreams: options.maxConcurrentStreams ?? 1000,
      ...options.http2Settings,
    };
    const maxSessionMemory = options.maxSessionMemory ?? 64;
    if (options.http2Engine !== 'node') {
      const sessionOptions = {
        maxConcurrentStreams: settings.maxConcurrentStreams ?? 1000,
        streamWindow: settings.initialWindowSize ?? 1024 * 1024,
        connectionWindow: this.#connectionWindow,
        maxHeaderListSize: options.maxHeaderListSize ?? 64 * 1024,
        writeStallTimeoutMs:
          options.writeStallTimeoutMs === 0
            ? 0
            : checkLimit(options.writeStallTimeoutMs ?? 20_000, 'writeStallTimeoutMs'),
        onStream: (stream: GrpcStream, headers: IncomingHeaders) => this.#onStream(stream, headers),
      };
      const accept = (socket: Socket): void => {
        socket.setNoDelay(true);
        this.#onSession(new H2Session(socket, sessionOptions));
      };
      if (options.tls !== undefined) {
        const { key, cert, ca } = options.tls;
        this.#http = tls.createServer(
          {
            key,
            cert,
            ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
            ALPNProtocols: ['h2'],
          },
          (socket: tls.TLSSocket) => {
            if (socket.alpnProtocol !== 'h2') {
              socket.destroy();
              return;
            }
            accept(socket);
          },
        );
        this.#http.on('tlsClientError', () => {
          // a failed handshake (e.g. no client certificate) concerns only that client
        });
      } else {
        this.#http = net.createServer(accept);
      }
    } else if (options.tls !== undefined) {
      const { key, cert, ca } = options.tls;
      this.#http = http2.createSecureServer({
        key,
        cert,
        ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
        allowHTTP1: false,
        settings,
        maxSessionMemory,
      });
      this.#http.on('tlsClientError', () => {
        // a failed handshake (e.g. no client certificate) concerns only that client
      });
    } else {
      this.#http = http2.createServer({ settings, maxSessionMemory });
    }
    if (options.http2Engine === 'node') {
      const h = this.#http as http2.Http2Server;
      // Small gRPC frames must not wait for Nagle's algorithm (40 ms stalls with delayed ACKs).
      h.on('connection', (socket: Socket) => socket.setNoDelay(true));
      h.on('session', (s: http2.ServerHttp2Session) => {
        this.#onSession(s);
        try {
          s.setLocalWindowSize(this.#connectionWindow);
        } catch {
          // the session died during setup
        }
      });
      h.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) =>
        this.#onStream(stream, headers),
      );
      h.on('sessionError', () => {
        // the session is destroyed and its streams closed; nothing else to do
      });
    }
    this.#http.maxConnections = maxConnections;
    // After listen(), errors are accept errors (EMFILE when out of descriptors, ...): the server keeps listening.
    this.#http.on('error', (e: Error) => this.#onAcceptError(e));
    this.health = options.health === false ? undefined : addHealthService(this);
    if (options.reflection !== false) addReflectionServices(this);
  }

  get services(): readonly ServiceDefinition[] {
    return this.#services;
  }

  addService(
    service: ServiceDefinition,
    handlers: Readonly<Record<string, Handler>>,
    options: ServiceOptions = {},
  ): void {
    const maxReceive =
      options.maxReceiveMessageSize === undefined
        ? this.#maxReceive
        : checkLimit(options.maxReceiveMessageSize, `maxReceiveMessageSize of ${service.fullName}`);
    const names = new Set(service.methods.map((m) => m.name));
    for (const k of Object.keys(handlers)) {
      if (!names.has(k)) throw new Error(`service ${service.fullName} has no method ${k}`);
    }
    if (this.#services.some((s) => s.fullName === service.fullName)) {
      throw new Error(`service ${service.fullName} added twice`);
    }
    for (const m of service.methods) {
      const handler = handlers[m.name];
      if (handler === undefined) continue;
      this.#methods.set(m.path, {
        def: m,
        handler,
        streaming: m.requestStream || m.responseStream,
        maxReceive,
      });
    }
    this.#services.push(service);
    this.health?.setStatus(service.fullName, 'SERVING');
  }

  listen(host = '127.0.0.1', port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#listenReject = reject;
      this.#http.listen(port, host, () => {
        this.#listenReject = null;
        resolve((this.#http.address() as AddressInfo).port);
      });
    });
  }

  #onAcceptError(e: Error): void {
    const reject = this.#listenReject;
    if (reject !== null) {
      this.#listenReject = null;
      reject(e);
      return;
    }
    const now = performance.now();
    if (now - this.#acceptErrorLoggedAt < 1000) return;
    this.#acceptErrorLoggedAt = now;
    this.#state.log.warn(
      { err: e, code: (e as NodeJS.ErrnoException).code, connections: this.#sessions.size },
      'grpc: could not accept a connection; still listening',
    );
  }

  stats(): GrpcServerStats {
    return { sessions: this.#sessions.size, calls: this.#state.calls, timers: this.#state.deadlines.size };
  }

  get writeStalls(): number {
    return this.#writeStalls;
  }

  #onSession(session: SessionLike): void {
    this.#sessions.add(session);
    session.on('error', () => {
      // followed by 'close'
    });
    session.on('writeStall', (ms: number, bytes: number) => {
      this.#writeStalls++;
      this.#state.log.warn(
        { timeoutMs: ms, unsentBytes: bytes, writeStalls: this.#writeStalls },
        'grpc: dropped a connection whose client stopped reading (its socket did not drain)',
      );
    });
    let keepalive: NodeJS.Timeout | null = null;
    let pingTimeout: NodeJS.Timeout | null = null;
    session.on('close', () => {
      this.#sessions.delete(session);
      if (keepalive !== null) clearInterval(keepalive);
      if (pingTimeout !== null) clearTimeout(pingTimeout);
    });
    if (this.#keepaliveTimeMs > 0) {
      const timeoutMs = this.#keepaliveTimeoutMs;
      keepalive = setInterval(() => {
        if (pingTimeout !== null || session.destroyed) return;
        pingTimeout = setTimeout(() => session.destroy(), timeoutMs);
        pingTimeout.unref();
        try {
          session.ping((err) => {
            if (err !== null) return; // the session is going away; 'close' clears the timers
            if (pingTimeout !== null) clearTimeout(pingTimeout);
            pingTimeout = null;
          });
        } catch {
          session.destroy();
        }
      }, this.#keepaliveTimeMs);
      keepalive.unref();
    }
    if (this.#closing !== null) session.close();
  }

  #onStream(stream: GrpcStream, headers: IncomingHeaders): void {
    try {
      const ct = headers['content-type'];
      if (headers[':method'] !== 'POST') {
        stream.on('error', noop);
        stream.respond({ ':status': 405 }, { endStream: true });
        stream.resume();
        return;
      }
      if (typeof ct !== 'string' || !ct.startsWith('application/grpc')) {
        stream.on('error', noop);
        stream.respond(NOT_GRPC_HEADERS);
        stream.end('unsupported content-type: gRPC needs application/grpc\n');
        stream.resume();
        return;
      }
      const rawPath = headers[':path'];
      const path = typeof rawPath === 'string' ? rawPath : '';
      const method = this.#methods.get(path);
      if (method === undefined) {
        stream.on('error', noop);
        respondStatus(stream, Status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
        stream.resume();
        return;
      }
      const t = headers['grpc-timeout'];
      const timeoutMs = typeof t === 'string' ? parseTimeout(t) : undefined;
      new Call(stream, headers, method, this.#state, timeoutMs);
    } catch (e) {
      this.#state.log.error({ err: e }, 'grpc: failed to accept a stream');
      stream.on('error', noop);
      respondStatus(stream, Status.INTERNAL, 'Internal server error');
    }
  }

  close(graceMs = 5000): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    this.health?.shutdown();
    this.#closing = new Promise<void>((resolve) => {
      let serverClosed = false;
      let forced: NodeJS.Timeout | null = null;
      const check = (): void => {
        if (!serverClosed || this.#sessions.size > 0) return;
        if (forced !== null) clearTimeout(forced);
        this.#state.deadlines.stop();
        this.#state.stalls.stop();
        resolve();
      };
      this.#http.close(() => {
        serverClosed = true;
        check();
      });
      for (const s of this.#sessions) {
        s.once('close', check);
        s.close();
      }
      forced = setTimeout(() => {
        forced = null;
        for (const c of [...this.#state.live]) c.abortForShutdown();
        // Give the statuses a moment to reach the wire, then drop the connections.
        setImmediate(() => {
          for (const s of this.#sessions) s.destroy();
        });
      }, graceMs);
      forced.unref();
      if (this.#sessions.size === 0 && !this.#http.listening) {
        serverClosed = true;
        check();
      }
    });
    return this.#closing;
  }
}

function noop(): void {}

function checkLimit(v: number, what: string): number {
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new RangeError(`${what} must be a positive integer, got ${v}`);
  return v;
}

/** What the server needs of a connection, from either engine. */
interface SessionLike {
  readonly destroyed: boolean;
  on(event: 'close' | 'error', listener: () => void): unknown;
  on(event: 'writeStall', listener: (ms: number, bytes: number) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
  ping(cb: (err: Error | null) => void): boolean;
  close(): void;
  destroy(): void;
}

/** Creates a gRPC server; add services, then `listen()`. */
export function createGrpcServer(options: GrpcServerOptions = {}): GrpcServer {
  return new Server(options);
}
