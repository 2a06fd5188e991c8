/**
 * `lwmsg_type_rep_from_spec`: an `Lw` schema's wire description → a
 * {@link TypeRep} graph, shaped as lwmsg shapes it so the bytes match:
 * - A wire node reached twice (the same schema object used in two places,
 *   or a recursive reference) gives the same rep object, so the encoder
 *   writes its object id again instead of a copy — as lwmsg, which keys its
 *   map by spec address.
 * - Custom types are represented by their transmitted type. `Lw.Fd()` is the
 *   fd class's `uint8` indicator (lwmsg writes an fd member as a plain
 *   uint8: a reader cannot tell it from one), and every `Lw.Handle` is
 *   lwmsg's handle transmit struct `{ enum type; union { uint32 local_id;
 *   uint32 remote_id; void null_id } data }`, one rep shared by all handles
 *   as in lwmsg.
 * - Strings: UTF-8 text is lwmsg's PSTR (`uint8`, zero-terminated, encoding
 *   `""`); other encodings keep their name (`latin1`; `ucs-2` on `uint16`
 *   elements, as pbis's PWSTR); exact bytes are a PSTR whose `uint8` element
 *   has RANGE(0, 255), a mark that changes nothing for C (see `bytesElement`).
 * - Flags keep NOT_NULL, RANGE (integers and enums with a range) and
 *   ALIASABLE (pointers); SENSITIVE and PROMOTED are dropped, as the current
 *   lwmsg does.
 * - Length and discriminator members become indices into the dominating
 *   struct (-1 when not found, as lwmsg).
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import type { WireArray, WireEnum, WireInt, WirePointer, WireStruct, WireType, WireUnion } from "../types.ts";
import { Kind, RepFlags, Sign, type ArmRep, type FieldRep, type TypeRep, type VariantRep } from "./schema.ts";

/** Largest number of rep nodes one conversion makes; a schema beyond it is OVERFLOW. */
const MAX_NODES = 100_000;

/** Builds reps for one or more types, sharing nodes between them (one protocol shares one map, as lwmsg). */
export class RepBuilder {
  private readonly byNode = new Map<WireType, TypeRep>();
  private readonly recs = new Map<string, WireType>();
  private fdRep: TypeRep | null = null;
  private handleRep: TypeRep | null = null;
  private bytesRep: TypeRep | null = null;
  private nodes = 0;

  /** The rep of `w`. */
  build(w: WireType): TypeRep {
    return this.rep(w, null);
  }

  private count(): void {
    if (++this.nodes > MAX_NODES) throw new LwMsgError(Status.OVERFLOW, `type has more than ${MAX_NODES} nodes`);
  }

  private rep(w: WireType, dom: WireStruct | null): TypeRep {
    // custom kinds are represented by what they transmit
    switch (w.kind) {
      case "custom":
        return this.rep(w.transmit, dom);
      case "fd":
        return (this.fdRep ??= this.integer(1, false));
      case "handle":
        return (this.handleRep ??= this.handle());
      case "rec":
        this.recs.set(w.id, w.type);
        return this.rep(w.type, dom);
      case "ref": {
        const body = this.recs.get(w.id);
        if (!body) throw new LwMsgError(Status.INVALID_PARAMETER, `recursive reference ${w.id} outside its Lw.Recursive`);
        return this.rep(body, dom);
      }
      case "bool": {
        // LWMSG_MEMBER_BOOL: a uint8 with RANGE(0, 1)
        const seen = this.byNode.get(w);
        if (seen) return seen;
        const r = this.integer(1, false, [0n, 1n]);
        this.byNode.set(w, r);
        return r;
      }
    }
    const seen = this.byNode.get(w);
    if (seen) return seen;
    this.count();
    const r: TypeRep = { kind: 0, flags: 0 };
    // registered before its parts are built, so a recursive reference finds it
    this.byNode.set(w, r);
    switch (w.kind) {
      case "int":
        Object.assign(r, this.intRep(w));
        break;
      case "enum":
        this.enumRep(w, r);
        break;
      case "struct":
        this.structRep(w, r);
        break;
      case "union":
        this.unionRep(w, r, dom);
        break;
      case "pointer":
        this.pointerRep(w, r, dom);
        break;
      case "array":
        this.arrayRep(w, r, dom);
        break;
      case "void":
        r.kind = Kind.VOID;
        break;
    }
    return r;
  }

  private integer(width: number, signed: boolean, range?: [bigint, bigint]): TypeRep {
    this.count();
    return {
      kind: Kind.INTEGER,
      flags: range ? RepFlags.RANGE : 0,
      info: {
        definition: { width, sign: signed ? Sign.SIGNED : Sign.UNSIGNED },
        lower_bound: range ? BigInt.asUintN(64, range[0]) : 0n,
        upper_bound: range ? BigInt.asUintN(64, range[1]) : 0n,
      },
    };
  }

  private intRep(w: WireInt): TypeRep {
    const range = w.range ? ([BigInt(w.range[0]), BigInt(w.range[1])] as [bigint, bigint]) : undefined;
    return this.integer(w.width, w.signed, range);
  }

  private enumRep(w: WireEnum, r: TypeRep): void {
    const variants: VariantRep[] = [];
    for (const [name, v] of Object.entries(w.values)) variants.push({ is_mask: 0, value: BigInt.asUintN(64, BigInt(v)), name });
    for (const [name, v] of Object.entries(w.masks)) variants.push({ is_mask: 1, value: BigInt.asUintN(64, BigInt(v)), name });
    r.kind = Kind.ENUM;
    r.flags = w.range ? RepFlags.RANGE : 0;
    r.info = { definition: { width: w.width, sign: w.signed ? Sign.SIGNED : Sign.UNSIGNED, variant_count: variants.length, variants, name: w.name ?? null } };
  }

  private structRep(w: WireStruct, r: TypeRep): void {
    if (w.members.length > 0xffff) throw new LwMsgError(Status.OVERFLOW, "struct has more than 65535 members");
    const fields: FieldRep[] = [];
    r.kind = Kind.STRUCT;
    r.info = { definition: { field_count: w.members.length, fields, name: w.name ?? null } };
    for (const m of w.members) fields.push({ type: this.rep(m.type, w), name: m.name });
  }

  private unionRep(w: WireUnion, r: TypeRep, dom: WireStruct | null): void {
    const arms: ArmRep[] = [];
    r.kind = Kind.UNION;
    r.info = { definition: { arm_count: w.arms.length, arms, name: w.name ?? null }, discrim_member_index: memberIndex(dom, w.discrim) };
    for (const a of w.arms) arms.push({ type: this.rep(a.type, dom), tag: a.tag >>> 0, name: a.name ?? null });
  }

  private pointerRep(w: WirePointer, r: TypeRep, dom: WireStruct | null): void {
    r.kind = Kind.POINTER;
    r.flags = (w.notNull ? RepFlags.NOT_NULL : 0) | (w.aliasable ? RepFlags.ALIASABLE : 0);
    // a pointer to an array node is a counted pointer; anything else points to exactly one element
    const counted = w.to.kind === "array" ? w.to : null;
    const term = counted ? termination(counted, dom) : { zero_terminated: 0, static_length: 1, length_member_index: -1 };
    r.info = { pointee_type: undefined as unknown as TypeRep, ...term, encoding: counted ? encodingOf(counted) : null };
    (r.info as { pointee_type: TypeRep }).pointee_type = counted?.bytes ? this.bytesElement() : this.rep(counted ? counted.of : w.to, dom);
  }

  private arrayRep(w: WireArray, r: TypeRep, dom: WireStruct | null): void {
    const term = termination(w, dom);
    r.kind = Kind.ARRAY;
    r.info = { element_type: undefined as unknown as TypeRep, ...term, zero_terminated_again: term.zero_terminated, encoding: encodingOf(w) };
    (r.info as { element_type: TypeRep }).element_type = w.bytes ? this.bytesElement() : this.rep(w.of, dom);
  }

  /**
   * The element of an exact-bytes string (`Lw.String({ bytes: true })`):
   * `uint8` with RANGE(0, 255). The string is otherwise lwmsg's PSTR
   * (zero-terminated, encoding `""`), so a C reader sees a `char *` it
   * prints as it is, and the range, which every byte satisfies, checks
   * nothing; a reader of the rep (to-schema.ts) takes it as the mark of
   * bytes, not UTF-8 text. One rep shared by all such strings.
   */
  private bytesElement(): TypeRep {
    return (this.bytesRep ??= this.integer(1, false, [0n, 255n]));
  }

  /** lwmsg's handle transmit type (`handle_id_spec` in assoc-marshal.c). */
  private handle(): TypeRep {
    const kind = this.enumOf("LWMsgHandleType", [
      ["LWMSG_HANDLE_NULL", 0],
      ["LWMSG_HANDLE_LOCAL", 1],
      ["LWMSG_HANDLE_REMOTE", 2],
    ]);
    const u32 = () => this.integer(4, false);
    this.count();
    const data: TypeRep = {
      kind: Kind.UNION,
      flags: 0,
      info: {
        definition: {
          arm_count: 3,
          arms: [
            { type: u32(), tag: 1, name: "local_id" },
            { type: u32(), tag: 2, name: "remote_id" },
            { type: { kind: Kind.VOID, flags: 0 }, tag: 0, name: "null_id" },
          ],
          name: "LWMsgHandleDataRep",
        },
        discrim_member_index: 0,
      },
    };
    this.count();
    return { kind: Kind.STRUCT, flags: 0, info: { definition: { field_count: 2, fields: [{ type: kind, name: "type" }, { type: data, name: "data" }], name: "LWMsgHandleRep" } } };
  }

  private enumOf(name: string, values: [string, number][]): TypeRep {
    this.count();
    const variants = values.map(([n, v]) => ({ is_mask: 0, value: BigInt(v), name: n }));
    return { kind: Kind.ENUM, flags: 0, info: { definition: { width: 1, sign: Sign.UNSIGNED, variant_count: variants.length, variants, name } } };
  }
}

function memberIndex(dom: WireStruct | null, name: string): number {
  if (!dom) return -1;
  return dom.members.findIndex((m) => m.name === name);
}

function termination(w: WireArray, dom: WireStruct | null): { zero_terminated: number; static_length: number; length_member_index: number } {
  switch (w.length.term) {
    case "static":
      return { zero_terminated: 0, static_length: w.length.count >>> 0, length_member_index: -1 };
    case "zero":
      return { zero_terminated: 1, static_length: 0, length_member_index: -1 };
    case "member":
      return { zero_terminated: 0, static_length: 0, length_member_index: memberIndex(dom, w.length.member) };
  }
}

/** `LWMSG_ATTR_STRING` is ZERO_TERMINATED + ENCODING(""): text arrays (exact-bytes strings too) carry "" unless they name an encoding. */
function encodingOf(w: WireArray): string | null {
  if (w.encoding !== undefined) return w.encoding;
  return w.string ? "" : null;
}
