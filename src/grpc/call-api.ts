// The contracts around a gRPC call: what a handler sees (ServerCall, ServerStreamCall) and how handlers are typed;
// and what a call needs from the server (ServerState, RegisteredMethod) and from its HTTP/2 stream (GrpcStream,
// the surface that node:http2's ServerHttp2Stream and the own engine's H2Stream share). Types only: the call
// itself is call.ts.
//
// Invariants: nothing here holds state or runs code; call.ts re-exports every name, so importers of call.ts see
// the same API as before the split.

import type { OutgoingHttpHeaders } from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import type { Deadlines } from './deadlines.ts';
import type { Metadata, OutgoingMetadata } from './metadata.ts';
import type { MethodDefinition } from './proto.ts';
import type { StallWatch } from './stalls.ts';

/** A live call as the server sees it (call.ts's Call): what a graceful shutdown that runs out of time needs. */
export interface LiveCall {
  abortForShutdown(): void;
}

/** What every handler can see and set about its call. */
export interface ServerCall {
  /** The wire path, e.g. `/raft.KeyValueService/Put`. */
  readonly path: string;
  /** Request metadata (built on first access). */
  readonly metadata: Metadata;
  /** Aborts when the client cancels, the deadline passes or shutdown forces the call to end. */
  readonly signal: AbortSignal;
  /** The deadline in `Date.now()` milliseconds, or undefined when the client sent none. */
  readonly deadline: number | undefined;
  /** True once the call was cancelled by the client, by its deadline or by shutdown. */
  readonly cancelled: boolean;
  /** The client's address as `host:port`. */
  readonly peer: string;
  /** The certificate the client presented over TLS (null without TLS or without one). */
  peerCertificate(): PeerCertificate | null;
  /** Adds response header metadata; only before the first response message. Throws TypeError on bad metadata. */
  setHeader(metadata: OutgoingMetadata): void;
  /** Adds trailing metadata, sent with the status. Throws TypeError on bad metadata. */
  setTrailer(metadata: OutgoingMetadata): void;
}

/**
 * A streaming call (client, server or bidirectional streaming). Requests are read with `for await`; responses
 * are sent with `write`. The call ends with OK when the handler's promise resolves (or when `end()` is called),
 * and with the error's status when it rejects. Reading after a cancel or deadline throws the GrpcError.
 */
export interface ServerStreamCall<Req = object, Res = object> extends ServerCall, AsyncIterable<Req> {
  /** Sends one response message; false when the stream buffer is full (wait for `drain()`) or the call is over. */
  write(message: Res): boolean;
  /** Resolves when the stream can take more writes, or the call is over. */
  drain(): Promise<void>;
  /** Sends the response headers now, without a message. */
  sendHeaders(): void;
  /** Ends the call with OK (or the given error). Needed only by handlers that do not return a promise. */
  end(error?: unknown): void;
}

/**
 * Handler of a unary method: returns (or resolves to) the response object, or throws (rejects) a GrpcError.
 * (Written as a method type so that handlers typed with concrete message interfaces are accepted.)
 */
export type UnaryHandler<Req = object, Res = object> = {
  bivarianceHack(request: Req, call: ServerCall): Res | Promise<Res>;
}['bivarianceHack'];
/** Handler of a streaming method. */
export type StreamHandler<Req = object, Res = object> = {
  bivarianceHack(call: ServerStreamCall<Req, Res>): void | Promise<void>;
}['bivarianceHack'];
export type Handler = UnaryHandler | StreamHandler;

/** Where log lines go (pino's signature). */
export interface GrpcLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Server-wide state that calls read and update. */
export interface ServerState {
  readonly maxSendMessageSize: number;
  /** Output a connection may hold that its client has not taken, before responses are refused. */
  readonly maxPendingResponseBytes: number;
  /** Request bytes the calls of one connection may hold before a call is refused (own engine). */
  readonly maxPendingRequestBytes: number;
  /** Calls whose client stopped reading (stalls.ts). */
  readonly stalls: StallWatch;
  readonly log: GrpcLogger;
  /** Live calls (accepted streams with a known method, until the stream closes). */
  calls: number;
  /** Calls waiting on a deadline, and the one timer that serves them. */
  readonly deadlines: Deadlines;
  /** Every live call, so shutdown can cancel the stragglers. */
  readonly live: Set<LiveCall>;
}

export interface RegisteredMethod {
  readonly def: MethodDefinition;
  readonly handler: Handler;
  readonly streaming: boolean;
  /** Largest request message accepted (its service's limit, else the server's). */
  readonly maxReceive: number;
}

/**
 * The stream surface a call uses. node:http2's ServerHttp2Stream has it, and so does h2/session.ts's H2Stream,
 * the server's own HTTP/2 engine.
 */
export interface GrpcStream {
  readonly destroyed: boolean;
  readonly headersSent: boolean;
  readonly writableNeedDrain: boolean;
  /** Bytes written but not yet sent (waiting for flow-control window). */
  readonly writableLength: number;
  readonly session:
    | {
        readonly socket: {
          readonly remoteAddress?: string | undefined;
          readonly remotePort?: number | undefined;
          /** TLS sockets only. */
          getPeerCertificate?(detailed?: boolean): PeerCertificate | object | null;
        };
        /** Output the connection holds that the client has not taken (own engine only). */
        readonly pendingOutput?: number;
        /** Request bytes this connection's calls hold (own engine only; the calls keep it). */
        heldRequestBytes?: number;
      }
    | undefined;
  respond(headers: OutgoingHttpHeaders, options?: { endStream?: boolean; waitForTrailers?: boolean }): void;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  sendTrailers(headers: OutgoingHttpHeaders): void;
  pause(): unknown;
  resume(): unknown;
  /** Resets the stream with an HTTP/2 error code. */
  close(code?: number): unknown;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
}
// biome-ignore lint/suspicious/noExplicitAny: EventEmitter's own listener type, so both stream classes fit
export type Listener = (...args: any[]) => void;
