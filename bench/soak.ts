/**
 * Soak: one Peer server (its own process) under many concurrent clients for a
 * long time, and a flood of idle connections against a client limit.
 *
 *   npm run soak -- [--clients N] [--duration S] [--procs P] [--inflight K] [--runs R] [--quick]
 *   npm run soak -- --flood [--flood-max M] [--flood-idle MS] [--flood-establish MS]
 *                   [--flood-greeters K] [--flood-silent S] [--flood-procs P] [--duration S] [--quick]
 *   common: [--backlog B] [--reply-poll adaptive|US] [--server-reply-poll …] [--client-reply-poll …]
 *           [--json PATH | --no-json]
 *
 * Load (default; 1,000 clients over 8 processes for 60 s; --quick: 100 clients,
 * 2 processes, 5 s): every client is its own Peer with its own session and
 * connection, holds a handle, and calls continuously (K in flight) with a mix
 * of requests: small echo 65%, 1–64 KiB payload 10%, fd passed and passed
 * back 5%, handle use 5%, slow async handler (1–5 ms) 7%, handler failing
 * with NOT_FOUND 3%, cancelled call 3%, tag without handler 2%. Reported:
 * calls, calls/s, per-call latency merged across clients (log-linear
 * histograms), the server's RSS (baseline, all connected, end, after GC),
 * VmHWM, fds (baseline, connected, end, after every client left: must be the
 * baseline again), and every call's outcome by status name. A call that
 * fails with something other than an LwMsgError, never settles, gets a wrong
 * reply or an unexpected status for its kind, or server fds that do not come
 * back, make the run fail (exit 1).
 *
 * Flood (--flood): a server with maxClients M (100), idle timeout (200 ms)
 * and establish timeout (500 ms); K (1,000) connections that complete the
 * handshake then sit idle, reconnecting as soon as they are evicted, plus S
 * (40) that never greet, for the duration (20 s; quick 5 s). Meanwhile a
 * healthy established client calls every 5 ms, fresh clients connect one
 * after another (connect + first call timed), one client holds a handle and
 * one keeps a call in flight (neither may be evicted, §7.2). Reported:
 * accepted connects/s, evictions, silent connections dropped, healthy and
 * fresh latencies, the most sessions the server held (must be ≤ M).
 *
 * Results go to bench/results/tmp/soak.json (soak-flood.json for --flood).
 * @module
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ChildLink } from "./lib/lines.ts";
import { Histogram, type HistogramJSON, type LatencyFigures } from "./lib/histogram.ts";
import { fmtNum, fmtSpread, spread } from "./lib/stats.ts";
import { formatTable } from "./lib/table.ts";
import { machineInfo, writeResults } from "./lib/results.ts";

const HERE = dirname(import.meta.path);
const BUN = process.execPath;
const SERVER = join(HERE, "fixtures", "soak-server.ts");
const CLIENT = join(HERE, "fixtures", "soak-client.ts");
const FLOOD = join(HERE, "fixtures", "flood-client.ts");

// ------------------------------------------------------------------ options

const argv = process.argv.slice(2);
const has = (f: string) => argv.includes(f);
function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
function num(name: string, dflt: number): number {
  const v = opt(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`${name}: expected a number, got ${v}`);
    process.exit(2);
  }
  return n;
}
const quick = has("--quick");
const flood = has("--flood");
const parseRp = (v: string | undefined): number | "adaptive" | undefined => (v === undefined ? undefined : v === "adaptive" ? "adaptive" : Number(v));
const serverReplyPollUs = parseRp(opt("--server-reply-poll") ?? opt("--reply-poll"));
const clientReplyPollUs = parseRp(opt("--client-reply-poll") ?? opt("--reply-poll"));
const srp = serverReplyPollUs !== undefined ? { replyPollUs: serverReplyPollUs } : {};
const crp = clientReplyPollUs !== undefined ? { replyPollUs: clientReplyPollUs } : {};
const replyPoll = { server: serverReplyPollUs ?? "default (adaptive)", clients: clientReplyPollUs ?? "default (adaptive)" };
const jsonPath = has("--no-json") ? null : (opt("--json") ?? join(HERE, "results", "tmp", flood ? "soak-flood.json" : "soak.json"));

// ------------------------------------------------------------------ /proc sampling

interface ProcSample {
  rssKiB: number;
  hwmKiB: number;
  fds: number;
}
function sampleProc(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM"), fds: readdirSync(`/proc/${pid}/fd`).length };
}
const mib = (kib: number) => kib / 1024;

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) return false;
    await Bun.sleep(20);
  }
  return true;
}

function startServer(cfg: object): ChildLink {
  return new ChildLink("server", [BUN, SERVER, JSON.stringify(cfg)]);
}

const lat = (f: LatencyFigures) => `${fmtNum(f.p50)} / ${fmtNum(f.p99)} / ${fmtNum(f.p999)} / ${fmtNum(f.max)}`;
const merge = (hs: HistogramJSON[]) => hs.reduce((h, j) => h.merge(j), new Histogram());
const addCounts = (into: Record<string, number>, from: Record<string, number> | undefined) => {
  for (const [k, v] of Object.entries(from ?? {})) into[k] = (into[k] ?? 0) + v;
};

// ------------------------------------------------------------------ load

interface LoadRun {
  clients: number;
  procs: number;
  inflight: number;
  durationS: number;
  elapsedS: number;
  calls: number;
  callsPerSec: number;
  latencyUs: LatencyFigures;
  byKindUs: Record<string, LatencyFigures>;
  statuses: Record<string, number>;
  unexpected: Record<string, number>;
  nonLwMsgError: number;
  wrongReply: number;
  unsettled: number;
  connectFailures: number;
  closeStatuses: Record<string, number>;
  connectSeconds: number;
  server: {
    pid: number;
    rssMiB: { baseline: number; connected: number; end: number; endAfterGc: number; afterDisconnect: number; series: number[] };
    hwmMiB: number;
    fds: { baseline: number; connected: number; end: number; afterDisconnect: number };
    heapObjects: { connected: number; endAfterGc: number; afterDisconnect: number };
    arrayBuffersMiB: { connected: number; endAfterGc: number };
    maxSessions: number;
    sessionsAtEnd: number;
    sessionsAfterDisconnect: number;
    exceptions: number;
    exceptionSamples: string[];
  };
  clientFds: { connected: number; end: number }[];
  samples: string[];
  failures: string[];
}

async function loadRun(o: { clients: number; procs: number; inflight: number; durationS: number; backlog: number; grace: number }, runNo: number): Promise<LoadRun> {
  const dir = mkdtempSync(join(tmpdir(), "lwsoak-"));
  const path = join(dir, "soak.sock");
  const server = startServer({ path, maxClients: o.clients + 16, backlog: o.backlog, ...srp });
  const kids: ChildLink[] = [];
  try {
    const ready = await server.wait("ready", 20_000);
    const pid = ready.ready.pid as number;
    await server.request("gc", "stats");
    const base = sampleProc(pid);

    // Clients: spread evenly over the processes.
    const per = Array.from({ length: o.procs }, (_, i) => Math.floor(o.clients / o.procs) + (i < o.clients % o.procs ? 1 : 0));
    const tc = performance.now();
    per.forEach((n, i) => {
      if (n > 0) kids.push(new ChildLink(`client${i}`, [BUN, CLIENT, JSON.stringify({ mode: "load", path, clients: n, inflight: o.inflight, seed: 1000 * runNo + i + 1, grace: o.grace, ...crp })]));
    });
    const connected = await Promise.all(kids.map((k) => k.wait("connected", 180_000)));
    const connectSeconds = (performance.now() - tc) / 1000;
    const connectFailures = connected.reduce((a, c) => a + c.connected.failures, 0);
    const stConnected = (await server.request("gc", "stats")).stats;
    const conn = sampleProc(pid);
    log(`  run ${runNo}: ${o.clients} clients connected in ${connectSeconds.toFixed(1)} s (server ${mib(conn.rssKiB).toFixed(0)} MiB RSS, ${conn.fds} fds); calling for ${o.durationS} s…`);

    // Go.
    const series: number[] = [];
    const progress = new Map<ChildLink, number>();
    for (const k of kids) k.on((m) => m.progress && progress.set(k, m.progress.calls));
    const durationMs = o.durationS * 1000;
    const t0 = performance.now();
    for (const k of kids) k.send({ go: durationMs });
    let lastLog = t0;
    const sampler = setInterval(() => {
      try {
        series.push(mib(sampleProc(pid).rssKiB));
      } catch {
        // server gone: reported below
      }
      const now = performance.now();
      if (now - lastLog >= 10_000) {
        lastLog = now;
        const calls = [...progress.values()].reduce((a, b) => a + b, 0);
        log(`    ${((now - t0) / 1000).toFixed(0)} s: ${calls} calls, server ${series.at(-1)?.toFixed(0)} MiB RSS`);
      }
    }, 1000);
    const results = (await Promise.all(kids.map((k) => k.wait("result", durationMs + o.grace + 60_000)))).map((m) => m.result);
    clearInterval(sampler);
    const end = sampleProc(pid);
    const stEnd = (await server.request("gc", "stats")).stats;
    const endGc = sampleProc(pid);

    // Everyone leaves; the server must come back to its baseline fds.
    await Promise.all(kids.map((k) => k.request("close", "closed", 60_000)));
    await Promise.all(kids.map((k) => k.finish()));
    await until(() => sampleProc(pid).fds <= base.fds, 10_000);
    const stAfter = (await server.request("gc", "stats")).stats;
    const after = sampleProc(pid);
    await server.request("stop", "stopped", 30_000);
    await server.finish();

    const hist = merge(results.map((r) => r.hist));
    const kinds = new Set(results.flatMap((r) => Object.keys(r.byKind)));
    const byKindUs: Record<string, LatencyFigures> = {};
    for (const k of kinds) byKindUs[k] = merge(results.map((r) => r.byKind[k]).filter(Boolean)).figures();
    const statuses: Record<string, number> = {};
    const unexpected: Record<string, number> = {};
    const closeStatuses: Record<string, number> = {};
    for (const r of results) {
      addCounts(statuses, r.statuses);
      addCounts(unexpected, r.unexpected);
      addCounts(closeStatuses, r.closeStatuses);
    }
    const sum = (f: (r: any) => number) => results.reduce((a, r) => a + f(r), 0);
    const calls = sum((r) => r.calls);
    const elapsedS = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
    const run: LoadRun = {
      clients: o.clients,
      procs: kids.length,
      inflight: o.inflight,
      durationS: o.durationS,
      elapsedS,
      calls,
      callsPerSec: calls / elapsedS,
      latencyUs: hist.figures(),
      byKindUs,
      statuses,
      unexpected,
      nonLwMsgError: sum((r) => r.nonLwMsgError),
      wrongReply: sum((r) => r.wrongReply),
      unsettled: sum((r) => r.unsettled),
      connectFailures,
      closeStatuses,
      connectSeconds,
      server: {
        pid,
        rssMiB: { baseline: mib(base.rssKiB), connected: mib(conn.rssKiB), end: mib(end.rssKiB), endAfterGc: mib(endGc.rssKiB), afterDisconnect: mib(after.rssKiB), series },
        hwmMiB: mib(after.hwmKiB),
        fds: { baseline: base.fds, connected: conn.fds, end: end.fds, afterDisconnect: after.fds },
        heapObjects: { connected: stConnected.heap.objectCount, endAfterGc: stEnd.heap.objectCount, afterDisconnect: stAfter.heap.objectCount },
        arrayBuffersMiB: { connected: stConnected.mem.arrayBuffers / 2 ** 20, endAfterGc: stEnd.mem.arrayBuffers / 2 ** 20 },
        maxSessions: stAfter.maxLive,
        sessionsAtEnd: stEnd.live,
        sessionsAfterDisconnect: stAfter.live,
        exceptions: stAfter.exceptions,
        exceptionSamples: stAfter.exceptionSamples,
      },
      clientFds: results.map((r) => ({ connected: r.fdsConnected, end: r.fdsEnd })),
      samples: results.flatMap((r) => r.samples).slice(0, 20),
      failures: [],
    };
    const f = run.failures;
    if (run.nonLwMsgError) f.push(`${run.nonLwMsgError} calls failed with something other than an LwMsgError`);
    if (run.unsettled) f.push(`${run.unsettled} calls never settled`);
    if (results.some((r) => !r.allSettled)) f.push("a client process still had calls outstanding after the grace period");
    if (run.wrongReply) f.push(`${run.wrongReply} wrong replies`);
    if (Object.keys(unexpected).length) f.push(`unexpected statuses: ${JSON.stringify(unexpected)}`);
    if (connectFailures) f.push(`${connectFailures} clients failed to connect`);
    if (Object.keys(closeStatuses).some((k) => k !== "SUCCESS")) f.push(`closing handles: ${JSON.stringify(closeStatuses)}`);
    if (after.fds !== base.fds) f.push(`server fds after every client left: ${after.fds}, baseline ${base.fds}`);
    if (stAfter.live !== 0 || stAfter.clientCount !== 0) f.push(`server still has ${stAfter.live} sessions / ${stAfter.clientCount} clients after every client left`);
    if (stEnd.live !== o.clients - connectFailures) f.push(`server had ${stEnd.live} sessions at the end, expected ${o.clients}`);
    if (stAfter.exceptions) f.push(`${stAfter.exceptions} exceptions reported by the server: ${JSON.stringify(stAfter.exceptionStatuses)}`);
    for (const [i, r] of results.entries()) if (r.fdsEnd !== r.fdsConnected) f.push(`client process ${i}: ${r.fdsConnected} fds when connected, ${r.fdsEnd} after the run`);
    return run;
  } finally {
    for (const k of kids) k.kill();
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

function statusLine(s: Record<string, number>): string {
  return Object.entries(s)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

function printLoad(runs: LoadRun[]): string {
  const rows: string[][] = [];
  const per = (label: string, f: (r: LoadRun) => string) => rows.push([label, ...runs.map(f)]);
  const med = (f: (r: LoadRun) => number, unit = "") => fmtSpread(spread(runs.map(f)), unit);
  per("calls", (r) => String(r.calls));
  per("calls/s", (r) => fmtNum(r.callsPerSec));
  per("latency µs p50 / p99 / p99.9 / max", (r) => lat(r.latencyUs));
  per("ECHO only µs p50 / p99 / p99.9 / max", (r) => (r.byKindUs.ECHO ? lat(r.byKindUs.ECHO) : "—"));
  per("server RSS MiB: baseline → connected → end (after GC)", (r) => `${r.server.rssMiB.baseline.toFixed(0)} → ${r.server.rssMiB.connected.toFixed(0)} → ${r.server.rssMiB.end.toFixed(0)} (${r.server.rssMiB.endAfterGc.toFixed(0)})`);
  per("server RSS MiB after every client left", (r) => r.server.rssMiB.afterDisconnect.toFixed(0));
  per("server max RSS (VmHWM) MiB", (r) => r.server.hwmMiB.toFixed(0));
  per("server heap objects: connected → end (after GC)", (r) => `${r.server.heapObjects.connected} → ${r.server.heapObjects.endAfterGc}`);
  per("server fds: baseline / connected / end / after all left", (r) => `${r.server.fds.baseline} / ${r.server.fds.connected} / ${r.server.fds.end} / ${r.server.fds.afterDisconnect}`);
  per("statuses", (r) => statusLine(r.statuses));
  per("non-LwMsgError / unsettled / wrong reply", (r) => `${r.nonLwMsgError} / ${r.unsettled} / ${r.wrongReply}`);
  per("verdict", (r) => (r.failures.length ? "FAIL" : "ok"));
  const headers = ["", ...runs.map((_, i) => `run ${i + 1}`)];
  if (runs.length > 1) {
    headers.push("median (min–max)");
    const extra = [
      String(fmtSpread(spread(runs.map((r) => r.calls)))),
      med((r) => r.callsPerSec),
      `${med((r) => r.latencyUs.p50)} / ${med((r) => r.latencyUs.p99)} / ${med((r) => r.latencyUs.p999)} / ${med((r) => r.latencyUs.max)}`,
      r50("ECHO"),
      `end ${med((r) => r.server.rssMiB.end)}`,
      med((r) => r.server.rssMiB.afterDisconnect),
      med((r) => r.server.hwmMiB),
      "",
      "",
      "",
      "",
      "",
    ];
    function r50(k: string) {
      const ok = runs.every((r) => r.byKindUs[k]);
      return ok ? `${med((r) => r.byKindUs[k]!.p50)} / ${med((r) => r.byKindUs[k]!.p99)} / ${med((r) => r.byKindUs[k]!.p999)} / ${med((r) => r.byKindUs[k]!.max)}` : "—";
    }
    rows.forEach((row, i) => row.push(extra[i] ?? ""));
  }
  return formatTable(headers, rows);
}

// ------------------------------------------------------------------ flood

interface FloodRun {
  config: { maxClients: number; idleMs: number; establishMs: number; greeters: number; silent: number; procs: number; durationS: number; backlog: number };
  elapsedS: number;
  accepted: number;
  /** Sessions the server constructed per second over the flood window (every one a completed handshake). */
  sessionsPerSec: number;
  /** Sessions the server ended per second over the window, less the fresh clients' own closes: idle evictions. */
  evictionsPerSec: number;
  evicted: number;
  closedOther: Record<string, number>;
  connectFailed: Record<string, number>;
  unexpectedMessages: number;
  silentConnected: number;
  silentDropped: number;
  silentLifeMs: LatencyFigures;
  acceptWaitMs: LatencyFigures;
  heldForMs: LatencyFigures;
  established: { calls: number; latencyUs: LatencyFigures; statuses: Record<string, number>; unexpected: Record<string, number> };
  fresh: { calls: number; latencyMs: LatencyFigures; statuses: Record<string, number>; unexpected: Record<string, number> };
  heldCallOk: boolean;
  handleStatus: string;
  server: { maxSessions: number; maxClientCount: number; constructs: number; destructs: number; fds: { baseline: number; during: number; afterDisconnect: number }; hwmMiB: number; exceptions: number; exceptionStatuses: Record<string, number> };
  failures: string[];
}

async function floodRun(o: FloodRun["config"]): Promise<FloodRun> {
  const dir = mkdtempSync(join(tmpdir(), "lwflood-"));
  const path = join(dir, "flood.sock");
  const server = startServer({ path, maxClients: o.maxClients, backlog: o.backlog, idle: o.idleMs, establish: o.establishMs, ...srp });
  const kids: ChildLink[] = [];
  try {
    const pid = (await server.wait("ready", 20_000)).ready.pid as number;
    await server.request("gc", "stats");
    const base = sampleProc(pid);
    const healthy = new ChildLink("healthy", [BUN, CLIENT, JSON.stringify({ mode: "healthy", path, interval: 5, freshPause: 20, ...crp })]);
    kids.push(healthy);
    await healthy.wait("connected", 30_000);
    const st0 = (await server.request("stats", "stats")).stats;
    // The flood window runs from here (children spawning) to the server's stats after the healthy client's report.
    const t0 = performance.now();
    const floods: ChildLink[] = [];
    for (let i = 0; i < o.procs; i++) {
      const g = Math.floor(o.greeters / o.procs) + (i < o.greeters % o.procs ? 1 : 0);
      const s = Math.floor(o.silent / o.procs) + (i < o.silent % o.procs ? 1 : 0);
      floods.push(new ChildLink(`flood${i}`, [BUN, FLOOD, JSON.stringify({ path, greeters: g, silent: s, reconnect: true })]));
    }
    kids.push(...floods);
    await Promise.all(floods.map((f) => f.wait("started", 30_000)));
    const durationMs = o.durationS * 1000;
    log(`  flood: ${o.greeters} idle greeters + ${o.silent} silent over ${o.procs} processes against maxClients ${o.maxClients} (idle ${o.idleMs} ms, establish ${o.establishMs} ms) for ${o.durationS} s…`);
    healthy.send({ go: durationMs });
    let duringFds = 0;
    const sampler = setInterval(() => {
      try {
        duringFds = Math.max(duringFds, sampleProc(pid).fds);
      } catch {
        // reported below
      }
    }, 250);
    const hres = (await healthy.wait("result", durationMs + 60_000)).result;
    clearInterval(sampler);
    const stFlood = (await server.request("stats", "stats")).stats;
    const elapsedS = (performance.now() - t0) / 1000;
    const fres = (await Promise.all(floods.map((f) => f.request("stop", "result", 30_000)))).map((m) => m.result);
    await Promise.all(floods.map((f) => f.finish()));
    await healthy.request("close", "closed", 30_000);
    await healthy.finish();
    await until(() => sampleProc(pid).fds <= base.fds, 10_000);
    const stAfter = (await server.request("gc", "stats")).stats;
    const after = sampleProc(pid);
    await server.request("stop", "stopped", 30_000);
    await server.finish();

    const sum = (f: (r: any) => number) => fres.reduce((a, r) => a + f(r), 0);
    const closedOther: Record<string, number> = {};
    const connectFailed: Record<string, number> = {};
    for (const r of fres) {
      addCounts(closedOther, r.closedOther);
      addCounts(connectFailed, r.connectFailed);
    }
    const msFig = (h: Histogram): LatencyFigures => {
      const f = h.figures();
      return { n: f.n, mean: f.mean / 1000, p50: f.p50 / 1000, p90: f.p90 / 1000, p99: f.p99 / 1000, p999: f.p999 / 1000, max: f.max / 1000 };
    };
    const accepted = sum((r) => r.accepted);
    const run: FloodRun = {
      config: o,
      elapsedS,
      accepted,
      sessionsPerSec: (stFlood.constructs - st0.constructs) / elapsedS,
      evictionsPerSec: (stFlood.destructs - st0.destructs - hres.fresh.calls) / elapsedS,
      evicted: sum((r) => r.evicted),
      closedOther,
      connectFailed,
      unexpectedMessages: sum((r) => r.unexpectedMessages),
      silentConnected: sum((r) => r.silentConnected),
      silentDropped: sum((r) => r.silentDropped),
      silentLifeMs: msFig(merge(fres.map((r) => r.silentLife))),
      acceptWaitMs: msFig(merge(fres.map((r) => r.acceptWait))),
      heldForMs: msFig(merge(fres.map((r) => r.heldFor))),
      established: { calls: hres.established.calls, latencyUs: Histogram.from(hres.established.hist).figures(), statuses: hres.established.statuses, unexpected: hres.established.unexpected },
      fresh: { calls: hres.fresh.calls, latencyMs: msFig(Histogram.from(hres.fresh.hist)), statuses: hres.fresh.statuses, unexpected: hres.fresh.unexpected },
      heldCallOk: hres.heldCallOk,
      handleStatus: hres.handleStatus,
      server: {
        maxSessions: stAfter.maxLive,
        maxClientCount: stAfter.maxClientCount,
        constructs: stAfter.constructs,
        destructs: stAfter.destructs,
        fds: { baseline: base.fds, during: duringFds, afterDisconnect: after.fds },
        hwmMiB: mib(after.hwmKiB),
        exceptions: stAfter.exceptions,
        exceptionStatuses: stAfter.exceptionStatuses,
      },
      failures: [],
    };
    const f = run.failures;
    if (run.server.maxSessions > o.maxClients) f.push(`the server held ${run.server.maxSessions} sessions (maxClients ${o.maxClients})`);
    if (run.server.maxClientCount > o.maxClients) f.push(`the server counted ${run.server.maxClientCount} clients (maxClients ${o.maxClients})`);
    if (!run.heldCallOk) f.push("the client with a call in flight lost it");
    if (run.handleStatus !== "SUCCESS") f.push(`the client holding a handle got ${run.handleStatus} using it (evicted?)`);
    if (Object.keys(run.established.unexpected).length || hres.established.nonLwMsgError || hres.established.unsettled) f.push(`healthy established client: ${JSON.stringify(run.established.unexpected)}, non-LwMsgError ${hres.established.nonLwMsgError}, unsettled ${hres.established.unsettled}`);
    if (Object.keys(run.fresh.unexpected).length || hres.fresh.nonLwMsgError || hres.fresh.unsettled) f.push(`fresh clients: ${JSON.stringify(run.fresh.unexpected)}, non-LwMsgError ${hres.fresh.nonLwMsgError}, unsettled ${hres.fresh.unsettled}`);
    if (run.fresh.calls === 0) f.push("no fresh client got served during the flood");
    if (run.evicted === 0) f.push("no idle connection was evicted");
    if (o.silent > 0 && run.silentDropped === 0) f.push("no silent connection was dropped");
    if (run.unexpectedMessages) f.push(`${run.unexpectedMessages} unexpected messages to idle connections`);
    if (after.fds !== base.fds) f.push(`server fds after every client left: ${after.fds}, baseline ${base.fds}`);
    if (stAfter.live !== 0 || stAfter.clientCount !== 0) f.push(`server still has ${stAfter.live} sessions / ${stAfter.clientCount} clients after every client left`);
    return run;
  } finally {
    for (const k of kids) k.kill();
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

function printFlood(r: FloodRun): string {
  const ms = (f: LatencyFigures) => `${fmtNum(f.p50)} / ${fmtNum(f.p99)} / ${fmtNum(f.max)}`;
  const rows: string[][] = [
    ["accepted connects (sessions constructed) /s, server, over the flood window", `${fmtNum(r.sessionsPerSec)} (window ${r.elapsedS.toFixed(1)} s)`],
    ["idle sessions evicted /s, server", fmtNum(r.evictionsPerSec)],
    ["flood clients' totals (to their stop): handshakes done / evicted (SHUTDOWN PEER_CLOSE)", `${r.accepted} / ${r.evicted}${Object.keys(r.closedOther).length ? `; closed otherwise ${JSON.stringify(r.closedOther)}` : ""}`],
    ["idle connection: wait for ACCEPT ms p50 / p99 / max", ms(r.acceptWaitMs)],
    ["idle connection: held before eviction ms p50 / p99 / max", ms(r.heldForMs)],
    ["silent (never greet): connected / dropped; life ms p50 / p99 / max", `${r.silentConnected} / ${r.silentDropped}; ${ms(r.silentLifeMs)}`],
    ["healthy established client: calls; µs p50 / p99 / p99.9 / max", `${r.established.calls}; ${lat(r.established.latencyUs)}`],
    ["healthy established client: statuses", statusLine(r.established.statuses)],
    ["fresh client connect + first call: n; ms p50 / p99 / max", `${r.fresh.calls}; ${ms(r.fresh.latencyMs)}`],
    ["call in flight kept / handle still valid", `${r.heldCallOk ? "yes" : "NO"} / ${r.handleStatus}`],
    ["server: most sessions held (maxClients) / most clients counted", `${r.server.maxSessions} (${r.config.maxClients}) / ${r.server.maxClientCount}`],
    ["server: fds baseline / max during / after all left", `${r.server.fds.baseline} / ${r.server.fds.during} / ${r.server.fds.afterDisconnect}`],
    ["server max RSS (VmHWM) MiB", r.server.hwmMiB.toFixed(0)],
    ["verdict", r.failures.length ? "FAIL" : "ok"],
  ];
  return formatTable(["flood", "figure"], rows);
}

// ------------------------------------------------------------------ main

function log(s: string): void {
  console.error(s);
}

const machine = machineInfo();
/** The code measured: HEAD, and whether lib/ has uncommitted changes. */
function codeVersion(): string {
  try {
    const git = (args: string[]) => Bun.spawnSync(["git", ...args], { cwd: join(HERE, "..") }).stdout.toString().trim();
    return git(["rev-parse", "--short", "HEAD"]) + (git(["status", "--porcelain", "lib"]) ? "+dirty lib/" : "");
  } catch {
    return "unknown";
  }
}
const code = codeVersion();
let failed = false;
let table = "";
let out: object;

if (flood) {
  const o: FloodRun["config"] = {
    maxClients: num("--flood-max", 100),
    idleMs: num("--flood-idle", 200),
    establishMs: num("--flood-establish", 500),
    greeters: num("--flood-greeters", quick ? 300 : 1000),
    silent: num("--flood-silent", quick ? 20 : 40),
    procs: num("--flood-procs", quick ? 2 : 4),
    durationS: num("--duration", quick ? 5 : 20),
    backlog: num("--backlog", 8),
  };
  const r = await floodRun(o);
  table = printFlood(r);
  console.log(`\nbun-lwmsg soak --flood (backlog ${o.backlog}; reply poll: server ${replyPoll.server}, clients ${replyPoll.clients}; ${machine.cpus} CPUs, bun ${Bun.version}, code ${code})\n`);
  console.log(table);
  if (r.failures.length) {
    failed = true;
    console.log(`\nFAILURES:\n  ${r.failures.join("\n  ")}`);
  }
  out = { date: new Date().toISOString(), code, bun: Bun.version, machine, replyPoll, run: r, table };
} else {
  const clients = num("--clients", quick ? 100 : 1000);
  const o = {
    clients,
    durationS: num("--duration", quick ? 5 : 60),
    procs: Math.max(1, Math.min(clients, num("--procs", quick ? 2 : Math.min(8, Math.max(1, Math.ceil(clients / 125)))))),
    inflight: Math.max(1, num("--inflight", 1)),
    backlog: num("--backlog", 64),
    grace: num("--grace", 15) * 1000,
  };
  // The server holds one fd per client (plus a few); Bun raises its soft
  // RLIMIT_NOFILE to the hard limit at start-up, so only the hard one matters.
  const hardNoFile = Number(/^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? "Infinity");
  if (o.clients + 64 > hardNoFile) {
    console.error(`soak: ${o.clients} clients need about ${o.clients + 64} fds in the server, but the hard RLIMIT_NOFILE is ${hardNoFile}; raise it (ulimit -Hn ${o.clients + 256}, as root) or use fewer --clients`);
    process.exit(2);
  }
  const nruns = Math.max(1, num("--runs", 1));
  log(`soak: ${o.clients} clients over ${o.procs} processes, ${o.inflight} call(s) in flight each, ${o.durationS} s, ${nruns} run(s)`);
  const runs: LoadRun[] = [];
  for (let i = 1; i <= nruns; i++) {
    const r = await loadRun(o, i);
    runs.push(r);
    if (r.failures.length) {
      failed = true;
      log(`  run ${i} FAILED:\n    ${r.failures.join("\n    ")}`);
      if (r.samples.length) log(`    samples:\n      ${r.samples.join("\n      ")}`);
    }
    log(`  run ${i}: ${r.calls} calls, ${fmtNum(r.callsPerSec)} calls/s, p50/p99/p99.9/max ${lat(r.latencyUs)} µs, server HWM ${r.server.hwmMiB.toFixed(0)} MiB`);
  }
  table = printLoad(runs);
  console.log(`\nbun-lwmsg soak: ${o.clients} clients × ${o.inflight} in flight, ${o.procs} client processes, ${o.durationS} s, ${runs.length} run(s); reply poll: server ${replyPoll.server}, clients ${replyPoll.clients} (${machine.cpus} CPUs, bun ${Bun.version}, code ${code})\n`);
  console.log(table);
  for (const [i, r] of runs.entries()) if (r.failures.length) console.log(`\nrun ${i + 1} FAILURES:\n  ${r.failures.join("\n  ")}`);
  out = { date: new Date().toISOString(), code, bun: Bun.version, machine, options: o, replyPoll, runs, table };
}

if (jsonPath) {
  writeResults(jsonPath, out);
  log(`\nresults written to ${jsonPath}`);
}
process.exit(failed ? 1 : 0);
