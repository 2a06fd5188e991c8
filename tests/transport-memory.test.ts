// The association over the in-memory transport pair (lib/transport/memory.ts): handshake,
// packet-size negotiation, fragmentation and reassembly with 1-byte delivery, SHUTDOWN,
// a peer leaving mid-handshake, timeouts, backpressure, and fd-carrying messages refused
// on a transport that cannot carry fds. No sockets: the bytes never leave the process.
import { describe, expect, test } from "bun:test";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { AGAIN, READABLE, WRITABLE } from "../lib/transport/types.ts";
import { memoryPair, type MemoryPairOptions, type MemoryTransport } from "../lib/transport/memory.ts";
import type { ConnectionOptions } from "../lib/assoc/options.ts";
import { rejectionStatus } from "./helpers/status.ts";
import { hex, toHex } from "./helpers/raw.ts";
import { testProtocol } from "./fixtures/protocol.ts";

/** Two connections over a memory pair, established. */
async function memConnections(opts: MemoryPairOptions = {}, ao: ConnectionOptions = {}, bo: ConnectionOptions = ao) {
  const [ta, tb] = memoryPair(opts);
  const a = new Connection(testProtocol, ao);
  const b = new Connection(testProtocol, bo);
  a.setTransport(ConnectionMode.PAIR, ta);
  b.setTransport(ConnectionMode.PAIR, tb);
  await Promise.all([a.connect(), b.accept()]);
  return { a, b, ta, tb };
}

/** Everything `t` can read now (the raw side of a test). */
function drain(t: MemoryTransport): Uint8Array {
  const out: number[] = [];
  const buf = new Uint8Array(4096);
  for (;;) {
    const r = t.read(buf, 0, buf.length, null, 0);
    if (r <= 0) break;
    out.push(...buf.subarray(0, r));
  }
  return Uint8Array.from(out);
}

/** Wait until `t` has `n` bytes readable (delivery is asynchronous), then read them. */
async function readBytes(t: MemoryTransport, n: number): Promise<Uint8Array> {
  const got: number[] = [];
  const buf = new Uint8Array(n);
  while (got.length < n) {
    const r = t.read(buf, 0, n - got.length, null, 0);
    if (r > 0) got.push(...buf.subarray(0, r));
    else if (r === AGAIN) await new Promise<void>((resolve) => (t.start(() => resolve()), t.arm(READABLE)));
    else throw new Error(`read ${r} after ${got.length} bytes`);
  }
  return Uint8Array.from(got);
}

describe("memory transport itself", () => {
  test("bytes written on one end are read on the other; EOF after close; EPIPE writing to a closed peer", async () => {
    const [a, b] = memoryPair();
    const w = a.write(new Uint8Array([1, 2, 3, 4]), 1, 3, null, 0);
    expect(w).toBe(3);
    expect(b.inputPending()).toBe(true);
    expect([...(await readBytes(b, 3))]).toEqual([2, 3, 4]);
    expect(b.read(new Uint8Array(4), 0, 4, null, 0)).toBe(AGAIN);
    a.close();
    expect(b.read(new Uint8Array(4), 0, 4, null, 0)).toBe(0);
    expect(b.write(new Uint8Array(1), 0, 1, null, 0)).toBe(-32);
    b.close();
    expect(b.caps).toEqual({ fds: false, replyPoll: false });
    expect(b.waitReadable(1000)).toBe(false);
  });

  test("readiness arrives on a later microtask, never inside arm() or write()", async () => {
    const [a, b] = memoryPair();
    const seen: number[] = [];
    b.start((ev) => seen.push(ev));
    b.arm(READABLE);
    a.write(new Uint8Array([9]), 0, 1, null, 0);
    expect(seen).toEqual([]); // not re-entrant
    await Promise.resolve();
    expect(seen).toEqual([READABLE]);
    a.write(new Uint8Array([9]), 0, 1, null, 0);
    await Promise.resolve();
    expect(seen).toEqual([READABLE]); // one-shot: not armed again
    a.close();
    b.close();
  });

  test("capacity: write takes what fits, AGAIN when full, WRITABLE once the reader drains", async () => {
    const [a, b] = memoryPair({ capacity: 10 });
    expect(a.write(new Uint8Array(16), 0, 16, null, 0)).toBe(10);
    expect(a.write(new Uint8Array(16), 0, 16, null, 0)).toBe(AGAIN);
    let fired = 0;
    a.start((ev) => (fired |= ev));
    a.arm(WRITABLE);
    await Promise.resolve();
    expect(fired).toBe(0);
    expect(b.read(new Uint8Array(4), 0, 4, null, 0)).toBe(4);
    await Promise.resolve();
    expect(fired).toBe(WRITABLE);
    expect(a.write(new Uint8Array(16), 0, 16, null, 0)).toBe(4);
    a.close();
    b.close();
  });

  test("chunking: a write arrives in pieces of at most `chunk` bytes, over several turns, in order", async () => {
    const [a, b] = memoryPair({ chunk: 3 });
    const src = Uint8Array.from({ length: 50 }, (_, i) => i);
    let off = 0;
    while (off < src.length) off += a.write(src, off, src.length - off, null, 0);
    expect(b.read(new Uint8Array(64), 0, 64, null, 0)).toBe(AGAIN); // nothing visible in the same turn
    const got = await readBytes(b, 50);
    expect([...got]).toEqual([...src]);
    a.close();
    b.close();
  });
});

describe("association over a memory pair", () => {
  test("handshake: both ends established, the token is this process's own, packet size negotiated to the smaller", async () => {
    const { a, b } = await memConnections({}, { packetSize: 4096 }, { packetSize: 512 });
    expect(a.established && b.established).toBe(true);
    expect(a.packetSize).toBe(512);
    expect(b.packetSize).toBe(512);
    expect(a.peerToken).toEqual({ type: "local", euid: process.geteuid!(), egid: process.getegid!(), pid: process.pid });
    await a.send({ tag: "FOO", data: { a: 1, b: 2, s: "hi" } });
    const m = await b.recv();
    expect(m.name).toBe("FOO");
    expect(m.data).toEqual({ a: 1, b: 2, s: "hi" });
    await a.close();
    await b.close();
  });

  test("a configured token is what the association reports", async () => {
    const token = { type: "address" as const, address: "192.0.2.1", port: 4000, euid: -1 as const, egid: -1 as const, pid: -1 as const };
    const { a, b } = await memConnections({ token });
    expect(a.peerToken).toEqual(token);
    await a.close();
    await b.close();
  });

  test("greeting and fragments on the wire are lwmsg's bytes (§3.2, §3.3), delivered one byte per turn", async () => {
    const [ta, tb] = memoryPair({ chunk: 1 });
    const c = new Connection(testProtocol);
    c.setTransport(ConnectionMode.PAIR, ta);
    const done = c.accept();
    let off = 0;
    const connect = hex("00000013 02 03 00 00000020 0000000000000000"); // packet size 32
    while (off < connect.length) off += tb.write(connect, off, connect.length - off, null, 0);
    await done;
    expect(toHex(await readBytes(tb, 19))).toBe("00000013030300" + "00000020" + "0000000000000000");
    await c.send({ tag: "FOO", data: { a: 1, b: 2, s: "abcdefghijklmnopqrstuvwxyz" }, cookie: 0x1234, status: 0 });
    const hdr = (len: number, pf: number) => `${len.toString(16).padStart(8, "0")}01${pf.toString(16).padStart(2, "0")}00000000001234 0001`;
    const payload = "00000001" + "00000002" + "ff" + "0000001a" + toHex(new TextEncoder().encode("abcdefghijklmnopqrstuvwxyz"));
    const expected = (hdr(32, 1) + payload.slice(0, 34) + hdr(32, 0) + payload.slice(34, 68) + hdr(20, 2) + payload.slice(68)).replace(/ /g, "");
    expect(toHex(await readBytes(tb, expected.length / 2))).toBe(expected);
    c.destroy();
    tb.close();
  });

  test("fragmentation and reassembly: 1-byte delivery, 24-byte packets, messages of many fragments both ways", async () => {
    const { a, b } = await memConnections({ chunk: 1, seed: 7 }, { packetSize: 24 });
    expect(a.packetSize).toBe(24);
    const s = "x".repeat(100) + "ünïcödé";
    const sends = (async () => {
      for (let i = 0; i < 5; i++) await a.send({ tag: "FOO", data: { a: i, b: i * 2, s }, cookie: i });
    })();
    for (let i = 0; i < 5; i++) {
      const m = await b.recv();
      expect(m.data).toEqual({ a: i, b: i * 2, s });
      expect(m.cookie).toBe(i);
    }
    await sends;
    const size = 333;
    const data = Uint8Array.from({ length: size }, (_, i) => (i * 7) & 255);
    await b.send({ tag: "BLOB", data: { size, data } });
    const m = await a.recv();
    expect(m.data.size).toBe(size);
    expect([...m.data.data]).toEqual([...data]);
    await a.close();
    await b.close();
  });

  test("random pieces of up to 5 bytes, many messages in flight: every one arrives intact and in order", async () => {
    const { a, b } = await memConnections({ chunk: 5, seed: 12345 }, { packetSize: 64 });
    const n = 200;
    for (let i = 0; i < n; i++) void a.send({ tag: "FOO", data: { a: i, b: n - i, s: "m".repeat(i % 90) } });
    for (let i = 0; i < n; i++) {
      const m = await b.recv();
      expect(m.data).toEqual({ a: i, b: n - i, s: "m".repeat(i % 90) });
    }
    await a.close();
    await b.close();
  });

  test("close sends SHUTDOWN: the peer's recv gets PEER_CLOSE; reset gives PEER_RESET", async () => {
    const x = await memConnections();
    await x.a.close();
    expect(await rejectionStatus(x.b.recv())).toBe(Status.PEER_CLOSE);
    await x.b.close();
    expect(x.ta.isClosed && x.tb.isClosed).toBe(true);

    const y = await memConnections({ chunk: 2 });
    await y.a.reset();
    expect(await rejectionStatus(y.b.recv())).toBe(Status.PEER_RESET);
    await y.b.close();
  });

  test("a peer that closes without a SHUTDOWN (EOF) → PEER_CLOSE on recv", async () => {
    const x = await memConnections();
    x.ta.close(); // the transport alone: no goodbye
    expect(await rejectionStatus(x.b.recv())).toBe(Status.PEER_CLOSE);
    x.a.destroy();
    await x.b.close();
  });

  test("peer closing mid-handshake: after reading CONNECT, before ACCEPT → connect() rejects PEER_CLOSE", async () => {
    const [ta, tb] = memoryPair({ chunk: 4 });
    const c = new Connection(testProtocol);
    c.setTransport(ConnectionMode.PAIR, ta);
    const p = c.connect();
    const greeting = await readBytes(tb, 19);
    expect(toHex(greeting.subarray(0, 7))).toBe("00000013020300"); // CONNECT
    tb.close();
    expect(await rejectionStatus(p)).toBe(Status.PEER_CLOSE);
    expect(c.established).toBe(false);
    await c.close();
  });

  test("peer closing mid-handshake on the accepting side: half a CONNECT, then EOF → accept() rejects PEER_CLOSE", async () => {
    const [ta, tb] = memoryPair();
    const c = new Connection(testProtocol);
    c.setTransport(ConnectionMode.PAIR, ta);
    const p = c.accept();
    tb.write(hex("00000013 02 03 00 0000"), 0, 9, null, 0);
    tb.close();
    expect(await rejectionStatus(p)).toBe(Status.PEER_CLOSE);
    await c.close();
  });

  test("establish timeout: a peer that never answers → TIMEOUT", async () => {
    const [ta, tb] = memoryPair();
    const c = new Connection(testProtocol, { timeouts: { establish: 50 } });
    c.setTransport(ConnectionMode.PAIR, ta);
    expect(await rejectionStatus(c.connect())).toBe(Status.TIMEOUT);
    await c.close();
    tb.close();
  });

  test("message timeout: recv with nothing coming → TIMEOUT, then the connection is in error", async () => {
    const { a, b } = await memConnections({}, { timeouts: { message: 50 } }, {});
    expect(await rejectionStatus(a.recv())).toBe(Status.TIMEOUT);
    expect(await rejectionStatus(a.send({ tag: "EMPTY" }))).toBe(Status.INVALID_STATE);
    await a.close();
    await b.close();
  });

  test("backpressure: with the reader idle, send() waits at sendQueueLimit and resumes as the reader drains", async () => {
    const { a, b, ta } = await memConnections({ capacity: 8 * 1024 }, { sendQueueLimit: 16 * 1024 });
    const handshakeBytes = ta.bytesWritten;
    const size = 4096;
    const data = new Uint8Array(size).fill(0x5a);
    const pending: Promise<void>[] = [];
    let resolved = 0;
    while (!a.sendBlocked) {
      const p = a.send({ tag: "BLOB", data: { size, data } });
      void p.then(() => resolved++);
      pending.push(p);
      expect(pending.length).toBeLessThan(100); // the limit must bite long before this
    }
    // Let every ready callback and queued flush run: nothing can move while b does not read.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(a.sendBlocked).toBe(true);
    expect(resolved).toBeLessThan(pending.length); // the last send is still waiting
    const writtenWhileBlocked = ta.bytesWritten - handshakeBytes;
    expect(writtenWhileBlocked).toBeLessThanOrEqual(8 * 1024); // the transport took only its capacity
    for (let i = 0; i < pending.length; i++) {
      const m = await b.recv();
      expect(m.data.size).toBe(size);
    }
    await Promise.all(pending);
    expect(resolved).toBe(pending.length);
    expect(a.sendBlocked as boolean).toBe(false);
    await a.close();
    await b.close();
  });

  test("backpressure with a message timeout: a reader that never reads fails the waiting send with TIMEOUT", async () => {
    const { a, b } = await memConnections({ capacity: 1024 }, { sendQueueLimit: 4096, timeouts: { message: 50 } }, {});
    const data = new Uint8Array(2048);
    let status = -1;
    for (let i = 0; i < 20 && status === -1; i++) {
      try {
        await a.send({ tag: "BLOB", data: { size: data.length, data } });
      } catch (e) {
        status = (e as LwMsgError).status;
      }
    }
    expect(status).toBe(Status.TIMEOUT);
    a.destroy(); // close() would try to write its SHUTDOWN into the full pipe until the goodbye deadline
    await b.close();
  });

  test("a message type with fd fields → INVALID_PARAMETER naming the message; nothing sent; the connection stays usable", async () => {
    const { a, b, ta } = await memConnections();
    await a.send({ tag: "EMPTY", cookie: 1 });
    await new Promise((r) => setImmediate(r)); // the turn's flush
    const before = ta.bytesWritten;
    let err: LwMsgError | null = null;
    try {
      await a.send({ tag: "FD", data: { fd: 0 } });
    } catch (e) {
      err = e as LwMsgError;
    }
    expect(err).toBeInstanceOf(LwMsgError);
    expect(err!.status).toBe(Status.INVALID_PARAMETER);
    expect(err!.message).toContain("FD");
    expect(err!.message).toContain("memory");
    expect(err!.message).toContain("nothing was sent");
    expect(await rejectionStatus(a.send({ tag: "TWO_FDS", data: { a: 0, b: 1 } }))).toBe(Status.INVALID_PARAMETER);
    await new Promise((r) => setImmediate(r));
    expect(ta.bytesWritten).toBe(before);
    expect(a.established).toBe(true);
    await a.send({ tag: "FOO", data: { a: 7, b: 8, s: "after" }, cookie: 2 });
    const m1 = await b.recv();
    expect(m1.name).toBe("EMPTY");
    const m2 = await b.recv();
    expect(m2.name).toBe("FOO"); // the refused messages never reached the wire
    expect(m2.data.s).toBe("after");
    await a.close();
    await b.close();
  });

  test("transact both ways with 1-byte delivery (request/reply turn-taking over asynchronous readiness)", async () => {
    const { a, b } = await memConnections({ chunk: 1, seed: 3 });
    const server = (async () => {
      for (let i = 0; i < 10; i++) {
        const m = await b.recv();
        await b.send({ tag: "FOO_REPL", data: { size: m.data.size, data: Array.from({ length: m.data.size }, (_, k) => k - 3) } });
      }
    })();
    for (let i = 0; i < 10; i++) {
      const r = await a.transact({ tag: "FOO_REQ", data: { size: i } });
      expect(r.data.data).toEqual(Array.from({ length: i }, (_, k) => k - 3));
    }
    await server;
    await a.close();
    await b.close();
  });
});
