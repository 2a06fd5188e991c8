/** Small statistics helpers for the benches: percentiles of samples, median and spread over runs. */

/** Percentile (0..1) of an ascending-sorted array, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(p * (sorted.length - 1))));
  return sorted[i]!;
}

/** p50/p90/p99/mean of raw samples (any order; the array is copied). */
export function latencySummary(samples: ArrayLike<number>): { p50: number; p90: number; p99: number; mean: number; n: number } {
  const s = Float64Array.from(samples as ArrayLike<number>).sort();
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i]!;
  return { p50: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), mean: sum / s.length, n: s.length };
}

/** Median and min–max of per-run values (NaN/undefined runs are ignored). */
export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(values: (number | undefined | null)[]): Spread {
  const runs = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (runs.length === 0) return { median: NaN, min: NaN, max: NaN, runs };
  const s = runs.slice().sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, runs };
}

/** Human formatting: 3 significant digits, with k/M suffixes for big rates. */
export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return (v / 1e3).toPrecision(3) + "k";
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** "median (min–max)". */
export function fmtSpread(s: Spread, unit = ""): string {
  if (!Number.isFinite(s.median)) return "—";
  const u = unit ? " " + unit : "";
  if (s.runs.length < 2) return fmtNum(s.median) + u;
  return `${fmtNum(s.median)}${u} (${fmtNum(s.min)}–${fmtNum(s.max)})`;
}
