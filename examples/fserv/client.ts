/**
 * The fserv client library (`fserv-client.c`): one peer, one session,
 * `open` / `read` / `write` / `close` by handle, plus `openFd` (added) which
 * gets the opened descriptor itself. Each failure from the server is an
 * {@link FservError} carrying the errno it sent (FSERV_ERROR_RES).
 * @module
 */
import { constants as osc } from "node:os";
import { Peer } from "../../lib/peer.ts";
import type { Session } from "../../lib/session.ts";
import { ConnectionMode } from "../../lib/connection.ts";
import type { Handle } from "../../lib/handle.ts";
import { DEFAULT_SOCKET_PATH, fservProtocol, type FservProtocol } from "./protocol.ts";

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

export class FservClient {
  readonly peer = new Peer(fservProtocol);
  private session: Session<FservProtocol> | null = null;

  constructor(readonly socketPath: string = DEFAULT_SOCKET_PATH) {
    this.peer.addConnectEndpoint(ConnectionMode.LOCAL, socketPath);
  }

  private async s(): Promise<Session<FservProtocol>> {
    return (this.session ??= await this.peer.connect());
  }

  /** `fserv_open`: a handle for `path` opened with OPEN_MODE bits. */
  async open(path: string, mode: number): Promise<Handle> {
    const r = await (await this.s()).call({ tag: "FSERV_OPEN_REQ", data: { path, mode } });
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, path);
    if (r.name !== "FSERV_OPEN_RES" || !r.data) throw new Error(`unexpected reply ${r.name}`);
    return r.data;
  }

  /** `fserv_read`: up to `size` bytes; an empty array at end of file. */
  async read(file: Handle, size: number): Promise<Uint8Array> {
    const r = await (await this.s()).call({ tag: "FSERV_READ_REQ", data: { handle: file, size: BigInt(size) } });
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, "read");
    if (r.name !== "FSERV_READ_RES") throw new Error(`unexpected reply ${r.name}`);
    return r.data.data ?? new Uint8Array(0);
  }

  /** `fserv_write`. */
  async write(file: Handle, data: Uint8Array): Promise<void> {
    const r = await (await this.s()).call({ tag: "FSERV_WRITE_REQ", data: { handle: file, size: BigInt(data.length), data } });
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, "write");
    if (r.name !== "FSERV_VOID_RES") throw new Error(`unexpected reply ${r.name}`);
  }

  /** `fserv_close`. */
  async close(file: Handle): Promise<void> {
    const s = await this.s();
    const r = await s.call({ tag: "FSERV_CLOSE_REQ", data: file });
    // Our proxy for the server's handle is no longer needed.
    if (s.owns(file)) s.releaseHandle(file);
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, "close");
  }

  /** Added: open `path` on the server and receive the descriptor itself (the caller closes it). */
  async openFd(path: string, mode: number): Promise<number> {
    const r = await (await this.s()).call({ tag: "FSERV_OPEN_FD_REQ", data: { path, mode } });
    if (r.name === "FSERV_ERROR_RES") throw new FservError(r.data.err, path);
    if (r.name !== "FSERV_OPEN_FD_RES") throw new Error(`unexpected reply ${r.name}`);
    return r.takeFd(r.data.fd);
  }

  /** Disconnect (the server closes whatever this client left open). */
  async disconnect(): Promise<void> {
    this.session = null;
    await this.peer.disconnect();
  }
}
