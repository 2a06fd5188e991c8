// Large messages (issue #13 item 1): one packet per message between bun-lwmsg ends, large packets read
// straight into the message's own buffer, byte arrays decoded as views into it, huge-page buffers with a
// pool, release()/using recycling. Each test pins one property of that path; real socketpairs only.
import { afterEach, describe, expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { ptr } from "bun:ffi";
import { Connection, ConnectionMode, type ConnectionOptions, type ReceivedMessage } from "../lib/connection.ts";
import { Lw } from "../lib/lw.ts";
import { Status } from "../lib/status.ts";
import { socketPair } from "../lib/native/socket.ts";
import { native } from "../lib/native/ffi.ts";
import { bigBytesMapped, trimBigBuffers } from "../lib/native/big.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck, fdSnapshot } from "./helpers/fds.ts";
import { rawPeer, type RawPeer } from "./helpers/raw.ts";
import { rejection } from "./helpers/status.ts";
import { useTempDir } from "./helpers/tmp.ts";

fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });
const tmp = useTempDir("large-");

const Blob = Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) });
const FdBlob = Lw.Struct({ fd: Lw.Fd(), size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) });
const Foo = Lw.Struct({ a: Lw.UInt32() });
const proto = Lw.Protocol({ BLOB: [1, Blob], FD_BLOB: [2, FdBlob], FOO: [3, Foo] });
const TAG_BLOB = 1;
/** A BLOB's payload: its u32 size, then the bytes (a notNull pointer has no presence marker). */
const blobPayload = (n: number) => n + 4;

const KiB = 1024;
const MiB = 1024 * 1024;

const live: Connection[] = [];
const raws: RawPeer[] = [];
afterEach(() => {
  for (const c of live.splice(0)) c.destroy();
  for (const r of raws.splice(0)) r.close();
});

/** Two connected ends of a socketpair, each with its own options (one side may force lwmsg's 8192 packets). */
async function pairWith(optsA: ConnectionOptions, optsB: ConnectionOptions = optsA): Promise<[Connection, Connection]> {
  const [fa, fb] = socketPair();
  const a = new Connection(proto, optsA);
  const b = new Connection(proto, optsB);
  a.setFd(ConnectionMode.PAIR, fa);
  b.setFd(ConnectionMode.PAIR, fb);
  live.push(a, b);
  await Promise.all([a.connect(), b.accept()]);
  return [a, b];
}

/** A Connection that accepted a raw byte peer proposing `peerPacketSize`; the raw side sends what a test forges. */
async function rawAccepted(opts: ConnectionOptions, peerPacketSize: number): Promise<{ c: Connection; raw: RawPeer }> {
  const [x, y] = socketPair();
  const c = new Connection(proto, opts);
  c.setFd(ConnectionMode.PAIR, x);
  live.push(c);
  const raw = await rawPeer(y);
  raws.push(raw);
  const done = c.accept();
  const g = new Uint8Array(19);
  const v = new DataView(g.buffer);
  v.setUint32(0, 19);
  g[4] = 2; // CONNECT
  g[5] = 3; // FIRST|LAST
  v.setUint32(7, peerPacketSize);
  raw.write(g);
  await done;
  await raw.waitBytes(19); // our ACCEPT
  return { c, raw };
}

/** A MESSAGE packet header (§3.1): length, type 1, packet flags, message flags 0, status 0, cookie 0, tag. */
function messageHeader(packetLen: number, packetFlags: number, tag: number): Uint8Array {
  const h = new Uint8Array(15);
  const v = new DataView(h.buffer);
  v.setUint32(0, packetLen);
  h[4] = 1;
  h[5] = packetFlags;
  v.setInt16(13, tag);
  return h;
}

/**
 * Write all of `bytes` to a non-blocking socket (fds with the first byte), waiting while the socket is full —
 * until `stop()` says the reader is gone (a writer left behind would write into whatever socket reuses the fd).
 */
async function sendAll(fd: number, bytes: Uint8Array, fds: number[] = [], stop: () => boolean = () => false): Promise<void> {
  const copy = new Uint8Array(new ArrayBuffer(bytes.length));
  copy.set(bytes);
  const f = new Int32Array(Math.max(1, fds.length));
  f.set(fds);
  let off = 0;
  while (off < copy.length) {
    const first = off === 0 && fds.length > 0;
    const r = native.lw_send(fd, (ptr(copy) + off) as any, copy.length - off, first ? ptr(f) : null, first ? fds.length : 0);
    if (r === -11) {
      if (stop()) return;
      await Bun.sleep(1);
      continue;
    }
    if (r < 0) throw new Error(`sendAll: errno ${-r}`);
    off += r;
  }
}

/** n pseudo-random bytes from `seed` (xorshift32 words): different seeds give different messages everywhere. */
function pattern(n: number, seed: number): Uint8Array {
  const u = new Uint8Array(n);
  const w = new Uint32Array(u.buffer, 0, n >>> 2);
  let x = (Math.imul(seed + 1, 2654435761) >>> 0) || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
  for (let i = w.length * 4; i < n; i++) u[i] = (seed + i) & 0xff;
  return u;
}

const digest = (b: Uint8Array) => Bun.hash(b);
const blob = (data: Uint8Array) => ({ tag: "BLOB", data: { size: data.length, data } }) as const;
const bytesOf = (m: ReceivedMessage): Uint8Array => m.data.data;
/** A copy: a fresh buffer of exactly the array's bytes. */
const isCopy = (a: Uint8Array) => a.byteOffset === 0 && a.buffer.byteLength === a.byteLength;
const unsent = (c: Connection) => (c as any).outq.unsent as number;

describe("views never point into shared buffers", () => {
  test("small messages (< 64 KiB) decode to copies that later reads never overwrite (one packet, and lwmsg's 8192-byte fragments)", async () => {
    for (const packetSize of [undefined, 8192]) {
      const [a, b] = await pairWith({}, { packetSize });
      const sizes = [2 * KiB, 50 * KiB, 60 * KiB, 1500, 40 * KiB];
      const got: { arr: Uint8Array; hash: bigint | number }[] = [];
      for (let round = 0; round < 4; round++) {
        // Several messages per read: they sit side by side in the ring (or the reused reassembly buffer).
        for (let i = 0; i < sizes.length; i++) await a.send(blob(pattern(sizes[i]!, round * 10 + i)));
        for (let i = 0; i < sizes.length; i++) {
          const m = await b.recv();
          const arr = bytesOf(m);
          expect(digest(arr)).toBe(digest(pattern(sizes[i]!, round * 10 + i)));
          expect(isCopy(arr)).toBe(true);
          m.release(); // release of a small message changes nothing
          got.push({ arr, hash: digest(arr) });
        }
      }
      // Every earlier array still holds its own bytes after all the later reads.
      for (let i = 0; i < got.length; i++) {
        expect(got[i]!.arr.length).toBe(sizes[i % sizes.length]!);
        expect(digest(got[i]!.arr)).toBe(digest(pattern(sizes[i % sizes.length]!, Math.floor(i / sizes.length) * 10 + (i % sizes.length))));
      }
    }
  });

  test("a large message's byte array is a view into a buffer of that message alone, untouched by later messages", async () => {
    const [a, b] = await pairWith({});
    const sizes = [100 * KiB, 2 * MiB, 2 * MiB, 3 * MiB + 7, 100 * KiB, 2 * MiB];
    const kept: Uint8Array[] = [];
    for (let i = 0; i < sizes.length; i++) {
      const n = sizes[i]!;
      const recv = b.recv();
      await a.send(blob(pattern(n, 100 + i)));
      const m = await recv;
      const arr = bytesOf(m);
      expect(arr.length).toBe(n);
      if (n >= MiB) {
        // A view: the buffer is the message's payload, exactly (size field first), not a ring or a shared block.
        expect(isCopy(arr)).toBe(false);
        expect(arr.buffer.byteLength).toBe(blobPayload(n));
        expect(arr.byteOffset).toBe(4);
      } else {
        // 64 KiB–1 MiB: a view of its own payload-sized buffer when read straight from the socket, a copy
        // when the whole packet was already in the ring — never anything in between (the ring).
        expect(isCopy(arr) || (arr.buffer.byteLength === blobPayload(n) && arr.byteOffset === 4)).toBe(true);
      }
      for (const k of kept) expect(k.buffer).not.toBe(arr.buffer);
      kept.push(arr); // never released: the buffer stays this message's
    }
    for (let i = 0; i < sizes.length; i++) expect(digest(kept[i]!)).toBe(digest(pattern(sizes[i]!, 100 + i)));
  });

  // 8192: an lwmsg C peer's default; 100 000 and 1 MiB + 15: fragments large enough to be read straight from the socket.
  for (const packetSize of [8192, 100_000, MiB + 15]) {
    test(`a fragmented large message (${packetSize}-byte packets) still decodes as an exact view of its own buffer`, async () => {
      const [a, b] = await pairWith({ packetSize }, {});
      expect(b.packetSize).toBe(packetSize);
      const sizes = [2 * MiB, 200 * KiB, 2 * MiB, 5 * MiB + 3, 70 * KiB];
      const kept: Uint8Array[] = [];
      for (let i = 0; i < sizes.length; i++) {
        const n = sizes[i]!;
        const recv = b.recv();
        await a.send(blob(pattern(n, 200 + i)));
        const arr = bytesOf(await recv);
        expect(arr.length).toBe(n);
        if (blobPayload(n) > packetSize - 15) {
          expect([n, isCopy(arr)]).toEqual([n, false]); // fragmented: a view, past the size field
          expect(arr.byteOffset).toBe(4);
        } else {
          // One packet: a copy if it was whole in the receive ring, else a view of a payload-sized buffer.
          expect(isCopy(arr) || (arr.buffer.byteLength === blobPayload(n) && arr.byteOffset === 4)).toBe(true);
        }
        for (const k of kept) expect(k.buffer).not.toBe(arr.buffer);
        kept.push(arr);
      }
      for (let i = 0; i < sizes.length; i++) expect(digest(kept[i]!)).toBe(digest(pattern(sizes[i]!, 200 + i)));
    });
  }
});

describe("large packets arriving in pieces", () => {
  /** One whole MESSAGE packet (FIRST|LAST) carrying `payload`. */
  const packet = (tag: number, payload: Uint8Array) => {
    const out = new Uint8Array(15 + payload.length);
    out.set(messageHeader(out.length, 3, tag));
    out.set(payload, 15);
    return out;
  };
  const blobBytes = (data: Uint8Array) => {
    const out = new Uint8Array(4 + data.length);
    new DataView(out.buffer).setUint32(0, data.length);
    out.set(data, 4);
    return out;
  };
  const fooBytes = (a: number) => {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, a);
    return out;
  };

  test("headers split across reads, a small packet and the next large header in the same write as a large packet's tail: all exact, in order", async () => {
    const { c, raw } = await rawAccepted({}, 0x7fffffff);
    const big1 = pattern(3 * MiB + 5, 40);
    const mid = pattern(300 * KiB, 41);
    const big2 = pattern(2 * MiB, 42);
    const parts = [packet(TAG_BLOB, blobBytes(big1)), packet(3, fooBytes(7)), packet(TAG_BLOB, blobBytes(mid)), packet(3, fooBytes(8)), packet(TAG_BLOB, blobBytes(big2)), packet(3, fooBytes(9))];
    const stream = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
    parts.reduce((at, b) => (stream.set(b, at), at + b.length), 0);
    // Cut points: inside the first header, inside the size field, mid-payload, and around every packet boundary.
    const b1 = 15 + 4 + big1.length;
    const cuts = [3, 9, 17, 200_000, b1 - 1, b1 + 10, b1 + 19 + 7, b1 + 19 + 15 + 4 + mid.length + 19 + 2, stream.length - 19 - 100, stream.length];
    const got: ReceivedMessage[] = [];
    const reading = (async () => {
      for (let i = 0; i < 6; i++) got.push(await c.recv());
    })();
    let at = 0;
    for (const cut of cuts) {
      await sendAll(raw.fd, stream.subarray(at, cut));
      at = cut;
      await Bun.sleep(2); // let the receiver read what is there: the next bytes come in a later read
    }
    await reading;
    expect(got.map((m) => m.name)).toEqual(["BLOB", "FOO", "BLOB", "FOO", "BLOB", "FOO"]);
    expect(got.filter((m) => m.name === "FOO").map((m) => m.data.a)).toEqual([7, 8, 9]);
    const blobs = [big1, mid, big2];
    got.filter((m) => m.name === "BLOB").forEach((m, i) => {
      const arr = bytesOf(m);
      expect(digest(arr)).toBe(digest(blobs[i]!));
      // Read straight from the socket into a payload-sized buffer of its own (it arrived in pieces); the
      // 300 KiB one may instead have been whole in the receive ring, then it is a copy.
      const exact = arr.buffer.byteLength === blobPayload(blobs[i]!.length) && arr.byteOffset === 4;
      expect(exact || (i === 1 && isCopy(arr))).toBe(true);
    });
    for (const m of got) m.release();
  });
});

describe("send() takes the message at once", () => {
  const opts = { maxMessageSize: 32 * MiB };
  const N = 16 * MiB;

  test("overwriting the source right after send() does not change what arrives (receiver reading concurrently)", async () => {
    const [a, b] = await pairWith(opts);
    const src = pattern(N, 1);
    const want = digest(src);
    const recv = b.recv();
    const sent = a.send(blob(src));
    src.fill(0xee);
    const m = await recv;
    await sent;
    expect(digest(bytesOf(m))).toBe(want);
    m.release();
  });

  test("overwriting the source while the socket is full (send has not finished writing) does not change what arrives", async () => {
    const [a, b] = await pairWith(opts);
    const src = pattern(N, 2);
    const want = digest(src);
    const sent = a.send(blob(src));
    // Nobody reads yet: the kernel cannot have taken 16 MiB, so the rest waits in the outgoing queue.
    expect(unsent(a)).toBeGreaterThan(0);
    src.fill(0x11);
    await Bun.sleep(5); // let a flush run with the source already overwritten
    src.fill(0x22);
    const m = await b.recv();
    await sent;
    expect(digest(bytesOf(m))).toBe(want);
    m.release();
  });
});

describe("fds with large messages", () => {
  test("an fd with a several-MiB message taken by sendmsg in parts arrives once, usable, in order with the next messages; no fd leaks", async () => {
    const snap = fdSnapshot();
    const [a, b] = await pairWith({});
    const files = [0, 1].map((i) => {
      const p = tmp.join(`f${i}.txt`);
      writeFileSync(p, `file ${i}`);
      return { path: p, fd: openSync(p, "r") };
    });
    // Over the 8 MiB the kernel grants for the 4 MiB SO_SNDBUF asked (it doubles the value): several writes.
    const n = 12 * MiB;
    await a.send({ tag: "FOO", data: { a: 1 } });
    const s1 = a.send({ tag: "FD_BLOB", data: { fd: files[0]!.fd, size: n, data: pattern(n, 30) } });
    expect(unsent(a)).toBeGreaterThan(0); // the socket did not take it whole: the rest goes in later writes
    const s2 = a.send({ tag: "FD_BLOB", data: { fd: files[1]!.fd, size: n, data: pattern(n, 31) } });
    const s3 = a.send({ tag: "FOO", data: { a: 2 } });
    // The sender's fds were dup'ed by send(): closing ours now must not matter.
    for (const f of files) closeSync(f.fd);
    const got: ReceivedMessage[] = [];
    for (let i = 0; i < 4; i++) got.push(await b.recv());
    await Promise.all([s1, s2, s3]);
    expect(got.map((m) => m.name)).toEqual(["FOO", "FD_BLOB", "FD_BLOB", "FOO"]);
    expect(got[0]!.data.a).toBe(1);
    expect(got[3]!.data.a).toBe(2);
    expect(got[0]!.fds ?? []).toEqual([]);
    expect(got[3]!.fds ?? []).toEqual([]);
    for (const i of [0, 1]) {
      const m = got[1 + i]!;
      expect(m.fds?.length).toBe(1);
      const fd = m.takeFd(m.data.fd);
      // The same open file as the sender's, and readable.
      expect(fstatSync(fd).ino).toBe(statSync(files[i]!.path).ino);
      const buf = Buffer.alloc(16);
      expect(buf.toString("utf8", 0, readSync(fd, buf, 0, 16, 0))).toBe(`file ${i}`);
      expect(digest(bytesOf(m))).toBe(digest(pattern(n, 30 + i)));
      closeSync(fd);
      m.release();
    }
    for (const m of got) m.release();
    a.destroy();
    b.destroy();
    await snap.assertNoLeak({ settleMs: 2000 });
  });
});

describe("64 MiB messages", () => {
  const N = 64 * MiB;
  const opts = { maxMessageSize: N + 64 };
  for (const [what, packetA] of [["one packet", undefined], ["8192-byte fragments (the sender forces lwmsg's packet size)", 8192]] as const) {
    test(`a 64 MiB message arrives exact: ${what}`, async () => {
      const [a, b] = await pairWith({ ...opts, packetSize: packetA }, opts);
      expect(b.packetSize).toBe(packetA ?? N + 64 + 15);
      const src = pattern(N, 64);
      const want = digest(src);
      const recv = b.recv();
      const sent = a.send(blob(src));
      src.fill(0); // taken at send(): the sender's array is free again
      const m = await recv;
      await sent;
      const arr = bytesOf(m);
      expect(arr.length).toBe(N);
      expect(isCopy(arr)).toBe(false);
      expect(digest(arr)).toBe(want);
      m.release();
      expect(arr.length).toBe(0);
    }, 60_000);
  }
});

describe("limits are enforced before memory is committed", () => {
  /** Big-buffer bytes mapped, and in use (a pooled mapping handed out is no new mapping, but is in use). */
  const mapped = () => bigBytesMapped();
  const growth = (before: { mapped: number; pooled: number }) => {
    const now = bigBytesMapped();
    return Math.max(now.mapped - before.mapped, now.mapped - now.pooled - (before.mapped - before.pooled));
  };
  const settle = () => Bun.gc(true); // nothing collectable left to shrink the count while a test measures

  // A 48 MiB packet announced to a receiver of 1 MiB messages, judged from its header either way:
  //  - it allows 64 MiB packets: the packet length passes, the message size cannot → OVERFLOW;
  //  - default proposal (maxMessageSize + 15), the raw peer proposes the most → over the packet size, MALFORMED (§3.3).
  const oversized = [
    { what: "one packet claiming more than maxMessageSize (within the negotiated packet size) → OVERFLOW, nothing allocated for it", opts: { maxMessageSize: MiB, packetSize: 64 * MiB }, packetSize: 64 * MiB, status: Status.OVERFLOW, says: "maxMessageSize", seed: 5 },
    { what: "one packet longer than the negotiated packet size → MALFORMED (§3.3), judged from its header", opts: { maxMessageSize: MiB }, packetSize: MiB + 15, status: Status.MALFORMED, says: "exceeds the negotiated packet size", seed: 6 },
  ];
  for (const o of oversized) {
    test(o.what, async () => {
      const { c, raw } = await rawAccepted(o.opts, 0x7fffffff);
      expect(c.packetSize).toBe(o.packetSize);
      settle();
      const before = mapped();
      const recv = rejection(c.recv()); // handled at once: it may fail while the raw side still writes
      await sendAll(raw.fd, messageHeader(48 * MiB + 15, 3, TAG_BLOB));
      await sendAll(raw.fd, pattern(256 * KiB, o.seed)).catch(() => {}); // (the receiver may have hung up already)
      const e = await recv;
      expect(e.status).toBe(o.status);
      expect(e.message).toContain(o.says);
      expect(growth(before)).toBeLessThan(MiB);
    });
  }

  test("fragments adding up past maxMessageSize → OVERFLOW before the buffer grows past maxMessageSize", async () => {
    const { c, raw } = await rawAccepted({ maxMessageSize: MiB }, 8192);
    expect(c.packetSize).toBe(8192);
    settle();
    const before = mapped();
    let failed = false;
    const recv = rejection(c.recv()).finally(() => (failed = true));
    const chunk = 8192 - 15;
    const count = Math.ceil((4 * MiB) / chunk); // 4 MiB of fragments, none of them LAST
    const stream = new Uint8Array(count * 8192);
    const body = pattern(chunk, 7);
    for (let i = 0; i < count; i++) {
      stream.set(messageHeader(8192, i === 0 ? 1 : 0, TAG_BLOB), i * 8192);
      stream.set(body, i * 8192 + 15);
    }
    // The receiver fails the connection at 1 MiB: later writes may find it closed.
    await sendAll(raw.fd, stream, [], () => failed).catch(() => {});
    const e = await recv;
    expect(e.status).toBe(Status.OVERFLOW);
    // At most one buffer of maxMessageSize (rounded to a 2 MiB huge page) and the smaller ones it doubled
    // through on the way (< maxMessageSize together, garbage by now): not the 4 MiB sent.
    expect(growth(before)).toBeLessThanOrEqual(3 * MiB);
  });

  test("a large packet cut short by the peer closing → PEER_CLOSE; its fd is closed, nothing delivered", async () => {
    const snap = fdSnapshot();
    const { c, raw } = await rawAccepted({}, 0x7fffffff);
    // Leave a released buffer of this exact size in the pool first: the cut-short packet may be read into it.
    const [a, b] = await pairWith({});
    const n = 16 * MiB - 4;
    const r0 = b.recv();
    await a.send(blob(pattern(n, 8)));
    (await r0).release();
    const p = tmp.join("cut.txt");
    writeFileSync(p, "cut");
    const fd = openSync(p, "r");
    const recv = rejection(c.recv());
    await sendAll(raw.fd, messageHeader(blobPayload(n) + 15, 3, TAG_BLOB), [fd]);
    closeSync(fd);
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, n);
    await sendAll(raw.fd, size);
    await sendAll(raw.fd, pattern(3 * MiB, 9));
    raw.close();
    const e = await recv;
    expect(e.status).toBe(Status.PEER_CLOSE);
    await rejection(c.recv()); // and nothing was queued behind the error
    c.destroy();
    a.destroy();
    b.destroy();
    await snap.assertNoLeak({ settleMs: 2000 });
  });
});

describe("release() and using", () => {
  const N = 2 * MiB;

  async function oneBlob(a: Connection, b: Connection, seed: number, n = N): Promise<ReceivedMessage> {
    const recv = b.recv();
    await a.send(blob(pattern(n, seed)));
    return recv;
  }

  test("release() detaches a large message's byte array; keepBytes() and dispose() keep it", async () => {
    const [a, b] = await pairWith({});
    const m1 = await oneBlob(a, b, 1);
    const v1 = bytesOf(m1);
    m1.release();
    expect(v1.length).toBe(0);
    expect((v1.buffer as any).detached).toBe(true);
    m1.release(); // idempotent

    const m2 = await oneBlob(a, b, 2);
    const v2 = bytesOf(m2);
    m2.keepBytes().release();
    expect(v2.length).toBe(N);

    const m3 = await oneBlob(a, b, 3);
    const v3 = bytesOf(m3);
    m3.dispose();
    expect(v3.length).toBe(N);

    let v4: Uint8Array;
    {
      using m4 = await oneBlob(a, b, 4);
      v4 = bytesOf(m4);
      expect(v4.length).toBe(N);
    }
    expect(v4.length).toBe(0);

    // Later messages (into recycled buffers) leave the kept ones alone.
    for (let i = 5; i < 10; i++) (await oneBlob(a, b, i)).release();
    expect(digest(v2)).toBe(digest(pattern(N, 2)));
    expect(digest(v3)).toBe(digest(pattern(N, 3)));
  });

  test("a recycled buffer serves the next message, and the old views never show that message's bytes", async () => {
    const [a, b] = await pairWith({});
    for (let i = 0; i < 3; i++) (await oneBlob(a, b, 50 + i)).release(); // warm-up: the sender's queue is grown
    const m1 = await oneBlob(a, b, 60);
    const old = bytesOf(m1);
    const oldBuf = old.buffer;
    m1.release();
    const before = bigBytesMapped().mapped;
    const m2 = await oneBlob(a, b, 61);
    // Served from the released buffer: no new mapping.
    expect(bigBytesMapped().mapped).toBeLessThanOrEqual(before);
    expect(digest(bytesOf(m2))).toBe(digest(pattern(N, 61)));
    expect(old.length).toBe(0);
    expect(oldBuf.byteLength).toBe(0);
    expect((oldBuf as any).detached).toBe(true);
    m2.release();
  });

  test("messages under 64 KiB are unaffected by release(); from 64 KiB on their arrays are detached", async () => {
    const [a, b] = await pairWith({});
    for (const n of [100, 2 * KiB, 60 * KiB]) {
      const m = await oneBlob(a, b, n, n);
      const v = bytesOf(m);
      m.release();
      expect(v.length).toBe(n);
      (await oneBlob(a, b, n + 1, n)).release();
      expect(digest(v)).toBe(digest(pattern(n, n)));
    }
    for (const n of [100 * KiB, 900 * KiB]) {
      const m = await oneBlob(a, b, n, n);
      const v = bytesOf(m);
      expect(digest(v)).toBe(digest(pattern(n, n)));
      // (100 KiB may arrive whole in the 256 KiB ring and be decoded as a copy: release leaves a copy alone)
      const own = v.buffer.byteLength === blobPayload(n);
      if (n > 256 * KiB) expect(own).toBe(true);
      m.release();
      expect(v.length).toBe(own ? 0 : n);
    }
  });
});

describe("memory stays flat", () => {
  test("200 messages of 16 MiB with using: RSS and mapped bytes flat; 100 more without: the collector bounds them", async () => {
    const N = 16 * MiB;
    const [a, b] = await pairWith({ maxMessageSize: 32 * MiB });
    const src = pattern(N, 77);
    const view = new DataView(src.buffer);
    const roundTrip = async (i: number, use: boolean): Promise<void> => {
      view.setUint32(0, i);
      view.setUint32(N - 4, i);
      const recv = b.recv();
      const sent = a.send(blob(src));
      if (use) {
        using m = await recv;
        const d = new DataView(bytesOf(m).buffer, bytesOf(m).byteOffset);
        expect(d.getUint32(0) === i && d.getUint32(N - 4) === i).toBe(true);
      } else {
        const m = await recv;
        const d = new DataView(bytesOf(m).buffer, bytesOf(m).byteOffset);
        expect(d.getUint32(0) === i && d.getUint32(N - 4) === i).toBe(true);
      }
      await sent;
    };
    for (let i = 0; i < 20; i++) await roundTrip(i, true);
    Bun.gc(true);
    const rss0 = process.memoryUsage().rss;
    const mapped0 = bigBytesMapped().mapped;
    for (let i = 0; i < 200; i++) await roundTrip(i, true);
    const rssGrowth = process.memoryUsage().rss - rss0;
    const mappedGrowth = bigBytesMapped().mapped - mapped0;
    expect(rssGrowth).toBeLessThan(64 * MiB); // 200 × 16 MiB = 3.2 GB went through
    expect(mappedGrowth).toBeLessThanOrEqual(0); // every buffer was a recycled one

    // Without using: each message keeps its buffer until the collector frees it (then it is pooled or unmapped).
    let peak = 0;
    for (let i = 0; i < 100; i++) {
      await roundTrip(i, false);
      peak = Math.max(peak, bigBytesMapped().mapped);
    }
    expect(peak).toBeLessThan(768 * MiB); // 100 × 16 MiB = 1.6 GB if nothing were collected
    Bun.gc(true);
    await Bun.sleep(10);
    Bun.gc(true);
    const after = bigBytesMapped();
    expect(after.mapped - after.pooled).toBeLessThanOrEqual(mapped0 + 32 * MiB);
  }, 60_000);
});

describe("a reused buffer never shows an earlier message past the new one's end", () => {
  const tail = (v: Uint8Array) => new Uint8Array(v.buffer, v.byteOffset + v.length);
  const allZero = (b: Uint8Array) => b.every((x) => x === 0);

  test("fragments (8192): a message assembled in the buffer kept from a smaller one; one grown into a released buffer", async () => {
    const [a, b] = await pairWith({ packetSize: 8192 });
    // 60 KiB: copied out, its reassembly buffer kept; then 100 KiB assembled in that buffer and handed over
    await a.send({ tag: "BLOB", data: { size: 60 * KiB, data: new Uint8Array(60 * KiB).fill(0xaa) } });
    const small = await b.recv();
    expect(small.data.data.buffer.byteLength).toBe(60 * KiB);
    await a.send({ tag: "BLOB", data: { size: 100 * KiB, data: new Uint8Array(100 * KiB).fill(0x55) } });
    const mid = await b.recv();
    expect(mid.data.data.every((x: number) => x === 0x55)).toBe(true);
    expect(tail(mid.data.data).length).toBeGreaterThan(0); // the kept buffer is larger than this message
    expect(allZero(tail(mid.data.data))).toBe(true);
    // A 4 MiB payload fills its buffer exactly (64 KiB doubled); released, that buffer goes back. The next message
    // (2.5 MiB) grows into a buffer of the last large size, 4 MiB: that very one, the first's bytes past 2.5 MiB
    const first = (await Promise.all([a.send({ tag: "BLOB", data: { size: 4 * MiB - 4, data: new Uint8Array(4 * MiB - 4).fill(0xaa) } }), b.recv()]))[1];
    expect(first.data.data.buffer.byteLength).toBe(4 * MiB);
    first.release();
    await a.send({ tag: "BLOB", data: { size: 2.5 * MiB, data: new Uint8Array(2.5 * MiB).fill(0x33) } });
    const big = await b.recv();
    expect(big.data.data.buffer.byteLength).toBe(4 * MiB);
    expect(big.data.data.every((x: number) => x === 0x33)).toBe(true);
    expect(allZero(tail(big.data.data))).toBe(true);
    expect([...new Uint8Array(big.data.data.buffer, 0, big.data.data.byteOffset)]).toEqual([0x00, 0x28, 0x00, 0x00]); // its own size field
  });
});

describe("the pools give their memory back", () => {
  const collect = async () => {
    Bun.gc(true);
    await Bun.sleep(10);
    Bun.gc(true);
  };

  test("trimBigBuffers() unmaps what released and collected buffers left pooled", async () => {
    await collect();
    trimBigBuffers();
    const base = bigBytesMapped();
    {
      // (not through pairWith: its list would keep the connections, and their buffers, alive)
      const [a, b] = await Connection.pair(proto);
      for (let i = 0; i < 4; i++) {
        const r = b.recv();
        await a.send({ tag: "BLOB", data: { size: 8 * MiB, data: new Uint8Array(8 * MiB).fill(i) } });
        (await r).release(); // back to the pool for the next one
      }
      a.destroy();
      b.destroy();
    }
    await collect(); // the connections' buffers reach the shim's pool when collected
    expect(bigBytesMapped().mapped).toBeGreaterThan(base.mapped); // pooled, still mapped
    // Trim drops the released buffer (JS side) and unmaps the shim's pool; what the collector frees later (it
    // finalizes lazily) reaches the pool afterwards, so trim again until nothing of the messages is left.
    let after = bigBytesMapped();
    for (let i = 0; i < 50 && (after.pooled !== 0 || after.mapped > base.mapped); i++) {
      trimBigBuffers();
      await collect();
      trimBigBuffers();
      after = bigBytesMapped();
    }
    expect(after.pooled).toBe(0);
    expect(after.mapped).toBeLessThanOrEqual(base.mapped); // (earlier tests' buffers may have gone too)
  });
});
