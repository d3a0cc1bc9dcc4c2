#!/usr/bin/env node
// `npm start`: builds the CLI when dist/ is missing or older than the sources, then runs
// `raftkv cluster` (extra arguments pass through: npm start -- --nodes 5 --clean).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist/src/cli/main.js');

function newest(dir) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    t = Math.max(t, s.isDirectory() ? newest(p) : s.mtimeMs);
  }
  return t;
}

const stale =
  !existsSync(built) ||
  !existsSync(join(root, 'dist/proto')) ||
  Math.max(
    newest(join(root, 'src')),
    newest(join(root, 'proto')),
    statSync(join(root, 'package.json')).mtimeMs,
  ) > statSync(built).mtimeMs;
if (stale) {
  process.stdout.write('raftkv: building (npm run build)...\n');
  const r = spawnSync('npm', ['run', '--silent', 'build'], {
    cwd: root,
    stdio: 'inherit',
    shell: process.platform === 'win32',
  });
  if (r.status !== 0) {
    process.stderr.write('raftkv: the build failed; see the errors above.\n');
    process.exit(r.status ?? 1);
  }
}
const bin = join(root, 'bin/raftkv.mjs');
process.argv = [process.argv[0] ?? process.execPath, bin, 'cluster', ...process.argv.slice(2)];
await import(new URL('../bin/raftkv.mjs', import.meta.url).href);
