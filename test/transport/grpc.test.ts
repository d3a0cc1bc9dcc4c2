// The gRPC peer transport: the conformance suite, then what only a network transport has:
// frames, handshakes, TLS and mTLS, backpressure, the wire protocol seen by a raw client.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Message } from '../../src/raft/types.ts';
import { encodeBatch } from '../../src/transport/codec.ts';
import { GrpcTransport, PEER_PROTO_FILE, peerServiceDefinition } from '../../src/transport/grpc.ts';
import { haveOpenssl, makeCa, makeLeaf, NODE_EXT } from '../support/certs.ts';
import { hb, Inbox, transportConformance, turn, waitFor } from './conformance.ts';
import { CapturingLogger, GrpcHarness } from './grpc-harness.ts';

transportConformance('grpc', () => GrpcHarness.start());

async function withGrpc(
  opts: Parameters<typeof GrpcHarness.start>[0],
  body: (h: GrpcHarness, inbox: Map<string, Inbox>) => Promise<void>,
): Promise<void> {
  const h = await GrpcHarness.start(opts);
  const inbox = new Map<string, Inbox>();
  for (const id of h.ids) {
    const i = new Inbox();
    inbox.set(id, i);
    h.transport(id).start(i.handlers);
  }
  try {
    await body(h, inbox);
  } finally {
    await h.close();
  }
}

test('the peer service comes from proto/peer.proto', () => {
  const def = peerServiceDefinition();
  assert.equal(def.fullName, 'raft.PeerService');
  assert.deepEqual(
    def.methods.map((m) => [m.name, m.requestStream, m.responseStream]),
    [['Stream', true, true]],
  );
  assert.ok(PEER_PROTO_FILE.endsWith('proto/peer.proto'));
});

test('grpc: all messages to a peer sent in one event-loop turn go in one frame', async () => {
  await withGrpc({}, async (h, inbox) => {
    const n1 = h.transport('n1');
    n1.send([hb('n1', 'n2', 0)]);
    await waitFor(() => inbox.get('n2')!.batches.length === 1, 'warm-up');
    const frames = n1.stats.framesSent;
    for (let i = 1; i <= 50; i++) n1.send([hb('n1', 'n2', i)]);
    await waitFor(() => inbox.get('n2')!.batches.length === 2, 'the coalesced batch');
    assert.equal(n1.stats.framesSent, frames + 1);
    assert.equal(inbox.get('n2')!.batches[1]!.length, 50);
    assert.equal(h.transport('n2').stats.framesReceived, 2);
    // one connect line each side, nothing per message
    assert.equal(h.logs.get('n1')!.find('peer connected').length, 1);
    assert.equal(h.logs.get('n2')!.find('peer stream accepted').length, 1);
  });
});

test('grpc: a node of another cluster is refused, with a clear error on both sides and backoff', async () => {
  await withGrpc({}, async (h) => {
    const log = new CapturingLogger();
    const rogue = new GrpcTransport({
      id: 'n1',
      clusterId: 'another-cluster',
      peers: new Map([['n2', h.addresses.get('n2')!]]),
      logger: log,
      backoffMinMs: 10,
      backoffMaxMs: 2000,
    });
    const ib = new Inbox();
    rogue.start(ib.handlers);
    try {
      rogue.send([hb('n1', 'n2', 0)]);
      await waitFor(() => log.find('peer handshake failed').length > 0, 'client-side error');
      const client = log.find('peer handshake failed')[0]!;
      assert.equal(client.level, 'error');
      assert.match(String(client.obj['reason']), /cluster id mismatch.*"test-cluster".*"another-cluster"/);
      const server = h.logs.get('n2')!.find('peer handshake refused');
      assert.equal(server.length, 1);
      assert.match(String(server[0]!.obj['reason']), /cluster id mismatch/);
      assert.ok(ib.unreachable.includes('n2'));
      // no hot loop: a refused handshake backs off at least backoffMaxMs/2 = 1 s
      for (let i = 0; i < 20; i++) {
        rogue.send([hb('n1', 'n2', i)]);
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(h.logs.get('n2')!.find('peer handshake refused').length, 1);
      assert.equal(rogue.stats.streamsOpened, 1);
      assert.equal(h.transport('n2').stats.messagesReceived, 0);
    } finally {
      await rogue.close();
    }
  });
});

test('grpc: a peer that is not the node it was expected to be is refused (node id mismatch)', async () => {
  await withGrpc({}, async (h, inbox) => {
    const n1 = h.transport('n1');
    n1.setPeer('n3', h.addresses.get('n2')!); // a wrong address book: n2 answers at "n3"'s address
    n1.send([hb('n1', 'n3', 0)]);
    await waitFor(() => h.logs.get('n1')!.find('peer handshake failed').length > 0, 'client-side error');
    assert.match(
      String(h.logs.get('n1')!.find('peer handshake failed')[0]!.obj['reason']),
      /node id mismatch.*expected node "n3".*this is node "n2"/,
    );
    assert.match(
      String(h.logs.get('n2')!.find('peer handshake refused')[0]!.obj['reason']),
      /node id mismatch/,
    );
    assert.ok(inbox.get('n1')!.unreachable.includes('n3'));
    assert.equal(inbox.get('n2')!.messages().length, 0);
  });
});

/** A raw gRPC call on node:http2: sends frames, returns the status and message. */
async function rawCall(
  address: string,
  frames: readonly Uint8Array[],
): Promise<{ code: string; message: string }> {
  const session = http2.connect(`http://${address}`);
  try {
    return await new Promise((resolve, reject) => {
      const s = session.request({
        ':method': 'POST',
        ':path': '/raft.PeerService/Stream',
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      let status: { code: string; message: string } | null = null;
      const take = (hd: http2.IncomingHttpHeaders): void => {
        if (hd['grpc-status'] !== undefined) {
          status = {
            code: String(hd['grpc-status']),
            message: decodeURIComponent(String(hd['grpc-message'] ?? '')),
          };
        }
      };
      s.on('response', take);
      s.on('trailers', take);
      s.on('data', () => {});
      s.on('error', reject);
      s.on('close', () => (status === null ? reject(new Error('no status')) : resolve(status)));
      for (const f of frames) {
        const b = Buffer.alloc(5 + f.length);
        b.writeUInt32BE(f.length, 1);
        b.set(f, 5);
        s.write(b);
      }
      s.end();
    });
  } finally {
    session.close();
  }
}

function frame(obj: object): Uint8Array {
  return peerServiceDefinition().methods[0]!.requestType.encode(obj).finish();
}

test('grpc: unsupported versions, frames before the hello and undecodable batches end the stream', async () => {
  await withGrpc({}, async (h) => {
    const addr = h.addresses.get('n2')!;
    const hello = { version: 1, cluster_id: 'test-cluster', from: 'n1', to: 'n2' };
    let r = await rawCall(addr, [frame({ hello: { ...hello, version: 99 } })]);
    assert.equal(r.code, '9');
    assert.match(r.message, /unsupported peer protocol version 99/);
    r = await rawCall(addr, [frame({ batch: encodeBatch([hb('n1', 'n2', 0)]) })]);
    assert.equal(r.code, '3');
    assert.match(r.message, /first frame must be a hello/);
    r = await rawCall(addr, [frame({ hello }), frame({ batch: new Uint8Array([1, 0, 5]) })]);
    assert.equal(r.code, '3');
    assert.match(r.message, /undecodable batch: .*message count/);
    r = await rawCall(addr, [frame({ hello }), frame({ batch: encodeBatch([hb('n3', 'n2', 0)]) })]);
    assert.equal(r.code, '3');
    assert.match(r.message, /a message from n3 to n2 on the stream from n1/);
    assert.equal(h.transport('n2').stats.messagesReceived, 0);
  });
});

test('grpc: a peer that cannot keep up gets messages dropped and reported, not buffered without bound', async () => {
  await withGrpc(
    { transport: { maxFrameBytes: 2 * 1024 * 1024, maxBufferedBytes: 3 * 1024 * 1024 } },
    async (h, inbox) => {
      const n1 = h.transport('n1');
      const msgs: Message[] = [];
      for (let i = 0; i < 20; i++) {
        msgs.push({
          type: 'snap',
          from: 'n1',
          to: 'n2',
          term: 1,
          meta: { index: 10, term: 1, conf: { voters: ['n1'], learners: [] } },
          offset: i * 1024 * 1024,
          data: new Uint8Array(1024 * 1024),
          done: false,
        });
      }
      n1.send(msgs);
      await turn();
      assert.ok(n1.stats.messagesDropped > 0);
      assert.ok(inbox.get('n1')!.unreachable.includes('n2'));
      assert.equal(h.logs.get('n1')!.find('peer is not reading fast enough: dropping messages').length, 1);
      const sent = n1.stats.messagesSent;
      await waitFor(() => inbox.get('n2')!.messages().length === sent, 'what was sent');
      // what arrived is a prefix, in order
      assert.deepEqual(
        inbox
          .get('n2')!
          .messages()
          .map((m) => (m as { offset: number }).offset),
        msgs.slice(0, sent).map((m) => (m as { offset: number }).offset),
      );
    },
  );
});

// ---- TLS ----
const skipTls = haveOpenssl ? false : 'SKIPPED: openssl is not installed';
if (skipTls) console.log(`# transport tls: ${skipTls}`);

interface Pems {
  ca: Buffer;
  key: Buffer;
  cert: Buffer;
  otherKey: Buffer;
  otherCert: Buffer;
}

function makeCerts(): Pems {
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-transport-tls-'));
  try {
    makeCa(dir, 'ca');
    makeCa(dir, 'other-ca');
    makeLeaf(dir, 'node', 'ca', NODE_EXT);
    makeLeaf(dir, 'other', 'other-ca', NODE_EXT);
    const f = (n: string): Buffer => readFileSync(join(dir, n));
    return {
      ca: f('ca.pem'),
      key: f('node.key'),
      cert: f('node.pem'),
      otherKey: f('other.key'),
      otherCert: f('other.pem'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let pems: Pems | null = null;
const certs = (): Pems => {
  pems ??= makeCerts();
  return pems;
};

test('grpc: TLS', { skip: skipTls }, async () => {
  const p = certs();
  await withGrpc(
    { serverTls: { key: p.key, cert: p.cert }, clientTls: { key: p.key, cert: p.cert, ca: p.ca } },
    async (h, inbox) => {
      h.transport('n1').send([hb('n1', 'n2', 0), hb('n1', 'n3', 0)]);
      h.transport('n3').send([hb('n3', 'n1', 0)]);
      await waitFor(() => inbox.get('n2')!.messages().length === 1, 'n1 -> n2 over TLS');
      await waitFor(() => inbox.get('n3')!.messages().length === 1, 'n1 -> n3 over TLS');
      await waitFor(() => inbox.get('n1')!.messages().length === 1, 'n3 -> n1 over TLS');
    },
  );
});

test('grpc: mutual TLS; a peer with a certificate from another CA is refused', {
  skip: skipTls,
}, async () => {
  const p = certs();
  await withGrpc(
    { serverTls: { key: p.key, cert: p.cert, ca: p.ca }, clientTls: { key: p.key, cert: p.cert, ca: p.ca } },
    async (h, inbox) => {
      h.transport('n1').send([hb('n1', 'n2', 0)]);
      await waitFor(() => inbox.get('n2')!.messages().length === 1, 'n1 -> n2 over mTLS');
      const log = new CapturingLogger();
      const rogue = new GrpcTransport({
        id: 'n3',
        clusterId: 'test-cluster',
        peers: new Map([['n2', h.addresses.get('n2')!]]),
        tls: { key: p.otherKey, cert: p.otherCert, ca: p.ca },
        logger: log,
      });
      const ib = new Inbox();
      rogue.start(ib.handlers);
      try {
        rogue.send([hb('n3', 'n2', 0)]);
        await waitFor(() => ib.unreachable.includes('n2'), 'the rogue peer is refused');
        assert.equal(log.find('peer unreachable').length, 1);
        assert.equal(inbox.get('n2')!.messages().length, 1);
      } finally {
        await rogue.close();
      }
    },
  );
});

test('grpc: removePeer closes the stream; setPeer moves a peer to a new address', async () => {
  await withGrpc({}, async (h, inbox) => {
    const n1 = h.transport('n1');
    n1.send([hb('n1', 'n2', 0)]);
    await waitFor(() => inbox.get('n2')!.messages().length === 1, 'first delivery');
    n1.removePeer('n2');
    assert.equal(n1.peers().has('n2'), false);
    await waitFor(
      () => h.logs.get('n2')!.find('peer stream closed').length === 1,
      'the server sees the stream end',
    );
    n1.send([hb('n1', 'n2', 1)]);
    assert.ok(inbox.get('n1')!.unreachable.includes('n2'));
    // n2 restarts at another port; n1 learns the new address
    await h.stop('n2');
    const oldAddress = h.addresses.get('n2')!;
    const t2 = await h.restart('n2', true);
    assert.notEqual(h.addresses.get('n2'), oldAddress);
    const again = new Inbox();
    t2.start(again.handlers);
    n1.setPeer('n2', h.addresses.get('n2')!);
    n1.send([hb('n1', 'n2', 2)]);
    await waitFor(() => again.messages().length === 1, 'delivery at the new address');
    assert.equal((again.messages()[0] as { readSeq: number }).readSeq, 2);
  });
});

test('grpc: a batch larger than maxFrameBytes is split into frames; a message larger than a frame is dropped', async () => {
  await withGrpc({ transport: { maxFrameBytes: 256 * 1024 } }, async (h, inbox) => {
    const n1 = h.transport('n1');
    const app = (i: number, bytes: number): Message => ({
      type: 'app',
      from: 'n1',
      to: 'n2',
      term: 1,
      prevIndex: i,
      prevTerm: 1,
      commit: 0,
      entries: [{ term: 1, index: i + 1, type: 0, data: new Uint8Array(bytes) }],
    });
    const msgs = Array.from({ length: 10 }, (_, i) => app(i, 100 * 1024));
    n1.send(msgs);
    await waitFor(() => inbox.get('n2')!.messages().length === 10, 'all ten');
    assert.ok(inbox.get('n2')!.batches.length >= 4, `${inbox.get('n2')!.batches.length} frames`);
    assert.deepStrictEqual(inbox.get('n2')!.messages(), msgs);
    n1.send([app(10, 300 * 1024), app(11, 10)]);
    await waitFor(() => inbox.get('n2')!.messages().length === 11, 'the small one');
    assert.equal((inbox.get('n2')!.messages()[10] as { prevIndex: number }).prevIndex, 11);
    assert.ok(inbox.get('n1')!.unreachable.includes('n2'));
    assert.equal(h.logs.get('n1')!.find('peer message larger than maxFrameBytes dropped').length, 1);
  });
});

test('grpc: a peer that accepts the connection but never answers is detected by keepalive', async () => {
  const net = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const hole = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
  const port = (hole.address() as import('node:net').AddressInfo).port;
  const log = new CapturingLogger();
  const t = new GrpcTransport({
    id: 'n1',
    clusterId: 'c',
    peers: new Map([['n2', `127.0.0.1:${port}`]]),
    logger: log,
    keepaliveMs: 100,
  });
  const ib = new Inbox();
  t.start(ib.handlers);
  try {
    t.send([hb('n1', 'n2', 0)]);
    await waitFor(() => ib.unreachable.includes('n2'), 'the silent peer reported');
    const line = log.find('peer unreachable')[0]!;
    assert.match(String((line.obj['err'] as Error).message), /keepalive ping/);
  } finally {
    await t.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => hole.close(r));
  }
});

test('grpc: repeated refusals are retried with backoff and logged once by the client', async () => {
  await withGrpc({}, async (h) => {
    const log = new CapturingLogger();
    const rogue = new GrpcTransport({
      id: 'n1',
      clusterId: 'another-cluster',
      peers: new Map([['n2', h.addresses.get('n2')!]]),
      logger: log,
      backoffMinMs: 5,
      backoffMaxMs: 20,
    });
    rogue.start(new Inbox().handlers);
    try {
      await waitFor(() => {
        rogue.send([hb('n1', 'n2', 0)]);
        return rogue.stats.streamsOpened >= 3 && log.find('peer handshake failed').length > 0;
      }, 'three refused attempts');
      assert.equal(log.find('peer handshake failed').length, 1);
    } finally {
      await rogue.close();
    }
  });
});
