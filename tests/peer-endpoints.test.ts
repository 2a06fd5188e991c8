// The peer suite's call, cancel, callback, handle and fd cases over every
// kind of endpoint: LOCAL (a UNIX socket), DIRECT (lwmsg peer-direct.c: the
// same process, no socket, no codec) and REMOTE (TCP and TLS on loopback).
// Each kind must give the same results except where lwmsg itself differs
// (DIRECT's dispatch statuses, fds over REMOTE), and those are checked too.
import { describe, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { Peer, CallError, type Call } from "../lib/peer.ts";
import { ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { Handle, HandleLocation } from "../lib/handle.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdIsOpen } from "../lib/native/socket.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { until } from "./helpers/wait.ts";
import { rejectionStatus } from "./helpers/status.ts";
import { asyncProtocol, counterProtocol, multicallProtocol } from "./fixtures/peer-protocol.ts";
import { endpointKinds, type EndpointKind } from "./helpers/endpoints.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("peer-ep-");

for (const kind of endpointKinds(tmp)) {
  describe(`over ${kind.name}`, () => {
    test("ping and a multicall whose handler calls back into the client (callbacks) for each value", async () => {
      const server = kind.server(new Peer(multicallProtocol, kind.serverOptions));
      const seen: string[] = [];
      server.onSession({ construct: (token) => void seen.push(token.type), destruct() {} });
      server.addDispatch({
        PING_REQUEST: () => ({ tag: "PING_REPLY" }),
        MULTICALL_REQUEST: async (req, call) => {
          const values: number[] = [];
          for (const v of req.values ?? []) values.push((await call.session.call({ tag: "INVOKE_REQUEST", data: { func: req.func, value: v } })).data as number);
          return { tag: "MULTICALL_REPLY", data: { num_values: values.length, values } };
        },
      });
      await server.startListen();
      const client = kind.client(new Peer(multicallProtocol, kind.clientOptions));
      client.addDispatch({
        INVOKE_REQUEST: (req, call) => ({ tag: "INVOKE_REPLY", data: (call.session.getHandleData(req.func!) as (n: number) => number)(req.value) }),
      });
      const s = await client.connect();
      expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
      const double = s.registerHandle("IntFunction", (n: number) => n * 2);
      const r = await s.call({ tag: "MULTICALL_REQUEST", data: { func: double, num_values: 3, values: [1, 2, 3] } });
      expect(r.data).toEqual({ num_values: 3, values: [2, 4, 6] });
      expect(seen).toEqual([kind.tokenType]);
      expect(s.peerToken?.type).toBe(kind.tokenType);
      await client.close();
      await server.close();
    });

    test("cancel: aborting the caller's signal runs the handler's cancel; the caller gets CANCELLED; the session stays usable", async () => {
      const server = kind.server(new Peer(asyncProtocol, kind.serverOptions));
      let started = 0;
      let cancels = 0;
      server.addDispatch({
        SYNC_REQUEST: () => ({ tag: "GENERIC_RESPONSE" }),
        ASYNC_REQUEST: (_d, call: Call) =>
          new Promise((_, reject) => {
            started++;
            call.onCancel(() => {
              cancels++;
              reject(new LwMsgError(Status.CANCELLED, "cancelled"));
            });
          }),
      });
      await server.startListen();
      const client = kind.client(new Peer(asyncProtocol, kind.clientOptions));
      const s = await client.connect();
      const ac = new AbortController();
      const p = s.call({ tag: "ASYNC_REQUEST" }, { signal: ac.signal });
      await until(() => started === 1, 3000, "dispatch");
      ac.abort();
      const e = await p.then(() => null, (x) => x as CallError);
      expect(e).toBeInstanceOf(CallError);
      expect(e!.status).toBe(Status.CANCELLED);
      expect(cancels).toBe(1);
      // a timeout: TIMEOUT at once, the callee is cancelled
      expect(await rejectionStatus(s.call({ tag: "ASYNC_REQUEST" }, { timeout: 50 }))).toBe(Status.TIMEOUT);
      await until(() => cancels === 2, 3000, "the callee's cancel after a timeout");
      expect((await s.call({ tag: "SYNC_REQUEST" })).name).toBe("GENERIC_RESPONSE");
      // an already aborted signal: nothing goes out
      const aborted = new AbortController();
      aborted.abort();
      expect(await rejectionStatus(s.call({ tag: "ASYNC_REQUEST" }, { signal: aborted.signal }))).toBe(Status.CANCELLED);
      expect(started).toBe(2);
      // stopListen cancels what runs and fails the caller
      const q = s.call({ tag: "ASYNC_REQUEST" });
      await until(() => started === 3, 3000, "dispatch");
      await server.stopListen();
      expect(cancels).toBe(3);
      expect(await rejectionStatus(q)).not.toBe(Status.SUCCESS);
      await client.close();
      await server.close();
    });

    test("handles: a server-registered counter travels to the client and back; closing it makes it stale (INVALID_HANDLE)", async () => {
      const server = kind.server(new Peer(counterProtocol, kind.serverOptions));
      const cleaned: number[] = [];
      server.addDispatch({
        COUNTER_OPEN: (req, call) => ({ tag: "COUNTER_OPEN_SUCCESS", data: call.session.registerHandle("CounterHandle", { counter: req.counter }, (d) => void cleaned.push((d as { counter: number }).counter)) }),
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
      await server.startListen();
      const client = kind.client(new Peer(counterProtocol, kind.clientOptions));
      const s = await client.connect();
      const h = (await s.call({ tag: "COUNTER_OPEN", data: { counter: 10 } })).data as Handle;
      expect(h).toBeInstanceOf(Handle);
      if (kind.name !== "DIRECT") expect(s.getHandleLocation(h)).toBe(HandleLocation.REMOTE);
      await Promise.all([1, 2, 3].map((delta) => s.call({ tag: "COUNTER_ADD", data: { handle: h, delta } })));
      expect((await s.call({ tag: "COUNTER_READ", data: h })).data).toEqual({ counter: 16 });
      expect((await s.call({ tag: "COUNTER_CLOSE", data: h })).data).toEqual({ counter: 16 });
      expect(cleaned).toEqual([16]);
      expect(await rejectionStatus(s.call({ tag: "COUNTER_READ", data: h }))).toBe(Status.INVALID_HANDLE);
      await client.close();
      await server.close();
    });

    test("fds in a request: " + (kind.fds ? "the handler gets its own descriptor of the same file" : "refused with INVALID_PARAMETER naming the message, nothing sent, the session still usable"), async () => {
      const file = tmp.join(`fd-${kind.name}.txt`);
      writeFileSync(file, "through the endpoint\n");
      const server = kind.server(new Peer(multicallProtocol, kind.serverOptions));
      let got = "";
      server.addDispatch({
        PING_REQUEST: () => ({ tag: "PING_REPLY" }),
        FD_REQUEST: (req, call) => {
          const fd = call.request!.takeFd(req.fd);
          got = readFileSync(fd, "utf8");
          closeSync(fd); // the handler's copy: the caller's stays open
          return { tag: "FD_REPLY", data: { fd: -1 } };
        },
      });
      await server.startListen();
      const client = kind.client(new Peer(multicallProtocol, kind.clientOptions));
      const s = await client.connect();
      const mine = openSync(file, "r");
      try {
        if (kind.fds) {
          await s.call({ tag: "FD_REQUEST", data: { fd: mine } });
          expect(got).toBe("through the endpoint\n");
          expect(fdIsOpen(mine)).toBe(true);
        } else {
          const e = await s.call({ tag: "FD_REQUEST", data: { fd: mine } }).then(() => null, (x) => x as LwMsgError);
          expect(e?.status).toBe(Status.INVALID_PARAMETER);
          expect(e?.message).toContain("FD_REQUEST");
          expect(e?.message).toContain("fd field fd");
          expect(got).toBe("");
          expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
        }
      } finally {
        closeSync(mine);
      }
      await client.close();
      await server.close();
    });

    test(`a request tag without a handler: ${kind.name === "DIRECT" ? "UNIMPLEMENTED for every case (lwmsg_direct_call_dispatch)" : "MALFORMED above the table, UNSUPPORTED without an entry, UNIMPLEMENTED for null"}`, async () => {
      const server = kind.server(new Peer(multicallProtocol, kind.serverOptions));
      server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }), NULLFN_REQUEST: null });
      await server.startListen();
      const client = kind.client(new Peer(multicallProtocol, kind.clientOptions));
      const s = await client.connect();
      const direct = kind.name === "DIRECT";
      expect(await rejectionStatus(s.call({ tag: "OUT_OF_RANGE_REQUEST" }))).toBe(direct ? Status.UNIMPLEMENTED : Status.MALFORMED);
      expect(await rejectionStatus(s.call({ tag: "UNHANDLED_REQUEST" }))).toBe(direct ? Status.UNIMPLEMENTED : Status.UNSUPPORTED);
      expect(await rejectionStatus(s.call({ tag: "NULLFN_REQUEST" }))).toBe(Status.UNIMPLEMENTED);
      await client.close();
      await server.close();
    });

    test("a refusing session constructor: the client's call fails with SECURITY and the server's exception hook hears of it", async () => {
      const server = kind.server(new Peer(multicallProtocol, kind.serverOptions));
      const heard: number[] = [];
      server.onSession({ construct: () => { throw new LwMsgError(Status.SECURITY, "no"); }, destruct() {} });
      server.onException((e) => void (e instanceof LwMsgError && heard.push(e.status)));
      server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
      await server.startListen();
      const client = kind.client(new Peer(multicallProtocol, kind.clientOptions));
      const s = await client.connect();
      expect(await rejectionStatus(s.call({ tag: "PING_REQUEST" }))).toBe(Status.SECURITY);
      await until(() => heard.length === 1, 3000, "the exception hook");
      expect(heard).toEqual([Status.SECURITY]);
      await client.close();
      await server.close();
    });
  });
}

test("DIRECT: a name can be listened on once per process (BUSY); connecting to a name nobody listens on is NOT_FOUND, and the next endpoint is tried", async () => {
  const a = new Peer(multicallProtocol).addListenEndpoint(ConnectionMode.DIRECT, "dup-name");
  const b = new Peer(multicallProtocol).addListenEndpoint(ConnectionMode.DIRECT, "dup-name");
  await a.startListen();
  const e = await b.startListen().then(() => null, (x) => x as LwMsgError);
  expect(e?.status).toBe(Status.BUSY);
  await a.close();
  const path = tmp.join("fallback.sock");
  const local = new Peer(multicallProtocol).addListenEndpoint(ConnectionMode.LOCAL, path);
  local.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
  await local.startListen();
  const client = new Peer(multicallProtocol).addConnectEndpoint(ConnectionMode.DIRECT, "nobody-here").addConnectEndpoint(ConnectionMode.LOCAL, path);
  const s = await client.connect();
  expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
  expect(s.peerToken?.type).toBe("local");
  await client.close();
  const only = new Peer(multicallProtocol).addConnectEndpoint(ConnectionMode.DIRECT, "nobody-here");
  expect(await rejectionStatus((await only.connect()).call({ tag: "PING_REQUEST" }))).toBe(Status.NOT_FOUND);
  await only.close();
  await local.close();
});

test("DIRECT: handlers never run inside the caller's call(); the request value reaches the handler as the same object", async () => {
  const server = new Peer(multicallProtocol).addListenEndpoint(ConnectionMode.DIRECT, "same-object");
  let received: unknown = null;
  let inside = false;
  server.addDispatch({ ECHO_REQUEST: (d) => ((received = d), { tag: "ECHO_REPLY", data: d }) });
  await server.startListen();
  const client = new Peer(multicallProtocol).addConnectEndpoint(ConnectionMode.DIRECT, "same-object");
  const s = await client.connect();
  await s.call({ tag: "PING_REQUEST" }).catch(() => {}); // establish
  const data = { n: 7, s: "x" };
  inside = true;
  const p = s.call({ tag: "ECHO_REQUEST", data });
  expect(received).toBeNull(); // not yet: the handler runs on a later microtask
  inside = false;
  const r = await p;
  expect(received).toBe(data);
  expect(r.data).toBe(data);
  expect(inside).toBe(false);
  await client.close();
  await server.close();
});

export type { EndpointKind };
