/**
 * Peer benchmark: calls per second and call latency of bun-lwmsg's Peer
 * (`session.call`), with the server in a child process, against in the same
 * run:
 *   - the connection's own request/reply (`Connection.transact` against a
 *     child that echoes with a bare Connection);
 *   - a minimal `Bun.listen` unix-socket server speaking JSON lines, doing
 *     the same work (echo the FOO record), driven by a `Bun.connect` client
 *     that matches replies to requests by id;
 *   - Bun's own IPC: a child started with `Bun.spawn({ ipc, serialization })`
 *     echoing with `process.send`, with both serializations ("json" and
 *     "advanced"), replies matched by id;
 *   - `@grpc/grpc-js` unary calls over a unix socket (protobuf encoding via
 *     @grpc/proto-loader, bench/fixtures/echo.proto), the server in a child.
 *
 * Every server runs under Bun (this process's executable) and does the same
 * work: echo the FOO record {a: u32, b: u32, s: 32 chars}.
 * Cases: 1 call in flight (sequential awaits) and 64 calls in flight on one
 * session/connection. Every case is repeated; the table shows the median and
 * the min–max spread over runs, and ratios of medians.
 *
 * Targets (issue 13): 64 in flight ≥ 3× the Bun.listen+JSON server's calls/s;
 * 1 in flight p50 ≤ 1.1× `Connection.transact` and below Bun IPC's; ≥ 30×
 * gRPC's calls/s at 64 in flight and ≤ 0.15× its p50 at 1 in flight.
 * The gRPC baseline is ~30× slower than the others, so it runs fewer calls.
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
import * as grpc from "@grpc/grpc-js";
import { ECHO_PROTO_PACKAGE } from "./fixtures/grpc-echo.ts";
import { fmtNum, fmtSpread, latencySummary } from "./lib/stats.ts";
import { compare, targetMet, targetText, type Comparison } from "./lib/compare.ts";
import { formatTable } from "./lib/table.ts";
import { machineInfo, writeResults, type Machine } from "./lib/results.ts";

const HERE = dirname(import.meta.path);
const SERVER = join(HERE, "fixtures", "peer-server.ts");
const GRPC_SERVER = join(HERE, "fixtures", "grpc-server.ts");
const IPC_CHILD = join(HERE, "fixtures", "ipc-echo.ts");
const COLD_CLIENT = join(HERE, "fixtures", "peer-cold-client.ts");
const BUN = process.execPath;
const INFLIGHT = 64;

export interface PeerBenchOptions {
  /** Fewer calls and runs (~15 s instead of ~1 min). */
  quick?: boolean;
  /** Repetitions of every case (default 5, quick 3). */
  runs?: number;
  /** Where to write the JSON results (default bench/results/tmp/peer.json); false: don't. */
  json?: string | false;
  /** Print progress and the table (default true). */
  print?: boolean;
}

/** One run of one case. */
interface Sample {
  rate: number; // calls/s over the whole run
  /** calls/s over the second half of the run (JIT warm on both sides); for the cold case, its last quarter. */
  steady?: number;
  /** cold case only: calls/s over the first 5,000 calls of a fresh client process against a fresh server. */
  first5k?: number;
  p50: number; // µs
  p99: number; // µs
}

let sockDir = "";
let sockN = 0;
const sockPath = () => join(sockDir, `p${++sockN}.sock`);

/** Start a server child and wait for its "ready" line. */
async function startServer(mode: "peer" | "conn" | "json" | "grpc", path: string) {
  const child = spawnChild(mode === "grpc" ? [BUN, GRPC_SERVER, path] : [BUN, SERVER, mode, path]);
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
  let done = 0;
  const half = n >> 1;
  let tHalf = 0;
  const t0 = Bun.nanoseconds();
  const loop = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const s = Bun.nanoseconds();
      await one();
      const t = Bun.nanoseconds();
      lat[i] = (t - s) / 1000;
      if (++done === half) tHalf = t;
    }
  };
  if (inflight === 1) await loop();
  else await Promise.all(Array.from({ length: inflight }, loop));
  const t1 = Bun.nanoseconds();
  const l = latencySummary(lat);
  return { rate: (n * 1e9) / (t1 - t0), steady: ((n - half) * 1e9) / (t1 - tHalf), p50: l.p50, p99: l.p99 };
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

/**
 * Cold start: a fresh client process (bench/fixtures/peer-cold-client.ts) against a fresh server, both with
 * nothing compiled yet: calls/s over its first 5,000 calls, and over the last quarter of 60,000.
 */
async function coldCase(): Promise<Sample> {
  const path = sockPath();
  const child = await startServer("peer", path);
  try {
    const client = Bun.spawn([BUN, COLD_CLIENT, path, "60000"], { stdout: "pipe", stderr: "inherit" });
    const out = await withTimeout(new Response(client.stdout).text(), 120_000, "cold client");
    await client.exited;
    const r = JSON.parse(out.trim().split("\n").at(-1)!) as { first5k: number; steady: number };
    return { rate: r.first5k, first5k: r.first5k, steady: r.steady, p50: NaN, p99: NaN };
  } finally {
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

/** gRPC unary calls (`Echo.Foo`) over a unix socket to a @grpc/grpc-js server in a child. */
async function grpcCase(n: number, warm: number, inflight: number): Promise<Sample> {
  const path = sockPath();
  const child = await startServer("grpc", path);
  const client = new ECHO_PROTO_PACKAGE.Echo(`unix://${path}`, grpc.credentials.createInsecure());
  const req = { a: FOO_DATA.a, b: FOO_DATA.b, s: FOO_DATA.s };
  const one = () =>
    new Promise<unknown>((resolve, reject) => {
      client.Foo(req, (err: grpc.ServiceError | null, reply: unknown) => (err ? reject(err) : resolve(reply)));
    });
  try {
    return await withTimeout(drive(n, warm, inflight, one), 120_000, `grpc ${inflight} in flight`);
  } finally {
    client.close();
    child.kill();
    await reap(child);
  }
}

/** Bun's IPC: `Bun.spawn({ ipc, serialization })`, the child echoes with `process.send`; replies matched by id. */
async function ipcCase(n: number, warm: number, inflight: number, serialization: "json" | "advanced"): Promise<Sample> {
  const waiting = new Map<number, () => void>();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => (ready = r));
  const child = Bun.spawn([BUN, IPC_CHILD], {
    stdio: ["ignore", "inherit", "inherit"],
    serialization,
    ipc(m: { id: number } | "ready") {
      if (m === "ready") return ready();
      const w = waiting.get(m.id);
      if (w) {
        waiting.delete(m.id);
        w();
      }
    },
  });
  let id = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const my = id++;
      waiting.set(my, resolve);
      child.send({ id: my, a: FOO_DATA.a, b: FOO_DATA.b, s: FOO_DATA.s });
    });
  try {
    await withTimeout(isReady, 10_000, `ipc (${serialization}) child start`);
    return await withTimeout(drive(n, warm, inflight, one), 120_000, `ipc (${serialization}) ${inflight} in flight`);
  } finally {
    child.disconnect();
    await reap(child);
  }
}

/** The baselines, in table order: results key prefix and name. */
const BASELINES = [
  { key: "json", name: "Bun.listen + JSON lines" },
  { key: "ipcjson", name: 'Bun IPC (process.send, "json")' },
  { key: "ipcadv", name: 'Bun IPC (process.send, "advanced")' },
  { key: "grpc", name: "gRPC (@grpc/grpc-js unary, unix socket)" },
] as const;

export interface PeerBenchResult {
  date: string;
  bun: string;
  machine: Machine;
  options: PeerBenchOptions;
  calls: { one: number; many: number; grpcOne: number; grpcMany: number; warm: number; runs: number };
  /** Per case, one entry per run (null where that run failed), so index i is run i everywhere. */
  results: Record<string, (Sample | null)[]>;
  comparisons: Comparison[];
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
  // gRPC manages ~1–15k calls/s here: fewer calls keep its cases to seconds.
  const grpcOne = opts.quick ? 1_000 : 3_000;
  const grpcMany = opts.quick ? 5_000 : 20_000;
  const warm = 1_000;
  sockDir = mkdtempSync(join(tmpdir(), "lwpeer-"));
  const keys = ["transact1", "peer1", "json1", "ipcjson1", "ipcadv1", "grpc1", "peer64", "json64", "ipcjson64", "ipcadv64", "grpc64", "cold64"];
  const results: Record<string, (Sample | null)[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const errors: string[] = [];
  const started = Date.now();
  const attempt = async (key: string, f: () => Promise<Sample>) => {
    try {
      results[key]!.push(await f());
    } catch (e) {
      results[key]!.push(null);
      errors.push(`${key}: ${(e as Error)?.message ?? e}`);
      log(`  ! ${key}: ${(e as Error)?.message ?? e}`);
    }
  };
  log(
    `peer bench: ${runs} runs; 1 in flight ${one} calls (gRPC ${grpcOne}), ${INFLIGHT} in flight ${many} calls (gRPC ${grpcMany}), +${warm} warm-up each`,
  );
  try {
    // Interleave the variants run by run so drift hits them alike.
    for (let r = 0; r < runs; r++) {
      await attempt("transact1", () => transactCase(one, warm));
      await attempt("peer1", () => peerCase(one, warm, 1));
      await attempt("json1", () => jsonCase(one, warm, 1));
      await attempt("ipcjson1", () => ipcCase(one, warm, 1, "json"));
      await attempt("ipcadv1", () => ipcCase(one, warm, 1, "advanced"));
      await attempt("grpc1", () => grpcCase(grpcOne, warm, 1));
      await attempt("peer64", () => peerCase(many, warm, INFLIGHT));
      await attempt("json64", () => jsonCase(many, warm, INFLIGHT));
      await attempt("ipcjson64", () => ipcCase(many, warm, INFLIGHT, "json"));
      await attempt("ipcadv64", () => ipcCase(many, warm, INFLIGHT, "advanced"));
      await attempt("grpc64", () => grpcCase(grpcMany, warm, INFLIGHT));
      await attempt("cold64", () => coldCase());
      const last = (k: string, f: keyof Sample) => fmtNum(results[k]!.at(-1)?.[f] ?? NaN);
      log(
        `  run ${r + 1}/${runs}: 1 in flight p50 µs transact ${last("transact1", "p50")}, peer ${last("peer1", "p50")}, json ${last("json1", "p50")}, ` +
          `ipc ${last("ipcjson1", "p50")}/${last("ipcadv1", "p50")}, grpc ${last("grpc1", "p50")}; ` +
          `${INFLIGHT} in flight calls/s peer ${last("peer64", "rate")}, json ${last("json64", "rate")}, ` +
          `ipc ${last("ipcjson64", "rate")}/${last("ipcadv64", "rate")}, grpc ${last("grpc64", "rate")}; ` +
          `steady peer ${last("peer64", "steady")}, json ${last("json64", "steady")}; cold first 5k ${last("cold64", "first5k")} vs its steady ${last("cold64", "steady")}`,
      );
    }
  } finally {
    rmSync(sockDir, { recursive: true, force: true });
  }

  const comparisons = peerComparisons(results);
  const table = formatTable(
    ["case", "ours (median, min–max)", "baseline (median, min–max)", "ratio (median, min–max)", "target", "met?"],
    comparisons.map((c) => [
      `${c.case}: ${c.metric}`,
      fmtSpread(c.ours),
      `${c.baseline} ${fmtSpread(c.base)}`,
      fmtSpread(c.ratio) + "×",
      targetText(c),
      targetMet(c),
    ]),
  );
  if (print) {
    console.log(
      `\nbun-lwmsg peer bench — ${runs} runs each, medians (min–max); ratio = ours ÷ baseline, run by run; servers in a child process; ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
    );
    console.log(table);
    if (errors.length) console.log(`\nerrors:\n  ${errors.join("\n  ")}`);
  }
  const result: PeerBenchResult = {
    date: new Date().toISOString(),
    bun: Bun.version,
    machine: machineInfo(),
    options: opts,
    calls: { one, many, grpcOne, grpcMany, warm, runs },
    results,
    comparisons,
    errors,
    table,
  };
  const jsonPath = opts.json === undefined ? join(HERE, "results", "tmp", "peer.json") : opts.json;
  if (jsonPath) {
    writeResults(jsonPath, result);
  }
  return result;
}

/** The peer bench's figures as comparisons, ratios run by run. */
function peerComparisons(results: Record<string, (Sample | null)[]>): Comparison[] {
  const out: Comparison[] = [];
  const v = (k: string, f: keyof Sample) => results[k]!.map((s) => s?.[f]);
  const add = (
    kase: string,
    metric: string,
    ours: string,
    baseKey: string,
    baseline: string,
    f: keyof Sample,
    extra: Partial<Comparison> = {},
  ) =>
    out.push(
      compare({ bench: "peer", case: kase, metric, higherIsBetter: f === "rate", baseline, ...extra }, v(ours, f), v(baseKey, f)),
    );
  const ONE = "peer, 1 call in flight";
  const MANY = `peer, ${INFLIGHT} calls in flight`;
  for (const b of BASELINES) {
    const rateTarget = b.key === "grpc" ? { target: { op: ">=" as const, value: 30 } } : b.key === "json" ? { target: { op: ">=" as const, value: 3 } } : {};
    const p99Target = b.key === "json" ? { target: { op: "<=" as const, value: 1 } } : {};
    add(MANY, "calls/s", "peer64", `${b.key}64`, b.name, "rate", { ...rateTarget, headline: true, chart: true });
    // The same run's second half: both processes past their JIT warm-up (the whole-run figure includes a fresh server's).
    add(`${MANY}, steady state (2nd half of each run)`, "calls/s", "peer64", `${b.key}64`, b.name, "steady", { ...(b.key === "json" ? { target: { op: ">=" as const, value: 3 } } : {}) });
    add(MANY, "p50 µs", "peer64", `${b.key}64`, b.name, "p50");
    add(MANY, "p99 µs", "peer64", `${b.key}64`, b.name, "p99", { ...p99Target, headline: true });
  }
  out.push(
    compare(
      { bench: "peer", case: `peer, ${INFLIGHT} calls in flight, a cold process's first 5,000 calls`, metric: "calls/s", higherIsBetter: true, baseline: "the same process's steady rate (calls 45k–60k)", target: { op: ">=", value: 0.8 }, headline: true },
      v("cold64", "first5k"),
      v("cold64", "steady"),
    ),
  );
  add(ONE, "p50 µs", "peer1", "transact1", "Connection.transact", "p50", { target: { op: "<=", value: 1.1 }, headline: true });
  add(ONE, "p99 µs", "peer1", "transact1", "Connection.transact", "p99");
  add(ONE, "calls/s", "peer1", "transact1", "Connection.transact", "rate");
  for (const b of BASELINES) {
    const p50Target = b.key === "grpc" ? { target: { op: "<=" as const, value: 0.15 } } : b.key.startsWith("ipc") ? { target: { op: "<=" as const, value: 1 } } : {};
    add(ONE, "p50 µs", "peer1", `${b.key}1`, b.name, "p50", { ...p50Target, headline: true });
    add(ONE, "p99 µs", "peer1", `${b.key}1`, b.name, "p99", { headline: true });
    add(ONE, "calls/s", "peer1", `${b.key}1`, b.name, "rate", { chart: true });
  }
  return out;
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
