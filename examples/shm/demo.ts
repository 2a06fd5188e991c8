/**
 * 64 MiB to another process, two ways: as a sealed memfd (the server maps
 * the pages) and as a message field (the bytes go through the socket). The
 * server answers a CRC-32 of what it saw; the demo checks it against its
 * own and prints each way's time.
 *
 *   bun examples/shm/demo.ts [--mib N] [--rounds N]
 * @module
 */
import { closeSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectionMode } from "../../lib/connection.ts";
import { Peer } from "../../lib/peer.ts";
import { createSealedMemfd, sealedMemfdFrom } from "../../lib/transport/shm.ts";
import { MAX_MESSAGE, shmProtocol } from "./protocol.ts";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const size = arg("--mib", 64) * 1024 * 1024;
const rounds = arg("--rounds", 3);

// Deterministic noise (xorshift32), so the checksum means something.
const data = new Uint8Array(size);
const words = new Uint32Array(data.buffer);
let x = 0x9e3779b9;
for (let i = 0; i < words.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  words[i] = x >>> 0;
}
const expected = Bun.hash.crc32(data);

const dir = mkdtempSync(join(tmpdir(), "lwmsg-shm-"));
const path = join(dir, "shm.sock");
const child = Bun.spawn([process.execPath, join(import.meta.dir, "server.ts"), path], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const ready = await child.stdout.getReader().read();
if (new TextDecoder().decode(ready.value).trim() !== "ready") throw new Error("server did not start");

const client = new Peer(shmProtocol, { maxMessageSize: MAX_MESSAGE });
client.addConnectEndpoint(ConnectionMode.LOCAL, path);
const session = await client.connect();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const times = { pwrite: [] as number[], fill: [] as number[], message: [] as number[] };
let ok = true;
async function viaMemfd(mem: number): Promise<boolean> {
  const reply = await session.call({ tag: "SUM_MEMFD_REQ", data: { size, mem } });
  closeSync(mem); // the call sent a dup; ours is no longer needed
  return reply.data === expected;
}
for (let r = 0; r < rounds; r++) {
  // Each time counts making the memfd: the data starts in a JS array every way.
  let t = performance.now();
  ok &&= await viaMemfd(sealedMemfdFrom(data, { name: "demo-64m" })); // copied in by pwrite
  times.pwrite.push(performance.now() - t);

  t = performance.now();
  ok &&= await viaMemfd(createSealedMemfd(size, (bytes) => bytes.set(data), { name: "demo-64m" })); // written through a mapping
  times.fill.push(performance.now() - t);

  t = performance.now();
  const viaMessage = await session.call({ tag: "SUM_BYTES_REQ", data: { size, data } });
  times.message.push(performance.now() - t);
  ok &&= viaMessage.data === expected;
}
await client.close();
child.stdin.end();
await child.exited;
rmSync(dir, { recursive: true, force: true });

const mib = size / 1024 / 1024;
const fmt = (xs: number[]) => `median ${median(xs).toFixed(1)} ms (${xs.map((v) => v.toFixed(1)).join(", ")})`;
console.log(`checksum crc32 ${expected.toString(16).padStart(8, "0")}: ${ok ? "ok" : "MISMATCH"} on every path`);
console.log(`${mib} MiB as a sealed memfd (sealedMemfdFrom):   ${fmt(times.pwrite)}`);
console.log(`${mib} MiB as a sealed memfd (createSealedMemfd): ${fmt(times.fill)}`);
console.log(`${mib} MiB as a message field:                    ${fmt(times.message)}`);
if (!ok) process.exit(1);
