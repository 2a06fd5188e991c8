/**
 * Listening UNIX sockets (LOCAL endpoints): bound to a path (or an abstract
 * name), or handed over as an fd. One acceptor serves `Listener`,
 * `Connection.listen` and the Peer's listen endpoints.
 * @module
 */
import { Poller, READABLE, type Watch } from "../native/poller.ts";
import { acceptFd, adoptFd, checkListenDirectory, closeFd, dupFd, isAbstractPath, listenFd, listenPath, socketFileId, unlinkOwnSocketFile } from "../native/socket.ts";
import { Errno, LwMsgError, Status } from "../status.ts";
import type { Acceptor } from "./types.ts";
import { UnixTransport } from "./unix.ts";

export { isAbstractPath };

/** Refuse (SECURITY) a socket directory others could write to without the sticky bit, or that belongs to another user. */
export const checkSocketDirectory: (path: string) => void = checkListenDirectory;

export class UnixAcceptor implements Acceptor {
  readonly description: string;
  private watch: Watch | null = null;
  private poller: Poller | null = null;
  private onPending: (() => void) | null = null;
  private refd = false;
  /** The socket file bound at `path` (close() removes only that one). */
  private readonly fileId: string | null;
  /** A duplicate of the socket went to a successor: the file at `path` is its now, close() leaves it. */
  private handedOff = false;

  private constructor(
    /** The listening socket (-1 once closed). */
    private fd: number,
    /** The path bound (null for a socket handed over as an fd). */
    readonly path: string | null,
  ) {
    this.fileId = path === null ? null : socketFileId(path);
    this.description = path === null ? `listening fd ${fd}` : `unix socket ${JSON.stringify(path)}`;
  }

  /** Bind `path` (a stale socket file is replaced; see listenPath), chmod `mode`, listen. */
  static bind(path: string, backlog: number, mode: number): UnixAcceptor {
    return new UnixAcceptor(listenPath(path, backlog, mode), path);
  }

  /** Listen on a bound socket handed over by the caller; it is owned from here on (closed even if this throws). */
  static adopt(fd: number, backlog: number): UnixAcceptor {
    try {
      adoptFd(fd);
      listenFd(fd, backlog);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return new UnixAcceptor(fd, null);
  }

  accept(): UnixTransport | null {
    const fd = acceptFd(this.fd); // throws the mapped status (EMFILE → RESOURCE_LIMIT)
    if (fd === -Errno.EAGAIN) return null;
    return new UnixTransport(fd, false);
  }

  arm(onPending: () => void): void {
    this.onPending = onPending;
    if (!this.watch) {
      this.poller = Poller.shared();
      this.watch = this.poller.watch(this.fd, this.fire);
    }
    this.watch.arm(READABLE);
  }

  private fire = (): void => {
    const f = this.onPending;
    this.onPending = null;
    f?.();
  };

  ref(): void {
    if (!this.refd) {
      this.refd = true;
      (this.poller ??= Poller.shared()).ref();
    }
  }

  unref(): void {
    if (this.refd) {
      this.refd = false;
      this.poller!.unref();
    }
  }

  close(): void {
    this.unref();
    if (this.watch) {
      this.watch.remove();
      this.watch = null;
    }
    this.onPending = null;
    if (this.fd >= 0) {
      closeFd(this.fd);
      this.fd = -1;
      if (this.path !== null && !this.handedOff) unlinkOwnSocketFile(this.path, this.fileId);
    }
  }

  /**
   * A duplicate of the listening socket (close-on-exec, never 0..2; the
   * caller owns it) for a successor process. From now on close() does not
   * remove the socket file: the successor serves the same socket (the same
   * inode), so the usual "is it still ours" check cannot tell.
   */
  handOff(): number {
    if (this.fd < 0) throw new LwMsgError(Status.INVALID_STATE, `${this.description} is closed: nothing to hand off`);
    const fd = dupFd(this.fd);
    this.handedOff = true;
    return fd;
  }

  /** The listening fd (-1 once closed). */
  get listeningFd(): number {
    return this.fd;
  }
}
