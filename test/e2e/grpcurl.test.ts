// The grpcurl lines of DESIGN.md, verbatim, against every node of a real cluster, from
// an independent client (Python grpcio) that learns the API by server reflection only.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ProcCluster } from './cluster.ts';

const SCRIPT = fileURLToPath(new URL('./fixtures/grpcurl_like.py', import.meta.url));
const PY = '/usr/bin/python3';
const hasGrpcio =
  spawnSync(PY, ['-c', 'import grpc, google.protobuf.json_format'], { stdio: 'ignore' }).status === 0;
const skip = hasGrpcio
  ? false
  : 'SKIPPED: /usr/bin/python3 lacks grpcio (apt-get install -y python3-grpcio python3-protobuf)';
if (skip) console.log(`# grpcurl e2e: ${skip}`);

function run(addr: string): Promise<Record<string, Record<string, unknown>>> {
  return new Promise((res, rej) => {
    execFile(PY, [SCRIPT, addr], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`${err.message}\n${stderr}`));
      else res(JSON.parse(stdout) as Record<string, Record<string, unknown>>);
    });
  });
}

test('DESIGN.md grpcurl calls work through reflection against any node', { skip }, async () => {
  const c = await ProcCluster.start(3);
  try {
    await c.leader();
    for (const id of c.ids) {
      const out = await run(c.address(id));
      assert.ok((out['services'] as unknown as string[]).includes('raft.KeyValueService'));
      assert.ok((out['services'] as unknown as string[]).includes('grpc.health.v1.Health'));
      assert.ok((out['methods'] as unknown as string[]).includes('CompareAndSwap'));
      const st = out['GetClusterStatus'] as Record<string, unknown>;
      assert.equal(st['id'], id);
      assert.ok(['leader', 'follower'].includes(st['role'] as string));
      assert.equal((st['members'] as unknown[]).length, 3);
      assert.ok(Number(out['Put']?.['revision']) > 0, JSON.stringify(out['Put']));
      assert.deepEqual(
        { value: out['Get']?.['value'], found: out['Get']?.['found'] },
        { value: 'bar', found: true },
      );
      assert.equal(out['Delete']?.['deleted'], true);
      assert.equal(out['GetAfterDelete']?.['found'], undefined, 'proto3 JSON omits false');
      assert.equal(out['EmptyKey']?.['error'], 'INVALID_ARGUMENT');
    }
  } finally {
    await c.destroy();
  }
});
