/**
 * Builders for what is not plain data: `Fd`, `Handle`, `Custom` and
 * `Recursive` types.
 * @module
 */
import { Type, type Static, type TInteger, type TNull, type TRecursive, type TSchema, type TThis, type TUnion, type TUnsafe } from "@sinclair/typebox";
import type { Handle as HandleObject } from "../handle.ts";
import { common, withWire } from "./build.ts";
import { bad, wireOf, WIRE, type LwSchema, type VerifyFn, type WireCustom, type WireFd, type WireHandle, type WireRec, type WireRef } from "./wire.ts";

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

/** Ids of recursive types (`lw-rec-N`), unique in the process: `ref` nodes find their root by it. */
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
