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
