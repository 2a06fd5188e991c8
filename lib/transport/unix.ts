/**
 * LOCAL and PAIR transports: a UNIX stream socket driven through the C shim
 * (sendmsg/recvmsg with SCM_RIGHTS, SO_PEERCRED) and the shared epoll
 * {@link Poller}. Bun's own sockets drop SCM_RIGHTS fds, so this is the only
 * way fds travel.
 * @module
 */
import { ptr, type Pointer } from "bun:ffi";
import { native } from "../native/ffi.ts";
import { Poller, type Watch } from "../native/poller.ts";
import { adoptFd, closeFd, connectPath, connectResult, encodeSocketPath, peerCredentials, selfCredentials, socketPair } from "../native/socket.ts";
import { Errno, LwMsgError, Status } from "../status.ts";
import type { LocalToken } from "../token.ts";
import { WRITABLE, type Connector, type Transport, type TransportCaps } from "./types.ts";

const MSG_CTRUNC = 0x8;
const UNIX_CAPS: TransportCaps = { fds: true, replyPoll: true };
/** Most pieces one writev takes (the shim's LW_MAX_IOV). */
export const MAX_WRITEV_SEGS = 64;
/** The most SO_SNDBUF a connection asks for when large messages go out (see expectLargeWrites). */
const SNDBUF_MAX = 4 * 1024 * 1024;

/** One UNIX stream socket. Owns `fd` from construction on. */
export class UnixTransport implements Transport {
  readonly caps = UNIX_CAPS;
  readonly description: string;
  truncated = false;
  private watch: Watch | null = null;
  private poller: Poller | null = null;
  private refd = false;
  // ptr() of the buffers last used: the association reuses its buffers, so this is one compare per call.
  private inRef: Uint8Array | null = null;
  private inPtr = 0;
  private outRef: Uint8Array | null = null;
  private outPtr = 0;
  private readonly recvFds = new Int32Array(new ArrayBuffer(256 * 4));
  private readonly recvFdsPtr: Pointer = ptr(this.recvFds);
  private readonly recvOut = new Int32Array(new ArrayBuffer(8));
  private readonly recvOutPtr: Pointer = ptr(this.recvOut);
  private fdsRef: Int32Array | null = null;
  private fdsPtr: Pointer | null = null;

  constructor(
    /** The socket (-1 once closed). */
    public fd: number,
    /** PAIR mode: the peer is assumed to be this process's user; the token carries our own ids (§5). */
    readonly pair: boolean,
  ) {
    this.description = pair ? "socketpair" : "unix socket";
  }

  start(onReady: (events: number) => void): void {
    if (this.watch) {
      this.watch.onReady = onReady;
      return;
    }
    this.poller = Poller.shared();
    this.watch = this.poller.watch(this.fd, onReady);
  }

  read(dst: Uint8Array, off: number, len: number, fds: number[] | null, maxFds: number): number {
    if (dst !== this.inRef) {
      this.inRef = dst;
      this.inPtr = ptr(dst);
    }
    // Fds nobody asked for (with a greeting) get no room at all: the kernel drops them before they exist here.
    const r = native.lw_recv_fds(this.fd, (this.inPtr + off) as Pointer, len, this.recvFdsPtr, fds === null ? 0 : maxFds, this.recvOutPtr);
    const n = this.recvOut[0]!;
    for (let i = 0; i < n; i++) fds!.push(this.recvFds[i]!);
    this.truncated = r > 0 && (this.recvOut[1]! & MSG_CTRUNC) !== 0;
    return r === -Errno.EINTR ? -Errno.EAGAIN : r;
  }

  write(src: Uint8Array, off: number, len: number, fds: Int32Array | null, nfds: number): number {
    if (src !== this.outRef) {
      this.outRef = src;
      this.outPtr = ptr(src);
    }
    const fp = this.fdsPointer(fds, nfds);
    for (;;) {
      const r = native.lw_send(this.fd, (this.outPtr + off) as Pointer, len, fp, nfds);
      if (r !== -Errno.EINTR) return r;
    }
  }

  writev(segs: (Uint8Array | number)[], nsegs: number, fds: Int32Array | null, nfds: number): number {
    const iov = this.iov;
    for (let i = 0; i < nsegs; i++) {
      iov[2 * i] = ptr(segs[3 * i] as Uint8Array) + (segs[3 * i + 1] as number);
      iov[2 * i + 1] = segs[3 * i + 2] as number;
    }
    const fp = this.fdsPointer(fds, nfds);
    for (;;) {
      const r = native.lw_sendv(this.fd, this.iovPtr, nsegs, fp, nfds);
      if (r !== -Errno.EINTR) return r;
    }
  }

  /** The address of the fds to send (null when none), cached while the caller reuses its array. */
  private fdsPointer(fds: Int32Array | null, nfds: number): Pointer | null {
    if (nfds <= 0 || fds === null) return null;
    if (fds !== this.fdsRef) {
      this.fdsRef = fds;
      this.fdsPtr = ptr(fds);
    }
    return this.fdsPtr;
  }
  /** (address, length) pairs for lw_sendv, as doubles; its own ArrayBuffer so its address is stable. */
  private readonly iov = new Float64Array(new ArrayBuffer(2 * MAX_WRITEV_SEGS * 8));
  private readonly iovPtr = ptr(this.iov);

  expectLargeWrites(bytes: number): void {
    // At most 4 MiB asked (the kernel doubles it for its bookkeeping: ~8 MiB in flight); more only queues
    // more in the kernel ahead of a reader that cannot go faster.
    const want = Math.min(bytes, SNDBUF_MAX);
    if (want <= this.sndbuf || this.fd < 0) return;
    const r = native.lw_grow_sndbuf(this.fd, want);
    this.sndbuf = r > 0 ? Math.max(want, r) : SNDBUF_MAX; // failed or capped: do not ask again
  }
  private sndbuf = 0;

  arm(events: number): void {
    this.watch?.arm(events);
  }

  waitReadable(us: number): boolean {
    return this.fd >= 0 && native.lw_wait_readable(this.fd, us) === 1;
  }

  inputPending(): boolean {
    return this.waitReadable(0);
  }

  identity(options?: { pidfd?: boolean }): LocalToken {
    const c = this.pair ? selfCredentials() : peerCredentials(this.fd);
    if (options?.pidfd === true && !this.pair) {
      const pidfd = this.peerPidfd();
      if (pidfd >= 0) return { type: "local", euid: c.uid, egid: c.gid, pid: c.pid, pidfd };
    }
    return { type: "local", euid: c.uid, egid: c.gid, pid: c.pid };
  }

  /** SO_PEERPIDFD, once per socket (the socket owns it and closes it); -1 where the kernel has none (< 6.5). */
  private peerPidfd(): number {
    if (this.pidfd === -1) {
      const r = native.lw_peer_pidfd(this.fd);
      this.pidfd = r >= 0 ? r : -2; // -2: asked, none to have
    }
    return this.pidfd;
  }
  private pidfd = -1;

  ref(): void {
    if (!this.refd && this.poller) {
      this.refd = true;
      this.poller.ref();
    }
  }

  unref(): void {
    if (this.refd) {
      this.refd = false;
      this.poller!.unref();
    }
  }

  /** Give up the socket without closing it (it was never started): the caller owns the fd. */
  detach(): number {
    const fd = this.fd;
    this.fd = -1;
    return fd;
  }

  close(): void {
    if (this.watch) {
      this.watch.remove();
      this.watch = null;
    }
    this.unref();
    if (this.fd >= 0) {
      closeFd(this.fd);
      this.fd = -1;
    }
    if (this.pidfd >= 0) closeFd(this.pidfd);
    this.pidfd = -2;
  }
}

/** `setFd`: take over an already-connected socket (validated; made non-blocking and close-on-exec). */
export function adoptUnixSocket(fd: number, pair: boolean): UnixTransport {
  adoptFd(fd);
  return new UnixTransport(fd, pair);
}

/** As {@link adoptUnixSocket}, but the fd is closed if it cannot be adopted (the callee owns it from the call on). */
export function adoptUnixSocketOrClose(fd: number, pair: boolean): UnixTransport {
  try {
    return adoptUnixSocket(fd, pair);
  } catch (e) {
    if (Number.isInteger(fd) && fd >= 0) closeFd(fd);
    throw e;
  }
}

/** A socketpair, both ends as transports (PAIR mode). */
export function unixPair(): [UnixTransport, UnixTransport] {
  const [a, b] = socketPair();
  return [new UnixTransport(a, true), new UnixTransport(b, true)];
}

/** Connects to a socket path (LOCAL endpoint; a leading NUL is a Linux abstract name). */
export class UnixConnector implements Connector {
  readonly description: string;
  constructor(readonly path: string) {
    encodeSocketPath(path); // validates now, not at connect
    this.description = `unix socket ${JSON.stringify(path)}`;
  }

  async connect(deadline: number | null): Promise<Transport> {
    const path = this.path;
    let backoff = 1;
    for (;;) {
      const { fd, inProgress } = connectPath(path);
      if (fd === -Errno.EAGAIN) {
        // Listener backlog full: retry on a timer (never block the thread).
        if (deadline !== null && Date.now() >= deadline) throw new LwMsgError(Status.TIMEOUT, `connect to ${path}: timed out (listener backlog full)`);
        await Bun.sleep(backoff);
        backoff = Math.min(backoff * 2, 50);
        continue;
      }
      const t = new UnixTransport(fd, false);
      if (inProgress) {
        try {
          await waitWritable(t, deadline, `connecting to ${path}`);
          connectResult(fd, path);
        } catch (e) {
          t.close();
          throw e;
        }
      }
      return t;
    }
  }
}

function waitWritable(t: UnixTransport, deadline: number | null, what: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | null = null;
    t.start(() => {
      if (timer) clearTimeout(timer);
      t.unref();
      resolve();
    });
    if (deadline !== null) {
      timer = setTimeout(() => {
        t.unref();
        reject(new LwMsgError(Status.TIMEOUT, `${what}: timed out`));
      }, Math.max(0, deadline - Date.now()));
    }
    t.ref();
    t.arm(WRITABLE);
  });
}
