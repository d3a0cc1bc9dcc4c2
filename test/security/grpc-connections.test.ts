// Connection-level limits (issue 16): `raftkv serve --max-connections N` closes connections beyond N as soon as
// they are accepted, and the server survives running out of file descriptors (EMFILE on accept used to be an
// unhandled 'error' event, which ends the process). `--max-request-bytes` reaches the KV API.

import * as assert from 'node:assert/strict';
import { type AddressInfo, connect, Server as NetServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer } from '../../src/grpc/index.ts';
import { echoHandlers, echoService } from '../grpc/helpers.ts';
import { kvClient, rpc, Target, within } from './harness.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00', 'latin1');

/** An HTTP/2 connection that says hello and then idles; resolves once the server's first bytes (or close) came. */
function idleConnection(port: number): Promise<{ sock: Socket; served: boolean }> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let done = false;
    const finish = (served: boolean): void => {
      if (done) return;
      done = true;
      resolve({ sock, served });
    };
    sock.on('connect', () => sock.write(PREFACE));
    sock.once('data', () => finish(true));
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

describe('connection limits', () => {
  it('--max-connections: connections beyond the limit are closed; serving resumes when one leaves', async () => {
    const t = await Target.cli(['--max-connections', '8', '--max-request-bytes', '65536']);
    const socks: Socket[] = [];
    try {
      // The limit counts every connection, so the benign client's own is one of the 8.
      const c = kvClient(t.address);
      await rpc(c, 'Put', { key: 'k', value: 'v' });
      await assert.rejects(
        rpc(c, 'Put', { key: 'k', value: 'v'.repeat(100_000) }),
        (e: grpc.ServiceError) =>
          e.code === grpc.status.RESOURCE_EXHAUSTED && /\(\d+ vs\. 65536\)/.test(e.details),
      );
      for (let i = 0; i < 7; i++) {
        const r = await within(idleConnection(t.port), 10_000, 'an idle connection');
        assert.ok(r.served, `connection ${i + 2} of 8 is served`);
        socks.push(r.sock);
      }
      for (let i = 0; i < 5; i++) {
        const r = await within(idleConnection(t.port), 10_000, 'a connection over the limit');
        assert.equal(r.served, false, 'a 9th connection is closed at once');
        r.sock.destroy();
      }
      // the connection already open keeps working
      assert.equal((await rpc(c, 'Get', { key: 'k' }))['value'], 'v');
      c.close();
      socks.pop()?.destroy();
      socks.pop()?.destroy();
      await new Promise((r) => setTimeout(r, 200));
      const c2 = kvClient(t.address);
      assert.equal((await rpc(c2, 'Get', { key: 'k' }))['value'], 'v');
      c2.close();
    } finally {
      for (const s of socks) s.destroy();
      await t.stop();
    }
  });

  it('an accept error (EMFILE) is logged and the server keeps listening', async () => {
    // libuv reports EMFILE to Node only when its reserve-descriptor trick fails, so a real descriptor shortage
    // cannot be made to reach it reliably; the listening handle's callback is called the way libuv calls it.
    const log = {
      lines: [] as string[],
      error() {},
      warn(_o: object, m: string) {
        this.lines.push(m);
      },
    };
    const server = createGrpcServer({ log });
    server.addService(echoService(), echoHandlers);
    const port = await server.listen('127.0.0.1', 0);
    try {
      const handle = (process as unknown as { _getActiveHandles(): unknown[] })
        ._getActiveHandles()
        .find(
          (h): h is NetServer => h instanceof NetServer && (h.address() as AddressInfo | null)?.port === port,
        ) as (NetServer & { _handle: { onconnection(err: number): void } }) | undefined;
      assert.ok(handle !== undefined, 'the listening server');
      const EMFILE = -24;
      for (let i = 0; i < 3; i++) handle._handle.onconnection(EMFILE);
      assert.deepEqual(
        log.lines,
        ['grpc: could not accept a connection; still listening'],
        'logged once a second',
      );
      const r = await within(idleConnection(port), 10_000, 'a connection after the error');
      assert.ok(r.served);
      r.sock.destroy();
    } finally {
      await server.close(100);
    }
  });
});
