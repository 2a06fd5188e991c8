// Peer.drain and the listening-socket hand-off (issue 15 item 6), in one
// process with real sockets: a server that drains finishes what it runs,
// and what it did not run goes to its successor; a bare Connection (as an
// lwmsg C client would) sees the SHUTDOWN(AGAIN) the server sends.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { Lw } from "../lib/lw.ts";
import { Poller } from "../lib/native/poller.ts";
import { closeFd, socketPair } from "../lib/native/socket.ts";
import { Peer } from "../lib/peer.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { encodeShutdown, shutdownError } from "../lib/wire/packets.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { tempDir } from "./helpers/tmp.ts";

fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });
const tmp = tempDir("drain-");
afterAll(() => tmp.remove());

const proto = Lw.Protocol({
  RUN_REQ: [0, Lw.Struct({ id: Lw.UInt32(), hold: Lw.UInt8() })],
  RUN_RES: [1, Lw.Struct({ id: Lw.UInt32(), by: Lw.String({ notNull: true }) })],
  FD_REQ: [2, Lw.Struct({ fd: Lw.Fd() })],
});

/** A server named `name` that records the ids it runs; a request with `hold` waits until release(). */
function server(name: string) {
  const ran: number[] = [];
  let running = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const peer = new Peer(proto, { timeouts: { establish: 5000 } });
  peer.addDispatch({
    RUN_REQ: async ({ id, hold }) => {
      ran.push(id);
      running++;
      if (hold) await gate;
      running--;
      return { tag: "RUN_RES", data: { id, by: name } };
    },
    FD_REQ: () => ({ tag: "RUN_RES", data: { id: 0, by: name } }),
  });
  return { peer, ran, release, running: () => running };
}

/** Which server answered. */
function by(r: { data: unknown }): string {
  return (r.data as { by: string }).by;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await Bun.sleep(2);
}

describe("Peer.drain", () => {
  test("running calls finish on the old server; a request sent after drain() began runs once, on the successor", async () => {
    const path = tmp.join("a.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    await a.peer.startListen();

    const client = new Peer(proto);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const session = await client.connect();
    const p1 = session.call({ tag: "RUN_REQ", data: { id: 1, hold: 1 } });
    const p2 = session.call({ tag: "RUN_REQ", data: { id: 2, hold: 1 } });
    await until(() => a.running() === 2);

    // The successor takes the very listening socket.
    const handed = a.peer.handOffListenFds();
    expect(handed.map((h) => h.path)).toEqual([path]);
    const b = server("b");
    b.peer.addListenFd(ConnectionMode.LOCAL, handed[0]!.fd);
    await b.peer.startListen();

    const drained = a.peer.drain();
    expect(a.peer.listenState).toBe("stopped"); // stopAccepting is synchronous
    expect(existsSync(path)).toBe(true); // handed off: the file is the successor's now
    const p3 = session.call({ tag: "RUN_REQ", data: { id: 3, hold: 0 } }, { timeout: 10_000 });
    await Bun.sleep(20); // let a read (and drop) request 3 if it is going to
    expect(a.ran).toEqual([1, 2]);
    a.release();

    const [r1, r2, r3] = await Promise.all([p1, p2, p3]);
    expect([by(r1), by(r2), by(r3)]).toEqual(["a", "a", "b"]);
    expect(await drained).toBe(true);
    expect(a.ran).toEqual([1, 2]);
    expect(b.ran).toEqual([3]);
    expect(existsSync(path)).toBe(true); // a's close left it
    // The client goes on with the successor.
    expect(by(await session.call({ tag: "RUN_REQ", data: { id: 4, hold: 0 } }))).toBe("b");
    await client.close();
    await a.peer.close();
    await b.peer.close();
  });

  test("a bare Connection (an lwmsg C client) gets its running call's reply, then SHUTDOWN(AGAIN); its later request is never run", async () => {
    const path = tmp.join("c.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    await a.peer.startListen();
    const conn = new Connection(proto);
    conn.setEndpoint(ConnectionMode.LOCAL, path);
    await conn.connect();
    await conn.send({ tag: "RUN_REQ", data: { id: 1, hold: 1 }, cookie: 7 });
    await until(() => a.running() === 1);
    const drained = a.peer.drain();
    await conn.send({ tag: "RUN_REQ", data: { id: 2, hold: 0 }, cookie: 8 });
    await Bun.sleep(20);
    a.release();
    const reply = await conn.recv();
    expect([reply.cookie, reply.status, reply.data.id]).toEqual([7, Status.SUCCESS, 1]);
    const err = await conn.recv().then(
      () => null,
      (e: LwMsgError) => e,
    );
    // bun-lwmsg keeps AGAIN (a deviation); the C library's recv reports PEER_ABORT for it (§3.3).
    expect(err?.status).toBe(Status.AGAIN);
    expect(err?.message).toContain("SHUTDOWN with AGAIN");
    expect(await drained).toBe(true);
    expect(a.ran).toEqual([1]);
    expect(existsSync(path)).toBe(false); // not handed off: removed as by stopListen
    await conn.close();
    await a.peer.close();
  });

  test("a request with fd fields is not re-sent (its fds may be closed by now): it fails with AGAIN, not run", async () => {
    const path = tmp.join("g.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    await a.peer.startListen();
    const client = new Peer(proto);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const session = await client.connect();
    const p1 = session.call({ tag: "RUN_REQ", data: { id: 1, hold: 1 } });
    await until(() => a.running() === 1);
    const drained = a.peer.drain();
    const [r, w] = socketPair();
    const pf = session.call({ tag: "FD_REQ", data: { fd: r } }).then(
      () => null,
      (e: LwMsgError) => e,
    );
    await Bun.sleep(20);
    a.release();
    expect(by(await p1)).toBe("a");
    const e = await pf;
    expect(e?.status).toBe(Status.AGAIN);
    expect(e?.message).toContain("FD_REQ was not run");
    expect(await drained).toBe(true);
    closeFd(r);
    closeFd(w);
    await client.close();
  });

  test("SHUTDOWN's status on the wire is AGAIN = 2; other unknown statuses still read as PEER_ABORT", () => {
    expect([...encodeShutdown(Status.AGAIN)]).toEqual([0, 0, 0, 10, 5, 3, 0, 0, 0, 2]);
    expect(shutdownError(Status.AGAIN).status).toBe(Status.AGAIN);
    expect(shutdownError(Status.ERROR).status).toBe(Status.PEER_ABORT);
    expect(shutdownError(Status.PEER_RESET).status).toBe(Status.PEER_RESET);
  });

  test("a call whose server closes with any other status still fails (no retry without AGAIN's guarantee)", async () => {
    const path = tmp.join("d.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    await a.peer.startListen();
    const client = new Peer(proto);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const session = await client.connect();
    const p = session.call({ tag: "RUN_REQ", data: { id: 1, hold: 1 } });
    await until(() => a.running() === 1);
    const stopped = a.peer.stopListen();
    const e = await p.then(() => null, (x: LwMsgError) => x);
    expect(e?.status).toBe(Status.PEER_CLOSE);
    a.release();
    await stopped;
    expect(a.ran).toEqual([1]);
    await client.close();
  });

  test("drain's bound: a call still running when it expires is cancelled as by stopListen", async () => {
    const path = tmp.join("e.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    await a.peer.startListen();
    const client = new Peer(proto);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const session = await client.connect();
    const p = session.call({ tag: "RUN_REQ", data: { id: 1, hold: 1 } });
    await until(() => a.running() === 1);
    const failed = p.then(() => null, (x: LwMsgError) => x);
    const clean = a.peer.drain({ timeout: 50 });
    // The handler waits on its gate; the drain's bound runs out first and drops the connection
    // (the handler's call.signal aborts); like stopListen, drain resolves once the handler has settled.
    expect((await failed)?.status).toBe(Status.PEER_CLOSE);
    a.release();
    expect(await clean).toBe(false);
    await client.close();
    await a.peer.close();
  });

  test("handOffListenFds needs a listening peer; stopAccepting keeps connections", async () => {
    const path = tmp.join("f.sock");
    const a = server("a");
    a.peer.addListenEndpoint(ConnectionMode.LOCAL, path);
    expect(() => a.peer.handOffListenFds()).toThrow("INVALID_STATE");
    await a.peer.startListen();
    const client = new Peer(proto);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const session = await client.connect();
    await session.call({ tag: "RUN_REQ", data: { id: 1, hold: 0 } });
    a.peer.stopAccepting();
    expect(existsSync(path)).toBe(false); // not handed off: removed
    expect(by(await session.call({ tag: "RUN_REQ", data: { id: 2, hold: 0 } }))).toBe("a");
    await client.close();
    await a.peer.close();
  });
});
