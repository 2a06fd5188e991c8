/**
 * The bench chart: an SVG of our throughput against each baseline, per case,
 * from a results file written by `bun run bench` (bench/index.ts). One group
 * of horizontal bars per case, each on its own linear scale (units differ
 * between cases): ours first, then every baseline of that case, each bar
 * labelled with its median, a whisker for the min–max over runs, and the
 * same-run ratio ours ÷ baseline. Plain SVG, no dependencies.
 *
 *   bun bench/chart.ts [RESULTS.json] [--out bench/results/chart.svg] [--write-readme]
 *
 * Without RESULTS.json it takes the newest bench/results/<stamp>-<host>.json.
 * It writes chart.svg and latest.md (the README table and every comparison)
 * into bench/results/tmp/ as a preview; with --write-readme, into
 * bench/results/ and the table into README.md, so README, chart and table
 * always show the same run.
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { benchOrder, type Comparison } from "./lib/compare.ts";
import { latestMarkdown, machineLine, newestResults, readmeMarkdown, spliceReadme, type BenchRun } from "./lib/report.ts";
import { fmtNum } from "./lib/stats.ts";

const HERE = dirname(import.meta.path);
const ROOT = join(HERE, "..");

const W = 980;
const LABEL_X = 300; // bars start here; labels right-aligned before it
const BAR_W = 400; // the longest bar of a group
const ROW = 22;
const BAR_H = 14;
const GROUP_GAP = 18;
const WHISKER_OVER = 40; // how far past the longest bar a whisker may reach
const OURS = "#2563eb";
const BASE = "#9ca3af";
const GOOD = "#15803d";
const BAD = "#b91c1c";
const FONT = "-apple-system, BlinkMacSystemFont, 'Segoe UI', Helvetica, Arial, sans-serif";

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

interface Bar {
  label: string;
  median: number;
  min: number;
  max: number;
  ours: boolean;
  ratio?: number;
}
interface Group {
  title: string;
  unit: string;
  bars: Bar[];
}

/** Chart comparisons grouped by case, ours once per group, baselines in order. */
function groups(comparisons: Comparison[]): Group[] {
  const out = new Map<string, Group>();
  for (const c of benchOrder(comparisons)) {
    if (!c.chart || !c.higherIsBetter || !Number.isFinite(c.ours.median)) continue;
    const key = `${c.case}|${c.metric}`;
    let g = out.get(key);
    if (!g) {
      g = { title: c.case, unit: c.metric, bars: [{ label: "bun-lwmsg", ...c.ours, ours: true }] };
      out.set(key, g);
    }
    if (Number.isFinite(c.base.median)) g.bars.push({ label: c.baseline, ...c.base, ours: false, ratio: c.ratio.median });
  }
  return [...out.values()];
}

const fmtRatio = (r: number) => (r >= 10 ? r.toFixed(0) : r.toFixed(2)) + "×";

/** The SVG for a results file. */
export function renderChart(run: BenchRun): string {
  const gs = groups(run.comparisons);
  const top = 74;
  let h = top;
  for (const g of gs) h += 16 + g.bars.length * ROW + GROUP_GAP;
  h += 26;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="${FONT}" font-size="12">`,
    `<rect width="${W}" height="${h}" fill="#ffffff"/>`,
    `<text x="16" y="26" font-size="17" font-weight="600" fill="#111827">bun-lwmsg throughput vs baselines, same run (longer is better)</text>`,
    `<text x="16" y="46" fill="#4b5563">${esc(`${run.date.slice(0, 10)} · ${run.machine.model} · ${run.machine.cpus}-core shared VM · ${run.machine.kernel} · Bun ${run.bun} · code ${run.commit}`)}</text>`,
    `<text x="16" y="62" fill="#4b5563">Bars: median over runs, whisker: min–max (dashed: runs past the edge); each case on its own linear scale. Right: ours ÷ baseline, median of per-run ratios.</text>`,
  );
  let y = top;
  for (const g of gs) {
    y += 16;
    o.push(
      `<text x="16" y="${y}" font-size="13" font-weight="600" fill="#111827">${esc(g.title)} <tspan font-weight="400" fill="#6b7280">— ${esc(g.unit)}</tspan></text>`,
      `<text x="${W - 16}" y="${y}" text-anchor="end" fill="#6b7280">ours ÷ baseline</text>`,
    );
    y += 6;
    // Scaled on the medians; a whisker past the longest bar is clipped (open end) so one noisy run cannot squash the group.
    const max = Math.max(...g.bars.map((b) => b.median));
    const x = (v: number) => LABEL_X + (v / max) * BAR_W;
    const clipX = LABEL_X + BAR_W + WHISKER_OVER;
    for (const b of g.bars) {
      const cy = y + ROW / 2;
      const w = Math.max(2, x(b.median) - LABEL_X);
      o.push(
        `<text x="${LABEL_X - 8}" y="${cy + 4}" text-anchor="end" fill="${b.ours ? OURS : "#374151"}"${b.ours ? ' font-weight="600"' : ""}>${esc(b.label)}</text>`,
        `<rect x="${LABEL_X}" y="${cy - BAR_H / 2}" width="${w.toFixed(1)}" height="${BAR_H}" rx="2" fill="${b.ours ? OURS : BASE}"/>`,
      );
      let endX = LABEL_X + w;
      if (Number.isFinite(b.min) && b.max > b.min) {
        const x2 = Math.min(x(b.max), clipX);
        o.push(`<line x1="${x(b.min).toFixed(1)}" x2="${x2.toFixed(1)}" y1="${cy}" y2="${cy}" stroke="#111827" stroke-width="1.2" opacity="0.55"${x(b.max) > clipX ? ' stroke-dasharray="6 2 2 2"' : ""}/>`);
        endX = Math.max(endX, x2);
      }
      endX += 6;
      o.push(`<text x="${endX.toFixed(1)}" y="${cy + 4}" fill="#111827">${esc(fmtNum(b.median))}</text>`);
      if (b.ratio !== undefined && Number.isFinite(b.ratio)) {
        // Within ±5% is a tie on this machine: neither green nor red.
        const colour = b.ratio >= 1.05 ? GOOD : b.ratio <= 0.95 ? BAD : "#4b5563";
        o.push(`<text x="${W - 16}" y="${cy + 4}" text-anchor="end" font-weight="600" fill="${colour}">${esc(`ours ${fmtRatio(b.ratio)}`)}</text>`);
      }
      y += ROW;
    }
    y += GROUP_GAP - 6;
  }
  o.push(`<text x="16" y="${h - 12}" fill="#6b7280" font-size="11">${esc("Generated by bench/chart.ts from " + "bench/results/*.json. Figures and the full table: README “Performance” and bench/results/latest.md.")}</text>`);
  o.push("</svg>");
  return o.join("\n") + "\n";
}

/**
 * Write chart.svg and latest.md for a results file. With `readme` they go to
 * bench/results/ (the ones README.md shows) and README.md's table is
 * rewritten, so the three always come from the same run; without, they go to
 * bench/results/tmp/ as a preview.
 */
export function writeReports(resultsPath: string, opts: { out?: string; readme?: boolean } = {}): { svg: string; md: string } {
  const run = JSON.parse(readFileSync(resultsPath, "utf8")) as BenchRun;
  const dir = opts.readme ? join(HERE, "results") : join(HERE, "results", "tmp");
  mkdirSync(dir, { recursive: true });
  const svg = opts.out ?? join(dir, "chart.svg");
  const md = join(dir, "latest.md");
  writeFileSync(svg, renderChart(run));
  writeFileSync(md, latestMarkdown(run, relative(ROOT, resultsPath)));
  if (opts.readme) {
    const chartRel = relative(ROOT, svg);
    if (!spliceReadme(join(ROOT, "README.md"), readmeMarkdown(run, chartRel)))
      throw new Error("README.md has no bench markers: cannot write the table (see docs/performance.md)");
  }
  return { svg, md };
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const oi = argv.indexOf("--out");
  const out = oi >= 0 ? argv[oi + 1] : undefined;
  const file = argv.find((a, i) => !a.startsWith("--") && (oi < 0 || i !== oi + 1)) ?? newestResults(join(HERE, "results"));
  if (!file) {
    console.error("bench/chart.ts: no results file given and none in bench/results/; run `bun run bench` first");
    process.exit(2);
  }
  const { svg, md } = writeReports(file, { out, readme: argv.includes("--write-readme") });
  const run = JSON.parse(readFileSync(file, "utf8")) as BenchRun;
  console.log(`${machineLine(run)}\n\nwrote ${relative(process.cwd(), svg)}, ${relative(process.cwd(), md)}${argv.includes("--write-readme") ? ", README.md" : ""}`);
}
