// The core's errors share one base class, RaftError (as the storage and node errors share
// theirs): every `throw` under src/raft throws a class exported by raftkv/raft that extends
// RaftError, and the errors the core throws at run time are instances of it, with a name.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as core from '../../src/raft/index.ts';
import { RaftLog } from '../../src/raft/log.ts';

const DIR = new URL('../../src/raft/', import.meta.url);

test('every throw under src/raft throws an exported subclass of RaftError', () => {
  const thrown = new Set<string>();
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.ts'))) {
    const code = readFileSync(new URL(file, DIR), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/\/\/.*$/gm, '');
    for (const m of code.matchAll(/\bthrow\b\s*(new\s+(\w+))?/g)) {
      assert.ok(m[2], `${file}: a throw that is not \`throw new Class(...)\`: ${m[0]}`);
      thrown.add(m[2] as string);
    }
  }
  assert.ok(thrown.size >= 4, `found ${[...thrown].join(', ')}`);
  const exported = core as unknown as Record<string, unknown>;
  for (const name of thrown) {
    const cls = exported[name];
    assert.equal(typeof cls, 'function', `${name} is thrown by src/raft but not exported by raftkv/raft`);
    assert.ok(
      (cls as { prototype: object }).prototype instanceof core.RaftError,
      `${name} extends RaftError`,
    );
  }
});

test('the errors the core throws are RaftErrors with a name and an optional cause', () => {
  const cases: [() => unknown, string][] = [
    [() => new core.Raft({ id: '', rng: new core.SeededRng(1) }, core.emptyState()), 'RaftConfigError'],
    [() => core.bootstrapState([]), 'RaftConfigError'],
    [
      () => {
        const r = new core.Raft({ id: 'a', rng: new core.SeededRng(1) }, core.bootstrapState(['a']));
        r.ready();
        r.ready();
      },
      'RaftUsageError',
    ],
    [() => new core.SeededRng(1).pick([]), 'RaftUsageError'],
    [() => new RaftLog(5, 1, [], 5).slice(3, 5), 'RaftUsageError'],
    [
      () =>
        new RaftLog(0, 0, [{ term: 1, index: 2, type: core.EntryType.Normal, data: new Uint8Array() }], 0),
      'LogSafetyError',
    ],
    [() => core.decodeConfChange(new Uint8Array([1, 2])), 'ConfChangeError'],
  ];
  for (const [fn, name] of cases) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof core.RaftError, `${name}: ${String(e)}`);
      assert.ok(e instanceof Error);
      assert.equal(e.name, name);
      assert.ok(e.message.length > 0);
      return true;
    });
  }
  const cause = new Error('underlying');
  const e = new core.RaftConfigError('electionTick', 'electionTick is wrong', { cause });
  assert.equal(e.cause, cause);
  assert.equal(e.field, 'electionTick');
});
