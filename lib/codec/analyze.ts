/**
 * Static facts about wire types that the code generator needs: sizes, which
 * values may be null, which names a subtree takes from its dominating struct.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import type { WireRec, WireRef, WireType } from "../types.ts";
import { COST } from "./runtime.ts";

export function bad(msg: string): never {
  throw new LwMsgError(Status.INVALID_PARAMETER, msg);
}

export interface Analysis {
  recs: Map<string, WireType>;
  hasFds: boolean;
  hasHandles: boolean;
  hasAlias: boolean;
  hasRefs: boolean;
  hasCustom: boolean;
  /** User code runs mid-codec (custom callbacks or verify), so a nested call of the same codec is possible. */
  hasCallbacks: boolean;
}

export function analyze(root: WireType): Analysis {
  const a: Analysis = { recs: new Map(), hasFds: false, hasHandles: false, hasAlias: false, hasRefs: false, hasCustom: false, hasCallbacks: false };
  const refs: string[] = [];
  const seen = new Set<WireType>();
  const walk = (w: WireType): void => {
    if (w === null || typeof w !== "object" || typeof w.kind !== "string") bad("malformed wire description");
    if (seen.has(w)) return;
    seen.add(w);
    if (w.verify) a.hasCallbacks = true;
    switch (w.kind) {
      case "int":
        if (w.width !== 1 && w.width !== 2 && w.width !== 4 && w.width !== 8) bad(`integer width ${String(w.width)}`);
        break;
      case "bool":
      case "void":
      case "enum":
        break;
      case "fd":
        a.hasFds = true;
        break;
      case "handle":
        a.hasHandles = true;
        break;
      case "struct":
        for (const m of w.members) walk(m.type);
        break;
      case "union":
        for (const arm of w.arms) walk(arm.type);
        break;
      case "pointer":
        if (w.aliasable) a.hasAlias = true;
        walk(w.to);
        break;
      case "array":
        walk(w.of);
        break;
      case "custom":
        a.hasCustom = true;
        a.hasCallbacks = true;
        walk(w.transmit);
        break;
      case "rec":
        a.hasRefs = true;
        a.recs.set(w.id, w.type);
        walk(w.type);
        break;
      case "ref":
        a.hasRefs = true;
        refs.push(w.id);
        break;
      default:
        bad(`unknown wire kind ${String((w as { kind: unknown }).kind)}`);
    }
  };
  walk(root);
  for (const id of refs) if (!a.recs.has(id)) bad(`recursive reference ${id} has no enclosing Lw.Recursive`);
  return a;
}

/**
 * The body of a recursive root or reference, through `f`; `onCycle` when the
 * walk is already inside it (`guard` holds the ids on the current path).
 */
function viaRec<T>(w: WireRec | WireRef, recs: Map<string, WireType>, guard: Set<string>, onCycle: T, f: (body: WireType) => T): T {
  if (guard.has(w.id)) return onCycle;
  guard.add(w.id);
  try {
    return f(recs.get(w.id)!);
  } finally {
    guard.delete(w.id);
  }
}

/** Bytes on the wire if always the same, else -1. */
export function fixedSize(w: WireType): number {
  switch (w.kind) {
    case "int":
    case "enum":
      return w.width;
    case "bool":
    case "fd":
      return 1;
    case "void":
      return 0;
    case "struct": {
      let n = 0;
      for (const m of w.members) {
        const s = fixedSize(m.type);
        if (s < 0) return -1;
        n += s;
      }
      return n;
    }
    case "array":
      if (w.length.term !== "static" || w.string) return -1;
      {
        const s = fixedSize(w.of);
        return s < 0 ? -1 : s * w.length.count;
      }
    case "pointer":
      if (!w.notNull || w.aliasable) return -1;
      return fixedSize(w.to);
    default:
      return -1;
  }
}

/** The fewest bytes a value can take on the wire (for pre-allocation bounds checks). */
export function minWire(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): number {
  switch (w.kind) {
    case "int":
    case "enum":
      return w.width;
    case "bool":
    case "fd":
    case "handle":
      return 1;
    case "void":
      return 0;
    case "struct":
      return w.members.reduce((n, m) => n + minWire(m.type, recs, guard), 0);
    case "union":
      return Math.min(...w.arms.map((a) => minWire(a.type, recs, guard)));
    case "pointer":
      if (w.aliasable) return 4;
      if (!w.notNull) return 1;
      return minWire(w.to, recs, guard);
    case "array":
      if (w.length.term === "zero") return 4;
      if (w.length.term === "member") return 0;
      return w.string ? w.length.count : w.length.count * minWire(w.of, recs, guard);
    case "custom":
      return minWire(w.transmit, recs, guard);
    case "rec":
    case "ref":
      return viaRec(w, recs, guard, 0, (body) => minWire(body, recs, guard));
  }
}

/** C-ish size of one element, for `maxAlloc` and size-overflow checks (see module doc). */
export function nativeSize(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): number {
  switch (w.kind) {
    case "int":
    case "enum":
      return w.width;
    case "bool":
      return 1;
    case "fd":
      return 4;
    case "void":
      return 0;
    case "pointer":
    case "handle":
      return 8;
    case "struct":
      return w.members.reduce((n, m) => n + nativeSize(m.type, recs, guard), 0);
    case "union":
      return Math.max(...w.arms.map((a) => nativeSize(a.type, recs, guard)));
    case "array":
      return w.length.term === "static" ? w.length.count * nativeSize(w.of, recs, guard) : 0;
    case "custom":
      return nativeSize(w.transmit, recs, guard);
    case "rec":
    case "ref":
      return viaRec(w, recs, guard, 0, (body) => nativeSize(body, recs, guard));
  }
}

/** Member names a subtree reads from a dominating struct it does not contain itself. */
export function freeNames(w: WireType, recs: Map<string, WireType>, out = new Set<string>(), guard = new Set<string>()): Set<string> {
  switch (w.kind) {
    case "union":
      out.add(w.discrim);
      for (const a of w.arms) freeNames(a.type, recs, out, guard);
      break;
    case "pointer":
      freeNames(w.to, recs, out, guard);
      break;
    case "array":
      if (w.length.term === "member") out.add(w.length.member);
      if (w.of.kind !== "struct") freeNames(w.of, recs, out, guard);
      break;
    case "rec":
    case "ref":
      viaRec(w, recs, guard, out, (body) => freeNames(body, recs, out, guard));
      break;
    default:
      // structs bind their own names; customs start afresh
      break;
  }
  return out;
}

/**
 * Decoded-size cost (codec/runtime.ts `COST`) of a value of `w` that the
 * place which creates it charges in one go: a struct's object and slots, and
 * what it holds inline (nested structs, non-null pointers to single values,
 * bigints, handles). Arrays, strings, nullable or aliasable pointers, unions,
 * customs and recursive types charge at their own site when decoded (their
 * size or presence is only known then), so they count 0 here.
 */
export function inlineCost(w: WireType): number {
  switch (w.kind) {
    case "int":
      return w.width === 8 ? COST.BIGINT : 0;
    case "handle":
      return COST.HANDLE;
    case "struct":
      return w.members.reduce<number>((n, m) => n + COST.SLOT + inlineCost(m.type), COST.OBJECT);
    case "pointer":
      return w.notNull && !w.aliasable && w.to.kind !== "array" ? inlineCost(w.to) : 0;
    default:
      return 0;
  }
}

/** Whether a decoded referent is an object that can be registered before its contents are decoded (so cycles through it resolve). */
export function earlyable(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
  if (w.kind === "struct") return true;
  if (w.kind === "array") return !w.string && !(w.of.kind === "int" && w.of.width === 1);
  if (w.kind === "rec" || w.kind === "ref") return viaRec(w, recs, guard, false, (body) => earlyable(body, recs, guard));
  return false;
}

/** Where a decoded aliasable referent gets registered: JS expressions for the object id and the type key. */
export interface Reg {
  id: string;
  tk: string;
}

/** Whether JS `null`/`undefined` can be a valid value of `w` (so a NOT_NULL pointer to it must not reject them). */
export function admitsNullish(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
  switch (w.kind) {
    case "pointer":
      return !w.notNull || admitsNullish(w.to, recs, guard);
    case "handle":
      return !w.notNull;
    case "void":
    case "custom":
      return true;
    case "union":
      return w.arms.some((a) => admitsNullish(a.type, recs, guard));
    case "rec":
    case "ref":
      return viaRec(w, recs, guard, false, (body) => admitsNullish(body, recs, guard));
    default:
      return false;
  }
}

/** Whether `undefined` is a valid value of `w` (void, or a union with a void arm). */
export function admitsUndefined(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
  switch (w.kind) {
    case "void":
    case "custom":
      return true;
    case "pointer":
      return w.notNull && admitsUndefined(w.to, recs, guard);
    case "union":
      return w.arms.some((a) => admitsUndefined(a.type, recs, guard));
    case "rec":
    case "ref":
      return viaRec(w, recs, guard, false, (body) => admitsUndefined(body, recs, guard));
    default:
      return false;
  }
}

/** Structural identity of a pointee type, for the "same type" check on aliased ids. */
export function typeKey(w: WireType): string {
  // a recursive root and the references back to it are the same type
  return JSON.stringify(w, (_k, v) => (typeof v === "function" ? undefined : v !== null && typeof v === "object" && v.kind === "rec" ? { kind: "ref", id: v.id } : v));
}
