/**
 * The figures of a nemesis run, computed from its operations and fault log (pure).
 *
 * Unavailability of one fault: from the fault's start to the completion of the first
 * acknowledged write (put, delete or CAS, through any node) invoked at or after that start;
 * per kind, the longest. Restart (kill only): from the heal, when the killed node is started
 * again, to its first answer. Recovery: from the heal (after a kill: from that first answer)
 * to the moment every node had acknowledged a write. Per kind, the longest of each; `null`
 * when it never happened in the run.
 */
import type { KvInput } from '../../src/check/kv-model.ts';
import { type FaultKind, kindsFor } from './faults.ts';
import type { OpRecord } from './workload.ts';

export interface FaultRecord {
  readonly cycle: number;
  readonly kind: FaultKind;
  readonly description: string;
  /** Run clock, ms. */
  readonly start: number;
  healed: number | null;
  /** When the nodes restarted at the heal (kill) answered again; the heal time otherwise. */
  serving: number | null;
  /** When every node had taken a write after `serving`. */
  recovered: number | null;
}

export interface Counts {
  ok: number;
  failed: number;
  indeterminate: number;
}

export interface KindFigures {
  count: number;
  maxUnavailableMs: number | null;
  maxRecoveryMs: number | null;
  maxRestartMs: number | null;
}

export interface Figures {
  readonly nodes: number;
  readonly cycles: number;
  readonly durationMs: number;
  readonly ops: number;
  readonly total: Counts;
  readonly byOp: Record<KvInput['kind'], Counts>;
  readonly byFault: Partial<Record<FaultKind, KindFigures>>;
}

const isWrite = (o: OpRecord) => o.input.kind !== 'get';

export function computeFigures(
  nodes: number,
  ops: readonly OpRecord[],
  faults: readonly FaultRecord[],
  durationMs: number,
): Figures {
  const zero = (): Counts => ({ ok: 0, failed: 0, indeterminate: 0 });
  const total = zero();
  const byOp: Record<KvInput['kind'], Counts> = { put: zero(), get: zero(), delete: zero(), cas: zero() };
  const add = (c: Counts, o: OpRecord) => {
    if (o.outcome === 'ok') c.ok++;
    else if (o.outcome === 'fail') c.failed++;
    else c.indeterminate++;
  };
  for (const o of ops) {
    add(total, o);
    add(byOp[o.input.kind], o);
  }
  // Acknowledged writes by call time, to find the first one at or after each fault's start.
  const acked = ops.filter((o) => isWrite(o) && o.outcome === 'ok').sort((a, b) => a.call - b.call);
  const byFault: Partial<Record<FaultKind, KindFigures>> = {};
  for (const k of kindsFor(nodes))
    byFault[k] = { count: 0, maxUnavailableMs: null, maxRecoveryMs: null, maxRestartMs: null };
  const max = (a: number | null, b: number | null) => (b === null ? a : a === null ? b : Math.max(a, b));
  for (const f of faults) {
    const kf = byFault[f.kind] ?? {
      count: 0,
      maxUnavailableMs: null,
      maxRecoveryMs: null,
      maxRestartMs: null,
    };
    byFault[f.kind] = kf;
    kf.count++;
    let first: number | null = null;
    for (let lo = lowerBound(acked, f.start); lo < acked.length; lo++) {
      const r = (acked[lo] as OpRecord).ret as number;
      if (first === null || r < first) first = r;
      // Later calls cannot return before an earlier call's return once past it in time.
      if (first !== null && (acked[lo] as OpRecord).call > first) break;
    }
    kf.maxUnavailableMs = max(kf.maxUnavailableMs, first === null ? null : first - f.start);
    if (f.serving !== null && f.recovered !== null)
      kf.maxRecoveryMs = max(kf.maxRecoveryMs, f.recovered - f.serving);
    if (f.kind === 'kill' && f.healed !== null && f.serving !== null)
      kf.maxRestartMs = max(kf.maxRestartMs, f.serving - f.healed);
  }
  return { nodes, cycles: faults.length, durationMs, ops: ops.length, total, byOp, byFault };
}

function lowerBound(ops: readonly OpRecord[], t: number): number {
  let lo = 0;
  let hi = ops.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((ops[mid] as OpRecord).call < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const ms = (v: number | null) => (v === null ? '-' : `${(v / 1000).toFixed(2)} s`);

/** A plain-text report (the same lines go in docs/nemesis.md). */
export function renderFigures(f: Figures): string {
  const pct = (n: number) => (f.ops === 0 ? '0' : ((100 * n) / f.ops).toFixed(1));
  const lines = [
    `nodes ${f.nodes}, cycles ${f.cycles}, ${(f.durationMs / 1000).toFixed(0)} s`,
    `ops ${f.ops}: ok ${f.total.ok} (${pct(f.total.ok)}%), failed ${f.total.failed} (${pct(f.total.failed)}%), indeterminate ${f.total.indeterminate} (${pct(f.total.indeterminate)}%)`,
    '',
    'op      ok        failed    indeterminate',
  ];
  for (const [k, c] of Object.entries(f.byOp)) {
    lines.push(`${k.padEnd(8)}${String(c.ok).padEnd(10)}${String(c.failed).padEnd(10)}${c.indeterminate}`);
  }
  lines.push(
    '',
    'fault               count  longest unavailability  longest recovery after heal  longest restart',
  );
  for (const [k, v] of Object.entries(f.byFault)) {
    lines.push(
      `${k.padEnd(20)}${String(v.count).padEnd(7)}${ms(v.maxUnavailableMs).padEnd(24)}${ms(v.maxRecoveryMs).padEnd(30)}${ms(v.maxRestartMs)}`,
    );
  }
  return lines.join('\n');
}
