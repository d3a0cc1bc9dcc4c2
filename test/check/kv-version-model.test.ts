// The versioned KV model: versions count writes since creation, gets answer them, and a
// compare-and-swap by version swaps only at that version; histories that break them are refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { applyKvv, type KvvInput, type KvvOutput, kvvModel } from '../../src/check/kv-model.ts';
import { checkLinearizable, type Operation } from '../../src/check/linearizability.ts';
import { linearizableHistory } from '../../src/sim/history.ts';
import type { SimOp } from '../../src/sim/simulator.ts';

let ids = 0;
const op = (
  call: number,
  ret: number,
  input: KvvInput,
  output: KvvOutput,
): Operation<KvvInput, KvvOutput> => ({
  id: ++ids,
  client: ids,
  input,
  call,
  ret,
  output,
});

test('versions: put creates at 1 and counts up, delete resets, a swap by version needs that version', () => {
  let s = kvvModel.init();
  s = applyKvv(s, { kind: 'put', key: 'k', value: 'a' }).state;
  assert.deepEqual(s, { value: 'a', version: 1 });
  assert.equal(
    applyKvv(s, { kind: 'cas', key: 'k', expected: null, expectedVersion: 2, value: 'x' }).output.kind,
    'cas',
  );
  assert.deepEqual(
    applyKvv(s, { kind: 'cas', key: 'k', expected: null, expectedVersion: 2, value: 'x' }).state,
    s,
  );
  s = applyKvv(s, { kind: 'cas', key: 'k', expected: null, expectedVersion: 1, value: 'b' }).state;
  assert.deepEqual(s, { value: 'b', version: 2 });
  s = applyKvv(s, { kind: 'delete', key: 'k' }).state;
  assert.deepEqual(applyKvv(s, { kind: 'put', key: 'k', value: 'c' }).state, { value: 'c', version: 1 });
});

test('a get with the right value but a stale version is not linearizable', () => {
  const ok = [
    op(0, 1, { kind: 'put', key: 'k', value: 'a' }, { kind: 'put' }),
    op(2, 3, { kind: 'put', key: 'k', value: 'a' }, { kind: 'put' }),
    op(4, 5, { kind: 'get', key: 'k' }, { kind: 'get', value: 'a', version: 2 }),
  ];
  assert.equal(checkLinearizable(kvvModel, ok).ok, true);
  const stale = [
    ...ok.slice(0, 2),
    op(4, 5, { kind: 'get', key: 'k' }, { kind: 'get', value: 'a', version: 1 }),
  ];
  assert.equal(checkLinearizable(kvvModel, stale).ok, false);
});

test('a list is checked as one get per key over its interval', () => {
  const history: SimOp[] = [
    {
      id: 1,
      client: 1,
      input: { kind: 'put', key: 'k0', value: 'a' },
      call: 0,
      ret: 1,
      output: { kind: 'put' },
    },
    {
      id: 2,
      client: 2,
      input: { kind: 'list' },
      call: 2,
      ret: 3,
      output: { kind: 'list', items: [], more: false },
    },
  ];
  const lin = linearizableHistory(history, 2);
  assert.equal(lin.length, 3);
  // The list missed k0, written before it began: not linearizable.
  assert.equal(checkLinearizable(kvvModel, lin).ok, false);
});
