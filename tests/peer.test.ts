// Peer layer: lwmsg's test-async.c and test-client-server.c cases (reference
// §9.2), the call protocol of §7.4 checked with a bare Connection on the other
// end, the handle rules of §6, and stress/limits. Real sockets; a child
// process where a real other process matters.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { Peer, Session, CallDirection, CallError, type Call } from "../lib/peer.ts";
import { Connection, ConnectionMode, type ReceivedMessage } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { MessageFlags } from "../lib/wire.ts";
import { Handle, HandleLocation } from "../lib/handle.ts";
import { closeFd, connectPath, listenPath, socketPair } from "../lib/native/socket.ts";
import { hex, rawPeer, toHex } from "./helpers/raw.ts";
import { native } from "../lib/native/ffi.ts";
import { Poller } from "../lib/native/poller.ts";
import { localToken, tokenCanAccess, tokenHash, tokenToString, tokensEqual } from "../lib/session.ts";
import type { ByteReader, ByteWriter, HandleCodec } from "../lib/codec/io.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { useChildren } from "./helpers/child.ts";
import { deferred, until } from "./helpers/wait.ts";
import { rejectionStatus, throwStatus } from "./helpers/status.ts";
import { asyncProtocol, counterProtocol, multicallProtocol } from "./fixtures/peer-protocol.ts";
import { Lw } from "../lib/lw.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("peer-");
const child = new URL("./fixtures/peer-child.ts", import.meta.url).pathname;
const spawn = useChildren(); // the fixture's "partial" mode sleeps until killed
let sockN = 0;
const sockPath = () => tmp.join(`s${++sockN}.sock`);

// ------------------------------------------------------------------ fixture of test-client-server.c

/** Server with the multicall dispatch; client with the invoke dispatch (callbacks), as lwmsg's client_server_indirect fixture. */
function multicallPair(opts: { clientDispatch?: boolean } = {}) {
  const path = sockPath();
  const server = new Peer(multicallProtocol);
  server.addDispatch({
    MULTICALL_REQUEST: async (req, call) => {
      const values: number[] = [];
      for (const v of req.values ?? []) {
        const r = await call.session.call({ tag: "INVOKE_REQUEST", data: { func: req.func, value: v } });
        expect(r.name).toBe("INVOKE_REPLY");
        values.push(r.data as number);
      }
      return { tag: "MULTICALL_REPLY", data: { num_values: values.length, values } };
    },
    BOGUS_REQUEST: async () => ({ tag: -42 }) as any,
    PING_REQUEST: async () => ({ tag: "PING_REPLY" }),
    ECHO_REQUEST: (d) => ({ tag: "ECHO_REPLY", data: d }),
    NULLFN_REQUEST: null,
  });
  server.addListenEndpoint(ConnectionMode.LOCAL, path, 0o600);
  const client = new Peer(multicallProtocol, { timeouts: { establish: 2000 } });
  if (opts.clientDispatch !== false) {
    client.addDispatch({
      INVOKE_REQUEST: async (req, call) => {
        const fn = call.session.getHandleData(req.func!) as (n: number) => number;
        return { tag: "INVOKE_REPLY", data: fn(req.value) };
      },
    });
  }
  client.addConnectEndpoint(ConnectionMode.LOCAL, path);
  return {
    path,
    server,
    client,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

// ------------------------------------------------------------------ test-async.c

describe("test-async.c", () => {
  function asyncServer() {
    const path = sockPath();
    const server = new Peer(asyncProtocol);
    const state = { cancels: 0, started: 0 };
    // "block" handlers: async functions; "nonblock": plain functions returning at once or a promise.
    const pendFor = (call: Call, ms: number) =>
      new Promise<{ tag: "GENERIC_RESPONSE" }>((resolve, reject) => {
        state.started++;
        const t = setTimeout(() => resolve({ tag: "GENERIC_RESPONSE" }), ms);
        call.onCancel(() => {
          state.cancels++;
          clearTimeout(t);
          reject(new LwMsgError(Status.CANCELLED, "cancelled by the caller"));
        });
      });
    server.addDispatch({
      SYNC_REQUEST: async () => ({ tag: "GENERIC_RESPONSE" }),
      ASYNC_REQUEST: async (_d, call) => pendFor(call, 50),
      NONBLOCK_SYNC_REQUEST: () => ({ tag: "GENERIC_RESPONSE" }),
      NONBLOCK_ASYNC_REQUEST: (_d, call) => pendFor(call, 50),
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    const client = new Peer(asyncProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    return { path, server, client, state, pendFor };
  }

  /** Gives `tag` a handler that never answers but fails CANCELLED once cancelled (seen through `call.onCancel`, or the call's abort signal); returns `f`. */
  function pendUntilCancelled(f: ReturnType<typeof asyncServer>, tag: string, via: "onCancel" | "signal") {
    const { server, state } = f;
    server.addDispatch({ [tag]: async (_d: unknown, call: Call) => {
      state.started++;
      return await new Promise((_, reject) => {
        const cancel = () => {
          state.cancels++;
          reject(new LwMsgError(Status.CANCELLED));
        };
        if (via === "onCancel") call.onCancel(cancel);
        else call.signal.addEventListener("abort", cancel);
      });
    } } as any);
    return f;
  }

  for (const tag of ["SYNC_REQUEST", "ASYNC_REQUEST", "NONBLOCK_SYNC_REQUEST", "NONBLOCK_ASYNC_REQUEST"] as const) {
    test(`${tag.toLowerCase()}: the call completes with GENERIC_RESPONSE`, async () => {
      const { server, client } = asyncServer();
      await server.startListen();
      const s = await client.connect();
      const r = await s.call({ tag });
      expect(r.name).toBe("GENERIC_RESPONSE");
      expect(r.status).toBe(Status.SUCCESS);
      expect(r.flags).toBe(MessageFlags.REPLY);
      await client.close();
      await server.close();
    });
  }

  for (const tag of ["ASYNC_REQUEST", "NONBLOCK_ASYNC_REQUEST"] as const) {
    test(`${tag.toLowerCase()}_disconnect: disconnecting runs the server-side cancel; the call completes CANCELLED`, async () => {
      const { server, client, state } = pendUntilCancelled(asyncServer(), tag, "onCancel");
      await server.startListen();
      const s = await client.connect();
      const p = s.call({ tag });
      await until(() => state.started === 1, 3000, "dispatch");
      await Bun.sleep(25);
      await client.disconnect();
      expect(await rejectionStatus(p)).toBe(Status.CANCELLED);
      await until(() => state.cancels === 1, 3000, "server-side cancel");
      await server.close();
    });

    test(`${tag.toLowerCase()}_shutdown: stopListen cancels the in-flight call; the client's call fails`, async () => {
      const { server, client, state } = pendUntilCancelled(asyncServer(), tag, "signal");
      await server.startListen();
      const s = await client.connect();
      const p = s.call({ tag });
      await until(() => state.started === 1, 3000, "dispatch");
      await server.stopListen(); // returns once the cancelled handler has settled
      expect(state.cancels).toBe(1);
      const st = await rejectionStatus(p);
      expect(st).not.toBe(Status.SUCCESS);
      expect([Status.PEER_CLOSE, Status.PEER_RESET] as number[]).toContain(st);
      await client.close();
    });

    test(`${tag.toLowerCase()}_cancel: aborting sends a CONTROL cancel; the server's cancel runs; the caller gets CANCELLED`, async () => {
      const { server, client, state } = pendUntilCancelled(asyncServer(), tag, "onCancel");
      await server.startListen();
      const s = await client.connect();
      const ac = new AbortController();
      const p = s.call({ tag }, { signal: ac.signal });
      await until(() => state.started === 1, 3000, "dispatch");
      ac.abort();
      let err: unknown;
      try {
        await p;
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CallError);
      expect((err as CallError).status).toBe(Status.CANCELLED);
      // The callee's reply carried CANCELLED too.
      expect((err as CallError).reply?.status).toBe(Status.CANCELLED);
      expect(state.cancels).toBe(1);
      // The connection is still fine.
      expect((await s.call({ tag: "SYNC_REQUEST" })).name).toBe("GENERIC_RESPONSE");
      await client.close();
      await server.close();
    });
  }

  test("a call whose signal is already aborted never goes out", async () => {
    const { server, client, state } = asyncServer();
    await server.startListen();
    const s = await client.connect();
    const ac = new AbortController();
    ac.abort();
    expect(await rejectionStatus(s.call({ tag: "ASYNC_REQUEST" }, { signal: ac.signal }))).toBe(Status.CANCELLED);
    await s.call({ tag: "SYNC_REQUEST" });
    expect(state.started).toBe(0);
    await client.close();
    await server.close();
  });

  test("call timeout: TIMEOUT at once, the callee sees the cancel, the connection stays usable", async () => {
    const f = asyncServer();
    f.server.addDispatch({ ASYNC_REQUEST: async (_d, call) => f.pendFor(call, 10_000) });
    await f.server.startListen();
    const s = await f.client.connect();
    const t0 = performance.now();
    expect(await rejectionStatus(s.call({ tag: "ASYNC_REQUEST" }, { timeout: 60 }))).toBe(Status.TIMEOUT);
    expect(performance.now() - t0).toBeLessThan(1000);
    await until(() => f.state.cancels === 1, 3000, "server-side cancel after a timeout");
    expect((await s.call({ tag: "SYNC_REQUEST" })).name).toBe("GENERIC_RESPONSE");
    await f.client.close();
    await f.server.close();
  });
});

// ------------------------------------------------------------------ test-client-server.c

describe("test-client-server.c", () => {
  test("ping", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    const r = await s.call({ tag: "PING_REQUEST" });
    expect(r.name).toBe("PING_REPLY");
    expect(r.tag).toBe(6);
    expect(r.cookie).toBe(0); // cookie 0 is valid: the counter starts there (§10.7)
    await f.client.disconnect();
    await f.server.stopListen();
    await f.close();
  });

  test("addListenFd: a socket handed over is listened on and served; a non-socket fd fails with the mapped errno", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    server.addDispatch({ PING_REQUEST: async () => ({ tag: "PING_REPLY" }) });
    server.addListenFd(ConnectionMode.LOCAL, listenPath(path, 1, 0o600));
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await client.disconnect();
    await server.stopListen();
    // The fd was consumed by stopListen: a restart does not listen on whatever now has that number.
    await server.startListen();
    const late = new Peer(multicallProtocol);
    late.addConnectEndpoint(ConnectionMode.LOCAL, path);
    expect(await rejectionStatus((await late.connect()).call({ tag: "PING_REQUEST" }))).toBe(Status.CONNECTION_REFUSED);
    await late.close();
    await server.close();

    const bad = new Peer(multicallProtocol);
    const [x, y] = socketPair(); // connected, not bindable: listen() is EINVAL
    bad.addListenFd(ConnectionMode.LOCAL, x);
    expect(await rejectionStatus(bad.startListen())).toBe(Status.INVALID_PARAMETER);
    await bad.close();
    closeFd(y);
  });

  test("call_restart_call: a call after the server restarts reconnects lazily", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.server.stopListen();
    await f.server.startListen();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("call_restart_call without a client dispatch table (the idle client keeps no receive pending)", async () => {
    const f = multicallPair({ clientDispatch: false });
    await f.server.startListen();
    const s = await f.client.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.server.stopListen();
    await f.server.startListen();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("call_reconnect_call: a call after the client disconnects and connects again", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s1 = await f.client.connect();
    expect((await s1.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.client.disconnect();
    expect(await rejectionStatus(s1.call({ tag: "PING_REQUEST" }))).toBe(Status.INVALID_STATE);
    const s2 = await f.client.connect();
    expect(s2).not.toBe(s1);
    expect((await s2.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("call_fail_start_call: a call fails before the server starts and succeeds after", async () => {
    const f = multicallPair();
    const s = await f.client.connect();
    expect(await rejectionStatus(s.call({ tag: "PING_REQUEST" }))).toBe(Status.FILE_NOT_FOUND);
    await f.server.startListen();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("call_shutdown_call_fail: a call after the server stops fails", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    await s.call({ tag: "PING_REQUEST" });
    await f.server.stopListen();
    const st = await rejectionStatus(s.call({ tag: "PING_REQUEST" }));
    expect(st).not.toBe(Status.SUCCESS);
    expect(st).toBe(Status.FILE_NOT_FOUND);
    await f.close();
  });

  test("connect endpoints are tried in order: refused/missing ones are skipped", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, tmp.join("missing.sock"));
    client.addConnectEndpoint(ConnectionMode.LOCAL, f.path);
    const s = await client.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await client.close();
    await f.close();
  });

  test("an endpoint that never answers the handshake: establish TIMEOUT moves on to the next endpoint", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const silent = tmp.join("silent.sock");
    const lfd = listenPath(silent, 8, 0o600); // listens, never accepts: connect() succeeds, ACCEPT never comes
    try {
      const client = new Peer(multicallProtocol, { timeouts: { establish: 100 } });
      client.addConnectEndpoint(ConnectionMode.LOCAL, silent);
      client.addConnectEndpoint(ConnectionMode.LOCAL, f.path);
      const s = await client.connect();
      const t0 = performance.now();
      expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
      expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
      await client.close();
      // alone, it is the call's error
      const lone = new Peer(multicallProtocol, { timeouts: { establish: 50 } });
      lone.addConnectEndpoint(ConnectionMode.LOCAL, silent);
      expect(await rejectionStatus((await lone.connect()).call({ tag: "PING_REQUEST" }))).toBe(Status.TIMEOUT);
      await lone.close();
    } finally {
      closeFd(lfd);
      await f.close();
    }
  });

  test("disconnect while the connection is still being made: the call rejects CANCELLED at once", async () => {
    const silent = tmp.join("silent2.sock");
    const lfd = listenPath(silent, 8, 0o600);
    try {
      const client = new Peer(multicallProtocol); // no establish timeout: the handshake would wait forever
      client.addConnectEndpoint(ConnectionMode.LOCAL, silent);
      const s = await client.connect();
      const p = s.call({ tag: "PING_REQUEST" });
      await Bun.sleep(30);
      await client.disconnect();
      expect(await rejectionStatus(p)).toBe(Status.CANCELLED);
    } finally {
      closeFd(lfd);
    }
  });

  test("a bad timeout option fails the call locally with INVALID_PARAMETER", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    expect(await rejectionStatus(s.call({ tag: "PING_REQUEST" }, { timeout: -5 }))).toBe(Status.INVALID_PARAMETER);
    expect((await s.call({ tag: "PING_REQUEST" }, { timeout: 5000 })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("callback: the server calls back into the client through a client-registered handle", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    const times2 = (v: number) => 2 * v;
    const h = s.registerHandle("IntFunction", times2);
    expect(h.location).toBe(HandleLocation.LOCAL);
    const values = [1, 2, 3, 4, 5];
    const r = await s.call({ tag: "MULTICALL_REQUEST", data: { func: h, num_values: values.length, values } });
    expect(r.name).toBe("MULTICALL_REPLY");
    expect(r.data).toEqual({ num_values: 5, values: values.map(times2) });
    s.unregisterHandle(h);
    expect(throwStatus(() => s.unregisterHandle(h))).toBe(Status.INVALID_HANDLE);
    await f.client.disconnect();
    await f.server.stopListen();
    await f.close();
  });

  test("tracing: begin and end hooks fire for both directions", async () => {
    const f = multicallPair();
    const seen: string[] = [];
    const hooks = {
      begin: (call: Call<any>, m: { tag: number | string }) => seen.push(`${call.direction === CallDirection.INCOMING ? "in" : "out"}-begin:${m.tag}`),
      end: (call: Call<any>, _m: unknown, status: number) => seen.push(`${call.direction === CallDirection.INCOMING ? "in" : "out"}-end:${status}`),
    };
    f.server.onTrace(hooks);
    f.client.onTrace(hooks);
    await f.server.startListen();
    const s = await f.client.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    expect(seen).toContain("out-begin:PING_REQUEST");
    expect(seen).toContain("in-begin:5");
    expect(seen).toContain("in-end:0");
    expect(seen).toContain("out-end:0");
    await f.close();
  });

  test("stop_listen_removes_endpoint", async () => {
    const f = multicallPair();
    await f.server.startListen();
    expect(existsSync(f.path)).toBe(true);
    await f.server.stopListen();
    expect(existsSync(f.path)).toBe(false);
    await f.close();
  });

  test("start_listen_on_bad_endpoint_fails: FILE_NOT_FOUND, sticky for later start/stop", async () => {
    const server = new Peer(multicallProtocol);
    server.addListenEndpoint(ConnectionMode.LOCAL, "/bogus/endpoint/sock", 0o600);
    expect(await rejectionStatus(server.startListen())).toBe(Status.FILE_NOT_FOUND);
    expect(server.listenState).toBe("error");
    expect(await rejectionStatus(server.startListen())).toBe(Status.FILE_NOT_FOUND);
    expect(await rejectionStatus(server.stopListen())).toBe(Status.FILE_NOT_FOUND);
    await server.close();
  });

  test("bogus_reply_fail_ping_succeed: an unencodable reply gives MALFORMED (twice), then a ping works", async () => {
    const f = multicallPair();
    const exceptions: unknown[] = [];
    f.server.onException((e) => exceptions.push(e));
    await f.server.startListen();
    const s = await f.client.connect();
    for (let i = 0; i < 2; i++) {
      let err: CallError | null = null;
      try {
        await s.call({ tag: "BOGUS_REQUEST" });
      } catch (e) {
        err = e as CallError;
      }
      expect(err?.status).toBe(Status.MALFORMED);
      expect(err!.reply!.flags).toBe(MessageFlags.REPLY | MessageFlags.SYNTHETIC);
      expect(err!.reply!.tag).toBe(-1);
    }
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    expect(exceptions.length).toBe(2); // the warning lwmsg logs
    await f.close();
  });

  test("handle_invalidation: after the server restarts, a reconnect invalidates the client's handles", async () => {
    const path = sockPath();
    const server = counterServer(path);
    await server.startListen();
    const client = new Peer(counterProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const r = await s.call({ tag: "COUNTER_OPEN", data: { counter: 0 } });
    const h = r.data as Handle;
    expect(s.getHandleLocation(h)).toBe(HandleLocation.REMOTE);
    await server.stopListen();
    await Bun.sleep(50);
    await server.startListen();
    // A call reconnects (the server sends a new accept cookie): the old handle is gone.
    const st = await rejectionStatus(s.call({ tag: "COUNTER_READ", data: h }));
    expect(st).toBe(Status.INVALID_HANDLE); // the stale handle cannot even be sent
    expect(throwStatus(() => s.getHandleLocation(h))).toBe(Status.INVALID_HANDLE);
    s.releaseHandle(h);
    await client.close();
    await server.close();
  });

  test("client_limit_timeout: 128 connects against maxClients 64 with idle 1 s finish within 5 s", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol, { maxClients: 64, timeouts: { idle: 1000 } });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const conns: Connection[] = [];
    const t0 = performance.now();
    try {
      for (let i = 0; i < 128; i++) {
        const c = new Connection(multicallProtocol);
        conns.push(c);
        c.setEndpoint(ConnectionMode.LOCAL, path);
        await c.connect();
      }
      const took = performance.now() - t0;
      expect(took).toBeLessThan(5000);
      expect(took).toBeGreaterThan(900); // the 65th had to wait for idle eviction
      expect(server.clientCount).toBeLessThanOrEqual(64);
    } finally {
      for (const c of conns) c.destroy();
      await server.close();
    }
  }, 10_000);

  test("idle connections are not evicted while the server is below maxClients", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol, { maxClients: 4, timeouts: { idle: 50 } });
    server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    await s.call({ tag: "PING_REQUEST" });
    await Bun.sleep(250);
    expect(server.clientCount).toBe(1);
    const c = new Connection(multicallProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    await c.connect();
    expect(server.clientCount).toBe(2);
    c.destroy();
    await client.close();
    await server.close();
  });

  test("client_server_pair/basic: acceptFd + connectFd on a socketpair (PAIR), then a ping", async () => {
    const server = new Peer(multicallProtocol);
    server.addDispatch({ PING_REQUEST: async () => ({ tag: "PING_REPLY" }) });
    const client = new Peer(multicallProtocol);
    const [a, b] = socketPair();
    const accepted = server.acceptFd(ConnectionMode.PAIR, b);
    const s = await client.connectFd(ConnectionMode.PAIR, a);
    expect(await rejectionStatus(client.connectFd(ConnectionMode.PAIR, 999))).toBe(Status.INVALID_STATE);
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    const ss = await accepted;
    // PAIR mode: both tokens are this process's own ids.
    expect(ss.peerToken?.pid).toBe(process.pid);
    expect(s.peerToken?.pid).toBe(process.pid);
    await client.close();
    await server.close();
  });

  test("stress/parallel: 16 concurrent callers × 1,000 ADD calls on one shared handle count exactly 16,000", async () => {
    const path = sockPath();
    const server = counterServer(path, { maxClients: 16, timeouts: { idle: 1000 } });
    await server.startListen();
    const client = new Peer(counterProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const h = (await s.call({ tag: "COUNTER_OPEN", data: { counter: 0 } })).data as Handle;
    const seen = new Set<number>();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = 0; i < 1000; i++) {
          const r = await s.call({ tag: "COUNTER_ADD", data: { handle: h, delta: 1 } });
          expect(r.name).toBe("COUNTER_ADD_SUCCESS");
          seen.add((r.data as { counter: number }).counter);
        }
      }),
    );
    expect(seen.size).toBe(16_000); // every pre-increment value seen once
    const read = await s.call({ tag: "COUNTER_READ", data: h });
    expect((read.data as { counter: number }).counter).toBe(16_000);
    const closed = await s.call({ tag: "COUNTER_CLOSE", data: h });
    expect(closed.name).toBe("COUNTER_CLOSE_SUCCESS");
    await client.close();
    await server.close();
  });
});

function counterServer(path: string, options: ConstructorParameters<typeof Peer>[1] = {}) {
  const server = new Peer(counterProtocol, options);
  server.addDispatch({
    COUNTER_OPEN: (req, call) => {
      const h = call.session.registerHandle("CounterHandle", { counter: req.counter });
      return { tag: "COUNTER_OPEN_SUCCESS", data: h };
    },
    COUNTER_ADD: (req, call) => {
      const c = call.session.getHandleData(req.handle) as { counter: number };
      const before = c.counter;
      c.counter += req.delta;
      return { tag: "COUNTER_ADD_SUCCESS", data: { counter: before } };
    },
    COUNTER_READ: (h, call) => ({ tag: "COUNTER_READ_SUCCESS", data: { counter: (call.session.getHandleData(h) as { counter: number }).counter } }),
    COUNTER_CLOSE: (h, call) => {
      const c = call.session.getHandleData(h) as { counter: number };
      call.session.unregisterHandle(h);
      return { tag: "COUNTER_CLOSE_SUCCESS", data: { counter: c.counter } };
    },
  });
  server.addListenEndpoint(ConnectionMode.LOCAL, path);
  return server;
}

// ------------------------------------------------------------------ call protocol on the wire (§7.2, §7.4)

describe("call protocol (§7.4) against a bare Connection", () => {
  async function serverAndRaw(setup?: (server: Peer<typeof multicallProtocol>) => void, handles: HandleCodec | null = null) {
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    const slow = { started: 0, cancels: 0, release: deferred() };
    server.addDispatch({
      PING_REQUEST: () => ({ tag: "PING_REPLY" }),
      ECHO_REQUEST: async (d) => ({ tag: "ECHO_REPLY", data: d }),
      SLOW_REQUEST: async (_d, call) => {
        slow.started++;
        call.onCancel(() => slow.cancels++);
        await slow.release.promise;
        return { tag: "PING_REPLY" };
      },
      NULLFN_REQUEST: null,
    });
    setup?.(server);
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const raw = new Connection(multicallProtocol, { handles });
    raw.setEndpoint(ConnectionMode.LOCAL, path);
    await raw.connect();
    return { server, raw, slow };
  }

  test("a request is answered with flags=REPLY, the same cookie and the handler's status", async () => {
    const { server, raw } = await serverAndRaw();
    await raw.send({ tag: "PING_REQUEST", cookie: 4242 });
    const r = await raw.recv();
    expect([r.flags, r.cookie, r.status, r.name]).toEqual([MessageFlags.REPLY, 4242, 0, "PING_REPLY"]);
    raw.destroy();
    await server.close();
  });

  test("tag above the dispatch table → MALFORMED; no entry → UNSUPPORTED; null entry → UNIMPLEMENTED", async () => {
    const { server, raw } = await serverAndRaw();
    const ask = async (tag: string, cookie: number) => {
      await raw.send({ tag, cookie });
      const r = await raw.recv();
      expect(r.cookie).toBe(cookie);
      expect(r.tag).toBe(-1);
      expect(r.flags).toBe(MessageFlags.REPLY);
      return r.status;
    };
    expect(await ask("OUT_OF_RANGE_REQUEST", 1)).toBe(Status.MALFORMED);
    expect(await ask("UNHANDLED_REQUEST", 2)).toBe(Status.UNSUPPORTED);
    expect(await ask("NULLFN_REQUEST", 3)).toBe(Status.UNIMPLEMENTED);
    expect(await ask("INVOKE_REPLY" as string, 4).catch(() => -1)).toBe(-1); // INVOKE_REPLY needs data: encode fails locally
    raw.destroy();
    await server.close();
  });

  test("a handler that throws LwMsgError(status) fails the call with that status; a reply may carry a payload with an error status", async () => {
    const f = multicallPair();
    f.server.addDispatch({
      ECHO_REQUEST: async (d) => {
        if (d.n === 1) throw new LwMsgError(Status.SECURITY, "no");
        if (d.n === 2) throw new Error("boom");
        return { tag: "ECHO_REPLY", data: d, status: Status.NOT_FOUND };
      },
    });
    const exceptions: unknown[] = [];
    f.server.onException((e) => exceptions.push(e));
    await f.server.startListen();
    const s = await f.client.connect();
    let err = (await s.call({ tag: "ECHO_REQUEST", data: { n: 1, s: "x" } }).catch((e) => e)) as CallError;
    expect(err.status).toBe(Status.SECURITY);
    expect(err.reply?.tag).toBe(-1);
    err = (await s.call({ tag: "ECHO_REQUEST", data: { n: 2, s: "x" } }).catch((e) => e)) as CallError;
    expect(err.status).toBe(Status.ERROR);
    expect(exceptions.length).toBe(1);
    err = (await s.call({ tag: "ECHO_REQUEST", data: { n: 3, s: "payload" } }).catch((e) => e)) as CallError;
    expect(err.status).toBe(Status.NOT_FOUND);
    expect(err.reply?.name).toBe("ECHO_REPLY");
    expect(err.reply?.data).toEqual({ n: 3, s: "payload" }); // out is filled even on error (§10.8)
    await f.close();
  });

  test("a request with a cookie already in flight is MALFORMED on the association: the server closes it", async () => {
    const { server, raw, slow } = await serverAndRaw();
    await raw.send({ tag: "SLOW_REQUEST", data: { id: 1 }, cookie: 7 });
    await until(() => slow.started === 1);
    await raw.send({ tag: "SLOW_REQUEST", data: { id: 2 }, cookie: 7 });
    // the in-flight call is cancelled when the association goes; the server sends SHUTDOWN
    expect(await rejectionStatus(raw.recv())).toBe(Status.PEER_CLOSE);
    await until(() => slow.cancels === 1);
    slow.release.resolve();
    raw.destroy();
    await server.close();
  });

  test("a tag the server's protocol does not know is MALFORMED on the association: the server closes it (SHUTDOWN)", async () => {
    const { server, raw: first } = await serverAndRaw();
    first.destroy();
    const other = Lw.Protocol({ PING_REQUEST: [5, null], ALIEN: [41, null] });
    const raw = new Connection(other);
    raw.setEndpoint(ConnectionMode.LOCAL, (server as any).server.paths[0]);
    await raw.connect();
    await raw.send({ tag: "ALIEN", cookie: 1 });
    expect(await rejectionStatus(raw.recv())).toBe(Status.PEER_CLOSE);
    raw.destroy();
    await server.close();
  });

  test("a SYNTHETIC request is answered at once with its status", async () => {
    const { server, raw } = await serverAndRaw();
    await raw.send({ tag: -1, flags: MessageFlags.SYNTHETIC, status: Status.OVERFLOW, cookie: 9 });
    const r = await raw.recv();
    expect([r.flags, r.status, r.cookie, r.tag]).toEqual([MessageFlags.REPLY, Status.OVERFLOW, 9, -1]);
    raw.destroy();
    await server.close();
  });

  test("a request naming an unknown local handle id decodes as SYNTHETIC INVALID_HANDLE and is answered so", async () => {
    const fake: HandleCodec = {
      writeHandle(w: ByteWriter) {
        w.ensure(5);
        w.buf[w.pos] = HandleLocation.REMOTE; // "yours" from the sender's view: local for the server
        w.view.setUint32(w.pos + 1, 99);
        w.pos += 5;
      },
      readHandle(_r: ByteReader) {
        return null;
      },
    };
    const { server, raw } = await serverAndRaw((s) => s.addDispatch({ INVOKE_REQUEST: () => ({ tag: "INVOKE_REPLY", data: 1 }) }), fake);
    await raw.send({ tag: "INVOKE_REQUEST", data: { func: {} as Handle, value: 1 }, cookie: 3 });
    const r = await raw.recv();
    expect([r.flags, r.status, r.cookie, r.tag]).toEqual([MessageFlags.REPLY, Status.INVALID_HANDLE, 3, -1]);
    raw.destroy();
    await server.close();
  });

  test("CONTROL cancel and the legacy cancel (REPLY, ERROR, tag -1) both cancel the incoming call; other CONTROL statuses are dropped", async () => {
    const { server, raw, slow } = await serverAndRaw();
    await raw.send({ tag: "SLOW_REQUEST", data: { id: 1 }, cookie: 1 });
    await raw.send({ tag: "SLOW_REQUEST", data: { id: 2 }, cookie: 2 });
    await until(() => slow.started === 2);
    await raw.send({ tag: -1, flags: MessageFlags.CONTROL, status: Status.TIMEOUT, cookie: 1 }); // dropped
    await raw.send({ tag: -1, flags: MessageFlags.REPLY, status: 777, cookie: 555 }); // a reply nobody waits for: ignored
    await raw.send({ tag: "PING_REQUEST", cookie: 3 });
    expect((await raw.recv()).cookie).toBe(3);
    expect(slow.cancels).toBe(0);
    await raw.send({ tag: -1, flags: MessageFlags.CONTROL, status: Status.CANCELLED, cookie: 1 });
    await raw.send({ tag: -1, flags: MessageFlags.REPLY, status: Status.ERROR, cookie: 2 });
    await until(() => slow.cancels === 2, 3000, "both cancels");
    slow.release.resolve();
    const got = [await raw.recv(), await raw.recv()].map((m) => m.cookie).sort();
    expect(got).toEqual([1, 2]);
    raw.destroy();
    await server.close();
  });

  test("outgoing cookies start at 0, count up, and skip cookies still in flight; the cancel message is flags=CONTROL status=CANCELLED", async () => {
    const [a, b] = socketPair();
    const raw = new Connection(multicallProtocol);
    raw.setFd(ConnectionMode.PAIR, b);
    const client = new Peer(multicallProtocol);
    const s = await client.connectFd(ConnectionMode.PAIR, a);
    await raw.accept();
    const ac = new AbortController();
    const p0 = s.call({ tag: "PING_REQUEST" });
    const p1 = s.call({ tag: "SLOW_REQUEST", data: { id: 0 } }, { signal: ac.signal });
    const m0 = await raw.recv();
    const m1 = await raw.recv();
    expect([m0.cookie, m0.flags, m0.status, m0.name]).toEqual([0, 0, 0, "PING_REQUEST"]);
    expect([m1.cookie, m1.flags, m1.status]).toEqual([1, 0, 0]);
    ac.abort();
    const cancel = await raw.recv();
    expect([cancel.flags, cancel.status, cancel.cookie, cancel.tag]).toEqual([MessageFlags.CONTROL, Status.CANCELLED, 1, -1]);
    await raw.send({ tag: "PING_REPLY", flags: MessageFlags.REPLY, cookie: 0 });
    expect((await p0).name).toBe("PING_REPLY");
    // cookie 1 is still reserved (no reply yet): the next call gets 2
    const p2 = s.call({ tag: "PING_REQUEST" });
    const m2 = await raw.recv();
    expect(m2.cookie).toBe(2);
    await raw.send({ tag: -1, flags: MessageFlags.REPLY, status: Status.CANCELLED, cookie: 1 });
    expect(await rejectionStatus(p1)).toBe(Status.CANCELLED);
    await raw.send({ tag: "PING_REPLY", flags: MessageFlags.REPLY, cookie: 2 });
    await p2;
    raw.destroy();
    // the server side went away: the client session notices at the next call
    expect(await rejectionStatus(s.call({ tag: "PING_REQUEST" }))).toBe(Status.PEER_CLOSE);
    await client.close();
  });

  test("on the wire: stopListen drops a client without SHUTDOWN; idle eviction closes with SHUTDOWN(PEER_CLOSE) (§10.4)", async () => {
    const handshake = async (path: string) => {
      const { fd } = connectPath(path);
      const raw = await rawPeer(fd);
      raw.write(hex("00000013 02 03 00 00002000 0102030405060708"));
      await raw.waitBytes(19);
      return raw;
    };
    // stopListen: EOF right after ACCEPT, no SHUTDOWN packet
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const a = await handshake(path);
    await until(() => server.clientCount === 1);
    await server.stopListen();
    await a.waitEnd();
    expect(a.received().length).toBe(19);
    a.close();
    // idle timeout at maxClients: a SHUTDOWN packet with PEER_CLOSE (19) before the close
    const path2 = sockPath();
    const busy = new Peer(multicallProtocol, { maxClients: 1, timeouts: { idle: 100 } });
    busy.addListenEndpoint(ConnectionMode.LOCAL, path2);
    await busy.startListen();
    const b = await handshake(path2);
    await b.waitEnd(3000);
    expect(toHex(b.received().subarray(19))).toBe("0000000a" + "05" + "03" + "00000013");
    b.close();
    await busy.close();
  });

  test("BUSY when 65,536 calls are in flight on one session", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol, { maxCallsPerSession: 65536 });
    const release = deferred();
    let started = 0;
    server.addDispatch({
      SLOW_REQUEST: async () => {
        started++;
        await release.promise;
        return { tag: "PING_REPLY" };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    await s.call({ tag: "PING_REQUEST" }).catch(() => {}); // connect first (UNSUPPORTED is fine)
    const calls: Promise<ReceivedMessage>[] = [];
    for (let i = 0; i < 65536; i++) calls.push(s.call({ tag: "SLOW_REQUEST", data: { id: i } }) as Promise<any>);
    expect(await rejectionStatus(s.call({ tag: "PING_REQUEST" }))).toBe(Status.BUSY);
    await until(() => started === 65536, 20_000, "all 65,536 calls dispatched");
    release.resolve();
    const replies = await Promise.all(calls);
    expect(replies.length).toBe(65536);
    expect(new Set(replies.map((r) => r.cookie)).size).toBe(65536);
    // cookies free again
    expect((await rejectionStatus(s.call({ tag: "PING_REQUEST" })))).toBe(Status.UNSUPPORTED);
    await client.close();
    await server.close();
  }, 30_000);

  test("request payloads that cannot be encoded fail only that call (the connection stays up)", async () => {
    const f = multicallPair();
    await f.server.startListen();
    const s = await f.client.connect();
    expect(await rejectionStatus(s.call({ tag: "ECHO_REQUEST", data: { n: -1, s: "x" } }))).toBe(Status.OVERFLOW);
    expect(await rejectionStatus(s.call({ tag: "NOT_A_MESSAGE" } as any))).toBe(Status.MALFORMED);
    const foreign = new Handle("IntFunction", HandleLocation.LOCAL, 0, () => 1);
    expect(await rejectionStatus(s.call({ tag: "MULTICALL_REQUEST", data: { func: foreign, num_values: 0, values: [] } }))).toBe(Status.INVALID_HANDLE);
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await f.close();
  });

  test("fds travel in requests and replies; the handler's fds stay its own (onComplete closes them)", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    server.addDispatch({
      FD_REQUEST: (req, call) => {
        // keep the received fd, write into it, send back a fresh pipe's read end
        const fd = call.request!.takeFd(req.fd);
        const msg = new TextEncoder().encode("from server");
        native.lw_send(fd, msg, msg.length, null, 0);
        closeFd(fd);
        const [r, w] = socketPair();
        native.lw_send(w, new TextEncoder().encode("reply fd"), 8, null, 0);
        closeFd(w);
        call.onComplete(() => closeFd(r));
        return { tag: "FD_REPLY", data: { fd: r } };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const [mine, theirs] = socketPair();
    {
      using reply = await s.call({ tag: "FD_REQUEST", data: { fd: theirs } });
      closeFd(theirs); // the connection sent a duplicate
      const fd = (reply.data as { fd: number }).fd;
      expect(fd).toBeGreaterThan(2);
      const buf = new Uint8Array(64);
      native.lw_wait_readable(fd, 1_000_000);
      const n = native.lw_recv(fd, buf, 64, new Int32Array(256), new Int32Array(2));
      expect(new TextDecoder().decode(buf.subarray(0, n))).toBe("reply fd");
    } // disposal closes the received fd
    const buf = new Uint8Array(64);
    native.lw_wait_readable(mine, 1_000_000);
    const n = native.lw_recv(mine, buf, 64, new Int32Array(256), new Int32Array(2));
    expect(new TextDecoder().decode(buf.subarray(0, n))).toBe("from server");
    closeFd(mine);
    await client.close();
    await server.close();
  });

  test("MESSAGE timeout: a connection stuck mid-message is closed", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol, { timeouts: { message: 150 } });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const proc = spawn([process.execPath, child, "partial", path]);
    expect(await proc.line()).toContain("ready");
    await until(() => server.clientCount === 1, 2000, "the partial client");
    await until(() => server.clientCount === 0, 3000, "the message timeout");
    await proc.kill();
    await server.close();
  });
});

// ------------------------------------------------------------------ sessions, tokens, handles (§5, §6)

describe("sessions and handles", () => {
  test("the session constructor sees the token of a real other process (child); rejecting refuses the client; destructors run", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    const tokens: { euid: number; egid: number; pid: number }[] = [];
    const destructed: unknown[] = [];
    let reject = false;
    server.onSession({
      construct(token) {
        tokens.push(token);
        if (reject) throw new LwMsgError(Status.SECURITY, "go away");
        return { who: token.pid };
      },
      destruct(session) {
        destructed.push(session.data);
      },
    });
    server.addDispatch({ PING_REQUEST: (_d, call) => {
      expect(call.token?.pid).toBe((call.session.data as { who: number }).who);
      return { tag: "PING_REPLY" };
    } });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const run = async () => {
      const proc = Bun.spawn([process.execPath, child, "client", path], { stdout: "pipe", stderr: "inherit" });
      const out = await new Response(proc.stdout).text();
      await proc.exited;
      return JSON.parse(out) as { pid: number; status: number };
    };
    const ok = await run();
    expect(ok.status).toBe(0);
    expect(tokens[0]!.pid).toBe(ok.pid);
    expect(tokens[0]!.pid).not.toBe(process.pid);
    expect(tokens[0]!.euid).toBe(process.geteuid!());
    expect(tokens[0]!.egid).toBe(process.getegid!());
    await until(() => destructed.length === 1, 3000, "destructor");
    expect(destructed[0]).toEqual({ who: ok.pid });
    reject = true;
    const refused = await run();
    expect(refused.status).not.toBe(0);
    expect(tokens.length).toBe(2);
    await server.close();
    expect(destructed.length).toBe(1); // only constructed sessions are destructed
  });

  test("handle API: register/retain/release/unregister, cleanup once at zero, INVALID_HANDLE after", () => {
    const s = new Session(counterProtocol, "outgoing", { call: () => Promise.reject(new Error("no")) });
    const cleaned: unknown[] = [];
    expect(throwStatus(() => s.registerHandle("CounterHandle", null))).toBe(Status.INVALID_PARAMETER);
    const h = s.registerHandle("CounterHandle", { n: 1 }, (d) => cleaned.push(d));
    const h2 = s.registerHandle("CounterHandle", { n: 2 });
    expect([h.id, h2.id, h.refs, h.location]).toEqual([0, 1, 1, HandleLocation.LOCAL]);
    expect(s.handleCount).toBe(2);
    s.retainHandle(h);
    s.releaseHandle(h);
    expect(cleaned).toEqual([]);
    expect(s.getHandleData(h)).toEqual({ n: 1 });
    s.unregisterHandle(h);
    expect(cleaned).toEqual([{ n: 1 }]);
    expect(throwStatus(() => s.getHandleData(h))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => s.getHandleLocation(h))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => s.unregisterHandle(h))).toBe(Status.INVALID_HANDLE);
    s.releaseHandle(h); // harmless past zero
    expect(cleaned.length).toBe(1);
    // a handle of another session is not ours
    const other = new Session(counterProtocol, "outgoing", { call: () => Promise.reject(new Error("no")) });
    const foreign = other.registerHandle("CounterHandle", 1);
    expect(throwStatus(() => s.getHandleData(foreign))).toBe(Status.INVALID_HANDLE);
    // ids are reused only when free
    const h3 = s.registerHandle("CounterHandle", 3);
    expect(h3.id).toBe(2);
    s.resetHandles(() => {});
    expect(s.handleCount).toBe(0);
    expect(h2.valid).toBe(false);
  });

  test("handle wire rules (§6.3): locality inverted, LOCAL_FOR_* enforced, proxies created once, unknown local ids rejected", async () => {
    const { ByteWriter, ByteReader } = await import("../lib/codec/io.ts");
    const a = new Session(multicallProtocol, "outgoing", { call: () => Promise.reject(new Error("no")) });
    const b = new Session(multicallProtocol, "incoming", { call: () => Promise.reject(new Error("no")) });
    const h = a.registerHandle("IntFunction", (x: number) => x);
    const w = new ByteWriter(64);
    a.writeHandle(w, h, "IntFunction", 2 /* local for sender */, false);
    expect([...w.written()]).toEqual([1, 0, 0, 0, 0]);
    expect(throwStatus(() => a.writeHandle(new ByteWriter(8), h, "IntFunction", 1 /* local for receiver */, false))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => a.writeHandle(new ByteWriter(8), h, "Other", 0, false))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => a.writeHandle(new ByteWriter(8), null, "IntFunction", 0, true))).toBe(Status.INVALID_HANDLE);
    // b receives it: a proxy (REMOTE), the same object each time
    const p1 = b.readHandle(new ByteReader(w.written()), "IntFunction", 2, false) as Handle;
    const p2 = b.readHandle(new ByteReader(w.written()), "IntFunction", 0, false) as Handle;
    expect(p1).toBe(p2);
    expect([p1.location, p1.id, p1.refs]).toEqual([HandleLocation.REMOTE, 0, 1]);
    expect(throwStatus(() => b.readHandle(new ByteReader(w.written()), "IntFunction", 1, false))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => b.readHandle(new ByteReader(w.written()), "Other", 0, false))).toBe(Status.INVALID_HANDLE);
    // b sends it back: locality byte REMOTE(2) from b's view, resolved to a's own handle
    const w2 = new ByteWriter(64);
    b.writeHandle(w2, p1, "IntFunction", 1, false);
    expect([...w2.written()]).toEqual([2, 0, 0, 0, 0]);
    expect(a.readHandle(new ByteReader(w2.written()), "IntFunction", 1, false)).toBe(h);
    // an id a never issued, claimed to be a's: INVALID_HANDLE
    expect(throwStatus(() => a.readHandle(new ByteReader(new Uint8Array([2, 0, 0, 0, 9])), "IntFunction", 0, false))).toBe(Status.INVALID_HANDLE);
    expect(throwStatus(() => a.readHandle(new ByteReader(new Uint8Array([3, 0, 0, 0, 9])), "IntFunction", 0, false))).toBe(Status.MALFORMED);
    expect(throwStatus(() => a.readHandle(new ByteReader(new Uint8Array([1, 0, 0])), "IntFunction", 0, false))).toBe(Status.EOF);
    expect(a.readHandle(new ByteReader(new Uint8Array([0])), "IntFunction", 0, false)).toBe(null);
    expect(throwStatus(() => a.readHandle(new ByteReader(new Uint8Array([0])), "IntFunction", 0, true))).toBe(Status.INVALID_HANDLE);
    // after unregister, sending it is INVALID_HANDLE
    a.unregisterHandle(h);
    expect(throwStatus(() => a.writeHandle(new ByteWriter(8), h, "IntFunction", 0, false))).toBe(Status.INVALID_HANDLE);
  });

  test("server sessions end with their connection: handle cleanups run, then the destructor", async () => {
    const path = sockPath();
    const order: string[] = [];
    const server = counterServer(path);
    server.onSession({ destruct: () => order.push("destruct") });
    server.addDispatch({
      COUNTER_OPEN: (req, call) => ({ tag: "COUNTER_OPEN_SUCCESS", data: call.session.registerHandle("CounterHandle", { counter: req.counter }, () => order.push("cleanup")) }),
    });
    await server.startListen();
    const client = new Peer(counterProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    await s.call({ tag: "COUNTER_OPEN", data: { counter: 1 } });
    await s.call({ tag: "COUNTER_OPEN", data: { counter: 2 } });
    await client.disconnect();
    await until(() => order.length === 3, 3000, "session end");
    expect(order).toEqual(["cleanup", "cleanup", "destruct"]);
    await server.close();
  });

  test("security tokens: to_string, hash, equality as intended (§10.1)", () => {
    const t = localToken(1000, 100, 42);
    expect(tokenToString(t)).toBe("<local euid:1000 egid:100 pid:42>");
    expect(tokenHash(t)).toBe(((100 << 16) ^ 1000) >>> 0);
    expect(tokensEqual(t, localToken(1000, 100, 7))).toBe(true);
    expect(tokensEqual(t, localToken(1001, 100, 42))).toBe(false);
    expect(tokenCanAccess(t, localToken(1000, 101, 42))).toBe(false);
  });

  test("configuration: only while stopped; bad values are INVALID_PARAMETER", async () => {
    const path = sockPath();
    const p = new Peer(multicallProtocol);
    expect(throwStatus(() => (p.maxClients = 0))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => p.setTimeout("idle", -1))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => p.addDispatch({ NOPE: () => undefined } as any))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => p.addListenEndpoint(ConnectionMode.PAIR, path))).toBe(Status.UNSUPPORTED);
    p.addListenEndpoint(ConnectionMode.LOCAL, path);
    await p.startListen();
    expect(throwStatus(() => (p.maxClients = 5))).toBe(Status.INVALID_STATE);
    expect(throwStatus(() => p.setTimeout("message", 5))).toBe(Status.INVALID_STATE);
    await p.close();
    p.maxClients = 5;
    expect(p.maxClients).toBe(5);
  });
});
