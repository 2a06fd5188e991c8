// Connection: the test-assoc.c cases that apply to bare connections (reference §9.2),
// wire vectors from §3, fd passing, limits and failure statuses. Real sockets only.
import { describe, expect, test } from "bun:test";
import { statSync, existsSync, openSync, readFileSync, readlinkSync, writeFileSync, closeSync } from "node:fs";
import { AssocState, Connection, ConnectionMode } from "../lib/connection.ts";
import { Status, LwMsgError } from "../lib/status.ts";
import { socketPair, closeFd, listenPath, fdIsOpen, fdIsCloexec } from "../lib/native/socket.ts";
import { MessageFlags } from "../lib/wire.ts";
import { Poller } from "../lib/native/poller.ts";
import { Session } from "../lib/session.ts";
import { Handle, HandleLocation } from "../lib/handle.ts";
import { describeFd, fdLeakCheck, openFdCount, openFds } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { useChildren } from "./helpers/child.ts";
import { rejectionStatus, throwStatus } from "./helpers/status.ts";
import { hex, rawPeer, toHex } from "./helpers/raw.ts";
import { testProtocol } from "./fixtures/protocol.ts";
import { Lw } from "../lib/lw.ts";
import { native } from "../lib/native/ffi.ts";
import type { Protocol } from "../lib/protocol.ts";

// The poller (epoll thread, doorbell) lives for the whole process: start it before the snapshot.
fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });
const tmp = useTempDir("conn-");
const child = new URL("./fixtures/conn-child.ts", import.meta.url).pathname;
const spawn = useChildren(); // the fixture's "silent" and "partial" modes sleep until killed

/** A Connection on one end of a socketpair, a raw byte peer on the other. */
async function rawPair(opts = {}) {
  const [a, b] = socketPair();
  const c = new Connection(testProtocol, opts);
  c.setFd(ConnectionMode.PAIR, a);
  const raw = await rawPeer(b);
  return { c, raw };
}

/** As rawPair, with the Connection already accepted (the raw side sent CONNECT with packet size 8192). */
async function acceptedRawPair(opts = {}) {
  const p = await rawPair(opts);
  const done = p.c.accept();
  p.raw.write(CONNECT_8192("0000000000000000"));
  await done;
  return p;
}

const CONNECT_8192 = (cookie: string) => hex(`00000013 02 03 00 00002000 ${cookie}`);

describe("handshake", () => {
  test("empty: pair connects and closes", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    expect(a.state).toBe(AssocState.IDLE);
    expect(b.state).toBe(AssocState.IDLE);
    await a.close();
    await b.close();
    expect(a.state).toBe(AssocState.CLOSED);
  });

  test("CONNECT greeting bytes are exactly lwmsg's (19 bytes, SINGLE, packet size, cookie)", async () => {
    const { c, raw } = await rawPair({ packetSize: 8192 });
    c.connectCookie = hex("0102030405060708");
    const done = c.connect();
    const got = await raw.waitBytes(19);
    expect(toHex(got.subarray(0, 19))).toBe("000000130203000000200001020304050607 08".replace(/ /g, ""));
    // ACCEPT with a smaller packet size: the effective size is the minimum.
    raw.write(hex("00000013 03 03 00 00000200 0000000000000000"));
    await done;
    expect(c.packetSize).toBe(512);
    expect(c.state).toBe(AssocState.IDLE);
    c.destroy();
    raw.close();
  });

  test("by default the proposal is maxMessageSize + 15 (one packet per message between bun-lwmsg ends); an lwmsg peer's 8192 wins the minimum", async () => {
    for (const [opts, proposed] of [[{}, "0100000f"], [{ maxMessageSize: 1000 }, "00002000"], [{ maxMessageSize: 100_000 }, "000186af"]] as const) {
      const { c, raw } = await rawPair(opts);
      const done = c.connect();
      const got = await raw.waitBytes(19);
      expect(toHex(got.subarray(7, 11))).toBe(proposed);
      raw.write(hex("00000013 03 03 00 00002000 0000000000000000"));
      await done;
      expect(c.packetSize).toBe(8192);
      c.destroy();
      raw.close();
    }
    const [a, b] = await Connection.pair(testProtocol);
    expect(a.packetSize).toBe(16 * 1024 * 1024 + 15);
    expect(b.packetSize).toBe(16 * 1024 * 1024 + 15);
    a.destroy();
    b.destroy();
  });

  test("ACCEPT answers with the already-minimised size and a zero cookie (bare association)", async () => {
    const { c, raw } = await rawPair();
    const done = c.accept();
    raw.write(CONNECT_8192("1111111111111111").map((x, i) => (i === 10 ? 0x40 : i === 9 ? 0 : x)));
    await done;
    const got = await raw.waitBytes(19);
    expect(toHex(got.subarray(0, 19))).toBe("00000013030300" + "00000040" + "0000000000000000");
    expect(c.packetSize).toBe(64);
    expect(toHex(c.peerCookie!)).toBe("1111111111111111");
    c.destroy();
    raw.close();
  });

  test("peer packet size below 20 → MALFORMED", async () => {
    const { c, raw } = await rawPair();
    const done = c.accept();
    raw.write(hex("00000013 02 03 00 00000013 0000000000000000"));
    expect(await rejectionStatus(done)).toBe(Status.MALFORMED);
    expect(c.state).toBe(AssocState.ERROR);
    raw.close();
    await c.close();
  });

  test("wrong greeting type or length → MALFORMED", async () => {
    const { c, raw } = await rawPair();
    const done = c.connect();
    raw.write(hex("00000013 02 03 00 00002000 0000000000000000")); // CONNECT where ACCEPT expected
    expect(await rejectionStatus(done)).toBe(Status.MALFORMED);
    raw.close();
    await c.close();
  });

  test("connect timeout on a pair whose peer never answers → TIMEOUT; close still succeeds", async () => {
    const [a, b] = socketPair();
    const c = new Connection(testProtocol, { timeouts: { establish: 200 } });
    c.setFd(ConnectionMode.PAIR, a);
    const t0 = performance.now();
    expect(await rejectionStatus(c.connect())).toBe(Status.TIMEOUT);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
    await c.close();
    expect(c.state).toBe(AssocState.CLOSED);
    closeFd(b);
  });

  test("connect timeout on an endpoint that never greets → TIMEOUT", async () => {
    const path = tmp.join("silent.sock");
    const lfd = listenPath(path, 8, 0o600); // never accepted: the kernel completes connect, nobody answers
    const c = new Connection(testProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    c.setTimeout("establish", 200);
    expect(await rejectionStatus(c.connect())).toBe(Status.TIMEOUT);
    await c.close();
    closeFd(lfd);
  });

  test("accept timeout: a client process that connects and never greets → TIMEOUT; the listener serves the next client", async () => {
    const path = tmp.join("mute.sock");
    const listener = await Connection.listen(testProtocol, path, { timeouts: { establish: 200 } });
    const mute = spawn([process.execPath, child, "silent", path]);
    expect(await mute.line()).toContain("ready");
    expect(await rejectionStatus(listener.accept())).toBe(Status.TIMEOUT);
    const c = new Connection(testProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    const [, server] = await Promise.all([c.connect(), listener.accept()]);
    expect(server.state).toBe(AssocState.IDLE);
    await mute.kill();
    await c.close();
    await server.close();
    await listener.close();
  });

  test("connect errors map like lwmsg: ENOENT, ECONNREFUSED, path too long", async () => {
    const c1 = new Connection(testProtocol);
    c1.setEndpoint(ConnectionMode.LOCAL, tmp.join("nope.sock"));
    expect(await rejectionStatus(c1.connect())).toBe(Status.FILE_NOT_FOUND);
    const dead = tmp.join("dead.sock");
    closeFd(listenPath(dead, 8, 0o600));
    const c2 = new Connection(testProtocol);
    c2.setEndpoint(ConnectionMode.LOCAL, dead);
    expect(await rejectionStatus(c2.connect())).toBe(Status.CONNECTION_REFUSED);
    const c3 = new Connection(testProtocol);
    expect(throwStatus(() => c3.setEndpoint(ConnectionMode.LOCAL, "/tmp/" + "x".repeat(120)))).toBe(Status.INVALID_PARAMETER);
  });

  test("configuration errors: setPacketSize once established, double setFd, idle timeout, bad arguments", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    expect(throwStatus(() => a.setPacketSize(1024))).toBe(Status.INVALID_STATE);
    expect(throwStatus(() => a.setFd(ConnectionMode.LOCAL, 5))).toBe(Status.INVALID_STATE);
    expect(throwStatus(() => a.setTimeout("idle", 10))).toBe(Status.UNSUPPORTED);
    expect(throwStatus(() => a.setTimeout("message", -1))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Connection(testProtocol, { packetSize: 19 }))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Connection(testProtocol).setFd(ConnectionMode.LOCAL, -1))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Connection({} as any))).toBe(Status.INVALID_PARAMETER);
    expect(await rejectionStatus(new Connection(testProtocol).connect())).toBe(Status.INVALID_STATE);
    expect(await rejectionStatus(new Connection(testProtocol).send({ tag: "EMPTY" }))).toBe(Status.INVALID_STATE);
    await a.close();
    await b.close();
  });

  test("auth token: PAIR reports this process; LOCAL reports the kernel's view of a real child", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    expect(a.peerToken).toEqual({ type: "local", euid: process.getuid!(), egid: process.getgid!(), pid: process.pid });
    await a.close();
    await b.close();

    const path = tmp.join("token.sock");
    const listener = await Connection.listen(testProtocol, path, { mode: 0o600 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const proc = Bun.spawn([process.execPath, child, "client", path], { stdout: "pipe", stderr: "inherit" });
    const server = await listener.accept();
    expect(server.peerToken!.pid).toBe(proc.pid);
    expect(server.peerToken!.euid).toBe(process.getuid!());
    const m = await server.recv();
    expect(m.name).toBe("FOO");
    expect(m.data).toEqual({ a: 1, b: 2, s: "from child" });
    expect(await rejectionStatus(server.recv())).toBe(Status.PEER_CLOSE);
    const out = JSON.parse((await new Response(proc.stdout).text()).trim());
    expect(out.token.pid).toBe(process.pid);
    expect(await proc.exited).toBe(0);
    await server.close();
    await listener.close();
    expect(existsSync(path)).toBe(false);
  });
});

describe("messages", () => {
  for (const packetSize of [8192, 512, 20]) {
    test(`foo send/recv with ${packetSize}-byte packets`, async () => {
      const [a, b] = await Connection.pair(testProtocol, { packetSize });
      const data = { a: 42, b: 0xffffffff, s: "foo".repeat(200) };
      await a.send({ tag: "FOO", data, cookie: 7, status: 3, flags: MessageFlags.REPLY });
      const m = await b.recv();
      expect(m.tag).toBe(1);
      expect(m.name).toBe("FOO");
      expect(m.data).toEqual(data);
      expect(m.cookie).toBe(7);
      expect(m.status).toBe(3);
      expect(m.flags).toBe(MessageFlags.REPLY);
      await a.close();
      await b.close();
    });
  }

  test("MESSAGE header and fragments on the wire match §3.3 (header repeated, FIRST/0/LAST)", async () => {
    const { c, raw } = await rawPair();
    const done = c.accept();
    raw.write(hex("00000013 02 03 00 00000020 0000000000000000")); // packet size 32 → 17 payload bytes per fragment
    await done;
    await raw.waitBytes(19);
    await c.send({ tag: "FOO", data: { a: 1, b: 2, s: "abcdefghijklmnopqrstuvwxyz" }, cookie: 0x1234, status: 0 });
    // payload: 00000001 00000002 FF 0000001a "abc…z" = 4+4+1+4+26 = 39 bytes → 17 + 17 + 5
    const hdr = (len: number, pf: number) => `${len.toString(16).padStart(8, "0")}01${pf.toString(16).padStart(2, "0")}00000000001234 0001`;
    const payload = "00000001" + "00000002" + "ff" + "0000001a" + toHex(new TextEncoder().encode("abcdefghijklmnopqrstuvwxyz"));
    const expected = (hdr(32, 1) + payload.slice(0, 34) + hdr(32, 0) + payload.slice(34, 68) + hdr(20, 2) + payload.slice(68)).replace(/ /g, "");
    const got = await raw.waitBytes(19 + expected.length / 2);
    expect(toHex(got.subarray(19))).toBe(expected);
    c.destroy();
    raw.close();
  });

  test("a message with no payload is a single 15-byte packet; tag -1 carries flags/status verbatim", async () => {
    const { c, raw } = await acceptedRawPair();
    await raw.waitBytes(19);
    await c.send({ tag: "EMPTY", cookie: 1 });
    await c.send({ tag: -1, flags: MessageFlags.REPLY | MessageFlags.SYNTHETIC, status: Status.MALFORMED, cookie: 2 });
    const got = await raw.waitBytes(19 + 30);
    expect(toHex(got.subarray(19))).toBe("0000000f010300000000000001" + "0000" + "0000000f010306000000040002ffff");
    c.destroy();
    raw.close();
  });

  test("malformed: sending an unknown tag → MALFORMED, connection stays usable; hand-made SYNTHETIC reply arrives as such", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    expect(await rejectionStatus(a.send({ tag: -42 }))).toBe(Status.MALFORMED);
    expect(await rejectionStatus(a.send({ tag: "NOPE" }))).toBe(Status.MALFORMED);
    expect(a.state).toBe(AssocState.IDLE);
    await a.send({ tag: -1, flags: MessageFlags.REPLY | MessageFlags.SYNTHETIC, status: Status.MALFORMED });
    const m = await b.recv();
    expect(m.synthetic).toBe(true);
    expect(m.flags).toBe(MessageFlags.REPLY | MessageFlags.SYNTHETIC);
    expect(m.status).toBe(Status.MALFORMED);
    expect(m.tag).toBe(-1);
    await a.close();
    await b.close();
  });

  test("encode errors leave nothing queued: OVERFLOW on a too-large integer, connection usable", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    expect(await rejectionStatus(a.send({ tag: "FOO", data: { a: 2 ** 33, b: 0, s: "x" } }))).toBe(Status.OVERFLOW);
    await a.send({ tag: "FOO", data: { a: 1, b: 1, s: "ok" } });
    expect((await b.recv()).data.s).toBe("ok");
    await a.close();
    await b.close();
  });

  test("undecodable payload → synthetic message with the decode status; connection stays usable", async () => {
    const { c, raw } = await acceptedRawPair();
    // TYPED (tag 5) with enum value 9 (not declared) → MALFORMED synthetic
    raw.write(hex("00000010 01 03 00 00000000 0009 0005 09"));
    const m = await c.recv();
    expect(m.synthetic).toBe(true);
    expect(m.status).toBe(Status.MALFORMED);
    expect(m.tag).toBe(-1);
    expect(m.cookie).toBe(9);
    // unknown tag → recv rejects MALFORMED, still usable
    raw.write(hex("0000000f 01 03 00 00000000 0000 0063"));
    expect(await rejectionStatus(c.recv())).toBe(Status.MALFORMED);
    raw.write(hex("00000010 01 03 00 00000000 0000 0005 01"));
    const ok = await c.recv();
    expect(ok.data).toEqual({ mode: 1 });
    c.destroy();
    raw.close();
  });

  test("malformed packets: longer than negotiated, short MESSAGE, stray CONNECT, continuation without FIRST", async () => {
    const cases = ["00003000 01 03 00", "0000000a 01 03 00 00000000", "00000013 02 03 00 00002000 0000000000000000", "00000010 01 02 00 00000000 0000 0005 01"];
    for (const bytes of cases) {
      const { c, raw } = await acceptedRawPair();
      raw.write(hex(bytes));
      expect(await rejectionStatus(c.recv())).toBe(Status.MALFORMED);
      expect(c.state).toBe(AssocState.ERROR);
      await c.close();
      raw.close();
    }
  });

  test("truncated payload inside a complete message → PEER_CLOSE (lwmsg: out of fragments)", async () => {
    const { c, raw } = await acceptedRawPair();
    raw.write(hex("00000012 01 03 00 00000000 0000 0001 000000")); // FOO needs 9+ bytes
    expect(await rejectionStatus(c.recv())).toBe(Status.PEER_CLOSE);
    await c.close();
    raw.close();
  });

  test("SHUTDOWN: close → PEER_CLOSE, reset → PEER_RESET, other status → PEER_ABORT", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    await a.send({ tag: "FOO", data: { a: 1, b: 2, s: "last words" } });
    await a.close();
    expect((await b.recv()).data.s).toBe("last words"); // queued messages first
    expect(await rejectionStatus(b.recv())).toBe(Status.PEER_CLOSE);
    expect(b.state).toBe(AssocState.ERROR);
    await b.close();

    const [c, d] = await Connection.pair(testProtocol);
    await c.reset();
    expect(c.state).toBe(AssocState.NOT_ESTABLISHED);
    expect(await rejectionStatus(d.recv())).toBe(Status.PEER_RESET);
    await d.close();
    await c.close();

    const { c: e, raw } = await acceptedRawPair();
    raw.write(hex("0000000a 05 03 00000001"));
    expect(await rejectionStatus(e.recv())).toBe(Status.PEER_ABORT);
    await e.close();
    raw.close();
  });

  test("closing wire bytes: SHUTDOWN(19) after queued messages", async () => {
    const { c, raw } = await acceptedRawPair();
    await c.send({ tag: "EMPTY" });
    await c.close();
    const got = await raw.waitBytes(19 + 15 + 10);
    expect(toHex(got.subarray(34))).toBe("0000000a050300000013");
    raw.close();
  });

  test("recv message timeout → TIMEOUT; a second concurrent recv → BUSY", async () => {
    const [a, b] = await Connection.pair(testProtocol, { timeouts: { message: 100 } });
    const p = b.recv();
    expect(await rejectionStatus(b.recv())).toBe(Status.BUSY);
    expect(await rejectionStatus(p)).toBe(Status.TIMEOUT);
    await a.close();
    await b.close();
  });

  test("a 64 MiB message crosses intact (fragmented at the default packet size)", async () => {
    const size = 64 * 1024 * 1024;
    const [a, b] = await Connection.pair(testProtocol, { maxMessageSize: size + 1024 });
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 0xff;
    data[size - 1] = 0x5a;
    const [, m] = await Promise.all([a.send({ tag: "BLOB", data: { size, data } }), b.recv()]);
    expect(m.data.size).toBe(size);
    expect(m.data.data.length).toBe(size);
    expect(m.data.data[size - 1]).toBe(0x5a);
    expect(Buffer.compare(Buffer.from(m.data.data.buffer, m.data.data.byteOffset, size), Buffer.from(data.buffer))).toBe(0);
    await a.close();
    await b.close();
  }, 60_000);

  test("a message over maxMessageSize: send → OVERFLOW (usable); incoming → OVERFLOW", async () => {
    const [a, b] = await Connection.pair(testProtocol, { maxMessageSize: 4096 });
    expect(await rejectionStatus(a.send({ tag: "BLOB", data: { size: 5000, data: new Uint8Array(5000) } }))).toBe(Status.OVERFLOW);
    await a.send({ tag: "BLOB", data: { size: 10, data: new Uint8Array(10) } });
    expect((await b.recv()).data.size).toBe(10);
    await a.close();
    await b.close();

    // the receiver's own limit is lower than what the sender allows
    const [fc, fd] = socketPair();
    const c = new Connection(testProtocol, { maxMessageSize: 1 << 20 });
    const d = new Connection(testProtocol, { maxMessageSize: 4096 });
    c.setFd(ConnectionMode.PAIR, fc);
    d.setFd(ConnectionMode.PAIR, fd);
    await Promise.all([c.connect(), d.accept()]);
    await c.send({ tag: "BLOB", data: { size: 100_000, data: new Uint8Array(100_000) } });
    expect(await rejectionStatus(d.recv())).toBe(Status.OVERFLOW);
    await c.close();
    await d.close();
  });

  test("a loop of large sends reuses the outgoing buffer (no OVERFLOW from growth)", async () => {
    const size = 4 * 1024 * 1024;
    const [a, b] = await Connection.pair(testProtocol, { maxMessageSize: size + 1024 });
    const data = new Uint8Array(size);
    const recvd = (async () => {
      for (let i = 0; i < 10; i++) expect((await b.recv()).data.size).toBe(size);
    })();
    for (let i = 0; i < 10; i++) await a.send({ tag: "BLOB", data: { size, data } });
    await recvd;
    expect(a._diag.outBuffer).toBeLessThanOrEqual(2 * (size + 1024 * 1024));
    await a.close();
    await b.close();
  }, 30_000);

  test("backpressure: a peer that stops reading makes send() wait instead of growing memory", async () => {
    const [a, b] = await Connection.pair(testProtocol, { sendQueueLimit: 256 * 1024 });
    const data = new Uint8Array(64 * 1024);
    let sent = 0;
    let stalled = false;
    const loop = (async () => {
      for (let i = 0; i < 200; i++) {
        await a.send({ tag: "BLOB", data: { size: data.length, data } });
        sent++;
      }
    })();
    await Bun.sleep(200);
    stalled = sent < 200;
    expect(stalled).toBe(true); // socket buffer + 256 KiB queue hold far less than 12.5 MiB
    expect(a._diag.outBuffer).toBeLessThanOrEqual(1024 * 1024);
    for (let i = 0; i < 200; i++) await b.recv();
    await loop;
    expect(sent).toBe(200);
    await a.close();
    await b.close();
  });

  test("send() takes the message at once, even while waiting for the queue to drain: fds closed right after send() still arrive as the files they were", async () => {
    const [a, b] = await Connection.pair(testProtocol, { sendQueueLimit: 64 * 1024 });
    const data = new Uint8Array(64 * 1024);
    const pending: Promise<void>[] = [];
    while (!a.sendBlocked) pending.push(a.send({ tag: "BLOB", data: { size: data.length, data } }));
    const files = [0, 1, 2].map((i) => tmp.join(`taken-${i}`));
    const numbers: number[] = [];
    for (const [i, f] of files.entries()) {
      writeFileSync(f, `file ${i}`);
      const fd = openSync(f, "r");
      numbers.push(fd);
      pending.push(a.send({ tag: "FD", data: { fd } })); // waits: the queue is full
      closeSync(fd); // the number is free again, and the next openSync reuses it
    }
    expect(new Set(numbers).size).toBe(1); // the same number each time: only early duplication keeps them apart
    for (;;) {
      const m = await b.recv();
      if (m.name !== "FD") continue;
      const got: string[] = [readFileSync(`/proc/self/fd/${(m.data as { fd: number }).fd}`, "utf8")];
      m.dispose();
      for (let i = 1; i < 3; i++) {
        const n = await b.recv();
        got.push(readFileSync(`/proc/self/fd/${(n.data as { fd: number }).fd}`, "utf8"));
        n.dispose();
      }
      expect(got).toEqual(["file 0", "file 1", "file 2"]);
      break;
    }
    await Promise.all(pending);
    await a.close();
    await b.close();
  });

  test("the reply poll runs only while no other connection of the process waits for input (it would block them)", async () => {
    const [a1, b1] = await Connection.pair(testProtocol, { replyPollUs: 50 });
    const [a2, b2] = await Connection.pair(testProtocol);
    const roundTrip = async () => {
      const before = (Connection as any).replyPolls as number;
      await a1.send({ tag: "EMPTY" });
      const reply = a1.recv();
      await b1.recv();
      await b1.send({ tag: "EMPTY" });
      await reply;
      return ((Connection as any).replyPolls as number) - before;
    };
    expect(await roundTrip()).toBe(1); // alone: a1 polls after sending
    const parked = b2.recv(); // another connection now waits for input
    expect(await roundTrip()).toBe(0);
    await a2.send({ tag: "EMPTY" });
    await parked;
    expect(await roundTrip()).toBe(1);
    for (const c of [a1, b1, a2, b2]) await c.close();
  });

  test("many messages in one turn leave in few sendmsg calls and all arrive in order", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    const N = 20_000;
    const sends: Promise<void>[] = [];
    for (let i = 0; i < N; i++) sends.push(a.send({ tag: "FOO", data: { a: i, b: N - i, s: "payload-" + i } }));
    await Promise.all(sends);
    for (let i = 0; i < N; i++) {
      const m = await b.recv();
      if (m.data.a !== i) throw new Error(`out of order at ${i}: ${m.data.a}`);
    }
    await a.close();
    await b.close();
  });
});

describe("test-assoc.c shapes", () => {
  for (const packetSize of [8192, 512]) {
    test(`foo_send_recv${packetSize === 512 ? "_fragment" : ""}: {int16 size} → 1024-element flexible int16 array (packet size ${packetSize})`, async () => {
      const [a, b] = await Connection.pair(testProtocol, { packetSize });
      await a.send({ tag: "FOO_REQ", data: { size: 1024 } });
      const req = await b.recv();
      expect(req.data).toEqual({ size: 1024 });
      const data = Array.from({ length: 1024 }, (_, i) => i - 512);
      await b.send({ tag: "FOO_REPL", data: { size: 1024, data } });
      const rep = await a.recv();
      expect(rep.data.size).toBe(1024);
      expect(rep.data.data).toEqual(data);
      await a.close();
      await b.close();
    });
  }

  /** Two ends of a pair, each with its own session handle table (the default assoc session's role). */
  async function handlePair<P extends Protocol<any> = typeof testProtocol>(protocol: P = testProtocol as unknown as P) {
    const [a, b] = await Connection.pair(protocol);
    const noCall = { call: () => Promise.reject(new Error("no calls on a bare association")) };
    const sa = new Session(protocol, "outgoing", noCall);
    const sb = new Session(protocol, "incoming", noCall);
    a.setHandles(sa);
    b.setHandles(sb);
    return { a, b, sa, sb };
  }

  test("handle_enforce_locality_success and handle_ping_pong: A's handle goes out local-for-sender and comes back as A's own", async () => {
    const { a, b, sa } = await handlePair();
    const h = sa.registerHandle("Obj", { name: "state" });
    await a.send({ tag: "HANDLE_LFS", data: { h } });
    const proxy = (await b.recv()).data.h as Handle;
    expect(proxy.location).toBe(HandleLocation.REMOTE);
    await b.send({ tag: "HANDLE_LFR", data: { h: proxy } });
    expect((await a.recv()).data.h).toBe(h);
    await a.send({ tag: "HANDLE", data: { h } });
    expect((await b.recv()).data.h).toBe(proxy); // the same proxy each time
    await a.close();
    await b.close();
  });

  test("handle_enforce_locality_failure: sending one's own handle where local-for-receiver is required → INVALID_HANDLE, connection usable", async () => {
    const { a, b, sb } = await handlePair();
    const own = sb.registerHandle("Obj", 1);
    expect(await rejectionStatus(b.send({ tag: "HANDLE_LFR", data: { h: own } }))).toBe(Status.INVALID_HANDLE);
    expect(b.state).toBe(AssocState.IDLE);
    await b.close();
    expect(await rejectionStatus(a.recv())).toBe(Status.PEER_CLOSE);
    await a.close();
  });

  test("handle_store_state: create a handle, use it twice (string and int arms of a union reply), destroy it (the owner unregisters), then the client unregisters its proxy", async () => {
    const State = Lw.Handle("State", { notNull: true });
    const Yours = Lw.Handle("State", { notNull: true, localForReceiver: true });
    const stateProtocol = Lw.Protocol({
      CREATE: [0, null],
      CREATED: [1, Lw.Struct({ h: State })],
      GET: [2, Lw.Struct({ h: Yours, which: Lw.UInt8() })],
      VALUE: [3, Lw.Struct({ which: Lw.UInt8(), v: Lw.Union("which", { 0: Lw.String({ notNull: true }), 1: Lw.Int32() }) })],
      DESTROY: [4, Lw.Struct({ h: Yours })],
      DESTROYED: [5, null],
    });
    const { a, b, sa, sb } = await handlePair(stateProtocol);
    let cleaned = 0;
    const serve = async () => {
      const m = await b.recv();
      if (m.name === "CREATE") {
        await b.send({ tag: "CREATED", data: { h: sb.registerHandle("State", { s: "hello", i: 42 }, () => cleaned++) } });
      } else if (m.name === "GET") {
        const st = sb.getHandleData((m.data as { h: Handle }).h) as { s: string; i: number };
        const which = (m.data as { which: number }).which;
        await b.send({ tag: "VALUE", data: { which, v: which === 0 ? st.s : st.i } });
      } else if (m.name === "DESTROY") {
        sb.unregisterHandle((m.data as { h: Handle }).h);
        await b.send({ tag: "DESTROYED" });
      } else await b.send({ tag: -1, status: m.status, flags: m.flags }); // synthetic: echo its status
    };
    const ask = async (msg: Parameters<typeof a.send>[0]) => {
      await a.send(msg);
      await serve();
      return a.recv();
    };
    const proxy = (await ask({ tag: "CREATE" })).data.h as Handle;
    expect(proxy.location).toBe(HandleLocation.REMOTE);
    expect((await ask({ tag: "GET", data: { h: proxy, which: 0 } })).data).toEqual({ which: 0, v: "hello" });
    expect((await ask({ tag: "GET", data: { h: proxy, which: 1 } })).data).toEqual({ which: 1, v: 42 });
    expect((await ask({ tag: "DESTROY", data: { h: proxy } })).name).toBe("DESTROYED");
    expect(cleaned).toBe(1);
    // The proxy still exists on the client; the server no longer knows the id.
    const stale = await ask({ tag: "GET", data: { h: proxy, which: 0 } });
    expect([stale.tag, stale.status]).toEqual([-1, Status.INVALID_HANDLE]);
    sa.unregisterHandle(proxy);
    expect(await rejectionStatus(a.send({ tag: "GET", data: { h: proxy, which: 0 } }))).toBe(Status.INVALID_HANDLE);
    expect(sa.handleCount).toBe(0);
    expect(sb.handleCount).toBe(0);
    await a.close();
    await b.close();
  });

  test("a message that fails to decode after a handle leaves no proxy behind (the peer cannot fill the table with undecodable messages)", async () => {
    const hx = Lw.Protocol({ HX: [0, Lw.Struct({ h: Lw.Handle("Obj"), b: Lw.Bool() })] });
    const { a, b, sb } = await handlePair(hx);
    // locality 01 (the sender's own handle: a new proxy here), id 7, then a bool of 5 (MALFORMED)
    const bad = hex("00000015 01 03 00 00000000 0000 0000 01 00000007 05");
    expect(native.lw_send(a.socketFd, bad, bad.length, null, 0)).toBe(bad.length);
    const m = await b.recv();
    expect([m.synthetic, m.status]).toEqual([true, Status.MALFORMED]);
    expect(sb.handleCount).toBe(0);
    // the same id in a good message makes the proxy as usual
    const good = hex("00000015 01 03 00 00000000 0000 0000 01 00000007 01");
    expect(native.lw_send(a.socketFd, good, good.length, null, 0)).toBe(good.length);
    expect(((await b.recv()).data as { h: Handle }).h.id).toBe(7);
    expect(sb.handleCount).toBe(1);
    await a.close();
    await b.close();
  });

  test("handle_null_success: a NULL handle round trip", async () => {
    const { a, b } = await handlePair();
    await a.send({ tag: "HANDLE", data: { h: null } });
    expect((await b.recv()).data.h).toBeNull();
    await a.close();
    await b.close();
  });

  test("handle_error_synthetic_message: an unregistered handle echoed back arrives SYNTHETIC/INVALID_HANDLE; flags and status travel back", async () => {
    const { a, b, sa } = await handlePair();
    const h = sa.registerHandle("Obj", 1);
    await a.send({ tag: "HANDLE", data: { h } });
    const proxy = (await b.recv()).data.h as Handle;
    sa.unregisterHandle(h);
    await b.send({ tag: "HANDLE", data: { h: proxy } });
    const m = await a.recv();
    expect(m.synthetic).toBe(true);
    expect(m.status).toBe(Status.INVALID_HANDLE);
    expect(m.tag).toBe(-1);
    await a.send({ tag: -1, flags: m.flags | MessageFlags.REPLY, status: m.status });
    const back = await b.recv();
    expect(back.flags & MessageFlags.REPLY).toBe(MessageFlags.REPLY);
    expect(back.status).toBe(Status.INVALID_HANDLE);
    await a.close();
    await b.close();
  });
});

describe("fd passing", () => {
  test("an fd travels, is usable, the sender keeps its own, and it is close-on-exec", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    const file = tmp.join("fd.txt");
    writeFileSync(file, "hello through SCM_RIGHTS");
    const fd = openSync(file, "r");
    await a.send({ tag: "FD", data: { fd } });
    expect(fdIsOpen(fd)).toBe(true);
    {
      using m = await b.recv();
      expect(m.fds!.length).toBe(1);
      const got = m.data.fd;
      expect(got).not.toBe(fd);
      expect(fdIsCloexec(got)).toBe(true);
      expect(readFileSync(got, "utf8")).toBe("hello through SCM_RIGHTS");
    }
    closeSync(fd);
    await a.close();
    await b.close();
  });

  test("disposal closes fds not taken; takeFd keeps one", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    const [x, y] = socketPair();
    await a.send({ tag: "TWO_FDS", data: { a: x, b: y } });
    let kept = -1;
    let dropped = -1;
    {
      using m = await b.recv();
      kept = m.takeFd(m.data.a);
      dropped = m.data.b;
    }
    expect(fdIsOpen(kept)).toBe(true);
    expect(fdIsOpen(dropped)).toBe(false);
    closeFd(kept);
    closeFd(x);
    closeFd(y);
    await a.close();
    await b.close();
  });

  test("no-fd indicator decodes as -1; fd 0 is not transmittable (lwmsg) and goes as none", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    await a.send({ tag: "FD", data: { fd: -1 } });
    expect((await b.recv()).data.fd).toBe(-1);
    await a.send({ tag: "FD", data: { fd: 0 } });
    const m = await b.recv();
    expect(m.data.fd).toBe(-1);
    expect(m.fds).toBeNull();
    await a.close();
    await b.close();
  });

  test("more fd indicators than fds → synthetic MALFORMED, never a hang", async () => {
    const { c, raw } = await acceptedRawPair();
    raw.write(hex("00000010 01 03 00 00000000 0000 0002 ff"));
    const m = await c.recv();
    expect(m.synthetic).toBe(true);
    expect(m.status).toBe(Status.MALFORMED);
    c.destroy();
    raw.close();
  });

  test("fds that arrive ahead of their message stay queued (bounded by maxFds) and are closed when the connection ends", async () => {
    const { c, raw } = await acceptedRawPair();
    const [x, y] = socketPair();
    const xLink = readlinkSync(`/proc/self/fd/${x}`);
    const yLink = readlinkSync(`/proc/self/fd/${y}`);
    const copiesOf = (link: string) => openFds().filter((fd) => describeFd(fd) === link).length;
    // An EMPTY message carrying two fds it does not claim: they may belong to
    // bytes still to come (a sendmsg the kernel took only in part sends all
    // its fds with the first part), so they are kept, as lwmsg does (§10.10).
    raw.write(hex("0000000f 01 03 00 00000000 0000 0000"), [x, y]);
    closeFd(x);
    closeFd(y);
    expect((await c.recv()).name).toBe("EMPTY");
    expect([copiesOf(xLink), copiesOf(yLink)]).toEqual([1, 1]); // both received copies are held
    // The next message with an fd field claims the first one: x's.
    raw.write(hex("00000010 01 03 00 00000000 0000 0002 ff")); // FD, indicator ff, no fd of its own
    const f = await c.recv();
    const got = f.takeFd((f.data as { fd: number }).fd);
    expect(describeFd(got)).toBe(xLink);
    closeFd(got);
    expect([copiesOf(xLink), copiesOf(yLink)]).toEqual([0, 1]); // y's copy is still queued
    c.destroy();
    expect(copiesOf(yLink)).toBe(0); // and goes with the connection
    raw.close();
  });

  test("fds still waiting for their message are closed as soon as the connection fails", async () => {
    const { c, raw } = await acceptedRawPair();
    const before = openFdCount();
    const [x, y] = socketPair();
    // The FIRST fragment of a two-fd message carries the fds; then a packet that breaks the stream.
    raw.write(hex("00000011 01 01 00 00000000 0000 0004 ffff"), [x, y]);
    closeFd(x);
    closeFd(y);
    raw.write(hex("00000013 02 03 00 00002000 0000000000000000"));
    expect(await rejectionStatus(c.recv())).toBe(Status.MALFORMED);
    expect(c.state).toBe(AssocState.ERROR);
    expect(openFdCount()).toBe(before); // without close(): nothing can claim them any more
    await c.close();
    raw.close();
  });

  test("10,000 messages each carrying an fd", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    const file = tmp.join("many.txt");
    writeFileSync(file, "x");
    const fd = openSync(file, "r");
    const N = 10_000;
    const recvd = (async () => {
      for (let i = 0; i < N; i++) {
        using m = await b.recv();
        if (m.fds?.length !== 1) throw new Error(`message ${i} has ${m.fds?.length} fds`);
      }
    })();
    for (let i = 0; i < N; i++) await a.send({ tag: "FD", data: { fd } });
    await recvd;
    closeSync(fd);
    await a.close();
    await b.close();
  }, 60_000);

  test("256 fds in one message (two sendmsg calls under SCM_MAX_FD) arrive in order", async () => {
    const Many = (await import("../lib/lw.ts")).Lw;
    const proto = Many.Protocol({ MANY: [0, Many.Struct({ fds: Many.Array(Many.Fd(), { length: 256 }) })] });
    const [a, b] = await Connection.pair(proto);
    const pairs = Array.from({ length: 128 }, () => socketPair());
    const fds = pairs.flat();
    await a.send({ tag: "MANY", data: { fds } });
    using m = await b.recv();
    expect(m.fds!.length).toBe(256);
    for (const fd of fds) closeFd(fd);
    await a.close();
    await b.close();
  });
});

describe("dead peers", () => {
  test("peer SIGKILLed mid-message → PEER_CLOSE, nothing leaks", async () => {
    const path = tmp.join("kill.sock");
    const listener = await Connection.listen(testProtocol, path);
    const proc = spawn([process.execPath, child, "partial", path]);
    const server = await listener.accept();
    expect(await proc.line()).toContain("ready");
    const p = rejectionStatus(server.recv());
    await proc.kill();
    expect(await p).toBe(Status.PEER_CLOSE);
    await server.close();
    await listener.close();
  });

  test("send to a closed peer → PEER_CLOSE (EPIPE), then INVALID_STATE", async () => {
    const [a, b] = await Connection.pair(testProtocol);
    b.destroy();
    let s = 0;
    for (let i = 0; i < 100 && s === 0; i++) {
      try {
        await a.send({ tag: "FOO", data: { a: 1, b: 2, s: "x".repeat(1000) } });
        await Bun.sleep(1);
      } catch (e) {
        s = (e as LwMsgError).status;
      }
    }
    expect([Status.PEER_CLOSE as number, Status.INVALID_STATE]).toContain(s);
    expect(await rejectionStatus(a.send({ tag: "EMPTY" }))).toBe(Status.INVALID_STATE);
    await a.close();
  });

  test("reset then reconnect to an endpoint", async () => {
    const path = tmp.join("re.sock");
    const listener = await Connection.listen(testProtocol, path);
    const c = new Connection(testProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    const [, s1] = await Promise.all([c.connect(), listener.accept()]);
    await c.reset();
    expect(await rejectionStatus(s1.recv())).toBe(Status.PEER_RESET);
    const [, s2] = await Promise.all([c.connect(), listener.accept()]);
    await c.send({ tag: "EMPTY" });
    expect((await s2.recv()).name).toBe("EMPTY");
    await c.close();
    await s1.close();
    await s2.close();
    await listener.close();
  });
});
