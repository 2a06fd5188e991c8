// examples/fserv: the authorisation rule, the original protocol byte for byte
// (what lwmsg's C fcat sends and expects), the clients as child processes, a
// refusal across real users, and the demo `npm start` runs.
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, closeSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { constants as osc } from "node:os";
import { createFileServer, checkPermissions, type OpenEvent } from "../examples/fserv/server.ts";
import { FservClient, FservError } from "../examples/fserv/client.ts";
import { OPEN_MODE } from "../examples/fserv/protocol.ts";
import { localToken } from "../lib/session.ts";
import { connectPath, fdIsCloexec } from "../lib/native/socket.ts";
import { Poller } from "../lib/native/poller.ts";
import { describeFd, fdLeakCheck, openFdCount, openFds } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { otherUser, skipUnlessOtherUser } from "./helpers/other-user.ts";
import { hex, rawPeer, toHex } from "./helpers/raw.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("fserv-");
const E = osc.errno as Record<string, number>;
const dir = new URL("../examples/fserv/", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;
const nobody = otherUser();
let n = 0;
const sock = () => tmp.join(`f${++n}.sock`);

async function withServer<T>(fn: (s: ReturnType<typeof createFileServer>, opens: OpenEvent[]) => Promise<T>): Promise<T> {
  const opens: OpenEvent[] = [];
  const s = createFileServer({ socketPath: sock(), onOpen: (e) => opens.push(e) });
  await s.start();
  try {
    return await fn(s, opens);
  } finally {
    await s.stop();
  }
}

function run(args: string[], opts: { stdin?: Uint8Array; asNobody?: boolean } = {}) {
  // As nobody: the example from a world-readable copy (the checkout may be in a 0700 dir), run from that copy.
  const cmd = opts.asNobody ? nobody.command(args[0]!.slice(root.length), ...args.slice(1)) : [process.execPath, ...args];
  const proc = Bun.spawn(cmd, { stdin: opts.stdin ?? "ignore", stdout: "pipe", stderr: "pipe", cwd: opts.asNobody ? nobody.cwd : tmp.path });
  return Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).then(([out, err, code]) => ({ out, err, code, pid: proc.pid }));
}

describe("fserv_check_permissions", () => {
  const alice = localToken(1000, 1000, 1);
  const bob = localToken(1001, 1001, 2);
  const bobInAlicesGroup = localToken(1001, 1000, 3);
  const root = localToken(0, 0, 4);
  const file = (mode: number) => ({ uid: 1000, gid: 1000, mode: 0o100000 | mode });
  test("owner, group and other bits decide read and write", () => {
    expect(checkPermissions(alice, file(0o600), OPEN_MODE.READ)).toBe(0);
    expect(checkPermissions(alice, file(0o600), OPEN_MODE.READ | OPEN_MODE.WRITE)).toBe(0);
    expect(checkPermissions(alice, file(0o400), OPEN_MODE.WRITE)).toBe(E.EPERM);
    expect(checkPermissions(bob, file(0o600), OPEN_MODE.READ)).toBe(E.EPERM);
    expect(checkPermissions(bob, file(0o604), OPEN_MODE.READ)).toBe(0);
    expect(checkPermissions(bob, file(0o604), OPEN_MODE.WRITE)).toBe(E.EPERM);
    expect(checkPermissions(bob, file(0o606), OPEN_MODE.WRITE | OPEN_MODE.APPEND)).toBe(0);
    expect(checkPermissions(bobInAlicesGroup, file(0o640), OPEN_MODE.READ)).toBe(0);
    expect(checkPermissions(bobInAlicesGroup, file(0o640), OPEN_MODE.WRITE)).toBe(E.EPERM);
    expect(checkPermissions(bobInAlicesGroup, file(0o660), OPEN_MODE.WRITE)).toBe(0);
  });
  test("mode 000 refuses everyone but root; no token refuses", () => {
    expect(checkPermissions(alice, file(0o000), OPEN_MODE.READ)).toBe(E.EPERM);
    expect(checkPermissions(root, file(0o000), OPEN_MODE.READ | OPEN_MODE.WRITE)).toBe(0);
    expect(checkPermissions(null, file(0o777), OPEN_MODE.READ)).toBe(E.EPERM);
    // APPEND alone asks for neither bit (the C server opens it O_RDONLY|O_APPEND)
    expect(checkPermissions(bob, file(0o000), OPEN_MODE.APPEND)).toBe(0);
  });
});

describe("wire: the original fserv protocol byte for byte", () => {
  test("a raw client sending what lwmsg's C fcat sends gets lwmsg's exact replies", async () => {
    const file = tmp.join("wire.txt");
    writeFileSync(file, "abc");
    await withServer(async (s) => {
      const { fd } = connectPath(s.socketPath);
      const raw = await rawPeer(fd);
      let at = 0;
      const next = async (len: number) => {
        const all = await raw.waitBytes(at + len);
        const b = all.subarray(at, at + len);
        at += len;
        return toHex(b);
      };
      const msg = (cookie: number, tag: number, payload: string) => {
        const p = hex(payload);
        const h = new Uint8Array(15 + p.length);
        const v = new DataView(h.buffer);
        v.setUint32(0, h.length);
        h[4] = 1; // MESSAGE
        h[5] = 3; // FIRST|LAST
        h[6] = 0; // request flags
        v.setUint32(7, 0);
        v.setUint16(11, cookie);
        v.setInt16(13, tag);
        h.set(p, 15);
        return h;
      };
      raw.write(hex("00000013 02 03 00 00002000 0102030405060708")); // CONNECT
      const accept = await next(19);
      expect(accept.slice(0, 22)).toBe("0000001303030000002000"); // ACCEPT, packet size 8192
      const path = Buffer.from(file).toString("hex");
      const plen = file.length.toString(16).padStart(8, "0");
      // FSERV_OPEN_REQ { pstr path; OpenMode READ }
      raw.write(msg(0, 0, `ff ${plen} ${path} 01`));
      // FSERV_OPEN_RES: REPLY, status 0, cookie 0, tag 1, handle LOCAL (server's view) id 0
      expect(await next(20)).toBe("00000014" + "0103" + "04" + "00000000" + "0000" + "0001" + "01" + "00000000");
      // FSERV_READ_REQ { handle (REMOTE from our view) 0; uint64 2048 }
      raw.write(msg(1, 2, "02 00000000 0000000000000800"));
      // FSERV_READ_RES { uint64 3; ptr FF 'abc' }
      expect(await next(15 + 12)).toBe("0000001b" + "0103" + "04" + "00000000" + "0001" + "0003" + "0000000000000003" + "ff" + "616263");
      raw.write(msg(2, 2, "02 00000000 0000000000000800"));
      // end of file: size 0, NULL pointer
      expect(await next(15 + 9)).toBe("00000018" + "0103" + "04" + "00000000" + "0002" + "0003" + "0000000000000000" + "00");
      // FSERV_CLOSE_REQ (bare handle) → FSERV_VOID_RES (no payload)
      raw.write(msg(3, 5, "02 00000000"));
      expect(await next(15)).toBe("0000000f" + "0103" + "04" + "00000000" + "0003" + "0006");
      // open of a missing file → FSERV_ERROR_RES { uint32 ENOENT }
      const missing = Buffer.from(tmp.join("nope")).toString("hex");
      raw.write(msg(4, 0, `ff ${(missing.length / 2).toString(16).padStart(8, "0")} ${missing} 01`));
      expect(await next(19)).toBe("00000013" + "0103" + "04" + "00000000" + "0004" + "0007" + "00000002");
      // a handle that is no longer valid: the request decodes as SYNTHETIC INVALID_HANDLE and is answered so
      raw.write(msg(5, 2, "02 00000000 0000000000000800"));
      expect(await next(15)).toBe("0000000f" + "0103" + "04" + "00000017" + "0005" + "ffff");
      raw.close();
    });
  });
});

describe("clients", () => {
  test("FservClient: open/read/write/close, errno replies, and the fd-passing open", async () => {
    const file = tmp.join("rw.txt");
    writeFileSync(file, "0123456789");
    await withServer(async (s, opens) => {
      const c = new FservClient(s.socketPath);
      const h = await c.open(file, OPEN_MODE.READ | OPEN_MODE.WRITE);
      expect(new TextDecoder().decode(await c.read(h, 4))).toBe("0123");
      await c.write(h, new TextEncoder().encode("AB"));
      expect(new TextDecoder().decode(await c.read(h, 100))).toBe("6789");
      expect((await c.read(h, 100)).length).toBe(0);
      await c.close(h);
      expect(readFileSync(file, "utf8")).toBe("0123AB6789");
      const err = (await c.open(tmp.join("missing"), OPEN_MODE.READ).catch((e) => e)) as FservError;
      expect(err).toBeInstanceOf(FservError);
      expect(err.errno).toBe(E.ENOENT);
      // a directory opens for reading, but read(2) on it fails: EISDIR travels back
      const d = await c.open(tmp.path, OPEN_MODE.READ);
      expect(((await c.read(d, 10).catch((e) => e)) as FservError).errno).toBe(E.EISDIR);
      await c.close(d);
      const fd = await c.openFd(file, OPEN_MODE.READ);
      expect(fdIsCloexec(fd)).toBe(true);
      const got = Bun.file(`/proc/self/fd/${fd}`);
      expect(await got.text()).toBe("0123AB6789");
      require("node:fs").closeSync(fd);
      expect(opens.map((o) => [o.via, o.err])).toEqual([
        ["handle", 0],
        ["handle", E.ENOENT],
        ["handle", 0],
        ["fd", 0],
      ]);
      expect(opens[0]!.token?.pid).toBe(process.pid);
      await c.disconnect();
    });
  });

  test("paths travel as exact bytes: a Latin-1 name (caf\\xe9, as a C client sends it) opens that file, not its UTF-8 twin (issue 15)", async () => {
    const latin1 = Buffer.from(tmp.join("caf\xe9.txt"), "latin1");
    const utf8 = Buffer.from(tmp.join("caf\xe9.txt"), "utf8");
    writeFileSync(latin1, "latin1 twin");
    writeFileSync(utf8, "utf8 twin");
    await withServer(async (s, opens) => {
      const c = new FservClient(s.socketPath);
      for (const [path, want] of [[latin1, "latin1 twin"], [utf8, "utf8 twin"]] as const) {
        const h = await c.open(new Uint8Array(path), OPEN_MODE.READ);
        expect(new TextDecoder().decode(await c.read(h, 100))).toBe(want);
        await c.close(h);
      }
      expect(opens.map((o) => [o.err, Buffer.from(o.pathBytes).equals(latin1) ? "latin1" : Buffer.from(o.pathBytes).equals(utf8) ? "utf8" : "?"])).toEqual([
        [0, "latin1"],
        [0, "utf8"],
      ]);
      expect(opens[0]!.path.endsWith("caf\\xe9.txt")).toBe(true);
      expect(opens[1]!.path.endsWith("caf\xe9.txt")).toBe(true);
      await c.disconnect();
    });
  });

  test("a close(2) that fails on the server comes back as FSERV_ERROR_RES with its errno (as fserver-dispatch.c); the client's proxy is released anyway", async () => {
    const file = tmp.join("closed-behind.txt");
    writeFileSync(file, "x");
    await withServer(async (s) => {
      const c = new FservClient(s.socketPath);
      const h = await c.open(file, OPEN_MODE.READ);
      // the server's descriptor for it (the only one open on that path), closed behind the server's back
      const serverFd = openFds().find((fd) => describeFd(fd) === file)!;
      expect(serverFd).toBeGreaterThan(2);
      closeSync(serverFd);
      const err = (await c.close(h).catch((e) => e)) as FservError;
      expect(err).toBeInstanceOf(FservError);
      expect(err.errno).toBe(E.EBADF);
      expect(c.peer.session!.owns(h)).toBe(false);
      await c.disconnect();
    });
  });

  test("files a client leaves open are closed when its session ends", async () => {
    const file = tmp.join("left-open.txt");
    writeFileSync(file, "x");
    await withServer(async (s) => {
      const before = openFdCount();
      const c = new FservClient(s.socketPath);
      for (let i = 0; i < 5; i++) await c.open(file, OPEN_MODE.READ);
      expect(openFdCount()).toBeGreaterThanOrEqual(before + 5);
      await c.disconnect();
      const end = performance.now() + 3000;
      while (openFdCount() > before && performance.now() < end) await Bun.sleep(5);
      expect(openFdCount()).toBe(before);
    });
  });

  test("fcat (child process) prints a file by handle and with --fd; the server saw the child's pid", async () => {
    const file = tmp.join("cat.txt");
    const text = "line one\n".repeat(1000); // 9000 bytes: five 2048-byte reads
    writeFileSync(file, text);
    await withServer(async (s, opens) => {
      const a = await run([dir + "fcat.ts", "--socket", s.socketPath, file]);
      expect(a.err).toBe("");
      expect(a.code).toBe(0);
      expect(a.out).toBe(text);
      expect(opens.at(-1)!.token?.pid).toBe(a.pid);
      expect(opens.at(-1)!.via).toBe("handle");
      const b = await run([dir + "fcat.ts", "--socket", s.socketPath, "--fd", file, file]);
      expect(b.code).toBe(0);
      expect(b.out).toBe(text + text);
      expect(opens.at(-1)!.via).toBe("fd");
      expect(opens.at(-1)!.token?.pid).toBe(b.pid);
      const c = await run([dir + "fcat.ts", "--socket", s.socketPath, tmp.join("does-not-exist")]);
      expect(c.code).toBe(1);
      expect(c.err).toContain("ENOENT");
    });
  });

  test("fsink (child process) writes its stdin into a file", async () => {
    const file = tmp.join("sink.txt");
    writeFileSync(file, "");
    const data = new TextEncoder().encode("sunk through the server\n".repeat(300));
    await withServer(async (s) => {
      const r = await run([dir + "fsink.ts", "--socket", s.socketPath, file], { stdin: data });
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(readFileSync(file, "utf8")).toBe(new TextDecoder().decode(data));
      const again = await run([dir + "fsink.ts", "--socket", s.socketPath, "--append", file], { stdin: new TextEncoder().encode("more\n") });
      expect(again.code).toBe(0);
      expect(readFileSync(file, "utf8").endsWith("server\nmore\n")).toBe(true);
    });
  });

  test.skipIf(skipUnlessOtherUser(nobody))("a client running as another user is refused by owner and mode (EPERM), allowed by the other bits", async () => {
    const file = tmp.join("secret.txt");
    writeFileSync(file, "top secret\n");
    chownSync(file, 0, 0);
    chmodSync(file, 0o600);
    // the unprivileged child must be able to reach the socket and the project files
    chmodSync(tmp.path, 0o755);
    await withServer(async (s, opens) => {
      const denied = await run([dir + "fcat.ts", "--socket", s.socketPath, file], { asNobody: true });
      expect(denied.code).toBe(1);
      expect(denied.err).toContain("EPERM");
      expect(opens.at(-1)!.token?.euid).toBe(65534);
      expect(opens.at(-1)!.err).toBe(E.EPERM);
      chmodSync(file, 0o604);
      const allowed = await run([dir + "fcat.ts", "--socket", s.socketPath, file], { asNobody: true });
      expect(allowed.err).toBe("");
      expect(allowed.out).toBe("top secret\n");
      expect(opens.at(-1)!.token?.euid).toBe(65534);
    });
  });
});

describe("demo (npm start)", () => {
  test("runs end to end, prints the file and the credentials, exits 0, removes its socket", async () => {
    const r = await run([dir + "demo.ts"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("Hello from the lwmsg file server!");
    expect(r.out).toMatch(/server saw: uid \d+ gid \d+ pid \d+ → granted \(handle\)/);
    expect(r.out).toMatch(/server saw: uid \d+ gid \d+ pid \d+ → granted \(fd\)/);
    expect(r.out).toContain("refused (errno 2)");
    expect(r.out).toContain("socket file removed");
    const m = /fserv listening on (\S+)/.exec(r.out);
    expect(m).not.toBeNull();
    expect(existsSync(m![1]!)).toBe(false);
  });
});
