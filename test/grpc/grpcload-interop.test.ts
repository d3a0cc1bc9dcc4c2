// Interop with grpcload, the C++ grpc++ load generator of bench/tools (GenericStub, hand-encoded requests):
// raft.KeyValueService Put/Get on the lean layer, many calls in flight on one connection, no errors.
// grpcload comes from $GRPCLOAD or bench/bin/grpcload (scripts/build-grpcload.sh, run by .ci/run); when none
// is built the test skips with a visible message (build it with scripts/build-grpcload.sh).

import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createGrpcServer, loadProtoFiles, serviceDefinition } from '../../src/grpc/index.ts';
import { KVBENCH_PROTO, memoryLogger, waitIdle } from './helpers.ts';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const GRPCLOAD = [process.env['GRPCLOAD'], resolve(REPO, 'bench/bin/grpcload')].find(
  (p): p is string => p !== undefined && p !== '' && existsSync(p),
);
const skip =
  GRPCLOAD === undefined ? 'SKIPPED: grpcload is not built (run scripts/build-grpcload.sh)' : false;
if (skip) console.log(`# grpcload-interop: ${skip}`);

function grpcload(args: string[]): Promise<Record<string, number | string>> {
  return new Promise((res, rej) => {
    execFile(GRPCLOAD!, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`grpcload failed: ${err.message}\n${stderr}`));
      else res(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, number | string>);
    });
  });
}

describe('grpcload (C++ grpc++) against the lean server', { skip }, () => {
  it('runs put, get and mixed loads with no errors', async () => {
    const root = loadProtoFiles(KVBENCH_PROTO);
    const store = new Map<string, string>();
    let rev = 0;
    let badValues = 0;
    const server = createGrpcServer({ log: memoryLogger() });
    server.addService(serviceDefinition(root, 'raft.KeyValueService'), {
      Put: (r: { key: string; value: string }) => {
        if (r.value.length !== 100) badValues++;
        store.set(r.key, r.value);
        return { revision: ++rev };
      },
      Get: (r: { key: string }) => {
        const v = store.get(r.key);
        return v === undefined ? { found: false } : { value: v, found: true };
      },
    });
    const port = await server.listen('127.0.0.1', 0);
    const base = [
      '--target',
      'raftkv',
      '--endpoints',
      `127.0.0.1:${port}`,
      '--duration',
      '1',
      '--warmup',
      '0',
      '--value-size',
      '100',
      '--keys',
      '500',
    ];
    try {
      const put = await grpcload([...base, '--op', 'put', '--clients', '16', '--conns', '2']);
      assert.equal(put['errors'], 0);
      assert.ok(Number(put['ops']) > 0);
      const mixed = await grpcload([
        ...base,
        '--op',
        'mixed',
        '--clients',
        '64',
        '--conns',
        '1',
        '--prefill',
      ]);
      assert.equal(mixed['errors'], 0);
      assert.ok(Number(mixed['ops']) > 0);
      assert.equal(badValues, 0);
      assert.ok(store.size > 0 && store.size <= 500);
      await waitIdle(server);
    } finally {
      await server.close(1000);
    }
  });
});
