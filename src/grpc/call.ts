// One gRPC call on one HTTP/2 stream: request deframing and decoding, the handler, the response, the status. (The
// types around it, what handlers see and what the call needs from the server and its stream, are call-api.ts.)
// One concept, a little over 700 lines: the Call class is one state machine (OPEN -> DONE -> CLOSED) whose input,
// handler, output and status transitions read each other's fields; cutting it would put one machine's states
// in two files.
//
// Invariants:
// - `state` only moves forward: OPEN (the handler may answer) -> DONE (a status is decided and being sent)
//   -> CLOSED (the stream is gone). Exactly one status is decided per call; anything the handler does after
//   that (a late response, a write, a throw) is ignored.
// - Headers are sent at most once, before any message; a call that ends before any header uses one
//   trailers-only response. Response headers are always sent with `waitForTrailers`, so every non-trailers-only
//   response ends with exactly one trailer block carrying grpc-status.
// - A call waits in the server's Deadlines (one shared timer, deadlines.ts) only while it is OPEN; it leaves
//   whenever the call leaves OPEN. `ServerState.calls` counts the live calls, `deadlines.size` those waiting.
// - The AbortSignal is created only when the handler reads it; it aborts when the client cancels (RST_STREAM or
//   a lost connection), when the deadline passes, or when a graceful shutdown runs out of time.
// - Cost bounds (docs/grpc-limits.md): a request message is limited by its method's service (`maxReceive`), and
//   compressed messages are refused UNIMPLEMENTED (no decompression). A streaming call's queue of decoded messages
//   waiting for the handler holds at most INPUT_HIGH_WATER_BYTES (or INPUT_HIGH_WATER messages) before the
//   stream is paused, which stops its flow-control window from being returned; so a stream's input is bounded
//   by that, one message and the stream window. A response is refused RESOURCE_EXHAUSTED when its connection
//   already holds `maxPendingResponseBytes` of output the client has not taken (own engine), and a call whose
//   client leaves its window shut for `stalls.limitMs` is cancelled (stalls.ts).
// - The hot path allocates the call and the decoded message (a request that arrives as exactly one whole frame
//   in one chunk is decoded from a view of that chunk; a Deframer is made only otherwise); listeners are shared functions that
//   find the call through the stream (no per-call closures, except for promise continuations of async handlers).

import type { OutgoingHttpHeaders } from 'node:http2';
import type { PeerCertificate } from 'node:tls';
import protobuf from 'protobufjs';
import type {
  GrpcStream,
  RegisteredMethod,
  ServerState,
  ServerStreamCall,
  StreamHandler,
  UnaryHandler,
} from './call-api.ts';
import { ACCEPT_ENCODING, Deframer, type FrameSink } from './framing.ts';
import type { IncomingHeaders } from './h2/session.ts';
import { addMetadataToHeaders, Metadata, type OutgoingMetadata, percentEncode } from './metadata.ts';
import type { Stallable } from './stalls.ts';
import { GrpcError, Status, type StatusCode } from './status.ts';

export type {
  GrpcLogger,
  GrpcStream,
  Handler,
  RegisteredMethod,
  ServerCall,
  ServerState,
  ServerStreamCall,
  StreamHandler,
  UnaryHandler,
} from './call-api.ts';

const OPEN = 0;
const DONE = 1;
const CLOSED = 2;

const kCall = Symbol('grpc.call');
type CallStream = GrpcStream & { [kCall]?: Call };

// Frozen: the own HTTP/2 engine encodes a frozen header object once and reuses the block.
const RESPONSE_HEADERS: OutgoingHttpHeaders = Object.freeze({
  ':status': 200,
  'content-type': 'application/grpc',
});
const OK_TRAILERS: OutgoingHttpHeaders = Object.freeze({ 'grpc-status': '0' });
// sendDate is node:http2's (it would add a date header); the own engine ignores it.
const RESPOND_WITH_TRAILERS = { waitForTrailers: true, sendDate: false };
const RESPOND_END = { endStream: true, sendDate: false };
const INPUT_HIGH_WATER = 256;
/**
 * Request bytes a streaming call may hold decoded but not yet read by its handler before the stream is paused.
 * While paused, the HTTP/2 engine holds what arrives and returns no stream window for it, so a handler that does
 * not read costs at most this plus one stream window (docs/http2-limits.md).
 */
const INPUT_HIGH_WATER_BYTES = 64 * 1024;
/** RST_STREAM code for a client that stopped reading; gRPC clients map it to RESOURCE_EXHAUSTED. */
const ENHANCE_YOUR_CALM = 0xb;
const INTERNAL_MESSAGE = 'Internal server error';

/** A trailers-only response with a status (used for calls that never got a Call object). */
export function respondStatus(
  stream: GrpcStream,
  code: StatusCode,
  message: string,
  extra?: OutgoingHttpHeaders,
): void {
  if (stream.destroyed || stream.headersSent) return;
  const h: OutgoingHttpHeaders = {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-status': String(code),
    'grpc-message': percentEncode(message),
    ...extra,
  };
  try {
    stream.respond(h, RESPOND_END);
  } catch {
    // the stream closed under us: nothing to tell
  }
}

// ---- shared stream listeners: `this` is the stream, the call hangs off it ----
function onData(this: CallStream, chunk: Buffer): void {
  const call = this[kCall]!;
  if (call.state !== OPEN || call.inputStopped) return;
  try {
    const d = call.deframer;
    if (d === null) {
      // Fast path: the chunk is exactly one whole frame (the usual unary request).
      const n = chunk.length;
      if (n >= 5 && chunk[0]! <= 1) {
        const len = chunk.readUInt32BE(1);
        if (len + 5 === n && len <= call.maxReceive) {
          if (!call.onMessage(chunk.subarray(5), chunk[0] === 1)) call.stopInput();
          else call.noteHeld();
          return;
        }
      }
      call.deframer = new Deframer(call.maxReceive);
      call.deframer.push(chunk, call);
    } else {
      d.push(chunk, call);
    }
    call.noteHeld();
  } catch (e) {
    call.failInternal(e);
  }
}
function onEnd(this: CallStream): void {
  this[kCall]!.onEndOfInput();
}
function onClose(this: CallStream): void {
  this[kCall]!.onClose();
}
function onWantTrailers(this: CallStream): void {
  this[kCall]!.sendTrailers();
}
function onStreamError(): void {
  // Stream errors (resets, session loss) end in 'close', which cancels the call.
}

interface Waiter {
  resolve(r: IteratorResult<object>): void;
  reject(e: unknown): void;
}

export class Call implements ServerStreamCall, FrameSink, Stallable {
  state = OPEN;
  readonly stream: CallStream;
  /** Made on the first chunk that is not exactly one whole frame. */
  deframer: Deframer | null = null;
  /** Set once input is no longer read (the status is decided, or the stream closed). */
  inputStopped = false;
  readonly path: string;
  readonly deadline: number | undefined;
  cancelled = false;
  readonly #server: ServerState;
  readonly #method: RegisteredMethod;
  readonly #headers: IncomingHeaders;
  #waitsDeadline = false;
  /** The deadline on the monotonic clock (Deadlines), or Infinity. */
  dueAt = Number.POSITIVE_INFINITY;
  #ac: AbortController | null = null;
  #cancelReason: GrpcError | null = null;
  #metadata: Metadata | null = null;
  #respHeaders: OutgoingHttpHeaders | null = null;
  #trailers: OutgoingHttpHeaders | null = null;
  #headersSent = false;
  #received = 0;
  /** Request bytes this call holds, as last counted on its connection (noteHeld). */
  #heldIn = 0;
  /** Bytes handed to the stream (response frames). */
  bytesOut = 0;
  stallWatched = false;
  stallSent = 0;
  stallSince = 0;
  // streaming input: a queue read by the async iterator
  #queue: (object | undefined)[] | null = null;
  #qHead = 0;
  /** Wire sizes of the queued requests (parallel to #queue), and their sum. */
  #qSizes: number[] = [];
  #qBytes = 0;
  #inputEnded = false;
  #inputError: GrpcError | null = null;
  #waiter: Waiter | null = null;
  #paused = false;

  constructor(
    stream: GrpcStream,
    headers: IncomingHeaders,
    method: RegisteredMethod,
    server: ServerState,
    timeoutMs: number | undefined,
  ) {
    this.stream = stream;
    this.#headers = headers;
    this.#method = method;
    this.#server = server;
    this.path = method.def.path;
    server.calls++;
    server.live.add(this);
    this.stream[kCall] = this;
    if (timeoutMs !== undefined) {
      this.deadline = Date.now() + timeoutMs;
      this.dueAt = performance.now() + timeoutMs;
      this.#waitsDeadline = true;
      server.deadlines.add(this, this.dueAt);
    } else {
      this.deadline = undefined;
    }
    stream.on('error', onStreamError);
    stream.on('close', onClose);
    stream.on('wantTrailers', onWantTrailers);
    stream.on('data', onData);
    stream.on('end', onEnd);
    if (method.streaming) this.#startStreaming();
  }

  get maxReceive(): number {
    return this.#method.maxReceive;
  }

  get unsentBytes(): number {
    return this.stream.writableLength;
  }

  get streamClosed(): boolean {
    return this.state === CLOSED || this.stream.destroyed;
  }

  /** After a write: a call whose bytes wait for the client's window is watched for a client that stopped reading. */
  #watchUnsent(): void {
    if (!this.stallWatched && this.stream.writableLength > 0) this.#server.stalls.watch(this);
  }

  abortStalled(ms: number): void {
    if (this.state === CLOSED) return;
    const err = new GrpcError(
      Status.RESOURCE_EXHAUSTED,
      `Client read none of the response for ${ms} ms (its flow-control window stayed shut); call cancelled`,
    );
    this.#server.log.warn({ path: this.path, peer: this.peer, unsent: this.unsentBytes }, err.message);
    if (this.state === OPEN) {
      this.state = DONE;
      this.#clearTimer();
      this.stopInput();
      this.#cancel(err);
      this.#failInput(err);
    }
    try {
      this.stream.close(ENHANCE_YOUR_CALM);
    } catch {
      // already gone
    }
  }

  stopInput(): void {
    this.inputStopped = true;
    this.deframer?.stop();
    if (this.#heldIn !== 0) {
      const sess = this.stream.session;
      if (sess?.heldRequestBytes !== undefined) sess.heldRequestBytes -= this.#heldIn;
      this.#heldIn = 0;
    }
  }

  /**
   * After input arrived or a handler took some: the request bytes this call holds (its partial message and its
   * queue) are counted on its connection (own engine), and a call that would take the connection beyond
   * `maxPendingRequestBytes` while other calls of it hold some is refused RESOURCE_EXHAUSTED.
   */
  noteHeld(): void {
    if (this.inputStopped) return;
    const d = this.deframer;
    const held = (d === null ? 0 : d.bufferedBytes) + this.#qBytes;
    const delta = held - this.#heldIn;
    if (delta === 0) return;
    const sess = this.stream.session;
    if (sess?.heldRequestBytes === undefined) return;
    this.#heldIn = held;
    const total = sess.heldRequestBytes + delta;
    sess.heldRequestBytes = total;
    const limit = this.#server.maxPendingRequestBytes;
    if (delta > 0 && total > limit && total > held) {
      this.finish(
        Status.RESOURCE_EXHAUSTED,
        `Request refused: the connection's calls already hold ${total - held} bytes of requests they have not finished reading (limit ${limit})`,
      ); // which stops the input and releases what it held
    }
  }

  // ---- ServerCall ----
  get metadata(): Metadata {
    this.#metadata ??= Metadata.fromHeaders(this.#headers);
    return this.#metadata;
  }
  get signal(): AbortSignal {
    if (this.#ac === null) {
      this.#ac = new AbortController();
      if (this.#cancelReason !== null) this.#ac.abort(this.#cancelReason);
    }
    return this.#ac.signal;
  }
  get peer(): string {
    const s = this.stream.session?.socket;
    return s === undefined ? 'unknown' : `${s.remoteAddress}:${s.remotePort}`;
  }
  peerCertificate(): PeerCertificate | null {
    const s = this.stream.session?.socket;
    if (s === undefined || typeof s.getPeerCertificate !== 'function') return null;
    const c = s.getPeerCertificate(false);
    // node gives {} when the client sent no certificate
    return c !== null && 'subject' in c ? (c as PeerCertificate) : null;
  }
  setHeader(metadata: OutgoingMetadata): void {
    if (this.#headersSent) throw new Error('response headers already sent');
    this.#respHeaders ??= { ...RESPONSE_HEADERS };
    addMetadataToHeaders(this.#respHeaders, metadata);
  }
  setTrailer(metadata: OutgoingMetadata): void {
    this.#trailers ??= {};
    addMetadataToHeaders(this.#trailers, metadata);
  }

  // ---- FrameSink ----
  onMessage(message: Buffer, compressed: boolean): boolean {
    if (this.state !== OPEN) return false;
    if (compressed) {
      const rawEnc = this.#headers['grpc-encoding'];
      const enc = Array.isArray(rawEnc) ? rawEnc[0] : rawEnc;
      if (enc === undefined || enc === 'identity') {
        this.finish(Status.INTERNAL, 'Compressed flag set on a message without grpc-encoding');
        return false;
      }
      // No decompression (framing.ts): say so, and which encodings are accepted, as PROTOCOL-HTTP2.md asks. In
      // response headers rather than a trailers-only answer: grpc-js learns it from headers only, and then stops
      // compressing on that channel.
      if (!this.#headersSent) {
        this.#respHeaders ??= { ...RESPONSE_HEADERS };
        this.#respHeaders['grpc-accept-encoding'] = ACCEPT_ENCODING;
        this.sendHeaders();
      }
      this.finish(
        Status.UNIMPLEMENTED,
        `Message compressed with unsupported grpc-encoding "${enc}" (this server accepts ${ACCEPT_ENCODING} only)`,
      );
      return false;
    }
    let request: object;
    try {
      request = this.#method.def.requestType.decode(message);
    } catch {
      this.finish(Status.INTERNAL, 'Failed to parse request message');
      return false;
    }
    this.#received++;
    if (this.#method.streaming) {
      if (!this.#method.def.requestStream && this.#received > 1) {
        this.finish(Status.INTERNAL, 'More than one request message for a server-streaming method');
        return false;
      }
      this.#enqueue(request, message.length);
      return true;
    }
    if (this.#received > 1) {
      this.finish(Status.INTERNAL, 'More than one request message for a unary method');
      return false;
    }
    this.#runUnary(request);
    return this.state === OPEN;
  }

  onFrameError(tooLarge: boolean, length: number): void {
    if (tooLarge) {
      this.finish(
        Status.RESOURCE_EXHAUSTED,
        `Received message larger than max (${length} vs. ${this.#method.maxReceive})`,
      );
    } else {
      this.finish(Status.INTERNAL, 'Malformed gRPC frame: bad compressed-flag byte');
    }
  }

  // ---- unary ----
  #runUnary(request: object): void {
    let res: unknown;
    try {
      res = (this.#method.handler as UnaryHandler)(request, this);
    } catch (e) {
      this.fail(e);
      return;
    }
    if (isThenable(res)) {
      res.then(
        (v) => this.respondUnary(v),
        (e) => this.fail(e),
      );
    } else {
      this.respondUnary(res);
    }
  }

  respondUnary(response: unknown): void {
    if (this.state !== OPEN) return;
    const frame = this.#encode(response);
    if (frame === null) return;
    this.state = DONE;
    this.#clearTimer();
    if (this.stream.destroyed) return;
    try {
      this.stream.respond(this.#respHeaders ?? RESPONSE_HEADERS, RESPOND_WITH_TRAILERS);
      this.#headersSent = true;
      this.stream.end(frame);
      this.bytesOut = frame.length;
      this.#watchUnsent();
    } catch (e) {
      this.#server.log.warn({ err: e, path: this.path }, 'grpc: could not send response');
    }
  }

  /**
   * Encodes and frames a response, or ends the call with the right status and returns null. The message is
   * encoded after 5 placeholder bytes that become the gRPC prefix, so the frame is one buffer (no second copy),
   * and the limits are checked on the writer's length before that buffer is allocated.
   */
  #encode(response: unknown): Buffer | null {
    let out: Uint8Array;
    let len: number;
    try {
      if (response === null || typeof response !== 'object')
        throw new TypeError('handler returned a non-object');
      const w = protobuf.Writer.create().uint32(0).fixed32(0);
      this.#method.def.responseType.encode(response, w);
      len = w.len - 5;
      if (len > this.#server.maxSendMessageSize) {
        this.finish(
          Status.RESOURCE_EXHAUSTED,
          `Sent message larger than max (${len} vs. ${this.#server.maxSendMessageSize})`,
        );
        return null;
      }
      const held = this.stream.session?.pendingOutput;
      if (held !== undefined && held > 0 && held + len + 5 > this.#server.maxPendingResponseBytes) {
        this.finish(
          Status.RESOURCE_EXHAUSTED,
          `Response of ${len} bytes refused: the connection already holds ${held} bytes its client has not read (limit ${this.#server.maxPendingResponseBytes})`,
        );
        return null;
      }
      out = w.finish();
    } catch (e) {
      this.#server.log.error({ err: e, path: this.path }, 'grpc: failed to encode response');
      this.finish(Status.INTERNAL, INTERNAL_MESSAGE);
      return null;
    }
    const frame = Buffer.isBuffer(out) ? out : Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    frame[0] = 0;
    frame.writeUInt32BE(len, 1);
    return frame;
  }

  // ---- ending ----
  /** Ends the call with a handler's error: a GrpcError's status, or INTERNAL (logged) for anything else. */
  fail(e: unknown): void {
    if (e instanceof GrpcError) {
      this.finish(e.code, e.message, e.details, undefined, e.metadata);
      return;
    }
    if (this.state !== OPEN) return; // e.g. the handler noticed the abort and threw: the status is already out
    this.#server.log.error({ err: e, path: this.path }, 'grpc: handler failed');
    this.finish(Status.INTERNAL, INTERNAL_MESSAGE);
  }

  /** An exception in this layer's own code: INTERNAL, logged, never a crash. */
  failInternal(e: unknown): void {
    this.#server.log.error({ err: e, path: this.path }, 'grpc: internal error');
    this.finish(Status.INTERNAL, INTERNAL_MESSAGE);
  }

  /** Decides the call's status and sends it (trailers-only when no headers went out yet). */
  finish(
    code: StatusCode,
    message: string,
    details?: Uint8Array,
    extra?: OutgoingHttpHeaders,
    metadata?: OutgoingMetadata,
  ): void {
    if (this.state !== OPEN) return;
    this.state = DONE;
    this.#clearTimer();
    this.stopInput();
    this.#failInput(code === Status.OK ? null : new GrpcError(code, message));
    const stream = this.stream;
    if (stream.destroyed) return;
    const t: OutgoingHttpHeaders = this.#trailers ?? {};
    if (metadata !== undefined) {
      try {
        addMetadataToHeaders(t, metadata);
      } catch (e) {
        this.#server.log.warn({ err: e, path: this.path }, 'grpc: dropped bad trailing metadata');
      }
    }
    t['grpc-status'] = String(code);
    if (message !== '') t['grpc-message'] = percentEncode(message);
    if (details !== undefined) {
      t['grpc-status-details-bin'] = Buffer.from(details.buffer, details.byteOffset, details.byteLength)
        .toString('base64')
        .replace(/=+$/, '');
    }
    if (extra !== undefined) Object.assign(t, extra);
    try {
      if (!this.#headersSent) {
        this.#headersSent = true;
        const h: OutgoingHttpHeaders = { ...(this.#respHeaders ?? RESPONSE_HEADERS), ...t };
        stream.respond(h, RESPOND_END);
        // The client may still be sending; drain it so flow control never stalls the connection.
        stream.resume();
      } else {
        this.#trailers = t;
        stream.end();
      }
    } catch (e) {
      this.#server.log.warn({ err: e, path: this.path }, 'grpc: could not send status');
    }
  }

  sendTrailers(): void {
    try {
      const t = this.#trailers;
      if (t === null) {
        this.stream.sendTrailers(OK_TRAILERS);
      } else {
        if (t['grpc-status'] === undefined) t['grpc-status'] = '0';
        this.stream.sendTrailers(t);
      }
    } catch {
      // stream already gone
    }
  }

  /** The deadline passed (called by Deadlines, which has already let go of the call). */
  expire(): void {
    this.#waitsDeadline = false;
    if (this.state !== OPEN) return;
    const err = new GrpcError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
    this.#cancel(err);
    this.finish(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
  }

  /** Shutdown ran out of time: cancel the call with UNAVAILABLE. */
  abortForShutdown(): void {
    if (this.state !== OPEN) return;
    this.#cancel(new GrpcError(Status.UNAVAILABLE, 'Server shutting down'));
    this.finish(Status.UNAVAILABLE, 'Server shutting down');
  }

  onEndOfInput(): void {
    if (this.state !== OPEN) return;
    if (this.deframer?.partial === true) {
      this.finish(Status.INTERNAL, 'Request ended in the middle of a message');
      return;
    }
    if (this.#method.streaming) {
      if (!this.#method.def.requestStream && this.#received === 0) {
        this.finish(Status.INTERNAL, 'No request message for a server-streaming method');
        return;
      }
      this.#inputEnded = true;
      const w = this.#waiter;
      if (w !== null) {
        this.#waiter = null;
        w.resolve({ value: undefined, done: true });
      }
      return;
    }
    if (this.#received === 0) this.finish(Status.INTERNAL, 'No request message for a unary method');
  }

  onClose(): void {
    if (this.state === CLOSED) return;
    const wasOpen = this.state === OPEN;
    this.state = CLOSED;
    this.#clearTimer();
    this.stopInput();
    if (this.stallWatched) this.#server.stalls.delete(this);
    this.#server.calls--;
    this.#server.live.delete(this);
    if (wasOpen) {
      const err = new GrpcError(Status.CANCELLED, 'Call cancelled');
      this.#cancel(err);
      this.#failInput(err);
    }
  }

  #cancel(reason: GrpcError): void {
    this.cancelled = true;
    this.#cancelReason = reason;
    this.#ac?.abort(reason);
  }

  #clearTimer(): void {
    if (this.#waitsDeadline) {
      this.#waitsDeadline = false;
      this.#server.deadlines.delete(this);
    }
  }

  // ---- streaming ----
  #startStreaming(): void {
    this.#queue = [];
    let p: unknown;
    try {
      p = (this.#method.handler as StreamHandler)(this);
    } catch (e) {
      this.fail(e);
      return;
    }
    if (isThenable(p)) {
      p.then(
        () => this.end(),
        (e) => this.fail(e),
      );
    }
  }

  #enqueue(msg: object, bytes: number): void {
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w.resolve({ value: msg, done: false });
      return;
    }
    const q = this.#queue!;
    q.push(msg);
    this.#qSizes.push(bytes);
    this.#qBytes += bytes;
    if (
      (q.length - this.#qHead >= INPUT_HIGH_WATER || this.#qBytes >= INPUT_HIGH_WATER_BYTES) &&
      !this.#paused
    ) {
      this.#paused = true;
      this.stream.pause();
    }
  }

  #failInput(err: GrpcError | null): void {
    if (err !== null && this.#inputError === null) this.#inputError = err;
    this.#inputEnded = true;
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      if (err !== null) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
    if (this.#paused) {
      this.#paused = false;
      this.stream.resume();
    }
  }

  #next(): Promise<IteratorResult<object>> {
    const q = this.#queue;
    if (q !== null && this.#qHead < q.length) {
      const v = q[this.#qHead]!;
      this.#qBytes -= this.#qSizes[this.#qHead]!;
      q[this.#qHead++] = undefined;
      if (this.#heldIn !== 0) this.noteHeld();
      if (this.#qHead === q.length) {
        q.length = 0;
        this.#qSizes.length = 0;
        this.#qHead = 0;
      }
      if (
        this.#paused &&
        q.length - this.#qHead < INPUT_HIGH_WATER / 2 &&
        this.#qBytes < INPUT_HIGH_WATER_BYTES / 2
      ) {
        this.#paused = false;
        this.stream.resume();
      }
      return Promise.resolve({ value: v, done: false });
    }
    if (this.#inputError !== null) return Promise.reject(this.#inputError);
    if (this.#inputEnded) return Promise.resolve({ value: undefined, done: true });
    if (this.#waiter !== null) return Promise.reject(new Error('concurrent reads of one call'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<object> {
    return {
      next: () => this.#next(),
      return: (): Promise<IteratorResult<object>> => Promise.resolve({ value: undefined, done: true }),
    };
  }

  sendHeaders(): void {
    if (this.#headersSent || this.state !== OPEN || this.stream.destroyed) return;
    this.#headersSent = true;
    this.stream.respond(this.#respHeaders ?? RESPONSE_HEADERS, RESPOND_WITH_TRAILERS);
  }

  write(message: object): boolean {
    if (this.state !== OPEN || this.stream.destroyed) return false;
    const frame = this.#encode(message);
    if (frame === null) return false;
    if (!this.#headersSent) this.sendHeaders();
    const ok = this.stream.write(frame);
    this.bytesOut += frame.length;
    this.#watchUnsent();
    return ok;
  }

  drain(): Promise<void> {
    const s = this.stream;
    if (this.state !== OPEN || s.destroyed || !s.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        s.off('drain', done);
        s.off('close', done);
        resolve();
      };
      s.on('drain', done);
      s.on('close', done);
    });
  }

  end(error?: unknown): void {
    if (error !== undefined) this.fail(error);
    else this.finish(Status.OK, '');
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}
