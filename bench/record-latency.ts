/**
 * What `bun-lwmsg record` adds to a call: the fserv demo server in one
 * process, the recorder (`--quiet`, archiving to a temp file) in another,
 * and an fserv client here making FSERV_READ_REQ calls (16 bytes each) and
 * FSERV_OPEN_FD_REQ calls (an fd passed back through the recorder), first
 * straight to the server, then through the recorder, alternating over
 * several rounds. Prints p50/p90 per call for both and the added latency
 * as a multiple of the direct round trip (target: at most one extra round
 * trip per message, i.e. ≤ 1.0×).
 *
 *   npx bun bench/record-latency.ts [--rounds 5] [--calls 3000]
 * @module
 */
import { closeSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FservClient } from "../examples/fserv/client.ts";
import { OPEN_MODE } from "../examples/fserv/protocol.ts";

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const ROUNDS = arg("rounds", 5);
const CALLS = arg("calls", 3000);
const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "rec-bench-"));
const srvSock = join(dir, "srv.sock");
const recSock = join(dir, "rec.sock");
const file = join(dir, "data.bin");
writeFileSync(file, new Uint8Array(16 * (CALLS + 1000)).fill(0x61));

async function waitFor(p: string): Promise<void> {
  for (let i = 0; i < 400 && !existsSync(p); i++) await Bun.sleep(25);
  if (!existsSync(p)) throw new Error(`no socket at ${p}`);
}

const server = Bun.spawn([process.execPath, join(root, "examples/fserv/server.ts"), "--socket", srvSock], { stdout: "ignore", stderr: "ignore" });
await waitFor(srvSock);
// two recorders, one per poller wake-up mechanism, measured in the same rounds
const recSock2 = join(dir, "rec2.sock");
const startRecorder = (sock: string, out: string, poller: string) =>
  Bun.spawn([process.execPath, join(root, "bin/bun-lwmsg.ts"), "record", "--quiet", "--listen", sock, "--connect", srvSock, "--out", join(dir, out), "--protocol", join(root, "examples/fserv/protocol.ts")], {
    stdout: "ignore",
    stderr: "ignore",
    env: { ...process.env, LWMSG_POLLER: poller },
  });
const recorder = startRecorder(recSock, "bench.lwma", "callback");
const recorder2 = startRecorder(recSock2, "bench2.lwma", "doorbell");
await waitFor(recSock);
await waitFor(recSock2);

const pct = (xs: number[], p: number) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function measure(sock: string): Promise<{ read50: number; read90: number; fd50: number }> {
  const c = new FservClient(sock);
  const h = await c.open(file, OPEN_MODE.READ);
  const reads: number[] = [];
  for (let i = 0; i < 300; i++) await c.read(h, 16); // warm-up
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    await c.read(h, 16);
    reads.push(performance.now() - t);
  }
  await c.close(h);
  const fds: number[] = [];
  for (let i = 0; i < Math.min(500, CALLS); i++) {
    const t = performance.now();
    const fd = await c.openFd(file, OPEN_MODE.READ);
    fds.push(performance.now() - t);
    closeSync(fd);
  }
  await c.disconnect();
  return { read50: pct(reads, 50) * 1000, read90: pct(reads, 90) * 1000, fd50: pct(fds, 50) * 1000 };
}

const direct: Awaited<ReturnType<typeof measure>>[] = [];
const recorded: Awaited<ReturnType<typeof measure>>[] = [];
const recorded2: Awaited<ReturnType<typeof measure>>[] = [];
try {
  for (let r = 0; r < ROUNDS; r++) {
    direct.push(await measure(srvSock));
    recorded.push(await measure(recSock));
    recorded2.push(await measure(recSock2));
  }
} finally {
  recorder.kill("SIGINT");
  recorder2.kill("SIGINT");
  await recorder.exited;
  await recorder2.exited;
  server.kill("SIGINT");
  await server.exited;
}
const size = statSync(join(dir, "bench.lwma")).size;
rmSync(dir, { recursive: true, force: true });

const med = (xs: number[]) => pct(xs, 50);
const span = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
const row = (name: string, f: (m: Awaited<ReturnType<typeof measure>>) => number, via = recorded) => {
  const d = direct.map(f);
  const t = via.map(f);
  const added = t.map((x, i) => (x - d[i]!) / d[i]!);
  console.log(
    `  ${name.padEnd(27)} direct ${med(d).toFixed(0)} µs (${span(d)})  via recorder ${med(t).toFixed(0)} µs (${span(t)})  added ${(med(t) - med(d)).toFixed(0)} µs = ${med(added).toFixed(2)}× a direct round trip (${Math.min(...added).toFixed(2)}–${Math.max(...added).toFixed(2)})`,
  );
};
console.log(`${ROUNDS} rounds × ${CALLS} calls; medians of the per-round figures (min–max); archive ${(size / 1e6).toFixed(1)} MB`);
console.log("recorder with LWMSG_POLLER=callback:");
row("READ_REQ 16 B, p50", (m) => m.read50);
row("READ_REQ 16 B, p90", (m) => m.read90);
row("OPEN_FD_REQ (fd back), p50", (m) => m.fd50);
console.log("recorder with LWMSG_POLLER=doorbell (the default):");
row("READ_REQ 16 B, p50", (m) => m.read50, recorded2);
row("OPEN_FD_REQ (fd back), p50", (m) => m.fd50, recorded2);
