// Peer authentication (src/transport/peer-auth.ts) as pure functions, and in GrpcTransport:
// the whole transport conformance suite over cluster-secret streams; a node with another
// secret is refused both ways and delivers nothing; discovery probes authenticate too.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import {
  defaultPeerAddress,
  formatMemberAddress,
  MemberAddressError,
  parseMemberAddress,
} from '../../src/server/member-address.ts';
import {
  type CertificateLike,
  certificateNames,
  checkPeerCertificate,
  clientProof,
  isLoopbackHost,
  newNonce,
  type ProofInput,
  proofMatches,
  serverProof,
} from '../../src/transport/peer-auth.ts';
import { hb, Inbox, transportConformance, waitFor } from './conformance.ts';
import { GrpcHarness } from './grpc-harness.ts';

const SECRET = randomBytes(32);
transportConformance('grpc with a cluster secret', () =>
  GrpcHarness.start({ transport: { auth: { kind: 'secret', secret: SECRET } } }),
);

test('proofs: bound to direction, cluster, both ids and both nonces; compared whole', () => {
  const p: ProofInput = {
    clusterId: 'c',
    client: 'n1',
    server: 'n2',
    clientNonce: newNonce(),
    serverNonce: newNonce(),
  };
  const s = serverProof(SECRET, p);
  assert.equal(s.length, 32);
  assert.ok(proofMatches(s, serverProof(SECRET, p)), 'deterministic');
  assert.ok(!proofMatches(s, clientProof(SECRET, p)), 'the other direction differs (no reflection)');
  for (const change of [
    { clusterId: 'd' },
    { client: 'n3' },
    { server: 'n3' },
    { clientNonce: newNonce() },
    { serverNonce: newNonce() },
    // length-prefixed fields: moving a character between ids changes the proof
    { client: 'n1n', server: '2' },
  ]) {
    assert.ok(!proofMatches(s, serverProof(SECRET, { ...p, ...change })), JSON.stringify(change));
  }
  assert.ok(!proofMatches(s, serverProof(randomBytes(32), p)), 'another secret');
  assert.ok(!proofMatches(s, s.subarray(0, 16)), 'a prefix');
  assert.ok(!proofMatches(s, undefined));
});

test('peer certificates: both key usages, the claimed node id among its names, the allow-list', () => {
  const SERVER = '1.3.6.1.5.5.7.3.1';
  const CLIENT = '1.3.6.1.5.5.7.3.2';
  const cert = (cn: string, eku: string[] | undefined, san = ''): CertificateLike => ({
    subject: { CN: cn },
    subjectaltname: san,
    ...(eku ? { ext_key_usage: eku } : {}),
  });
  assert.deepEqual(certificateNames(cert('n1', [], 'IP Address:127.0.0.1, DNS:localhost, DNS:n1.example')), [
    'n1',
    'localhost',
    'n1.example',
  ]);
  assert.equal(checkPeerCertificate(cert('n1', [SERVER, CLIENT]), 'n1', null), null);
  assert.equal(checkPeerCertificate(cert('host', [SERVER, CLIENT], 'DNS:n1'), 'n1', null), null);
  assert.match(checkPeerCertificate(cert('n1', [CLIENT]), 'n1', null) ?? '', /not a peer certificate/);
  assert.match(checkPeerCertificate(cert('n1', [SERVER]), 'n1', null) ?? '', /not a peer certificate/);
  assert.match(checkPeerCertificate(cert('n1', undefined), 'n1', null) ?? '', /not a peer certificate/);
  assert.match(checkPeerCertificate(cert('n2', [SERVER, CLIENT]), 'n1', null) ?? '', /not the node id "n1"/);
  assert.match(
    checkPeerCertificate(cert('n1', [SERVER, CLIENT]), 'n1', ['n2']) ?? '',
    /none of which is allowed/,
  );
  assert.equal(checkPeerCertificate(cert('n1', [SERVER, CLIENT]), null, ['n1']), null, 'a probe: any id');
  assert.match(checkPeerCertificate(null, 'n1', null) ?? '', /no peer certificate/);
  assert.match(checkPeerCertificate({}, 'n1', null) ?? '', /no peer certificate/);
});

test('loopback hosts', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', 'LOCALHOST'])
    assert.ok(isLoopbackHost(h), h);
  for (const h of ['0.0.0.0', '10.0.0.1', '::', '[::]', 'example.com', '128.0.0.1'])
    assert.ok(!isLoopbackHost(h), h);
});

test('member addresses: CLIENT/PEER, and a bare CLIENT means its port + 1000', () => {
  assert.deepEqual(parseMemberAddress('127.0.0.1:50051'), {
    client: '127.0.0.1:50051',
    peer: '127.0.0.1:51051',
  });
  assert.deepEqual(parseMemberAddress('a:1/b:2'), { client: 'a:1', peer: 'b:2' });
  assert.equal(formatMemberAddress(parseMemberAddress('a:1/b:2')), 'a:1/b:2');
  assert.equal(defaultPeerAddress('[::1]:8001'), '[::1]:9001');
  assert.throws(() => defaultPeerAddress('h:65000'), /above 65535/);
  assert.throws(() => parseMemberAddress('a:1/b'), MemberAddressError);
  assert.throws(() => parseMemberAddress('a/b:1'), /client address must be host:port/);
});

test('a node with another secret is refused both ways and gets nothing delivered; a probe authenticates', async () => {
  const h = await GrpcHarness.start({
    ids: ['n1', 'n2'],
    transport: { auth: { kind: 'secret', secret: SECRET } },
  });
  try {
    const inbox1 = new Inbox();
    const inbox2 = new Inbox();
    h.transport('n1').start(inbox1.handlers);
    h.transport('n2').start(inbox2.handlers);
    h.transport('n1').send([hb('n1', 'n2', 1)]);
    await waitFor(() => inbox2.messages().length > 0, 'the first heartbeat');
    const who = await h.transport('n1').probe(h.addresses.get('n2') as string);
    assert.equal(who.id, 'n2');
    // n2 comes back with another secret at the same port
    await h.stop('n2');
    const t2 = await h.restartWith('n2', { auth: { kind: 'secret', secret: randomBytes(32) } });
    const inbox2b = new Inbox();
    t2.start(inbox2b.handlers);
    for (let i = 2; i < 40; i++) {
      h.transport('n1').send([hb('n1', 'n2', i)]);
      t2.send([hb('n2', 'n1', i)]);
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitFor(
      () =>
        (h.logs.get('n1')?.find('peer handshake failed').length ?? 0) > 0 &&
        (h.logs.get('n2')?.find('peer handshake failed').length ?? 0) > 0,
      'both sides to refuse',
    );
    assert.equal(inbox2b.messages().length, 0, 'nothing from n1 reached n2');
    assert.equal(inbox1.messages().length, 0, 'nothing from n2 reached n1');
    const reasons = [...(h.logs.get('n1')?.find('peer handshake failed') ?? [])].map((l) =>
      String(l.obj['reason']),
    );
    assert.ok(
      reasons.some((r) => /wrong proof of the cluster secret|peer authentication failed/.test(r)),
      reasons.join('; '),
    );
    await assert.rejects(
      h.transport('n1').probe(h.addresses.get('n2') as string),
      /did not authenticate|UNAUTHENTICATED/,
    );
  } finally {
    await h.close();
  }
});

test('different secrets: both ends log that the secret proof failed, naming the peer and where each side’s secret comes from', async () => {
  const h = await GrpcHarness.start({
    ids: ['n1', 'n2'],
    transport: {
      auth: { kind: 'secret', secret: SECRET, source: { kind: 'peer-secret-file', file: '/etc/n1-secret' } },
    },
  });
  try {
    const inbox2 = new Inbox();
    await h.stop('n2');
    const t2 = await h.restartWith('n2', {
      auth: {
        kind: 'secret',
        secret: randomBytes(32),
        source: { kind: 'user-file', file: '/home/u/.config/raftkv/peer-secrets/raftkv' },
      },
    });
    t2.start(inbox2.handlers);
    h.transport('n1').start(new Inbox().handlers);
    // only n1 sends: n1 is the client, n2 only the server of the failed handshake
    for (let i = 1; i < 40 && (h.logs.get('n2')?.find('peer handshake refused').length ?? 0) === 0; i++) {
      h.transport('n1').send([hb('n1', 'n2', i)]);
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitFor(
      () =>
        (h.logs.get('n1')?.find('peer handshake failed').length ?? 0) > 0 &&
        (h.logs.get('n2')?.find('peer handshake refused').length ?? 0) > 0,
      'both ends to log',
    );
    const client = h.logs.get('n1')?.find('peer handshake failed')[0];
    assert.equal(client?.obj['peer'], 'n2');
    const cr = String(client?.obj['reason']);
    assert.match(cr, /the secret proof failed/);
    assert.match(cr, /this node's secret is its --peer-secret-file \/etc\/n1-secret/);
    assert.match(cr, /node n2's secret is the per-user secret file of the user running it/);
    const server = h.logs.get('n2')?.find('peer handshake refused')[0];
    assert.equal(server?.obj['peer'], 'n1');
    const sr = String(server?.obj['reason']);
    assert.match(sr, /the secret proof failed/);
    assert.match(
      sr,
      /this node's secret is the per-user secret file \/home\/u\/\.config\/raftkv\/peer-secrets\/raftkv/,
    );
    assert.match(sr, /node n1's secret is its --peer-secret-file/);
    assert.doesNotMatch(sr, /\/etc\/n1-secret/, 'a path never travels in the handshake');
    assert.equal(inbox2.messages().length, 0, 'nothing from n1 reached n2');
  } finally {
    await h.close();
  }
});
