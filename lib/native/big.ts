/**
 * Buffers for large messages: a received message of 64 KiB or more that
 * does not arrive whole in the ring is read into one of these, and the
 * decoder hands out views into it; the outgoing queue grows into them too.
 *
 * Why not `new ArrayBuffer(n)`: a fresh buffer's pages are faulted in one
 * 4 KiB page at a time on first touch, which on a VM costs 10+ µs a page —
 * 40–60 ms for 16 MiB on the project machine, ten times the cost of reading
 * the message. The shim maps these itself — from 1 MiB 2 MiB-aligned and
 * advised for transparent huge pages (faulted in 2 MiB at a time: ≈ 1.4 ms
 * for 16 MiB there), below in power-of-two classes from 64 KiB — and keeps a
 * few collected ones, pages and all, for the next buffer of the same class.
 * They are ordinary ArrayBuffers to JS; JSC calls the shim's `lw_big_free`
 * when one is collected.
 * @module
 */
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { native } from "./ffi.ts";

/** From this size on, buffers come from the shim's mappings (below it a plain ArrayBuffer: a few pages). */
export const BIG_MIN = 64 * 1024;

const freeFn = native.lw_big_free_fn() as Pointer | null;
// toArrayBuffer(ptr, offset, length, deallocatorContext, deallocator): bun:ffi's form for memory JSC frees, missing from its typings.
const wrap = toArrayBuffer as unknown as (p: Pointer, off: number, len: number, ctx: number, dealloc: Pointer) => ArrayBuffer;

/** An ArrayBuffer of exactly `size` bytes, zero-filled; from the shim's mappings when `size` ≥ {@link BIG_MIN}. */
export function bigBuffer(size: number): ArrayBuffer {
  return mapped(size, false) ?? new ArrayBuffer(size);
}

/** A buffer from {@link reusableBuffer}: `stale` when it may hold an earlier buffer's bytes. */
export interface Reusable {
  buffer: ArrayBuffer;
  stale: boolean;
}

/**
 * An ArrayBuffer of exactly `size` bytes for a caller that overwrites what it
 * exposes before anything else can see it: one a released message gave back,
 * or a pooled mapping, may serve (`stale`: it holds an earlier message's
 * bytes, which the caller must overwrite or zero); else a zero-filled one.
 */
export function reusableBuffer(size: number): Reusable {
  for (let i = 0; i < recycled.length; i++) {
    const b = recycled[i]!;
    if (b.byteLength === size) {
      recycled.splice(i, 1);
      recycledBytes -= size;
      return { buffer: b, stale: true };
    }
  }
  const m = mapped(size, true);
  return m !== null ? { buffer: m, stale: reusedOut[0] === 1 } : { buffer: new ArrayBuffer(size), stale: false };
}

const reusedOut = new Int32Array(1);
/** From the shim (null below BIG_MIN, off Linux, or when mmap fails); with `reuse`, reusedOut says whether a pooled mapping served. */
function mapped(size: number, reuse: boolean): ArrayBuffer | null {
  if (size < BIG_MIN || freeFn === null) return null;
  external(size);
  scheduleTrim();
  const p = native.lw_big_alloc(size, reuse ? 1 : 0, reusedOut) as Pointer | null;
  return p === null ? null : wrap(p, 0, size, size, freeFn);
}

const pooledOut = new Float64Array(1);
/** Bytes of big buffers mapped now, and how many of them wait in the pool (for tests: collected ones go back). */
export function bigBytesMapped(): { mapped: number; pooled: number } {
  const mapped = native.lw_big_mapped(pooledOut);
  return { mapped, pooled: pooledOut[0]! };
}

/** Buffers given back by released messages (most recent last), for {@link reusableBuffer}. */
const recycled: ArrayBuffer[] = [];
let recycledBytes = 0;
const RECYCLE_MAX_BYTES = 64 * 1024 * 1024;
const RECYCLE_MAX_COUNT = 4;

type Transferable = ArrayBuffer & { readonly detached: boolean; transfer(): ArrayBuffer };

/**
 * Take `buf` (≥ {@link BIG_MIN}) back for reuse. It is detached first (its
 * memory moves, uncopied, to a new ArrayBuffer), so every view of it reads
 * as empty from now on rather than as the next message's bytes.
 */
export function recycleBuffer(buf: ArrayBuffer): void {
  const b = buf as Transferable;
  if (b.byteLength < BIG_MIN || b.detached || typeof b.transfer !== "function") return;
  const moved = b.transfer();
  recycled.push(moved);
  recycledBytes += moved.byteLength;
  while (recycled.length > RECYCLE_MAX_COUNT || recycledBytes > RECYCLE_MAX_BYTES) recycledBytes -= recycled.shift()!.byteLength;
  scheduleTrim();
}

/**
 * Give the pooled buffers' memory back now: the ones released messages left
 * for reuse, and the mappings the shim kept from collected ones. The pools
 * do this by themselves after {@link POOL_IDLE_MS} without large messages;
 * a program may call it after a burst it knows is over. Returns the bytes
 * unmapped at once (those released here are unmapped when collected).
 */
export function trimBigBuffers(): number {
  recycled.length = 0;
  recycledBytes = 0;
  return native.lw_big_trim();
}

/** Pools idle this long (ms) are emptied: a burst of large messages does not keep its memory for good. */
export const POOL_IDLE_MS = 10_000;
let trimTimer: ReturnType<typeof setTimeout> | null = null;
let lastUse = 0;
function scheduleTrim(): void {
  lastUse = performance.now();
  if (trimTimer !== null) return;
  trimTimer = setTimeout(onTrimTimer, POOL_IDLE_MS);
  (trimTimer as { unref?: () => void }).unref?.();
}
function onTrimTimer(): void {
  trimTimer = null;
  const idle = performance.now() - lastUse;
  if (idle < POOL_IDLE_MS) {
    trimTimer = setTimeout(onTrimTimer, POOL_IDLE_MS - idle);
    (trimTimer as { unref?: () => void }).unref?.();
    return;
  }
  const hadRecycled = recycled.length > 0;
  trimBigBuffers();
  // What was just let go reaches the shim's pool when collected: empty that once more later.
  if (hadRecycled) scheduleTrim();
}

/**
 * JSC does not count these buffers as memory it must reclaim, so on its own
 * it collects them late (a stream of 16 MiB messages dropped without
 * `using` would map hundreds of MiB and keep paging fresh memory in). After
 * every {@link GC_HINT_BYTES} of them, ask for a collection: `Bun.gc(false)`
 * only requests one (≈ µs), and what it frees goes back to the pool.
 * Measured (bench (b), messages kept): 1.3–4.3 GB/s and RSS up to 375 MiB
 * without the hint, 4.0–4.4 GB/s and ≤ 231 MiB with it.
 */
const GC_HINT_BYTES = 64 * 1024 * 1024;
let sinceHint = 0;
function external(size: number): void {
  sinceHint += size;
  if (sinceHint < GC_HINT_BYTES) return;
  sinceHint = 0;
  Bun.gc(false);
}
