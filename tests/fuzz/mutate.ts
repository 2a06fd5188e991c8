/**
 * Byte mutators: blind ones (bit flips, interesting bytes and words,
 * truncation, extension, insertion, deletion, splicing, repetition) and
 * field-aware ones that use a {@link layoutOf} map to set counts and length
 * members huge or zero, flip presence bytes, alias ids, fd indicators, handle
 * localities and union tags.
 * @module
 */
import type { Field } from "./layout.ts";
import type { Rng } from "./rng.ts";

const BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x02, 0x81] as const;
const U32S = [0, 1, 2, 0xffffffff, 0x7fffffff, 0x80000000, 0xffff, 0x10000, 0x10001, 0xfffffffe, 0x100, 0x40000000] as const;

function put(b: Uint8Array, off: number, size: number, v: bigint | number): void {
  let x = BigInt.asUintN(size * 8, BigInt(v));
  for (let i = size - 1; i >= 0; i--) {
    if (off + i < b.length) b[off + i] = Number(x & 0xffn);
    x >>= 8n;
  }
}

function get(b: Uint8Array, off: number, size: number): bigint {
  let x = 0n;
  for (let i = 0; i < size && off + i < b.length; i++) x = (x << 8n) | BigInt(b[off + i]!);
  return x;
}

/** An interesting value for an integer field of `size` bytes that held `cur`, with `remaining` bytes after it. */
function interestingInt(rng: Rng, size: number, signed: boolean, cur: bigint, remaining: number): bigint {
  const bits = BigInt(size * 8);
  const umax = (1n << bits) - 1n;
  const smax = (1n << (bits - 1n)) - 1n;
  const choices: bigint[] = [0n, 1n, umax, smax, smax + 1n, cur + 1n, cur - 1n, BigInt(remaining), BigInt(remaining) + 1n, BigInt(rng.int(2, 300))];
  if (size >= 4) choices.push(...U32S.map(BigInt));
  if (signed) choices.push(-1n, -2n);
  return rng.chance(0.15) ? BigInt(rng.u32()) * (size === 8 ? BigInt(rng.u32()) : 1n) : rng.pick(choices);
}

export type Mutator = (rng: Rng, b: Uint8Array, fields: readonly Field[], other: () => Uint8Array) => Uint8Array;

function fieldMutation(rng: Rng, b: Uint8Array, fields: readonly Field[]): Uint8Array {
  const live = fields.filter((f) => f.off < b.length);
  if (live.length === 0) return flip(rng, b);
  // structural fields first: they change how everything after them is read
  const structural = live.filter((f) => f.kind !== "int" && f.kind !== "bytes" && f.kind !== "enum" && f.kind !== "bool");
  const f = structural.length && rng.chance(0.75) ? rng.pick(structural) : rng.pick(live);
  const out = b.slice();
  const remaining = b.length - (f.off + f.size);
  switch (f.kind) {
    case "count":
    case "length":
    case "alias":
    case "hid":
    case "int":
    case "tag":
    case "enum":
      put(out, f.off, f.size, interestingInt(rng, f.size, !!f.signed, get(b, f.off, f.size), remaining));
      break;
    case "presence":
    case "fd":
    case "bool":
      out[f.off] = rng.pick([0x00, 0xff, 0x01, 0x7f, 0x80, 0xfe, 0x02]);
      break;
    case "locality":
      out[f.off] = rng.pick([0, 1, 2, 3, 0xff, 0x80]);
      break;
    case "bytes": {
      const i = f.off + rng.below(f.size);
      // NUL inside a string, invalid UTF-8 lead/continuation bytes, overlong forms
      out[i] = rng.pick([0x00, 0xff, 0xc0, 0x80, 0xed, 0xf4, 0xf8, rng.u32() & 0xff]);
      break;
    }
  }
  return out;
}

function allCounts(rng: Rng, b: Uint8Array, fields: readonly Field[]): Uint8Array {
  const counts = fields.filter((f) => (f.kind === "count" || f.kind === "length") && f.off + f.size <= b.length);
  if (counts.length === 0) return fieldMutation(rng, b, fields);
  const out = b.slice();
  const v = BigInt(rng.pick([0, 0xffffffff, 0x7fffffff, 0x10000, 0xffff, b.length, 1]));
  for (const f of counts) put(out, f.off, f.size, v);
  return out;
}

function flip(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length === 0) return new Uint8Array([rng.pick(BYTES)]);
  const out = b.slice();
  for (let k = rng.int(1, 4); k > 0; k--) {
    const i = rng.below(out.length);
    out[i]! ^= 1 << rng.below(8);
  }
  return out;
}

function byteValue(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length === 0) return new Uint8Array([rng.pick(BYTES)]);
  const out = b.slice();
  out[rng.below(out.length)] = rng.pick(BYTES);
  return out;
}

function word(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length < 2) return byteValue(rng, b);
  const out = b.slice();
  const size = b.length >= 4 && rng.chance(0.6) ? 4 : 2;
  const off = rng.below(b.length - size + 1);
  put(out, off, size, size === 4 ? rng.pick(U32S) : rng.pick([0, 0xffff, 0x7fff, 0x8000, 1]));
  return out;
}

function truncate(rng: Rng, b: Uint8Array, fields: readonly Field[]): Uint8Array {
  if (b.length === 0) return b;
  // at a field boundary half of the time (the truncation lands exactly before or inside a count)
  if (fields.length && rng.chance(0.5)) {
    const f = rng.pick(fields);
    return b.slice(0, Math.min(b.length - 1, f.off + rng.below(f.size + 1)));
  }
  return b.slice(0, rng.below(b.length));
}

function extend(rng: Rng, b: Uint8Array): Uint8Array {
  const n = rng.int(1, 64);
  const tail = rng.chance(0.5) ? rng.bytes(n) : new Uint8Array(n).fill(rng.pick(BYTES));
  const out = new Uint8Array(b.length + n);
  out.set(b);
  out.set(tail, b.length);
  return out;
}

function insert(rng: Rng, b: Uint8Array): Uint8Array {
  const at = rng.below(b.length + 1);
  const ins = rng.chance(0.5) ? rng.bytes(rng.int(1, 8)) : new Uint8Array(rng.int(1, 4)).fill(rng.pick(BYTES));
  const out = new Uint8Array(b.length + ins.length);
  out.set(b.subarray(0, at));
  out.set(ins, at);
  out.set(b.subarray(at), at + ins.length);
  return out;
}

function remove(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length === 0) return b;
  const at = rng.below(b.length);
  const n = rng.int(1, Math.min(8, b.length - at));
  const out = new Uint8Array(b.length - n);
  out.set(b.subarray(0, at));
  out.set(b.subarray(at + n), at);
  return out;
}

function splice(rng: Rng, b: Uint8Array, _f: readonly Field[], other: () => Uint8Array): Uint8Array {
  const o = other();
  const cutA = rng.below(b.length + 1);
  const cutB = rng.below(o.length + 1);
  const out = new Uint8Array(cutA + (o.length - cutB));
  out.set(b.subarray(0, cutA));
  out.set(o.subarray(cutB), cutA);
  return out;
}

/** Repeat a short slice many times: nested pointers, long lists, deep recursion. */
function repeat(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length === 0) return b;
  const i = rng.below(b.length);
  const len = rng.int(1, Math.min(8, b.length - i));
  const times = rng.chance(0.1) ? rng.int(1000, 40000) : rng.int(2, 64);
  const piece = b.subarray(i, i + len);
  const out = new Uint8Array(b.length + len * (times - 1));
  out.set(b.subarray(0, i));
  for (let k = 0; k < times; k++) out.set(piece, i + k * len);
  out.set(b.subarray(i + len), i + times * len);
  return out;
}

function randomRange(rng: Rng, b: Uint8Array): Uint8Array {
  if (b.length === 0) return rng.bytes(rng.int(1, 16));
  const out = b.slice();
  const at = rng.below(b.length);
  const n = rng.int(1, Math.min(16, b.length - at));
  out.set(rng.bytes(n), at);
  return out;
}

const MUTATORS: readonly (readonly [number, string, Mutator])[] = [
  [10, "flip", (r, b) => flip(r, b)],
  [8, "byte", (r, b) => byteValue(r, b)],
  [6, "word", (r, b) => word(r, b)],
  [24, "field", fieldMutation],
  [4, "allCounts", allCounts],
  [8, "truncate", truncate],
  [4, "extend", (r, b) => extend(r, b)],
  [4, "insert", (r, b) => insert(r, b)],
  [4, "delete", (r, b) => remove(r, b)],
  [5, "splice", splice],
  [3, "repeat", (r, b) => repeat(r, b)],
  [4, "random", (r, b) => randomRange(r, b)],
];

/** Apply 1–4 mutations (mostly one). Returns the bytes and the names of the mutations applied. */
export function mutate(rng: Rng, bytes: Uint8Array, fields: readonly Field[], other: () => Uint8Array): { bytes: Uint8Array; ops: string[] } {
  const ops: string[] = [];
  let b = bytes;
  let n = 1;
  while (n < 4 && rng.chance(0.3)) n++;
  for (let k = 0; k < n; k++) {
    const [, name, fn] = rng.weighted(MUTATORS.map((m) => [m[0], m] as const));
    b = fn(rng, b, fields, other);
    ops.push(name);
  }
  return { bytes: b, ops };
}

/** Random bytes: uniform, or biased to the bytes that mean something (00, FF, small counts). */
export function randomBytes(rng: Rng, max = 96): Uint8Array {
  const n = rng.size(max);
  if (rng.chance(0.5)) return rng.bytes(n);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.chance(0.6) ? rng.pick(BYTES) : rng.u32() & 0xff;
  return out;
}
