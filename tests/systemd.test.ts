// systemd socket activation (lib/transport/systemd.ts), set up as systemd does it: a real
// child process whose fds 3.. are listening sockets, LISTEN_FDS/LISTEN_FDNAMES in
// its environment and LISTEN_PID set to its own pid by an `sh -c 'LISTEN_PID=$$
// exec …'` wrapper (as systemd-socket-activate does); the parent connects and calls.
import { afterAll, describe, expect, test } from "bun:test";
import { openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { Peer } from "../lib/peer.ts";
import { Poller } from "../lib/native/poller.ts";
import { ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { closeFd, listenPath, socketPair } from "../lib/native/socket.ts";
import { listenFds, SD_LISTEN_FDS_START } from "../lib/transport/systemd.ts";
import { activationProtocol } from "./fixtures/systemd-protocol.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { tempDir } from "./helpers/tmp.ts";

const child = join(import.meta.dir, "fixtures", "systemd-child.ts");
const tmp = tempDir("sd-");
afterAll(() => tmp.remove());
fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });

interface Report {
  envBefore: boolean;
  fds: { fd: number; name: string; family: string }[];
  error: string | null;
  status: number;
  env: string[];
  cloexec: number[];
}

/**
 * Start the fixture as systemd would: `fds` become the child's 3, 4, …; the
 * wrapper sets LISTEN_PID to the pid that then execs bun (`$$`), unless
 * `listenPid` names another one.
 */
function activate(mode: "inspect" | "serve", fds: number[], env: Record<string, string>, opts: { listenPid?: string; families?: string } = {}) {
  return activateScript([child, mode, opts.families ?? "unix"], fds, env, opts.listenPid);
}

function activateScript(args: string[], fds: number[], env: Record<string, string>, listenPid = "$$") {
  return Bun.spawn(["sh", "-c", `LISTEN_PID=${listenPid} exec "$0" "$@"`, process.execPath, ...args], {
    stdio: ["pipe", "pipe", "inherit", ...fds],
    env: { ...process.env, LISTEN_FDS: String(fds.length), ...env },
  });
}

async function inspect(fds: number[], env: Record<string, string> = {}, opts: { listenPid?: string; families?: string } = {}): Promise<Report> {
  const p = activate("inspect", fds, env, opts);
  p.stdin.end();
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  expect(code).toBe(0);
  return JSON.parse(out) as Report;
}

describe("a socket-activated child", () => {
  test("serves the sockets it inherited, named by LISTEN_FDNAMES, and the caller reaches it through each", async () => {
    const paths = [tmp.join("main.sock"), tmp.join("admin.sock")];
    const lfds = paths.map((p) => listenPath(p, 8, 0o600));
    const proc = activate("serve", lfds, { LISTEN_FDNAMES: "main:admin" });
    for (const fd of lfds) closeFd(fd); // the child has its own copies now, as with systemd
    const reader = proc.stdout.getReader();
    const dec = new TextDecoder();
    let buf = "";
    const line = async (): Promise<string> => {
      for (;;) {
        const i = buf.indexOf("\n");
        if (i >= 0) {
          const l = buf.slice(0, i);
          buf = buf.slice(i + 1);
          return l;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error(`child output ended: ${JSON.stringify(buf)}`);
        buf += dec.decode(value, { stream: true });
      }
    };
    try {
      const report = JSON.parse(await line()) as Report;
      expect(report.error).toBeNull();
      expect(report.envBefore).toBe(true); // the wrapper did give it its own pid
      expect(report.fds).toEqual([
        { fd: SD_LISTEN_FDS_START, name: "main", family: "unix" },
        { fd: SD_LISTEN_FDS_START + 1, name: "admin", family: "unix" },
      ]);
      expect(report.cloexec).toEqual([1, 1]);
      expect(report.env).toEqual([]); // LISTEN_* removed: a program it starts is not activated by mistake

      for (const path of paths) {
        const client = new Peer(activationProtocol);
        client.addConnectEndpoint(ConnectionMode.LOCAL, path);
        try {
          const session = await client.connect();
          const reply = await session.call({ tag: "WHO_REQ" });
          expect(reply.data).toEqual({ pid: proc.pid, euid: process.geteuid!() });
        } finally {
          await client.close();
        }
      }
      proc.stdin.end();
      const done = JSON.parse(await line()) as { stopped: boolean; open: number[] };
      expect(done).toEqual({ stopped: true, open: [0, 0] }); // stopListen closed the inherited fds (the Peer owns them)
      expect(await proc.exited).toBe(0);
    } finally {
      reader.releaseLock();
      proc.kill();
      await proc.exited;
    }
  });

  test("LISTEN_PID of another process: not ours, no fds taken, variables still removed", async () => {
    const fd = listenPath(tmp.join("other.sock"), 8, 0o600);
    try {
      const r = await inspect([fd], {}, { listenPid: String(process.pid) });
      expect(r.envBefore).toBe(false);
      expect(r.error).toBeNull();
      expect(r.fds).toEqual([]);
      expect(r.env).toEqual([]);
    } finally {
      closeFd(fd);
    }
  });

  test("a file at fd 3 is refused: not a socket", async () => {
    const fd = openSync(import.meta.path, "r");
    try {
      const r = await inspect([fd], { LISTEN_FDNAMES: "conf" });
      expect(r.status).toBe(Status.INVALID_PARAMETER);
      expect(r.error).toContain('fd 3 ("conf") from LISTEN_FDS is not a socket');
      expect(r.env).toEqual([]);
    } finally {
      closeSync(fd);
    }
  });

  test("a connected socket (what Accept=yes passes) is refused: not listening", async () => {
    const [a, b] = socketPair();
    try {
      const r = await inspect([a]);
      expect(r.status).toBe(Status.INVALID_PARAMETER);
      expect(r.error).toContain('fd 3 ("unknown") from LISTEN_FDS is a stream socket that is not listening');
      expect(r.error).toContain("Accept=no");
    } finally {
      closeFd(a);
      closeFd(b);
    }
  });

  test("a UNIX socket where only TCP is accepted is refused, naming the family", async () => {
    const fd = listenPath(tmp.join("fam.sock"), 8, 0o600);
    try {
      const r = await inspect([fd], {}, { families: "inet,inet6" });
      expect(r.status).toBe(Status.INVALID_PARAMETER);
      expect(r.error).toContain("is a socket of family unix; accepted: inet, inet6");
    } finally {
      closeFd(fd);
    }
  });
});

test("a TCP socket (ListenStream=127.0.0.1:PORT) is taken when inet is allowed, refused by default", async () => {
  const parent = join(import.meta.dir, "fixtures", "systemd-tcp-parent.mjs");
  const viaNode = async (families: string): Promise<Report> => {
    const p = Bun.spawn(["node", parent, process.execPath, child, families], { stdout: "pipe", stderr: "inherit" });
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(code).toBe(0);
    return JSON.parse(out) as Report;
  };
  const taken = await viaNode("unix,inet,inet6");
  expect(taken.error).toBeNull();
  expect(taken.fds).toEqual([{ fd: 3, name: "tcp", family: "inet" }]);
  const refusedByDefault = await viaNode("unix");
  expect(refusedByDefault.status).toBe(Status.INVALID_PARAMETER);
  expect(refusedByDefault.error).toContain('fd 3 ("tcp") from LISTEN_FDS is a socket of family inet; accepted: unix');
});

describe("the environment rules (in-process, on an env object)", () => {
  const pid = 4242;
  const refused = (env: Record<string, string | undefined>): LwMsgError => {
    try {
      listenFds({ env, pid });
    } catch (e) {
      expect(e).toBeInstanceOf(LwMsgError);
      expect((e as LwMsgError).status).toBe(Status.INVALID_PARAMETER);
      expect(Object.keys(env)).toEqual([]); // removed even on failure
      return e as LwMsgError;
    }
    throw new Error("not refused");
  };

  test("no LISTEN_PID, or LISTEN_FDS=0: not activated", () => {
    expect(listenFds({ env: {}, pid })).toEqual([]);
    const env: Record<string, string | undefined> = { LISTEN_PID: "4242", LISTEN_FDS: "0" };
    expect(listenFds({ env, pid })).toEqual([]);
    expect(env).toEqual({});
  });

  test("unsetEnvironment: false leaves the variables", () => {
    const env = { LISTEN_PID: "1", LISTEN_FDS: "1", LISTEN_FDNAMES: "x" };
    expect(listenFds({ env, pid, unsetEnvironment: false })).toEqual([]);
    expect(env).toEqual({ LISTEN_PID: "1", LISTEN_FDS: "1", LISTEN_FDNAMES: "x" });
  });

  test("malformed numbers and a name count that differs from LISTEN_FDS are refused by name", () => {
    expect(refused({ LISTEN_PID: "x42", LISTEN_FDS: "1" }).message).toContain('LISTEN_PID="x42" is not a non-negative integer');
    expect(refused({ LISTEN_PID: "4242", LISTEN_FDS: "-1" }).message).toContain('LISTEN_FDS="-1"');
    expect(refused({ LISTEN_PID: "4242", LISTEN_FDS: "2", LISTEN_FDNAMES: "a:b:c" }).message).toContain("LISTEN_FDNAMES has 3 name(s)");
  });
});

test("examples/systemd: server.ts serves the socket it is handed, client.ts calls it, SIGTERM stops it", async () => {
  const path = tmp.join("lwmsg-demo.sock");
  const fd = listenPath(path, 8, 0o600);
  const server = activateScript([join(import.meta.dir, "..", "examples", "systemd", "server.ts")], [fd], { LISTEN_FDNAMES: "demo" });
  closeFd(fd);
  try {
    const first = await server.stdout.getReader().read();
    expect(new TextDecoder().decode(first.value)).toBe("serving fd 3 (demo) from systemd\n");
    const client = Bun.spawn([process.execPath, join(import.meta.dir, "..", "examples", "systemd", "client.ts"), path], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(client.stdout).text(), new Response(client.stderr).text(), client.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toBe(`served by pid ${server.pid} through "demo"; it saw uid ${process.geteuid!()}\n`);
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  } finally {
    server.kill();
    await server.exited;
  }
});
