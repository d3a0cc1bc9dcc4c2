// Prints a data directory's hard state, snapshot metadata and log entries as JSON lines.
// Usage: npm run inspect -- <data-dir> [--records]
import { parseArgs } from 'node:util';
import { StorageError } from '../src/storage/errors.ts';
import { inspect } from '../src/storage/inspect.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    records: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const dir = positionals[0];
if (values.help || dir === undefined) {
  console.error('usage: npm run inspect -- <data-dir> [--records]');
  process.exit(dir === undefined && !values.help ? 2 : 0);
}
try {
  await inspect(dir, (line) => process.stdout.write(`${line}\n`), { records: values.records });
} catch (err) {
  if (err instanceof StorageError) {
    console.error(`${err.name} [${err.code}]: ${err.message}`);
    process.exit(1);
  }
  throw err;
}
