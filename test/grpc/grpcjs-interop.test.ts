// Interop with @grpc/grpc-js, the reference client: unary, streaming, metadata, deadlines, cancellation,
// big messages, limits, errors with details, compression, health, graceful shutdown.

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Status } from '../../src/grpc/index.ts';
import {
  type EchoReply,
  echoClientCtor,
  observed,
  type Started,
  startEcho,
  unary,
  waitFor,
  waitIdle,
} from './helpers.ts';

const Echo = echoClientCtor();

describe('grpc-js client against the lean server', () => {
  let s: Started;
  let client: grpc.Client;
  before(async () => {
    s = await startEcho({ maxReceiveMessageSize: 8 * 1024 * 1024, maxSendMessageSize: 6 * 1024 * 1024 });
    client = new Echo(s.address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
    });
  });
  after(async () => {
    client.close();
    await s.server.close(1000);
  });

  it('answers a unary call', async () => {
    const r = await unary(client, 'Unary', { text: 'héllo', payload: Buffer.from([0, 1, 2, 255]) });
    assert.equal(r.err, null);
    assert.equal(r.res?.text, 'héllo');
    assert.deepEqual(Buffer.from(r.res?.payload ?? []), Buffer.from([0, 1, 2, 255]));
    assert.equal(r.status?.code, grpc.status.OK);
  });

  it('passes metadata both ways, including binary values', async () => {
    const md = new grpc.Metadata();
    md.add('x-echo-header', 'abc');
    md.add('x-multi', 'one');
    md.add('x-multi', 'two');
    const bin = Buffer.from([0, 1, 2, 3, 250, 251, 252, 253, 254, 255]);
    md.add('x-echo-bin', bin);
    const r = await unary(client, 'Unary', { text: 'm' }, md);
    assert.equal(r.err, null);
    assert.deepEqual(r.headers?.get('x-echo-header'), ['abc']);
    assert.deepEqual(r.status?.metadata.get('x-echo-bin'), [bin]);
    const seen = r.res?.metadata ?? [];
    assert.ok(seen.includes('x-echo-header=abc'));
    assert.ok(seen.includes(`x-echo-bin=${bin.toString('hex')}`));
    assert.ok(seen.includes('x-multi=one') || seen.some((x) => x.startsWith('x-multi=one')));
  });

  it('maps a GrpcError to its status, with percent-encoded message, details and trailers', async () => {
    const details = Buffer.from([8, 5, 18, 3, 0x66, 0x6f, 0x6f, 0, 255]);
    const message = 'naïve 100% ✓\nnew line';
    const r = await unary(client, 'Unary', {
      fail_code: Status.NOT_FOUND,
      fail_message: message,
      fail_details: details,
    });
    assert.equal(r.err?.code, grpc.status.NOT_FOUND);
    assert.equal(r.err?.details, message);
    assert.deepEqual(r.status?.metadata.get('grpc-status-details-bin'), [details]);
    assert.deepEqual(r.status?.metadata.get('x-fail-trailer'), ['yes']);
  });

  it('turns an unexpected exception into INTERNAL with a generic message, logged once', async () => {
    const before = s.log.records.length;
    const r = await unary(client, 'Unary', { throw_plain: true });
    assert.equal(r.err?.code, grpc.status.INTERNAL);
    assert.equal(r.err?.details, 'Internal server error');
    assert.ok(!String(r.err?.message).includes('passwd'));
    const added = s.log.records.slice(before);
    assert.equal(added.length, 1);
    assert.equal(added[0]?.level, 'error');
  });

  it('answers UNIMPLEMENTED for an unknown method and for a method without a handler', async () => {
    const r1 = await new Promise<grpc.ServiceError | null>((resolve) => {
      client.makeUnaryRequest(
        '/test.echo.Echo/Nope',
        (x: Buffer) => x,
        (x: Buffer) => x,
        Buffer.alloc(0),
        (err) => resolve(err),
      );
    });
    assert.equal(r1?.code, grpc.status.UNIMPLEMENTED);
    const r2 = await unary(client, 'NotImplemented', {});
    assert.equal(r2.err?.code, grpc.status.UNIMPLEMENTED);
  });

  it('expires a call at its deadline and aborts the handler signal', async () => {
    const aborts = observed.aborts;
    const r = await unary(client, 'Unary', { delay_ms: 30_000 }, new grpc.Metadata(), {
      deadline: Date.now() + 200,
    });
    assert.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED);
    await waitFor(() => observed.aborts > aborts, 'handler abort');
    await waitIdle(s.server);
  });

  it('cancels the handler when the client cancels (RST_STREAM)', async () => {
    const aborts = observed.aborts;
    const fn = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>)[
      'Unary'
    ]!.bind(client);
    const done = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = fn({ delay_ms: 30_000 }, (err: grpc.ServiceError | null) => resolve(err));
      setTimeout(() => call.cancel(), 100);
    });
    assert.equal((await done)?.code, grpc.status.CANCELLED);
    await waitFor(() => observed.aborts > aborts, 'handler abort');
    await waitIdle(s.server);
  });

  it('carries big messages both ways', async () => {
    const big = Buffer.alloc(5 * 1024 * 1024 + 3);
    for (let i = 0; i < big.length; i++) big[i] = i * 31;
    const r = await unary(client, 'Unary', { payload: big });
    assert.equal(r.err, null);
    assert.ok(Buffer.from(r.res?.payload ?? []).equals(big));
    const r2 = await unary(client, 'Unary', { reply_size: 6 * 1024 * 1024 - 100 });
    assert.equal(r2.err, null);
    assert.equal(r2.res?.payload?.length, 6 * 1024 * 1024 - 100);
  });

  it('enforces the receive and send limits with RESOURCE_EXHAUSTED naming the sizes', async () => {
    const r = await unary(client, 'Unary', { payload: Buffer.alloc(9 * 1024 * 1024) });
    assert.equal(r.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(r.err?.details ?? '', /larger than max \(\d+ vs\. 8388608\)/);
    const r2 = await unary(client, 'Unary', { reply_size: 7 * 1024 * 1024 });
    assert.equal(r2.err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(r2.err?.details ?? '', /Sent message larger than max \(\d+ vs\. 6291456\)/);
    // the connection still serves
    assert.equal((await unary(client, 'Unary', { text: 'ok' })).res?.text, 'ok');
  });

  it('streams both ways on a bidi call, in order', async () => {
    const fn = (
      client as unknown as Record<string, (...a: unknown[]) => grpc.ClientDuplexStream<object, EchoReply>>
    )['Bidi']!.bind(client);
    const call = fn();
    const got: EchoReply[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (m: EchoReply) => got.push(m));
      call.on('end', resolve);
      call.on('error', reject);
    });
    const N = 2000;
    for (let i = 0; i < N; i++)
      call.write({ text: `m${i}`, payload: Buffer.alloc(i % 3 === 0 ? 40_000 : 10) });
    call.end();
    await ended;
    assert.equal(got.length, N);
    got.forEach((m, i) => {
      assert.equal(m.text, `m${i}`);
      assert.equal(m.seq ?? 0, i);
    });
  });

  it('ends a bidi call with the status a handler throws mid-stream', async () => {
    const fn = (
      client as unknown as Record<string, (...a: unknown[]) => grpc.ClientDuplexStream<object, EchoReply>>
    )['Bidi']!.bind(client);
    const call = fn();
    const got: EchoReply[] = [];
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      call.on('data', (m: EchoReply) => got.push(m));
      call.on('error', resolve);
      call.write({ text: 'a' });
      call.write({ text: 'b' });
      call.write({ fail_code: Status.ABORTED, fail_message: 'stop here' });
      call.write({ text: 'never' });
    });
    assert.equal(err.code, grpc.status.ABORTED);
    assert.equal(err.details, 'stop here');
    assert.deepEqual(
      got.map((m) => m.text),
      ['a', 'b'],
    );
    call.end();
  });

  it('serves server-streaming and client-streaming methods', async () => {
    const ss = (
      client as unknown as Record<string, (...a: unknown[]) => grpc.ClientReadableStream<EchoReply>>
    )['ServerStream']!.bind(client);
    const got: EchoReply[] = [];
    await new Promise<void>((resolve, reject) => {
      const c = ss({ text: 'x', count: 50 });
      c.on('data', (m: EchoReply) => got.push(m));
      c.on('end', resolve);
      c.on('error', reject);
    });
    assert.equal(got.length, 50);
    const cs = (client as unknown as Record<string, (...a: unknown[]) => grpc.ClientWritableStream<object>>)[
      'ClientStream'
    ]!.bind(client);
    const res = await new Promise<EchoReply | undefined>((resolve, reject) => {
      const c = cs((err: grpc.ServiceError | null, r?: EchoReply) => (err ? reject(err) : resolve(r)));
      for (const t of ['a', 'b', 'c']) c.write({ text: t });
      c.end();
    });
    assert.equal(res?.text, 'abc');
    assert.equal(res?.received, 3);
  });

  it('refuses gzip and deflate requests UNIMPLEMENTED, naming identity, and grpc-js then sends identity', async () => {
    for (const algo of [1, 2]) {
      const c = new Echo(s.address, grpc.credentials.createInsecure(), {
        'grpc.default_compression_algorithm': algo,
      });
      const first = await unary(c, 'Unary', { text: 'zip', payload: Buffer.alloc(10_000, 65) });
      assert.equal(first.err?.code, grpc.status.UNIMPLEMENTED, String(first.err));
      assert.match(first.err?.details ?? '', /grpc-encoding "(gzip|deflate)".*accepts identity only/);
      // grpc-js reads grpc-accept-encoding and stops compressing on this channel.
      const r = await unary(c, 'Unary', { text: 'zip', payload: Buffer.alloc(10_000, 65) });
      assert.equal(r.err, null, String(r.err));
      assert.equal(r.res?.payload?.length, 10_000);
      c.close();
    }
  });

  it('serves grpc.health.v1 Check and Watch', async () => {
    const H = new grpc.Client(s.address, grpc.credentials.createInsecure());
    const enc = (svc: string): Buffer =>
      svc === ''
        ? Buffer.alloc(0)
        : Buffer.concat([Buffer.from([10, Buffer.byteLength(svc)]), Buffer.from(svc)]);
    const check = (svc: string): Promise<{ err: grpc.ServiceError | null; res: Buffer | undefined }> =>
      new Promise((resolve) => {
        H.makeUnaryRequest(
          '/grpc.health.v1.Health/Check',
          (x: Buffer) => x,
          (x: Buffer) => x,
          enc(svc),
          (err, res) => resolve({ err, res }),
        );
      });
    assert.deepEqual((await check('')).res, Buffer.from([8, 1]));
    assert.deepEqual((await check('test.echo.Echo')).res, Buffer.from([8, 1]));
    assert.equal((await check('nope')).err?.code, grpc.status.NOT_FOUND);
    const watch = H.makeServerStreamRequest(
      '/grpc.health.v1.Health/Watch',
      (x: Buffer) => x,
      (x: Buffer) => x,
      enc('test.echo.Echo'),
    );
    const seen: Buffer[] = [];
    watch.on('data', (b: Buffer) => seen.push(b));
    watch.on('error', () => {});
    await waitFor(() => seen.length === 1, 'first watch status');
    s.server.health?.setStatus('test.echo.Echo', 'NOT_SERVING');
    await waitFor(() => seen.length === 2, 'second watch status');
    assert.deepEqual(seen, [Buffer.from([8, 1]), Buffer.from([8, 2])]);
    s.server.health?.setStatus('test.echo.Echo', 'SERVING');
    watch.cancel();
    H.close();
    await waitIdle(s.server);
  });

  it('leaves no live calls or timers behind', async () => {
    await waitIdle(s.server);
  });
});

describe('graceful shutdown', () => {
  it('lets in-flight calls finish, refuses new ones, then closes', async () => {
    const s = await startEcho();
    const client = new Echo(s.address, grpc.credentials.createInsecure());
    const inflight = unary(client, 'Unary', { text: 'slow', delay_ms: 300 });
    await waitFor(() => s.server.stats().calls === 1, 'call in flight');
    const closed = s.server.close(5000);
    const r = await inflight;
    assert.equal(r.err, null);
    assert.equal(r.res?.text, 'slow');
    await closed;
    assert.deepEqual(s.server.stats(), { sessions: 0, calls: 0, timers: 0 });
    const late = await unary(client, 'Unary', { text: 'late' }, new grpc.Metadata(), {
      deadline: Date.now() + 2000,
    });
    assert.equal(late.err?.code, grpc.status.UNAVAILABLE);
    client.close();
  });

  it('cancels calls still running when the grace period ends', async () => {
    const s = await startEcho();
    const client = new Echo(s.address, grpc.credentials.createInsecure());
    const aborts = observed.aborts;
    const inflight = unary(client, 'Unary', { delay_ms: 60_000 });
    await waitFor(() => s.server.stats().calls === 1, 'call in flight');
    await s.server.close(100);
    const r = await inflight;
    assert.ok(r.err !== null);
    assert.ok(
      [grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.INTERNAL].includes(r.err?.code ?? -1),
    );
    assert.ok(observed.aborts > aborts);
    assert.deepEqual(s.server.stats(), { sessions: 0, calls: 0, timers: 0 });
    client.close();
  });
});

describe('failures inside the server never crash it', () => {
  it('survives a logger that throws and a handler that returns garbage', async () => {
    const { createGrpcServer } = await import('../../src/grpc/index.ts');
    const { echoService } = await import('./helpers.ts');
    const server = createGrpcServer({
      log: {
        error() {
          throw new Error('logger down');
        },
        warn() {
          throw new Error('logger down');
        },
      },
    });
    server.addService(echoService(), {
      Unary: (req: { throw_plain?: boolean }) => {
        if (req.throw_plain === true) throw new Error('boom');
        return 42 as unknown as object;
      },
      Ping: async () => {
        throw new RangeError('async boom');
      },
    });
    const port = await server.listen('127.0.0.1', 0);
    const client = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const r1 = await unary(client, 'Unary', { throw_plain: true });
    assert.equal(r1.err?.code, grpc.status.INTERNAL);
    const r2 = await unary(client, 'Unary', {});
    assert.equal(r2.err?.code, grpc.status.INTERNAL);
    const r3 = await unary(client, 'Ping', {});
    assert.equal(r3.err?.code, grpc.status.INTERNAL);
    assert.equal(r3.err?.details, 'Internal server error');
    client.close();
    await waitIdle(server);
    await server.close(500);
  });
});

describe('max concurrent streams', () => {
  it('never runs more calls on a connection than the limit; the client queues the rest', async () => {
    const s = await startEcho({ maxConcurrentStreams: 2 });
    const client = new Echo(s.address, grpc.credentials.createInsecure());
    let peak = 0;
    const probe = setInterval(() => {
      peak = Math.max(peak, s.server.stats().calls);
    }, 5);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => unary(client, 'Unary', { text: `q${i}`, delay_ms: 50 })),
    );
    clearInterval(probe);
    assert.deepEqual(
      results.map((r) => r.res?.text),
      ['q0', 'q1', 'q2', 'q3', 'q4', 'q5'],
    );
    assert.ok(peak <= 2, `peak ${peak}`);
    client.close();
    await s.server.close(500);
  });
});
