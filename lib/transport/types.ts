/**
 * What an association needs from whatever carries its bytes. A transport
 * moves bytes (and, on UNIX sockets, fds) and reports readiness; it knows
 * nothing of lwmsg. Implementations: transport/unix.ts (the C shim: LOCAL
 * and PAIR), transport/bun-socket.ts (Bun's TCP/TLS sockets: REMOTE) and
 * transport/memory.ts (an in-process pair for tests of the layers above).
 *
 * The interface is pull-based and synchronous on purpose: the association
 * reads as much as is there in one call and writes its whole batch in one
 * call, so a transport call happens once per syscall, never per message.
 * @module
 */
import type { LwMsgError } from "../status.ts";
import type { SecurityToken } from "../token.ts";

/** Readiness bits for {@link Transport.arm} (the epoll values the poller uses). */
export const READABLE = 0x001;
export const WRITABLE = 0x004;

/** `-EAGAIN`: nothing to read / no room to write right now. */
export const AGAIN = -11;

export interface TransportCaps {
  /** Can carry fds (SCM_RIGHTS). */
  readonly fds: boolean;
  /** `waitReadable` can wait on the JS thread (a bounded ppoll right after a request). */
  readonly replyPoll: boolean;
}

export interface Transport {
  readonly caps: TransportCaps;
  /** For messages: `"unix socket"`, `"tcp 127.0.0.1:4000"`, `"tls …"`, `"memory"`. */
  readonly description: string;
  /** Start reporting readiness to `onReady` (after {@link arm}). Idempotent. */
  start(onReady: (events: number) => void): void;
  /**
   * Read into `dst[off, off+len)`. Returns bytes read (> 0), 0 at EOF, or a
   * negative errno (`AGAIN` when nothing is there). Fds that came along are
   * appended to `fds` (when given), at most `maxFds` of them: the kernel
   * drops the rest and {@link truncated} becomes true.
   */
  read(dst: Uint8Array, off: number, len: number, fds: number[] | null, maxFds: number): number;
  /** True if the last read lost control data (fds dropped by the kernel). */
  readonly truncated: boolean;
  /** Write `src[off, off+len)` with `nfds` fds (first byte). Bytes taken (≥ 0) or a negative errno (`AGAIN` when full). */
  write(src: Uint8Array, off: number, len: number, fds: Int32Array | null, nfds: number): number;
  /**
   * Optional: write several pieces in one call — `segs` holds `nsegs`
   * (array, offset, length) triples, in order — with `nfds` fds (first
   * byte). Same result as {@link write}. A transport that has it lets large
   * byte arrays go from the application's own memory (see OutboundQueue).
   */
  writev?(segs: (Uint8Array | number)[], nsegs: number, fds: Int32Array | null, nfds: number): number;
  /**
   * Optional: a message of `bytes` is about to be written; a transport with a
   * kernel send buffer may grow it toward that (fewer writes and wakes per
   * large message). Advice only.
   */
  expectLargeWrites?(bytes: number): void;
  /** One-shot readiness request (READABLE | WRITABLE). */
  arm(events: number): void;
  /** Wait up to `us` microseconds for input on the JS thread; false at once where that is not possible. */
  waitReadable(us: number): boolean;
  /** True if input (or EOF) is pending right now. */
  inputPending(): boolean;
  /**
   * Optional: why the stream failed, when the transport knows more than EOF
   * or an errno tells — e.g. a TLS alert (the server requires a client
   * certificate: SECURITY). Null or absent otherwise. After `read` returns 0
   * or an error, the association may report this in place of PEER_CLOSE.
   */
  readonly failure?: LwMsgError | null;
  /** The peer's identity, from the kernel or the TLS session; `pidfd`: add the peer's pidfd where the transport can (UNIX sockets, Linux ≥ 6.5). */
  identity(options?: { pidfd?: boolean }): SecurityToken;
  /** Keep the process alive while the association waits (and let go). */
  ref(): void;
  unref(): void;
  /** Close the underlying socket. Idempotent. */
  close(): void;
}

/** Opens a transport to a configured endpoint (LOCAL path, REMOTE host:port). */
export interface Connector {
  readonly description: string;
  connect(deadline: number | null): Promise<Transport>;
}

/** One listening endpoint: accepts transports. */
export interface Acceptor {
  readonly description: string;
  /** The next pending connection, or null when none is pending (then {@link arm}). Throws LwMsgError on accept errors. */
  accept(): Transport | null;
  /** Call `onPending` once when a connection may be pending. */
  arm(onPending: () => void): void;
  ref(): void;
  unref(): void;
  /** Stop listening (a socket file is removed only if it is still the one this acceptor bound and was not handed off). */
  close(): void;
  /** A duplicate of the listening socket for a successor (caller owns it); close() then leaves the socket file. */
  handOff?(): number;
}
