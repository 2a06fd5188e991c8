/**
 * `lwmsg_type_rep_is_assignable(left, right)`: can data written as `right`
 * (an old writer, an archive's schema) be read as `left` (the reader's
 * type)? The rules are lwmsg's:
 * - kinds must match;
 * - integers and enums: same width and signedness; a ranged `left` needs a
 *   ranged `right` no wider (compared signed or unsigned by the sign), unless
 *   its range is the whole width (it bounds nothing; lwmsg compares anyway);
 * - enums: every variant of `right` (value and mask-ness) exists in `left`;
 * - structs: same number of fields, each assignable in order (names do not
 *   matter, the wire has none);
 * - unions: same discriminator index, every arm tag of `right` exists in
 *   `left` with an assignable type;
 * - pointers and arrays: identical flags and termination, assignable
 *   pointee/element;
 * - void: always.
 * Pairs already being compared count as assignable, so recursive types
 * terminate. A failure is MALFORMED naming the first difference found.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { Kind, RepFlags, Sign, type ArrayInfo, type EnumInfo, type IntegerInfo, type PointerInfo, type StructInfo, type TypeRep, type UnionInfo } from "./schema.ts";

const KIND_NAMES: Record<number, string> = { 1: "void", 2: "integer", 3: "enum", 4: "struct", 5: "union", 6: "array", 7: "pointer" };

class Assign {
  private readonly pairs = new Map<TypeRep, Set<TypeRep>>();

  check(left: TypeRep, right: TypeRep, path: string): void {
    if (left.kind !== right.kind) this.fail(path, `${KIND_NAMES[right.kind] ?? right.kind} written, ${KIND_NAMES[left.kind] ?? left.kind} expected`);
    let seen = this.pairs.get(left);
    if (seen?.has(right)) return;
    if (!seen) this.pairs.set(left, (seen = new Set()));
    seen.add(right);
    try {
      this.kind(left, right, path);
    } catch (e) {
      seen.delete(right);
      throw e;
    }
  }

  private fail(path: string, what: string): never {
    throw new LwMsgError(Status.MALFORMED, `not assignable at ${path}: ${what}`);
  }

  private kind(left: TypeRep, right: TypeRep, path: string): void {
    switch (left.kind) {
      case Kind.INTEGER: {
        const l = left.info as IntegerInfo;
        const r = right.info as IntegerInfo;
        if (l.definition.width !== r.definition.width || l.definition.sign !== r.definition.sign) {
          this.fail(path, `${intName(r)} written, ${intName(l)} expected`);
        }
        // a range covering every value of the width (the exact-bytes string's element, from-schema.ts) bounds nothing
        if (left.flags & RepFlags.RANGE && !fullRange(l)) {
          if (!(right.flags & RepFlags.RANGE)) this.fail(path, "the reader has a range the writer lacks");
          const signed = l.definition.sign === Sign.SIGNED;
          const v = (x: bigint) => (signed ? BigInt.asIntN(64, x) : BigInt.asUintN(64, x));
          if (v(l.lower_bound) > v(r.lower_bound) || v(l.upper_bound) < v(r.upper_bound)) this.fail(path, "the reader's range is narrower than the writer's");
        }
        return;
      }
      case Kind.ENUM: {
        const l = (left.info as EnumInfo).definition;
        const r = (right.info as EnumInfo).definition;
        if (l.width !== r.width || l.sign !== r.sign) this.fail(path, "enum width or signedness differs");
        for (const rv of r.variants) {
          if (!l.variants.some((lv) => lv.is_mask === rv.is_mask && lv.value === rv.value)) {
            this.fail(path, `enum ${rv.is_mask ? "mask" : "value"} ${rv.name ?? rv.value} is unknown to the reader`);
          }
        }
        return;
      }
      case Kind.STRUCT: {
        const l = (left.info as StructInfo).definition;
        const r = (right.info as StructInfo).definition;
        if (l.field_count !== r.field_count) this.fail(path, `${r.field_count} fields written, ${l.field_count} expected`);
        for (let i = 0; i < r.field_count; i++) this.check(l.fields[i]!.type, r.fields[i]!.type, `${path}.${l.fields[i]!.name ?? i}`);
        return;
      }
      case Kind.UNION: {
        const li = left.info as UnionInfo;
        const ri = right.info as UnionInfo;
        if (li.discrim_member_index !== ri.discrim_member_index) this.fail(path, "union discriminators differ");
        for (const ra of ri.definition.arms) {
          const la = li.definition.arms.find((a) => a.tag === ra.tag);
          if (!la) this.fail(path, `union arm tag ${ra.tag} is unknown to the reader`);
          this.check(la.type, ra.type, `${path}<arm:${la.name ?? ra.tag}>`);
        }
        return;
      }
      case Kind.POINTER:
      case Kind.ARRAY: {
        const l = left.info as PointerInfo | ArrayInfo;
        const r = right.info as PointerInfo | ArrayInfo;
        if (left.flags !== right.flags) this.fail(path, "pointer flags (NOT_NULL, ALIASABLE) differ");
        if (l.zero_terminated !== r.zero_terminated || l.static_length !== r.static_length || l.length_member_index !== r.length_member_index) {
          this.fail(path, "length differs");
        }
        const lt = left.kind === Kind.POINTER ? (l as PointerInfo).pointee_type : (l as ArrayInfo).element_type;
        const rt = left.kind === Kind.POINTER ? (r as PointerInfo).pointee_type : (r as ArrayInfo).element_type;
        this.check(lt, rt, left.kind === Kind.POINTER ? `*${path}` : `${path}[]`);
        return;
      }
      case Kind.VOID:
        return;
      default:
        this.fail(path, `unknown kind ${left.kind}`);
    }
  }
}

/** Whether an integer rep's range is every value its width holds. */
export function fullRange(i: IntegerInfo): boolean {
  const bits = i.definition.width * 8;
  if (i.definition.sign === Sign.SIGNED) return BigInt.asIntN(64, i.lower_bound) === -(1n << BigInt(bits - 1)) && BigInt.asIntN(64, i.upper_bound) === (1n << BigInt(bits - 1)) - 1n;
  return i.lower_bound === 0n && BigInt.asUintN(64, i.upper_bound) === (1n << BigInt(bits)) - 1n;
}

function intName(i: IntegerInfo): string {
  return `${i.definition.sign === Sign.UNSIGNED ? "u" : ""}int${i.definition.width * 8}`;
}

/**
 * `lwmsg_type_rep_is_assignable`: returns if data written as `right` can be
 * read as `left`; throws `LwMsgError(MALFORMED)` naming the difference
 * otherwise.
 */
export function checkAssignable(left: TypeRep, right: TypeRep, path = "value"): void {
  new Assign().check(left, right, path);
}
