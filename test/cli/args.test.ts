// Argument parsing of the raftkv CLI: --help everywhere, and every usage mistake a clear
// message naming the flag or argument, with exit code 2. Runs main() in process, except
// one check of the real process exit code through the TypeScript entry.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePeers } from '../../src/cli/args.ts';
import { serveStorageError, UsageError } from '../../src/cli/errors.ts';
import { formatPretty } from '../../src/cli/log.ts';
import { main } from '../../src/cli/main.ts';
import { IdentityMismatchError, NotDataDirError, StorageLockedError } from '../../src/storage/errors.ts';
import { FileStorage } from '../../src/storage/file-storage.ts';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (s) => (out += s), err: (s) => (err += s) }, {});
  return { code, out, err };
}

const commands = [
  'serve',
  'cluster',
  'put',
  'get',
  'del',
  'cas',
  'list',
  'status',
  'members',
  'transfer-leader',
  'inspect',
];

test('--help: the top level and every command print usage and exit 0', async () => {
  const top = await cli('--help');
  assert.equal(top.code, 0);
  for (const c of commands) assert.match(top.out, new RegExp(`\\n  ${c}\\b`), `top help lists ${c}`);
  for (const c of commands) {
    const r = await cli(c, '--help');
    assert.equal(r.code, 0, c);
    assert.match(r.out, new RegExp(`^raftkv ${c}`), c);
    assert.match(r.out, /--help/);
  }
  const viaHelp = await cli('help', 'del');
  assert.equal(viaHelp.code, 0);
  assert.match(viaHelp.out, /^raftkv del KEY/);
  const get = await cli('get', '-h');
  assert.match(get.out, /--local/);
  assert.match(get.out, /--endpoints/);
  assert.match(get.out, /--json/);
});

test('no command: usage on stderr, exit 2; unknown command: named, exit 2', async () => {
  const none = await cli();
  assert.equal(none.code, 2);
  assert.match(none.err, /Usage: raftkv <command>/);
  const unknown = await cli('frobnicate');
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown command "frobnicate"/);
});

test('unknown flags, missing values, bad numbers, extra or missing arguments: exit 2 naming the problem', async () => {
  const cases: [string[], RegExp][] = [
    [['put', 'k', 'v', '--bogus'], /unknown flag --bogus for 'put'/],
    [['get', 'k', '--timeout'], /--timeout needs a value/],
    [['get', 'k', '--timeout', 'soon'], /--timeout must be an integer .* got "soon"/],
    [['get', 'k', '--local=yes'], /--local takes no value/],
    [['put', 'k'], /missing VALUE/],
    [['get'], /missing KEY/],
    [['del', 'a', 'b'], /unexpected argument "b"/],
    [['put', '', 'v'], /KEY must not be empty/],
    [['get', 'k', '--endpoints', 'localhost'], /--endpoints must be host:port, got "localhost"/],
    [['cas', 'k', 'v'], /exactly one of --expect/],
    [['cas', 'k', 'v', '--expect', 'a', '--expect-absent'], /exactly one of --expect/],
    [['list', '--limit', '0'], /--limit must be an integer from 1 to 10000/],
    [['members', 'frob'], /unknown members subcommand "frob"/],
    [['members', 'add', 'n4'], /members add ID HOST:PORT/],
    [['get', 'k', '--cert', 'c.pem'], /--cert and --key go together/],
    [['serve'], /--id is required/],
    [['serve', '--id', 'bad id'], /--id must be 1-64 characters/],
    [['serve', '--id', 'n1', '--peers', 'n1=127.0.0.1:1,garbage'], /--peers: "garbage" is not id=host:port/],
    [['serve', '--id', 'n1', '--peers', 'n1=127.0.0.1:99999'], /address of n1 must be host:port/],
    [['serve', '--id', 'n4', '--peers', 'n1=127.0.0.1:1'], /--peers must include this node \(n4\)/],
    [['serve', '--id', 'n1', '--peers', 'n1=a:1', '--join', 'a:2'], /either --peers .* or --join/],
    [['serve', '--id', 'n1', '--listen', 'nowhere'], /--listen must be host:port/],
    [
      ['serve', '--id', 'n1', '--listen', '127.0.0.1:65000'],
      /--listen: client port 65000 .* \(--peer-listen\)/,
    ],
    [
      ['serve', '--id', 'n1', '--peers', '127.0.0.1:65000'],
      /--peers: .*above 65535.*--peers ID=CLIENT\/PEER/,
    ],
    [['serve', '--id', 'n1', '--tick-ms', '0'], /--tick-ms must be an integer from 1/],
    [['serve', '--id', 'n1', '--wal-sync', 'fsync'], /--wal-sync must be dsync or fdatasync, not "fsync"/],
    [
      ['serve', '--id', 'n1', '--wal-inline-bytes', '4k'],
      /--wal-inline-bytes must be an integer from 0 to 1048576, got "4k"/,
    ],
    [
      ['serve', '--id', 'n1', '--wal-inline-bytes', '2097152'],
      /--wal-inline-bytes must be an integer from 0 to 1048576/,
    ],
    [['serve', '--id', 'n1', '--log-format', 'xml'], /--log-format must be json or pretty/],
    [['serve', '--id', 'n1', '--max-request-bytes', '0'], /--max-request-bytes must be an integer from 1 to/],
    [['serve', '--id', 'n1', '--max-connections', '10k'], /--max-connections must be an integer from 1 to/],
    [['cluster', '--nodes', '12'], /--nodes must be an integer from 1 to 9/],
    [['cluster', 'extra'], /unexpected argument "extra"/],
    [['inspect'], /missing DIR/],
    [['bench', '--op', 'delete'], /--op must be put, get or mixed/],
    [['bench', '--clients', '-1'], /--clients/],
  ];
  for (const [argv, re] of cases) {
    const r = await cli(...argv);
    assert.equal(r.code, 2, `${argv.join(' ')}: exit code (stderr: ${r.err})`);
    assert.match(r.err, re, argv.join(' '));
    assert.match(r.err, /--help' for usage/, argv.join(' '));
    assert.equal(r.out, '', `${argv.join(' ')} prints nothing on stdout`);
  }
});

test('parsePeers: a well-formed list, and duplicates refused', () => {
  assert.deepEqual(
    [...parsePeers('n1=127.0.0.1:50051,n2=localhost:50052,n3=[::1]:50053')],
    [
      ['n1', '127.0.0.1:50051'],
      ['n2', 'localhost:50052'],
      ['n3', '[::1]:50053'],
    ],
  );
  assert.throws(
    () => parsePeers('n1=a:1,n1=b:2'),
    (e: unknown) => e instanceof UsageError && /twice/.test(e.message),
  );
  assert.throws(() => parsePeers(''), UsageError);
});

test('inspect: prints a data directory as JSON lines; a missing one fails with exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'raftkv-inspect-'));
  try {
    const fs = await FileStorage.open(dir, { nodeId: 'n7', clusterId: 'c' });
    await fs.close();
    const r = await cli('inspect', dir);
    assert.equal(r.code, 0, r.err);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; nodeId?: string });
    assert.equal(lines[0]?.kind, 'meta');
    assert.equal(lines[0]?.nodeId, 'n7');
    assert.ok(lines.some((l) => l.kind === 'hardState'));
    const missing = await cli('inspect', join(dir, 'nope'));
    assert.equal(missing.code, 1);
    assert.match(missing.err, /raftkv inspect: .*(no such directory|ENOENT)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('serve reports a data directory it cannot use by the flags the user gave (the storage layer names its options)', () => {
  const mismatch = new IdentityMismatchError(
    'state/n1',
    { nodeId: 'n9', clusterId: 'raftkv' },
    { nodeId: 'n1', clusterId: 'raftkv' },
  );
  assert.doesNotMatch(mismatch.message, /--/);
  const m = serveStorageError(mismatch);
  assert.equal(m.exitCode, 1);
  assert.match(
    m.message,
    /^IdentityMismatchError \[ERR_STORAGE_IDENTITY\]: data directory state\/n1 belongs to node "n1"/,
  );
  assert.match(m.message, /not to node "n9" of cluster "raftkv"\. Check --id, --cluster-id and --data-dir/);
  const foreign = new NotDataDirError('/tmp/x', 'it holds 1 file(s) (e.g. notes.txt) but no meta.json');
  assert.doesNotMatch(foreign.message, /--/);
  assert.match(
    serveStorageError(foreign).message,
    /^NotDataDirError \[ERR_STORAGE_NOT_DATA_DIR\]: \/tmp\/x is not a usable raftkv data directory: it holds 1 file\(s\) .*Point --data-dir at an empty or raftkv-created directory\.$/,
  );
  // Errors that name no option of the user's keep the storage layer's message.
  const locked = new StorageLockedError('state/n1', { pid: 7, host: 'h' });
  assert.equal(
    serveStorageError(locked).message,
    `StorageLockedError [ERR_STORAGE_LOCKED]: ${locked.message}`,
  );
});

test('an unreachable cluster: exit 1 with UNAVAILABLE and a hint', async () => {
  const r = await cli('get', 'k', '--endpoints', '127.0.0.1:1', '--timeout', '2000');
  assert.equal(r.code, 1);
  // Refused connections give UNAVAILABLE; on a busy machine the deadline may pass first.
  assert.match(r.err, /UNAVAILABLE|DEADLINE_EXCEEDED/);
  assert.match(r.err, /Is the cluster running/);
});

test('the real process exits with code 2 on a bad flag', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'status', '--nope'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown flag --nope for 'status'/);
});

test('pretty logs: one short line per pino JSON line, fields as key=value', () => {
  const line = JSON.stringify({
    level: 40,
    time: Date.UTC(2026, 0, 1, 12, 0, 1, 234),
    pid: 1,
    id: 'n1',
    msg: 'slow fsync',
    ms: 150,
    note: 'two words',
  });
  assert.equal(formatPretty(line, false), '12:00:01.234 WARN  slow fsync id=n1 ms=150 note="two words"');
  assert.equal(formatPretty('not json', false), 'not json');
});
