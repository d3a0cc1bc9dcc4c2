// TLS end to end: 3 `raftkv serve` processes with --cert/--key/--ca (mTLS for clients and
// peers), certificates made with openssl at test time; the CLI and the client library
// with the same flags. Skips with a message when openssl is missing.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RaftKvClient, RaftKvError } from '../../src/client/index.ts';
import { distinctFreePort } from '../e2e/cluster.ts';
import { haveOpenssl, makeCa, makeLeaf, NODE_EXT, peerExt } from '../support/certs.ts';

const ENTRY = ['--import', 'tsx', 'src/cli/main.ts'];

function makeCerts(dir: string): void {
  makeCa(dir, 'ca', 'raftkv test ca');
  makeLeaf(dir, 'node', 'ca', NODE_EXT);
  // each node's peer certificate names its node id
  for (const id of ['n1', 'n2', 'n3']) makeLeaf(dir, id, 'ca', peerExt(id));
}

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [...ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, out, err };
}

describe('TLS with real processes', {
  skip: haveOpenssl ? false : 'SKIPPED: openssl is not installed',
}, () => {
  let dir = '';
  const children: ChildProcess[] = [];
  const exits: Promise<unknown>[] = [];
  let endpoints: string[] = [];
  let client: RaftKvClient | undefined;
  const f = (name: string) => join(dir, name);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftkv-cli-tls-'));
    makeCerts(dir);
    const ids = ['n1', 'n2', 'n3'];
    endpoints = [];
    const taken = new Set<number>();
    for (const _ of ids) endpoints.push(`127.0.0.1:${await distinctFreePort(taken)}`);
    const peerAddrs: string[] = [];
    for (const _ of ids) peerAddrs.push(`127.0.0.1:${await distinctFreePort(taken)}`);
    const peers = ids.map((id, i) => `${id}=${endpoints[i]}/${peerAddrs[i]}`).join(',');
    for (const [i, id] of ids.entries()) {
      const c = spawn(
        process.execPath,
        [
          ...ENTRY,
          'serve',
          '--id',
          id,
          '--listen',
          endpoints[i] as string,
          '--peer-listen',
          peerAddrs[i] as string,
          '--peers',
          peers,
          '--data-dir',
          f(id),
          '--tick-ms',
          '30',
          '--cert',
          f('node.pem'),
          '--key',
          f('node.key'),
          '--ca',
          f('ca.pem'),
          '--peer-cert',
          f(`${id}.pem`),
          '--peer-key',
          f(`${id}.key`),
        ],
        { stdio: 'ignore' },
      );
      children.push(c);
      exits.push(new Promise((r) => c.once('exit', r)));
    }
    client = new RaftKvClient({
      endpoints,
      timeoutMs: 20_000,
      retries: 200,
      tls: { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') },
    });
    const end = Date.now() + 90_000; // three processes starting on a busy machine
    for (;;) {
      const st = await client.status({ timeoutMs: 1_000 }).catch(() => undefined);
      if (st?.leader) break;
      if (Date.now() > end) throw new Error('no leader over TLS');
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    client?.close();
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(exits);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the CLI with --ca/--cert/--key writes and reads; the cluster replicates over mTLS peers', async () => {
    const tls = ['--ca', f('ca.pem'), '--cert', f('node.pem'), '--key', f('node.key')];
    const put = await cli('put', 'secure', 'yes', '--endpoints', endpoints.join(','), ...tls);
    assert.equal(put.code, 0, put.err);
    const get = await cli('get', 'secure', '--endpoints', endpoints[2] as string, ...tls);
    assert.equal(get.code, 0, get.err);
    assert.equal(get.out, 'yes\n');
  });

  test('a client without a certificate, or in plaintext, is refused', async () => {
    const noCert = new RaftKvClient({
      endpoints,
      timeoutMs: 1_500,
      retries: 1,
      tls: { ca: readFileSync(f('ca.pem')) },
    });
    const plain = new RaftKvClient({ endpoints, timeoutMs: 1_500, retries: 1 });
    try {
      await assert.rejects(noCert.get('secure'), RaftKvError);
      await assert.rejects(plain.get('secure'), RaftKvError);
    } finally {
      noCert.close();
      plain.close();
    }
    assert.equal((await (client as RaftKvClient).get('secure')).value, 'yes');
  });
});
