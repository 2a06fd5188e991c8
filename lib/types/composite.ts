/**
 * Composite builders: `Struct`, `Union` and `Void`.
 * @module
 */
import { Type, type Static, type TObject, type TOptional, type TSchema, type TUndefined, type TUnion } from "@sinclair/typebox";
import { common, withWire } from "./build.ts";
import { bad, wireOf, type LwSchema, type VerifyFn, type WireArm, type WireMember, type WireStruct, type WireType, type WireUnion, type WireVoid } from "./wire.ts";

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
