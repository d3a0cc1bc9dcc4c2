// The peer-stream sender of `npm run bench:grpc`: one raw node:http2 client stream to /raft.PeerBench/Stream with
// gRPC framing and 1 MiB / 16 MiB windows, keeping WINDOW Batch messages of SIZE bytes unacknowledged. It is the
// same cheap sender for both server stacks, so the server's CPU per message is what differs. Reports the ack count
// to its parent over IPC on 'mark'.
// Usage (spawned by bench-grpc.ts): node --import tsx scripts/bench-grpc-sender.ts --port P --size 1024 --window 64

import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Deframer, encodeFrame, loadProtoFiles } from '../src/grpc/index.ts';

const { values: a } = parseArgs({
  options: {
    port: { type: 'string' },
    size: { type: 'string', default: '1024' },
    window: { type: 'string', default: '64' },
  },
});
const root = loadProtoFiles(fileURLToPath(new URL('../test/grpc/fixtures/kvbench.proto', import.meta.url)));
const Batch = root.lookupType('raft.Batch');
const Ack = root.lookupType('raft.Ack');
const data = randomBytes(Number(a.size));
const window = Number(a.window);

const session = http2.connect(`http://127.0.0.1:${a.port}`, { settings: { initialWindowSize: 1 << 20 } });
session.on('connect', () => session.setLocalWindowSize(16 << 20));
session.on('error', (e) => {
  console.error(`sender: ${e.message}`);
  process.exit(1);
});
const stream = session.request({
  ':method': 'POST',
  ':path': '/raft.PeerBench/Stream',
  'content-type': 'application/grpc',
  te: 'trailers',
});
let seq = 0;
let inflight = 0;
let acks = 0;
const pump = (): void => {
  while (inflight < window) {
    inflight++;
    stream.write(encodeFrame(Batch.encode({ seq: ++seq, data }).finish()));
  }
};
const deframer = new Deframer(64 << 20);
const sink = {
  onMessage(m: Buffer): boolean {
    Ack.decode(m);
    inflight--;
    acks++;
    pump();
    return true;
  },
  onFrameError(): void {
    console.error('sender: bad frame from server');
    process.exit(1);
  },
};
stream.on('data', (chunk: Buffer) => deframer.push(chunk, sink));
stream.on('error', (e) => {
  console.error(`sender: ${e.message}`);
  process.exit(1);
});
stream.on('response', () => process.send?.('ready'));
pump();
process.on('message', (m) => {
  if (m === 'mark') process.send?.({ acks, t: performance.now() });
  if (m === 'exit') process.exit(0);
});
