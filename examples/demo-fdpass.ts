/**
 * Demo: hand an open file to another process over a UNIX socket (SCM_RIGHTS)
 * and ask the kernel who is on the other end (SO_PEERCRED) — with nothing but
 * bun-lwmsg's native layer (lib/native).
 *
 *   bun examples/demo-fdpass.ts
 *
 * The parent listens on a socket in a fresh temp dir and spawns this same file
 * as a child ("child <socket>"). The child connects. The parent writes a temp
 * file, opens it, sends the open descriptor with one byte of data, and closes
 * its own copy. The child reads the file through the descriptor it received
 * (it never learns the path) and prints what it read. Both print the peer's
 * pid/uid/gid as the kernel recorded them at connect time.
 * @module
 */
import { ptr } from "bun:ffi";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { native } from "../lib/native/ffi.ts";
import { Poller, READABLE } from "../lib/native/poller.ts";
import { acceptFd, closeFd, connectPath, fdIsCloexec, listenPath, peerCredentials } from "../lib/native/socket.ts";

const MSG_CTRUNC = 0x8;
const buf = new Uint8Array(new ArrayBuffer(256));
const fdBuf = new Int32Array(new ArrayBuffer(256 * 4));
const out = new Int32Array(new ArrayBuffer(8));

/** Resolves once `fd` is readable, without blocking the event loop (the poller's epoll thread watches it). */
function readable(poller: Poller, fd: number, what: string, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      w.remove();
      poller.unref();
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const w = poller.watch(fd, () => {
      clearTimeout(timer);
      w.remove();
      poller.unref();
      resolve();
    });
    poller.ref();
    w.arm(READABLE);
  });
}

/** Sends `bytes` and, in the same sendmsg, the descriptors `fds`. */
function send(sock: number, bytes: Uint8Array, fds: number[] = []): void {
  buf.set(bytes);
  fdBuf.set(fds);
  const n = native.lw_send(sock, ptr(buf), bytes.length, ptr(fdBuf), fds.length);
  if (n !== bytes.length) throw new Error(`sendmsg gave ${n}`);
}

/** One recvmsg: the bytes and every descriptor that came with them. */
function recv(sock: number): { bytes: Uint8Array; fds: number[] } {
  const n = native.lw_recv(sock, ptr(buf), buf.length, ptr(fdBuf), ptr(out));
  const fds = Array.from(fdBuf.subarray(0, out[0]!));
  if (n < 0) throw new Error(`recvmsg failed (errno ${-n})`);
  if (out[1]! & MSG_CTRUNC) {
    for (const f of fds) closeFd(f);
    throw new Error("recvmsg: control data truncated (MSG_CTRUNC): descriptors were lost");
  }
  return { bytes: buf.slice(0, n), fds };
}

const show = (c: { pid: number; uid: number; gid: number }) => `pid=${c.pid} uid=${c.uid} gid=${c.gid}`;

async function parent(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "lwmsg-demo-"));
  const sockPath = join(dir, "demo.sock");
  const filePath = join(dir, "message.txt");
  const poller = new Poller("doorbell");
  let lfd = -1;
  let conn = -1;
  let child: ReturnType<typeof Bun.spawn> | null = null;
  try {
    lfd = listenPath(sockPath, 8, 0o600);
    console.log(`[parent] pid=${process.pid}, listening on ${sockPath} (mode 0600)`);
    child = Bun.spawn([process.execPath, import.meta.path, "child", sockPath], { stdout: "inherit", stderr: "inherit" });

    await readable(poller, lfd, "the child to connect");
    conn = acceptFd(lfd);
    if (conn < 0) throw new Error(`accept gave ${conn}`);
    const peer = peerCredentials(conn);
    console.log(`[parent] peer (SO_PEERCRED): ${show(peer)}  (Bun.spawn says the child is pid ${child.pid})`);

    writeFileSync(filePath, "hello from the parent");
    const fileFd = openSync(filePath, "r");
    send(conn, new Uint8Array([0x46]), [fileFd]); // 'F' + the open file
    closeSync(fileFd); // the child holds its own descriptor for the same open file now
    console.log(`[parent] sent fd ${fileFd} (${filePath}) over SCM_RIGHTS and closed my copy`);

    await readable(poller, conn, "the child's acknowledgement");
    const ack = recv(conn);
    console.log(`[parent] child acknowledged: ${JSON.stringify(new TextDecoder().decode(ack.bytes))}`);
    closeFd(conn);
    conn = -1;

    const code = await child.exited;
    console.log(`[parent] child exited with ${code}`);
    return code;
  } finally {
    if (conn >= 0) closeFd(conn);
    if (lfd >= 0) closeFd(lfd);
    if (child !== null && child.exitCode === null) child.kill(); // we failed before it was done
    poller.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function child(sockPath: string): Promise<number> {
  const poller = new Poller("doorbell");
  let conn = -1;
  try {
    conn = connectPath(sockPath).fd;
    if (conn < 0) throw new Error(`connect gave ${conn}`);
    console.log(`[child]  pid=${process.pid}, connected; peer (SO_PEERCRED): ${show(peerCredentials(conn))}`);
    await readable(poller, conn, "the parent's message");
    const { bytes, fds } = recv(conn);
    if (bytes[0] !== 0x46 || fds.length !== 1) throw new Error(`expected 'F' with one fd, got ${bytes.length} bytes and ${fds.length} fds`);
    const fileFd = fds[0]!;
    const data = Buffer.alloc(256);
    const n = readSync(fileFd, data, 0, data.length, 0);
    console.log(`[child]  received fd ${fileFd} (close-on-exec: ${fdIsCloexec(fileFd)}), read ${n} bytes: ${JSON.stringify(data.toString("utf8", 0, n))}`);
    closeFd(fileFd);
    send(conn, new TextEncoder().encode("got it"));
    return 0;
  } finally {
    if (conn >= 0) closeFd(conn);
    poller.close();
  }
}

const [mode, arg] = process.argv.slice(2);
try {
  process.exitCode = mode === "child" ? await child(arg!) : await parent();
} catch (e) {
  console.error(`[${mode === "child" ? "child" : "parent"}] error: ${(e as Error).message}`);
  process.exitCode = 1;
}
