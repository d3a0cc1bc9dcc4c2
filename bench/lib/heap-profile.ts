// Summaries of V8 sampling heap profiles (`.heapprofile`, the DevTools format): bytes allocated by
// each function (self, not counting callees) and by each of our source files, largest first.
//
// Invariants: pure; the totals add up to the profile's sampled bytes (selfSize summed over every
// node); functions are named `name (file:line)`, the file cut to what follows `node_modules/` for a
// dependency and to `src/...` for our own code; the per-file list holds our own files only.

export interface HeapProfileNode {
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly selfSize: number;
  readonly children: readonly HeapProfileNode[];
}

export interface HeapProfile {
  readonly head: HeapProfileNode;
}

export interface AllocSummary {
  readonly totalBytes: number;
  /** Functions by self bytes, largest first, at most `top`. */
  readonly functions: readonly { readonly fn: string; readonly bytes: number }[];
  /** Our own source files (under src/) by self bytes of their functions, largest first. */
  readonly files: readonly { readonly file: string; readonly bytes: number }[];
}

function place(url: string): string {
  const dep = url.lastIndexOf('/node_modules/');
  if (dep >= 0) return url.slice(dep + '/node_modules/'.length);
  const src = url.lastIndexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  if (url.startsWith('node:')) return url;
  return url === '' ? '' : (url.split('/').pop() ?? url);
}

export function summarizeHeapProfile(p: HeapProfile, top = 20): AllocSummary {
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  const stack: HeapProfileNode[] = [p.head];
  while (stack.length > 0) {
    const n = stack.pop()!;
    for (const c of n.children) stack.push(c);
    if (n.selfSize === 0) continue;
    total += n.selfSize;
    const f = n.callFrame;
    const at = place(f.url);
    const fn = `${f.functionName === '' ? '(anonymous)' : f.functionName}${at === '' ? '' : ` (${at}:${f.lineNumber + 1})`}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + n.selfSize);
    if (at.startsWith('src/')) byFile.set(at, (byFile.get(at) ?? 0) + n.selfSize);
  }
  const sorted = <K extends string>(m: Map<string, number>, key: K) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, bytes]) => ({ [key]: k, bytes }) as { [P in K]: string } & { bytes: number });
  return {
    totalBytes: total,
    functions: sorted(byFn, 'fn').slice(0, top),
    files: sorted(byFile, 'file'),
  };
}
