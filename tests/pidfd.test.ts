// pidfd identities (issue 15 item 8): with `pidfd: true` a local token
// carries a pidfd of the peer (SO_PEERPIDFD, Linux ≥ 6.5), so a server can
// tell "is that client still the same, running process" without trusting a
// pid that may have been reused. Real processes; skipped (with the reason)
// on kernels without SO_PEERPIDFD.
import { afterAll, describe, expect, test } from "bun:test";
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { native } from "../lib/native/ffi.ts";
import { Poller } from "../lib/native/poller.ts";
import { closeFd, fdIsCloexec, socketPair } from "../lib/native/socket.ts";
import { Peer } from "../lib/peer.ts";
import { pidfdAlive } from "../lib/pidfd.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import type { LocalToken, SecurityToken } from "../lib/token.ts";
import { pidfdProtocol } from "./fixtures/pidfd-child.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { tempDir } from "./helpers/tmp.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = tempDir("pidfd-");
afterAll(() => tmp.remove());
const child = join(import.meta.dir, "fixtures", "pidfd-child.ts");

/** Does this kernel give SO_PEERPIDFD? (ENOPROTOOPT before Linux 6.5.) */
const kernelSupport = (() => {
  const [a, b] = socketPair();
  const r = native.lw_peer_pidfd(a);
  if (r >= 0) closeFd(r);
  closeFd(a);
  closeFd(b);
  return r >= 0 ? null : `SO_PEERPIDFD unavailable (errno ${-r}; needs Linux ≥ 6.5, this is ${require("node:os").release()})`;
})();
if (kernelSupport !== null) console.log(`skipping pidfd tests: ${kernelSupport}`);

function isPidfd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === "anon_inode:[pidfd]";
  } catch {
    return false;
  }
}

describe.skipIf(kernelSupport !== null)("pidfd identities", () => {
  test("a Peer session's token holds the client's pidfd: alive while it runs, not after it was killed; closed when the session ends", async () => {
    const path = tmp.join("p.sock");
    let token: SecurityToken | null = null;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    const server = new Peer(pidfdProtocol, { pidfd: true });
    server.addDispatch({
      HOLD_REQ: async (_d, call) => {
        token = call.token;
        entered();
        await gate;
        return { tag: "HOLD_RES" };
      },
    });
    server.addListenEndpoint(ConnectionMode.LOCAL, path);
    await server.startListen();
    const proc = Bun.spawn([process.execPath, child, path], { stdio: ["ignore", "inherit", "inherit"] });
    await inHandler;
    const t = token! as LocalToken;
    expect(t.type).toBe("local");
    expect(t.pid).toBe(proc.pid);
    expect(typeof t.pidfd).toBe("number");
    expect(isPidfd(t.pidfd!)).toBe(true);
    expect(fdIsCloexec(t.pidfd!)).toBe(true);
    expect(pidfdAlive(t)).toBe(true);
    proc.kill("SIGKILL");
    await proc.exited;
    // The handler still runs, so the session (and its pidfd) lives on: the process it names is gone.
    expect(pidfdAlive(t)).toBe(false);
    release();
    await server.stopListen();
    expect(isPidfd(t.pidfd!)).toBe(false); // the session ended: its pidfd is closed
    expect(() => pidfdAlive(t)).toThrow("INVALID_STATE");
  });

  test("a bare Connection: the pidfd lives as long as the connection; a client gets the server's", async () => {
    const path = tmp.join("c.sock");
    const listener = await Connection.listen(pidfdProtocol, path, { pidfd: true });
    const accepted = listener.accept();
    const client = new Connection(pidfdProtocol, { pidfd: true });
    client.setEndpoint(ConnectionMode.LOCAL, path);
    await client.connect();
    const server = await accepted;
    const st = server.peerToken as LocalToken;
    const ct = client.peerToken as LocalToken;
    expect(st.pid).toBe(process.pid);
    expect(ct.pid).toBe(process.pid);
    expect(pidfdAlive(st)).toBe(true);
    expect(pidfdAlive(ct)).toBe(true);
    await client.close();
    await server.close();
    expect(isPidfd(st.pidfd!)).toBe(false);
    expect(isPidfd(ct.pidfd!)).toBe(false);
    await listener.close();
  });
});

describe("pidfd: opt-in and graceful", () => {
  test("without pidfd: true the token has no pidfd, and pidfdAlive cannot tell (null, falsy)", async () => {
    const [a, b] = socketPair();
    const s = new Connection(pidfdProtocol);
    const c = new Connection(pidfdProtocol, { pidfd: true });
    s.setFd(ConnectionMode.LOCAL, a);
    c.setFd(ConnectionMode.PAIR, b); // PAIR: our own ids, never a pidfd
    await Promise.all([s.accept(), c.connect()]);
    expect("pidfd" in s.peerToken!).toBe(false);
    expect("pidfd" in c.peerToken!).toBe(false);
    expect(pidfdAlive(s.peerToken)).toBe(null);
    expect(pidfdAlive(null)).toBe(null);
    await Promise.all([s.close(), c.close()]);
  });

  test("a pidfd option that is not a boolean is INVALID_PARAMETER", () => {
    let err: unknown = null;
    try {
      new Peer(pidfdProtocol, { pidfd: "yes" as unknown as boolean });
    } catch (e) {
      err = e;
    }
    expect((err as LwMsgError).status).toBe(Status.INVALID_PARAMETER);
    expect((err as LwMsgError).message).toContain("pidfd must be true or false");
  });
});
