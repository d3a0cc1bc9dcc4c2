#!/usr/bin/env node
// Runs every test/**/*.test.ts file with node's test runner (tsx loads TypeScript).
// Node 20's --test does not expand globs or pick up .ts files, hence this small launcher.
// Usage: node scripts/run-tests.mjs [filter-substring...]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
const filters = process.argv.slice(2);
const files = walk('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
// A `raftkv serve` without TLS or --peer-secret-file keeps a per-user peer secret under
// RAFTKV_HOME (~/.config/raftkv by default): the tests' nodes never write into the real home.
// The cluster helpers give each cluster a home of its own; this one catches any other.
const home = process.env.RAFTKV_HOME ? null : mkdtempSync(join(tmpdir(), 'raftkv-test-home-'));
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
  env: home === null ? process.env : { ...process.env, RAFTKV_HOME: home },
});
if (home !== null) rmSync(home, { recursive: true, force: true });
process.exit(r.status ?? 1);
