// Limits enforced before memory or fds are committed (issue 16, SECURITY.md §4).
import { describe, expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import { Connection } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { native } from "../lib/native/ffi.ts";
import { socketPair, closeFd } from "../lib/native/socket.ts";
import { UnixTransport } from "../lib/transport/unix.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck, openFdCount } from "./helpers/fds.ts";
import { multicallProtocol } from "./fixtures/peer-protocol.ts";
import { useChildren } from "./helpers/child.ts";

const spawnChild = useChildren();
fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });

/** Send `n` copies of /dev/null's fd with one byte, in one sendmsg (at most 253 a call: Linux SCM_MAX_FD). */
function sendFds(fd: number, n: number): void {
  const nul = openSync("/dev/null", "r");
  try {
    const fds = new Int32Array(n).fill(nul);
    expect(native.lw_send(fd, new Uint8Array([0]), 1, fds, n)).toBe(1);
  } finally {
    closeSync(nul);
  }
}

describe("maxFds before the fds exist (issue 16)", () => {
  test("one recvmsg of 250 fds with room for 16: at most 16 are installed in this process, the kernel drops the rest and says so (MSG_CTRUNC)", () => {
    const [a, b] = socketPair();
    sendFds(a, 250);
    const t = new UnixTransport(b, false);
    const before = openFdCount();
    const got: number[] = [];
    const r = t.read(new Uint8Array(64), 0, 64, got, 16);
    const during = openFdCount();
    expect(r).toBe(1);
    expect(got.length).toBe(16);
    expect(during - before).toBe(16); // not 250
    expect(t.truncated).toBe(true);
    for (const fd of got) closeFd(fd);
    t.close();
    closeFd(a);
  });

  test("a Connection with maxFds 16 (room for 17 per read): 250 fds ahead of a message fail it with MALFORMED, and the 17 it took are closed", async () => {
    const [a, b] = await Connection.pair(multicallProtocol, { maxFds: 16 });
    const before = openFdCount();
    sendFds(a.socketFd, 250);
    const e = await b.recv().then(() => null, (x) => x as LwMsgError);
    expect(e?.status).toBe(Status.MALFORMED);
    expect(e?.message).toContain("maxFds");
    expect(openFdCount()).toBe(before);
    a.destroy();
    b.destroy();
  });
});

test("fds sent with a greeting are never installed here: the read offers no room, the kernel drops them (MSG_CTRUNC)", () => {
  const { encodeGreeting, PacketType } = require("../lib/wire.ts") as typeof import("../lib/wire.ts");
  const [a, b] = socketPair();
  const t = new UnixTransport(b, true);
  const nul = openSync("/dev/null", "r");
  const g = encodeGreeting(PacketType.CONNECT, 2048, new Uint8Array(8));
  expect(native.lw_send(a, g, g.length, new Int32Array([nul, nul, nul]), 3)).toBe(g.length);
  closeSync(nul);
  const before = openFdCount();
  expect(t.read(new Uint8Array(64), 0, 64, null, 0)).toBe(g.length); // how the handshake reads
  expect(t.truncated).toBe(true); // dropped by the kernel, not received and closed
  expect(openFdCount()).toBe(before);
  t.close();
  closeFd(a);
});

describe("admission before decoding (issue 16)", () => {
  test("requests beyond maxCallsPerSession are answered BUSY from their header: their payload is never decoded", async () => {
    const { Peer } = await import("../lib/peer.ts");
    const { ConnectionMode } = await import("../lib/connection.ts");
    const { Lw } = await import("../lib/lw.ts");
    let decoded = 0;
    const protocol = Lw.Protocol({
      REQ: [0, Lw.Struct({ id: Lw.UInt32({ verify: () => (decoded++, true) }), pad: Lw.Array(Lw.UInt8(), { length: 1024 }) })],
      RES: [1, Lw.UInt32()],
    });
    const path = `${process.env.TMPDIR ?? "/tmp"}/lwmsg-admit-${process.pid}.sock`;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = new Peer(protocol, { maxCallsPerSession: 4 });
    server.addDispatch({ REQ: async (d) => (await gate, { tag: "RES", data: d.id }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(protocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const pad = new Uint8Array(1024);
    const calls = Array.from({ length: 20 }, (_, id) => s.call({ tag: "REQ", data: { id, pad } }).then((r) => r.data as number, (e) => (e as LwMsgError).status));
    const busy = await Promise.all(calls.slice(4));
    expect(busy).toEqual(Array(16).fill(Status.BUSY)); // answered while the first four still run
    // The client encoded 20 (verify runs before encoding too): the server decoded only the 4 it admitted.
    expect(decoded).toBe(20 + 4);
    release();
    expect(await Promise.all(calls.slice(0, 4))).toEqual([0, 1, 2, 3]);
    await client.close();
    await server.close();
  });
});

describe("decoded-memory budgets (issue 16)", () => {
  test("per session: requests whose decoded size would go over what the session holds are answered BUSY; the connection stays; a freed budget serves again", async () => {
    const { Peer } = await import("../lib/peer.ts");
    const { ConnectionMode } = await import("../lib/connection.ts");
    const { Lw } = await import("../lib/lw.ts");
    const protocol = Lw.Protocol({
      REQ: [0, Lw.Struct({ n: Lw.UInt32(), items: Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.UInt8() }), { length: "n" })) })],
      RES: [1, Lw.UInt32()],
    });
    const path = `${process.env.TMPDIR ?? "/tmp"}/lwmsg-budget-${process.pid}.sock`;
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    // One request of 16 Ki one-byte structs decodes to ~0.8 MiB (48 bytes a struct): a 2 MiB session budget holds two.
    const server = new Peer(protocol, { maxDecodedBytesPerSession: 2 * 1024 * 1024, maxCallsPerSession: 64 });
    let ran = 0;
    server.addDispatch({ REQ: async (d) => (ran++, await gate, { tag: "RES", data: d.n }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(protocol, { maxMessageSize: 1 << 20 });
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const items = Array.from({ length: 16 * 1024 }, () => ({ a: 1 }));
    const calls = Array.from({ length: 6 }, () => s.call({ tag: "REQ", data: { n: items.length, items } }).then((r) => r.data as number, (e) => (e as LwMsgError).status));
    const settled = await Promise.all(calls.slice(2));
    expect(settled).toEqual([Status.BUSY, Status.BUSY, Status.BUSY, Status.BUSY]);
    expect(ran).toBe(2);
    release();
    expect(await Promise.all(calls.slice(0, 2))).toEqual([items.length, items.length]);
    gate = Promise.resolve();
    expect((await s.call({ tag: "REQ", data: { n: items.length, items } })).data).toBe(items.length); // the budget is free again
    await client.close();
    await server.close();
  });

  test("a decoded request dropped without a call (its cookie already in use: the connection ends) gives its bytes back to the uid's budget", async () => {
    const { Peer } = await import("../lib/peer.ts");
    const { ConnectionMode } = await import("../lib/connection.ts");
    const { Lw } = await import("../lib/lw.ts");
    const protocol = Lw.Protocol({
      REQ: [0, Lw.Struct({ n: Lw.UInt32(), items: Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.UInt8() }), { length: "n" })) })],
      RES: [1, Lw.UInt32()],
    });
    const path = `${process.env.TMPDIR ?? "/tmp"}/lwmsg-budget-drop-${process.pid}.sock`;
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    // ~0.4 MiB decoded per request; three fit in 1.5 MiB, but not if 0.4 MiB leaked.
    const server = new Peer(protocol, { maxDecodedBytesPerSession: null, maxDecodedBytesPerUid: 1536 * 1024, maxMessageSize: 1 << 20 });
    let ran = 0;
    server.addDispatch({ REQ: async (d) => (ran++, await gate, { tag: "RES", data: d.n }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const items = Array.from({ length: 8 * 1024 }, () => ({ a: 1 }));
    const raw = new Connection(protocol, { maxMessageSize: 1 << 20 });
    raw.setEndpoint(ConnectionMode.LOCAL, path);
    await raw.connect();
    await raw.send({ tag: "REQ", data: { n: items.length, items }, cookie: 1 });
    await raw.send({ tag: "REQ", data: { n: items.length, items }, cookie: 1 }); // the same cookie: MALFORMED, connection ends
    expect((await raw.recv().then(() => null, (e) => e as LwMsgError))?.status).toBe(Status.PEER_CLOSE);
    raw.destroy();
    release();
    await Bun.sleep(20);
    expect(ran).toBe(1);
    gate = new Promise<void>((r) => (release = r));
    const client = new Peer(protocol, { maxMessageSize: 1 << 20 });
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const calls = [0, 1, 2].map(() => s.call({ tag: "REQ", data: { n: items.length, items } }).then((r) => r.data as number, (e) => (e as LwMsgError).status));
    await Bun.sleep(100);
    release();
    expect(await Promise.all(calls)).toEqual([items.length, items.length, items.length]);
    await client.close();
    await server.close();
  });

  test("budget options are checked: a positive integer or null", async () => {
    const { Peer } = await import("../lib/peer.ts");
    const { throwStatus } = await import("./helpers/status.ts");
    expect(throwStatus(() => new Peer(multicallProtocol, { maxDecodedBytesPerSession: 0 }))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Peer(multicallProtocol, { maxDecodedBytesPerUid: 1.5 }))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Connection(multicallProtocol, { maxDecodedBytes: -5 }))).toBe(Status.INVALID_PARAMETER);
    new Peer(multicallProtocol, { maxDecodedBytesPerSession: null, maxDecodedBytesPerUid: null });
  });
});

describe("the amplifying attack against the hardened configuration (issue 16, SECURITY.md §4)", () => {
  test("7 connections of one uid × 32 calls × 64 KiB of 1-byte structs against a slow handler: the server's peak RSS grows ≤ 64 MiB, a healthy client's calls all succeed", async () => {
    const { Peer } = await import("../lib/peer.ts");
    const { ConnectionMode } = await import("../lib/connection.ts");
    const { amplifyProtocol } = await import("./fixtures/amplify-protocol.ts");
    const path = `${process.env.TMPDIR ?? "/tmp"}/lwmsg-amplify-${process.pid}.sock`;
    const child = spawnChild([process.execPath, new URL("./fixtures/amplify-server.ts", import.meta.url).pathname, path]);
    const line = () => child.line();
    const ask = async (q: string) => {
      child.tell(q);
      return Number(await child.line());
    };
    try {
      expect(await line()).toBe("ready");
      const before = await ask("hwm");
      // The attack runs in its own process: encoding 64 Ki objects per call would otherwise starve the healthy client here.
      const attacker = Bun.spawn([process.execPath, new URL("./fixtures/amplify-attacker.ts", import.meta.url).pathname, path, "2500"], { stdout: "pipe", stderr: "inherit" });
      const healthy = new Peer(amplifyProtocol);
      healthy.addConnectEndpoint(ConnectionMode.LOCAL, path);
      const hs = await healthy.connect();
      await hs.call({ tag: "PING_REQ" });
      let healthyOk = 0;
      let healthyFailed = 0;
      const lat: number[] = [];
      const probe = (async () => {
        while (attacker.exitCode === null) {
          const t0 = performance.now();
          try {
            await hs.call({ tag: "PING_REQ" });
            healthyOk++;
            lat.push(performance.now() - t0);
          } catch {
            healthyFailed++;
          }
          await Bun.sleep(5);
        }
      })();
      const outcome = await new Response(attacker.stdout).text();
      expect(await attacker.exited).toBe(0);
      await probe;
      lat.sort((a, b) => a - b);
      console.log(`attacker calls by status: ${outcome.trim()}; healthy p50 ${lat[lat.length >> 1]?.toFixed(1)} ms, p99 ${lat[Math.floor(lat.length * 0.99)]?.toFixed(1)} ms`);
      const after = await ask("hwm");
      const grewMiB = (after - before) / 1024;
      console.log(`amplification: server VmHWM ${(before / 1024).toFixed(0)} → ${(after / 1024).toFixed(0)} MiB (+${grewMiB.toFixed(1)}); healthy calls ${healthyOk} ok, ${healthyFailed} failed`);
      expect(grewMiB).toBeLessThanOrEqual(64);
      expect(healthyFailed).toBe(0);
      expect(healthyOk).toBeGreaterThan(10);
      await healthy.close();
    } finally {
      child.tell("quit");
      expect(await child.done()).toBe(0);
    }
  }, 60_000);
});
