// The send side of large messages: byte arrays of 64 KiB or more leave from the caller's own memory in one
// sendmsg with several pieces (lw_sendv), and what the kernel has not taken when send() returns is copied then.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { Peer } from "../lib/peer.ts";
import { copyBytes } from "../lib/codec/runtime.ts";
import { Lw } from "../lib/lw.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck } from "./helpers/fds.ts";

fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });

const Pair = Lw.Struct({
  n1: Lw.UInt32(),
  first: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n1" }), { notNull: true }),
  note: Lw.String(),
  n2: Lw.UInt32(),
  second: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n2" }), { notNull: true }),
});
const P = Lw.Protocol({ PAIR: [1, Pair] });

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe("large byte arrays go out from the caller's memory", () => {
  test("two arrays around a string, mutated as soon as send() returns: the receiver gets the bytes as they were at send()", async () => {
    const [a, b] = await Connection.pair(P);
    try {
      const sizes = [64 * 1024, 300 * 1024, 5 * 1024 * 1024, 7 * 1024 * 1024 + 7];
      for (const [i, n] of sizes.entries()) {
        const first = pattern(n, i + 1);
        const second = pattern(n + 3, i + 100);
        const want1 = first.slice();
        const want2 = second.slice();
        // nobody reads yet: the kernel takes at most its send buffer, the rest must be copied before send() returns
        const sent = a.send({ tag: "PAIR", data: { n1: first.length, first, note: `message ${i}`, n2: second.length, second } });
        first.fill(0xee);
        second.fill(0xdd);
        const [m] = await Promise.all([b.recv(), sent]);
        expect(m.data.note).toBe(`message ${i}`);
        expect(Buffer.compare(m.data.first, want1)).toBe(0);
        expect(Buffer.compare(m.data.second, want2)).toBe(0);
      }
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test("many large messages queued back to back without awaiting, each array changed after its send(): all arrive intact and in order", async () => {
    const [a, b] = await Connection.pair(P, { sendQueueLimit: 64 * 1024 * 1024 });
    try {
      const n = 1024 * 1024 + 5;
      const arr = pattern(n, 7);
      const want: Uint8Array[] = [];
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 12; i++) {
        arr[0] = i;
        arr[n - 1] = 255 - i;
        want.push(arr.slice());
        sends.push(a.send({ tag: "PAIR", data: { n1: n, first: arr, note: String(i), n2: 0, second: new Uint8Array(0) } }));
      }
      arr.fill(1);
      for (let i = 0; i < 12; i++) {
        using m = await b.recv();
        expect(m.data.note).toBe(String(i));
        expect(Buffer.compare(m.data.first, want[i]!)).toBe(0);
      }
      await Promise.all(sends);
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test("more large arrays in one message than one sendmsg takes pieces (80 × 64 KiB, with gaps): every byte as it was at send()", async () => {
    const Chunk = Lw.Struct({ tag: Lw.UInt32(), n: Lw.UInt32(), bytes: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" }), { notNull: true }) });
    const Many = Lw.Protocol({ MANY: [1, Lw.Struct({ count: Lw.UInt32(), chunks: Lw.Pointer(Lw.Array(Chunk, { length: "count" }), { notNull: true }) })] });
    const [a, b] = await Connection.pair(Many);
    try {
      for (const round of [0, 1]) {
        const chunks = Array.from({ length: 80 }, (_, i) => ({ tag: i, n: 64 * 1024 + i, bytes: pattern(64 * 1024 + i, i + 1000 * round) }));
        const want = chunks.map((c) => c.bytes.slice());
        const sent = a.send({ tag: "MANY", data: { count: chunks.length, chunks } });
        for (const c of chunks) c.bytes.fill(0x77);
        const [m] = await Promise.all([b.recv(), sent]);
        expect(m.data.chunks.length).toBe(80);
        for (const [i, c] of (m.data.chunks as { tag: number; bytes: Uint8Array }[]).entries()) {
          expect(c.tag).toBe(i);
          expect(Buffer.compare(c.bytes, want[i]!)).toBe(0);
        }
      }
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  test("with small packets (an lwmsg C peer's 8192) the arrays are copied and fragmented as before", async () => {
    const [a, b] = await Connection.pair(P, { packetSize: 8192 });
    try {
      const first = pattern(200 * 1024, 3);
      const want = first.slice();
      const sent = a.send({ tag: "PAIR", data: { n1: first.length, first, note: "small packets", n2: 1, second: new Uint8Array([9]) } });
      first.fill(0);
      const [m] = await Promise.all([b.recv(), sent]);
      expect(a.packetSize).toBe(8192);
      expect(Buffer.compare(m.data.first, want)).toBe(0);
      expect([...m.data.second]).toEqual([9]);
    } finally {
      a.destroy();
      b.destroy();
    }
  });
});

describe("copyBytes", () => {
  test("copies views at any offset into any position, small and large (the shim's copy from 256 KiB on)", () => {
    const all = pattern(3 * 1024 * 1024, 5);
    for (const n of [100, 2048, 2049, 100_000, 256 * 1024, 1024 * 1024 + 3]) {
      for (const [from, at] of [[0, 0], [1000, 77], [4095, 8], [8, 4095]] as const) {
        const src = all.subarray(from, from + n);
        const dst = new Uint8Array(n + 10_000).fill(0xee);
        copyBytes(src, dst, at);
        expect(Buffer.compare(dst.subarray(at, at + n), src)).toBe(0);
        expect(dst[at - 1] ?? 0xee).toBe(0xee);
        expect(dst[at + n]).toBe(0xee);
      }
    }
  });
});

describe("large messages through a Peer", () => {
  const Blob = Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) });
  const BP = Lw.Protocol({ PUT: [1, Blob], GOT: [2, Blob] });

  test("a handler may keep a large request's bytes after its call (never recycled); a large reply under `using` is detached at the end of the block, kept with keepBytes()", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lwlarge-"));
    const kept: Uint8Array[] = [];
    const server = new Peer(BP);
    server.addDispatch({
      PUT: (req, call) => {
        kept.push(call.request!.data.data);
        const back = pattern(req.size, 42);
        return { tag: "GOT", data: { size: back.length, data: back } };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, join(dir, "s"));
    await server.startListen();
    const client = new Peer(BP);
    client.addConnectEndpoint(ConnectionMode.LOCAL, join(dir, "s"));
    try {
      const s = await client.connect();
      const sizes = [2 * 1024 * 1024, 2 * 1024 * 1024, 3 * 1024 * 1024 + 1];
      let detached: Uint8Array | null = null;
      let keptReply: Uint8Array | null = null;
      for (const [i, n] of sizes.entries()) {
        const out = pattern(n, i);
        using r = await s.call({ tag: "PUT", data: { size: n, data: out } });
        expect(Buffer.compare(r.data.data, pattern(n, 42))).toBe(0);
        if (i === 0) detached = r.data.data;
        if (i === 1) keptReply = r.keepBytes().data.data;
      }
      // the first reply's buffer went back at the end of its block (and may carry a later reply now): its view is empty
      expect(detached!.length).toBe(0);
      expect(Buffer.compare(keptReply!, pattern(sizes[1]!, 42))).toBe(0);
      // every request the handler kept is intact, though its calls are long over
      expect(kept.length).toBe(3);
      for (const [i, n] of sizes.entries()) expect(Buffer.compare(kept[i]!, pattern(n, i))).toBe(0);
    } finally {
      await client.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
