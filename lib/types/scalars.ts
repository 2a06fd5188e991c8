/**
 * Scalar builders: the integers (`LWMSG_INT*`/`UINT*`), `Bool` and `Enum`.
 * @module
 */
import { Type, type TBoolean, type TInteger } from "@sinclair/typebox";
import { common, withWire } from "./build.ts";
import { bad, type LwSchema, type TLwInt, type TLwInt64, type VerifyFn, type WireBool, type WireEnum, type WireInt } from "./wire.ts";

/** Options of the integer builders. */
export interface IntOptions<V = number> {
  /**
   * `LWMSG_ATTR_RANGE(lo, hi)`: values outside are MALFORMED (encode and
   * decode). Compared with the integer's own signedness: lwmsg compares as
   * unsigned 64-bit (reference §10, quirk 14), so negative bounds misbehave
   * there; the two agree whenever both bounds are non-negative.
   */
  range?: [V, V];
  verify?: VerifyFn<V>;
  sensitive?: boolean;
}
/** Options of the 64-bit builders (bounds may be bigint, safe integers or decimal strings). */
export interface Int64Options {
  range?: [bigint | number | string, bigint | number | string];
  verify?: VerifyFn<bigint>;
  sensitive?: boolean;
}

/** Bounds of a `width`-byte integer, as bigint. */
export function intBounds(width: number, signed: boolean): [bigint, bigint] {
  const bits = BigInt(width * 8);
  return signed ? [-(1n << (bits - 1n)), (1n << (bits - 1n)) - 1n] : [0n, (1n << bits) - 1n];
}

function toBig(v: bigint | number | string, what: string): bigint {
  try {
    if (typeof v === "number" && !Number.isSafeInteger(v)) throw 0;
    return BigInt(v);
  } catch {
    bad(`${what} must be an integer (got ${String(v)})`);
  }
}

function checkRange(range: [unknown, unknown] | undefined, width: number, signed: boolean): [bigint, bigint] | undefined {
  if (range === undefined) return undefined;
  if (!Array.isArray(range) || range.length !== 2) bad("range must be [lo, hi]");
  const lo = toBig(range[0] as bigint, "range low bound");
  const hi = toBig(range[1] as bigint, "range high bound");
  const [min, max] = intBounds(width, signed);
  if (lo > hi) bad(`range [${lo}, ${hi}] is empty`);
  if (lo < min || hi > max) bad(`range [${lo}, ${hi}] exceeds the ${signed ? "" : "u"}int${width * 8} bounds`);
  return [lo, hi];
}

function int32Builder<W extends 1 | 2 | 4, S extends boolean>(width: W, signed: S) {
  return (opts?: IntOptions): TLwInt<W, S> => {
    const r = checkRange(opts?.range, width, signed);
    const [min, max] = r ?? intBounds(width, signed);
    const wire: WireInt = { kind: "int", width, signed, ...common(opts) };
    if (r) wire.range = [Number(r[0]), Number(r[1])];
    return withWire(Type.Integer({ minimum: Number(min), maximum: Number(max) }), wire) as TLwInt<W, S>;
  };
}

function int64Builder<S extends boolean>(signed: S) {
  return (opts?: Int64Options): TLwInt64<S> => {
    const r = checkRange(opts?.range as [unknown, unknown] | undefined, 8, signed);
    const wire: WireInt = { kind: "int", width: 8, signed, ...common(opts) };
    // Strings, not BigInt: the schema must survive JSON.stringify.
    if (r) wire.range = [r[0].toString(), r[1].toString()];
    return withWire(Type.BigInt(), wire) as TLwInt64<S>;
  };
}

/** `LWMSG_INT8`: signed 8-bit, JS number. */
export const Int8 = int32Builder(1, true);
/** `LWMSG_INT16`: signed 16-bit, JS number. */
export const Int16 = int32Builder(2, true);
/** `LWMSG_INT32`: signed 32-bit, JS number. */
export const Int32 = int32Builder(4, true);
/** `LWMSG_INT64`: signed 64-bit, JS bigint (never a lossy number). */
export const Int64 = int64Builder(true);
/** `LWMSG_UINT8`: unsigned 8-bit, JS number. Arrays of it are `Uint8Array`. */
export const UInt8 = int32Builder(1, false);
/** `LWMSG_UINT16`: unsigned 16-bit, JS number. */
export const UInt16 = int32Builder(2, false);
/** `LWMSG_UINT32`: unsigned 32-bit, JS number. */
export const UInt32 = int32Builder(4, false);
/** `LWMSG_UINT64`: unsigned 64-bit, JS bigint. */
export const UInt64 = int64Builder(false);

/** `LWMSG_MEMBER_BOOL`: one byte, 0 or 1 (anything else is MALFORMED), presented as a JS boolean. */
export function Bool(opts?: { verify?: VerifyFn<boolean>; sensitive?: boolean }): LwSchema<TBoolean, WireBool> {
  return withWire(Type.Boolean(), { kind: "bool", ...common(opts) } as WireBool);
}

/** Options of {@link Enum}. */
export interface EnumOptions {
  /** Wire width in bytes (default 4). */
  width?: 1 | 2 | 4;
  /** Signedness (default false, i.e. unsigned). */
  signed?: boolean;
  /** Named mask bits (`LWMSG_ENUM_MASK`) that may be OR-ed onto one scalar value. */
  masks?: Record<string, number>;
  /** `LWMSG_ATTR_RANGE`, checked after the value check; compared as in {@link IntOptions.range}. */
  range?: [number, number];
  verify?: VerifyFn<number>;
  sensitive?: boolean;
  name?: string;
}

/**
 * `LWMSG_ENUM_BEGIN … END`: a JS number, validated as lwmsg does (§2.3,
 * quirk 13): mask bits are removed and the remainder must be one of the
 * declared scalar `values` — or 0 when the enum declares no scalar values
 * (a pure mask enum). Anything else is MALFORMED.
 */
export function Enum(values: Record<string, number>, opts?: EnumOptions): LwSchema<TInteger, WireEnum> {
  const width = opts?.width ?? 4;
  const signed = opts?.signed ?? false;
  if (width !== 1 && width !== 2 && width !== 4) bad("enum width must be 1, 2 or 4");
  const [min, max] = intBounds(width, signed);
  const vals: Record<string, number> = {};
  const masks: Record<string, number> = {};
  const take = (src: Record<string, number> | undefined, dst: Record<string, number>, what: string) => {
    if (src === undefined) return;
    if (src === null || typeof src !== "object") bad(`enum ${what} must be a name → number record`);
    for (const [k, v] of Object.entries(src)) {
      if (!Number.isSafeInteger(v) || BigInt(v) < min || BigInt(v) > max) bad(`enum ${what.slice(0, -1)} ${k} = ${String(v)} does not fit ${signed ? "" : "u"}int${width * 8}`);
      dst[k] = v;
    }
  };
  take(values, vals, "values");
  take(opts?.masks, masks, "masks");
  const r = checkRange(opts?.range, width, signed);
  const wire: WireEnum = { kind: "enum", width, signed, values: vals, masks, ...common(opts) };
  if (r) wire.range = [Number(r[0]), Number(r[1])];
  return withWire(Type.Integer({ minimum: Number(r?.[0] ?? min), maximum: Number(r?.[1] ?? max) }), wire);
}
