/**
 * Poller stress run (SPEC §2: the wake mechanism must survive a 10-million-wake
 * run without a crash or leak).
 *
 *   bun bench/stress-poller.ts [--wakes 10000000] [--mechanism doorbell|callback]
 *                              [--fds 64] [--inflight 8] [--report 1000000] [--max-rss-growth-mb 20]
 *
 * 64 socketpairs in a ring; one end of each is watched by the Poller
 * (READABLE, one shot). `--inflight` bytes circulate: when fd i is reported,
 * JS drains it, writes a byte into pair i+1 and re-arms fd i, so the epoll
 * thread keeps finding fds ready while JS is re-arming others (the concurrent
 * path) and has to wake the JS thread again and again. The run counts the
 * poller thread's wakes of JS (one per batch of ready fds: the figure that
 * matters for the mechanism) and the fd events delivered (several per wake).
 * inflight=1 is a pure ping-pong (one event per wake, ~70k wakes/s here);
 * 8 (default) gives ~7 events per wake at ~28k wakes/s.
 *
 * Prints the fd count and RSS at start, every --report wakes, and at the end;
 * exits 1 if the fd count grew, RSS grew by more than --max-rss-growth-mb after
 * warm-up, an fd went unreported for 10 s (a lost wake), or wakes stalled.
 * @module
 */
import { ptr } from "bun:ffi";
import { readdirSync } from "node:fs";
import { native } from "../lib/native/ffi.ts";
import { Poller, READABLE, type PollerMechanism, type Watch } from "../lib/native/poller.ts";
import { closeFd, socketPair } from "../lib/native/socket.ts";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1]!;
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : dflt;
}

const target = Number(arg("wakes", "10000000"));
const mechanism = arg("mechanism", "doorbell") as PollerMechanism;
const nfds = Number(arg("fds", "64"));
const inflight = Math.min(nfds, Number(arg("inflight", "8")));
const reportEvery = Number(arg("report", String(Math.max(1, Math.min(1_000_000, Math.floor(target / 10))))));
const maxRssGrowthMb = Number(arg("max-rss-growth-mb", "20"));
const warmupWakes = Math.min(500_000, Math.floor(target / 20));
if (mechanism !== "doorbell" && mechanism !== "callback") throw new Error(`--mechanism must be doorbell or callback, got ${mechanism}`);

function fdCount(): number {
  let n = 0;
  for (const name of readdirSync("/proc/self/fd")) if (native.lw_fd_is_open(Number(name)) === 1) n++;
  return n;
}
function rssMb(): number {
  Bun.gc(true); // JS garbage is not a leak; native leaks survive this
  return process.memoryUsage().rss / 1048576;
}
const fmt = (n: number) => n.toLocaleString("en-US");

// FFI buffers: ArrayBuffer-backed, module-level and read in the hot path, so
// they stay reachable for as long as their ptr() numbers are used.
const buf = new Uint8Array(new ArrayBuffer(256));
buf[0] = 0x2a;
const fdBuf = new Int32Array(new ArrayBuffer(256 * 4));
const out = new Int32Array(new ArrayBuffer(8));
const pBuf = ptr(buf);
const pFds = ptr(fdBuf);
const pOut = ptr(out);

const fdsAtStart = fdCount();
const rssAtStart = rssMb();
console.log(`stress-poller: mechanism=${mechanism} target=${fmt(target)} wakes fds=${nfds} inflight=${inflight} pid=${process.pid} bun=${Bun.version}`);
console.log(`start          fds=${fdsAtStart} rss=${rssAtStart.toFixed(1)} MB`);

const poller = new Poller(mechanism);
poller.ref();
const pairs: [number, number][] = [];
const watches: Watch[] = [];
const lastSeen = new Float64Array(nfds);
let events = 0;
let stopping = false;
let failed: string | null = null;
const wakesBase = poller.wakes;
const wakes = () => poller.wakes - wakesBase;

for (let i = 0; i < nfds; i++) {
  const pair = socketPair();
  pairs.push(pair);
  const [r, w] = pair;
  const watch = poller.watch(r, () => {
    events++;
    // drain everything there (non-blocking)
    for (;;) {
      const n = native.lw_recv(r, pBuf, 256, pFds, pOut);
      for (let k = 0; k < out[0]!; k++) native.lw_close(fdBuf[k]!);
      if (n > 0 && buf[0] !== 0x2a) failed ??= `fd ${r}: received byte ${buf[0]}, sent 0x2a`;
      if (n <= 0) {
        if (n === 0 || (n < 0 && n !== -11)) failed ??= `fd ${r}: recv gave ${n}`;
        break;
      }
    }
    lastSeen[i] = performance.now();
    if (stopping) return;
    // pass the byte on to the next pair, so every fd keeps being woken
    const next = pairs[(i + 1) % nfds]![1];
    if (native.lw_send(next, pBuf, 1, pFds, 0) !== 1) failed ??= `fd ${next}: send failed`;
    watch.arm(READABLE);
  });
  watches.push(watch);
}
const fdsWithPairs = fdCount();

const t0 = performance.now();
lastSeen.fill(t0);
for (let i = 0; i < nfds; i++) watches[i]!.arm(READABLE);
// `inflight` bytes circulate, spread evenly over the ring of pairs
for (let k = 0; k < inflight; k++) native.lw_send(pairs[Math.floor((k * nfds) / inflight)]![1], pBuf, 1, pFds, 0);

let rssAfterWarmup = -1;
let fdsAfterWarmup = -1;
let nextReport = reportEvery;
let lastWakes = 0;
let lastProgressAt = t0;
let maxRss = 0;

const done = Promise.withResolvers<void>();
const monitor = setInterval(() => {
  const now = performance.now();
  const w = wakes();
  if (w !== lastWakes) {
    lastWakes = w;
    lastProgressAt = now;
  } else if (now - lastProgressAt > 10_000) failed ??= `no wake for 10 s at ${fmt(w)} wakes (stalled)`;
  for (let i = 0; i < nfds; i++) if (now - lastSeen[i]! > 10_000) failed ??= `fd ${pairs[i]![0]} unreported for 10 s (lost wake)`;
  if (rssAfterWarmup < 0 && w >= warmupWakes) {
    rssAfterWarmup = rssMb();
    fdsAfterWarmup = fdCount();
    console.log(`warm-up        wakes=${fmt(w)} fds=${fdsAfterWarmup} rss=${rssAfterWarmup.toFixed(1)} MB`);
  }
  if (w >= nextReport) {
    while (nextReport <= w) nextReport += reportEvery;
    const rss = rssMb();
    maxRss = Math.max(maxRss, rss);
    const s = (now - t0) / 1000;
    console.log(
      `${String(fmt(w)).padStart(12)}   fds=${fdCount()} rss=${rss.toFixed(1)} MB events=${fmt(events)} ` +
        `elapsed=${s.toFixed(1)} s rate=${fmt(Math.round(w / s))} wakes/s`,
    );
  }
  if (w >= target || failed) done.resolve();
}, 50);

await done.promise;
clearInterval(monitor);
stopping = true;
const elapsed = (performance.now() - t0) / 1000;
const totalWakes = wakes();
const fdsEnd = fdCount();
const rssEnd = rssMb();
maxRss = Math.max(maxRss, rssEnd);
const cpu = process.cpuUsage();

for (const w of watches) w.remove();
for (const [r, w] of pairs) {
  closeFd(r);
  closeFd(w);
}
poller.unref();
poller.close();
await Bun.sleep(50);
const fdsAfterClose = fdCount();

console.log(
  `end            wakes=${fmt(totalWakes)} events=${fmt(events)} elapsed=${elapsed.toFixed(1)} s ` +
    `rate=${fmt(Math.round(totalWakes / elapsed))} wakes/s cpu=${((cpu.user + cpu.system) / 1e6).toFixed(1)} s ` +
    `(${(((cpu.user + cpu.system) * 1000) / totalWakes).toFixed(0)} ns/wake)`,
);
console.log(`               fds: start=${fdsAtStart} with-pairs=${fdsWithPairs} warm-up=${fdsAfterWarmup} end=${fdsEnd} after-close=${fdsAfterClose}`);
console.log(
  `               rss: start=${rssAtStart.toFixed(1)} MB warm-up=${rssAfterWarmup.toFixed(1)} MB end=${rssEnd.toFixed(1)} MB max=${maxRss.toFixed(1)} MB ` +
    `growth-after-warm-up=${(rssEnd - rssAfterWarmup).toFixed(1)} MB`,
);

const problems: string[] = [];
if (failed) problems.push(failed);
if (totalWakes < target) problems.push(`only ${fmt(totalWakes)} of ${fmt(target)} wakes`);
if (fdsEnd > fdsWithPairs) problems.push(`fd count grew during the run: ${fdsWithPairs} -> ${fdsEnd}`);
if (fdsAfterClose > fdsAtStart) problems.push(`fds left after close: ${fdsAtStart} -> ${fdsAfterClose}`);
if (rssAfterWarmup >= 0 && rssEnd - rssAfterWarmup > maxRssGrowthMb)
  problems.push(`RSS grew ${(rssEnd - rssAfterWarmup).toFixed(1)} MB after warm-up (limit ${maxRssGrowthMb} MB)`);
if (problems.length) {
  console.log(`FAIL: ${problems.join("; ")}`);
  process.exit(1);
}
console.log("OK: no crash, no fd growth, RSS within bound");
process.exit(0);
