/**
 * Helpers the generated codecs call. Everything on the hot path is tiny;
 * everything that builds an error message (and so the field path) runs only
 * when something is already wrong.
 * @module
 */
import { ptr, type Pointer } from "bun:ffi";
import { native } from "../native/ffi.ts";
import { LwMsgError, Status, statusShortName } from "../status.ts";
import type { ByteWriter } from "./io.ts";

/** An LwMsgError that knows the path of the offending field, so callers up a recursive call chain can prefix it. */
interface PathError extends LwMsgError {
  lwPath?: string;
  lwDetail?: string;
}

/** Build the error for `path` (e.g. `value.items[3].mode`). */
export function fail(status: Status, path: string, detail: string): LwMsgError {
  const e = new LwMsgError(status, path ? `${path}: ${detail}` : detail) as PathError;
  e.lwPath = path;
  e.lwDetail = detail;
  return e;
}

/** Short printable form of a JS value for error messages. */
export function describe(x: unknown): string {
  if (x === null) return "null";
  if (x === undefined) return "undefined";
  switch (typeof x) {
    case "string":
      return x.length > 40 ? `string "${x.slice(0, 37)}..."` : `string ${JSON.stringify(x)}`;
    case "bigint":
      return `${x}n`;
    case "number":
    case "boolean":
      return String(x);
    case "function":
      return "a function";
    default:
      if (Array.isArray(x)) return `an array of ${x.length}`;
      if (ArrayBuffer.isView(x)) return `a ${x.constructor.name} of ${(x as Uint8Array).length}`;
      return "an object";
  }
}

/**
 * Deepest nesting of recursive types (`Lw.Recursive`) a value may have on
 * encode, decode and print. Every level is a JS call; without a bound a long
 * enough list or tree (a few bytes per level on the wire) exhausts the stack
 * and throws a RangeError (the C library would crash). lwmsg's own
 * unmarshaller runs out of an 8 MiB C stack at a few thousand levels.
 */
export const MAX_DEPTH = 4096;

/** Nesting deeper than {@link MAX_DEPTH}: OVERFLOW (a limit, like MAX_ALLOC). */
export function tooDeep(): LwMsgError {
  return fail(Status.OVERFLOW, "", `recursive types nested deeper than ${MAX_DEPTH} levels`);
}

/** The JS stack ran out anyway (called from deep in a program): OVERFLOW instead of a RangeError. */
export function stackErr(e: unknown): unknown {
  if (e instanceof RangeError && /call stack/i.test(e.message)) {
    const err = fail(Status.OVERFLOW, "", "recursive types nested too deep for the stack");
    (err as { cause?: unknown }).cause = e;
    return err;
  }
  return e;
}

/**
 * The decoded-size budget (issue 16). Every decode charges what it builds
 * against one budget, before it builds it: the JS heap a value takes, roughly
 * as JSC lays it out, not its bytes on the wire (an array of 1-byte structs
 * takes about 48 bytes of heap per wire byte). Counts read from the wire are
 * charged in full before the array is allocated, so a claimed count can never
 * commit memory the budget does not allow. Elements that take no bytes on the
 * wire (void, empty structs) are bounded by it too: nothing else bounds them.
 */
export const COST = {
  /** A struct's object header; each member adds a {@link COST.SLOT}. */
  OBJECT: 32,
  /** One property or array element. */
  SLOT: 8,
  /** An Array's header; each element adds a slot (and what it holds). */
  ARRAY: 32,
  /** A Uint8Array/Int8Array with its ArrayBuffer; each byte adds 1. */
  BYTES: 64,
  /** A string's header; each byte (8-bit text) or code unit (16-bit text: 2) adds its size. */
  STRING: 32,
  /** A 64-bit integer's bigint. */
  BIGINT: 24,
  /** A handle proxy object. */
  HANDLE: 48,
} as const;

/** The default budget of a decode: this much plus {@link DECODE_BUDGET_PER_BYTE} per input byte. */
export const DECODE_BUDGET_FLOOR = 1 << 20;
/** Heap bytes per input byte the default budget allows: above the ~48× of an array of 1-byte structs, so real data fits. */
export const DECODE_BUDGET_PER_BYTE = 64;

/** The budget of a decode of `inputBytes` that was given none (`CodecContext.maxDecodedBytes` < 0). */
export function defaultDecodeBudget(inputBytes: number): number {
  return DECODE_BUDGET_FLOOR + DECODE_BUDGET_PER_BYTE * inputBytes;
}

/**
 * Arrays of variable-size elements with a count from the wire are
 * preallocated up to this many elements; longer ones grow as their elements
 * decode (see decode-gen.ts).
 */
export const PREALLOC_MAX = 64;

/** The decode would build more than its budget allows: MEMORY (lwmsg's status for an allocation that fails), before anything is allocated. */
export function budgetErr(path: string, limit: number): LwMsgError {
  return fail(Status.MEMORY, path, `decoding it would exceed the decoded-size budget of ${limit} bytes (maxDecodedBytes)`);
}

/** Input ran out: `need` more bytes at `path`. */
export function eof(path: string): LwMsgError {
  return fail(Status.EOF, path, "unexpected end of input");
}

/** A value that failed the inline integer check: wrong JS type (MALFORMED) or out of the wire range (OVERFLOW). */
export function intErr(x: unknown, width: number, signed: boolean, path: string): LwMsgError {
  const t = `${signed ? "" : "u"}int${width * 8}`;
  if (typeof x !== "number") return fail(Status.MALFORMED, path, `expected a number for ${t}, got ${describe(x)}`);
  if (!Number.isInteger(x)) return fail(Status.MALFORMED, path, `expected an integer for ${t}, got ${x}`);
  return fail(Status.OVERFLOW, path, `${x} does not fit ${t}`);
}

/** Number → bigint for 64-bit fields (safe integers only: never a silent precision loss). */
export function toBig(x: unknown, signed: boolean, path: string): bigint {
  if (typeof x === "number" && Number.isSafeInteger(x)) return BigInt(x);
  const t = `${signed ? "" : "u"}int64`;
  if (typeof x === "number") {
    if (Number.isInteger(x)) return failThrow(Status.OVERFLOW, path, `${x} is not a safe integer; pass a bigint for ${t}`);
    return failThrow(Status.MALFORMED, path, `expected an integer for ${t}, got ${x}`);
  }
  return failThrow(Status.MALFORMED, path, `expected a bigint for ${t}, got ${describe(x)}`);
}

function failThrow(status: Status, path: string, detail: string): never {
  throw fail(status, path, detail);
}

export function bigErr(x: bigint, signed: boolean, path: string): LwMsgError {
  return fail(Status.OVERFLOW, path, `${x} does not fit ${signed ? "" : "u"}int64`);
}

export function typeErr(expected: string, x: unknown, path: string): LwMsgError {
  return fail(Status.MALFORMED, path, `expected ${expected}, got ${describe(x)}`);
}

export function rangeErr(x: unknown, lo: unknown, hi: unknown, path: string): LwMsgError {
  return fail(Status.MALFORMED, path, `${String(x)} is outside the range [${String(lo)}, ${String(hi)}]`);
}

export function enumErr(x: number, path: string): LwMsgError {
  return fail(Status.MALFORMED, path, `enum value ${x} not declared`);
}

/** A verify callback said no: `false` → MALFORMED, a status → that status. */
export function verifyErr(r: unknown, path: string): LwMsgError {
  if (typeof r === "number" && r > 0 && r <= 28) return fail(r as Status, path, "rejected by verify");
  return fail(Status.MALFORMED, path, "rejected by verify");
}

/** Add `pre` in front of the path of an error thrown further down (recursive types, handle codecs, callbacks). */
export function prefix(e: unknown, pre: string): unknown {
  if (e instanceof LwMsgError) {
    const pe = e as PathError;
    if (pe.lwPath === undefined) {
      const short = `${statusShortName(e.status)}: `;
      pe.lwDetail = e.message.startsWith(short) ? e.message.slice(short.length) : e.message;
      pe.lwPath = "";
    }
    pe.lwPath = pre + pe.lwPath;
    pe.message = `${statusShortName(e.status)}: ${pe.lwPath}: ${pe.lwDetail}`;
    return e;
  }
  return e;
}

/** Errors from user callbacks (marshal, unmarshal, verify): keep LwMsgErrors (with the path), wrap anything else as MALFORMED. */
export function wrap(e: unknown, path: string): LwMsgError {
  if (e instanceof LwMsgError) return prefix(e, path) as LwMsgError;
  const err = fail(Status.MALFORMED, path, `callback threw: ${e instanceof Error ? e.message : String(e)}`);
  (err as { cause?: unknown }).cause = e;
  return err;
}

/** Grow the writer so `n` bytes fit at `p`, without moving `w.pos` (the encoder keeps its cursor in a local). */
export function grow(w: ByteWriter, p: number, n: number): Uint8Array {
  const saved = w.pos;
  w.pos = p;
  try {
    w.ensure(n);
  } finally {
    w.pos = saved;
  }
  return w.buf;
}

/** A length member's value → element count (§2.3: read as a signed native integer). */
export function count(v: unknown, path: string): number {
  if (typeof v === "number") {
    if (v >= 0 && Number.isInteger(v)) return v;
    if (v < 0 && Number.isInteger(v)) throw fail(Status.MALFORMED, path, `negative length ${v}`);
  } else if (typeof v === "bigint") {
    if (v < 0n) throw fail(Status.MALFORMED, path, `negative length ${v}`);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(Status.OVERFLOW, path, `length ${v} overflows`);
    return Number(v);
  } else if (typeof v === "boolean") return v ? 1 : 0;
  throw fail(Status.MALFORMED, path, `length member is ${describe(v)}`);
}

/** A discriminator's value → tag number (bigint, boolean and number members all work). */
export function tag(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  return NaN;
}

// Large copies go in 2 KiB pieces: glibc copies bigger blocks with `rep movsb`,
// which is 20-30× slower on this class of machine when the destination sits
// just past the source modulo 4 KiB (e.g. a payload at offset 8 of a packet).
// Buffer.prototype.copy takes source ranges, so the pieces need no subarray.
const CHUNK = 2048;
const bcopy = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

/** From this size on the pieces are copied by the shim in one call (the same 2 KiB pieces, no per-piece call). */
const NATIVE_COPY_MIN = 256 * 1024;

/** Copy all the bytes of `src` into `dst` at `at` (not overlapping). */
export function copyBytes(src: Uint8Array | Int8Array, dst: Uint8Array, at: number): void {
  const n = src.length;
  if (n <= CHUNK) {
    dst.set(src, at);
    return;
  }
  if (n >= NATIVE_COPY_MIN && at + n <= dst.length) {
    native.lw_copy((ptr(dst) + at) as Pointer, ptr(src), n);
    return;
  }
  const u8 = src instanceof Uint8Array ? src : new Uint8Array(src.buffer, src.byteOffset, n);
  for (let o = 0; o < n; o += CHUNK) bcopy.call(u8, dst, at + o, o, Math.min(n, o + CHUNK));
}
