/**
 * The one shape every bench's comparisons take in a results file, so the
 * README table (bench/lib/report.ts) and the chart (bench/chart.ts) need not
 * know each bench's raw layout: ours against one baseline, both measured in
 * the same run, with the ratio taken run by run.
 * @module
 */
import { spread, type Spread } from "./stats.ts";

/** One "ours vs baseline" figure: medians and min–max over runs, and the per-run ratio. */
export interface Comparison {
  /** Which bench measured it: "codec", "connection", "peer". */
  bench: string;
  /** The case, e.g. "peer, 64 calls in flight". Comparisons of one case share it. */
  case: string;
  /** What is measured, e.g. "calls/s", "p50 µs". */
  metric: string;
  /** true for throughputs (ratio > 1 is good), false for latencies. */
  higherIsBetter: boolean;
  ours: Spread;
  baseline: string;
  base: Spread;
  /** ours ÷ baseline run by run (runs where either failed are left out). */
  ratio: Spread;
  /** The target for the ratio, if it has one. */
  target?: { op: ">=" | "<="; value: number };
  /** Shown in the README's headline table. */
  headline?: boolean;
  /** A throughput bar pair for the chart. */
  chart?: boolean;
}

/** Per-run ratios of two aligned per-run series (index i = run i); undefined/NaN runs are skipped. */
export function runRatios(ours: (number | undefined | null)[], base: (number | undefined | null)[]): Spread {
  const out: number[] = [];
  for (let i = 0; i < Math.min(ours.length, base.length); i++) {
    const a = ours[i], b = base[i];
    if (typeof a === "number" && typeof b === "number" && Number.isFinite(a) && Number.isFinite(b) && b !== 0) out.push(a / b);
  }
  return spread(out);
}

/** Build a Comparison from aligned per-run values. */
export function compare(
  fields: Omit<Comparison, "ours" | "base" | "ratio">,
  ours: (number | undefined | null)[],
  base: (number | undefined | null)[],
): Comparison {
  return { ...fields, ours: spread(ours), base: spread(base), ratio: runRatios(ours, base) };
}

/** "yes"/"NO"/"—" for a comparison's target. */
export function targetMet(c: Comparison): string {
  if (!c.target || !Number.isFinite(c.ratio.median)) return "—";
  const r = c.ratio.median;
  return (c.target.op === ">=" ? r >= c.target.value : r <= c.target.value) ? "yes" : "NO";
}

/** "≥ 30×" / "≤ 0.15×" / "". */
export function targetText(c: Comparison): string {
  if (!c.target) return "";
  return `${c.target.op === ">=" ? "≥" : "≤"} ${c.target.value}×`;
}

/** The order results are shown in: the comparison users make (peer) first, then connection, codec, the rest; stable within a bench. */
export function benchOrder(cs: Comparison[]): Comparison[] {
  const rank = (b: string) => {
    const i = ["peer", "connection", "codec"].indexOf(b);
    return i < 0 ? 99 : i;
  };
  return cs
    .map((c, i) => ({ c, i }))
    .sort((a, b) => rank(a.c.bench) - rank(b.c.bench) || a.i - b.i)
    .map((x) => x.c);
}
