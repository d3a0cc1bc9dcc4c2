// Small pure helpers for the benchmark scripts: a least-squares slope, and reading one value from a
// Prometheus text exposition. Invariants: no I/O; bad input gives NaN/undefined, never a throw.

/** Least-squares slope of y over x; NaN with fewer than two distinct x. */
export function linearSlope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  let sx = 0;
  let sy = 0;
  for (const [x, y] of points) {
    sx += x;
    sy += y;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) * (x - mx);
  }
  return den === 0 ? Number.NaN : num / den;
}

/** The value of the first sample of metric `name` (labels or not) in Prometheus text format, or undefined. */
export function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const next = line[name.length];
    if (next !== ' ' && next !== '{') continue;
    const end = next === '{' ? line.indexOf('}', name.length) : name.length;
    if (end < 0) continue;
    const v = Number(
      line
        .slice(end + 1)
        .trim()
        .split(' ')[0],
    );
    return Number.isFinite(v) ? v : undefined;
  }
  return undefined;
}
