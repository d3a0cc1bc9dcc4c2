// The profile summarizer and the put classifier behind `npm run profile`, on a small synthetic profile.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CallFrame, type CpuProfile, summarize } from '../../bench/lib/cpuprofile.ts';
import { classifyPutSample, PUT_CATEGORIES } from '../../bench/lib/put-profile.ts';

const f = (functionName: string, url = ''): CallFrame => ({ functionName, url, lineNumber: 0 });

// (root) -> idle | gc | program | onStream(src/grpc) -> respond(http2) | drive(src/node) -> persist(src/storage)
//        -> writev(fs) | onData(src/transport) -> step(src/raft) | socketRead(http2, none of ours above)
function profile(): CpuProfile {
  const nodes = [
    { id: 1, callFrame: f('(root)'), children: [2, 3, 4, 5, 7, 10, 12] },
    { id: 2, callFrame: f('(idle)') },
    { id: 3, callFrame: f('(garbage collector)') },
    { id: 4, callFrame: f('(program)') },
    { id: 5, callFrame: f('onStream', 'file:///r/dist/src/grpc/server.js'), children: [6] },
    { id: 6, callFrame: f('respond', 'node:internal/http2/core') },
    { id: 7, callFrame: f('drive', 'file:///r/dist/src/node/raft-node.js'), children: [8] },
    { id: 8, callFrame: f('persist', 'file:///r/dist/src/storage/file-storage.js'), children: [9] },
    { id: 9, callFrame: f('writev', 'node:internal/fs/promises') },
    { id: 10, callFrame: f('onData', 'file:///r/dist/src/transport/grpc.js'), children: [11] },
    { id: 11, callFrame: f('step', 'file:///r/dist/src/raft/raft.js') },
    { id: 12, callFrame: f('onStreamRead', 'node:internal/http2/core') },
  ];
  // One sample per node id below, each 1000 µs after the previous one.
  const samples = [2, 3, 4, 6, 6, 9, 11, 12, 2, 6];
  return { nodes, samples, timeDeltas: samples.map(() => 1000), startTime: 0, endTime: 10_000 };
}

describe('cpuprofile summary', () => {
  it('splits busy time into categories that add up, innermost own frame first', () => {
    const s = summarize(profile(), classifyPutSample, 5);
    assert.equal(s.totalMs, 10);
    assert.equal(s.idleMs, 2);
    assert.equal(s.busyMs, 8);
    assert.equal(s.gcMs, 1);
    const ms = Object.fromEntries(s.categories.map((c) => [c.name, c.ms]));
    assert.equal(ms['API layer: gRPC on HTTP/2, framing, protobuf'], 4); // respond x3 under src/grpc + a bare socket read
    assert.equal(ms['WAL: encode, write, fsync'], 1); // fs under storage under node: storage wins
    assert.equal(ms['Raft core'], 1); // raft under transport: the inner frame wins
    assert.equal(ms['garbage collector'], 1);
    assert.equal(ms['native, unattributed (V8, libuv, nghttp2, syscalls)'], 1);
    assert.equal(
      s.categories.reduce((a, c) => a + c.ms, 0),
      s.busyMs,
    );
    for (const c of s.categories) assert.ok((PUT_CATEGORIES as readonly string[]).includes(c.name));
  });

  it('lists functions by self time, largest first, without idle', () => {
    const s = summarize(profile(), classifyPutSample, 3);
    assert.equal(s.top.length, 3);
    assert.match(s.top[0]!.fn, /^respond/);
    assert.equal(s.top[0]!.selfMs, 3);
    assert.ok(s.top.every((t, i) => i === 0 || s.top[i - 1]!.selfMs >= t.selfMs));
    assert.ok(!s.top.some((t) => t.fn === '(idle)'));
  });

  it('keeps only samples inside the window', () => {
    // Samples end at 1000, 2000, ... 10000 µs; [3500, 6000] holds samples 4-6: respond, respond, writev.
    const s = summarize(profile(), classifyPutSample, 5, { fromUs: 3500, toUs: 6000 });
    assert.equal(s.busyMs, 3);
    assert.equal(s.top[0]!.selfMs, 2);
  });
});
