// Shared fixtures for the gRPC layer tests: the Echo test service, a server on a free 127.0.0.1 port, and
// @grpc/grpc-js clients built independently (proto-loader) from the same .proto file.

import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  createGrpcServer,
  GrpcError,
  type GrpcLogger,
  type GrpcServer,
  type GrpcServerOptions,
  loadProtoFiles,
  type ServerCall,
  type ServerStreamCall,
  type ServiceDefinition,
  type StatusCode,
  serviceDefinition,
} from '../../src/grpc/index.ts';
import { waitFor as waitUntil } from '../support/wait.ts';

export const ECHO_PROTO = fileURLToPath(new URL('./fixtures/echo.proto', import.meta.url));
export const KVBENCH_PROTO = fileURLToPath(new URL('./fixtures/kvbench.proto', import.meta.url));

export interface EchoRequest {
  text?: string;
  payload?: Uint8Array;
  reply_size?: number;
  fail_code?: number;
  fail_message?: string;
  fail_details?: Uint8Array;
  throw_plain?: boolean;
  delay_ms?: number;
  count?: number;
}
export interface EchoReply {
  text?: string;
  payload?: Uint8Array;
  metadata?: string[];
  seq?: number;
  received?: number;
}

let echoDef: ServiceDefinition | null = null;
export function echoService(): ServiceDefinition {
  echoDef ??= serviceDefinition(loadProtoFiles(ECHO_PROTO), 'test.echo.Echo');
  return echoDef;
}

/** What the handlers observed, for assertions. */
export const observed = { aborts: 0, plainThrows: 0 };

function describeMetadata(call: ServerCall): string[] {
  const out: string[] = [];
  for (const k of call.metadata.keys()) {
    if (!k.startsWith('x-')) continue;
    for (const v of call.metadata.getAll(k))
      out.push(`${k}=${typeof v === 'string' ? v : v.toString('hex')}`);
  }
  return out;
}

function maybeFail(req: EchoRequest): void {
  if (req.throw_plain === true) {
    observed.plainThrows++;
    throw new Error('secret internal detail /etc/passwd');
  }
  if (req.fail_code !== undefined && req.fail_code !== 0) {
    throw new GrpcError(req.fail_code as StatusCode, req.fail_message ?? '', {
      ...(req.fail_details !== undefined && req.fail_details.length > 0 ? { details: req.fail_details } : {}),
      metadata: { 'x-fail-trailer': 'yes' },
    });
  }
}

function waitAbortable(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => {
    observed.aborts++;
  });
}

function reply(req: EchoRequest, call: ServerCall, seq = 0): EchoReply {
  return {
    text: req.text ?? '',
    payload:
      req.reply_size !== undefined && req.reply_size > 0
        ? Buffer.alloc(req.reply_size, 7)
        : (req.payload ?? Buffer.alloc(0)),
    metadata: describeMetadata(call),
    seq,
  };
}

export const echoHandlers = {
  Unary: async (req: EchoRequest, call: ServerCall): Promise<EchoReply> => {
    const xh = call.metadata.get('x-echo-header');
    if (xh !== undefined) call.setHeader({ 'x-echo-header': xh });
    const xb = call.metadata.get('x-echo-bin');
    if (xb !== undefined) call.setTrailer({ 'x-echo-bin': xb });
    if (req.delay_ms !== undefined && req.delay_ms > 0) {
      await waitAbortable(req.delay_ms, call.signal);
      if (call.signal.aborted) throw call.signal.reason;
    }
    maybeFail(req);
    return reply(req, call);
  },
  Bidi: async (call: ServerStreamCall<EchoRequest, EchoReply>): Promise<void> => {
    let seq = 0;
    for await (const req of call) {
      maybeFail(req);
      if (req.delay_ms !== undefined && req.delay_ms > 0) await waitAbortable(req.delay_ms, call.signal);
      if (!call.write(reply(req, call, seq++))) await call.drain();
    }
  },
  ServerStream: async (call: ServerStreamCall<EchoRequest, EchoReply>): Promise<void> => {
    for await (const req of call) {
      maybeFail(req);
      for (let i = 0; i < (req.count ?? 0); i++) {
        if (!call.write(reply(req, call, i))) await call.drain();
      }
    }
  },
  ClientStream: async (call: ServerStreamCall<EchoRequest, EchoReply>): Promise<void> => {
    let n = 0;
    let text = '';
    for await (const req of call) {
      n++;
      text += req.text ?? '';
    }
    call.write({ text, received: n });
  },
  Ping: (): object => ({}),
};

export interface LogRecord {
  level: string;
  msg: string;
  obj: object;
}
export function memoryLogger(): GrpcLogger & { records: LogRecord[] } {
  const records: LogRecord[] = [];
  return {
    records,
    error(obj, msg) {
      records.push({ level: 'error', msg, obj });
    },
    warn(obj, msg) {
      records.push({ level: 'warn', msg, obj });
    },
  };
}

export interface Started {
  server: GrpcServer;
  port: number;
  address: string;
  log: ReturnType<typeof memoryLogger>;
}

/** An Echo server on a free port of 127.0.0.1. */
export async function startEcho(options: GrpcServerOptions = {}): Promise<Started> {
  const log = memoryLogger();
  const server = createGrpcServer({ log, ...options });
  server.addService(echoService(), echoHandlers);
  const port = await server.listen('127.0.0.1', 0);
  return { server, port, address: `127.0.0.1:${port}`, log };
}

/** The grpc-js client constructor for test.echo.Echo, built by proto-loader (independent of our loader). */
export function echoClientCtor(): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, longs: String, defaults: false });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    test: { echo: { Echo: grpc.ServiceClientConstructor } };
  };
  return pkg.test.echo.Echo;
}

export type UnaryFn = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res?: EchoReply) => void,
) => grpc.ClientUnaryCall;

/** Promise wrapper around a grpc-js unary call. Resolves to [error, response, headers, trailers]. */
export function unary(
  client: grpc.Client,
  method: string,
  req: object,
  md = new grpc.Metadata(),
  opts: grpc.CallOptions = {},
): Promise<{
  err: grpc.ServiceError | null;
  res: EchoReply | undefined;
  headers: grpc.Metadata | null;
  status: grpc.StatusObject | null;
}> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | null = null;
    let status: grpc.StatusObject | null = null;
    let result: { err: grpc.ServiceError | null; res: EchoReply | undefined } | null = null;
    const fn = (client as unknown as Record<string, UnaryFn>)[method]!.bind(client);
    const call = fn(req, md, opts, (err, res) => {
      result = { err, res };
      if (status !== null) resolve({ ...result, headers, status });
    });
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m;
    });
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      if (result !== null) resolve({ ...result, headers, status });
    });
  });
}

/** test/support/wait.ts's waitFor with this file's argument order (condition first). */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  await waitUntil(what, cond, { timeoutMs, everyMs: 10 });
}

/** Waits until the server has no live calls and no deadline timers. */
export async function waitIdle(server: GrpcServer, sessionsToo = false): Promise<void> {
  await waitFor(
    () => {
      const s = server.stats();
      return s.calls === 0 && s.timers === 0 && (!sessionsToo || s.sessions === 0);
    },
    `server idle (${JSON.stringify(server.stats())})`,
  );
}
