/**
 * Indirect builders: inline arrays (`Array`), pointers (`Pointer`) and
 * strings (`String`).
 * @module
 */
import { Kind, Type, TypeRegistry, type TArray, type TNull, type TSchema, type TString, type TUint8Array, type TUnion, type TUnsafe } from "@sinclair/typebox";
import { common, withWire } from "./build.ts";
import { bad, encodingForm, textForm, wireOf, WIRE, type LwSchema, type VerifyFn, type WireArray, type WireInt, type WireLength, type WirePointer, type WireType } from "./wire.ts";

/** An array length: a static count, the name of an earlier integer member of the dominating struct, or `"zero"` (zero-terminated: u32 count on the wire). */
export type LengthSpec = number | "zero" | (string & {});

/** Options of {@link LwArray} (`Lw.Array`). */
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
export function LwArray<T extends TSchema, const O extends ArrayOptions>(element: T, opts: O): LwSchema<ArrayOf<T, O>, WireArray> {
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

/** `LWMSG_ATTR_ENCODING` values `Lw.String` can decode and encode back exactly (case-insensitive; `ucs-2le`/`-be`, `utf-16le`/`-be`, `iso-8859-1`, `us-ascii` also work). */
export type StringEncoding = "utf-8" | "latin1" | "ascii" | "ucs-2" | "utf-16";

/** Options of {@link LwString} (`Lw.String`). */
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
export function LwString<const O extends StringOptions = {}>(opts?: O): LwSchema<StringOf<O>, WirePointer> {
  const wide = opts?.encoding !== undefined && !opts.bytes && encodingForm(String(opts.encoding)) === "utf-16";
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
