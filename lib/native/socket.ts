/**
 * Typed wrappers over the shim's socket calls. Failures become LwMsgError
 * with lwmsg's errno → Status map (§3.2, §8); the hot-path send/recv stay in
 * the connection, which calls `native` directly with preallocated buffers.
 * @module
 */
import { lstatSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { native } from "./ffi.ts";
import { Errno, LwMsgError, Status } from "../status.ts";

const utf8 = new TextEncoder();

/** Bytes of a socket path; a leading NUL makes a Linux abstract name. */
export function encodeSocketPath(path: string): Uint8Array {
  if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "socket path must be a non-empty string");
  const bytes = utf8.encode(path);
  const abstract = bytes[0] === 0;
  // sun_path is 108 bytes on Linux; a filesystem path needs its NUL too (§10.15: >= not >).
  if (bytes.length + (abstract ? 0 : 1) > 108) throw new LwMsgError(Status.INVALID_PARAMETER, `socket path too long (${bytes.length} bytes, max ${abstract ? 108 : 107}): ${path}`);
  if (!abstract && bytes.includes(0)) throw new LwMsgError(Status.INVALID_PARAMETER, "socket path contains a NUL byte");
  return bytes;
}

/** NUL-terminated copy for calls that take a C string. */
function cString(path: string): Uint8Array {
  const b = utf8.encode(path);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

function fail(op: string, r: number, socket = false): never {
  if (r === -Errno.ENAMETOOLONG) throw new LwMsgError(Status.INVALID_PARAMETER, `${op}: socket path too long`, { errno: -r });
  throw LwMsgError.fromErrno(op, r, socket);
}

const pairOut = new Int32Array(2);
/** `socketpair(AF_UNIX, SOCK_STREAM)`, both ends non-blocking and close-on-exec. */
export function socketPair(): [number, number] {
  const r = native.lw_socketpair(pairOut);
  if (r < 0) fail("socketpair", r);
  return [pairOut[0]!, pairOut[1]!];
}

const stateOut = new Int32Array(1);
/** Start a non-blocking connect. `inProgress` means wait for writable, then {@link connectResult}. EAGAIN (backlog full) is returned as `fd = -EAGAIN`. */
export function connectPath(path: string): { fd: number; inProgress: boolean } {
  const bytes = encodeSocketPath(path);
  const r = native.lw_connect(bytes, bytes.length, stateOut);
  if (r === -Errno.EAGAIN) return { fd: r, inProgress: false };
  if (r < 0) fail(`connect to ${JSON.stringify(path)}`, r);
  return { fd: r, inProgress: stateOut[0] === 1 };
}

/** Outcome of an in-progress connect; throws the mapped status. */
export function connectResult(fd: number, path: string): void {
  const r = native.lw_connect_result(fd);
  if (r < 0) fail(`connect to ${JSON.stringify(path)}`, r);
}

/** unlink + bind (mode 000 until chmod) + chmod(mode) + listen(backlog). mode < 0 keeps the umask's mode. */
export function listenPath(path: string, backlog: number, mode: number): number {
  const bytes = encodeSocketPath(path);
  const r = native.lw_listen(bytes, bytes.length, backlog, mode);
  if (r === -Errno.EADDRINUSE) throw new LwMsgError(Status.BUSY, `listen on ${JSON.stringify(path)}: another server is listening there (its socket accepts connections); not removed`, { errno: -r });
  if (r === -Errno.EEXIST) throw new LwMsgError(Status.INVALID_PARAMETER, `listen on ${JSON.stringify(path)}: the path exists and is not a socket; not removed`, { errno: -r });
  if (r < 0) fail(`listen on ${JSON.stringify(path)}`, r);
  return r;
}

/** True for a Linux abstract socket name (leading NUL): no file, so no permissions. */
export function isAbstractPath(path: string): boolean {
  return path.charCodeAt(0) === 0;
}

/**
 * Refuse to put a listening socket where someone else could replace it: the
 * parent directory must belong to this user or root, and must not be group-
 * or world-writable unless it has the sticky bit (like /tmp, where others
 * cannot rename or delete our file). Throws SECURITY naming the directory.
 * Abstract names have no directory and pass.
 */
export function checkListenDirectory(path: string): void {
  if (isAbstractPath(path)) return;
  const dir = dirname(resolve(path));
  let st: { uid: number; mode: number };
  try {
    st = statSync(dir);
  } catch {
    return; // a missing directory: bind() reports it with lwmsg's status (FILE_NOT_FOUND)
  }
  const euid = process.geteuid?.() ?? selfCredentials().uid;
  if (st.uid !== euid && st.uid !== 0) {
    throw new LwMsgError(Status.SECURITY, `listen on ${JSON.stringify(path)}: directory ${dir} belongs to uid ${st.uid}, not to this user (${euid}) or root, so its owner could replace the socket (pass checkDirectory: false to allow)`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new LwMsgError(Status.SECURITY, `listen on ${JSON.stringify(path)}: directory ${dir} is writable by ${(st.mode & 0o002) !== 0 ? "everyone" : "its group"} without the sticky bit, so others could replace the socket (pass checkDirectory: false to allow)`);
  }
}

/** `listen(backlog)` on an already-bound socket handed to us; errno mapped as lwmsg does. */
export function listenFd(fd: number, backlog: number): void {
  const r = native.lw_listen_fd(fd, backlog);
  if (r < 0) fail(`listen() on fd ${fd}`, r);
}

/** accept4 non-blocking; returns the fd, or -EAGAIN when nothing is pending. */
export function acceptFd(lfd: number): number {
  for (;;) {
    const r = native.lw_accept(lfd);
    if (r >= 0 || r === -Errno.EAGAIN) return r;
    if (r === -Errno.EINTR || r === -Errno.ECONNABORTED) continue; // lwmsg retries these
    fail("accept", r);
  }
}

/** Make a caller-supplied fd non-blocking and close-on-exec. */
export function adoptFd(fd: number): void {
  if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `fd must be a non-negative integer, got ${fd}`);
  const r = native.lw_adopt_fd(fd);
  if (r < 0) fail(`adopt fd ${fd}`, r);
}

export function closeFd(fd: number): void {
  if (fd >= 0) native.lw_close(fd);
}

/**
 * dup with O_CLOEXEC, never onto 0..2. An fd that is not open (EBADF) is the
 * caller's mistake, not a broken system: INVALID_PARAMETER, so a send fails
 * that message alone instead of looking like a dead connection.
 */
export function dupFd(fd: number): number {
  const r = native.lw_dup(fd);
  if (r === -Errno.EBADF) throw new LwMsgError(Status.INVALID_PARAMETER, `fd ${fd} is not open`, { errno: Errno.EBADF });
  if (r < 0) fail(`dup fd ${fd}`, r);
  return r;
}

export function unlinkPath(path: string): void {
  native.lw_unlink(cString(path));
}

/** Identity (device, inode) of the file at `path` itself (not a link target); null when there is none or for an abstract name. */
export function socketFileId(path: string): string | null {
  if (isAbstractPath(path)) return null;
  try {
    const st = lstatSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/**
 * Remove a listener's socket file, but only if `path` still names the file it
 * bound (`id` from {@link socketFileId} right after bind). A file deleted
 * meanwhile, or replaced by another server's socket or anything else, is left
 * alone (lwmsg unlinks the path unconditionally; that would take another
 * server's endpoint away). A swap between this check and the unlink is not
 * guarded against.
 */
export function unlinkOwnSocketFile(path: string, id: string | null): void {
  if (id !== null && socketFileId(path) === id) unlinkPath(path);
}

/** Peer identity as the kernel recorded it at connect time. */
export interface Credentials {
  pid: number;
  uid: number;
  gid: number;
}

const credOut = new Int32Array(3);
/** SO_PEERCRED (getpeereid where absent; pid -1 then). */
export function peerCredentials(fd: number): Credentials {
  const r = native.lw_peercred(fd, credOut);
  if (r < 0) fail("getsockopt(SO_PEERCRED)", r);
  return { pid: credOut[0]!, uid: credOut[1]! >>> 0, gid: credOut[2]! >>> 0 };
}

/** This process's own ids: what lwmsg reports for PAIR connections. */
export function selfCredentials(): Credentials {
  native.lw_selfcred(credOut);
  return { pid: credOut[0]!, uid: credOut[1]! >>> 0, gid: credOut[2]! >>> 0 };
}

export function fdIsOpen(fd: number): boolean {
  return native.lw_fd_is_open(fd) === 1;
}

export function fdIsCloexec(fd: number): boolean {
  return native.lw_fd_cloexec(fd) === 1;
}
