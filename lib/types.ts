/**
 * `Lw` type builders: ordinary TypeBox 0.34 schemas that also carry their
 * lwmsg wire encoding (reference §2).
 *
 * Every builder returns a real TypeBox schema, so `Static<typeof T>`,
 * `TypeCompiler.Compile(T).Check` and `Value.Check` work as usual. The wire
 * meaning lives in the string-keyed annotation `"x-lwmsg"` (a
 * {@link WireType} tree), never in Symbols, so it survives `JSON.stringify`
 * (functions such as `verify` or custom `marshal` callbacks are dropped by
 * JSON, like any function; 64-bit range bounds are stored as decimal strings
 * because JSON cannot hold BigInt).
 *
 * The codec generator (lib/codec/compile.ts) reads only the root schema's
 * `"x-lwmsg"` tree: each node's annotation is self-contained and includes the
 * annotations of its children.
 *
 * Arrays and pointers combine as in lwmsg:
 * - `Lw.Array(T, { length })` used as a struct member is an **inline** array:
 *   a static-length array, or (as the last member) a flexible array member.
 * - `Lw.Pointer(Lw.Array(T, { length }))` — or the shorthand
 *   `Lw.Pointer(T, { length })` — is a pointer to a counted referent.
 * - `Lw.Pointer(T)` without a length points to exactly one `T`.
 * @module
 */
import {
  Kind,
  Type,
  TypeRegistry,
  type Static,
  type TArray,
  type TBigInt,
  type TBoolean,
  type TInteger,
  type TNull,
  type TObject,
  type TOptional,
  type TRecursive,
  type TSchema,
  type TString,
  type TThis,
  type TUint8Array,
  type TUndefined,
  type TUnion,
  type TUnsafe,
} from "@sinclair/typebox";
import { LwMsgError, Status } from "./status.ts";
import type { Handle as HandleObject } from "./handle.ts";

/** The annotation key that carries the wire encoding of a schema. */
export const WIRE = "x-lwmsg" as const;

/** A verify callback (`LWMSG_ATTR_VERIFY`): return `true`/`Status.SUCCESS` to accept; `false` gives MALFORMED, another status is thrown as is. */
export type VerifyFn<T = any> = (value: T) => boolean | number;

/** Attributes every wire node may carry. */
export interface WireCommon {
  /** Runs before encoding and after decoding this value. Dropped by JSON. */
  verify?: VerifyFn;
  /** `LWMSG_ATTR_SENSITIVE`: printed as `<sensitive>`. */
  sensitive?: boolean;
  /** Type name for printing (structs, unions, enums, customs). */
  name?: string;
}

/** Fixed-width two's complement integer. `range` bounds are numbers, or decimal strings for 64-bit types. */
export interface WireInt extends WireCommon {
  kind: "int";
  width: 1 | 2 | 4 | 8;
  signed: boolean;
  range?: [number | string, number | string];
}
/** `LWMSG_MEMBER_BOOL`: a u8 with range 0..1, presented as a JS boolean. */
export interface WireBool extends WireCommon {
  kind: "bool";
}
/** Enum: integer bytes, validated against declared scalar values and mask bits (§2.3). */
export interface WireEnum extends WireCommon {
  kind: "enum";
  width: 1 | 2 | 4;
  signed: boolean;
  values: Record<string, number>;
  masks: Record<string, number>;
  range?: [number, number];
}
export interface WireMember {
  name: string;
  type: WireType;
}
/** Members in order, no padding. */
export interface WireStruct extends WireCommon {
  kind: "struct";
  members: WireMember[];
}
export interface WireArm {
  tag: number;
  /** Arm (member) name, printed as `<arm:name>`. */
  name?: string;
  type: WireType;
}
/** Only the active arm is encoded; the tag comes from `discrim`, an earlier member of the dominating struct. */
export interface WireUnion extends WireCommon {
  kind: "union";
  discrim: string;
  arms: WireArm[];
}
/** Pointer: presence byte `FF`/`00` (none when `notNull`), or a u32 object id when `aliasable`. */
export interface WirePointer extends WireCommon {
  kind: "pointer";
  /** The referent: an `array` node for counted referents, anything else for exactly one element. */
  to: WireType;
  notNull: boolean;
  aliasable: boolean;
  /** `LWMSG_ATTR_MAX_ALLOC`: bytes the decoded referent may occupy (see compile.ts for how bytes are counted). */
  maxAlloc?: number;
}
/** Array length (`LWMsgArrayTermination`). */
export type WireLength =
  | { term: "static"; count: number }
  | { term: "member"; member: string }
  | { term: "zero" };
/** Inline array, or the referent of a pointer. */
export interface WireArray extends WireCommon {
  kind: "array";
  of: WireType;
  length: WireLength;
  /** Text (`LWMSG_ATTR_STRING`): elements presented as a JS string, decoded per `encoding` (see {@link textForm}). */
  string?: boolean;
  /** `LWMSG_ATTR_ENCODING`: for text, what the elements mean (UTF-8 when absent); for other arrays a print hint, e.g. `"hex+ascii"`. */
  encoding?: string;
  /** Text presented as its exact bytes (`Uint8Array`), whatever they are. */
  bytes?: boolean;
}
export interface WireVoid extends WireCommon {
  kind: "void";
}
/** File descriptor: indicator byte, the fd itself travels by SCM_RIGHTS (§3.6). */
export interface WireFd extends WireCommon {
  kind: "fd";
}
/** Session handle (§6.3). `flags`: 1 = LOCAL_FOR_RECEIVER, 2 = LOCAL_FOR_SENDER. */
export interface WireHandle extends WireCommon {
  kind: "handle";
  typeName: string;
  notNull: boolean;
  flags: number;
}
/** Custom type: encoded as `transmit` after an optional presented→transmitted conversion. */
export interface WireCustom extends WireCommon {
  kind: "custom";
  transmit: WireType;
  marshal?: (presented: any) => any;
  unmarshal?: (transmitted: any) => any;
}
/** Root of a recursive type; `ref` nodes with the same `id` point back to `type`. */
export interface WireRec extends WireCommon {
  kind: "rec";
  id: string;
  type: WireType;
}
export interface WireRef extends WireCommon {
  kind: "ref";
  id: string;
}

/** How a text array becomes a JS value: decoded as UTF-8, latin1, ascii or 16-bit code units (`ucs-2`/`utf-16`), or kept as exact bytes. */
export type TextForm = "utf-8" | "latin1" | "ascii" | "utf-16" | "bytes";

const TEXT_FORMS: Record<string, Exclude<TextForm, "bytes">> = {
  "": "utf-8", // lwmsg's LWMSG_ATTR_STRING: "the C string"; ours is UTF-8
  "utf-8": "utf-8",
  utf8: "utf-8",
  "hex+ascii": "utf-8", // a print hint only
  latin1: "latin1",
  "iso-8859-1": "latin1",
  "iso8859-1": "latin1",
  ascii: "ascii",
  "us-ascii": "ascii",
  // pbis's LWMSG_PWSTR: uint16 elements; the LE/BE in the iconv name is the C memory order, the wire is big-endian
  "ucs-2": "utf-16",
  ucs2: "utf-16",
  "ucs-2le": "utf-16",
  "ucs-2be": "utf-16",
  "utf-16": "utf-16",
  utf16: "utf-16",
  "utf-16le": "utf-16",
  "utf-16be": "utf-16",
};

/**
 * The text form of a text array (`string: true`), or INVALID_PARAMETER when
 * the combination cannot be decoded and encoded back exactly: an encoding
 * this runtime cannot round-trip, 16-bit forms on other than `uint16`
 * elements, other forms on other than 8-bit elements, or a non-UTF-8 form on
 * static- or member-length text.
 */
export function textForm(a: WireArray): TextForm {
  const of = a.of;
  const width = of.kind === "int" ? of.width : 0;
  if (a.bytes) {
    if (width !== 1 || a.length.term !== "zero") bad("bytes: true needs zero-terminated 8-bit text (Lw.String)");
    return "bytes";
  }
  const name = (a.encoding ?? "").toLowerCase();
  const form = Object.hasOwn(TEXT_FORMS, name) ? TEXT_FORMS[name]! : undefined;
  if (form === undefined) bad(`string encoding "${a.encoding}" cannot be decoded and re-encoded exactly here; use bytes: true to take the exact bytes`);
  if (form === "utf-16" ? width !== 2 || (of as WireInt).signed : width !== 1) bad(`string encoding "${a.encoding}" needs ${form === "utf-16" ? "uint16" : "8-bit integer"} elements`);
  if (form !== "utf-8" && a.length.term !== "zero") bad(`string encoding "${a.encoding}" needs zero-terminated text (Lw.String)`);
  return form;
}

/** The wire description stored under `"x-lwmsg"`. */
export type WireType =
  | WireInt
  | WireBool
  | WireEnum
  | WireStruct
  | WireUnion
  | WirePointer
  | WireArray
  | WireVoid
  | WireFd
  | WireHandle
  | WireCustom
  | WireRec
  | WireRef;

/** A TypeBox schema built by `Lw` (it carries `"x-lwmsg"`). */
export type LwSchema<S extends TSchema = TSchema, W extends WireType = WireType> = S & { [WIRE]: W };

/** Integer schema whose wire width/sign are visible to the type system (used to map 8-bit arrays to typed arrays). */
export type TLwInt<W extends 1 | 2 | 4, S extends boolean> = TInteger & { [WIRE]: WireInt & { width: W; signed: S } };
export type TLwInt64<S extends boolean> = TBigInt & { [WIRE]: WireInt & { width: 8; signed: S } };

// ---------------------------------------------------------------------------
// helpers

function bad(message: string): never {
  throw new LwMsgError(Status.INVALID_PARAMETER, message);
}

/** The wire description of an `Lw` schema; INVALID_PARAMETER if `schema` was not built by `Lw`. */
export function wireOf(schema: unknown, what = "type"): WireType {
  const w = schema !== null && typeof schema === "object" ? (schema as Record<string, unknown>)[WIRE] : undefined;
  if (w === null || typeof w !== "object" || typeof (w as { kind?: unknown }).kind !== "string") {
    bad(`${what} is not an Lw schema (no "${WIRE}" annotation)`);
  }
  return w as WireType;
}

/** True if `schema` carries an `"x-lwmsg"` annotation. */
export function isLwSchema(schema: unknown): schema is LwSchema {
  if (schema === null || typeof schema !== "object") return false;
  const w = (schema as Record<string, unknown>)[WIRE];
  return w !== null && typeof w === "object" && typeof (w as { kind?: unknown }).kind === "string";
}

/** Attach a wire description to a TypeBox schema (a shallow copy when `copy`). */
function withWire<S extends TSchema, W extends WireType>(schema: S, wire: W, copy = false): LwSchema<S, W> {
  const out = (copy ? { ...schema } : schema) as LwSchema<S, W>;
  (out as Record<string, unknown>)[WIRE] = wire;
  return out;
}

function common(o: { verify?: VerifyFn; sensitive?: boolean; name?: string } | undefined): WireCommon {
  const c: WireCommon = {};
  if (!o) return c;
  if (o.verify !== undefined) {
    if (typeof o.verify !== "function") bad("verify must be a function");
    c.verify = o.verify;
  }
  if (o.sensitive) c.sensitive = true;
  if (o.name !== undefined) {
    if (typeof o.name !== "string") bad("name must be a string");
    c.name = o.name;
  }
  return c;
}

// ---------------------------------------------------------------------------
// integers

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

// ---------------------------------------------------------------------------
// enums

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

// ---------------------------------------------------------------------------
// structs and unions

/** Struct members whose static type admits `undefined` (void, unions with void arms) become optional properties. */
export type StructProps<P extends Record<string, TSchema>> = {
  [K in keyof P]: undefined extends Static<P[K]> ? TOptional<P[K]> : P[K];
};

/** Options of {@link Struct}. */
export interface StructOptions {
  name?: string;
  verify?: VerifyFn;
  sensitive?: boolean;
}

/** Whether a wire value may be absent (`undefined`) in JS: void, or a union with a void arm. */
function admitsUndefined(w: WireType): boolean {
  if (w.kind === "void") return true;
  if (w.kind === "union") return w.arms.some((a) => admitsUndefined(a.type));
  return false;
}

/**
 * `LWMSG_STRUCT`: members encoded in the given order, no padding. A JS
 * object. Members that are `Lw.Void()` or unions with a void arm are
 * optional properties.
 */
export function Struct<P extends Record<string, TSchema>>(members: P, opts?: StructOptions): LwSchema<TObject<StructProps<P>>, WireStruct> {
  if (members === null || typeof members !== "object") bad("Struct members must be an object");
  const wm: WireMember[] = [];
  const props: Record<string, TSchema> = {};
  const names = Object.keys(members);
  names.forEach((name, i) => {
    if (name === "__proto__") bad(`member name "__proto__" is not allowed`);
    const s = members[name];
    const w = wireOf(s, `member ${name}`);
    if (w.kind === "array" && w.length.term !== "static" && i !== names.length - 1) {
      bad(`member ${name}: an inline array without a static length must be the last member (flexible array member)`);
    }
    wm.push({ name, type: w });
    props[name] = admitsUndefined(w) ? Type.Optional(s as TSchema) : (s as TSchema);
  });
  const wire: WireStruct = { kind: "struct", members: wm, ...common(opts) };
  return withWire(Type.Object(props), wire) as LwSchema<TObject<StructProps<P>>, WireStruct>;
}

/** Options of {@link Union}. */
export interface UnionOptions {
  /** Arm names by tag, printed as `<arm:name>`. */
  names?: Record<number, string>;
  name?: string;
  verify?: VerifyFn;
  sensitive?: boolean;
}

/**
 * `LWMSG_UNION` + `LWMSG_ATTR_DISCRIM(discriminator)`: only the active arm is
 * encoded. The active arm is chosen by the value of `discriminator`, an
 * earlier integer/enum member of the dominating struct (the innermost
 * enclosing struct; the rule reaches through pointers and unions). An
 * unknown tag is MALFORMED. `arms` maps tag values to arm types;
 * `Lw.Void()` arms encode nothing.
 */
export function Union<A extends Record<number, TSchema>>(discriminator: string, arms: A, opts?: UnionOptions): LwSchema<TUnion<Extract<A[keyof A], TSchema>[]>, WireUnion> {
  if (typeof discriminator !== "string" || discriminator === "") bad("Union discriminator must be a member name");
  if (arms === null || typeof arms !== "object") bad("Union arms must be a tag → type record");
  const wa: WireArm[] = [];
  const schemas: TSchema[] = [];
  for (const [k, s] of Object.entries(arms)) {
    const tag = Number(k);
    if (!Number.isSafeInteger(tag)) bad(`union arm tag ${k} is not an integer`);
    const arm: WireArm = { tag, type: wireOf(s, `union arm ${k}`) };
    const n = opts?.names?.[tag];
    if (n !== undefined) arm.name = n;
    wa.push(arm);
    schemas.push(s as TSchema);
  }
  if (wa.length === 0) bad("Union needs at least one arm");
  const wire: WireUnion = { kind: "union", discrim: discriminator, arms: wa, ...common(opts) };
  // A one-arm TypeBox union collapses to the arm itself; keep our own object so the annotation does not clobber the arm's.
  const base = schemas.length === 1 ? { ...schemas[0]! } : Type.Union(schemas);
  return withWire(base, wire) as unknown as LwSchema<TUnion<Extract<A[keyof A], TSchema>[]>, WireUnion>;
}

/** `LWMSG_VOID`: encodes nothing; JS `undefined`. */
export function Void(): LwSchema<TUndefined, WireVoid> {
  return withWire(Type.Undefined(), { kind: "void" } as WireVoid);
}

// ---------------------------------------------------------------------------
// arrays, pointers, strings

/** An array length: a static count, the name of an earlier integer member of the dominating struct, or `"zero"` (zero-terminated: u32 count on the wire). */
export type LengthSpec = number | "zero" | (string & {});

/** Options of {@link Array}. */
export interface ArrayOptions {
  length: LengthSpec;
  /** Elements presented as a JS string (`LWMSG_ATTR_STRING` when zero-terminated), UTF-8 unless `encoding` says otherwise. Static-length text is NUL-padded. */
  string?: boolean;
  /** `LWMSG_ATTR_ENCODING`: for text, as in {@link StringOptions.encoding} (non-UTF-8 text must be zero-terminated); otherwise a print hint, e.g. `"hex+ascii"`. */
  encoding?: string;
  verify?: VerifyFn;
  sensitive?: boolean;
}

type IsU8<T> = T extends { [WIRE]: { kind: "int"; width: 1; signed: false } } ? true : false;
type IsI8<T> = T extends { [WIRE]: { kind: "int"; width: 1; signed: true } } ? true : false;
/** The TypeBox type of an array of `T`: `Uint8Array`/`Int8Array` for 8-bit integers, `string` for text, else `T[]`. */
export type ArrayOf<T extends TSchema, O> = O extends { string: true }
  ? TString
  : IsU8<T> extends true
    ? TUint8Array
    : IsI8<T> extends true
      ? TUnsafe<Int8Array>
      : TArray<T>;

function parseLength(length: unknown): WireLength {
  if (typeof length === "number") {
    if (!Number.isSafeInteger(length) || length < 0) bad(`static length ${length} must be a non-negative integer`);
    return { term: "static", count: length };
  }
  if (length === "zero") return { term: "zero" };
  if (typeof length === "string" && length !== "") return { term: "member", member: length };
  bad(`array length must be a number, a member name or "zero" (got ${String(length)})`);
}

// Int8Array has no TypeBox 0.34 builder; register a tiny kind so TypeCompiler/Value can check it.
const INT8_KIND = "LwInt8Array";
if (!TypeRegistry.Has(INT8_KIND)) TypeRegistry.Set(INT8_KIND, (_s, v) => v instanceof Int8Array);

/**
 * `LWMSG_MEMBER_ARRAY` (inline array) or, inside `Lw.Pointer`, a counted
 * referent. `length` is a static count, the name of an earlier integer member
 * of the dominating struct (nothing on the wire), or `"zero"` (a u32 count
 * excluding the terminator, then the elements). 8-bit integer elements give
 * `Uint8Array` (`Int8Array` for signed); `string: true` gives a JS string.
 * As a struct member, a non-static inline array must be the last member.
 */
function LwArray<T extends TSchema, const O extends ArrayOptions>(element: T, opts: O): LwSchema<ArrayOf<T, O>, WireArray> {
  if (opts === null || typeof opts !== "object") bad("Array needs { length }");
  const of = wireOf(element, "array element");
  const length = parseLength(opts.length);
  const wire: WireArray = { kind: "array", of, length, ...common(opts) };
  const byte = of.kind === "int" && of.width === 1;
  if (opts.encoding !== undefined) {
    if (typeof opts.encoding !== "string") bad("encoding must be a string");
    wire.encoding = opts.encoding;
  }
  const fixed = length.term === "static" ? length.count : undefined;
  let schema: TSchema;
  if (opts.string) {
    wire.string = true;
    textForm(wire);
    schema = Type.String(fixed !== undefined ? { maxLength: fixed } : {});
  } else if (byte && !(of as WireInt).signed) {
    schema = Type.Uint8Array(fixed !== undefined ? { minByteLength: fixed, maxByteLength: fixed } : {});
  } else if (byte) {
    schema = Type.Unsafe<Int8Array>({ [Kind]: INT8_KIND });
  } else {
    schema = Type.Array(element, fixed !== undefined ? { minItems: fixed, maxItems: fixed } : {});
  }
  return withWire(schema, wire) as LwSchema<ArrayOf<T, O>, WireArray>;
}

/** Options of {@link Pointer}. */
export interface PointerOptions {
  /** `LWMSG_ATTR_NOT_NULL`: no presence byte; `null` is MALFORMED. */
  notNull?: boolean;
  /** `LWMSG_ATTR_ALIASABLE`: a u32 object id instead of the presence byte; shared referents and cycles survive. */
  aliasable?: boolean;
  /** `LWMSG_ATTR_MAX_ALLOC`: decoding a larger referent is OVERFLOW. */
  maxAlloc?: number;
  /** Shorthand: `Pointer(T, { length })` = `Pointer(Array(T, { length }))`. */
  length?: LengthSpec;
  verify?: VerifyFn;
  sensitive?: boolean;
}

type Nullable<T extends TSchema, O> = O extends { notNull: true } ? T : TUnion<[T, TNull]>;
/** The TypeBox type of `Lw.Pointer(T, O)`. */
export type PointerOf<T extends TSchema, O> = O extends { length: LengthSpec } ? Nullable<ArrayOf<T, O>, O> : Nullable<T, O>;

function pointerWire(to: WireType, opts: PointerOptions | undefined): WirePointer {
  const wire: WirePointer = { kind: "pointer", to, notNull: !!opts?.notNull, aliasable: !!opts?.aliasable, ...common(opts) };
  if (opts?.maxAlloc !== undefined) {
    if (!Number.isSafeInteger(opts.maxAlloc) || opts.maxAlloc <= 0) bad("maxAlloc must be a positive integer");
    wire.maxAlloc = opts.maxAlloc;
  }
  return wire;
}

/**
 * `LWMSG_POINTER`: `T | null` (or `T` when `notNull`). Wire: presence byte
 * `FF`/`00` then the referent (no byte when `notNull`); with `aliasable`, a
 * u32 object id instead (0 = NULL), the referent following only on its first
 * appearance. Point it at `Lw.Array(...)` (or pass `length`) for a counted
 * referent; otherwise it points to exactly one `T`.
 */
export function Pointer<T extends TSchema, const O extends PointerOptions = {}>(target: T, opts?: O): LwSchema<PointerOf<T, O>, WirePointer> {
  let inner: TSchema = target;
  if (opts?.length !== undefined) inner = LwArray(target, { length: opts.length });
  const wire = pointerWire(wireOf(inner, "pointer target"), opts);
  const schema = wire.notNull ? { ...inner } : Type.Union([inner, Type.Null()]);
  return withWire(schema as TSchema, wire) as LwSchema<PointerOf<T, O>, WirePointer>;
}

/** `LWMSG_ATTR_ENCODING` values {@link String} can decode and encode back exactly (case-insensitive; `ucs-2le`/`-be`, `utf-16le`/`-be`, `iso-8859-1`, `us-ascii` also work). */
export type StringEncoding = "utf-8" | "latin1" | "ascii" | "ucs-2" | "utf-16";

/** Options of {@link String}. */
export interface StringOptions {
  notNull?: boolean;
  aliasable?: boolean;
  /** Bytes of the decoded referent including the terminator (lwmsg counts count + 1 elements). */
  maxAlloc?: number;
  /**
   * `LWMSG_ATTR_ENCODING`: what the C side's elements are. Default UTF-8
   * (8-bit elements). `"latin1"`/`"ascii"`: 8-bit elements, one per
   * character. `"ucs-2"`/`"utf-16"`: `uint16` elements (pbis's
   * `LWMSG_PWSTR`), one per UTF-16 code unit, big-endian on the wire, the
   * count in elements. Any other name is INVALID_PARAMETER (use `bytes`).
   */
  encoding?: StringEncoding | (string & {});
  /** Present the string as its exact bytes (`Uint8Array`), for data that need not be text in any encoding (file names). */
  bytes?: boolean;
  verify?: VerifyFn<any>;
  sensitive?: boolean;
}

/** The TypeBox type of `Lw.String(O)`. */
export type StringOf<O> = O extends { bytes: true }
  ? O extends { notNull: true }
    ? TUint8Array
    : TUnion<[TUint8Array, TNull]>
  : O extends { notNull: true }
    ? TString
    : TUnion<[TString, TNull]>;

/**
 * `LWMSG_PSTR`: a pointer to a zero-terminated char array. Wire: `FF`, u32
 * element count (the NUL is not counted and not written), the elements; `00`
 * for null. `string | null`, or `string` with `notNull`; `Uint8Array` with
 * `bytes: true`. Strings are never changed silently (README, "Strings"):
 * bytes that are not valid in the declared encoding (UTF-8 by default) are
 * MALFORMED on decode, and so is an embedded NUL, both ways (a C receiver
 * would cut the string there).
 */
function LwString<const O extends StringOptions = {}>(opts?: O): LwSchema<StringOf<O>, WirePointer> {
  const wide = opts?.encoding !== undefined && !opts.bytes && TEXT_FORMS[String(opts.encoding).toLowerCase()] === "utf-16";
  const arr: WireArray = { kind: "array", of: { kind: "int", width: wide ? 2 : 1, signed: false }, length: { term: "zero" }, string: true };
  if (opts?.encoding !== undefined) {
    if (typeof opts.encoding !== "string") bad("encoding must be a string");
    arr.encoding = opts.encoding;
  }
  if (opts?.bytes) arr.bytes = true;
  textForm(arr);
  const wire = pointerWire(arr, opts);
  const value = opts?.bytes ? Type.Uint8Array() : Type.String();
  const schema = wire.notNull ? value : Type.Union([value, Type.Null()]);
  return withWire(schema, wire) as any;
}

// ---------------------------------------------------------------------------
// custom kinds

/** `LWMSG_FD`: a JS number (`-1` = none). Wire: `FF` (an fd follows by SCM_RIGHTS) or `00`. fd ≤ 0 is sent as none (lwmsg cannot transmit fd 0). */
export function Fd(opts?: { verify?: VerifyFn<number> }): LwSchema<TInteger, WireFd> {
  return withWire(Type.Integer({ minimum: -1, maximum: 0x7fffffff }), { kind: "fd", ...common(opts) } as WireFd);
}

/** Options of {@link Handle}. */
export interface HandleOptions {
  notNull?: boolean;
  /** `LWMSG_ATTR_HANDLE_LOCAL_FOR_RECEIVER`. */
  localForReceiver?: boolean;
  /** `LWMSG_ATTR_HANDLE_LOCAL_FOR_SENDER`. */
  localForSender?: boolean;
}

const handleShape = () =>
  Type.Unsafe<HandleObject>(
    Type.Object({ typeName: Type.String(), location: Type.Integer({ minimum: 1, maximum: 2 }), id: Type.Integer({ minimum: 0 }) }),
  );

/**
 * `LWMSG_HANDLE(typeName)`: a session {@link HandleObject | Handle} (or `null`). Wire: locality
 * byte + u32 id, written and resolved by the session's `ctx.handles` (§6.3).
 * Without a handle codec only `null` encodes (as `00`); anything else is
 * INVALID_HANDLE.
 */
export function Handle<const O extends HandleOptions = {}>(typeName: string, opts?: O): LwSchema<O extends { notNull: true } ? TUnsafe<HandleObject> : TUnion<[TUnsafe<HandleObject>, TNull]>, WireHandle> {
  if (typeof typeName !== "string" || typeName === "") bad("Handle needs a type name");
  const wire: WireHandle = {
    kind: "handle",
    typeName,
    notNull: !!opts?.notNull,
    flags: (opts?.localForReceiver ? 1 : 0) | (opts?.localForSender ? 2 : 0),
  };
  const schema = wire.notNull ? handleShape() : Type.Union([handleShape(), Type.Null()]);
  return withWire(schema, wire) as any;
}

/** Options of {@link Custom}. */
export interface CustomOptions<T extends TSchema, P> {
  /** The type that goes on the wire. */
  transmit: T;
  /** Presented → transmitted (before encoding). Without it the value is encoded as `transmit` directly. */
  marshal?: (presented: P) => Static<T>;
  /** Transmitted → presented (after decoding). */
  unmarshal?: (transmitted: Static<T>) => P;
  /** TypeBox schema for the presented value (default: the transmit schema when no conversion is given, else `Any`). */
  schema?: TSchema;
  name?: string;
  verify?: VerifyFn<P>;
  sensitive?: boolean;
}

/**
 * `LWMSG_CUSTOM`: any JS value, encoded as `transmit` after `marshal`
 * (presented → transmitted) and decoded through `unmarshal`. Inside the
 * transmitted value the dominating-struct context starts afresh, as in lwmsg.
 */
export function Custom<T extends TSchema, P = Static<T>>(opts: CustomOptions<T, P>): LwSchema<TUnsafe<P>, WireCustom> {
  if (opts === null || typeof opts !== "object") bad("Custom needs { transmit }");
  const transmit = wireOf(opts.transmit, "custom transmit type");
  if (opts.marshal !== undefined && typeof opts.marshal !== "function") bad("marshal must be a function");
  if (opts.unmarshal !== undefined && typeof opts.unmarshal !== "function") bad("unmarshal must be a function");
  const wire: WireCustom = { kind: "custom", transmit, ...common(opts) };
  if (opts.marshal) wire.marshal = opts.marshal;
  if (opts.unmarshal) wire.unmarshal = opts.unmarshal;
  const base = opts.schema ?? (opts.marshal || opts.unmarshal ? Type.Any() : opts.transmit);
  return withWire(Type.Unsafe<P>({ ...base }), wire, false);
}

// ---------------------------------------------------------------------------
// recursion

let recOrdinal = 0;

/**
 * A recursive type (`LWMSG_TYPESPEC` referring to itself, test `ring`):
 * `fn` receives a reference to the type being defined. Reach it through a
 * pointer, e.g.
 * `Lw.Recursive((Self) => Lw.Struct({ n: Lw.Int32(), next: Lw.Pointer(Self, { aliasable: true }) }))`.
 */
export function Recursive<T extends TSchema>(fn: (self: TThis) => T, opts?: { name?: string }): LwSchema<TRecursive<T>, WireRec> {
  const id = `lw-rec-${recOrdinal++}`;
  const schema = Type.Recursive(
    (This) => {
      const self = { ...This, [WIRE]: { kind: "ref", id } as WireRef } as TThis;
      return fn(self);
    },
    { $id: id },
  );
  const body = wireOf(schema, "recursive body");
  const wire: WireRec = { kind: "rec", id, type: body, ...common(opts) };
  return withWire(schema, wire);
}

// `Array` and `String` would shadow the globals inside this module; define them under other names and export the public ones.
export { LwArray as Array, LwString as String };
