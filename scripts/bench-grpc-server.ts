// The server side of `npm run bench:grpc`: raft.KeyValueService Put/Get answered from a Map, and
// raft.PeerBench/Stream acking every Batch, on either this repo's lean gRPC layer or @grpc/grpc-js.
// Both stacks use the same protobufjs types (loaded from test/grpc/fixtures/kvbench.proto) and the same handlers,
// so the difference is the gRPC stack alone.
// Usage: node --import tsx scripts/bench-grpc-server.ts --stack lean|lean-node|grpcjs [--port 0]
//   (prints "listening on PORT"; lean runs the layer's own HTTP/2 engine, lean-node the layer on node:http2)

import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  createGrpcServer,
  loadProtoFiles,
  type ServerStreamCall,
  serviceDefinition,
} from '../src/grpc/index.ts';

const { values: a } = parseArgs({
  options: { stack: { type: 'string', default: 'lean' }, port: { type: 'string', default: '0' } },
});
const PROTO = fileURLToPath(new URL('../test/grpc/fixtures/kvbench.proto', import.meta.url));
const root = loadProtoFiles(PROTO);
const kv = serviceDefinition(root, 'raft.KeyValueService');
const peer = serviceDefinition(root, 'raft.PeerBench');

interface PutRequest {
  key: string;
  value: string;
}
interface GetRequest {
  key: string;
}
interface Batch {
  seq: number | { toNumber(): number };
}

const store = new Map<string, string>();
let revision = 0;
const put = (r: PutRequest): object => {
  store.set(r.key, r.value);
  return { revision: ++revision };
};
const get = (r: GetRequest): object => {
  const v = store.get(r.key);
  return v === undefined ? { found: false } : { value: v, found: true };
};

async function lean(): Promise<number> {
  const server = createGrpcServer({
    reflection: false,
    health: false,
    http2Engine: a.stack === 'lean-node' ? 'node' : 'own',
  });
  server.addService(kv, { Put: put, Get: get });
  server.addService(peer, {
    Stream: async (call: ServerStreamCall<Batch, object>) => {
      for await (const b of call) {
        if (!call.write({ seq: b.seq })) await call.drain();
      }
    },
  });
  return server.listen('127.0.0.1', Number(a.port));
}

function grpcjs(): Promise<number> {
  const method = (m: (typeof kv.methods)[number]): grpc.MethodDefinition<object, object> => ({
    path: m.path,
    requestStream: m.requestStream,
    responseStream: m.responseStream,
    requestSerialize: (o: object) => Buffer.from(m.requestType.encode(o).finish()),
    requestDeserialize: (b: Buffer) => m.requestType.decode(b),
    responseSerialize: (o: object) => {
      const u8 = m.responseType.encode(o).finish();
      return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    },
    responseDeserialize: (b: Buffer) => m.responseType.decode(b),
  });
  const def = (methods: readonly (typeof kv.methods)[number][]): grpc.ServiceDefinition =>
    Object.fromEntries(methods.map((m) => [m.name, method(m)]));
  const server = new grpc.Server();
  server.addService(def(kv.methods), {
    Put: (call: grpc.ServerUnaryCall<PutRequest, object>, cb: grpc.sendUnaryData<object>) =>
      cb(null, put(call.request)),
    Get: (call: grpc.ServerUnaryCall<GetRequest, object>, cb: grpc.sendUnaryData<object>) =>
      cb(null, get(call.request)),
  });
  server.addService(def(peer.methods), {
    Stream: (call: grpc.ServerDuplexStream<Batch, object>) => {
      call.on('data', (b: Batch) => call.write({ seq: b.seq }));
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${a.port}`, grpc.ServerCredentials.createInsecure(), (e, port) =>
      e ? reject(e) : resolve(port),
    );
  });
}

const port = a.stack === 'grpcjs' ? await grpcjs() : await lean();
console.log(`listening on ${port}`);
process.on('SIGTERM', () => process.exit(0));
