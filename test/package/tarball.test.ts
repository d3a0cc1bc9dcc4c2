// The package as users get it: `npm pack`, the tarball installed into an empty project.
// - `raftkv/raft` is the pure core: it runs an election with @grpc/* and protobufjs removed
//   from node_modules (and, as a control, the root entry point fails to load without them).
// - A small TypeScript program type-checks against every subpath export.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const SUBPATHS = ['raft', 'node', 'storage', 'transport', 'server', 'client'] as const;
let work = '';
let project = '';

function run(cmd: string, args: string[], cwd: string): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 240_000,
  });
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'raftkv-pack-'));
  run('npm', ['run', '--silent', 'build'], REPO);
  run('npm', ['pack', '--silent', '--pack-destination', work], REPO);
  const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, 'npm pack made a tarball');
  project = join(work, 'app');
  mkdirSync(project);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'app', private: true, type: 'module' }),
  );
  run(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', join(work, tgz)],
    project,
  );
});

after(() => {
  if (work !== '') rmSync(work, { recursive: true, force: true });
});

test('raftkv/raft elects a leader with no runtime dependency installed', () => {
  const nm = join(project, 'node_modules');
  for (const dep of ['@grpc', 'protobufjs', '@protobufjs', 'pino', 'prom-client']) {
    rmSync(join(nm, dep), { recursive: true, force: true });
  }
  writeFileSync(
    join(project, 'elect.mjs'),
    `import { Raft, SeededRng, bootstrapState } from 'raftkv/raft';
const ids = ['a', 'b', 'c'];
const nodes = new Map(ids.map((id, i) => [id, new Raft({ id, rng: new SeededRng(7 + i) }, bootstrapState(ids))]));
for (let t = 0; t < 500; t++) {
  for (const r of nodes.values()) r.tick();
  for (let round = 0; round < 100; round++) {
    const out = [];
    for (const r of nodes.values()) while (r.hasReady()) { const rd = r.ready(); out.push(...rd.eagerMessages, ...rd.messages); r.advance(rd); }
    if (out.length === 0) break;
    for (const m of out) nodes.get(m.to).step(m);
  }
  const leaders = [...nodes.values()].filter((r) => r.currentRole === 'leader');
  if (leaders.length === 1 && [...nodes.values()].every((r) => r.leader === leaders[0].status().id)) {
    console.log(JSON.stringify({ leader: leaders[0].status().id, term: leaders[0].currentTerm, ticks: t }));
    process.exit(0);
  }
}
console.log(JSON.stringify({ leader: null }));
process.exit(1);
`,
  );
  const r = spawnSync(process.execPath, ['elect.mjs'], { cwd: project, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `election failed: ${r.stdout}${r.stderr}`);
  const out = JSON.parse(r.stdout.trim()) as { leader: string; term: number };
  assert.ok(['a', 'b', 'c'].includes(out.leader));
  assert.ok(out.term >= 1);
  // Control: the root entry point needs the gRPC stack, so the removal above was real.
  const root = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('raftkv')"], {
    cwd: project,
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.notEqual(root.status, 0, 'the root entry point loaded without @grpc/* and protobufjs');
  assert.match(root.stderr, /Cannot find (package|module)/);
});

test('a TypeScript program type-checks against every subpath export', () => {
  const imports = [
    "import { Raft, SeededRng, bootstrapState, type RaftConfig, type Message } from 'raftkv/raft';",
    "import { RaftNode, RaftNodeError, type RaftStorage as NodeStorage, type StateMachine } from 'raftkv/node';",
    "import { FileStorage, MemoryStorage, type RaftStorage, StorageError } from 'raftkv/storage';",
    "import { MemoryNetwork, type Transport } from 'raftkv/transport';",
    "import { KvStateMachine, startServer, type ServerConfig } from 'raftkv/server';",
    "import { RaftKvClient, RaftKvError } from 'raftkv/client';",
    "import * as facade from 'raftkv';",
  ];
  const body = `
const cfg: RaftConfig = { id: 'a', rng: new SeededRng(1) };
const core = new Raft(cfg, bootstrapState(['a']));
const msgs: readonly Message[] = core.hasReady() ? core.ready().messages : [];
const sm: StateMachine<number> = { apply: (i: number) => i, snapshot: () => new Uint8Array(), restore: () => {} };
// The storage contract comes with the storage layer and with the runtime that persists through it.
const storage: RaftStorage = new MemoryStorage();
const sameContract: NodeStorage = storage;
const net = new MemoryNetwork();
const transport: Transport = net.transport('a');
export async function main(): Promise<number> {
  const node = await RaftNode.start({ id: 'a', storage, transport, stateMachine: sm, bootstrap: ['a'] });
  const applied = await node.propose(new Uint8Array([1]));
  await node.stop();
  const kv = new KvStateMachine();
  const start: (c: ServerConfig) => Promise<unknown> = startServer;
  const errs: Function[] = [RaftNodeError, StorageError, RaftKvError, FileStorage.open, RaftKvClient];
  const n: number = applied.result + msgs.length + (kv.get('x') === undefined ? 0 : 1) + errs.length;
  return facade.RaftNode === RaftNode && start !== undefined && sameContract === storage ? n : -1;
}
`;
  // An expected-error directive proves the checker is live: tsc fails if the wrong type is not reported.
  const broken =
    '\n// @ts-expect-error a number is not a RaftConfig\nconst bad: RaftConfig = 42;\nvoid bad;\n';
  writeFileSync(join(project, 'check.ts'), `${imports.join('\n')}\n${body}${broken}`);
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
      },
      files: ['check.ts'],
    }),
  );
  const tsc = join(REPO, 'node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], {
    cwd: project,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
  for (const s of SUBPATHS)
    assert.ok(
      imports.some((l) => l.includes(`'raftkv/${s}'`)),
      s,
    );
});
