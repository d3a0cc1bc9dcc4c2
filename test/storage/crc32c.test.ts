import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { crc32c } from '../../src/storage/crc32c.ts';

test('CRC32C matches the standard check values (RFC 3720 B.4)', () => {
  assert.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('CRC32C continues over pieces and honours start/end', () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => (i * 131) & 0xff);
  const whole = crc32c(data);
  for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    assert.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole, `cut ${cut}`);
    assert.equal(crc32c(data, crc32c(data, 0, 0, cut), cut), whole, `range cut ${cut}`);
  }
});
