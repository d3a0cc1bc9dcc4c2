// A raw HTTP/2 client for the hostile-client tests: it writes hand-made frames (any sequence, legal or not) and
// records what the server answers: GOAWAY, RST_STREAM per stream, WINDOW_UPDATE grants, SETTINGS ACKs, response
// HEADERS, DATA bytes and END_STREAM per stream. It answers the server's SETTINGS (and, if asked, PINGs).
// Also: the Echo server in a child process whose CPU time and RSS the tests read (h2-server-child.ts), so that
// what is measured is the server alone.
//
// Invariants: every wait is bounded by a timeout and fails with what it waited for; every child is killed by
// PID in `stop()`, which tests call in `after` (so also on failure).

import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import * as http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { encodeHeaders } from '../../src/grpc/h2/hpack.ts';
import { encodeFrame } from '../../src/grpc/index.ts';
import { echoService } from '../grpc/helpers.ts';

export const DATA = 0x0;
export const HEADERS = 0x1;
export const PRIORITY = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;
export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const PRIORITY_FLAG = 0x20;

export const Code = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

export function settings(entries: readonly (readonly [number, number])[]): Buffer {
  const p = Buffer.alloc(6 * entries.length);
  entries.forEach(([k, v], i) => {
    p.writeUInt16BE(k, 6 * i);
    p.writeUInt32BE(v, 6 * i + 2);
  });
  return frame(SETTINGS, 0, 0, p);
}

export function windowUpdate(stream: number, inc: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(inc, 0);
  return frame(WINDOW_UPDATE, 0, stream, p);
}

export function rstStream(stream: number, code: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(RST_STREAM, 0, stream, p);
}

const EchoReq = echoService().methods[0]!.requestType;

/** A gRPC message frame holding an EchoRequest. */
export function echoMessage(req: object): Buffer {
  return encodeFrame(EchoReq.encode(req).finish());
}

/** An HPACK block for a gRPC request to `path` (plus extra fields, pseudo-headers first). */
export function requestBlock(path: string, extra: Record<string, string> = {}): Buffer {
  return encodeHeaders({
    ':method': 'POST',
    ':scheme': 'http',
    ':path': path,
    ':authority': 'localhost',
    'content-type': 'application/grpc',
    te: 'trailers',
    ...extra,
  });
}

/** HEADERS (END_HEADERS) opening `stream` for `path`; with `end`, also END_STREAM. */
export function openStream(
  stream: number,
  path: string,
  end = false,
  extra: Record<string, string> = {},
): Buffer {
  return frame(HEADERS, END_HEADERS | (end ? END_STREAM : 0), stream, requestBlock(path, extra));
}

export class RawConn {
  readonly sock: Socket;
  goaway: number | undefined = undefined;
  closed = false;
  readonly rst = new Map<number, number>();
  /** Sum of the WINDOW_UPDATE increments per stream (0 = the connection). */
  readonly grants = new Map<number, number>();
  readonly headers = new Set<number>();
  readonly ended = new Set<number>();
  readonly dataBytes = new Map<number, number>();
  dataFrames = 0;
  settingsAcks = 0;
  pingAcks = 0;
  /** Payloads of the PINGs the server sent (not ACKs), in order. */
  readonly serverPings: Buffer[] = [];
  framesIn = 0;
  #rest: Buffer = Buffer.alloc(0);

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (c: Buffer) => this.#onData(c));
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
    });
  }

  /** Connects, sends the preface and a SETTINGS frame (with `entries`). */
  static async open(port: number, entries: readonly (readonly [number, number])[] = []): Promise<RawConn> {
    const sock = connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    const c = new RawConn(sock);
    await once(sock, 'connect');
    sock.write(Buffer.concat([PREFACE, settings(entries)]));
    return c;
  }

  /** Connects and sends only the preface: the first frame is the caller's. */
  static async openBare(port: number): Promise<RawConn> {
    const sock = connect(port, '127.0.0.1');
    const c = new RawConn(sock);
    await once(sock, 'connect');
    sock.write(PREFACE);
    return c;
  }

  /** Writes bytes, waiting for the socket to drain (false when the connection is gone). */
  async write(buf: Buffer): Promise<boolean> {
    if (this.closed || this.sock.destroyed) return false;
    if (!this.sock.write(buf)) {
      await Promise.race([once(this.sock, 'drain'), once(this.sock, 'close')]);
    }
    return !this.closed;
  }

  /** Writes `buf` in pieces of at most `piece` bytes (so that the server reads it as a flood of reads). */
  async pump(buf: Buffer, piece = 64 * 1024): Promise<boolean> {
    for (let off = 0; off < buf.length; off += piece) {
      if (!(await this.write(buf.subarray(off, off + piece)))) return false;
    }
    return true;
  }

  async waitFor(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(5);
    }
  }

  /** Waits for a GOAWAY (its code) or the socket's close (-1). */
  async goawayCode(timeoutMs = 10_000): Promise<number> {
    await this.waitFor(() => this.goaway !== undefined || this.closed, 'GOAWAY or close', timeoutMs);
    return this.goaway ?? -1;
  }

  /** Round trip: a PING the server must ACK, so everything sent before it has been processed. */
  async sync(timeoutMs = 15_000): Promise<void> {
    const n = this.pingAcks;
    await this.write(frame(PING, 0, 0, Buffer.alloc(8)));
    await this.waitFor(() => this.pingAcks > n || this.closed, 'PING ACK', timeoutMs);
  }

  destroy(): void {
    this.sock.destroy();
  }

  #onData(c: Buffer): void {
    let buf = this.#rest.length === 0 ? c : Buffer.concat([this.#rest, c]);
    let pos = 0;
    while (buf.length - pos >= 9) {
      const len = buf.readUIntBE(pos, 3);
      if (buf.length - pos - 9 < len) break;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const p = buf.subarray(pos + 9, pos + 9 + len);
      pos += 9 + len;
      this.framesIn++;
      this.#onFrame(type, flags, id, p);
    }
    buf = buf.subarray(pos);
    this.#rest = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }

  #onFrame(type: number, flags: number, id: number, p: Buffer): void {
    switch (type) {
      case DATA:
        this.dataFrames++;
        this.dataBytes.set(id, (this.dataBytes.get(id) ?? 0) + p.length);
        if (flags & END_STREAM) this.ended.add(id);
        return;
      case HEADERS:
        this.headers.add(id);
        if (flags & END_STREAM) this.ended.add(id);
        return;
      case RST_STREAM:
        this.rst.set(id, p.readUInt32BE(0));
        return;
      case SETTINGS:
        if (flags & 0x1) this.settingsAcks++;
        else if (!this.sock.destroyed) this.sock.write(frame(SETTINGS, 0x1, 0));
        return;
      case PING:
        if (flags & 0x1) this.pingAcks++;
        else this.serverPings.push(Buffer.from(p));
        return;
      case GOAWAY:
        this.goaway = p.readUInt32BE(4);
        return;
      case WINDOW_UPDATE:
        this.grants.set(id, (this.grants.get(id) ?? 0) + (p.readUInt32BE(0) & 0x7fffffff));
        return;
      default:
    }
  }
}

// ---- the server in a child process ----

export interface Usage {
  /** User + system CPU time of the server process, in microseconds. */
  cpuUs: number;
  rss: number;
  sessions: number;
  calls: number;
  /** Connections the server dropped because their socket did not drain (undefined on an engine without it). */
  writeStalls?: number;
}

export class ServerChild {
  readonly child: ChildProcess;
  readonly port: number;
  readonly address: string;

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
    this.address = `127.0.0.1:${port}`;
  }

  /** Starts the Echo server (GrpcServerOptions as JSON) in a child process. */
  static async start(options: object = {}): Promise<ServerChild> {
    const path = fileURLToPath(new URL('./h2-server-child.ts', import.meta.url));
    const child = fork(path, [JSON.stringify(options)], {
      execArgv: ['--import', 'tsx', '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('server child did not start in 30 s')), 30_000);
        child.once('message', (m) => {
          clearTimeout(t);
          resolve((m as { port: number }).port);
        });
        child.once('exit', (code) => reject(new Error(`server child exited (${code})`)));
      });
      return new ServerChild(child, port);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  }

  /** The server's CPU time and RSS now (after a full GC, so RSS is what is live). */
  usage(): Promise<Usage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server child did not report usage')), 30_000);
      this.child.once('message', (m) => {
        clearTimeout(t);
        resolve(m as Usage);
      });
      this.child.send('usage');
    });
  }

  stop(): void {
    if (this.child.pid !== undefined && this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** One Unary echo call on a fresh node:http2 connection (the benign client); resolves with grpc-status. */
export async function benignCall(address: string, req: object = { text: 'benign' }): Promise<string> {
  const sess = http2.connect(`http://${address}`);
  sess.on('error', () => {});
  try {
    return await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('benign call took over 60 s')), 60_000);
      const r = sess.request({
        ':method': 'POST',
        ':path': '/test.echo.Echo/Unary',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let status = 'none';
      r.on('trailers', (h) => {
        status = String(h['grpc-status']);
      });
      r.on('response', (h) => {
        if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
      });
      r.on('data', () => {});
      r.on('error', () => {});
      r.on('close', () => {
        clearTimeout(t);
        resolve(status);
      });
      r.end(echoMessage(req));
    });
  } finally {
    sess.close();
  }
}

/**
 * Benign load of about `bytes` request bytes: Unary echo calls of `size` bytes each, `concurrency` at a time,
 * on one node:http2 connection. Resolves when all answered OK.
 */
export async function benignLoad(
  address: string,
  bytes: number,
  size = 16 * 1024,
  concurrency = 16,
): Promise<void> {
  const sess = http2.connect(`http://${address}`);
  sess.on('error', () => {});
  const msg = echoMessage({ text: 'load', payload: Buffer.alloc(size - 16, 1) });
  let left = Math.max(1, Math.round(bytes / msg.length));
  const one = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const r = sess.request({
        ':method': 'POST',
        ':path': '/test.echo.Echo/Unary',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let status = 'none';
      r.on('trailers', (h) => {
        status = String(h['grpc-status']);
      });
      r.on('data', () => {});
      r.on('error', () => {});
      r.on('close', () => (status === '0' ? resolve() : reject(new Error(`benign call ended ${status}`))));
      r.end(msg);
    });
  const worker = async (): Promise<void> => {
    while (left > 0) {
      left--;
      await one();
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    sess.close();
  }
}
