/**
 * The fserv client library (`fserv-client.c`): one peer, one session,
 * `open` / `read` / `write` / `close` by handle, plus `openFd` (added) which
 * gets the opened descriptor itself. Each failure from the server is an
 * {@link FservError} carrying the errno it sent (FSERV_ERROR_RES).
 * @module
 */
import { constants as osc } from "node:os";
import { Peer } from "../../lib/peer.ts";
import type { ReplyMessage } from "../../lib/session.ts";
import type { MessageOut } from "../../lib/protocol.ts";
import { ConnectionMode } from "../../lib/connection.ts";
import type { Handle } from "../../lib/handle.ts";
import { DEFAULT_SOCKET_PATH, fservProtocol, pathBytes, showPath, type FservProtocol } from "./protocol.ts";

const names = new Map<number, string>(Object.entries(osc.errno as Record<string, number>).map(([k, v]) => [v, k]));

/** An errno reply from the server. */
export class FservError extends Error {
  constructor(
    readonly errno: number,
    what: string,
  ) {
    super(`${what}: ${names.get(errno) ?? "errno"} (${errno})`);
    this.name = "FservError";
  }
  get code(): string {
    return names.get(this.errno) ?? `E${this.errno}`;
  }
}

type Reply = ReplyMessage<FservProtocol>;
type ReplyNamed<N extends Reply["name"]> = Extract<Reply, { name: N }>;

export class FservClient {
  readonly peer = new Peer(fservProtocol);

  constructor(readonly socketPath: string = DEFAULT_SOCKET_PATH) {
    this.peer.addConnectEndpoint(ConnectionMode.LOCAL, socketPath);
  }

  /**
   * One `fserv_*` round trip, as the C client's switch on `out.tag`: an
   * FSERV_ERROR_RES becomes an {@link FservError}, a reply other than
   * `expected` an Error, else `pick` takes what the caller wants from it.
   * Fds the reply carries that `pick` does not take are closed.
   */
  private async call<N extends Reply["name"], T>(message: MessageOut<FservProtocol>, expected: N, what: string, pick: (r: ReplyNamed<N>) => T): Promise<T> {
    // The peer keeps one outgoing session: connect() returns it (and it reconnects by itself).
    const session = await this.peer.connect();
    using r = await session.call(message);
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, what);
    if (r.name !== expected) throw new Error(`${what}: unexpected reply ${r.name}`);
    return pick(r as ReplyNamed<N>);
  }

  /** `fserv_open`: a handle for `path` (a string goes as UTF-8; bytes go exactly) opened with OPEN_MODE bits. */
  open(path: string | Uint8Array, mode: number): Promise<Handle> {
    return this.call({ tag: "FSERV_OPEN_REQ", data: { path: pathBytes(path), mode } }, "FSERV_OPEN_RES", showPath(path), (r) => {
      if (!r.data) throw new Error(`${showPath(path)}: FSERV_OPEN_RES without a handle`);
      return r.data;
    });
  }

  /** `fserv_read`: up to `size` bytes; an empty array at end of file. */
  read(file: Handle, size: number): Promise<Uint8Array> {
    return this.call({ tag: "FSERV_READ_REQ", data: { handle: file, size: BigInt(size) } }, "FSERV_READ_RES", "read", (r) => r.data.data ?? new Uint8Array(0));
  }

  /** `fserv_write`. */
  write(file: Handle, data: Uint8Array): Promise<void> {
    return this.call({ tag: "FSERV_WRITE_REQ", data: { handle: file, size: BigInt(data.length), data } }, "FSERV_VOID_RES", "write", () => {});
  }

  /** `fserv_close`. Our proxy for the server's handle is released whether or not the call succeeded. */
  async close(file: Handle): Promise<void> {
    try {
      await this.call({ tag: "FSERV_CLOSE_REQ", data: file }, "FSERV_VOID_RES", "close", () => {});
    } finally {
      const s = this.peer.session;
      if (s?.owns(file)) s.releaseHandle(file);
    }
  }

  /** Added: open `path` on the server and receive the descriptor itself (the caller closes it). */
  openFd(path: string | Uint8Array, mode: number): Promise<number> {
    return this.call({ tag: "FSERV_OPEN_FD_REQ", data: { path: pathBytes(path), mode } }, "FSERV_OPEN_FD_RES", showPath(path), (r) => r.takeFd(r.data.fd));
  }

  /** Disconnect (the server closes whatever this client left open). */
  disconnect(): Promise<void> {
    return this.peer.disconnect();
  }
}
