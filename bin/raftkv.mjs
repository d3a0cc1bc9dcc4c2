#!/usr/bin/env node
// The `raftkv` command: runs the compiled CLI (dist/src/cli/main.js).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write(
    'raftkv: the CLI is not built yet (dist/src/cli/main.js is missing).\n' +
      'Run `npm run build` in the raftkv directory first (`npm start` builds automatically).\n',
  );
  process.exit(1);
}
const { run } = await import(main.href);
await run();
