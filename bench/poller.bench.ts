/**
 * Wake latency of the Poller mechanisms against a C ping-pong baseline
 * measured in the same run (reference/prior-art.md §B.6, §D.1).
 *
 *   bun bench/poller.bench.ts [--iters 20000] [--warmup 2000] [--runs 3]
 *                             [--passes cross-core,pinned[,unpinned]] [--budgets 10,100] [--json out.json]
 *
 * A 1-byte ping-pong over an AF_UNIX stream socket, per round trip:
 *   C↔C          two C processes, blocking read/write (bench/c/pingpong.c `cc`)
 *   doorbell     Bun ↔ C echo; reply readiness via Poller("doorbell")
 *   callback     Bun ↔ C echo; reply readiness via Poller("callback") (threadsafe JSCallback)
 *   poll+park N  Bun ↔ C echo; `lw_wait_readable(fd, N µs)` right after the send, and the
 *                doorbell poller only if the reply is not there by then
 * Reported: p50/p90/p99 µs per round trip, CPU per round trip (user+sys of the
 * measuring process ÷ round trips; for Bun that includes the poller thread),
 * and ratios to the C baseline. Each (pass, case, run) is a fresh process, runs
 * are interleaved across cases, and the table shows the median over runs with
 * the min–max spread of p50. Passes: "cross-core" puts the measuring process
 * (the Bun process with its poller thread, or the C parent) on CPU 0 and the C
 * peer on CPU 1; "pinned" runs both under `taskset -c 0` (one core);
 * "unpinned" (opt-in) leaves placement to the scheduler, which on the project
 * VM is bimodal (C↔C p50 9 µs in one run, 45 µs in the next).
 *
 * `runPollerBench()` is the entry point for bench/index.ts.
 * @module
 */
import { ptr } from "bun:ffi";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../lib/native/ffi.ts";
import { Poller, READABLE, type PollerMechanism } from "../lib/native/poller.ts";
import { acceptFd, closeFd, listenPath } from "../lib/native/socket.ts";

export type CaseName = "c-c" | "doorbell" | "callback" | `poll+park-${number}`;
export type PassName = "cross-core" | "pinned" | "unpinned";

export interface RunResult {
  p50: number; // µs
  p90: number;
  p99: number;
  cpuPerRtt: number; // µs of CPU per round trip
  hitRate?: number; // poll+park: fraction of replies caught by the bounded wait
  crashed?: string;
}

export interface CaseSummary {
  pass: PassName;
  case: CaseName;
  runs: RunResult[];
  p50: number;
  p50Min: number;
  p50Max: number;
  p90: number;
  p99: number;
  cpuPerRtt: number;
  hitRate?: number;
  crashes: number;
}

export interface PollerBenchOptions {
  iters?: number;
  warmup?: number;
  runs?: number;
  passes?: PassName[];
  budgetsUs?: number[];
  print?: boolean;
}

const here = import.meta.dir;
const selfPath = import.meta.path;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function percentiles(samplesNs: Float64Array): { p50: number; p90: number; p99: number } {
  const s = Float64Array.from(samplesNs).sort();
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]! / 1000;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Compiles bench/c/pingpong.c into `dir`; returns the binary's path. */
export function buildPingPong(dir: string): string {
  const bin = join(dir, "pingpong");
  const cc = process.env.CC || "cc";
  const r = Bun.spawnSync([cc, "-O2", "-o", bin, join(here, "c", "pingpong.c")], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`bench: cannot compile bench/c/pingpong.c with ${cc}: ${r.stderr.toString()}`);
  return bin;
}

// ---------------------------------------------------------------------------
// One measurement, in its own process (`--measure <case>`).

async function measureC(bin: string, iters: number, warmup: number, peerCpu?: number): Promise<RunResult> {
  const p = Bun.spawn([bin, "cc", String(iters), String(warmup), ...(peerCpu === undefined ? [] : [String(peerCpu)])], { stdout: "pipe", stderr: "inherit" });
  const [text, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`pingpong cc exited ${code}`);
  const j = JSON.parse(text) as { cpu_ns: number; samples_ns: number[] };
  return { ...percentiles(Float64Array.from(j.samples_ns)), cpuPerRtt: j.cpu_ns / 1000 / iters };
}

async function measureBun(bin: string, kase: CaseName, iters: number, warmup: number, dir: string, peerCpu?: number): Promise<RunResult> {
  const sockPath = join(dir, `pp-${process.pid}.sock`);
  const lfd = listenPath(sockPath, 4, 0o600);
  const pin = peerCpu === undefined ? [] : ["taskset", "-c", String(peerCpu)];
  const child = Bun.spawn([...pin, bin, "echo", sockPath], { stdout: "ignore", stderr: "inherit" });
  let fd = -1;
  for (let i = 0; i < 5000 && fd < 0; i++) {
    fd = acceptFd(lfd);
    if (fd < 0) await Bun.sleep(1);
  }
  closeFd(lfd);
  if (fd < 0) throw new Error("echo child did not connect");

  const budget = kase.startsWith("poll+park-") ? Number(kase.slice("poll+park-".length)) : 0;
  const mechanism: PollerMechanism = kase === "callback" ? "callback" : "doorbell";
  const poller = new Poller(mechanism);
  poller.ref();
  // FFI buffers: ArrayBuffer-backed, and read after every recv below so they stay
  // reachable (a buffer only known by its ptr() number can be collected and reused).
  const buf = new Uint8Array(new ArrayBuffer(64));
  const fds = new Int32Array(new ArrayBuffer(256 * 4));
  const out = new Int32Array(new ArrayBuffer(8));
  buf[0] = 0x70;
  const pBuf = ptr(buf);
  const pFds = ptr(fds);
  const pOut = ptr(out);
  let resolve: (() => void) | null = null;
  const watch = poller.watch(fd, () => {
    const r = resolve;
    resolve = null;
    r?.();
  });
  const parked = () =>
    new Promise<void>((res) => {
      resolve = res;
      watch.arm(READABLE);
    });

  let hits = 0;
  const samples = new Float64Array(iters);
  const oneRtt = async (): Promise<void> => {
    if (native.lw_send(fd, pBuf, 1, pFds, 0) !== 1) throw new Error("send failed");
    if (budget > 0 && native.lw_wait_readable(fd, budget) === 1) hits++;
    else await parked();
    const n = native.lw_recv(fd, pBuf, 64, pFds, pOut);
    if (n !== 1 || buf[0] !== 0x70 || out[0] !== 0) throw new Error(`recv gave ${n} (byte ${buf[0]}, ${out[0]} fds)`);
  };
  for (let i = 0; i < warmup; i++) await oneRtt();
  hits = 0;
  const cpu0 = cpuUs();
  for (let i = 0; i < iters; i++) {
    const t0 = Bun.nanoseconds();
    await oneRtt();
    samples[i] = Bun.nanoseconds() - t0;
  }
  const cpu1 = cpuUs();
  watch.remove();
  poller.unref();
  poller.close();
  closeFd(fd);
  await child.exited;
  const r: RunResult = { ...percentiles(samples), cpuPerRtt: (cpu1 - cpu0) / iters };
  if (budget > 0) r.hitRate = hits / iters;
  return r;
}

// ---------------------------------------------------------------------------
// Orchestration: one process per (pass, case, run).

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function measureOnce(pass: PassName, kase: CaseName, bin: string, dir: string, iters: number, warmup: number): Promise<RunResult> {
  const cmd = [process.execPath, selfPath, "--measure", kase, "--bin", bin, "--dir", dir, "--iters", String(iters), "--warmup", String(warmup)];
  const full = pass === "pinned" ? ["taskset", "-c", "0", ...cmd] : pass === "cross-core" ? ["taskset", "-c", "0", ...cmd, "--peer-cpu", "1"] : cmd;
  const p = Bun.spawn(full, { stdout: "pipe", stderr: "pipe", env: { ...process.env } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  if (code !== 0 || !line) {
    const why = (err.match(/panic[^\n]*|Segmentation fault[^\n]*|error:[^\n]*/)?.[0] ?? `exit ${code}`).trim();
    return { p50: NaN, p90: NaN, p99: NaN, cpuPerRtt: NaN, crashed: why };
  }
  return JSON.parse(line.slice("RESULT ".length)) as RunResult;
}

export async function runPollerBench(opts: PollerBenchOptions = {}): Promise<CaseSummary[]> {
  const iters = opts.iters ?? 20_000;
  const warmup = opts.warmup ?? 2_000;
  const runs = opts.runs ?? 3;
  const passes = opts.passes ?? ["cross-core", "pinned"];
  const budgets = opts.budgetsUs ?? [10, 100];
  const print = opts.print ?? true;
  const cases: CaseName[] = ["c-c", "doorbell", "callback", ...budgets.map((b) => `poll+park-${b}` as CaseName)];
  const dir = mkdtempSync(join(tmpdir(), "lwmsg-bench-"));
  const results = new Map<string, RunResult[]>();
  try {
    const bin = buildPingPong(dir);
    if (passes.some((p) => p !== "unpinned") && Bun.spawnSync(["taskset", "-c", "0", "true"]).exitCode !== 0)
      throw new Error("bench: `taskset -c 0` is not available (util-linux); pass --passes unpinned");
    if (passes.includes("cross-core") && navigator.hardwareConcurrency < 2)
      throw new Error("bench: cross-core pass needs 2 CPUs; pass --passes pinned,unpinned");
    for (const pass of passes)
      for (let r = 0; r < runs; r++)
        for (const kase of cases) {
          const res = await measureOnce(pass, kase, bin, dir, iters, warmup);
          const key = `${pass}/${kase}`;
          results.set(key, [...(results.get(key) ?? []), res]);
          if (print)
            process.stderr.write(
              `  ${pass.padEnd(10)} ${kase.padEnd(14)} run ${r + 1}/${runs}: ` +
                (res.crashed ? `CRASHED (${res.crashed})` : `p50 ${res.p50.toFixed(1)} µs p99 ${res.p99.toFixed(1)} µs`) +
                "\n",
            );
        }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const summaries: CaseSummary[] = [];
  for (const pass of passes)
    for (const kase of cases) {
      const all = results.get(`${pass}/${kase}`) ?? [];
      const ok = all.filter((r) => !r.crashed);
      const p50s = ok.map((r) => r.p50);
      const s: CaseSummary = {
        pass,
        case: kase,
        runs: all,
        p50: median(p50s),
        p50Min: Math.min(...p50s),
        p50Max: Math.max(...p50s),
        p90: median(ok.map((r) => r.p90)),
        p99: median(ok.map((r) => r.p99)),
        cpuPerRtt: median(ok.map((r) => r.cpuPerRtt)),
        crashes: all.length - ok.length,
      };
      if (ok.some((r) => r.hitRate !== undefined)) s.hitRate = median(ok.map((r) => r.hitRate ?? 0));
      summaries.push(s);
    }
  if (print) printTable(summaries, { iters, runs });
  return summaries;
}

const label: Record<string, string> = {
  "c-c": "C↔C blocking (baseline)",
  doorbell: "Bun doorbell ↔ C",
  callback: "Bun callback ↔ C",
};
const caseLabel = (c: CaseName) => label[c] ?? `Bun poll ${c.slice("poll+park-".length)}µs+doorbell ↔ C`;

export function printTable(rows: CaseSummary[], info: { iters: number; runs: number }): void {
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "—");
  const x = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "—");
  console.log(
    `\nPoller wake latency — 1-byte round trip over AF_UNIX; ${info.iters} round trips per run, median of ${info.runs} runs ` +
      `(p50 spread = min–max over runs); CPU = user+sys of the measuring process per round trip. Bun ${Bun.version}.`,
  );
  const head = ["pass", "case", "p50 µs", "(spread)", "p90 µs", "p99 µs", "p50 ×C", "p99 ×C", "CPU µs/rtt", "CPU ×C", "hit rate", "crashes"];
  const table: string[][] = [head];
  for (const r of rows) {
    const base = rows.find((b) => b.pass === r.pass && b.case === "c-c")!;
    table.push([
      r.pass,
      caseLabel(r.case),
      f(r.p50),
      Number.isFinite(r.p50Min) ? `${f(r.p50Min)}–${f(r.p50Max)}` : "—",
      f(r.p90),
      f(r.p99),
      x(r.p50 / base.p50),
      x(r.p99 / base.p99),
      f(r.cpuPerRtt),
      x(r.cpuPerRtt / base.cpuPerRtt),
      r.hitRate === undefined ? "" : `${(r.hitRate * 100).toFixed(0)}%`,
      r.crashes ? `${r.crashes}/${r.runs.length}` : "0",
    ]);
  }
  const widths = head.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const [i, row] of table.entries()) {
    console.log(row.map((c, j) => (j < 2 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join("  "));
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}

// ---------------------------------------------------------------------------

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const measure = arg(argv, "measure") as CaseName | undefined;
  const iters = Number(arg(argv, "iters") ?? 20_000);
  const warmup = Number(arg(argv, "warmup") ?? 2_000);
  if (measure) {
    const bin = arg(argv, "bin")!;
    const dir = arg(argv, "dir")!;
    const peer = arg(argv, "peer-cpu");
    const peerCpu = peer === undefined ? undefined : Number(peer);
    const r = measure === "c-c" ? await measureC(bin, iters, warmup, peerCpu) : await measureBun(bin, measure, iters, warmup, dir, peerCpu);
    console.log(`RESULT ${JSON.stringify(r)}`);
    process.exit(0);
  }
  const passes = (arg(argv, "passes") ?? "cross-core,pinned").split(",") as PassName[];
  const budgets = arg(argv, "budgets")?.split(",").map(Number);
  const res = await runPollerBench({ iters, warmup, runs: Number(arg(argv, "runs") ?? 3), passes, ...(budgets ? { budgetsUs: budgets } : {}) });
  const json = arg(argv, "json");
  if (json) await Bun.write(json, JSON.stringify(res, null, 2));
}
