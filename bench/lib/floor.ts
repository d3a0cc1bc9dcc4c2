// The floor of one put at 1 client, measured on this machine within a benchmark run (issue 10):
// one durable write on the leader, one on a follower, and two loopback round trips (client to
// leader, leader to follower and back counted as one each). raftkv's p50 at 1 client is reported
// next to it, so what the put path adds on top of the disk and the network is visible.
//
// Invariants: every measurement runs in a fresh temporary directory or child process that is
// removed or killed before the function returns, even when it throws; the durable write is done
// the way the WAL does it by default (an O_DSYNC write of an entry-sized record inside a segment
// preallocated as a sparse file), and a plain append + fdatasync loop
// is measured beside it; the floor takes the cheaper of the two.

import { spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  fdatasyncSync,
  ftruncateSync,
  mkdtempSync,
  openSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Percentiles {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly samples: number;
}

export interface PutFloor {
  /** An O_DSYNC write of `recordBytes` inside a preallocated file (the WAL's default). */
  readonly dsyncWrite: Percentiles;
  /** An append of `recordBytes` followed by fdatasync. */
  readonly fdatasyncAppend: Percentiles;
  /** A 64-byte TCP ping-pong between this process and a child Node process on 127.0.0.1. */
  readonly loopbackRtt: Percentiles;
  /** 2 × the cheaper durable write's p50 + 2 × the round trip's p50. */
  readonly floorMs: number;
  readonly recordBytes: number;
}

export function percentiles(ms: readonly number[]): Percentiles {
  if (ms.length === 0) throw new RangeError('percentiles of no samples');
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] as number;
  return { p50Ms: at(0.5), p99Ms: at(0.99), samples: s.length };
}

/** Times `count` durable writes of `bytes` bytes in a fresh file under `dir` (removed after). */
export function measureDurableWrites(
  dir: string,
  mode: 'dsync' | 'fdatasync',
  count: number,
  bytes: number,
): Percentiles {
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`count must be a positive integer, got ${count}`);
  const d = mkdtempSync(join(dir, 'raftkv-floor-'));
  const buf = Buffer.alloc(bytes, 0x5a);
  const ms: number[] = [];
  try {
    const path = join(d, 'floor.log');
    const flags =
      mode === 'dsync'
        ? constants.O_RDWR | constants.O_CREAT | constants.O_DSYNC
        : constants.O_RDWR | constants.O_CREAT | constants.O_APPEND;
    const fd = openSync(path, flags, 0o644);
    try {
      // As the WAL does: the segment is extended (sparse) up front, then written inside its size.
      if (mode === 'dsync') ftruncateSync(fd, Math.max(64 * 1024 * 1024, (count + 1) * bytes));
      fdatasyncSync(fd);
      let pos = 0;
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        if (mode === 'dsync') {
          writeSync(fd, buf, 0, bytes, pos);
        } else {
          writeSync(fd, buf, 0, bytes);
          fdatasyncSync(fd);
        }
        ms.push(performance.now() - t0);
        pos += bytes;
      }
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
  return percentiles(ms);
}

const ECHO_SERVER = `
const s = require('node:net').createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)); c.on('error', () => {}); });
s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
`;

/**
 * Times `count` round trips of a 64-byte message to an echo server in a child Node process, so
 * both ends pay what a Node process pays to wake up and answer (as raftkv's members do).
 */
export async function measureLoopbackRtt(count: number): Promise<Percentiles> {
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`count must be a positive integer, got ${count}`);
  const child = spawn(process.execPath, ['-e', ECHO_SERVER], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  try {
    const port = await new Promise<number>((res, rej) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) res(Number(out.trim()));
      });
      child.once('exit', (code) => rej(new Error(`echo server exited (${code}) before listening`)));
    });
    const sock = connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    try {
      await new Promise<void>((res, rej) => {
        sock.once('connect', () => res());
        sock.once('error', rej);
      });
      const msg = Buffer.alloc(64, 1);
      const ms: number[] = [];
      let got = 0;
      let wake: (() => void) | null = null;
      sock.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= msg.length && wake !== null) {
          got -= msg.length;
          const w = wake;
          wake = null;
          w();
        }
      });
      // The first trips warm both processes up (JIT, socket buffers) and are not counted.
      const warm = Math.min(200, count);
      for (let i = 0; i < warm + count; i++) {
        const t0 = performance.now();
        await new Promise<void>((res) => {
          wake = res;
          sock.write(msg);
        });
        if (i >= warm) ms.push(performance.now() - t0);
      }
      return percentiles(ms);
    } finally {
      sock.destroy();
    }
  } finally {
    child.stdin.end();
    child.kill('SIGTERM');
    await exited;
  }
}

/** Measures the floor of a put at 1 client (see the module comment). */
export async function measurePutFloor(
  o: { dir?: string; writes?: number; roundTrips?: number; recordBytes?: number } = {},
): Promise<PutFloor> {
  const dir = o.dir ?? tmpdir();
  const writes = o.writes ?? 500;
  // An entry record of a 256 B put: the value, its key, the command envelope and the WAL's headers.
  const recordBytes = o.recordBytes ?? 320;
  const dsyncWrite = measureDurableWrites(dir, 'dsync', writes, recordBytes);
  const fdatasyncAppend = measureDurableWrites(dir, 'fdatasync', writes, recordBytes);
  const loopbackRtt = await measureLoopbackRtt(o.roundTrips ?? 2000);
  const disk = Math.min(dsyncWrite.p50Ms, fdatasyncAppend.p50Ms);
  return { dsyncWrite, fdatasyncAppend, loopbackRtt, floorMs: 2 * disk + 2 * loopbackRtt.p50Ms, recordBytes };
}
