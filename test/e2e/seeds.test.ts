// The seeds' command lines, as written (issue 17; docs/cli.md), with `raftkv serve` in place
// of `./server` / `go run main.go`: each form starts three real processes in a scattered
// order (no --data-dir: the default state/<id> under the working directory), the nodes
// learn each other's ids in the peer handshake and form one cluster, and the grpcurl lines
// of DESIGN.md run against every node through an independent client (Python grpcio, by
// reflection only).
//   seed 004: --node-id node1 --port 50051 --peers localhost:50052,localhost:50053
//   seed 000: --ip 127.0.0.1 --client-port 8001 --node-port 9001 --peers 127.0.0.1:9002,127.0.0.1:9003
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RaftKvClient } from '../../src/client/index.ts';
import { isolatedHome } from '../support/raftkv-home.ts';
import { CLI, distinctFreePort, freePortWithPeer } from './cluster.ts';

const SCRIPT = fileURLToPath(new URL('./fixtures/grpcurl_like.py', import.meta.url));
const PY = '/usr/bin/python3';
const TSX = import.meta.resolve('tsx');
const hasGrpcio =
  spawnSync(PY, ['-c', 'import grpc, google.protobuf.json_format'], { stdio: 'ignore' }).status === 0;
const skip = hasGrpcio
  ? false
  : 'SKIPPED: /usr/bin/python3 lacks grpcio (apt-get install -y python3-grpcio python3-protobuf)';
if (skip) console.log(`# seeds e2e: ${skip}`);

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function grpcurlLines(addr: string): Promise<Record<string, Record<string, unknown>>> {
  return new Promise((res, rej) => {
    execFile(PY, [SCRIPT, addr], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`${err.message}\n${stderr}`));
      else res(JSON.parse(stdout) as Record<string, Record<string, unknown>>);
    });
  });
}

/** Starts the three lines (in the order given) in `cwd`, checks the cluster and the grpcurl lines, stops them. */
async function runSeed(cwd: string, lines: { id: string; args: string[]; api: string }[]): Promise<void> {
  const logs = new Map<string, string>();
  const procs: ChildProcess[] = [];
  const client = new RaftKvClient({ endpoints: lines.map((l) => l.api), timeoutMs: 20_000, retries: 200 });
  // one user's nodes: one RAFTKV_HOME (their per-user peer secret), not the real home
  const home = isolatedHome(cwd);
  try {
    for (const l of lines) {
      const p = spawn(process.execPath, ['--import', TSX, CLI, 'serve', ...l.args], {
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: home.env({ ...process.env, RAFTKV_LOG_FORMAT: 'json' }),
      });
      live.add(p);
      procs.push(p);
      p.once('exit', () => live.delete(p));
      logs.set(l.id, '');
      const keep = (b: Buffer) => logs.set(l.id, `${logs.get(l.id)}${b.toString()}`.slice(-4000));
      p.stdout?.on('data', keep);
      p.stderr?.on('data', keep);
      // started one after another, each before the next can answer: the order must not matter
      await new Promise((r) => setTimeout(r, 300));
    }
    const tail = () => [...logs].map(([id, l]) => `--- ${id}\n${l}`).join('\n');
    let leader = '';
    const end = Date.now() + 90_000;
    while (leader === '') {
      if (Date.now() > end) throw new Error(`no leader within 90 s\n${tail()}`);
      const sts = await Promise.all(
        lines.map((l) => client.status({ endpoint: l.api, timeoutMs: 1_000 }).catch(() => undefined)),
      );
      const leaders = new Set(sts.map((s) => s?.leader ?? ''));
      if (leaders.size === 1 && !leaders.has('')) leader = [...leaders][0] as string;
      else await new Promise((r) => setTimeout(r, 200));
    }
    const st = await client.status({ endpoint: lines[0]?.api as string });
    assert.deepEqual(
      st.members.map((m) => m.id).sort(),
      lines.map((l) => l.id).sort(),
      'one cluster of the three nodes, ids learned in the handshake',
    );
    for (const l of lines) {
      const out = await grpcurlLines(l.api);
      const gs = out['GetClusterStatus'] as Record<string, unknown>;
      assert.equal(gs['id'], l.id);
      assert.equal((gs['members'] as unknown[]).length, 3);
      assert.ok(Number(out['Put']?.['revision']) > 0, JSON.stringify(out['Put']));
      assert.deepEqual(
        { value: out['Get']?.['value'], found: out['Get']?.['found'] },
        { value: 'bar', found: true },
      );
      assert.equal(out['Delete']?.['deleted'], true);
    }
  } finally {
    client.close();
    const exits = procs.map((p) =>
      p.exitCode !== null || p.signalCode !== null
        ? Promise.resolve()
        : new Promise<void>((r) => p.once('exit', () => r())),
    );
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(exits);
  }
}

test('seed 004: --node-id ID --port P --peers localhost:P2,localhost:P3, started in any order, form one cluster', {
  skip,
}, async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'raftkv-seed004-'));
  try {
    const taken = new Set<number>();
    const ports = [
      await freePortWithPeer(taken),
      await freePortWithPeer(taken),
      await freePortWithPeer(taken),
    ];
    const line = (i: number) => ({
      id: `node${i + 1}`,
      api: `localhost:${ports[i]}`,
      args: [
        '--node-id',
        `node${i + 1}`,
        '--port',
        String(ports[i]),
        '--peers',
        ports
          .filter((_, j) => j !== i)
          .map((p) => `localhost:${p}`)
          .join(','),
      ],
    });
    await runSeed(cwd, [line(2), line(0), line(1)]);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});

test('seed 000: --ip IP --client-port C --node-port N --peers (node ports), started in any order, form one cluster', {
  skip,
}, async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'raftkv-seed000-'));
  try {
    const client: number[] = [];
    const node: number[] = [];
    const taken = new Set<number>();
    for (let i = 0; i < 3; i++) client.push(await distinctFreePort(taken));
    for (let i = 0; i < 3; i++) node.push(await distinctFreePort(taken));
    // seed 000's line names no id: a node's id is then IP-NODEPORT
    const line = (i: number) => ({
      id: `127.0.0.1-${node[i]}`,
      api: `127.0.0.1:${client[i]}`,
      args: [
        '--ip',
        '127.0.0.1',
        '--client-port',
        String(client[i]),
        '--node-port',
        String(node[i]),
        '--peers',
        node
          .filter((_, j) => j !== i)
          .map((p) => `127.0.0.1:${p}`)
          .join(','),
      ],
    });
    await runSeed(cwd, [line(1), line(2), line(0)]);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
