/**
 * lwmsg status codes (`LWMsgStatus`, status.h) and the error type every
 * failing call in this library rejects with.
 * @module
 */

/** The 29 lwmsg status codes, same numbers as the C library (reference §8). */
export const Status = {
  SUCCESS: 0,
  ERROR: 1,
  AGAIN: 2,
  MEMORY: 3,
  MALFORMED: 4,
  EOF: 5,
  NOT_FOUND: 6,
  UNIMPLEMENTED: 7,
  INVALID_PARAMETER: 8,
  OVERFLOW: 9,
  UNDERFLOW: 10,
  SYSTEM: 11,
  TIMEOUT: 12,
  SECURITY: 13,
  CANCELLED: 14,
  FILE_NOT_FOUND: 15,
  CONNECTION_REFUSED: 16,
  INVALID_STATE: 17,
  PEER_RESET: 18,
  PEER_CLOSE: 19,
  PEER_ABORT: 20,
  SESSION_LOST: 21,
  UNSUPPORTED: 22,
  INVALID_HANDLE: 23,
  BUSY: 24,
  PENDING: 25,
  INTERNAL: 26,
  RESOURCE_LIMIT: 27,
  BUFFER_TOO_SMALL: 28,
} as const;

/** A status value (0–28). */
export type Status = (typeof Status)[keyof typeof Status];
/** A status name such as `"PEER_CLOSE"`. */
export type StatusName = keyof typeof Status;

const names: string[] = [];
for (const [k, v] of Object.entries(Status)) names[v] = k;

/**
 * `lwmsg_status_name`: the C symbol name, e.g. `"LWMSG_STATUS_TIMEOUT"`.
 * Unlike the original (§10.16) INTERNAL and BUFFER_TOO_SMALL get their names
 * too; unknown numbers give `"unknown"`.
 */
export function statusName(status: number): string {
  const n = names[status];
  return n === undefined ? "unknown" : `LWMSG_STATUS_${n}`;
}

/** Short name without the prefix (`"TIMEOUT"`), or `"UNKNOWN(n)"`. */
export function statusShortName(status: number): string {
  return names[status] ?? `UNKNOWN(${status})`;
}

// Linux errno values the map below needs (asm-generic/errno*.h).
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  EPIPE: 32,
  ENAMETOOLONG: 36,
  EADDRINUSE: 98,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EINPROGRESS: 115,
  ECONNABORTED: 103,
  ECONNRESET: 104,
} as const;

/** `lwmsg_status_map_errno`'s table (§8); any other errno is SYSTEM. */
const errnoStatus = new Map<number, Status>([
  [0, Status.SUCCESS],
  [Errno.EINVAL, Status.INVALID_PARAMETER],
  [Errno.EMFILE, Status.RESOURCE_LIMIT],
  [Errno.ENFILE, Status.RESOURCE_LIMIT],
  [Errno.ENOBUFS, Status.RESOURCE_LIMIT],
  [Errno.ENOMEM, Status.RESOURCE_LIMIT],
  [Errno.EBUSY, Status.BUSY],
  [Errno.ENOENT, Status.FILE_NOT_FOUND],
  [Errno.ECONNREFUSED, Status.CONNECTION_REFUSED],
  [Errno.ECONNRESET, Status.PEER_RESET],
  [Errno.ECONNABORTED, Status.PEER_ABORT],
  [Errno.ETIMEDOUT, Status.TIMEOUT],
]);

/**
 * `lwmsg_status_map_errno`: errno → Status exactly as lwmsg maps it (§8).
 * The socket layer handles EPIPE/ECONNRESET itself (→ PEER_CLOSE); see
 * {@link mapSocketErrno}.
 */
export function mapErrno(errno: number): Status {
  return errnoStatus.get(errno) ?? Status.SYSTEM;
}

/** errno from a send/recv on an established socket: EPIPE and ECONNRESET mean the peer went away (§3.3). */
export function mapSocketErrno(errno: number): Status {
  if (errno === Errno.EPIPE || errno === Errno.ECONNRESET) return Status.PEER_CLOSE;
  return mapErrno(errno);
}

/**
 * The error every failing operation rejects with. `status` is the lwmsg
 * status; the message names the operation and, where it helps, the field or
 * errno.
 */
export class LwMsgError extends Error {
  readonly status: Status;
  /** errno behind the status, when a system call failed. */
  readonly errno?: number;
  constructor(status: Status, message?: string, options?: { errno?: number; cause?: unknown }) {
    // A message passed on from another error already names its status: not twice ("PEER_CLOSE: PEER_CLOSE: …").
    const short = statusShortName(status);
    super(!message ? short : message.startsWith(`${short}: `) ? message : `${short}: ${message}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = "LwMsgError";
    this.status = status;
    if (options?.errno !== undefined) this.errno = options.errno;
  }
  /** `LWMSG_STATUS_…` name of {@link status}. */
  get statusName(): string {
    return statusName(this.status);
  }
  /** Build from a failed system call (`-errno` as the shim returns it). */
  static fromErrno(op: string, negErrno: number, socket = false): LwMsgError {
    const errno = -negErrno;
    const status = socket ? mapSocketErrno(errno) : mapErrno(errno);
    return new LwMsgError(status, `${op} failed (errno ${errno})`, { errno });
  }
}

/** True if `e` is an LwMsgError (optionally with the given status). */
export function isLwMsgError(e: unknown, status?: Status): e is LwMsgError {
  return e instanceof LwMsgError && (status === undefined || e.status === status);
}
