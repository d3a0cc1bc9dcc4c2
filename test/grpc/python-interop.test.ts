// Interop with Python grpcio (the C-core client) and reflection driven the way grpcurl drives it: the Python
// client knows nothing but the address; it lists services, fetches the file containing test.echo.Echo, loads the
// descriptors into protobuf's DescriptorPool (which validates them), builds requests from them and calls.
// Needs /usr/bin/python3 with grpcio and protobuf (Debian: apt-get install -y python3-grpcio python3-protobuf);
// the test tries that install when it runs as root, and otherwise skips with a visible message.

import * as assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Started, startEcho, waitIdle } from './helpers.ts';

const PY = '/usr/bin/python3';
const SCRIPT = fileURLToPath(new URL('./fixtures/py_client.py', import.meta.url));

function havePythonGrpc(): boolean {
  return spawnSync(PY, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
}
function pythonGrpcAvailable(): string | true {
  if (havePythonGrpc()) return true;
  if (process.getuid?.() === 0 && spawnSync('which', ['apt-get'], { stdio: 'ignore' }).status === 0) {
    spawnSync('apt-get', ['install', '-y', '-qq', 'python3-grpcio', 'python3-protobuf'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 120_000,
    });
    if (havePythonGrpc()) return true;
  }
  return 'SKIPPED: Python grpcio is not available (apt-get install -y python3-grpcio python3-protobuf)';
}

const available = pythonGrpcAvailable();
if (available !== true) console.log(`# python-interop: ${available}`);

describe('Python grpcio client (reflection-driven, no .proto files)', {
  skip: available === true ? false : available,
}, () => {
  let s: Started;
  let out: Record<string, unknown>;
  before(async () => {
    s = await startEcho();
    out = await new Promise((resolve, reject) => {
      execFile(PY, [SCRIPT, s.address], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`py_client failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as Record<string, unknown>);
      });
    });
  });
  after(async () => {
    await s?.server.close(1000);
  });

  it('lists services and fetches descriptors over v1 and v1alpha', () => {
    for (const v of ['v1', 'v1alpha']) {
      const services = out[`services_${v}`] as string[];
      assert.ok(services.includes('test.echo.Echo'), String(services));
      assert.ok(services.includes('grpc.health.v1.Health'));
      assert.ok(services.includes('grpc.reflection.v1.ServerReflection'));
      assert.ok(services.includes('grpc.reflection.v1alpha.ServerReflection'));
      assert.ok((out[`files_${v}`] as number) >= 2, 'the file and its dependency');
      assert.equal(out[`missing_symbol_error_${v}`], 5);
    }
  });

  it('builds requests from the descriptors (DescriptorPool accepted them)', () => {
    assert.deepEqual(out['methods'], [
      'Bidi',
      'ClientStream',
      'NotImplemented',
      'Ping',
      'ServerStream',
      'Unary',
    ]);
    assert.ok((out['request_fields'] as string[]).includes('reply_size'));
    assert.ok((out['by_filename'] as number) >= 1);
  });

  it('calls unary with metadata, including binary', () => {
    assert.equal(out['unary_text'], 'from python');
    assert.equal(out['unary_payload_hex'], '0001ff');
    assert.ok((out['unary_seen_md'] as string[]).includes('x-echo-header=hdr'));
    assert.ok((out['unary_seen_md'] as string[]).includes('x-echo-bin=00feff'));
    assert.deepEqual(out['unary_initial_md'], [['x-echo-header', 'hdr']]);
    assert.deepEqual(out['unary_trailing_md'], [['x-echo-bin', '00feff']]);
  });

  it('gets error status, percent-decoded message and status details', () => {
    assert.deepEqual(out['error'], {
      code: 'FAILED_PRECONDITION',
      details: 'précondition 50%',
      status_details_hex: '0809120178',
    });
    assert.deepEqual(out['internal'], ['INTERNAL', 'Internal server error']);
  });

  it('sees deadlines, big messages, compression refused, unknown methods, bidi and health', () => {
    assert.equal(out['deadline'], 'DEADLINE_EXCEEDED');
    assert.equal(out['big_ok'], true);
    assert.equal(out['gzip'], 'UNIMPLEMENTED');
    assert.equal(out['unknown'], 'UNIMPLEMENTED');
    assert.equal(out['bidi_count'], 300);
    assert.equal(out['bidi_in_order'], true);
    assert.equal(out['health_overall'], '0801');
    assert.equal(out['health_echo'], '0801');
  });

  it('leaves nothing running', async () => {
    await waitIdle(s.server);
  });
});
