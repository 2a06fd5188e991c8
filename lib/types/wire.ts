/**
 * The wire description every `Lw` schema carries under `"x-lwmsg"`: the
 * {@link WireType} tree the codec generator reads (see lib/types.ts for how
 * it sits on a TypeBox schema), with the checks both the builders and the
 * codec use on it.
 * @module
 */
import type { TBigInt, TInteger, TSchema } from "@sinclair/typebox";
import { LwMsgError, Status } from "../status.ts";

/** INVALID_PARAMETER: a schema or builder argument that cannot be encoded. */
export function bad(message: string): never {
  throw new LwMsgError(Status.INVALID_PARAMETER, message);
}

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

/** Encoding names (lower case) → the text form they decode to. */
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
  const form = encodingForm(a.encoding ?? "");
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

/** The text form an `LWMSG_ATTR_ENCODING` name decodes to (case-insensitive), or undefined for names that cannot round-trip. */
export function encodingForm(name: string): Exclude<TextForm, "bytes"> | undefined {
  const key = name.toLowerCase();
  return Object.hasOwn(TEXT_FORMS, key) ? TEXT_FORMS[key] : undefined;
}

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
