// The house's arrows run one way, checked by reading every import under src/:
// - src/raft imports only src/raft: the core is pure (no node: module, no package);
// - nothing under src/ imports src/cli except the CLI itself, nor bench/, test/ or scripts/;
// - no import cycle between files of src/.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file imports or re-exports (static and dynamic), comments ignored. */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const specs: string[] = [];
  const re =
    /(?:^|\s|;)(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;
  for (let m = re.exec(code); m !== null; m = re.exec(code)) specs.push((m[1] ?? m[2] ?? m[3]) as string);
  return specs;
}

interface Edge {
  readonly from: string;
  readonly spec: string;
  /** Repo-relative path for relative specifiers, else null (a package or node: module). */
  readonly to: string | null;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of walk(join(REPO, 'src'))) {
    const from = relative(REPO, file);
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const to = spec.startsWith('.') ? relative(REPO, resolve(dirname(file), spec)) : null;
      out.push({ from, spec, to });
    }
  }
  return out;
}

test('the scanner sees imports, re-exports and dynamic imports, not comments', () => {
  const src = [
    "import { a } from './a.ts';",
    "import type { B } from '../b.ts';",
    "export * from './c.ts';",
    "export { d } from 'node:fs';",
    "const e = await import('./e.ts');",
    "import './side.ts';",
    "// import { x } from './commented.ts';",
    "/* import { y } from './block.ts'; */",
    'const s = \'import { z } from "./string.ts"\';',
  ].join('\n');
  const got = importsOf(src);
  for (const s of ['./a.ts', '../b.ts', './c.ts', 'node:fs', './e.ts', './side.ts'])
    assert.ok(got.includes(s), s);
  for (const s of ['./commented.ts', './block.ts']) assert.ok(!got.includes(s), s);
});

test('src/raft imports only src/raft: no node: module, no package', () => {
  const bad = edges().filter(
    (e) => e.from.startsWith('src/raft/') && (e.to === null || !e.to.startsWith('src/raft/')),
  );
  assert.deepEqual(bad, []);
});

test('nothing under src/ imports src/cli (except the CLI), bench/, test/ or scripts/', () => {
  const bad = edges().filter((e) => {
    if (e.to === null) return false;
    if (e.to.startsWith('src/cli/')) return !e.from.startsWith('src/cli/');
    return !e.to.startsWith('src/') && !e.to.startsWith('proto/');
  });
  assert.deepEqual(bad, []);
});

test('no import cycle between the files of src/', () => {
  const graph = new Map<string, string[]>();
  for (const e of edges()) {
    if (e.to === null || !e.to.startsWith('src/')) continue;
    const list = graph.get(e.from) ?? [];
    list.push(e.to);
    graph.set(e.from, list);
  }
  // Depth-first search with colours; the first back edge found is reported as a cycle.
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (n: string): void => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const s = state.get(m);
      if (s === 1) cycles.push([...stack.slice(stack.indexOf(m)), m].join(' -> '));
      else if (s === undefined) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  assert.deepEqual(cycles, []);
});
