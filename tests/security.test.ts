// Security (issue 6.4, SECURITY.md): socket file modes and directory checks,
// what listen() will and will not remove, abstract names, authorisation from
// kernel credentials (real child processes, another uid where we are root),
// the client's check of the server, per-uid and per-session limits, a client
// that does not read, and forged handle ids.
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { Peer } from "../lib/peer.ts";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { Listener } from "../lib/listener.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { MessageFlags } from "../lib/wire.ts";
import { HandleLocation, type Handle } from "../lib/handle.ts";
import { closeFd, listenPath } from "../lib/native/socket.ts";
import { allOf, allowGids, allowUids, anyOf, authorize, sameUser } from "../lib/security.ts";
import { localToken } from "../lib/session.ts";
import type { ByteReader, ByteWriter, HandleCodec } from "../lib/codec/io.ts";
import { fdLeakCheck, openFdCount } from "./helpers/fds.ts";
import { native } from "../lib/native/ffi.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { NOBODY, otherUser, skipUnlessOtherUser } from "./helpers/other-user.ts";
import { until } from "./helpers/wait.ts";
import { rejectionStatus, throwStatus } from "./helpers/status.ts";
import { counterProtocol, multicallProtocol } from "./fixtures/peer-protocol.ts";
import { Poller } from "../lib/native/poller.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });

const tmp = useTempDir("security-");
let n = 0;
const sockPath = () => tmp.join(`s${++n}.sock`);
const abstractName = () => `\0bun-lwmsg-security-${process.pid}-${++n}`;
const child = new URL("./fixtures/security-child.ts", import.meta.url).pathname;
const me = process.geteuid!();
// Children as another uid run from a world-readable copy of what they need (the checkout may be in a 0700 dir).
const nobodyRunner = otherUser();
const cannotSwitchUser = skipUnlessOtherUser(nobodyRunner);

function pingServer(path: string, options: ConstructorParameters<typeof Peer>[1] = {}) {
  const server = new Peer(multicallProtocol, options);
  server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
  return server;
}

async function pingOnce(path: string, authorizeServer?: (t: ReturnType<typeof localToken>) => void): Promise<number> {
  const c = new Connection(multicallProtocol, { timeouts: { establish: 5000, message: 5000 } });
  c.setEndpoint(ConnectionMode.LOCAL, path);
  try {
    await c.connect(authorizeServer);
    const r = await c.transact({ tag: "PING_REQUEST" });
    await c.close();
    return r.status;
  } catch (e) {
    c.destroy();
    if (e instanceof LwMsgError) return e.status;
    throw e;
  }
}

/** A child that opens `count` connections and holds them until release(). */
async function childClients(path: string, count: number, asNobody = false) {
  const cmd = asNobody
    ? nobodyRunner.command("tests/fixtures/security-child.ts", "connect", path, String(count))
    : [process.execPath, child, "connect", path, String(count)];
  const proc = Bun.spawn(cmd, { stdin: "pipe", stdout: "pipe", stderr: "pipe", cwd: asNobody ? nobodyRunner.cwd : undefined });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`child exited early: ${await new Response(proc.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const result = JSON.parse(text.slice(0, text.indexOf("\n"))) as { pid: number; euid: number; statuses: number[] };
  return {
    ...result,
    async release(): Promise<void> {
      proc.stdin.end();
      expect(await proc.exited).toBe(0);
    },
  };
}

/** A directory the nobody user can reach (the temp root is 0700). */
function sharedDir(): string {
  const d = tmp.join(`shared${++n}`);
  mkdirSync(d);
  chmodSync(d, 0o755);
  chmodSync(tmp.path, 0o711);
  return d;
}

describe("listening sockets", () => {
  test("the socket file gets exactly the mode asked for (default 0600), whatever the umask", async () => {
    const old = process.umask(0o022);
    try {
      for (const mode of [undefined, 0o600, 0o660, 0o666, 0o700]) {
        const path = sockPath();
        const l = new Listener(multicallProtocol, path, mode === undefined ? {} : { mode });
        expect(statSync(path).mode & 0o7777).toBe(mode ?? 0o600);
        await l.close();
        const p = sockPath();
        const server = pingServer(p);
        server.addListenEndpoint(ConnectionMode.LOCAL, p, mode ?? 0o600);
        await server.startListen();
        expect(statSync(p).mode & 0o7777).toBe(mode ?? 0o600);
        await server.close();
      }
    } finally {
      process.umask(old);
    }
  });

  test("the socket is made in a private directory and renamed into place (no process-wide umask change), leaving nothing behind; a name too long for that falls back to umask + chmod", async () => {
    const d = tmp.join(`private${++n}`);
    mkdirSync(d);
    const short = `${d}/s.sock`;
    const long = `${d}/${"l".repeat(107 - d.length - 1)}`; // exactly the longest path: no room for the temporary name
    expect(Buffer.byteLength(long)).toBe(107);
    const old = process.umask(0o027);
    try {
      for (const path of [short, long]) {
        const l = new Listener(multicallProtocol, path, { mode: 0o660 });
        expect(statSync(path).mode & 0o7777).toBe(0o660);
        expect(process.umask()).toBe(0o027);
        const c = new Connection(multicallProtocol);
        c.setEndpoint(ConnectionMode.LOCAL, path);
        const [server] = await Promise.all([l.accept(), c.connect()]);
        server.destroy();
        c.destroy();
        await l.close();
      }
    } finally {
      process.umask(old);
    }
    expect(readdirSync(d)).toEqual([]); // no temporary directories, and close removed the sockets
  });

  test("a stale socket file is replaced; a live one is BUSY and keeps serving; a non-socket is INVALID_PARAMETER and left alone", async () => {
    const stale = sockPath();
    closeFd(listenPath(stale, 1, 0o600)); // a server that died without removing its socket
    const l = new Listener(multicallProtocol, stale);
    await l.close();

    const live = sockPath();
    const first = pingServer(live);
    first.addListenEndpoint(ConnectionMode.LOCAL, live);
    await first.startListen();
    expect(throwStatus(() => new Listener(multicallProtocol, live))).toBe(Status.BUSY);
    const second = pingServer(live);
    second.addListenEndpoint(ConnectionMode.LOCAL, live);
    expect(await rejectionStatus(second.startListen())).toBe(Status.BUSY);
    expect(await pingOnce(live)).toBe(Status.SUCCESS); // the first server still owns the path
    await second.close().catch(() => {});
    await first.close();

    const file = tmp.join(`file${++n}`);
    writeFileSync(file, "precious");
    expect(throwStatus(() => new Listener(multicallProtocol, file))).toBe(Status.INVALID_PARAMETER);
    expect(readFileSync(file, "utf8")).toBe("precious");
  });

  test("directory checks: group/world-writable without sticky bit → SECURITY (not sticky for a Peer); sticky or checkDirectory:false pass", async () => {
    for (const [mode, ok] of [[0o777, false], [0o770, false], [0o1777, true], [0o755, true]] as const) {
      const d = tmp.join(`dir${++n}`);
      mkdirSync(d);
      chmodSync(d, mode);
      const path = `${d}/s.sock`;
      if (ok) {
        await new Listener(multicallProtocol, path).close();
      } else {
        expect(throwStatus(() => new Listener(multicallProtocol, path))).toBe(Status.SECURITY);
        const server = pingServer(path);
        server.addListenEndpoint(ConnectionMode.LOCAL, path);
        expect(await rejectionStatus(server.startListen())).toBe(Status.SECURITY);
        expect(server.listenState).toBe("stopped"); // nothing opened, nothing sticky
        await server.close();
        const opted = pingServer(path, { checkDirectory: false });
        opted.addListenEndpoint(ConnectionMode.LOCAL, path);
        await opted.startListen();
        expect(await pingOnce(path)).toBe(Status.SUCCESS);
        await opted.close();
        await new Listener(multicallProtocol, path, { checkDirectory: false }).close();
      }
    }
  });

  test.skipIf(me !== 0)("directory checks: a directory owned by another (non-root) user → SECURITY", () => {
    const d = tmp.join(`owned${++n}`);
    mkdirSync(d);
    chmodSync(d, 0o755);
    chownSync(d, NOBODY, NOBODY);
    expect(throwStatus(() => new Listener(multicallProtocol, `${d}/s.sock`))).toBe(Status.SECURITY);
  });

  test("abstract names: a Peer refuses to listen without a session constructor; authorize(sameUser()) or allowAnyUser lets it", async () => {
    const name = abstractName();
    const bare = pingServer(name);
    bare.addListenEndpoint(ConnectionMode.LOCAL, name);
    const e = await bare.startListen().catch((x) => x);
    expect(e).toBeInstanceOf(LwMsgError);
    expect(e.status).toBe(Status.SECURITY);
    expect(e.message).toContain("abstract");
    expect(bare.listenState).toBe("stopped");
    await bare.close();

    const guarded = pingServer(name).onSession(authorize(sameUser()));
    guarded.addListenEndpoint(ConnectionMode.LOCAL, name);
    await guarded.startListen();
    expect(await pingOnce(name)).toBe(Status.SUCCESS);
    await guarded.close();

    const open = pingServer(name, { allowAnyUser: true });
    open.addListenEndpoint(ConnectionMode.LOCAL, name);
    await open.startListen();
    expect(await pingOnce(name)).toBe(Status.SUCCESS);
    await open.close();
  });

  test("abstract names: Listener.accept() needs an authorize function (or allowAnyUser)", async () => {
    const name = abstractName();
    const l = new Listener(multicallProtocol, name);
    expect(await rejectionStatus(l.accept())).toBe(Status.SECURITY);
    const c = new Connection(multicallProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, name);
    const [server] = await Promise.all([l.accept(sameUser()), c.connect()]);
    expect(server.peerToken!.euid).toBe(me);
    server.destroy();
    c.destroy();
    await l.close();
    const open = new Listener(multicallProtocol, abstractName(), { allowAnyUser: true });
    const c2 = new Connection(multicallProtocol);
    c2.setEndpoint(ConnectionMode.LOCAL, open.path);
    const [s2] = await Promise.all([open.accept(), c2.connect()]);
    s2.destroy();
    c2.destroy();
    await open.close();
  });
});

describe("authorisation checks", () => {
  test("allowUids / allowGids / sameUser / anyOf / allOf decide by the token and refuse with SECURITY naming the peer", () => {
    const t = localToken(1000, 100, 42);
    allowUids([5, 1000])(t);
    expect(throwStatus(() => allowUids([5])(t))).toBe(Status.SECURITY);
    allowGids([100])(t);
    expect(throwStatus(() => allowGids([0])(t))).toBe(Status.SECURITY);
    sameUser()(localToken(me, 0, 1));
    sameUser()(localToken(0, 0, 1)); // root is allowed by default
    expect(throwStatus(() => sameUser({ allowRoot: false })(localToken(me === 0 ? 1 : 0, 0, 1)))).toBe(Status.SECURITY);
    expect(throwStatus(() => sameUser()(localToken(me + 12345, 0, 1)))).toBe(Status.SECURITY);
    anyOf(allowUids([1]), allowGids([100]))(t);
    const e = (() => {
      try {
        anyOf(allowUids([1]), allowGids([2]))(t);
      } catch (x) {
        return x as LwMsgError;
      }
    })()!;
    expect(e.status).toBe(Status.SECURITY);
    expect(e.message).toContain("euid 1000");
    allOf(allowUids([1000]), allowGids([100]))(t);
    expect(throwStatus(() => allOf(allowUids([1000]), allowGids([1]))(t))).toBe(Status.SECURITY);
    // bad arguments are named
    expect(throwStatus(() => allowUids([-1]))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => allowUids(7 as any))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => anyOf())).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => authorize(null as any))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => new Peer(multicallProtocol, { authorizeServer: 5 as any }))).toBe(Status.INVALID_PARAMETER);
  });

  test("authorize() runs the check before the application's constructor, whose data the session keeps", async () => {
    const path = sockPath();
    const seen: unknown[] = [];
    const server = pingServer(path).onSession(
      authorize(allowUids([me]), { construct: (t) => ({ who: t.euid }), destruct: (s) => seen.push(s.data) }),
    );
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    expect(await pingOnce(path)).toBe(Status.SUCCESS);
    await until(() => seen.length === 1, 5000, "destructor");
    expect(seen).toEqual([{ who: me }]);
    await server.close();
  });

  test.skipIf(cannotSwitchUser)("another uid (real child via setpriv): the kernel's credentials decide; a refused client is closed, others keep being served", async () => {
    const d = sharedDir();
    const path = `${d}/s.sock`;
    const refused: LwMsgError[] = [];
    const tokens: number[] = [];
    const server = pingServer(path)
      .onSession(authorize(sameUser(), { construct: (t) => void tokens.push(t.euid, t.pid) }))
      .onException((e) => e instanceof LwMsgError && refused.push(e));
    server.addListenEndpoint(ConnectionMode.LOCAL, path, 0o666);
    await server.startListen();
    const nobody = await childClients(path, 1, true);
    expect(nobody.euid).toBe(NOBODY);
    expect(nobody.statuses).toEqual([Status.SECURITY]); // SHUTDOWN(SECURITY) in place of ACCEPT
    expect(refused.map((e) => e.status)).toEqual([Status.SECURITY]); // and the server's exception hook heard of it
    expect(refused[0]!.message).toContain(`euid:${NOBODY}`);
    await nobody.release();
    const same = await childClients(path, 1);
    expect(same.statuses).toEqual([Status.SUCCESS]);
    expect(tokens).toEqual([me, same.pid]); // uid and pid as the kernel saw them
    await same.release();
    await server.close();

    // and the other way round: an allow-list with only nobody in it
    const only = pingServer(path).onSession(authorize(allowUids([NOBODY])));
    only.addListenEndpoint(ConnectionMode.LOCAL, path, 0o666);
    await only.startListen();
    const ok = await childClients(path, 1, true);
    expect(ok.statuses).toEqual([Status.SUCCESS]);
    await ok.release();
    expect(await pingOnce(path)).toBe(Status.SECURITY);
    await only.close();
  });

  test("a client checks the server's identity: Peer authorizeServer and Connection.connect(authorize) refuse with SECURITY and close", async () => {
    const path = sockPath();
    const server = pingServer(path);
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    expect(await pingOnce(path, allowUids([me + 1]))).toBe(Status.SECURITY);
    expect(await pingOnce(path, allowUids([me]))).toBe(Status.SUCCESS);

    const wary = new Peer(multicallProtocol, { authorizeServer: allowUids([me + 1]) });
    wary.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const ws = await wary.connect(); // lazy: the first call connects
    expect(await rejectionStatus(ws.call({ tag: "PING_REQUEST" }))).toBe(Status.SECURITY);
    expect(await rejectionStatus(ws.call({ tag: "PING_REQUEST" }))).toBe(Status.SECURITY); // every reconnect is checked
    await wary.close();
    const trusting = new Peer(multicallProtocol, { authorizeServer: allowUids([me]) });
    trusting.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await trusting.connect();
    expect((await s.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
    await trusting.close();
    await until(() => server.clientCount === 0, 5000, "server slots released");
    await server.close();
  });
});

describe("limits", () => {
  test("maxClientsPerUid: one uid's extra connections are closed at once; freed slots are reusable; the limit is per uid", async () => {
    const d = sharedDir();
    const path = `${d}/s.sock`;
    const warnings: LwMsgError[] = [];
    const server = pingServer(path, { maxClientsPerUid: 2 }).onException((e) => e instanceof LwMsgError && warnings.push(e));
    server.addListenEndpoint(ConnectionMode.LOCAL, path, 0o666);
    await server.startListen();
    const held = await childClients(path, 3);
    expect(held.statuses.slice(0, 2)).toEqual([Status.SUCCESS, Status.SUCCESS]);
    expect<number[]>([Status.PEER_CLOSE, Status.PEER_RESET]).toContain(held.statuses[2]!);
    expect(warnings.some((w) => w.status === Status.BUSY && w.message.includes(`uid ${me}`))).toBe(true);
    expect<number[]>([Status.PEER_CLOSE, Status.PEER_RESET]).toContain(await pingOnce(path)); // still at the limit
    if (!cannotSwitchUser) {
      const other = await childClients(path, 2, true); // another uid is not affected
      expect(other.statuses).toEqual([Status.SUCCESS, Status.SUCCESS]);
      await other.release();
    }
    await held.release();
    await until(() => server.clientCount === 0, 5000, "slots released");
    expect(await pingOnce(path)).toBe(Status.SUCCESS);
    expect(throwStatus(() => new Peer(multicallProtocol, { maxClientsPerUid: 0 }))).toBe(Status.INVALID_PARAMETER);
    await server.close();
  });

  test("maxFds: fds sent ahead of their message beyond the limit fail the connection with MALFORMED, and every one is closed", async () => {
    const [a, b] = await Connection.pair(multicallProtocol, { maxFds: 4 });
    const before = openFdCount();
    const fds = new Int32Array(6);
    for (let i = 0; i < fds.length; i++) fds[i] = openSync("/dev/null", "r");
    // One byte of a header that never completes, carrying six fds: nothing can claim them.
    expect(native.lw_send(a.socketFd, new Uint8Array([0]), 1, fds, fds.length)).toBe(1);
    for (const fd of fds) closeSync(fd); // ours; the receiver got its own copies
    const e = await b.recv().catch((x) => x);
    expect(e).toBeInstanceOf(LwMsgError);
    expect(e.status).toBe(Status.MALFORMED);
    expect(e.message).toContain("maxFds");
    expect(openFdCount()).toBe(before); // the six received copies were closed at once
    a.destroy();
    b.destroy();
    expect(throwStatus(() => new Connection(multicallProtocol, { maxFds: 0 }))).toBe(Status.INVALID_PARAMETER);
  });

  test("maxClients bounds live sessions: a session whose handler still runs after its client left keeps its slot until the handler ends", async () => {
    const path = sockPath();
    let live = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    const server = new Peer(multicallProtocol, { maxClients: 1 });
    server.onSession({ construct: () => void (most = Math.max(most, ++live)), destruct: () => void live-- });
    server.addDispatch({
      PING_REQUEST: () => ({ tag: "PING_REPLY" }),
      SLOW_REQUEST: async () => {
        started++;
        await gate; // ignores call.signal on purpose
        return { tag: "PING_REPLY" };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const a = new Peer(multicallProtocol);
    a.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const held = (await a.connect()).call({ tag: "SLOW_REQUEST", data: { id: 1 } }).catch((e) => (e as LwMsgError).status);
    await until(() => started === 1, 5000, "handler running");
    await a.disconnect();
    expect(await held).toBe(Status.CANCELLED);
    const b = new Peer(multicallProtocol);
    b.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const bCall = (await b.connect()).call({ tag: "PING_REQUEST" });
    let bDone = false;
    void bCall.then(() => (bDone = true), () => (bDone = true));
    await Bun.sleep(100);
    expect(bDone).toBe(false); // the slot is still A's: B waits in the backlog
    expect(server.clientCount).toBe(1);
    release();
    expect((await bCall).name).toBe("PING_REPLY");
    expect(most).toBe(1);
    await b.close();
    await a.close();
    await server.close();
  });

  test("a dropped client's slot (and socket) stays taken while its goodbye is still flushing; stopListen does not wait for it", async () => {
    const path = sockPath();
    const ended: number[] = [];
    const big = "y".repeat(32 * 1024);
    const server = new Peer(multicallProtocol, { sendQueueLimit: 64 * 1024, timeouts: { message: 150 } });
    server.onSession({ destruct: () => void ended.push(Date.now()) });
    server.addDispatch({ ECHO_REQUEST: (d) => ({ tag: "ECHO_REPLY", data: { n: d.n, s: big } }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const raw = new Connection(multicallProtocol);
    raw.setEndpoint(ConnectionMode.LOCAL, path);
    await raw.connect();
    for (let i = 0; i < 200; i++) void raw.send({ tag: "ECHO_REQUEST", data: { n: i, s: "" }, cookie: i }).catch(() => {});
    // The message timeout drops the client, but its socket is full: the SHUTDOWN cannot be flushed.
    await until(() => (server as any)._closingConns.size === 1, 5000, "the server closing the connection");
    expect(server.clientCount).toBe(1); // still holds its slot and fd
    expect(ended).toEqual([]);
    const t0 = Date.now();
    await server.stopListen(); // must not wait out the 5 s goodbye deadline
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(server.clientCount).toBe(0);
    expect(ended.length).toBe(1);
    raw.destroy();
    await server.close();
  });

  test("maxCallsPerSession: calls beyond the limit are answered BUSY at once; the others complete", async () => {
    const path = sockPath();
    let started = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = new Peer(multicallProtocol, { maxCallsPerSession: 3 });
    server.addDispatch({
      SLOW_REQUEST: async (d) => {
        started++;
        await gate;
        return { tag: "ECHO_REPLY", data: { n: d.id, s: "done" } };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const calls = [0, 1, 2, 3, 4].map((id) => s.call({ tag: "SLOW_REQUEST", data: { id } }).then((r) => (r.data as { n: number }).n, (e) => (e as LwMsgError).status));
    const early = await Promise.race([Promise.all([calls[3], calls[4]]), Bun.sleep(5000).then(() => "stuck")]);
    expect(early).toEqual([Status.BUSY, Status.BUSY]); // answered while the first three still run
    expect(started).toBe(3);
    release();
    expect(await Promise.all(calls)).toEqual([0, 1, 2, Status.BUSY, Status.BUSY]);
    expect((await s.call({ tag: "SLOW_REQUEST", data: { id: 9 } })).data).toEqual({ n: 9, s: "done" });
    expect(throwStatus(() => new Peer(multicallProtocol, { maxCallsPerSession: 0 }))).toBe(Status.INVALID_PARAMETER);
    await client.close();
    await server.close();
  });

  test("a client that sends but never reads: the server stops taking requests once its replies cannot drain, then catches up", async () => {
    const path = sockPath();
    let handled = 0;
    const big = "x".repeat(16 * 1024);
    const server = new Peer(multicallProtocol, { sendQueueLimit: 64 * 1024 });
    server.addDispatch({
      ECHO_REQUEST: (d) => {
        handled++;
        return { tag: "ECHO_REPLY", data: { n: d.n, s: big } };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const raw = new Connection(multicallProtocol);
    raw.setEndpoint(ConnectionMode.LOCAL, path);
    await raw.connect();
    const total = 2000; // 32 MiB of replies if the server kept reading
    const sends: Promise<void>[] = [];
    for (let i = 0; i < total; i++) sends.push(raw.send({ tag: "ECHO_REQUEST", data: { n: i, s: "" }, cookie: i }));
    // Wait until the server stops making progress.
    let last = -1;
    while (handled !== last) {
      last = handled;
      await Bun.sleep(150);
    }
    // Without the throttle it would have handled all of them (and held ~32 MiB of replies).
    expect(handled).toBeLessThan(total / 4);
    expect(handled).toBeGreaterThan(0);
    // Now read: everything is answered, in order, and nothing was lost.
    for (let i = 0; i < total; i++) {
      const r = await raw.recv();
      expect(r.cookie).toBe(i);
      expect((r.data as { n: number }).n).toBe(i);
    }
    await Promise.all(sends);
    expect(handled).toBe(total);
    await raw.close();
    await server.close();
  }, 30_000);
});

describe("forged handle ids", () => {
  /** A handle codec for a raw client that writes whatever id it is told and reads ids back as numbers. */
  function forger() {
    let next = 0;
    const codec: HandleCodec & { use(id: number): void } = {
      use(id: number) {
        next = id;
      },
      writeHandle(w: ByteWriter) {
        w.ensure(5);
        w.buf[w.pos] = HandleLocation.REMOTE; // "yours": local to the server
        w.view.setUint32(w.pos + 1, next);
        w.pos += 5;
      },
      readHandle(r: ByteReader) {
        const loc = r.view.getUint8(r.pos);
        if (loc === 0) {
          r.pos += 1;
          return null;
        }
        const id = r.view.getUint32(r.pos + 1);
        r.pos += 5;
        return { id } as any;
      },
    };
    return codec;
  }

  test("maxRemoteHandles: a peer cannot grow a session's table of its handles without bound (RESOURCE_LIMIT ends the connection)", async () => {
    const path = sockPath();
    const server = new Peer(multicallProtocol, { maxRemoteHandles: 2 });
    server.addDispatch({ MULTICALL_REQUEST: () => ({ tag: "MULTICALL_REPLY", data: { num_values: 0, values: null } }), PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const client = new Peer(multicallProtocol);
    client.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const s = await client.connect();
    const handles = [0, 1, 2].map((i) => s.registerHandle("IntFunction", (x: number) => x + i));
    const send = (func: unknown) => s.call({ tag: "MULTICALL_REQUEST", data: { func: func as any, num_values: 0, values: null } }).then((r) => r.status, (e) => (e as LwMsgError).status);
    expect(await send(handles[0])).toBe(Status.SUCCESS);
    expect(await send(handles[1])).toBe(Status.SUCCESS);
    expect(await send(handles[2])).toBe(Status.PEER_CLOSE); // a third proxy would exceed the bound: the server hangs up
    await until(() => server.clientCount === 0, 5000, "the server dropping the session");
    expect(await pingOnce(path)).toBe(Status.SUCCESS); // others are still served
    expect(throwStatus(() => new Peer(multicallProtocol, { maxRemoteHandles: -1 }))).toBe(Status.INVALID_PARAMETER);
    await client.close();
    await server.close();
  });

  test("ids name handles of the sender's own session only: another session's id is INVALID_HANDLE, or the sender's own object", async () => {
    const path = sockPath();
    const server = new Peer(counterProtocol);
    server.addDispatch({
      COUNTER_OPEN: (d, call) => ({ tag: "COUNTER_OPEN_SUCCESS", data: call.session.registerHandle("CounterHandle", { value: d.counter }) }),
      COUNTER_READ: (h, call) => ({ tag: "COUNTER_READ_SUCCESS", data: { counter: (call.session.getHandleData(h) as { value: number }).value } }),
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const a = new Peer(counterProtocol);
    a.addConnectEndpoint(ConnectionMode.LOCAL, path);
    const sa = await a.connect();
    const secret = (await sa.call({ tag: "COUNTER_OPEN", data: { counter: 1234 } })).data as Handle;
    expect((await sa.call({ tag: "COUNTER_READ", data: secret })).data).toEqual({ counter: 1234 });
    const idOfA = (secret as { id: number }).id;

    const codec = forger();
    const b = new Connection(counterProtocol, { handles: codec });
    b.setEndpoint(ConnectionMode.LOCAL, path);
    await b.connect();
    // B holds no handles: A's id means nothing in B's session.
    codec.use(idOfA);
    await b.send({ tag: "COUNTER_READ", data: {} as any, cookie: 1 });
    const r1 = await b.recv();
    expect([r1.flags, r1.status, r1.cookie]).toEqual([MessageFlags.REPLY, Status.INVALID_HANDLE, 1]);
    // Unknown ids around it too.
    for (const id of [idOfA + 1, 0xffffffff]) {
      codec.use(id);
      await b.send({ tag: "COUNTER_READ", data: {} as any, cookie: 2 });
      expect((await b.recv()).status).toBe(Status.INVALID_HANDLE);
    }
    // B opens its own counter; the same number now names B's object, never A's.
    await b.send({ tag: "COUNTER_OPEN", data: { counter: 7 }, cookie: 3 });
    const own = (await b.recv()).data as unknown as { id: number };
    codec.use(own.id);
    await b.send({ tag: "COUNTER_READ", data: {} as any, cookie: 4 });
    expect((await b.recv()).data).toEqual({ counter: 7 });
    if (own.id === idOfA) {
      codec.use(idOfA);
      await b.send({ tag: "COUNTER_READ", data: {} as any, cookie: 5 });
      expect((await b.recv()).data).toEqual({ counter: 7 });
    }
    // A is untouched.
    expect((await sa.call({ tag: "COUNTER_READ", data: secret })).data).toEqual({ counter: 1234 });
    await b.close();
    await a.close();
    await server.close();
  });
});
