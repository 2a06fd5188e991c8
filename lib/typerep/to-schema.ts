/**
 * `lwmsg_type_spec_from_rep`: a {@link TypeRep} graph (usually decoded from
 * bytes someone else wrote) → a working `Lw` schema that encodes, decodes
 * and prints the same bytes.
 *
 * A rep comes from outside, so everything is checked and bounded:
 * - unknown kinds, widths the codec does not have (3, 5, 6, 7; 64-bit
 *   enums), names that are missing, duplicated or reserved, length or
 *   discriminator indices that name no earlier integer member, and a type
 *   that contains itself without a pointer in between (infinite size) are
 *   MALFORMED;
 * - nesting deeper than {@link MAX_DEPTH} levels and more than
 *   {@link MAX_NODES} schema nodes are MALFORMED too (the rep decoder
 *   already bounds the bytes; aliased reps can still describe a huge DAG).
 *
 * Choices where lwmsg leaves room:
 * - An ALIASABLE flag (0x08) on a pointer rep makes an aliasable pointer.
 *   lwmsg's own converter drops it (its reader then misreads such data).
 * - A pointer to one element (static length 1) is `Lw.Pointer(element)`,
 *   except to a nullable pointer: that stays `Lw.Pointer(Lw.Array(…, { length: 1 }))`
 *   so an outer null and an inner null remain different values.
 * - A pointer or array with no termination at all has the static length the
 *   rep gives (lwmsg falls back to 1 when it is 0).
 * - Elements with an encoding are text (`string: true`) only when the codec
 *   can decode and encode that text back exactly (see `isText`): 8-bit
 *   elements with `""` (lwmsg's `LWMSG_ATTR_STRING`, read as UTF-8), a
 *   UTF-8, latin1 or ascii name; `uint16` elements with a UTF-16/UCS-2 name.
 *   Others (`hex+ascii`, no encoding, names such as `CP1252`) are integers
 *   (`Uint8Array`) keeping the encoding as a print hint: the exact bytes.
 * - A zero-terminated pointer with an encoding whose `uint8` element has
 *   RANGE(0, 255) is an exact-bytes string (`Lw.String({ bytes: true })`,
 *   see from-schema.ts): a `Uint8Array` printed as a string, NUL refused.
 * - An integer `uint8` with RANGE(0, 1) stays an integer (lwmsg's BOOL has
 *   the same rep): the data reads back as 0/1 numbers.
 * - A cycle through a pointer becomes `Lw.Recursive`.
 * @module
 */
import type { TSchema, TThis } from "@sinclair/typebox";
import { Lw } from "../lw.ts";
import { encodingForm } from "../types/wire.ts";
import { LwMsgError, Status } from "../status.ts";
import { Kind, RepFlags, Sign, type ArrayInfo, type EnumInfo, type IntegerInfo, type PointerInfo, type StructDefRep, type StructInfo, type TypeRep, type UnionInfo } from "./schema.ts";

/** Deepest nesting of types a rep may describe. */
export const MAX_DEPTH = 256;
/** Most schema nodes one conversion may build. */
export const MAX_NODES = 20_000;

function malformed(what: string, cause?: unknown): never {
  throw new LwMsgError(Status.MALFORMED, `type rep: ${what}`, cause === undefined ? undefined : { cause });
}

function children(rep: TypeRep): TypeRep[] {
  switch (rep.kind) {
    case Kind.STRUCT:
      return (rep.info as StructInfo).definition.fields.map((f) => f.type);
    case Kind.UNION:
      return (rep.info as UnionInfo).definition.arms.map((a) => a.type);
    case Kind.POINTER:
      return [(rep.info as PointerInfo).pointee_type];
    case Kind.ARRAY:
      return [(rep.info as ArrayInfo).element_type];
    default:
      return [];
  }
}

/** Find the reps that are the target of a cycle; MALFORMED if a cycle has no pointer on it or nesting is too deep. */
function findRecursion(root: TypeRep): Set<TypeRep> {
  const targets = new Set<TypeRep>();
  const done = new Set<TypeRep>();
  const onStack = new Map<TypeRep, number>();
  const stack: TypeRep[] = [];
  const visit = (rep: TypeRep): void => {
    if (done.has(rep)) return;
    const at = onStack.get(rep);
    if (at !== undefined) {
      if (!stack.slice(at).some((r) => r.kind === Kind.POINTER)) malformed("a type contains itself with no pointer in between (infinite size)");
      targets.add(rep);
      return;
    }
    if (stack.length >= MAX_DEPTH) malformed(`types nest deeper than ${MAX_DEPTH} levels`);
    onStack.set(rep, stack.length);
    stack.push(rep);
    for (const c of children(rep)) visit(c);
    stack.pop();
    onStack.delete(rep);
    done.add(rep);
  };
  visit(root);
  return targets;
}

type Dom = StructDefRep | null;

class SchemaBuilder {
  private nodes = 0;
  private depth = 0;
  private readonly memo = new Map<TypeRep, Map<Dom, TSchema>>();
  private readonly selves = new Map<TypeRep, TThis>();
  /** Memo entries made inside each open Lw.Recursive: they may refer to its self and must not escape it. */
  private readonly scopes: [TypeRep, Dom][][] = [];

  constructor(private readonly recTargets: Set<TypeRep>) {}

  build(rep: TypeRep, dom: Dom): TSchema {
    const self = this.selves.get(rep);
    if (self) return self;
    const context = dependsOnDom(rep) ? dom : null;
    const seen = this.memo.get(rep)?.get(context);
    if (seen) return seen;
    if (++this.nodes > MAX_NODES) malformed(`more than ${MAX_NODES} type nodes`);
    if (++this.depth > MAX_DEPTH) malformed(`types nest deeper than ${MAX_DEPTH} levels`);
    let s: TSchema;
    try {
      if (this.recTargets.has(rep)) {
        s = Lw.Recursive((This) => {
          this.selves.set(rep, This);
          this.scopes.push([]);
          try {
            return this.body(rep, dom);
          } finally {
            this.selves.delete(rep);
            for (const [r, d] of this.scopes.pop()!) this.memo.get(r)?.delete(d);
          }
        });
      } else s = this.body(rep, dom);
    } finally {
      this.depth--;
    }
    let byDom = this.memo.get(rep);
    if (!byDom) this.memo.set(rep, (byDom = new Map()));
    byDom.set(context, s);
    this.scopes.at(-1)?.push([rep, context]);
    return s;
  }

  private body(rep: TypeRep, dom: Dom): TSchema {
    switch (rep.kind) {
      case Kind.INTEGER:
        return this.integer(rep.info as IntegerInfo, rep.flags);
      case Kind.ENUM:
        return this.enumeration(rep.info as EnumInfo);
      case Kind.STRUCT:
        return this.struct((rep.info as StructInfo).definition);
      case Kind.UNION:
        return this.union(rep.info as UnionInfo, dom);
      case Kind.POINTER:
        return this.pointer(rep.info as PointerInfo, rep.flags, dom);
      case Kind.ARRAY:
        return this.array(rep.info as ArrayInfo, dom);
      case Kind.VOID:
        return Lw.Void();
      default:
        return malformed(`unknown kind ${rep.kind}`);
    }
  }

  private integer(info: IntegerInfo, flags: number): TSchema {
    const { width, sign } = info.definition;
    const signed = sign === Sign.SIGNED;
    const range = flags & RepFlags.RANGE ? [bound(info.lower_bound, signed), bound(info.upper_bound, signed)] : undefined;
    switch (width) {
      case 1:
      case 2:
      case 4: {
        const opts = range ? { range: [Number(range[0]), Number(range[1])] as [number, number] } : undefined;
        if (width === 1) return signed ? Lw.Int8(opts) : Lw.UInt8(opts);
        if (width === 2) return signed ? Lw.Int16(opts) : Lw.UInt16(opts);
        return signed ? Lw.Int32(opts) : Lw.UInt32(opts);
      }
      case 8: {
        const opts = range ? { range: range as [bigint, bigint] } : undefined;
        return signed ? Lw.Int64(opts) : Lw.UInt64(opts);
      }
      default:
        return malformed(`integer width ${width} bytes is not 1, 2, 4 or 8`);
    }
  }

  private enumeration(info: EnumInfo): TSchema {
    const def = info.definition;
    if (def.width !== 1 && def.width !== 2 && def.width !== 4) malformed(`enum width ${def.width} bytes is not 1, 2 or 4`);
    const signed = def.sign === Sign.SIGNED;
    const values: Record<string, number> = {};
    const masks: Record<string, number> = {};
    const used = new Set<string>();
    def.variants.forEach((v, i) => {
      const name = checkName(v.name ?? `__variant${i}`, used, "enum variant");
      const n = bound(v.value, signed);
      if (n < BigInt(Number.MIN_SAFE_INTEGER) || n > BigInt(Number.MAX_SAFE_INTEGER)) malformed(`enum variant ${name} = ${n} does not fit the enum`);
      (v.is_mask ? masks : values)[name] = Number(n);
    });
    const opts: Parameters<typeof Lw.Enum>[1] = { width: def.width, signed, masks };
    if (def.name !== null) opts.name = def.name;
    return Lw.Enum(values, opts);
  }

  private struct(def: StructDefRep): TSchema {
    const members: Record<string, TSchema> = {};
    const used = new Set<string>();
    def.fields.forEach((f, i) => {
      const name = checkName(f.name ?? `__field_${i}`, used, "struct member");
      members[name] = this.build(f.type, def);
    });
    return Lw.Struct(members, def.name !== null ? { name: def.name } : undefined);
  }

  private union(info: UnionInfo, dom: Dom): TSchema {
    const def = info.definition;
    const discrim = memberName(dom, info.discrim_member_index, "union discriminator");
    const arms: Record<number, TSchema> = {};
    const names: Record<number, string> = {};
    const tags = new Set<number>();
    def.arms.forEach((a) => {
      if (tags.has(a.tag)) malformed(`union arm tag ${a.tag} appears twice`);
      tags.add(a.tag);
      arms[a.tag] = this.build(a.type, dom);
      if (a.name !== null) names[a.tag] = a.name;
    });
    if (def.arms.length === 0) malformed("union has no arms");
    return Lw.Union(discrim, arms, def.name !== null ? { names, name: def.name } : { names });
  }

  private pointer(info: PointerInfo, flags: number, dom: Dom): TSchema {
    const opts = { notNull: (flags & RepFlags.NOT_NULL) !== 0, aliasable: (flags & RepFlags.ALIASABLE) !== 0 };
    if (isBytesString(info)) return Lw.String(info.encoding !== "" ? { ...opts, bytes: true, encoding: info.encoding! } : { ...opts, bytes: true });
    const to = this.build(info.pointee_type, dom);
    const length = lengthOf(info, dom);
    const text = isText(info.pointee_type, info.encoding, length);
    // a pointer to one element is presented as the element, unless that is a nullable pointer: null could then
    // not tell the outer pointer from the inner one, so it stays an array of one (the rep is the same: static length 1)
    const pointee = info.pointee_type;
    const nullableInner = pointee.kind === Kind.POINTER && !(pointee.flags & RepFlags.NOT_NULL);
    if (length === 1 && !text && info.encoding === null && !nullableInner) return Lw.Pointer(to, opts);
    return Lw.Pointer(arrayOf(to, length, text, info.encoding), opts);
  }

  private array(info: ArrayInfo, dom: Dom): TSchema {
    const el = this.build(info.element_type, dom);
    // lwmsg writes zero_terminated twice and keeps the second copy (a plain uint8: any non-zero value is true)
    const merged = { ...info, zero_terminated: info.zero_terminated_again !== 0 ? 1 : 0 };
    const length = lengthOf(merged, dom);
    return arrayOf(el, length, isText(info.element_type, info.encoding, length), info.encoding);
  }
}

/**
 * An exact-bytes string as from-schema.ts writes it: a zero-terminated
 * pointer with an encoding whose `uint8` element has RANGE(0, 255).
 */
function isBytesString(info: PointerInfo): boolean {
  const el = info.pointee_type;
  if (!info.zero_terminated || info.encoding === null || el.kind !== Kind.INTEGER || !(el.flags & RepFlags.RANGE)) return false;
  const i = el.info as IntegerInfo;
  return i.definition.width === 1 && i.definition.sign === Sign.UNSIGNED && i.lower_bound === 0n && i.upper_bound === 255n;
}

/** Kinds whose schema depends on the dominating struct (length and discriminator indices). */
function dependsOnDom(rep: TypeRep): boolean {
  return rep.kind === Kind.POINTER || rep.kind === Kind.ARRAY || rep.kind === Kind.UNION;
}

function bound(v: bigint, signed: boolean): bigint {
  return signed ? BigInt.asIntN(64, v) : BigInt.asUintN(64, v);
}

function checkName(name: string, used: Set<string>, what: string): string {
  if (name === "" || name === "__proto__") malformed(`${what} name ${JSON.stringify(name)} is not allowed`);
  if (used.has(name)) malformed(`${what} name ${JSON.stringify(name)} appears twice`);
  used.add(name);
  return name;
}

function memberName(dom: Dom, index: number, what: string): string {
  if (dom === null || index < 0 || index >= dom.fields.length) malformed(`${what} index ${index} names no member of the enclosing struct`);
  return dom.fields[index]!.name ?? `__field_${index}`;
}

function lengthOf(info: { zero_terminated: number; static_length: number; length_member_index: number }, dom: Dom): number | string {
  if (info.zero_terminated) return "zero";
  if (info.length_member_index >= 0) return memberName(dom, info.length_member_index, "length member");
  return info.static_length;
}

/**
 * Whether elements are presented as text (a JS string): 8-bit integers with
 * `""` (lwmsg's `LWMSG_ATTR_STRING`) or an encoding the codec decodes and
 * encodes back exactly in 8-bit units (UTF-8, latin1, ascii), and unsigned
 * 16-bit integers with a UTF-16 one (pbis's `LWMSG_PWSTR`: `"ucs-2"`,
 * `"UCS-2LE"`, `"utf-16"`); text other than UTF-8 must be zero-terminated.
 * Everything else stays integers (`Uint8Array` for 8-bit) with the encoding
 * kept as a print hint: no encoding (what an exact-bytes string writes, see
 * from-schema.ts), `hex+ascii`, or a name this runtime cannot round-trip
 * (`CP1252`), so C data in any encoding still reads, as its exact bytes.
 */
function isText(el: TypeRep, encoding: string | null, length: number | string): boolean {
  if (encoding === null || encoding.toLowerCase() === "hex+ascii" || el.kind !== Kind.INTEGER) return false;
  const form = encodingForm(encoding);
  if (form === undefined || (form !== "utf-8" && length !== "zero")) return false;
  const def = (el.info as IntegerInfo).definition;
  return form === "utf-16" ? def.width === 2 && def.sign === Sign.UNSIGNED : def.width === 1;
}

function arrayOf(el: TSchema, length: number | string, text: boolean, encoding: string | null): TSchema {
  const opts: { length: number | string; string?: boolean; encoding?: string } = { length };
  if (text) opts.string = true;
  if (encoding !== null && encoding !== "") opts.encoding = encoding;
  return Lw.Array(el, opts as Parameters<typeof Lw.Array>[1]);
}

/** Convert a rep into an `Lw` schema; every problem is MALFORMED. The schema is compiled once here to prove it is usable. */
export function schemaFromRep(rep: TypeRep): TSchema {
  try {
    const schema = new SchemaBuilder(findRecursion(rep)).build(rep, null);
    Lw.compile(schema);
    return schema;
  } catch (e) {
    if (e instanceof LwMsgError && e.status === Status.MALFORMED) throw e;
    if (e instanceof RangeError) malformed("types nest too deeply", e);
    return malformed(e instanceof LwMsgError ? e.message.replace(/^[A-Z_]+: /, "") : e instanceof Error ? e.message : String(e), e);
  }
}
