// Load: the client limit and idle eviction under a flood of idle connects
// (reference §7.2 steps 3 and 6). The server runs here so its session hooks can
// be watched; the flood comes from child processes (bench/fixtures/flood-client.ts):
// connections that complete the handshake and then sit idle, and connections
// that never greet. No timing assertions: every wait is a bounded "until".
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, writeFileSync } from "node:fs";
import { Peer } from "../lib/peer.ts";
import { Connection, ConnectionMode, type ReceivedMessage } from "../lib/connection.ts";
import { Lw } from "../lib/lw.ts";
import { LwMsgError, Status, statusShortName } from "../lib/status.ts";
import type { Handle } from "../lib/handle.ts";
import type { Session } from "../lib/session.ts";
import { Poller } from "../lib/native/poller.ts";
import { ChildLink } from "../bench/lib/lines.ts";
import { soakDispatch, soakProtocol } from "../bench/fixtures/soak-protocol.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { deferred, until } from "./helpers/wait.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("load-");
const FLOOD = new URL("../bench/fixtures/flood-client.ts", import.meta.url).pathname;
const children: ChildLink[] = [];
afterAll(() => {
  for (const c of children) c.kill();
});

describe("flood of idle connects against maxClients", () => {
  test("≤ M sessions; idle ones evicted under pressure so every newcomer is served; busy and handle-holding sessions kept; silent connections dropped; a healthy client served throughout", async () => {
    const M = 20;
    const GREETERS = 2 * 60;
    const SILENT = 10;
    const path = tmp.join("flood.sock");
    const server = new Peer(soakProtocol, { maxClients: M, timeouts: { idle: 200, establish: 300 } });
    const release = deferred();
    let holdSession: Session<any> | null = null;
    let holdSignal: AbortSignal | null = null;
    soakDispatch(server, {
      hold: async (call) => {
        holdSession = (call as { session: Session<any> }).session;
        holdSignal = (call as { signal: AbortSignal }).signal; // aborts if its connection is dropped
        await release.promise;
      },
    });
    // Session accounting from the hooks.
    let live = 0;
    let maxLive = 0;
    let maxClients = 0;
    let constructs = 0;
    let destructs = 0;
    const destructed = new Set<Session<any>>();
    server.onSession({
      construct(_token, session) {
        constructs++;
        live++;
        maxLive = Math.max(maxLive, live);
        maxClients = Math.max(maxClients, server.clientCount);
        void session;
      },
      destruct(session) {
        destructs++;
        live--;
        destructed.add(session);
      },
    });
    const exceptions: unknown[] = [];
    server.onException((e) => exceptions.push(e));
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const sampler = setInterval(() => (maxClients = Math.max(maxClients, server.clientCount)), 2);

    const mkClient = () => {
      const p = new Peer(soakProtocol);
      p.addConnectEndpoint(ConnectionMode.LOCAL, path);
      return p;
    };
    // Three sessions that exist before the flood: a healthy caller, one holding a handle, one with a call in flight.
    const healthy = mkClient();
    const hs = await healthy.connect();
    await hs.call({ tag: "ECHO_REQ", data: { seq: 0, s: "hi" } });
    const holder = mkClient();
    const hos = await holder.connect();
    const handle = (await hos.call({ tag: "OPEN_REQ" })).data as Handle;
    const busy = mkClient();
    const bs = await busy.connect();
    const held = bs.call({ tag: "HOLD_REQ" });
    held.catch(() => {});
    await until(() => holdSession !== null, 5000, () => "the held call to reach its handler");
    expect(constructs).toBe(3);

    // The flood.
    let accepted = 0;
    let evicted = 0;
    let dropped = 0;
    const other: string[] = [];
    const spawnFlood = (greeters: number, silent: number) => {
      const c = new ChildLink(`flood${children.length}`, [process.execPath, FLOOD, JSON.stringify({ path, greeters, silent, reconnect: false, events: true })]);
      children.push(c);
      c.on((m) => {
        const e = m.ev;
        if (!e) return;
        if (e.accepted) accepted++;
        else if (e.evicted) evicted++;
        else if (e.dropped) dropped++;
        else other.push(JSON.stringify(e));
      });
      return c;
    };
    const floods = [spawnFlood(GREETERS / 2, 0), spawnFlood(GREETERS / 2, 0), spawnFlood(0, SILENT)];

    // The healthy client keeps calling during the whole flood.
    let healthyCalls = 0;
    const healthyFailures: string[] = [];
    let flooding = true;
    const healthyLoop = (async () => {
      let seq = 1;
      while (flooding) {
        try {
          const r = await hs.call({ tag: "ECHO_REQ", data: { seq, s: "healthy" } });
          const got = (r.data as { seq: number }).seq;
          if (got !== seq) healthyFailures.push(`wrong reply ${got} for ${seq}`);
          healthyCalls++;
        } catch (e) {
          healthyFailures.push(e instanceof LwMsgError ? statusShortName(e.status) : String(e));
        }
        seq++;
        await Bun.sleep(5);
      }
    })();

    try {
      // Every greeter gets in (idle sessions make room), every silent connection is dropped.
      await until(
        () => accepted === GREETERS && dropped === SILENT,
        30_000,
        () => `accepted ${accepted}/${GREETERS}, dropped ${dropped}/${SILENT}, evicted ${evicted}, live ${live}, clients ${server.clientCount}`,
      );
      // Let the last evictions reach the clients (they see SHUTDOWN → PEER_CLOSE).
      await until(() => evicted === destructs, 5000, () => "").catch(() => {});
      flooding = false;
      await healthyLoop;

      expect(other).toEqual([]);
      expect(maxLive).toBeLessThanOrEqual(M);
      expect(maxClients).toBeLessThanOrEqual(M);
      expect(maxLive).toBe(M); // the flood did fill the server
      // Only the 3 first clients and the greeters ever got a session: no silent connection did.
      expect(constructs).toBe(3 + GREETERS);
      // At most M - 3 greeters can still be in; every other one was evicted while idle.
      expect(evicted).toBeGreaterThanOrEqual(GREETERS - (M - 3));
      // Every session the server ended was an evicted greeter.
      expect(destructs).toBe(evicted);

      // The healthy client was served throughout.
      expect(healthyFailures).toEqual([]);
      expect(healthyCalls).toBeGreaterThan(0);

      // The busy session (call in flight) and the handle holder were never evicted (§7.2).
      expect(holdSignal!.aborted).toBe(false);
      expect(destructed.has(holdSession!)).toBe(false);
      release.resolve();
      expect((await held).name).toBe("HOLD_RES");
      const used = await hos.call({ tag: "USE_REQ", data: handle });
      expect((used.data as { uses: number }).uses).toBe(1); // the same server-side handle, so the same session
      expect(destructs).toBe(evicted); // still nobody else
      expect(exceptions).toEqual([]);
    } finally {
      flooding = false;
      release.resolve();
      clearInterval(sampler);
      for (const f of floods) f.send("stop");
      await Promise.all(floods.map((f) => f.finish(10_000)));
      await Promise.all([healthy.close(), holder.close(), busy.close()]);
      await server.close();
    }
    expect(live).toBe(0);
    expect(server.clientCount).toBe(0);
  }, 45_000);
});

// ------------------------------------------------------------------ found while reviewing the server under load

describe("replies that wait for the send queue", () => {
  // Was a bug: when a reply could not be queued at once, Connection.send
  // deferred the encode until the queue drained, but the request (and its fds)
  // was disposed right after send() was called, so the deferred encode dup'ed
  // whatever the fd number meant by then (EBADF, or an unrelated server fd).
  // send() now encodes and duplicates at once.
  test("an fd echoed back in a reply that waited for the queue to drain is still the request's fd", async () => {
    const proto = Lw.Protocol({
      BIG_REQ: [0, Lw.Struct({ size: Lw.UInt32() })],
      BIG_RES: [1, Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) })],
      FD_REQ: [2, Lw.Struct({ fd: Lw.Fd() })],
      FD_RES: [3, Lw.Struct({ fd: Lw.Fd() })],
    });
    const path = tmp.join("fdreply.sock");
    const release = deferred();
    let bigs = 0;
    const server = new Peer(proto);
    server.addDispatch({
      BIG_REQ: (d) => {
        bigs++;
        return { tag: "BIG_RES", data: { size: d.size, data: new Uint8Array(d.size) } };
      },
      FD_REQ: async (d) => {
        await release.promise;
        return { tag: "FD_RES", data: { fd: d.fd } }; // the request's own fd, passed back
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const c = new Connection(proto);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    const file = openSync(import.meta.path, "r");
    const secretPath = tmp.join("secret");
    writeFileSync(secretPath, "server-private");
    let secret = -1;
    const got: ReceivedMessage[] = [];
    try {
      await c.connect();
      await c.send({ tag: "FD_REQ", data: { fd: file }, cookie: 100 });
      // 8 MiB of replies the client does not read yet: the server's queue goes over its 1 MiB bound.
      for (let i = 0; i < 16; i++) await c.send({ tag: "BIG_REQ", data: { size: 512 * 1024 }, cookie: i });
      await until(() => bigs >= 3, 5000, () => `the server to handle 3 BIG_REQs (${bigs})`);
      await Bun.sleep(50); // it has stopped reading: its replies cannot drain
      release.resolve(); // FD_RES must now wait for the queue, while the call ends
      await Bun.sleep(20);
      secret = openSync(secretPath, "r"); // takes the lowest free fd number
      const deadline = performance.now() + 5000;
      while (!got.some((m) => m.name === "FD_RES") && performance.now() < deadline) {
        const m = await Promise.race([c.recv(), Bun.sleep(Math.max(1, deadline - performance.now())).then(() => null)]);
        if (m) got.push(m);
      }
      const fdRes = got.find((m) => m.name === "FD_RES");
      expect(fdRes).toBeDefined(); // fails: the reply never comes (EBADF)…
      expect(fstatSync(fdRes!.data.fd as number).ino).toBe(fstatSync(file).ino); // …or carries another fd (the secret file)
    } finally {
      for (const m of got) m.dispose();
      c.destroy();
      await server.close();
      closeSync(file);
      if (secret >= 0) closeSync(secret);
    }
  }, 20_000);
});
