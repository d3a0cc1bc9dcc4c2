// TLS and mutual TLS with a grpc-js client. Certificates (a CA, a server cert for 127.0.0.1, a client cert) are
// made with openssl in a temp directory; the test skips with a message when openssl is missing.

import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { haveOpenssl, makeCa, makeLeaf } from '../support/certs.ts';
import { echoClientCtor, startEcho, unary } from './helpers.ts';

const skip = haveOpenssl ? false : 'SKIPPED: openssl is not installed';
if (skip) console.log(`# tls: ${skip}`);

interface Pems {
  ca: Buffer;
  serverKey: Buffer;
  serverCert: Buffer;
  clientKey: Buffer;
  clientCert: Buffer;
  otherKey: Buffer;
  otherCert: Buffer;
}

function makeCerts(dir: string): Pems {
  makeCa(dir, 'ca', 'raftkv test CA');
  makeLeaf(
    dir,
    'server',
    'ca',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    'localhost',
  );
  makeLeaf(dir, 'client', 'ca', 'extendedKeyUsage=clientAuth\n');
  // A client certificate from a CA the server does not trust.
  makeCa(dir, 'other-ca', 'untrusted CA');
  makeLeaf(dir, 'other', 'other-ca', 'extendedKeyUsage=clientAuth\n', 'intruder');
  const r = (f: string): Buffer => readFileSync(join(dir, f));
  return {
    ca: r('ca.pem'),
    serverKey: r('server.key'),
    serverCert: r('server.pem'),
    clientKey: r('client.key'),
    clientCert: r('client.pem'),
    otherKey: r('other.key'),
    otherCert: r('other.pem'),
  };
}

describe('TLS', { skip }, () => {
  const Echo = echoClientCtor();
  let dir: string;
  let pems: Pems;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'raftkv-grpc-tls-'));
    pems = makeCerts(dir);
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves h2 over TLS', async () => {
    const s = await startEcho({ tls: { key: pems.serverKey, cert: pems.serverCert } });
    const client = new Echo(s.address, grpc.credentials.createSsl(pems.ca));
    const r = await unary(client, 'Unary', { text: 'secure' });
    assert.equal(r.err, null);
    assert.equal(r.res?.text, 'secure');
    client.close();
    await s.server.close(1000);
  });

  it('requires a client certificate signed by the CA when given a CA (mTLS)', async () => {
    const s = await startEcho({ tls: { key: pems.serverKey, cert: pems.serverCert, ca: pems.ca } });
    const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + 5000 });
    const good = new Echo(s.address, grpc.credentials.createSsl(pems.ca, pems.clientKey, pems.clientCert));
    const r = await unary(good, 'Unary', { text: 'mutual' }, new grpc.Metadata(), deadline());
    assert.equal(r.err, null);
    assert.equal(r.res?.text, 'mutual');
    good.close();
    const none = new Echo(s.address, grpc.credentials.createSsl(pems.ca));
    const r2 = await unary(none, 'Unary', { text: 'anon' }, new grpc.Metadata(), deadline());
    assert.ok(r2.err !== null, 'a client without a certificate is refused');
    none.close();
    const other = new Echo(s.address, grpc.credentials.createSsl(pems.ca, pems.otherKey, pems.otherCert));
    const r3 = await unary(other, 'Unary', { text: 'intruder' }, new grpc.Metadata(), deadline());
    assert.ok(r3.err !== null, 'a certificate from another CA is refused');
    other.close();
    await s.server.close(1000);
  });
});
