/**
 * Peer benchmark: calls per second and call latency of bun-lwmsg's Peer
 * (`session.call`), with the server in a child process, against in the same
 * run:
 *   - the connection's own request/reply (`Connection.transact` against a
 *     child that echoes with a bare Connection);
 *   - a minimal `Bun.listen` unix-socket server speaking JSON lines, doing
 *     the same work (echo the FOO record), driven by a `Bun.connect` client
 *     that matches replies to requests by id.
 *
 * Cases: 1 call in flight (sequential awaits) and 64 calls in flight on one
 * session/connection. Every case is repeated; the table shows the median and
 * the min–max spread over runs, and ratios of medians.
 *
 * Targets: 64 in flight ≥ 2× the Bun.listen+JSON server's calls/s;
 * 1 in flight p50 within 1.2× of `Connection.transact`.
 *
 *   bun bench/peer.bench.ts [--quick] [--runs N] [--json PATH|--no-json]
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Peer } from "../lib/peer.ts";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { benchProtocol, FOO_DATA } from "./fixtures/conn-protocol.ts";
import { reap, spawnChild, withTimeout } from "./lib/proc.ts";
import { fmtNum, fmtSpread, latencySummary, spread, type Spread } from "./lib/stats.ts";
import { formatTable } from "./lib/table.ts";
import { machineInfo, writeResults, type Machine } from "./lib/results.ts";

const HERE = dirname(import.meta.path);
const SERVER = join(HERE, "fixtures", "peer-server.ts");
const BUN = process.execPath;
const INFLIGHT = 64;

export interface PeerBenchOptions {
  /** Fewer calls and runs (~15 s instead of ~1 min). */
  quick?: boolean;
  /** Repetitions of every case (default 5, quick 3). */
  runs?: number;
  /** Where to write the JSON results (default bench/results/peer.json); false: don't. */
  json?: string | false;
  /** Print progress and the table (default true). */
  print?: boolean;
}

/** One run of one case. */
interface Sample {
  rate: number; // calls/s
  p50: number; // µs
  p99: number; // µs
}

let sockDir = "";
let sockN = 0;
const sockPath = () => join(sockDir, `p${++sockN}.sock`);

/** Start a server child and wait for its "ready" line. */
async function startServer(mode: "peer" | "conn" | "json", path: string) {
  const child = spawnChild([BUN, SERVER, mode, path]);
  const reader = child.stdout.getReader();
  let text = "";
  await withTimeout(
    (async () => {
      while (!text.includes("ready")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`${mode} server exited before it was ready`);
        text += new TextDecoder().decode(value);
      }
    })(),
    10_000,
    `${mode} server start`,
  );
  reader.releaseLock();
  return child;
}

/** Run `inflight` concurrent loops of `one()` for `n` calls in total; per-call latency in µs. */
async function drive(n: number, warm: number, inflight: number, one: () => Promise<unknown>): Promise<Sample> {
  for (let i = 0; i < warm; i++) await one();
  const lat = new Float64Array(n);
  let next = 0;
  const t0 = Bun.nanoseconds();
  const loop = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const s = Bun.nanoseconds();
      await one();
      lat[i] = (Bun.nanoseconds() - s) / 1000;
    }
  };
  if (inflight === 1) await loop();
  else await Promise.all(Array.from({ length: inflight }, loop));
  const secs = (Bun.nanoseconds() - t0) / 1e9;
  const l = latencySummary(lat);
  return { rate: n / secs, p50: l.p50, p99: l.p99 };
}

async function peerCase(n: number, warm: number, inflight: number): Promise<Sample> {
  const path = sockPath();
  const child = await startServer("peer", path);
  const client = new Peer(benchProtocol);
  client.addConnectEndpoint(ConnectionMode.LOCAL, path);
  try {
    const s = await client.connect();
    const msg = { tag: "FOO" as const, data: FOO_DATA };
    return await withTimeout(
      drive(n, warm, inflight, () => s.call(msg)),
      120_000,
      `peer ${inflight} in flight`,
    );
  } finally {
    await client.close();
    child.kill();
    await reap(child);
  }
}

async function transactCase(n: number, warm: number): Promise<Sample> {
  const path = sockPath();
  const child = await startServer("conn", path);
  const c = new Connection(benchProtocol);
  c.setEndpoint(ConnectionMode.LOCAL, path);
  try {
    await c.connect();
    const msg = { tag: "FOO", data: FOO_DATA };
    return await withTimeout(
      drive(n, warm, 1, () => c.transact(msg)),
      120_000,
      "transact",
    );
  } finally {
    await c.close();
    child.kill();
    await reap(child);
  }
}

/** JSON-lines client over Bun.connect: replies matched to requests by id. */
async function jsonCase(n: number, warm: number, inflight: number): Promise<Sample> {
  const path = sockPath();
  const child = await startServer("json", path);
  const waiting = new Map<number, () => void>();
  let buf = "";
  let pending: Uint8Array | null = null;
  const enc = new TextEncoder();
  const sock = await Bun.connect({
    unix: path,
    socket: {
      data(_s, chunk) {
        const lines = (buf + chunk.toString()).split("\n");
        buf = lines.pop()!;
        for (const line of lines) {
          if (!line) continue;
          const r = JSON.parse(line) as { id: number };
          const w = waiting.get(r.id);
          if (w) {
            waiting.delete(r.id);
            w();
          }
        }
      },
      drain(s) {
        while (pending) {
          const k = s.write(pending);
          if (k <= 0) return;
          pending = k < pending.length ? pending.subarray(k) : null;
        }
      },
    },
  });
  let id = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const my = id++;
      waiting.set(my, resolve);
      const line = enc.encode(JSON.stringify({ id: my, a: FOO_DATA.a, b: FOO_DATA.b, s: FOO_DATA.s }) + "\n");
      if (pending) {
        const all = new Uint8Array(pending.length + line.length);
        all.set(pending);
        all.set(line, pending.length);
        pending = all;
        return;
      }
      const k = sock.write(line);
      if (k < line.length) pending = line.subarray(Math.max(0, k));
    });
  try {
    return await withTimeout(drive(n, warm, inflight, one), 120_000, `json ${inflight} in flight`);
  } finally {
    sock.end();
    child.kill();
    await reap(child);
  }
}

export interface PeerBenchResult {
  date: string;
  bun: string;
  machine: Machine;
  options: PeerBenchOptions;
  calls: { one: number; many: number; runs: number };
  results: Record<string, Sample[]>;
  rows: Record<string, string>[];
  errors: string[];
  table: string;
}

export async function runPeerBench(opts: PeerBenchOptions = {}): Promise<PeerBenchResult> {
  const print = opts.print ?? true;
  const log = (s: string) => {
    if (print) console.error(s);
  };
  const runs = opts.runs ?? (opts.quick ? 3 : 5);
  const one = opts.quick ? 5_000 : 20_000;
  const many = opts.quick ? 50_000 : 200_000;
  const warm = 1_000;
  sockDir = mkdtempSync(join(tmpdir(), "lwpeer-"));
  const results: Record<string, Sample[]> = { peer1: [], transact1: [], json1: [], peer64: [], json64: [] };
  const errors: string[] = [];
  const started = Date.now();
  const attempt = async (key: string, f: () => Promise<Sample>) => {
    try {
      results[key]!.push(await f());
    } catch (e) {
      errors.push(`${key}: ${(e as Error)?.message ?? e}`);
      log(`  ! ${key}: ${(e as Error)?.message ?? e}`);
    }
  };
  log(`peer bench: ${runs} runs; 1 in flight ${one} calls, ${INFLIGHT} in flight ${many} calls (+${warm} warm-up each)`);
  try {
    // Interleave the variants run by run so drift hits them alike.
    for (let r = 0; r < runs; r++) {
      await attempt("transact1", () => transactCase(one, warm));
      await attempt("peer1", () => peerCase(one, warm, 1));
      await attempt("json1", () => jsonCase(one, warm, 1));
      await attempt("peer64", () => peerCase(many, warm, INFLIGHT));
      await attempt("json64", () => jsonCase(many, warm, INFLIGHT));
      const last = (k: string) => results[k]!.at(-1);
      log(
        `  run ${r + 1}/${runs}: p50 µs transact ${fmtNum(last("transact1")?.p50 ?? NaN)}, peer ${fmtNum(last("peer1")?.p50 ?? NaN)}, json ${fmtNum(last("json1")?.p50 ?? NaN)}; ` +
          `${INFLIGHT} in flight calls/s peer ${fmtNum(last("peer64")?.rate ?? NaN)}, json ${fmtNum(last("json64")?.rate ?? NaN)}`,
      );
    }
  } finally {
    rmSync(sockDir, { recursive: true, force: true });
  }

  const sp = (k: string, f: keyof Sample): Spread => spread(results[k]!.map((s) => s[f]));
  const ratio = (a: Spread, b: Spread) => a.median / b.median;
  const rows: Record<string, string>[] = [];
  const add = (c: string, ours: string, base: string, r: number, target: string, met: string) =>
    rows.push({ case: c, ours, baseline: base, ratio: Number.isFinite(r) ? r.toFixed(2) + "×" : "—", target, met });

  const p1 = sp("peer1", "p50"), t1 = sp("transact1", "p50");
  add("1 in flight: p50 latency, peer vs Connection.transact", fmtSpread(p1, "µs"), fmtSpread(t1, "µs"), ratio(p1, t1), "≤ 1.20×", Number.isFinite(ratio(p1, t1)) ? (ratio(p1, t1) <= 1.2 ? "yes" : "NO") : "—");
  const p1r = sp("peer1", "rate"), t1r = sp("transact1", "rate"), j1r = sp("json1", "rate");
  add("1 in flight: calls/s, peer vs Connection.transact", fmtSpread(p1r), fmtSpread(t1r), ratio(p1r, t1r), "—", "—");
  add("1 in flight: calls/s, peer vs Bun.listen+JSON", fmtSpread(p1r), fmtSpread(j1r), ratio(p1r, j1r), "—", "—");
  const p99 = sp("peer1", "p99"), t99 = sp("transact1", "p99"), j99 = sp("json1", "p99");
  add("1 in flight: p99 latency, peer vs Connection.transact", fmtSpread(p99, "µs"), fmtSpread(t99, "µs"), ratio(p99, t99), "—", "—");
  const j50 = sp("json1", "p50");
  add("1 in flight: p50 latency, peer vs Bun.listen+JSON", fmtSpread(p1, "µs"), fmtSpread(j50, "µs"), ratio(p1, j50), "—", "—");
  add("1 in flight: p99 latency, peer vs Bun.listen+JSON", fmtSpread(p99, "µs"), fmtSpread(j99, "µs"), ratio(p99, j99), "—", "—");
  const p64 = sp("peer64", "rate"), j64 = sp("json64", "rate");
  add(`${INFLIGHT} in flight: calls/s, peer vs Bun.listen+JSON`, fmtSpread(p64), fmtSpread(j64), ratio(p64, j64), "≥ 2.00×", Number.isFinite(ratio(p64, j64)) ? (ratio(p64, j64) >= 2 ? "yes" : "NO") : "—");
  const p64l = sp("peer64", "p50"), j64l = sp("json64", "p50");
  add(`${INFLIGHT} in flight: p50 latency, peer vs Bun.listen+JSON`, fmtSpread(p64l, "µs"), fmtSpread(j64l, "µs"), ratio(p64l, j64l), "—", "—");
  const p64t = sp("peer64", "p99"), j64t = sp("json64", "p99");
  add(`${INFLIGHT} in flight: p99 latency, peer vs Bun.listen+JSON`, fmtSpread(p64t, "µs"), fmtSpread(j64t, "µs"), ratio(p64t, j64t), "—", "—");

  const table = formatTable(
    ["case", "ours (median, min–max)", "baseline (median, min–max)", "ratio", "target", "met?"],
    rows.map((r) => [r.case!, r.ours!, r.baseline!, r.ratio!, r.target!, r.met!]),
  );
  if (print) {
    console.log(`\nbun-lwmsg peer bench — ${runs} runs each, medians (min–max); servers in a child process; ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
    console.log(table);
    if (errors.length) console.log(`\nerrors:\n  ${errors.join("\n  ")}`);
  }
  const result: PeerBenchResult = {
    date: new Date().toISOString(),
    bun: Bun.version,
    machine: machineInfo(),
    options: opts,
    calls: { one, many, runs },
    results,
    rows,
    errors,
    table,
  };
  const jsonPath = opts.json === undefined ? join(HERE, "results", "peer.json") : opts.json;
  if (jsonPath) {
    writeResults(jsonPath, result);
  }
  return result;
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  const opts: PeerBenchOptions = { quick: argv.includes("--quick") };
  const ri = argv.indexOf("--runs");
  if (ri >= 0) opts.runs = Number(argv[ri + 1]);
  const ji = argv.indexOf("--json");
  if (ji >= 0) opts.json = argv[ji + 1]!;
  if (argv.includes("--no-json")) opts.json = false;
  await runPeerBench(opts);
  process.exit(0);
}
