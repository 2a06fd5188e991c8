/**
 * Text on the wire (lwmsg strings, `LWMSG_ATTR_STRING`), for the generated
 * codecs. lwmsg strings are raw bytes: the C library passes them through
 * unchanged. Ours never change them silently either (README, "Strings"):
 * - UTF-8 (the default): a received string that is not valid UTF-8 is
 *   MALFORMED, never a U+FFFD replacement; a JS string with a lone surrogate
 *   (which has no UTF-8 form) is MALFORMED on encode.
 * - `latin1` / `ascii`: one byte per character (U+0001–U+00FF / U+007F).
 * - `ucs-2` / `utf-16`: 16-bit elements, one per UTF-16 code unit, big-endian
 *   on the wire like every lwmsg integer (`LWMSG_PWSTR` in pbis: `uint16`
 *   elements, zero-terminated, count in elements).
 * - `bytes`: the exact bytes as a `Uint8Array`.
 * In every form an embedded NUL is MALFORMED both ways: a C receiver would
 * cut the string there.
 *
 * Every decoder here returns `null` for text it refuses; the generated code
 * then throws {@link textErr}, which works out the detail (and the field path
 * is known at the throw site), so the hot path builds no messages.
 * @module
 */
import { Status } from "../status.ts";
import type { TextForm } from "../types.ts";
import { fail } from "./runtime.ts";

// Bun's Buffer has native utf8Write/utf8Slice/latin1Slice that work on any
// offset without creating a subarray; keep one Buffer view per underlying
// buffer so the common case (the connection's reused writer/reader) allocates
// nothing.
type NativeBuf = Buffer & {
  utf8Write?(s: string, offset: number, length?: number): number;
  utf8Slice?(start: number, end: number): string;
  latin1Slice?(start: number, end: number): string;
};
let wU8: Uint8Array | null = null;
let wBuf: NativeBuf | null = null;
let rU8: Uint8Array | null = null;
let rBuf: NativeBuf | null = null;
const te = new TextEncoder();
const td = new TextDecoder("utf-8");
const proto = Buffer.prototype as NativeBuf;
const hasNative = typeof proto.utf8Write === "function" && typeof proto.utf8Slice === "function" && typeof proto.latin1Slice === "function";

function readBuf(u8: Uint8Array): NativeBuf {
  if (u8 !== rU8 || rBuf!.length !== u8.length) {
    rU8 = u8;
    rBuf = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength) as NativeBuf;
  }
  return rBuf!;
}

/** Offset of the first byte of `[start, end)` that does not belong to a valid UTF-8 sequence, or -1. */
export function firstBadUtf8(u8: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end) {
    const c = u8[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0; // no overlongs
      else if (c === 0xed) hi = 0x9f; // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      else if (c === 0xf4) hi = 0x8f; // ≤ U+10FFFF
    } else return i;
    if (i + n >= end) return i; // truncated sequence
    const b1 = u8[i + 1]!;
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k <= n; k++) {
      const b = u8[i + k]!;
      if (b < 0x80 || b > 0xbf) return i;
    }
    i += n + 1;
  }
  return -1;
}

/** Decode UTF-8 bytes `[start, end)` exactly: `null` if they are not valid UTF-8 or hold a NUL. */
export function utf8Exact(u8: Uint8Array, start: number, end: number): string | null {
  const s = hasNative ? readBuf(u8).utf8Slice!(start, end) : td.decode(u8.subarray(start, end));
  // an invalid sequence always decodes to U+FFFD, so without one the bytes were valid (the usual case: one native scan)
  if (s.indexOf("\uFFFD") !== -1 && firstBadUtf8(u8, start, end) !== -1) return null;
  if (s.indexOf("\0") !== -1) return null;
  return s;
}

/**
 * Per-site memo of the last short ASCII string a decoder produced: IPC
 * messages repeat the same names, paths and user names, and comparing ≤ 32
 * bytes is several times cheaper than creating a string. Strings are
 * immutable, so handing out the same instance again is invisible to callers.
 * Only ASCII strings are kept (their bytes are their char codes), so a miss
 * costs no copy.
 */
export class StrMemo {
  s: string | null = null;
}

/** Decode a UTF-8 string of `n` bytes at `p` (`null` if refused), reusing `m`'s last result when the bytes are the same. */
export function strAt(u8: Uint8Array, p: number, n: number, m: StrMemo): string | null {
  if (n > 32) return utf8Exact(u8, p, p + n);
  const last = m.s;
  if (last !== null && last.length === n) {
    let i = 0;
    while (i < n && u8[p + i] === last.charCodeAt(i)) i++;
    if (i === n) return last;
  }
  let or = 0;
  for (let i = 0; i < n; i++) {
    const c = u8[p + i]!;
    if (c === 0) return null;
    or |= c;
  }
  if (or >= 128 || !hasNative) {
    m.s = null;
    return utf8Exact(u8, p, p + n);
  }
  // latin1Slice is the cheapest way to make a string, and exact for ASCII
  return (m.s = readBuf(u8).latin1Slice!(p, p + n));
}

/** Static-length text: the bytes up to the first NUL (the padding), exactly; `null` if not valid UTF-8. */
export function utf8ReadPadded(u8: Uint8Array, start: number, end: number): string | null {
  let e = start;
  while (e < end && u8[e] !== 0) e++;
  return utf8Exact(u8, start, e);
}

/** One byte per character, each ≤ `max` (255 latin1, 127 ascii): `null` for a NUL or a byte above `max`. */
export function byteText(u8: Uint8Array, p: number, n: number, max: number): string | null {
  for (let i = 0; i < n; i++) {
    const c = u8[p + i]!;
    if (c === 0 || c > max) return null;
  }
  if (hasNative) return readBuf(u8).latin1Slice!(p, p + n);
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(u8[p + i]!);
  return s;
}

/** `n` big-endian 16-bit code units at `p`, each one JS char (lone surrogates too: nothing is changed); `null` for a 0 unit. */
export function utf16Text(u8: Uint8Array, p: number, n: number): string | null {
  const units = new Uint16Array(Math.min(n, 4096));
  let s = "";
  for (let done = 0; done < n; ) {
    const k = Math.min(units.length, n - done);
    for (let i = 0; i < k; i++) {
      const at = p + 2 * (done + i);
      const c = (u8[at]! << 8) | u8[at + 1]!;
      if (c === 0) return null;
      units[i] = c;
    }
    s += String.fromCharCode.apply(null, (k === units.length ? units : units.subarray(0, k)) as unknown as number[]);
    done += k;
  }
  return s;
}

/** Why text `[p, p + n)` (elements, not bytes, for 16-bit forms) of form `form` was refused; `padded`: static-length text ending at its first NUL. */
export function textErr(u8: Uint8Array, p: number, n: number, form: TextForm, path: string, padded = false): Error {
  const width = form === "utf-16" ? 2 : 1;
  if (padded) {
    let e = p;
    while (e < p + n && u8[e] !== 0) e++;
    n = e - p;
  }
  for (let i = 0; i < n; i++) {
    const c = width === 2 ? (u8[p + 2 * i]! << 8) | u8[p + 2 * i + 1]! : u8[p + i]!;
    if (c === 0) return fail(Status.MALFORMED, path, `string contains NUL at ${width === 2 ? "element" : "byte"} ${i} (a C receiver would cut it there)`);
    if ((form === "latin1" && c > 255) || (form === "ascii" && c > 127)) return fail(Status.MALFORMED, path, `byte 0x${c.toString(16)} at ${i} is not ${form}`);
  }
  if (form === "utf-8") {
    const bad = firstBadUtf8(u8, p, p + n);
    if (bad !== -1) {
      const b = u8[bad]!.toString(16).padStart(2, "0");
      return fail(Status.MALFORMED, path, `invalid UTF-8 at byte ${bad - p} of ${n} (0x${b}); use Lw.String({ bytes: true }) to take the exact bytes, or declare the sender's encoding`);
    }
  }
  return fail(Status.MALFORMED, path, `string refused (${form})`);
}

// ---------------------------------------------------------------------------
// encoding

/** Where a JS string cannot be UTF-8 without a change: the index of its first lone surrogate, or -1. */
function loneSurrogate(s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return i;
  }
  return -1;
}

/**
 * Write `s` as UTF-8 at `at` (room for 3 bytes per UTF-16 unit must already
 * be reserved); returns the end position. A NUL inside the string is
 * MALFORMED (zero-terminated strings cannot carry it), and so is a lone
 * surrogate (UTF-8 has no form for it; writing U+FFFD would change the data).
 */
export function utf8Write(u8: Uint8Array, s: string, at: number, path: string): number {
  if (s.indexOf("\0") !== -1) throw fail(Status.MALFORMED, path, "string contains NUL (a C receiver would cut it there)");
  // JSC's 8-bit strings answer isWellFormed at once; only strings with 16-bit chars are scanned
  if (!s.isWellFormed()) throw fail(Status.MALFORMED, path, `string has a lone surrogate at index ${loneSurrogate(s)} (no UTF-8 form)`);
  if (hasNative) {
    if (u8 !== wU8 || wBuf!.length !== u8.length) {
      wU8 = u8;
      wBuf = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength) as NativeBuf;
    }
    return at + wBuf!.utf8Write!(s, at);
  }
  return at + te.encodeInto(s, u8.subarray(at)).written;
}

/** UTF-8 byte length of `s` (for static/member-length text). */
export function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** Write `s` one byte per character (latin1: `max` 255, ascii: 127) at `at`; returns the end. */
export function byteTextWrite(u8: Uint8Array, s: string, at: number, max: number, path: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) throw fail(Status.MALFORMED, path, `string contains NUL at index ${i} (a C receiver would cut it there)`);
    if (c > max) throw fail(Status.MALFORMED, path, `character U+${c.toString(16).toUpperCase().padStart(4, "0")} at index ${i} is not ${max === 255 ? "latin1" : "ascii"}`);
    u8[at + i] = c;
  }
  return at + n;
}

/** Write `s` as big-endian 16-bit code units at `at`; returns the end. */
export function utf16Write(u8: Uint8Array, s: string, at: number, path: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) throw fail(Status.MALFORMED, path, `string contains NUL at index ${i} (a C receiver would cut it there)`);
    u8[at + 2 * i] = c >> 8;
    u8[at + 2 * i + 1] = c;
  }
  return at + 2 * n;
}

/** Byte-string bytes for the wire: MALFORMED when they hold a NUL. */
export function checkBytes(x: Uint8Array, path: string): void {
  const z = x.indexOf(0);
  if (z !== -1) throw fail(Status.MALFORMED, path, `string bytes contain NUL at byte ${z} (a C receiver would cut it there)`);
}
