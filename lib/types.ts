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
 * The builders live in lib/types/, one module per family; this module is
 * the one to import (every name is re-exported here):
 * - `types/wire.ts`: the {@link WireType} tree, `wireOf`, `textForm`;
 * - `types/scalars.ts`: integers, `Bool`, `Enum`;
 * - `types/composite.ts`: `Struct`, `Union`, `Void`;
 * - `types/arrays.ts`: `Array`, `Pointer`, `String`;
 * - `types/special.ts`: `Fd`, `Handle`, `Custom`, `Recursive`.
 * @module
 */
export { WIRE, textForm, wireOf, isLwSchema } from "./types/wire.ts";
export type {
  VerifyFn,
  WireCommon,
  WireInt,
  WireBool,
  WireEnum,
  WireMember,
  WireStruct,
  WireArm,
  WireUnion,
  WirePointer,
  WireLength,
  WireArray,
  WireVoid,
  WireFd,
  WireHandle,
  WireCustom,
  WireRec,
  WireRef,
  TextForm,
  WireType,
  LwSchema,
  TLwInt,
  TLwInt64,
} from "./types/wire.ts";
export * from "./types/scalars.ts";
export * from "./types/composite.ts";
export * from "./types/special.ts";
export type { LengthSpec, ArrayOptions, ArrayOf, PointerOptions, PointerOf, StringEncoding, StringOptions, StringOf } from "./types/arrays.ts";
// `Array` and `String` would shadow the globals inside their module; it defines them under other names.
export { LwArray as Array, LwString as String, Pointer } from "./types/arrays.ts";
