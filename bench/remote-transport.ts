// REMOTE transport figures (informational, not wired into `bun run bench` yet):
// `bun bench/remote-transport.ts [runs]` — over TCP and TLS loopback, in one process:
//   stream: 60-byte lwmsg messages, client send() loop → server recv() loop, through the association;
//           against a bare Bun socket writing the same 60 bytes per message (one write each), server counting bytes.
//   rtt:    transact() request/reply p50, against a bare Bun socket ping-pong of the same 60 bytes.
// Each figure: median of `runs` (default 3) with min..max.
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
const runs = Number(process.argv[2] ?? 3);

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

async function measure(name: string, fn: () => Promise<number>, unit: string): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await fn());
  const m = median(xs);
  console.log(`${name.padEnd(28)} ${m.toFixed(unit === "msg/s" ? 0 : 1).padStart(10)} ${unit}  (${Math.min(...xs).toFixed(unit === "msg/s" ? 0 : 1)}..${Math.max(...xs).toFixed(unit === "msg/s" ? 0 : 1)})`);
  return m;
}

for (const tls of [false, true]) {
  const k = tls ? "tls" : "tcp";
  const a = await measure(`${k} stream, association`, () => assocStream(tls), "msg/s");
  const b = await measure(`${k} stream, bare Bun socket`, () => bareStream(tls), "msg/s");
  console.log(`${k} stream ratio: ${(a / b).toFixed(2)}x`);
  const c = await measure(`${k} rtt p50, association`, () => assocRtt(tls), "µs");
  const d = await measure(`${k} rtt p50, bare Bun socket`, () => bareRtt(tls), "µs");
  console.log(`${k} rtt ratio: ${(c / d).toFixed(2)}x`);
}
