// The heap-profile summary of npm run profile:alloc, on a hand-made profile.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HeapProfileNode, summarizeHeapProfile } from '../../bench/lib/heap-profile.ts';

const node = (
  functionName: string,
  url: string,
  lineNumber: number,
  selfSize: number,
  children: HeapProfileNode[] = [],
): HeapProfileNode => ({ callFrame: { functionName, url, lineNumber }, selfSize, children });

describe('heap profile summary', () => {
  const profile = {
    head: node('(root)', '', -1, 0, [
      node('Put', 'file:///x/raftkv/dist/src/server/kv-service.js', 131, 1000, [
        node('propose', 'file:///x/raftkv/dist/src/node/raft-node.js', 189, 600, [
          node('Put', 'file:///x/raftkv/dist/src/server/kv-service.js', 131, 50),
        ]),
        node('finish', 'file:///x/raftkv/node_modules/protobufjs/src/writer.js', 16, 300),
      ]),
      node('', 'node:internal/buffer', 959, 200),
      node('(garbage collector)', '', -1, 0),
    ]),
  };

  it('adds self bytes per function and per own file, largest first, and they sum to the total', () => {
    const s = summarizeHeapProfile(profile);
    assert.equal(s.totalBytes, 2150);
    assert.deepEqual(s.functions, [
      { fn: 'Put (src/server/kv-service.js:132)', bytes: 1050 },
      { fn: 'propose (src/node/raft-node.js:190)', bytes: 600 },
      { fn: 'finish (protobufjs/src/writer.js:17)', bytes: 300 },
      { fn: '(anonymous) (node:internal/buffer:960)', bytes: 200 },
    ]);
    assert.deepEqual(s.files, [
      { file: 'src/server/kv-service.js', bytes: 1050 },
      { file: 'src/node/raft-node.js', bytes: 600 },
    ]);
    assert.equal(
      s.functions.reduce((a, f) => a + f.bytes, 0),
      s.totalBytes,
    );
  });

  it('keeps the top N functions', () => {
    assert.deepEqual(
      summarizeHeapProfile(profile, 2).functions.map((f) => f.bytes),
      [1050, 600],
    );
  });
});
