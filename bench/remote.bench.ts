// REMOTE transport figures (informational, not wired into `bun run bench` yet):
// `bun bench/remote.bench.ts [runs]` (or `bun run bench remote`) — over TCP and TLS loopback, in one process:
//   stream: 60-byte lwmsg messages, client send() loop → server recv() loop, through the association;
//           against a bare Bun socket writing the same 60 bytes per message (one write each), server counting bytes.
//   rtt:    transact() request/reply p50, against a bare Bun socket ping-pong of the same 60 bytes.
// Each figure: median of `runs` (default 3) with min..max.
import { compare, type Comparison } from "./lib/compare.ts";
import { readFileSync } from "node:fs";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { TcpConnector } from "../lib/transport/bun-connect.ts";
import { TcpAcceptor } from "../lib/transport/bun-listen.ts";
import type { BunSocketTransport, RemoteTlsOptions } from "../lib/transport/bun-socket.ts";
import { Lw } from "../lib/lw.ts";

const pem = (n: string) => readFileSync(new URL(`../tests/fixtures/tls/${n}`, import.meta.url), "utf8");
const SERVER_TLS: RemoteTlsOptions = { key: pem("server.key"), cert: pem("server.crt") };
const CLIENT_TLS: RemoteTlsOptions = { ca: pem("ca.crt") };
const proto = Lw.Protocol({ MSG: [1, Lw.Struct({ a: Lw.UInt32(), b: Lw.UInt32(), s: Lw.String() })] });
const DATA = { a: 1, b: 2, s: "x".repeat(32) }; // 15-byte header + 45-byte payload = 60 bytes on the wire
const MSG_BYTES = 60;
const N_STREAM = 200_000;
const N_RTT = 5_000;
const runs = import.meta.main && process.argv[2] ? Number(process.argv[2]) : 3;

async function acceptOne(acc: TcpAcceptor): Promise<BunSocketTransport> {
  for (;;) {
    const t = acc.accept();
    if (t) return t;
    acc.ref();
    await new Promise<void>((r) => acc.arm(r));
    acc.unref();
  }
}

async function assocPair(tls: boolean) {
  const acc = TcpAcceptor.listen({ host: "127.0.0.1", port: 0, tls: tls ? SERVER_TLS : null });
  const [tc, ts] = await Promise.all([new TcpConnector("localhost", acc.port, { tls: tls ? CLIENT_TLS : null }).connect(null), acceptOne(acc)]);
  acc.close();
  const a = new Connection(proto);
  const b = new Connection(proto);
  a.setTransport(ConnectionMode.REMOTE, tc);
  b.setTransport(ConnectionMode.REMOTE, ts);
  await Promise.all([a.connect(), b.accept()]);
  return { a, b };
}

async function assocStream(tls: boolean): Promise<number> {
  const { a, b } = await assocPair(tls);
  const t0 = performance.now();
  const rx = (async () => {
    for (let i = 0; i < N_STREAM; i++) (await b.recv()).dispose();
  })();
  for (let i = 0; i < N_STREAM; i++) await a.send({ tag: "MSG", data: DATA });
  await rx;
  const s = (performance.now() - t0) / 1000;
  await Promise.all([a.close(), b.close()]);
  return N_STREAM / s;
}

async function assocRtt(tls: boolean): Promise<number> {
  const { a, b } = await assocPair(tls);
  const server = (async () => {
    for (let i = 0; i < N_RTT; i++) {
      const m = await b.recv();
      await b.send({ tag: "MSG", data: m.data });
    }
  })();
  const lat: number[] = [];
  for (let i = 0; i < N_RTT; i++) {
    const t = performance.now();
    await a.transact({ tag: "MSG", data: DATA });
    lat.push(performance.now() - t);
  }
  await server;
  await Promise.all([a.close(), b.close()]);
  return median(lat) * 1000;
}

/** Bare Bun sockets: the same 60 bytes per message, one write() each; waits for drain when write takes less. */
async function bareStream(tls: boolean): Promise<number> {
  const msg = new Uint8Array(MSG_BYTES).fill(7);
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, tls: tls ? SERVER_TLS : undefined, socket: { data(_s, d) { got += d.length; if (got >= N_STREAM * MSG_BYTES) done(); } } });
  let drained: (() => void) | null = null;
  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  const c = await Bun.connect({ hostname: "127.0.0.1", port: server.port, tls: tls ? { ...CLIENT_TLS, serverName: "localhost" } : undefined, socket: { open: () => opened(), data() {}, drain() { drained?.(); } } });
  await open;
  const t0 = performance.now();
  for (let i = 0; i < N_STREAM; i++) {
    let off = 0;
    while (off < MSG_BYTES) {
      const n = c.write(msg.subarray(off));
      if (n > 0) off += n;
      else await new Promise<void>((r) => (drained = r));
    }
    if ((i & 1023) === 0) await new Promise((r) => setImmediate(r)); // let the server side run, as the association's sender does per turn
  }
  await all;
  const s = (performance.now() - t0) / 1000;
  c.end();
  server.stop(true);
  return N_STREAM / s;
}

async function bareRtt(tls: boolean): Promise<number> {
  const msg = new Uint8Array(MSG_BYTES).fill(7);
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, tls: tls ? SERVER_TLS : undefined, socket: { data(s, d) { s.write(d); } } });
  let got = 0;
  let wake: (() => void) | null = null;
  let opened!: () => void;
  const open = new Promise<void>((r) => (opened = r));
  // TLS: write() takes nothing until the handshake is done, and open() runs only then.
  const c = await Bun.connect({ hostname: "127.0.0.1", port: server.port, tls: tls ? { ...CLIENT_TLS, serverName: "localhost" } : undefined, socket: { open: () => opened(), data(_s, d) { got += d.length; if (got >= MSG_BYTES) wake?.(); } } });
  await open;
  const lat: number[] = [];
  for (let i = 0; i < N_RTT; i++) {
    const t = performance.now();
    got = 0;
    const p = new Promise<void>((r) => (wake = r));
    c.write(msg);
    await p;
    lat.push(performance.now() - t);
  }
  c.end();
  server.stop(true);
  return median(lat) * 1000;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function measure(name: string, runs: number, fn: () => Promise<number>, unit: string): Promise<number[]> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await fn());
  const m = median(xs);
  console.log(`${name.padEnd(28)} ${m.toFixed(unit === "msg/s" ? 0 : 1).padStart(10)} ${unit}  (${Math.min(...xs).toFixed(unit === "msg/s" ? 0 : 1)}..${Math.max(...xs).toFixed(unit === "msg/s" ? 0 : 1)})`);
  return xs;
}

/** REMOTE (issue 12): the association over TCP and TLS loopback against Bun's own sockets carrying the same bytes, in the same run. */
export async function runRemoteBench(opts: { quick?: boolean } = {}): Promise<{ comparisons: Comparison[] }> {
  const n = opts.quick ? 3 : Math.max(runs, 5);
  const comparisons: Comparison[] = [];
  for (const tls of [false, true]) {
    const k = tls ? "TLS" : "TCP";
    const a = await measure(`${k} stream, association`, n, () => assocStream(tls), "msg/s");
    const b = await measure(`${k} stream, bare Bun socket`, n, () => bareStream(tls), "msg/s");
    comparisons.push(compare({ bench: "remote", case: `REMOTE ${k} stream, 60 B messages`, metric: "msg/s", higherIsBetter: true, baseline: `Bun ${k} socket, same bytes`, target: { op: ">=", value: 2 }, headline: true, chart: true }, a, b));
    const c = await measure(`${k} rtt p50, association`, n, () => assocRtt(tls), "µs");
    const d = await measure(`${k} rtt p50, bare Bun socket`, n, () => bareRtt(tls), "µs");
    comparisons.push(compare({ bench: "remote", case: `REMOTE ${k} round trip`, metric: "p50 µs", higherIsBetter: false, baseline: `Bun ${k} socket, same bytes`, target: { op: "<=", value: 1.3 }, headline: true }, c, d));
  }
  for (const cmp of comparisons) console.log(`${cmp.case} vs ${cmp.baseline}: ${cmp.ratio.median.toFixed(2)}x (${cmp.ratio.min.toFixed(2)}..${cmp.ratio.max.toFixed(2)})`);
  return { comparisons };
}

if (import.meta.main) await runRemoteBench();
