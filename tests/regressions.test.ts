// Regressions from issue 15 (a new user's first programs): each test here failed
// before its fix. Real sockets and processes, fd counts checked.
import { describe, expect, test } from "bun:test";
import { Peer } from "../lib/peer.ts";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { rejectionStatus, rejection } from "./helpers/status.ts";
import { multicallProtocol } from "./fixtures/peer-protocol.ts";
import { socketPair } from "../lib/native/socket.ts";
import { hex, rawPeer, toHex } from "./helpers/raw.ts";
import { encodeGreeting, PacketType } from "../lib/wire.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("regress-");
let n = 0;
const sockPath = () => tmp.join(`r${++n}.sock`);
const NOT_OPEN = 900;


describe("an fd number that is not open (issue 15, bug 1)", () => {
  test("Connection.send fails that message alone with INVALID_PARAMETER naming the fd; nothing is sent; the connection stays usable", async () => {
    const [a, b] = await Connection.pair(multicallProtocol);
    const e = await rejection(a.send({ tag: "FD_REQUEST", data: { fd: NOT_OPEN } }));
    expect(e.status).toBe(Status.INVALID_PARAMETER);
    expect(e.message).toContain(`fd ${NOT_OPEN} is not open`);
    await a.send({ tag: "PING_REQUEST", cookie: 7 });
    const m = await b.recv();
    expect(m.name).toBe("PING_REQUEST"); // the failed message never went out
    expect(m.cookie).toBe(7);
    await a.close();
    await b.close();
  });

  test("Peer call: INVALID_PARAMETER at once (no reconnect loop, the call's timeout not needed); the session stays usable", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol);
    let connects = 0;
    server.onSession({ construct: () => void connects++, destruct() {} });
    server.addDispatch({ FD_REQUEST: () => ({ tag: "FD_REPLY", data: { fd: -1 } }), PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const e = await rejection(s.call({ tag: "FD_REQUEST", data: { fd: NOT_OPEN } }, { timeout: 1000 }));
    expect(e.status).toBe(Status.INVALID_PARAMETER);
    expect(e.message).toContain(`fd ${NOT_OPEN} is not open`);
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    expect(connects).toBe(1); // the same connection: no reconnect
    await client.close();
    await server.close();
  });
});

describe("stopListen and replies already handed over (issue 15, bug 2)", () => {
  test("four concurrent calls whose last handler stops the server from onComplete: all four replies reach the client", async () => {
    for (let round = 0; round < 20; round++) {
      const path = sockPath();
      const server = new Peer(multicallProtocol);
      let done = 0;
      let stopped: Promise<void> | null = null;
      server.addDispatch({
        SLOW_REQUEST: async (req, call) => {
          await Bun.sleep(req.id % 2);
          call.onComplete(() => {
            if (++done === 4) stopped = server.stopListen();
          });
          return { tag: "ECHO_REPLY", data: { n: req.id, s: "done" } } as any;
        },
      });
      server.addListenEndpoint(ConnectionMode.LOCAL, path);
      await server.startListen();
      const client = new Peer(multicallProtocol);
      client.addConnectEndpoint(ConnectionMode.LOCAL, path);
      const s = await client.connect();
      const results = await Promise.allSettled([0, 1, 2, 3].map((id) => s.call({ tag: "SLOW_REQUEST", data: { id } })));
      const failed = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason?.message);
      expect({ round, failed }).toEqual({ round, failed: [] });
      expect(results.map((r) => ((r as PromiseFulfilledResult<any>).value.data as { n: number }).n)).toEqual([0, 1, 2, 3]);
      await stopped;
      await client.close();
      await server.close();
    }
  });
});

test("an error passed on keeps one status prefix (was 'PEER_CLOSE: PEER_CLOSE: …')", () => {
  const inner = new LwMsgError(Status.PEER_CLOSE, "peer closed the connection");
  expect(new LwMsgError(inner.status, inner.message).message).toBe("PEER_CLOSE: peer closed the connection");
});

describe("refused clients (issue 15, bug 3)", () => {
  test("the exception hook hears of each refusal; the client's connect fails with SECURITY; others are served", async () => {
    const path = sockPath();
    const heard: LwMsgError[] = [];
    const server = new Peer(multicallProtocol);
    let admit = false;
    server.onSession({
      construct: () => {
        if (!admit) throw new LwMsgError(Status.SECURITY, "not on the list");
      },
      destruct() {},
    });
    server.onException((e) => void (e instanceof LwMsgError && heard.push(e)));
    server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const c = new Connection(multicallProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    const e = await rejection(c.connect());
    expect(e.status).toBe(Status.SECURITY);
    expect(e.message).toContain("refused");
    expect(heard.length).toBe(1);
    expect(heard[0]!.status).toBe(Status.SECURITY);
    expect(heard[0]!.message).toMatch(/^SECURITY: refused client <local euid:\d+ egid:\d+ pid:\d+>: not on the list$/);
    admit = true;
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    expect((await (await client.connect()).call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    expect(heard.length).toBe(1);
    await client.close();
    await server.close();
  });

  test("on the wire: SHUTDOWN(SECURITY = 13) in place of ACCEPT, then the socket closes", async () => {
    const [fa, fb] = socketPair();
    const server = new Connection(multicallProtocol);
    server.setFd(ConnectionMode.PAIR, fa);
    const raw = await rawPeer(fb);
    raw.write(encodeGreeting(PacketType.CONNECT, 2048, new Uint8Array(8)));
    const refused = await rejection(server.accept(() => { throw new LwMsgError(Status.SECURITY, "no"); }));
    expect(refused.status).toBe(Status.SECURITY);
    expect(toHex(await raw.waitBytes(10))).toBe(toHex(hex("0000000a 05 03 0000000d")));
    await raw.waitEnd();
    raw.close();
  });
});

test("a tag with no handler names the tag; lwmsg's statuses stay (issue 15, bug 5)", async () => {
  const path = sockPath();
  const server = new Peer(multicallProtocol);
  server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }), NULLFN_REQUEST: null, SLOW_REQUEST: () => { throw new LwMsgError(Status.SECURITY, "nope"); } });
  server.addListenEndpoint(ConnectionMode.LOCAL, path);
  await server.startListen();
  const client = new Peer(multicallProtocol);
  client.addConnectEndpoint(ConnectionMode.LOCAL, path);
  const s = await client.connect();
  const unhandled = await rejection(s.call({ tag: "UNHANDLED_REQUEST" }));
  expect(unhandled.status).toBe(Status.UNSUPPORTED);
  expect(unhandled.message).toStartWith("UNSUPPORTED: no handler for UNHANDLED_REQUEST: the server's dispatch table has no entry for tag 10");
  const above = await rejection(s.call({ tag: "OUT_OF_RANGE_REQUEST" }));
  expect(above.status).toBe(Status.MALFORMED);
  expect(above.message).toStartWith("MALFORMED: no handler for OUT_OF_RANGE_REQUEST: tag 40 is above every tag the server dispatches");
  const declared = await rejection(s.call({ tag: "NULLFN_REQUEST" }));
  expect(declared.status).toBe(Status.UNIMPLEMENTED);
  expect(declared.message).toStartWith("UNIMPLEMENTED: no handler for NULLFN_REQUEST");
  const denied = await rejection(s.call({ tag: "SLOW_REQUEST", data: { id: 1 } }));
  expect(denied.status).toBe(Status.SECURITY);
  expect(denied.message).toBe("SECURITY: SLOW_REQUEST failed");
  await client.close();
  await server.close();
});
