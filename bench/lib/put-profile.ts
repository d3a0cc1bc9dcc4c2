// Where a put's CPU goes: the categories of `npm run profile`, decided per CPU sample from its stack.
//
// Rule: walk the stack from the innermost frame outwards; the first frame of this project's code
// (or of the fs layer) names the category. Node's HTTP/2 internals count for whatever of our code
// called them (peer transport, or the API); with none of ours on the stack (a new stream arriving,
// a socket read), they count as the API layer, which is where new streams come from. The receive
// side of peer streams is framed by src/grpc, so a peer message's deframing counts as the API.

import type { CallFrame } from './cpuprofile.ts';

export const PUT_CATEGORIES = [
  'API layer: gRPC on HTTP/2, framing, protobuf',
  'proposal, batching, replies (RaftNode, KV service)',
  'Raft core',
  'WAL: encode, write, fsync',
  'peer transport: encode, send, receive, decode',
  'apply (state machine)',
  'garbage collector',
  'native, unattributed (V8, libuv, nghttp2, syscalls)',
  'other (event loop, promises, timers)',
] as const;
export type PutCategory = (typeof PUT_CATEGORIES)[number];

const [API, PROPOSAL, CORE, WAL, PEER, APPLY, GC, NATIVE, OTHER] = PUT_CATEGORIES;

function ours(f: CallFrame): PutCategory | null {
  const u = f.url;
  if (u.includes('/src/storage/')) return WAL;
  if (u.includes('/src/transport/')) return PEER;
  if (u.includes('/src/raft/')) return CORE;
  if (u.includes('/src/kv/')) return f.functionName === 'encodeRequest' ? PROPOSAL : APPLY;
  if (u.includes('/src/node/') || u.includes('/src/server/')) return PROPOSAL;
  if (u.includes('/src/grpc/') || u.includes('/protobufjs/') || u.includes('/@protobufjs/')) return API;
  if (u.startsWith('node:internal/fs') || u === 'node:fs') return WAL;
  return null;
}

export function classifyPutSample(stack: readonly CallFrame[]): PutCategory {
  const top = stack[0];
  if (top === undefined) return OTHER;
  if (top.functionName === '(garbage collector)') return GC;
  if (top.functionName === '(program)') return NATIVE;
  let sawHttp2 = false;
  for (const f of stack) {
    const c = ours(f);
    if (c !== null) return c;
    if (f.url.startsWith('node:internal/http2') || f.url.startsWith('node:http2')) sawHttp2 = true;
  }
  return sawHttp2 ? API : OTHER;
}
