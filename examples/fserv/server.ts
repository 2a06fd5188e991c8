/**
 * fserv: lwmsg's example file server (`example/fserv/src/fserver*.c`) on
 * bun-lwmsg. It opens files on behalf of its clients after checking the
 * caller's peer credentials (euid/egid from SO_PEERCRED) against the file's
 * owner, group and mode bits, then serves reads and writes by handle.
 *
 *   bun examples/fserv/server.ts [--socket PATH]     (default /tmp/.fserv-socket)
 *
 * SIGINT/SIGTERM stop it cleanly (the socket file is removed).
 * @module
 */
import { closeSync, constants as fsc, openSync, readSync, statSync, writeSync } from "node:fs";
import { constants as osc } from "node:os";
import { Peer } from "../../lib/peer.ts";
import type { Call } from "../../lib/call.ts";
import type { Session } from "../../lib/session.ts";
import { ConnectionMode, type SecurityToken } from "../../lib/connection.ts";
import type { Handle } from "../../lib/handle.ts";
import { DEFAULT_SOCKET_PATH, OPEN_MODE, fservProtocol, parseSocketArg, showPath, type FservProtocol } from "./protocol.ts";

const E = osc.errno as Record<string, number>;
const S_IRUSR = 0o400, S_IWUSR = 0o200, S_IRGRP = 0o040, S_IWGRP = 0o020, S_IROTH = 0o004, S_IWOTH = 0o002;
/** Largest read served at once (a read may return fewer bytes, as read(2) may). */
const MAX_READ = 1 << 20;

/** What `stat` tells about a file, for {@link checkPermissions}. */
export interface FileOwnership {
  uid: number;
  gid: number;
  mode: number;
}

/**
 * `fserv_check_permissions`: may the caller (`token`) open a file with this
 * ownership in `mode` (OPEN_MODE bits)? Returns 0, or the errno to reply
 * with: EPERM when the owner/group/other bits do not grant it (as the C
 * server), EPERM for an unauthenticated caller. Root (euid 0) may open
 * anything.
 */
export function checkPermissions(token: SecurityToken | null, st: FileOwnership, mode: number): number {
  if (!token || token.type !== "local") return E.EPERM!;
  const { euid, egid } = token;
  if (euid === 0) return 0;
  if (mode & OPEN_MODE.READ) {
    const canRead = (st.uid === euid && (st.mode & S_IRUSR) !== 0) || (st.gid === egid && (st.mode & S_IRGRP) !== 0) || (st.mode & S_IROTH) !== 0;
    if (!canRead) return E.EPERM!;
  }
  if (mode & OPEN_MODE.WRITE) {
    const canWrite = (st.uid === euid && (st.mode & S_IWUSR) !== 0) || (st.gid === egid && (st.mode & S_IWGRP) !== 0) || (st.mode & S_IWOTH) !== 0;
    if (!canWrite) return E.EPERM!;
  }
  return 0;
}

/** errno (positive) of a Node/Bun fs error. */
export function errnoOf(e: unknown): number {
  const err = e as { code?: string; errno?: number };
  if (err?.code && E[err.code] !== undefined) return E[err.code]!;
  if (typeof err?.errno === "number") return Math.abs(err.errno);
  return E.EIO!;
}

/** open(2) flags for an OPEN_MODE, as the C server computes them. */
function openFlags(mode: number): number {
  let flags = fsc.O_RDONLY;
  const r = (mode & OPEN_MODE.READ) !== 0;
  const w = (mode & OPEN_MODE.WRITE) !== 0;
  if (w && !r) flags = fsc.O_WRONLY;
  if (w && r) flags = fsc.O_RDWR;
  if (mode & OPEN_MODE.APPEND) flags |= fsc.O_APPEND;
  return flags;
}

/** An open request as the server saw it (for logs and the demo). */
export interface OpenEvent {
  /** The path for display ({@link showPath}). */
  path: string;
  /** The path's exact bytes, as received (empty for a NULL path). */
  pathBytes: Uint8Array;
  mode: number;
  token: SecurityToken | null;
  /** 0 when the file was opened, else the errno sent back. */
  err: number;
  /** `"handle"` (FSERV_OPEN_REQ) or `"fd"` (FSERV_OPEN_FD_REQ). */
  via: "handle" | "fd";
}

export interface FileServerOptions {
  /** Socket path (default `/tmp/.fserv-socket`, or `FSERV_SOCKET`). */
  socketPath?: string;
  /** Socket file permissions (default 0o777 as the C server: authorisation is per open). */
  perms?: number;
  /** Log lines (default: none). The standalone server logs to stderr like the C one. */
  log?: (line: string) => void;
  /** Called for every open request after the permission check. */
  onOpen?: (e: OpenEvent) => void;
}

type FileData = { fd: number; mode: number; path: string };
type Srv = Session<FservProtocol>;

/** Build (not start) a file server peer. */
export function createFileServer(options: FileServerOptions = {}) {
  const socketPath = options.socketPath ?? DEFAULT_SOCKET_PATH;
  const log = options.log ?? (() => {});
  const peer = new Peer(fservProtocol);

  /** Check and open; returns the fd or the errno. */
  function authorizeAndOpen(call: Call<FservProtocol>, raw: Uint8Array | null, mode: number, via: "handle" | "fd"): { fd: number } | { err: number } {
    const token = call.token;
    const path = raw === null ? "" : showPath(raw);
    let err = 0;
    let fd = -1;
    if (raw === null) err = E.EINVAL!;
    else {
      // the file system gets the exact bytes the client sent (node:fs takes a Buffer as a raw path)
      const fsPath = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
      try {
        const st = statSync(fsPath);
        err = checkPermissions(token, { uid: st.uid, gid: st.gid, mode: st.mode }, mode);
      } catch (e) {
        err = errnoOf(e);
      }
      if (err === 0) {
        log(`Permission granted for (uid = ${token?.euid}, gid = ${token?.egid}) to open ${path}`);
        try {
          fd = openSync(fsPath, openFlags(mode));
        } catch (e) {
          err = errnoOf(e);
        }
      } else if (err === E.EPERM) log(`Permission denied for (uid = ${token?.euid}, gid = ${token?.egid}) to ${mode & OPEN_MODE.WRITE ? "write" : "read"} ${path}`);
    }
    options.onOpen?.({ path, pathBytes: raw ?? new Uint8Array(0), mode, token, err, via });
    return err === 0 ? { fd } : { err };
  }

  const fileOf = (session: Srv, h: Handle): FileData => session.getHandleData(h) as FileData;

  peer.addDispatch({
    FSERV_OPEN_REQ: (req, call) => {
      log(`fserv_open() of ${showPath(req.path ?? "(null)")} on session ${call.session.id}`);
      const r = authorizeAndOpen(call, req.path, req.mode, "handle");
      if ("err" in r) return { tag: "FSERV_ERROR_RES", data: { err: r.err } };
      const data: FileData = { fd: r.fd, mode: req.mode, path: showPath(req.path!) };
      const h = call.session.registerHandle("FileHandle", data, (d) => closeSync(d.fd));
      log(`Successfully opened ${data.path} as fd ${r.fd} for session ${call.session.id}`);
      return { tag: "FSERV_OPEN_RES", data: h };
    },
    FSERV_READ_REQ: (req, call) => {
      const f = fileOf(call.session, req.handle!);
      const want = Number(req.size > BigInt(MAX_READ) ? BigInt(MAX_READ) : req.size);
      log(`fserv_read() of ${req.size} bytes from fd ${f.fd} on session ${call.session.id}`);
      const buf = new Uint8Array(want);
      try {
        const n = want === 0 ? 0 : readSync(f.fd, buf, 0, want, null);
        return { tag: "FSERV_READ_RES", data: { size: BigInt(n), data: n === 0 ? null : buf.subarray(0, n) } };
      } catch (e) {
        return { tag: "FSERV_ERROR_RES", data: { err: errnoOf(e) } };
      }
    },
    FSERV_WRITE_REQ: (req, call) => {
      const f = fileOf(call.session, req.handle!);
      log(`fserv_write() of ${req.size} bytes to fd ${f.fd} on session ${call.session.id}`);
      try {
        const data = req.data ?? new Uint8Array(0);
        let off = 0;
        while (off < data.length) off += writeSync(f.fd, data, off, data.length - off);
        return { tag: "FSERV_VOID_RES" };
      } catch (e) {
        return { tag: "FSERV_ERROR_RES", data: { err: errnoOf(e) } };
      }
    },
    FSERV_CLOSE_REQ: (h, call) => {
      const f = fileOf(call.session, h!);
      log(`fserv_close() on fd ${f.fd} for session ${call.session.id}`);
      // Unregistering drops the table's only reference, so the handle's cleanup closes the fd
      // here; a failing close(2) is answered with its errno, as the C server does.
      try {
        call.session.unregisterHandle(h!);
      } catch (e) {
        return { tag: "FSERV_ERROR_RES", data: { err: errnoOf(e) } };
      }
      return { tag: "FSERV_VOID_RES" };
    },
    FSERV_OPEN_FD_REQ: (req, call) => {
      log(`fserv_open_fd() of ${showPath(req.path ?? "(null)")} on session ${call.session.id}`);
      const r = authorizeAndOpen(call, req.path, req.mode, "fd");
      if ("err" in r) return { tag: "FSERV_ERROR_RES", data: { err: r.err } };
      // The connection sends a duplicate; ours is closed once the reply is on its way.
      call.onComplete(() => closeSync(r.fd));
      return { tag: "FSERV_OPEN_FD_RES", data: { fd: r.fd } };
    },
  });
  peer.addListenEndpoint(ConnectionMode.LOCAL, socketPath, options.perms ?? 0o777);

  return {
    peer,
    socketPath,
    /** Start listening (unlink, bind, chmod, listen). */
    start: () => peer.startListen(),
    /** Stop: drop clients, close every open file, remove the socket file. */
    stop: () => peer.close(),
  };
}

if (import.meta.main) {
  const { socketPath } = parseSocketArg(process.argv.slice(2));
  const server = createFileServer({ socketPath, log: (l) => console.error(l) });
  await server.start();
  console.error(`fserv: listening on ${socketPath} (pid ${process.pid}); Ctrl-C stops`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return; // a second signal while the first one stops the server
    stopping = true;
    let code = 0;
    try {
      await server.stop();
      console.error("fserv: stopped");
    } catch (e) {
      console.error(`fserv: stop failed: ${(e as Error).message}`);
      code = 1;
    }
    process.exit(code);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
