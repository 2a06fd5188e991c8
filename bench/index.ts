export {};
// `bun run bench [codec|poller|connection|peer|remote ...] [--quick] [--write-readme]`: every
// figure is a ratio against a baseline measured in the same run (see each bench file).
//
// A full run (all benches, not --quick) writes bench/results/<stamp>-<host>.json
// (machine, Bun, commit, every comparison and each bench's raw results) and a
// preview of the chart and table in bench/results/tmp/; with --write-readme,
// bench/results/chart.svg and latest.md and README.md's Performance table
// instead, all from this run (bench/chart.ts). A quick or partial run writes
// everything into bench/results/tmp/ (not committed), never README.md.
import { hostname } from "node:os";
import { dirname, join, relative } from "node:path";
import { writeReports } from "./chart.ts";
import type { Comparison } from "./lib/compare.ts";
import type { BenchRun } from "./lib/report.ts";
import { machineInfo, writeResults } from "./lib/results.ts";
import { codecComparisons, connectionComparisons } from "./lib/summary.ts";

const HERE = dirname(import.meta.path);
const all = ["codec", "poller", "connection", "peer", "remote"] as const;
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const writeReadme = args.includes("--write-readme");
const picked = args.filter((a) => !a.startsWith("--"));
const which = picked.length ? picked : [...all];
for (const name of which) {
  if (!(all as readonly string[]).includes(name)) {
    console.error(`unknown bench "${name}"; choose from ${all.join(", ")}`);
    process.exit(2);
  }
}
const full = !quick && all.every((b) => which.includes(b));
if (writeReadme && !full) {
  console.error("--write-readme needs a full run: all benches, without --quick");
  process.exit(2);
}

function gitCommit(): string {
  const rev = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"], { cwd: HERE });
  if (rev.exitCode !== 0) return "unknown";
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no", "--", "lib", "native", "bench"], { cwd: HERE });
  return rev.stdout.toString().trim() + (dirty.stdout.toString().trim() ? "+dirty" : "");
}

const started = new Date();
const commit = gitCommit();
const raw: Record<string, unknown> = {};
const comparisons: Comparison[] = [];
const errors: string[] = [];
for (const name of which) {
  console.log(`\n=== ${name} ===`);
  const mod = await import(`./${name}.bench.ts`);
  const fn = mod[`run${name[0]!.toUpperCase()}${name.slice(1)}Bench`];
  if (typeof fn !== "function") {
    console.log(`(bench/${name}.bench.ts has no run function yet)`);
    continue;
  }
  try {
    const res = await fn({ quick, ...(name === "connection" || name === "peer" ? { json: false } : {}) });
    raw[name] = res;
    if (name === "codec") comparisons.push(...codecComparisons(res));
    if (name === "connection") comparisons.push(...connectionComparisons(res));
    if (name === "peer" || name === "remote") comparisons.push(...res.comparisons);
    if (Array.isArray(res?.errors)) errors.push(...res.errors.map((e: string) => `${name}: ${e}`));
  } catch (e) {
    errors.push(`${name}: ${(e as Error)?.stack ?? e}`);
    console.error(`bench ${name} failed: ${(e as Error)?.stack ?? e}`);
  }
}

const host = hostname().replace(/[^A-Za-z0-9_.-]/g, "_") || "host";
const stamp = started.toISOString().slice(0, 16).replace(/:/g, "");
const dir = full ? join(HERE, "results") : join(HERE, "results", "tmp");
const file = join(dir, `${stamp}Z-${host}.json`);
const run: BenchRun = {
  date: started.toISOString(),
  durationSec: (Date.now() - started.getTime()) / 1000,
  commit,
  bun: Bun.version,
  machine: { ...machineInfo(), host },
  options: { quick, benches: which },
  comparisons,
  errors,
  raw,
};
writeResults(file, run);
const { svg, md } = writeReports(file, { readme: writeReadme });
console.log(`\nresults: ${relative(process.cwd(), file)}\nchart:   ${relative(process.cwd(), svg)}\ntable:   ${relative(process.cwd(), md)}${writeReadme ? "\nREADME.md Performance table rewritten" : ""}`);
process.exit(0);
