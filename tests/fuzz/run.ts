#!/usr/bin/env bun
/**
 * `npm run fuzz`: the seeded receive-path fuzzer.
 *
 *   bun tests/fuzz/run.ts [--seed N] [--decoder N] [--live N] [--quick] [--no-save]
 *
 * Runs N decoder cases (default 1,000,000) and N live-connection cases
 * (default 100,000; `--quick`: 20,000 and 2,000), prints what ran and what
 * came out, saves failing inputs under tests/fuzz/corpus/ (replayed by
 * tests/fuzz.test.ts), and exits 1 on any failure: an oracle failure, an
 * uncaught exception or unhandled rejection, fd growth, or heap growth.
 * @module
 */
import { Worker } from "node:worker_threads";
import { Poller } from "../../lib/native/poller.ts";
import { DecoderFuzzer, RANDOM_SCHEMAS, Tally, runDecoderBatch, sweepCounts, type DecoderFailure, type SweepResult } from "./decoder.ts";
import { LiveFuzzer, openFdCount, replayLive, type LiveCase, type LiveResult } from "./live.ts";
import { loadBytes, saveEntry, storeBytes, type LiveEntry } from "./corpus.ts";
import { schemas } from "./schemas.ts";

// ---------------------------------------------------------------------------
// options

function usage(msg?: string): never {
  if (msg) console.error(msg);
  console.error("usage: bun tests/fuzz/run.ts [--seed N] [--decoder N] [--live N] [--quick] [--no-save]");
  process.exit(2);
}

const argv = process.argv.slice(2);
let seed = Math.floor(Math.random() * 2 ** 32);
let decoderN = 1_000_000;
let liveN = 100_000;
let quick = false;
let save = true;
const explicit = { decoder: false, live: false };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  const num = () => {
    const v = Number(argv[++i]);
    if (!Number.isFinite(v) || v < 0) usage(`${a} needs a non-negative number`);
    return Math.floor(v);
  };
  if (a === "--seed") seed = num() >>> 0;
  else if (a === "--decoder") (decoderN = num()), (explicit.decoder = true);
  else if (a === "--live") (liveN = num()), (explicit.live = true);
  else if (a === "--quick") quick = true;
  else if (a === "--no-save") save = false;
  else if (a === "--help" || a === "-h") usage();
  else usage(`unknown option ${a}`);
}
if (quick) {
  if (!explicit.decoder) decoderN = 20_000;
  if (!explicit.live) liveN = 2_000;
}

// ---------------------------------------------------------------------------
// process-level failures and a watchdog for the synchronous decoder

const uncaught: string[] = [];
process.on("uncaughtException", (e) => uncaught.push(`uncaughtException: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));
process.on("unhandledRejection", (e) => uncaught.push(`unhandledRejection: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));

// The decoder runs synchronously, so a timer on this thread cannot catch a hang; a worker watches a progress counter.
const beat = new Int32Array(new SharedArrayBuffer(8));
const STALL_MS = 30_000;
const watchdog = new Worker(
  `const { workerData } = require("node:worker_threads");
   const beat = new Int32Array(workerData.sab);
   let last = -1, since = Date.now();
   setInterval(() => {
     const now = Atomics.load(beat, 0);
     if (now !== last) { last = now; since = Date.now(); return; }
     if (Atomics.load(beat, 1) === 1 && Date.now() - since > ${STALL_MS}) {
       process.stderr.write("\\nHANG: no progress for ${STALL_MS / 1000} s at decoder case " + now + "\\n");
       process.kill(process.pid, "SIGKILL");
     }
   }, 1000);`,
  { eval: true, workerData: { sab: beat.buffer } },
);
watchdog.unref();

// ---------------------------------------------------------------------------
// measurements

const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;
function memory(): { rss: number; heap: number } {
  Bun.gc(true);
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}
const fmt = (n: number) => n.toLocaleString("en-US");
function table(m: Map<string, number>): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(", ");
}

const failures: string[] = [];
const saved: string[] = [];

console.log(`fuzz: seed ${seed} (rerun: bun tests/fuzz/run.ts --seed ${seed}${quick ? " --quick" : ""}${explicit.decoder ? ` --decoder ${decoderN}` : ""}${explicit.live ? ` --live ${liveN}` : ""})`);
console.log(`      ${fmt(decoderN)} decoder cases over ${schemas.length} schemas, ${fmt(liveN)} live cases`);

// the poller's thread and fds exist for the whole process: start them before counting
Poller.shared();

// ---------------------------------------------------------------------------
// decoder

const dec = new DecoderFuzzer();
const decTally = new Tally();
const decFailures = new Map<string, DecoderFailure>();
let decMem = { before: memory(), after: memory() };
let decSecs = 0;
let sweep: SweepResult | null = null;
let sweepSecs = 0;
if (decoderN > 0) {
  Atomics.store(beat, 1, 1);
  const warm = Math.min(decoderN, Math.max(1000, Math.floor(decoderN / 100)));
  const t0 = performance.now();
  let done = 0;
  const step = 1000;
  const report = Math.max(step, Math.floor(decoderN / 10 / step) * step);
  while (done < decoderN) {
    const to = Math.min(decoderN, done + step);
    runDecoderBatch(dec, seed, done, to, decTally, decFailures);
    done = to;
    Atomics.store(beat, 0, done);
    if (done === warm) decMem.before = memory();
    if (done % report === 0 && done < decoderN) {
      const m = memory();
      console.log(`  decoder ${fmt(done)} (${fmt(Math.round(done / ((performance.now() - t0) / 1000)))}/s; RSS ${mb(m.rss)}, heap ${mb(m.heap)})`);
    }
  }
  decSecs = (performance.now() - t0) / 1000;
  // every count/length/alias/handle id of valid encodings set huge, with new Array(n) watched
  const s0 = performance.now();
  sweep = sweepCounts(dec, seed, quick ? 2 : 12, Array.from({ length: quick ? 30 : RANDOM_SCHEMAS }, (_, k) => `random.${seed}.${k}`));
  sweepSecs = (performance.now() - s0) / 1000;
  for (const f of sweep.failures.slice(0, 20)) failures.push(`huge-count sweep: ${f}`);
  Atomics.store(beat, 1, 0);
  decMem.after = memory();
  for (const f of decFailures.values()) {
    const line = `decoder #${f.index} ${f.input.schema} (${f.kind}${f.ops.length ? " " + f.ops.join("+") : ""}): ${f.failure}`;
    failures.push(line);
    if (save && saved.length < 40) {
      saved.push(
        saveEntry({
          kind: "decoder",
          schema: f.input.schema,
          ...storeBytes(f.input.bytes),
          fdsIn: f.input.fdsIn,
          handles: f.input.handles,
          expected: "a value, or LwMsgError(MALFORMED|EOF|OVERFLOW|UNDERFLOW|INVALID_HANDLE|MEMORY or the schema's own); print/re-encode without a non-LwMsgError",
          actual: f.failure.slice(0, 2000),
          seed,
          case: f.index,
          note: `found by npm run fuzz (${f.kind}${f.ops.length ? ": " + f.ops.join("+") : ""})`,
        }),
      );
    }
  }
}

// ---------------------------------------------------------------------------
// live

const live = new LiveFuzzer();
const liveKinds = new Map<string, number>();
const liveOutcomes = new Map<string, number>();
const liveFailures = new Map<string, { i: number; c: LiveCase; r: LiveResult }>();
let liveMax = { ms: 0, label: "" };
let liveMem = { before: memory(), after: memory() };
let fdsLive = { before: 0, after: 0 };
let liveSecs = 0;
if (liveN > 0) {
  const warm = Math.min(liveN, Math.max(200, Math.floor(liveN / 100)));
  const t0 = performance.now();
  const report = Math.max(1000, Math.floor(liveN / 10 / 1000) * 1000);
  fdsLive.before = openFdCount();
  for (let i = 0; i < liveN; i++) {
    const c = live.gen.make(seed, i);
    const r = await live.run(c);
    liveKinds.set(c.kind, (liveKinds.get(c.kind) ?? 0) + 1);
    for (const o of r.outcomes) liveOutcomes.set(o, (liveOutcomes.get(o) ?? 0) + 1);
    if (r.ms > liveMax.ms) liveMax = { ms: r.ms, label: `#${i} ${c.kind} ${c.protocol}` };
    if (r.failure) {
      const key = `${c.kind}|${r.failure.replace(/\d+/g, "N").slice(0, 100)}`;
      if (!liveFailures.has(key)) liveFailures.set(key, { i, c, r });
    }
    if (i + 1 === warm) {
      await live.finish();
      liveMem.before = memory();
    }
    if ((i + 1) % report === 0 && i + 1 < liveN) {
      const m = memory();
      console.log(`  live ${fmt(i + 1)} (${fmt(Math.round((i + 1) / ((performance.now() - t0) / 1000)))}/s; RSS ${mb(m.rss)}, heap ${mb(m.heap)}, fds ${openFdCount()})`);
    }
  }
  await live.finish();
  liveSecs = (performance.now() - t0) / 1000;
  liveMem.after = memory();
  // let closes that happen on the poller thread land
  for (let k = 0; k < 50 && openFdCount() > fdsLive.before; k++) await Bun.sleep(10);
  fdsLive.after = openFdCount();
  for (const { i, c, r } of liveFailures.values()) {
    failures.push(`live #${i} ${c.kind} ${c.protocol} packet ${c.packetSize}${c.fds ? ` fds ${c.fds}` : ""}${c.close ? " close" : ""} (${c.ops.join("+")}): ${r.failure}\n      events: ${r.events.join(" | ")}`);
    if (save && saved.length < 80) {
      const stream = c.greeting ? c.stream : r.repro ?? c.stream;
      const entry: LiveEntry = {
        kind: "live",
        protocol: c.protocol,
        packetSize: c.packetSize,
        maxMessageSize: c.maxMessageSize,
        ...storeBytes(stream),
        fds: c.fds,
        close: c.close,
        ...(c.greeting ? { greeting: true } : {}),
        expected: "recv() events as tests/fuzz/model.ts derives them from reference §3–4",
        actual: `${r.failure}; events: ${r.events.join(" | ")}`.slice(0, 2000),
        seed,
        case: i,
        note: `found by npm run fuzz (${c.kind}${c.ops.length ? ": " + c.ops.join("+") : ""})`,
      };
      const path = saveEntry(entry);
      const again = await replayLive(live, entry, loadBytes(entry));
      saved.push(`${path} (${again ? "reproduces from a fresh pair" : "does NOT reproduce alone"})`);
    }
  }
  await live.dispose();
}
// the fd pool is closed now: count again against the start of the live part minus the pool
const fdsEnd = openFdCount();

// ---------------------------------------------------------------------------
// report

console.log("");
console.log("decoder");
console.log(`  cases        ${fmt(decTally.cases)} in ${decSecs.toFixed(1)} s = ${fmt(Math.round(decTally.cases / Math.max(decSecs, 1e-9)))} cases/s`);
console.log(`  by kind      ${table(decTally.byKind)}`);
console.log(`  outcomes     ${table(decTally.byOutcome)}`);
console.log(`  max case     ${decTally.maxMs.toFixed(1)} ms (${decTally.maxCase})`);
console.log(`  memory       after warm-up: RSS ${mb(decMem.before.rss)}, heap ${mb(decMem.before.heap)}; at the end: RSS ${mb(decMem.after.rss)}, heap ${mb(decMem.after.heap)}`);
if (sweep) {
  console.log(`  huge counts  ${fmt(sweep.cases)} decodes with a count/length/id set huge in ${sweepSecs.toFixed(1)} s: ${table(sweep.byOutcome)}`);
  console.log(`               array slots preallocated, worst share of the bound (1 MiB + 64·input)/8 + 64·4096: ${sweep.worstRatio.toPrecision(3)} (${sweep.worst}); max case ${sweep.maxMs.toFixed(1)} ms`);
}
console.log("live");
console.log(`  cases        ${fmt([...liveKinds.values()].reduce((a, b) => a + b, 0))} in ${liveSecs.toFixed(1)} s = ${fmt(Math.round(liveN / Math.max(liveSecs, 1e-9)))} cases/s (${fmt(live.pairsOpened)} socketpairs)`);
console.log(`  by kind      ${table(liveKinds)}`);
console.log(`  events       ${table(liveOutcomes)}`);
console.log(`  max case     ${liveMax.ms.toFixed(1)} ms (${liveMax.label})`);
console.log(`  fds          ${fdsLive.before} before the live cases, ${fdsLive.after} after (fd pool of 32 still open); ${fdsEnd} at exit`);
console.log(`  memory       after warm-up: RSS ${mb(liveMem.before.rss)}, heap ${mb(liveMem.before.heap)}; at the end: RSS ${mb(liveMem.after.rss)}, heap ${mb(liveMem.after.heap)}`);

// growth checks
if (liveN > 0 && fdsLive.after !== fdsLive.before) failures.push(`fd count grew over the live cases: ${fdsLive.before} → ${fdsLive.after}`);
const HEAP_SLACK = 64 * 1048576;
if (decoderN > 0 && decMem.after.heap - decMem.before.heap > HEAP_SLACK) failures.push(`decoder heap grew by ${mb(decMem.after.heap - decMem.before.heap)} after warm-up`);
if (liveN > 0 && liveMem.after.heap - liveMem.before.heap > HEAP_SLACK) failures.push(`live heap grew by ${mb(liveMem.after.heap - liveMem.before.heap)} after warm-up`);
failures.push(...uncaught);

console.log("");
if (saved.length) {
  console.log(`saved ${saved.length} failing input(s):`);
  for (const s of saved) console.log(`  ${s}`);
}
if (failures.length) {
  console.log(`FAILED: ${failures.length} distinct failure(s)`);
  for (const f of failures.slice(0, 50)) console.log(`  - ${f}`);
  process.exit(1);
}
console.log(`OK: no failures (seed ${seed})`);
process.exit(0);
