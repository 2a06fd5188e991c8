/**
 * Shared memory by fd: a sealed memfd carries bulk data (megabytes) to
 * another process, which maps it instead of receiving the bytes through the
 * socket. Linux only (memfd_create and file seals).
 *
 * The sender fills a memfd and seals it (`F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_WRITE | F_SEAL_SEAL`); from then on nobody, the sender included,
 * can change its contents or size. It sends the fd as an `Lw.Fd` field
 * with the size next to it. The receiver checks the seals and the size with
 * {@link mapSealedMemfd} before it maps: an unsealed memfd could be
 * changed under it while it reads (a check passed, then the data swapped),
 * and one the sender could shrink would kill it with SIGBUS on the first
 * read past the new end.
 *
 * ```ts
 * const mem = createSealedMemfd(data.length, (bytes) => bytes.set(data));
 * await session.call({ tag: "PUT_REQ", data: { mem, size: data.length } });
 * closeSync(mem);                          // the call sent a dup
 *
 * // receiver, in its handler:
 * const bytes = mapSealedMemfd(req.mem, req.size);   // Uint8Array over the pages
 * ```
 *
 * **How long a mapping is valid.** The arrays come from `Bun.mmap`. The
 * mapping is independent of the fd (close the fd right away if you like)
 * and lives as long as the array's ArrayBuffer is reachable: it is unmapped
 * when the garbage collector frees that buffer, which may be much later.
 * Any view of it (`subarray`, `new DataView(bytes.buffer)`) keeps all of it
 * mapped. To give the memory back at a known point call
 * {@link unmapNow}: it detaches the buffer (every view of it becomes
 * empty, so later reads see nothing instead of freed memory) and unmaps it
 * at once.
 *
 * **"Read-only".** The receiver's mapping is private (`MAP_PRIVATE`): it can
 * be read as is, and a write to it only changes the receiver's own
 * copy-on-write pages, never the memfd. (A truly `PROT_READ` mapping would
 * crash the process on a stray write from JS.) The seals guarantee the
 * sender cannot change it either.
 * @module
 */
import { ptr } from "bun:ffi";
import { native } from "../native/ffi.ts";
import { LwMsgError, Status } from "../status.ts";

/** File seals (`F_SEAL_*`), as `F_GET_SEALS` reports them. */
export const Seal = {
  /** No further seals may be added. */
  SEAL: 0x1,
  /** The size may not shrink. */
  SHRINK: 0x2,
  /** The size may not grow. */
  GROW: 0x4,
  /** The contents may not change (no write(), no shared writable mapping). */
  WRITE: 0x8,
  /** Linux ≥ 5.1: no new writes, but existing writable mappings still may. Not enough for a receiver. */
  FUTURE_WRITE: 0x10,
} as const;

/** The seals a receiver needs to rely on the contents and the size. */
export const REQUIRED_SEALS = Seal.SHRINK | Seal.GROW | Seal.WRITE;

const MFD_CLOEXEC = 0x1;
const MFD_ALLOW_SEALING = 0x2;
const EINVAL = 22;
const EBUSY = 16;
const MADV_POPULATE_WRITE = 23;

export interface MemfdOptions {
  /** Name shown in /proc/PID/fd and /proc/PID/maps as `memfd:NAME` (default "bun-lwmsg"). */
  name?: string;
}

function checkSize(op: string, size: number): void {
  if (!Number.isSafeInteger(size) || size < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `${op}: size must be a positive integer number of bytes, got ${size}`);
}

function newMemfd(op: string, size: number, options: MemfdOptions): number {
  const name = options.name ?? "bun-lwmsg";
  const nameBytes = new TextEncoder().encode(`${name}\0`);
  if (nameBytes.indexOf(0) !== nameBytes.length - 1 || nameBytes.length > 250) throw new LwMsgError(Status.INVALID_PARAMETER, `${op}: name must be at most 249 bytes without NUL, got ${JSON.stringify(name)}`);
  const fd = native.lw_memfd_create(nameBytes, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw LwMsgError.fromErrno(`${op}: memfd_create`, fd);
  const r = native.lw_ftruncate(fd, size);
  if (r < 0) {
    native.lw_close(fd);
    throw LwMsgError.fromErrno(`${op}: ftruncate to ${size} bytes`, r);
  }
  return fd;
}

function seal(op: string, fd: number): void {
  let r = native.lw_add_seals(fd, Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
  if (r === -EBUSY) {
    // A writable mapping of it is still alive (the kernel refuses F_SEAL_WRITE then); one GC may free it.
    Bun.gc(true);
    r = native.lw_add_seals(fd, Seal.SHRINK | Seal.GROW | Seal.WRITE | Seal.SEAL);
  }
  if (r < 0) {
    native.lw_close(fd);
    if (r === -EBUSY) throw new LwMsgError(Status.BUSY, `${op}: cannot seal the memfd, a writable mapping of it is still alive`, { errno: EBUSY });
    throw LwMsgError.fromErrno(`${op}: F_ADD_SEALS`, r);
  }
}

/**
 * Detach `bytes`' ArrayBuffer and so unmap a `Bun.mmap` mapping now instead
 * of at garbage collection. Every view of that buffer becomes empty. Throws
 * INVALID_PARAMETER for a view of only part of its buffer (unmapping it would
 * take memory other views still show).
 */
export function unmapNow(bytes: Uint8Array): void {
  // ES2024's ArrayBuffer members, typed here so apps with an older `lib` compile this file.
  const buf = bytes.buffer as ArrayBuffer & { readonly detached: boolean; transfer(newLength?: number): ArrayBuffer };
  if (buf.detached) return;
  if (bytes.byteOffset !== 0 || bytes.byteLength !== buf.byteLength) throw new LwMsgError(Status.INVALID_PARAMETER, "unmapNow: pass the array the mapping returned, not a part of it");
  buf.transfer(0); // moves the mapping into a 0-byte buffer: Bun unmaps it here
}

/**
 * Create a memfd of `size` bytes, let `fill` write into it through a shared
 * writable mapping, then seal it (shrink, grow, write, seal). The mapping
 * is unmapped when `fill` returns ({@link unmapNow}; the kernel refuses
 * F_SEAL_WRITE while any writable mapping exists), so `fill` must not keep
 * the array: it is empty afterwards, and `fill` must be synchronous (an
 * async one is refused). Returns the fd (close-on-exec), which
 * the caller owns: send it as an `Lw.Fd` field and close it.
 */
export function createSealedMemfd(size: number, fill: (bytes: Uint8Array) => void, options: MemfdOptions = {}): number {
  checkSize("createSealedMemfd", size);
  if (typeof fill !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "createSealedMemfd: fill must be a function that writes the bytes");
  const fd = newMemfd("createSealedMemfd", size, options);
  try {
    const bytes = Bun.mmap(`/proc/self/fd/${fd}`, { shared: true });
    // Fault every page in with one call rather than one trap per 4 KiB page
    // (64 MiB: 16k faults). Best effort: kernels before 5.14 say EINVAL.
    native.lw_madvise(ptr(bytes), size, MADV_POPULATE_WRITE);
    let r: unknown;
    try {
      r = fill(bytes);
    } finally {
      unmapNow(bytes);
    }
    // Writes after an await would land in the detached (empty) array and be lost without a sound.
    if (r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function") {
      (r as Promise<unknown>).then(undefined, () => {});
      throw new LwMsgError(Status.INVALID_PARAMETER, "createSealedMemfd: fill must write synchronously (it returned a promise; the mapping is gone once fill returns). Prepare the data first, or use sealedMemfdFrom");
    }
  } catch (e) {
    native.lw_close(fd);
    throw e;
  }
  seal("createSealedMemfd", fd);
  return fd;
}

/** Like {@link createSealedMemfd}, with a copy of `bytes` as the contents (written with pwrite, no mapping). */
export function sealedMemfdFrom(bytes: Uint8Array, options: MemfdOptions = {}): number {
  if (!(bytes instanceof Uint8Array)) throw new LwMsgError(Status.INVALID_PARAMETER, "sealedMemfdFrom: bytes must be a Uint8Array");
  checkSize("sealedMemfdFrom", bytes.length);
  const fd = newMemfd("sealedMemfdFrom", bytes.length, options);
  const r = native.lw_pwrite_all(fd, bytes, bytes.length, 0);
  if (r < 0) {
    native.lw_close(fd);
    throw LwMsgError.fromErrno("sealedMemfdFrom: pwrite", r);
  }
  seal("sealedMemfdFrom", fd);
  return fd;
}

/** The seals on `fd` (`F_GET_SEALS`); INVALID_PARAMETER when it is not a memfd (or anything that cannot be sealed). */
export function memfdSeals(fd: number): number {
  if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `fd must be a non-negative integer, got ${fd}`);
  const r = native.lw_get_seals(fd);
  if (r === -EINVAL) throw new LwMsgError(Status.INVALID_PARAMETER, `fd ${fd} is not a memfd (it cannot carry seals)`, { errno: EINVAL });
  if (r < 0) throw LwMsgError.fromErrno(`F_GET_SEALS on fd ${fd}`, r);
  return r;
}

function sealNames(seals: number): string {
  return (["SHRINK", "GROW", "WRITE"] as const).filter((n) => (seals & Seal[n]) !== 0).join("|") || "none";
}

/**
 * What a receiver checks before it maps: `fd` is a memfd, sealed against
 * shrinking, growing and writing, and exactly `size` bytes long. Throws
 * INVALID_PARAMETER naming what is wrong (and SECURITY for missing seals:
 * the sender could change the data or cut it short under us).
 */
export function checkSealedMemfd(fd: number, size: number): void {
  checkSize("checkSealedMemfd", size);
  const seals = memfdSeals(fd);
  if ((seals & REQUIRED_SEALS) !== REQUIRED_SEALS) {
    const missing = sealNames(REQUIRED_SEALS & ~seals);
    throw new LwMsgError(Status.SECURITY, `memfd ${fd} is not sealed against ${missing} (has ${sealNames(seals)}): the sender could change it while we read`);
  }
  const actual = native.lw_fd_size(fd);
  if (actual < 0) throw LwMsgError.fromErrno(`fstat fd ${fd}`, actual);
  if (actual !== size) throw new LwMsgError(Status.INVALID_PARAMETER, `memfd ${fd} is ${actual} bytes, expected ${size}`);
}

/**
 * Check `fd` with {@link checkSealedMemfd} and map it privately: a
 * Uint8Array of `size` bytes over the memfd's pages, no copy. The fd stays
 * the caller's (the mapping does not need it; close it or let the received
 * message's disposal close it). See the module notes for how long the array
 * is valid and {@link unmapNow}.
 */
export function mapSealedMemfd(fd: number, size: number): Uint8Array {
  checkSealedMemfd(fd, size);
  return Bun.mmap(`/proc/self/fd/${fd}`, { shared: false });
}
