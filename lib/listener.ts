/**
 * A listening UNIX socket that hands out established {@link Connection}s:
 * the bare-association counterpart of a peer's listen endpoint (§7.2 step 2).
 * @module
 */
import { Poller, READABLE, type Watch } from "./native/poller.ts";
import { acceptFd, checkListenDirectory, closeFd, isAbstractPath, listenPath, socketFileId, unlinkOwnSocketFile } from "./native/socket.ts";
import { Errno, LwMsgError, Status } from "./status.ts";
import { Connection, ConnectionMode, checkConnectionOptions, checkProtocol, type ListenOptions } from "./connection.ts";
import type { Protocol } from "./protocol.ts";

export class Listener<P extends Protocol<any> = Protocol<any>> {
  readonly path: string;
  /** The listening socket fd. */
  readonly fd: number;
  /** The socket file bound at `path` (close() removes only that one). */
  private readonly fileId: string | null;
  private watch: Watch;
  private poller: Poller;
  private waiters: { resolve: (fd: number) => void; reject: (e: unknown) => void }[] = [];
  private closed = false;

  constructor(
    readonly protocol: P,
    path: string,
    private readonly options: ListenOptions = {},
  ) {
    const mode = options.mode ?? 0o600;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new LwMsgError(Status.INVALID_PARAMETER, `listen: mode must be a permission number like 0o600, got ${mode}`);
    const backlog = options.backlog ?? 8;
    if (!Number.isInteger(backlog) || backlog < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `listen: backlog must be a positive integer, got ${backlog}`);
    // Validate the protocol and connection options now, not at the first accept.
    checkProtocol(protocol);
    checkConnectionOptions(options);
    this.path = path;
    if (options.checkDirectory !== false) checkListenDirectory(path);
    this.fd = listenPath(path, backlog, mode);
    this.fileId = socketFileId(path);
    try {
      this.poller = Poller.shared();
      this.watch = this.poller.watch(this.fd, this.onReadable);
    } catch (e) {
      closeFd(this.fd);
      unlinkOwnSocketFile(path, this.fileId);
      throw e;
    }
  }

  /** Accept the next client and run the lwmsg handshake (`authorize` as in {@link Connection.accept}). */
  async accept(authorize?: Parameters<Connection["accept"]>[0]): Promise<Connection<P>> {
    if (authorize === undefined && isAbstractPath(this.path) && this.options.allowAnyUser !== true) {
      throw new LwMsgError(Status.SECURITY, "accept on an abstract socket name: it has no file permissions, so any local user can connect; pass an authorize function (or allowAnyUser: true when listening)");
    }
    const fd = await this.acceptRaw();
    const c = new Connection(this.protocol, this.options);
    try {
      c.setFd(ConnectionMode.LOCAL, fd);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    try {
      await c.accept(authorize);
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  /** Accept one socket without the handshake (the peer layer runs its own). */
  acceptRaw(): Promise<number> {
    if (this.closed) return Promise.reject(new LwMsgError(Status.INVALID_STATE, "accept: listener is closed"));
    if (this.waiters.length === 0) {
      let fd: number;
      try {
        fd = acceptFd(this.fd); // throws the mapped status (EMFILE → RESOURCE_LIMIT); -EAGAIN when nothing is pending
      } catch (e) {
        return Promise.reject(e);
      }
      if (fd >= 0) return Promise.resolve(fd);
    }
    return new Promise<number>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.waiters.length === 1) {
        this.poller.ref();
        this.watch.arm(READABLE);
      }
    });
  }

  private onReadable = (): void => {
    while (this.waiters.length > 0) {
      let fd: number;
      try {
        fd = acceptFd(this.fd);
      } catch (e) {
        // EMFILE and friends: report to this waiter, keep listening for the others.
        this.waiters.shift()!.reject(e);
        continue;
      }
      if (fd === -Errno.EAGAIN) break;
      this.waiters.shift()!.resolve(fd);
    }
    if (this.waiters.length > 0) this.watch.arm(READABLE);
    else this.poller.unref();
  };

  /**
   * Stop listening: close the socket, remove the socket file if the path
   * still names the one this listener bound (deleted or replaced by another
   * server's socket meanwhile: left alone), fail pending accepts with CANCELLED.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch.remove();
    if (this.waiters.length > 0) this.poller.unref();
    for (const w of this.waiters.splice(0)) w.reject(new LwMsgError(Status.CANCELLED, "listener closed"));
    closeFd(this.fd);
    unlinkOwnSocketFile(this.path, this.fileId);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
