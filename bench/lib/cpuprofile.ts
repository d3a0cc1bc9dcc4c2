// Reading V8 CPU profiles (`node --cpu-prof`): self time per function, and self time summed into named
// categories named by a classifier of each sample's stack. Used by `npm run profile` and to study bench servers.
//
// Invariants: self times are computed from the sample list (each sample's time delta goes to the node it
// landed on), so they add up to the profile's duration; categories partition the samples (every sample lands
// in exactly one category, "other" when no rule matches).

import { readFileSync } from 'node:fs';

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface FunctionTime {
  /** `name (file:line)` */
  readonly fn: string;
  readonly selfMs: number;
  readonly pct: number;
}

/** Names the category of a sample from its stack (innermost frame first). */
export type Classifier = (stack: readonly CallFrame[]) => string;

export interface ProfileSummary {
  readonly totalMs: number;
  /** Time not idle and not spent in the (program)/(garbage collector) pseudo-frames. */
  readonly busyMs: number;
  readonly idleMs: number;
  readonly gcMs: number;
  readonly top: readonly FunctionTime[];
  readonly categories: readonly { name: string; ms: number; pct: number }[];
}

export function frameLabel(f: CallFrame): string {
  const file =
    f.url === '' ? '' : f.url.replace(/^file:\/\//, '').replace(/^.*\/(src|node_modules|dist)\//, '$1/');
  const name = f.functionName === '' ? '(anonymous)' : f.functionName;
  return file === '' ? name : `${name} (${file}:${f.lineNumber + 1})`;
}

/** Only samples taken in [fromUs, toUs] (the profile's clock: CLOCK_MONOTONIC µs, as `process.hrtime`). */
export interface TimeWindow {
  readonly fromUs: number;
  readonly toUs: number;
}

/** Summarizes one profile file: the `topN` functions by self time, and time per category. */
export function summarizeProfile(
  path: string,
  classify: Classifier = () => 'other',
  topN = 25,
  window?: TimeWindow,
): ProfileSummary {
  return summarize(JSON.parse(readFileSync(path, 'utf8')) as CpuProfile, classify, topN, window);
}

export function summarize(
  p: CpuProfile,
  classify: Classifier = () => 'other',
  topN = 25,
  window?: TimeWindow,
): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<number, number>();
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    t += dt;
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) continue;
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  let total = 0;
  let idle = 0;
  let gc = 0;
  const perFn = new Map<string, number>();
  const perCat = new Map<string, number>();
  for (const [id, us] of self) {
    total += us;
    const node = byId.get(id)!;
    const name = node.callFrame.functionName;
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    if (name === '(garbage collector)') gc += us;
    const label = frameLabel(node.callFrame);
    perFn.set(label, (perFn.get(label) ?? 0) + us);
    const stack: CallFrame[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      stack.push(byId.get(cur)!.callFrame);
    }
    const cat = classify(stack);
    perCat.set(cat, (perCat.get(cat) ?? 0) + us);
  }
  const busy = total - idle;
  const top = [...perFn.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, topN)
    .map(([fn, us]) => ({ fn, selfMs: us / 1000, pct: (100 * us) / Math.max(1, busy) }));
  const cats = [...perCat.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / Math.max(1, busy) }));
  return {
    totalMs: total / 1000,
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    gcMs: gc / 1000,
    top,
    categories: cats,
  };
}
