// npm run bench:transport — messages/s and CPU µs per message of GrpcTransport between two processes.
//
// A "leader" process sends Append messages, each with one 1 KB entry, to a "follower" process over
// GrpcTransport (raft.PeerService/Stream on node:http2), keeping `inflight` Appends unacknowledged; the
// follower answers every Append with an AppendResp over its own GrpcTransport stream back (as Raft does),
// and each answer batch lets the leader send more. Both processes read process.cpuUsage() over the same
// wall-clock window (after a warm-up), so µs/message = that side's CPU time / messages in the window.
// By default the follower is pinned to core 1 and the leader to core 0 with taskset (`--no-pin`: float).
// Usage: npm run bench:transport -- [--duration 5] [--warmup 1] [--inflight 1,64,256] [--size 1024] [--no-pin]

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGrpcServer } from '../src/grpc/index.ts';
import type { AppendRequest, Message } from '../src/raft/types.ts';
import { GrpcTransport, PEER_SERVER_OPTIONS } from '../src/transport/grpc.ts';

const { values: a } = parseArgs({
  options: {
    role: { type: 'string' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    inflight: { type: 'string', default: '1,64,256' },
    size: { type: 'string', default: '1024' },
    'no-pin': { type: 'boolean', default: false },
  },
});

interface Report {
  readonly messages: number;
  readonly frames: number;
  readonly cpuUs: number;
  readonly wallUs: number;
}
type ParentMsg =
  | { kind: 'peer'; address: string; t0: number; t1: number; inflight: number; size: number }
  | { kind: 'exit' };
type ChildMsg = { kind: 'port'; port: number } | { kind: 'report'; report: Report };

const send = (m: ChildMsg): void => {
  process.send?.(m);
};
const quiet = { info() {}, warn() {}, error() {} };

async function child(role: 'leader' | 'follower'): Promise<void> {
  const me = role === 'leader' ? 'n1' : 'n2';
  const peer = role === 'leader' ? 'n2' : 'n1';
  const server = createGrpcServer({ ...PEER_SERVER_OPTIONS, health: false, reflection: false, log: quiet });
  const t = new GrpcTransport({
    id: me,
    clusterId: 'bench',
    logger: {
      info() {},
      // teardown (the other process exiting) is not worth a line
      warn: (o, m) => done || console.error(role, m, JSON.stringify(o)),
      error: (o, m) => done || console.error(role, m, JSON.stringify(o)),
    },
  });
  t.register(server);
  send({ kind: 'port', port: await server.listen('127.0.0.1', 0) });
  let counted = 0;
  let measuring = false;
  let done = false;
  let framesAt0 = 0;
  const framesNow = (): number => (role === 'leader' ? t.stats.framesSent : t.stats.framesReceived);
  process.on('message', (raw: ParentMsg) => {
    if (raw.kind === 'exit') {
      void t.close().then(() => server.close(200).then(() => process.exit(0)));
      return;
    }
    t.setPeer(peer, raw.address);
    const data = new Uint8Array(raw.size).fill(7);
    let next = 1;
    let inflight = 0;
    const pump = (): void => {
      const batch: Message[] = [];
      while (inflight < raw.inflight) {
        const index = next++;
        batch.push({
          type: 'app',
          from: me,
          to: peer,
          term: 1,
          prevIndex: index - 1,
          prevTerm: 1,
          commit: index - 1,
          entries: [{ term: 1, index, type: 0, data }],
        });
        inflight++;
      }
      if (batch.length > 0) t.send(batch);
    };
    t.start({
      onMessages(batch) {
        if (role === 'follower') {
          const out: Message[] = [];
          for (const m of batch) {
            if (m.type !== 'app') continue;
            const last = (m as AppendRequest).entries.at(-1)?.index ?? m.prevIndex;
            out.push({
              type: 'app-resp',
              from: me,
              to: peer,
              term: 1,
              index: last,
              reject: false,
              hintIndex: 0,
              hintTerm: 0,
            });
          }
          if (measuring) counted += out.length;
          t.send(out);
          return;
        }
        for (const m of batch) {
          if (m.type === 'app-resp') {
            inflight--;
            if (measuring) counted++;
          }
        }
        pump();
      },
      onUnreachable() {
        if (role !== 'leader') return;
        setTimeout(() => {
          inflight = 0;
          pump();
        }, 100);
      },
    });
    let cpu0 = process.cpuUsage();
    let wall0 = 0;
    setTimeout(() => {
      measuring = true;
      cpu0 = process.cpuUsage();
      wall0 = performance.now();
      framesAt0 = framesNow();
    }, raw.t0 - Date.now());
    setTimeout(() => {
      measuring = false;
      done = true;
      const c = process.cpuUsage(cpu0);
      send({
        kind: 'report',
        report: {
          messages: counted,
          frames: framesNow() - framesAt0,
          cpuUs: c.user + c.system,
          wallUs: (performance.now() - wall0) * 1000,
        },
      });
    }, raw.t1 - Date.now());
    if (role === 'leader') pump();
  });
}

function spawnChild(role: string, core: number | null): ChildProcess {
  const script = fileURLToPath(import.meta.url);
  const node = [process.execPath, '--import', 'tsx', script, '--role', role];
  const [cmd, ...args] = core === null ? node : ['taskset', '-c', String(core), ...node];
  return spawn(cmd!, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

function next(p: ChildProcess, kind: ChildMsg['kind']): Promise<ChildMsg> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: ChildMsg): void => {
      if (m.kind !== kind) return;
      p.off('message', onMsg);
      p.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null): void => reject(new Error(`bench child exited with ${code}`));
    p.on('message', onMsg);
    p.once('exit', onExit);
  });
}

async function run(inflight: number, size: number, pin: boolean): Promise<Record<string, number>> {
  const leader = spawnChild('leader', pin ? 0 : null);
  const follower = spawnChild('follower', pin ? 1 : null);
  try {
    const [lp, fp] = await Promise.all([next(leader, 'port'), next(follower, 'port')]);
    if (lp.kind !== 'port' || fp.kind !== 'port') throw new Error('unexpected message');
    const t0 = Date.now() + 300 + Number(a.warmup) * 1000;
    const t1 = t0 + Number(a.duration) * 1000;
    const reports = Promise.all([next(leader, 'report'), next(follower, 'report')]);
    follower.send({
      kind: 'peer',
      address: `127.0.0.1:${lp.port}`,
      t0,
      t1,
      inflight,
      size,
    } satisfies ParentMsg);
    leader.send({
      kind: 'peer',
      address: `127.0.0.1:${fp.port}`,
      t0,
      t1,
      inflight,
      size,
    } satisfies ParentMsg);
    const [lr, fr] = await reports;
    if (lr.kind !== 'report' || fr.kind !== 'report') throw new Error('unexpected message');
    const L = lr.report;
    const F = fr.report;
    return {
      inflight,
      size,
      msgsPerSec: (L.messages / L.wallUs) * 1e6,
      msgsPerFrame: F.frames > 0 ? L.messages / F.frames : 0,
      leaderUs: L.cpuUs / L.messages,
      followerUs: F.cpuUs / F.messages,
      leaderCpu: (100 * L.cpuUs) / L.wallUs,
      followerCpu: (100 * F.cpuUs) / F.wallUs,
    };
  } finally {
    for (const p of [leader, follower]) {
      if (p.connected) p.send({ kind: 'exit' } satisfies ParentMsg);
    }
    await Promise.all(
      [leader, follower].map(
        (p) =>
          new Promise<void>((r) => {
            if (p.exitCode !== null) return r();
            const kill = setTimeout(() => p.kill('SIGKILL'), 3000);
            p.once('exit', () => {
              clearTimeout(kill);
              r();
            });
          }),
      ),
    );
  }
}

async function main(): Promise<void> {
  const pin =
    !a['no-pin'] &&
    cpus().length >= 2 &&
    spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0;
  const size = Number(a.size);
  const rows: Record<string, number>[] = [];
  console.error(
    `bench:transport: ${size} B Appends, leader -> follower over GrpcTransport (h2c), ${a.duration} s after ${a.warmup} s warm-up, ${pin ? 'pinned (leader core 0, follower core 1)' : 'unpinned'}, node ${process.version}`,
  );
  for (const w of String(a.inflight).split(',').map(Number)) {
    const r = await run(w, size, pin);
    console.error(`  in flight ${w}: ${Math.round(r['msgsPerSec']!)} msgs/s`);
    rows.push(r);
  }
  const f = (n: number | undefined, d = 1): string => (n === undefined ? '' : n.toFixed(d));
  console.log('');
  console.log(
    '| message | in flight | messages/s | Appends per frame | leader µs/msg | follower µs/msg | CPU % leader / follower |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r['size']} B Append | ${r['inflight']} | ${Math.round(r['msgsPerSec']!)} | ${f(r['msgsPerFrame'])} | ${f(r['leaderUs'], 2)} | ${f(r['followerUs'], 2)} | ${f(r['leaderCpu'], 0)} / ${f(r['followerCpu'], 0)} |`,
    );
  }
}

if (a.role === 'leader' || a.role === 'follower') {
  void child(a.role);
} else {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
