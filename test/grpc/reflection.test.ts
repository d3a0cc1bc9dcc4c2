// Server reflection consumed by @grpc/grpc-js + @grpc/proto-loader the way grpcurl consumes it: list services,
// fetch the file containing a symbol (with its dependencies), build a client from those descriptors alone, call.
// Also checks the descriptors' shape (qualified type names, map entries, dependencies).

import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor.js';
import { DescriptorIndex } from '../../src/grpc/index.ts';
import { echoService, type Started, startEcho, unary } from './helpers.ts';

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
const field = (num: number, data: Buffer): Buffer =>
  Buffer.concat([varint((num << 3) | 2), varint(data.length), data]);

function* fields(buf: Buffer): Generator<[number, Buffer]> {
  let i = 0;
  while (i < buf.length) {
    let key = 0;
    let shift = 0;
    let b: number;
    do {
      b = buf[i++]!;
      key |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    let len = 0;
    shift = 0;
    do {
      b = buf[i++]!;
      len |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    yield [key >>> 3, buf.subarray(i, i + len)];
    i += len;
  }
}

function reflect(address: string, version: string, requests: Buffer[]): Promise<Buffer[]> {
  const c = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = c.makeBidiStreamRequest(
    `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
    (x: Buffer) => x,
    (x: Buffer) => x,
  );
  const out: Buffer[] = [];
  return new Promise((resolve, reject) => {
    call.on('data', (b: Buffer) => out.push(b));
    call.on('end', () => {
      c.close();
      resolve(out);
    });
    call.on('error', reject);
    for (const r of requests) call.write(r);
    call.end();
  });
}

describe('server reflection', () => {
  let s: Started;
  before(async () => {
    s = await startEcho();
  });
  after(async () => {
    await s.server.close(1000);
  });

  it('lets a grpc-js client call a method it learned only through reflection', async () => {
    const [list, files] = await reflect(s.address, 'v1', [
      field(7, Buffer.from('')),
      field(4, Buffer.from('test.echo.Echo.Unary')),
    ]);
    const names: string[] = [];
    for (const [n, v] of fields(list!)) {
      if (n === 6)
        for (const [, svc] of fields(v)) for (const [, name] of fields(svc)) names.push(name.toString());
    }
    assert.deepEqual(names.sort(), [
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
      'test.echo.Echo',
    ]);
    const fdps: Buffer[] = [];
    for (const [n, v] of fields(files!))
      if (n === 4) for (const [, fd] of fields(v)) fdps.push(Buffer.from(fd));
    assert.ok(fdps.length >= 2);
    const set = Buffer.concat(fdps.map((b) => field(1, b)));
    const def = protoLoader.loadFileDescriptorSetFromBuffer(set, {
      keepCase: true,
      longs: String,
      defaults: false,
    });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      test: { echo: { Echo: grpc.ServiceClientConstructor } };
    };
    const client = new pkg.test.echo.Echo(s.address, grpc.credentials.createInsecure());
    // proto-loader (protobufjs 7) reads map fields from descriptors as repeated entry messages, as on the wire.
    const r = await unary(client, 'Unary', {
      text: 'via reflection',
      counts: [{ key: 'a', value: 1 }],
      inner: { big: '123', tags: ['x'] },
    });
    client.close();
    assert.equal(r.err, null);
    assert.equal(r.res?.text, 'via reflection');
  });

  it('answers unknown symbols and files with NOT_FOUND and keeps the stream open', async () => {
    const res = await reflect(s.address, 'v1alpha', [
      field(4, Buffer.from('nope.Nope')),
      field(3, Buffer.from('nope.proto')),
      field(7, Buffer.from('*')),
    ]);
    assert.equal(res.length, 3);
    for (const r of res.slice(0, 2)) {
      const err = [...fields(r)].find(([n]) => n === 7);
      assert.ok(err !== undefined);
      assert.equal(err[1][0], 8); // error_code field, varint
      assert.equal(err[1][1], 5); // NOT_FOUND
    }
  });

  it('produces descriptors with qualified names, protoc map entries and dependencies', () => {
    const index = new DescriptorIndex([echoService()]);
    const file = index.files.get(index.symbols.get('test.echo.EchoRequest')!)!;
    assert.deepEqual(file.proto.dependency, ['google/protobuf/empty.proto']);
    const decoded = descriptor.FileDescriptorProto.decode(
      index.bytesOf(file.proto.name!)!,
    ) as unknown as descriptor.IFileDescriptorProto;
    const req = decoded.messageType!.find((m) => m.name === 'EchoRequest')!;
    const counts = req.field!.find((f) => f.name === 'counts')!;
    assert.equal(counts.typeName, '.test.echo.EchoRequest.CountsEntry');
    assert.ok(req.nestedType!.some((n) => n.name === 'CountsEntry' && n.options?.mapEntry === true));
    assert.equal(req.field!.find((f) => f.name === 'inner')!.typeName, '.test.echo.EchoRequest.Inner');
    assert.equal(req.field!.find((f) => f.name === 'kind')!.typeName, '.test.echo.Kind');
    // A Root rebuilt from the served set decodes what the original encodes.
    const back = protobuf.Root.fromDescriptor(index.fileDescriptorSet(), { keepCase: true });
    const T = back.lookupType('test.echo.EchoRequest');
    const msg = { text: 't', counts: { k: 3 }, reply_size: 9 };
    const bytes = echoService().methods[0]!.requestType.encode(msg).finish();
    assert.deepEqual(T.toObject(T.decode(bytes)), msg);
  });
});
