// Pure helpers of the benchmark scripts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { linearSlope, metricValue } from '../../bench/lib/stats.ts';

describe('bench stats', () => {
  it('linearSlope fits a line, and is NaN without two distinct x', () => {
    assert.equal(
      linearSlope([
        [0, 1],
        [1, 3],
        [2, 5],
      ]),
      2,
    );
    assert.ok(
      Math.abs(
        linearSlope([
          [0, 10],
          [1, 10.5],
          [2, 9.5],
          [3, 10],
        ]) - -0.1,
      ) < 1e-9,
    );
    assert.ok(Number.isNaN(linearSlope([[1, 1]])));
    assert.ok(
      Number.isNaN(
        linearSlope([
          [1, 1],
          [1, 2],
        ]),
      ),
    );
  });

  it('metricValue reads a sample with or without labels, and ignores comments and longer names', () => {
    assert.equal(metricValue('# x\nheap_used{node="n2",a="b c"} 42\n', 'heap_used'), 42);
    const text = [
      '# HELP nodejs_heap_size_used_bytes Process heap size used from Node.js in bytes.',
      '# TYPE nodejs_heap_size_used_bytes gauge',
      'nodejs_heap_size_used_bytes_total 1',
      'nodejs_heap_size_used_bytes 25165824',
      'other 3',
    ].join('\n');
    assert.equal(metricValue(text, 'nodejs_heap_size_used_bytes'), 25165824);
    assert.equal(metricValue(text, 'missing'), undefined);
    assert.equal(metricValue('x NaN', 'x'), undefined);
  });
});
