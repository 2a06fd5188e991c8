/**
 * The native layer against the real kernel: SCM_RIGHTS fd passing, MSG_CTRUNC,
 * peer credentials from a real child process, connect/listen errors and
 * modes, abstract names, close-on-exec, and both Poller wake mechanisms.
 * No mocks: every test uses real sockets and could fail.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ptr } from "bun:ffi";
import { closeSync, openSync, readSync, statSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { native } from "../lib/native/ffi.ts";
import {
  acceptFd,
  closeFd,
  connectPath,
  dupFd,
  fdIsCloexec,
  fdIsOpen,
  listenPath,
  peerCredentials,
  selfCredentials,
  socketPair,
} from "../lib/native/socket.ts";
import { HANGUP, Poller, READABLE, WRITABLE, type PollerMechanism } from "../lib/native/poller.ts";
import { Errno, LwMsgError, Status } from "../lib/status.ts";
import { describeFd, fdLeakCheck, openFdCount } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";

const MSG_CTRUNC = 0x8;
const SCM_MAX_FD = 253; // include/net/scm.h
const childScript = join(import.meta.dir, "fixtures", "native-child.ts");

// FFI buffers: ArrayBuffer-backed (never FastTypedArray storage) and kept referenced for the whole file.
const sendBuf = new Uint8Array(new ArrayBuffer(4096));
const recvBuf = new Uint8Array(new ArrayBuffer(4096));
const fdsToSend = new Int32Array(new ArrayBuffer(512 * 4));
const fdsReceived = new Int32Array(new ArrayBuffer(256 * 4));
const recvOut = new Int32Array(new ArrayBuffer(2 * 4));

function sendWithFds(sock: number, bytes: ArrayLike<number>, fds: readonly number[]): number {
  sendBuf.set(bytes);
  fdsToSend.set(fds);
  return native.lw_send(sock, ptr(sendBuf), bytes.length, ptr(fdsToSend), fds.length);
}

function recvWithFds(sock: number, max = recvBuf.length): { ret: number; data: Uint8Array; fds: number[]; flags: number } {
  const ret = native.lw_recv(sock, ptr(recvBuf), max, ptr(fdsReceived), ptr(recvOut));
  return {
    ret,
    data: recvBuf.slice(0, Math.max(0, ret)),
    fds: Array.from(fdsReceived.subarray(0, recvOut[0]!)),
    flags: recvOut[1]!,
  };
}

/** Plain byte read from a socket fd (no fds expected). */
function readByte(fd: number): number {
  const r = recvWithFds(fd, 1);
  if (r.ret !== 1) throw new Error(`read from fd ${fd} gave ${r.ret}`);
  for (const f of r.fds) closeFd(f);
  return r.data[0]!;
}

function writeByte(fd: number, b: number): void {
  expect(sendWithFds(fd, [b], [])).toBe(1);
}

/** Resolves when `fd` is readable (a few ms of async polling, never a long block). */
async function waitReadable(fd: number, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (native.lw_wait_readable(fd, 0) !== 1) {
    if (performance.now() > deadline) throw new Error(`fd ${fd} not readable within ${timeoutMs} ms`);
    await Bun.sleep(1);
  }
}

async function acceptWithin(lfd: number, timeoutMs = 5000): Promise<number> {
  await waitReadable(lfd, timeoutMs);
  const fd = acceptFd(lfd);
  if (fd < 0) throw new Error(`accept gave ${fd}`);
  return fd;
}

function expectStatus(fn: () => unknown, status: number): LwMsgError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LwMsgError);
    expect((e as LwMsgError).status).toBe(status as Status);
    return e as LwMsgError;
  }
  throw new Error(`expected LwMsgError with status ${status}, nothing was thrown`);
}

const tmp = useTempDir("native-");
// Snapshot after one throwaway child process: Bun opens a few long-lived fds on its first spawn.
fdLeakCheck({
  warmup: async () => {
    await Bun.spawn([process.execPath, "-e", "0"], { stdout: "ignore", stderr: "ignore" }).exited;
  },
});

describe("SCM_RIGHTS fd passing", () => {
  let a = -1;
  let b = -1;
  beforeAll(() => {
    [a, b] = socketPair();
  });
  afterAll(() => {
    closeFd(a);
    closeFd(b);
  });

  /**
   * Sends `n` socketpair ends in one sendmsg and checks each received fd is the
   * same socket (same inode, in order), usable, and close-on-exec.
   */
  function passSockets(n: number): void {
    const pairs = Array.from({ length: n }, () => socketPair());
    const sent = pairs.map((p) => p[0]);
    try {
      expect(sendWithFds(a, [0x46, n & 0xff], sent)).toBe(2);
      const r = recvWithFds(b);
      try {
        expect(r.ret).toBe(2);
        expect(r.flags & MSG_CTRUNC).toBe(0);
        expect(r.fds.length).toBe(n);
        expect(Array.from(r.data)).toEqual([0x46, n & 0xff]);
        for (let i = 0; i < n; i++) {
          const got = r.fds[i]!;
          expect(got).toBeGreaterThan(2);
          expect(sent).not.toContain(got); // a new descriptor...
          expect(describeFd(got)).toBe(describeFd(sent[i]!)); // ...for the same socket, in order
          expect(fdIsCloexec(got)).toBe(true);
          // usable: bytes written into the other end of pair i come out of received fd i
          writeByte(pairs[i]![1], i & 0xff);
          expect(readByte(got)).toBe(i & 0xff);
        }
      } finally {
        for (const f of r.fds) closeFd(f);
      }
    } finally {
      for (const [x, y] of pairs) {
        closeFd(x);
        closeFd(y);
      }
    }
  }

  test("1 fd", () => passSockets(1));
  test("10 fds", () => passSockets(10));
  test(`${SCM_MAX_FD} fds (SCM_MAX_FD) in one sendmsg`, () => passSockets(SCM_MAX_FD));

  test("files: received fds read the content and share the open file description", () => {
    const paths = [0, 1, 2].map((i) => tmp.join(`file-${i}.txt`));
    paths.forEach((p, i) => writeFileSync(p, `content of file ${i}\n`));
    const opened = paths.map((p) => openSync(p, "r"));
    try {
      // Interleave with a socket so the kinds mix inside one control message.
      const [s0, s1] = socketPair();
      expect(sendWithFds(a, [1], [opened[0]!, s0, opened[1]!, opened[2]!])).toBe(1);
      const r = recvWithFds(b);
      try {
        expect(r.fds.length).toBe(4);
        const files = [r.fds[0]!, r.fds[2]!, r.fds[3]!];
        const buf = Buffer.alloc(64);
        files.forEach((fd, i) => {
          expect(fdIsCloexec(fd)).toBe(true);
          const n = readSync(fd, buf, 0, 8, null); // advances the shared offset
          expect(buf.subarray(0, n).toString()).toBe("content ");
          // the sender's fd continues where the receiver stopped: one open file description
          const m = readSync(opened[i]!, buf, 0, 64, null);
          expect(buf.subarray(0, m).toString()).toBe(`of file ${i}\n`);
        });
        writeByte(s1, 0x7a);
        expect(readByte(r.fds[1]!)).toBe(0x7a);
      } finally {
        for (const f of r.fds) closeFd(f);
        closeFd(s0);
        closeFd(s1);
      }
    } finally {
      for (const f of opened) closeSync(f);
    }
  });

  test("the same fd several times arrives as distinct descriptors", () => {
    const [x, y] = socketPair();
    try {
      expect(sendWithFds(a, [9], [x, x, x])).toBe(1);
      const r = recvWithFds(b);
      expect(r.fds.length).toBe(3);
      expect(new Set(r.fds).size).toBe(3);
      for (const f of r.fds) {
        expect(describeFd(f)).toBe(describeFd(x));
        closeFd(f);
      }
    } finally {
      closeFd(x);
      closeFd(y);
    }
  });

  // Linux: SCM_MAX_FD is 253; a cmsg with more fds fails the whole sendmsg with
  // EINVAL (nothing is sent). The shim's own cap is LW_MAX_FDS = 256; above it
  // the shim refuses with -EINVAL before calling the kernel.
  test.each([254, 256, 257, 400])("%i fds in one sendmsg is refused with EINVAL and nothing is sent", (n) => {
    const [x, y] = socketPair();
    try {
      const ret = sendWithFds(a, [1], new Array(n).fill(x));
      expect(ret).toBe(-Errno.EINVAL);
      expect(recvWithFds(b).ret).toBe(-Errno.EAGAIN); // nothing arrived
    } finally {
      closeFd(x);
      closeFd(y);
    }
  });

  test("fds sent with a partial read stay with the first byte (stream semantics)", () => {
    const [x, y] = socketPair();
    try {
      expect(sendWithFds(a, [1, 2, 3, 4], [x])).toBe(4);
      const first = recvWithFds(b, 1);
      expect(first.ret).toBe(1);
      expect(first.fds.length).toBe(1);
      const rest = recvWithFds(b);
      expect(rest.ret).toBe(3);
      expect(rest.fds.length).toBe(0);
      closeFd(first.fds[0]!);
    } finally {
      closeFd(x);
      closeFd(y);
    }
  });

  test("MSG_CTRUNC is reported when RLIMIT_NOFILE leaves room for only some fds (child process)", async () => {
    const sock = tmp.join("ctrunc.sock");
    const lfd = listenPath(sock, 8, 0o600);
    const pairs = Array.from({ length: 10 }, () => socketPair());
    let cfd = -1;
    try {
      // `ulimit -n 64` sets soft and hard; Bun raises soft to hard at start, so 64 it is.
      const child = Bun.spawn(["sh", "-c", 'ulimit -n 64 && exec "$0" "$@"', process.execPath, childScript, "ctrunc", sock], {
        stdout: "pipe",
        stderr: "pipe",
      });
      cfd = await acceptWithin(lfd);
      await waitReadable(cfd);
      expect(readByte(cfd)).toBe(0x52);
      expect(sendWithFds(cfd, [0x46], pairs.map((p) => p[0]))).toBe(1);
      const [code, out, err] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
      expect(err).toBe("");
      expect(code).toBe(0);
      const r = JSON.parse(out.trim());
      expect(r.fillErr).toBe(-Errno.EMFILE); // the table really was full
      expect(r.filled).toBeLessThanOrEqual(64);
      expect(r.ret).toBe(1); // payload still delivered...
      expect(r.flags & MSG_CTRUNC).toBe(MSG_CTRUNC); // ...but the control data was cut
      expect(r.count).toBeLessThan(10); // only the fds that fit were installed, and returned so they can be closed
      expect(r.count).toBeLessThanOrEqual(3);
      expect(r.cloexec.every(Boolean)).toBe(true);
    } finally {
      closeFd(cfd);
      closeFd(lfd);
      for (const [x, y] of pairs) {
        closeFd(x);
        closeFd(y);
      }
    }
  });
});

describe("peer credentials", () => {
  test("socketpair: both ends report this process", () => {
    const [x, y] = socketPair();
    try {
      const me = selfCredentials();
      expect(me).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
      expect(peerCredentials(x)).toEqual(me);
      expect(peerCredentials(y)).toEqual(me);
    } finally {
      closeFd(x);
      closeFd(y);
    }
  });

  test("a real child process: server sees the child's pid, child sees the server's", async () => {
    const sock = tmp.join("peer.sock");
    const lfd = listenPath(sock, 8, 0o600);
    let cfd = -1;
    try {
      const child = Bun.spawn([process.execPath, childScript, "peer", sock], { stdout: "pipe", stderr: "pipe" });
      cfd = await acceptWithin(lfd);
      const serverView = peerCredentials(cfd);
      const outText = (async () => {
        // read the child's one line, then hang up so it exits
        const reader = child.stdout.getReader();
        let s = "";
        while (!s.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          s += new TextDecoder().decode(value);
        }
        reader.releaseLock();
        return s;
      })();
      const line = await outText;
      closeFd(cfd);
      cfd = -1;
      expect(await child.exited).toBe(0);
      const childView = JSON.parse(line.trim());
      expect(serverView.pid).toBe(child.pid);
      expect(serverView.uid).toBe(process.getuid!());
      expect(serverView.gid).toBe(process.getgid!());
      expect(childView.pid).toBe(child.pid);
      expect(childView.peer).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
      expect(childView.self.pid).toBe(child.pid);
    } finally {
      closeFd(cfd);
      closeFd(lfd);
    }
  });
});

describe("connect / listen", () => {
  test("a bound path with no listener: CONNECTION_REFUSED", () => {
    const sock = tmp.join("dead.sock");
    closeFd(listenPath(sock, 8, 0o600)); // socket file stays, nobody listens
    expect(existsSync(sock)).toBe(true);
    const e = expectStatus(() => connectPath(sock), Status.CONNECTION_REFUSED);
    expect(e.errno).toBe(Errno.ECONNREFUSED);
  });

  test("a missing path: FILE_NOT_FOUND", () => {
    const e = expectStatus(() => connectPath(tmp.join("no-such.sock")), Status.FILE_NOT_FOUND);
    expect(e.errno).toBe(Errno.ENOENT);
  });

  test("path length: 107 bytes work, 108 is INVALID_PARAMETER (connect and listen)", async () => {
    const dir = tmp.path + "/";
    const fits = dir + "x".repeat(107 - dir.length);
    const tooLong = dir + "y".repeat(108 - dir.length);
    expect(Buffer.byteLength(fits)).toBe(107);
    const lfd = listenPath(fits, 4, 0o600);
    try {
      const c = connectPath(fits);
      expect(c.fd).toBeGreaterThan(2);
      const s = await acceptWithin(lfd);
      closeFd(s);
      closeFd(c.fd);
    } finally {
      closeFd(lfd);
    }
    expectStatus(() => listenPath(tooLong, 4, 0o600), Status.INVALID_PARAMETER);
    expectStatus(() => connectPath(tooLong), Status.INVALID_PARAMETER);
    expectStatus(() => connectPath("/tmp/" + "z".repeat(300)), Status.INVALID_PARAMETER);
    // The shim enforces the same bound on its own (ENAMETOOLONG), whatever JS checked.
    const raw = new TextEncoder().encode(tooLong);
    expect(native.lw_listen(raw, raw.length, 4, 0o600)).toBe(-Errno.ENAMETOOLONG);
    expect(native.lw_connect(raw, raw.length, new Int32Array(1))).toBe(-Errno.ENAMETOOLONG);
    expect(existsSync(tooLong)).toBe(false);
  });

  test("empty path and embedded NUL are INVALID_PARAMETER", () => {
    expectStatus(() => connectPath(""), Status.INVALID_PARAMETER);
    expectStatus(() => listenPath(tmp.join("a\0b"), 4, 0o600), Status.INVALID_PARAMETER);
  });

  test("abstract namespace: listen, connect, exchange, no file created", async () => {
    const name = `\0bun-lwmsg-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const lfd = listenPath(name, 4, 0o600);
    try {
      const c = connectPath(name);
      const s = await acceptWithin(lfd);
      try {
        writeByte(c.fd, 0x61);
        expect(readByte(s)).toBe(0x61);
        writeByte(s, 0x62);
        expect(readByte(c.fd)).toBe(0x62);
        expect(peerCredentials(s).pid).toBe(process.pid);
        expect(describeFd(s)).toMatch(/^socket:\[\d+\]$/);
      } finally {
        closeFd(s);
        closeFd(c.fd);
      }
      // a different abstract name (same bytes minus the tail) is a different socket
      expectStatus(() => connectPath(name.slice(0, -1)), Status.CONNECTION_REFUSED);
    } finally {
      closeFd(lfd);
    }
    // once closed, the abstract name is gone
    expectStatus(() => connectPath(name), Status.CONNECTION_REFUSED);
  });

  for (const [mode, expected] of [
    [0o600, 0o600],
    [0o666, 0o666],
    [0o660, 0o660],
  ] as const) {
    test(`listenPath(p, 8, 0o${mode.toString(8)}) leaves the socket file with mode 0${expected.toString(8)}`, () => {
    const sock = tmp.join(`mode-${mode.toString(8)}.sock`);
    const lfd = listenPath(sock, 8, mode);
    try {
      const st = statSync(sock);
      expect(st.isSocket()).toBe(true);
      expect(st.mode & 0o777).toBe(expected);
    } finally {
      closeFd(lfd);
    }
    });
  }

  test("listen replaces a stale socket file", async () => {
    const sock = tmp.join("stale.sock");
    closeFd(listenPath(sock, 4, 0o600));
    const lfd = listenPath(sock, 4, 0o600);
    try {
      const c = connectPath(sock);
      const s = await acceptWithin(lfd);
      closeFd(s);
      closeFd(c.fd);
    } finally {
      closeFd(lfd);
    }
  });

  test("acceptFd with nothing pending returns -EAGAIN (non-blocking listener)", () => {
    const lfd = listenPath(tmp.join("idle.sock"), 4, 0o600);
    try {
      expect(acceptFd(lfd)).toBe(-Errno.EAGAIN);
    } finally {
      closeFd(lfd);
    }
  });

  test("every fd the library creates is O_CLOEXEC, above 2 and non-blocking", async () => {
    const sock = tmp.join("cloexec.sock");
    const lfd = listenPath(sock, 4, 0o600);
    const [x, y] = socketPair();
    const c = connectPath(sock);
    const s = await acceptWithin(lfd);
    const d = dupFd(x);
    const all = [lfd, x, y, c.fd, s, d];
    try {
      for (const fd of all) {
        expect(fd).toBeGreaterThan(2);
        expect(fdIsCloexec(fd)).toBe(true);
      }
      // non-blocking: a read on an empty socket returns EAGAIN instead of hanging the test
      for (const fd of [x, y, c.fd, s, d]) expect(recvWithFds(fd).ret).toBe(-Errno.EAGAIN);
    } finally {
      for (const fd of all) closeFd(fd);
    }
    for (const fd of all) expect(fdIsOpen(fd)).toBe(false);
  });

  test("recv reports EOF as 0 after the peer closes", () => {
    const [x, y] = socketPair();
    closeFd(x);
    expect(recvWithFds(y).ret).toBe(0);
    closeFd(y);
  });
});

describe.each(["doorbell", "callback"] as PollerMechanism[])("Poller (%s)", (mechanism) => {
  const N = 8;
  let poller: Poller;
  let pairs: [number, number][] = [];
  beforeAll(() => {
    poller = new Poller(mechanism);
    pairs = Array.from({ length: N }, () => socketPair());
  });
  afterAll(() => {
    poller.close();
    for (const [x, y] of pairs) {
      closeFd(x);
      closeFd(y);
    }
  });

  /** Collects onReady calls per index until `expected` indices have reported (or timeout). */
  function collector() {
    const seen = new Map<number, number>();
    let wake: (() => void) | null = null;
    return {
      seen,
      onReady: (i: number) => (events: number) => {
        seen.set(i, (seen.get(i) ?? 0) | events);
        wake?.();
      },
      async until(count: number, timeoutMs = 3000) {
        const deadline = performance.now() + timeoutMs;
        while (seen.size < count) {
          const left = deadline - performance.now();
          if (left <= 0) throw new Error(`only ${seen.size}/${count} fds reported: ${[...seen.keys()]}`);
          await new Promise<void>((res) => {
            wake = res;
            setTimeout(res, Math.min(left, 50));
          });
          wake = null;
        }
      },
    };
  }

  test("delivers readiness for several fds, only the ready ones, and re-arm works", async () => {
    poller.ref();
    try {
      const col = collector();
      const watches = pairs.map(([r], i) => poller.watch(r, col.onReady(i)));
      for (const w of watches) w.arm(READABLE);
      const ready = [0, 2, 3, 7];
      const wakesBefore = poller.wakes;
      for (const i of ready) writeByte(pairs[i]![1], i);
      await col.until(ready.length);
      await Bun.sleep(20); // nothing else shows up
      expect([...col.seen.keys()].sort()).toEqual(ready);
      for (const i of ready) expect(col.seen.get(i)! & READABLE).toBe(READABLE);
      expect(poller.wakes).toBeGreaterThan(wakesBefore);

      // One-shot: without re-arm, more data on a reported fd stays quiet.
      col.seen.clear();
      writeByte(pairs[0]![1], 1);
      await Bun.sleep(30);
      expect(col.seen.size).toBe(0);

      // Drain and re-arm: fd 0 (still has data) reports at once; 2 reports on new data;
      // the never-written ones are still armed from the start and report when written.
      for (const i of ready) while (recvWithFds(pairs[i]![0]).ret > 0);
      writeByte(pairs[0]![1], 1);
      watches[0]!.arm(READABLE);
      watches[2]!.arm(READABLE);
      writeByte(pairs[2]![1], 2);
      writeByte(pairs[5]![1], 5);
      await col.until(3);
      await Bun.sleep(20);
      expect([...col.seen.keys()].sort()).toEqual([0, 2, 5]);

      // Several rounds of re-arming on every fd.
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < N; i++) while (recvWithFds(pairs[i]![0]).ret > 0);
        col.seen.clear();
        for (const w of watches) w.arm(READABLE);
        for (let i = 0; i < N; i++) writeByte(pairs[i]![1], round);
        await col.until(N);
      }
      for (let i = 0; i < N; i++) while (recvWithFds(pairs[i]![0]).ret > 0);

      // remove(): no more reports.
      col.seen.clear();
      for (const w of watches) w.remove();
      writeByte(pairs[1]![1], 1);
      await Bun.sleep(30);
      expect(col.seen.size).toBe(0);
      while (recvWithFds(pairs[1]![0]).ret > 0);
    } finally {
      poller.unref();
    }
  });

  test("WRITABLE and HANGUP are reported", async () => {
    poller.ref();
    try {
      const [x, y] = socketPair();
      const col = collector();
      const wx = poller.watch(x, col.onReady(0));
      wx.arm(WRITABLE); // an empty socket buffer is writable at once
      await col.until(1);
      expect(col.seen.get(0)! & WRITABLE).toBe(WRITABLE);
      col.seen.clear();
      wx.arm(READABLE);
      closeFd(y); // peer hang-up
      await col.until(1);
      expect(col.seen.get(0)! & (READABLE | HANGUP)).toBeTruthy();
      wx.remove();
      closeFd(x);
    } finally {
      poller.unref();
    }
  });

  test("a wake still queued when the poller closes never touches the freed poller", async () => {
    const p = new Poller(mechanism);
    const [x, y] = socketPair();
    let calls = 0;
    p.watch(x, () => calls++).arm(READABLE);
    // Spy on the shim's take(): after close, the C poller is freed, so JS must not call it.
    const symbols = native as unknown as { lw_poller_take: (...a: unknown[]) => number };
    const realTake = symbols.lw_poller_take;
    let closed = false;
    let takesAfterClose = 0;
    symbols.lw_poller_take = (...a: unknown[]) => {
      if (closed) {
        takesAfterClose++;
        return 0;
      }
      return realTake(...a);
    };
    try {
      writeByte(y, 1);
      // Let the epoll thread queue its wake, then close before the JS thread runs it.
      const t = performance.now();
      while (performance.now() - t < 5);
      p.close();
      closed = true;
      await Bun.sleep(30);
      expect(takesAfterClose).toBe(0);
      expect(calls).toBe(0);
    } finally {
      symbols.lw_poller_take = realTake;
      closeFd(x);
      closeFd(y);
    }
  });
});

test("openFdCount tracks opens and closes", () => {
  const before = openFdCount();
  const [x, y] = socketPair();
  expect(openFdCount()).toBe(before + 2);
  closeFd(x);
  closeFd(y);
  expect(openFdCount()).toBe(before);
});
