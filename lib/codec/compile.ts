/**
 * Code generation: one encoder and one decoder per schema, built once as JS
 * source (`new Function`, as TypeBox's TypeCompiler does) and cached on the
 * schema object.
 *
 * What the generated code does, and why:
 * - The cursor lives in locals (`buf`, `view`, `p`); `w.pos`/`r.pos` are
 *   written back at the end, so the hot path touches no object fields.
 * - Runs of fixed-size fields share one capacity check (encode) or one
 *   bounds check (decode) and use constant offsets from `p`.
 * - Structs are decoded into locals and built with one object literal, so
 *   every decoded object of a type has the same shape.
 * - Counts read from the wire are checked against the bytes left *before*
 *   anything is allocated; a bogus u32 count cannot allocate gigabytes.
 * - Error messages (with the field path, e.g. `value.items[3].mode`) are
 *   built only when throwing; the path is assembled from constants and the
 *   loop indices that are in scope at the throw site.
 * - Only recursive types (`Lw.Recursive`) become separate functions; every
 *   other nested type is inlined.
 *
 * Counts of elements that take no bytes on the wire (e.g. `Lw.Void()` or
 * empty static arrays) cannot be bounded by the input left; more than 65536
 * of them (and more than the bytes left) is MEMORY, where lwmsg would try the
 * allocation.
 *
 * How `maxAlloc` counts bytes (lwmsg counts C sizes, which JS does not have):
 * the element's "native size" is its wire width for integers and enums, 1 for
 * bools, 4 for fds, 8 for pointers and handles, the sum of the members for
 * structs, the largest arm for unions; zero-terminated referents count one
 * extra element, as lwmsg allocates the terminator too.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import type { Decoder, Encoder } from "./io.ts";
import * as RT from "./runtime.ts";
import { wireOf, type WireArray, type WireCustom, type WireEnum, type WireHandle, type WireInt, type WirePointer, type WireRec, type WireStruct, type WireType, type WireUnion } from "../types.ts";

/** What {@link compile} returns. */
export interface CompiledCodec<T = unknown> {
  encode: Encoder<T>;
  decode: Decoder<T>;
  /** The type contains `Lw.Fd` (the connection must pass fds). */
  hasFds: boolean;
  /** The type contains `Lw.Handle` (the connection must supply `ctx.handles`). */
  hasHandles: boolean;
  /** The wire description the codec was built from. */
  wire: WireType;
  /** Generated source, for debugging. */
  source: { encode: string; decode: string };
}

const cache = new WeakMap<object, CompiledCodec>();

/**
 * Build (once; cached per schema object) the encoder and decoder of an `Lw`
 * schema. Throws `LwMsgError(INVALID_PARAMETER)` for schemas that cannot be
 * encoded (not an `Lw` schema, a length or discriminator that does not name an
 * earlier member of the dominating struct, a dangling recursive reference).
 */
export function compile<T = unknown>(schema: object): CompiledCodec<T> {
  let c = cache.get(schema);
  if (c === undefined) {
    c = build(wireOf(schema));
    cache.set(schema, c);
  }
  return c as CompiledCodec<T>;
}

/** Compile from a bare wire description (no caching). */
export function compileWire<T = unknown>(wire: WireType): CompiledCodec<T> {
  return build(wire) as CompiledCodec<T>;
}

function bad(msg: string): never {
  throw new LwMsgError(Status.INVALID_PARAMETER, msg);
}

// ---------------------------------------------------------------------------
// analysis

interface Analysis {
  recs: Map<string, WireType>;
  hasFds: boolean;
  hasHandles: boolean;
  hasAlias: boolean;
  hasRefs: boolean;
  hasCustom: boolean;
}

function analyze(root: WireType): Analysis {
  const a: Analysis = { recs: new Map(), hasFds: false, hasHandles: false, hasAlias: false, hasRefs: false, hasCustom: false };
  const refs: string[] = [];
  const seen = new Set<WireType>();
  const walk = (w: WireType): void => {
    if (w === null || typeof w !== "object" || typeof w.kind !== "string") bad("malformed wire description");
    if (seen.has(w)) return;
    seen.add(w);
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

/** Bytes on the wire if always the same, else -1. */
function fixedSize(w: WireType): number {
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
function minWire(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): number {
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
      return w.to.kind === "array" ? minWire(w.to, recs, guard) : minWire(w.to, recs, guard);
    case "array":
      if (w.length.term === "zero") return 4;
      if (w.length.term === "member") return 0;
      return w.string ? w.length.count : w.length.count * minWire(w.of, recs, guard);
    case "custom":
      return minWire(w.transmit, recs, guard);
    case "rec":
    case "ref": {
      if (guard.has(w.id)) return 0;
      guard.add(w.id);
      const n = minWire(recs.get(w.id)!, recs, guard);
      guard.delete(w.id);
      return n;
    }
  }
}

/** C-ish size of one element, for `maxAlloc` and size-overflow checks (see module doc). */
function nativeSize(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): number {
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
    case "ref": {
      if (guard.has(w.id)) return 0;
      guard.add(w.id);
      const n = nativeSize(recs.get(w.id)!, recs, guard);
      guard.delete(w.id);
      return n;
    }
  }
}

/** Member names a subtree reads from a dominating struct it does not contain itself. */
function freeNames(w: WireType, recs: Map<string, WireType>, out = new Set<string>(), guard = new Set<string>()): Set<string> {
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
      if (!guard.has(w.id)) {
        guard.add(w.id);
        freeNames(recs.get(w.id)!, recs, out, guard);
      }
      break;
    default:
      // structs bind their own names; customs start afresh
      break;
  }
  return out;
}

/** Whether a decoded referent is an object that can be registered before its contents are decoded (so cycles through it resolve). */
function earlyable(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
  if (w.kind === "struct") return true;
  if (w.kind === "array") return !w.string && !(w.of.kind === "int" && w.of.width === 1);
  if (w.kind === "rec" || w.kind === "ref") {
    if (guard.has(w.id)) return false;
    guard.add(w.id);
    return earlyable(recs.get(w.id)!, recs, guard);
  }
  return false;
}

/** Where a decoded aliasable referent gets registered: JS expressions for the object id and the type key. */
interface Reg {
  id: string;
  tk: string;
}

/** Whether JS `null`/`undefined` can be a valid value of `w` (so a NOT_NULL pointer to it must not reject them). */
function admitsNullish(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
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
      if (guard.has(w.id)) return false;
      guard.add(w.id);
      return admitsNullish(recs.get(w.id)!, recs, guard);
    default:
      return false;
  }
}

/** Whether `undefined` is a valid value of `w` (void, or a union with a void arm). */
function admitsUndefined(w: WireType, recs: Map<string, WireType>, guard = new Set<string>()): boolean {
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
      if (guard.has(w.id)) return false;
      guard.add(w.id);
      return admitsUndefined(recs.get(w.id)!, recs, guard);
    default:
      return false;
  }
}

/** Structural identity of a pointee type, for the "same type" check on aliased ids. */
function typeKey(w: WireType): string {
  // a recursive root and the references back to it are the same type
  return JSON.stringify(w, (_k, v) => (typeof v === "function" ? undefined : v !== null && typeof v === "object" && v.kind === "rec" ? { kind: "ref", id: v.id } : v));
}

// ---------------------------------------------------------------------------
// generation

/** One piece of a field path: a constant, or a JS variable holding an index. */
type PathPart = string | { v: string };

function pathExpr(parts: PathPart[]): string {
  const out: string[] = [];
  let s = "";
  for (const part of parts) {
    if (typeof part === "string") s += part;
    else {
      out.push(JSON.stringify(s + "["));
      out.push(part.v);
      s = "]";
    }
  }
  if (s !== "" || out.length === 0) out.push(JSON.stringify(s));
  return out.join(" + ");
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const prop = (obj: string, name: string) => (IDENT.test(name) ? `${obj}.${name}` : `${obj}[${JSON.stringify(name)}]`);
const key = (name: string) => (IDENT.test(name) ? name : JSON.stringify(name));

/** The struct that length and discriminator members resolve against. */
type Dom =
  | { kind: "struct"; wire: WireStruct; upto: number; expr: string; locals: Map<string, string> | null }
  | { kind: "param" }
  | null;

interface Scope {
  dom: Dom;
  path: PathPart[];
}

class Gen {
  lines: string[] = [];
  n = 0;
  /** Pending cursor offset (compile-time) inside a reserved run. */
  off = 0;
  readonly consts: unknown[];
  readonly constIndex = new Map<unknown, number>();
  readonly typeKeys = new Map<string, number>();
  readonly fnNames = new Map<string, string>();
  readonly fnQueue: string[] = [];

  constructor(
    readonly a: Analysis,
    readonly mode: "enc" | "dec",
    consts: unknown[],
  ) {
    this.consts = consts;
  }

  v(prefix: string): string {
    return `${prefix}${this.n++}`;
  }
  emit(s: string): void {
    this.lines.push(s);
  }
  k(value: unknown): string {
    let i = this.constIndex.get(value);
    if (i === undefined) {
      i = this.consts.length;
      this.consts.push(value);
      this.constIndex.set(value, i);
    }
    return `K[${i}]`;
  }
  at(k = 0): string {
    const o = this.off + k;
    return o === 0 ? "p" : `p + ${o}`;
  }
  flush(): void {
    if (this.off !== 0) {
      this.emit(`p += ${this.off};`);
      this.off = 0;
    }
  }
  tk(w: WireType): number {
    const key = typeKey(w);
    let i = this.typeKeys.get(key);
    if (i === undefined) {
      i = this.typeKeys.size + 1;
      this.typeKeys.set(key, i);
    }
    return i;
  }
  fnFor(id: string): string {
    let name = this.fnNames.get(id);
    if (name === undefined) {
      name = `R${this.fnNames.size}`;
      this.fnNames.set(id, name);
      this.fnQueue.push(id);
    }
    return name;
  }

  // --- encode: capacity ------------------------------------------------------

  /** Make room for `n` more bytes after the pending offset. */
  ensure(n: number | string): void {
    const need = typeof n === "number" ? String(this.off + n) : this.off === 0 ? `(${n})` : `${this.off} + (${n})`;
    this.emit(`if (p + ${need} > buf.length) { buf = $.grow(w, p, ${need}); view = w.view; }`);
  }

  /** Decode: make sure `n` more bytes are there after the pending offset. */
  need(n: number | string, sc: Scope): void {
    const need = typeof n === "number" ? String(this.off + n) : this.off === 0 ? `(${n})` : `${this.off} + (${n})`;
    this.emit(`if (p + ${need} > end) throw $.eof(${pathExpr(sc.path)});`);
  }

  // --- dominating struct access -----------------------------------------------

  domValue(sc: Scope, name: string, what: string): { expr: string; type: WireType | null } {
    const d = sc.dom;
    if (d === null) bad(`${what} "${name}" at ${pathExpr(sc.path)}: no enclosing struct to take it from`);
    if (d.kind === "param") return { expr: `dom[${JSON.stringify(name)}]`, type: null };
    const idx = d.wire.members.findIndex((m) => m.name === name);
    if (idx < 0 || idx >= d.upto) bad(`${what} "${name}" is not an earlier member of the enclosing struct`);
    const mt = d.wire.members[idx]!.type;
    if (mt.kind !== "int" && mt.kind !== "enum" && mt.kind !== "bool") bad(`${what} "${name}" must be an integer member`);
    const expr = d.locals ? d.locals.get(name)! : prop(d.expr, name);
    return { expr, type: mt };
  }

  /** The `dom` argument for a recursive function call. */
  domArg(sc: Scope, names: Set<string>): string {
    if (names.size === 0) return "undefined";
    const d = sc.dom;
    if (d === null) bad(`recursive type at ${pathExpr(sc.path)} uses ${[...names].join(", ")} but has no enclosing struct`);
    if (d.kind === "param") return "dom";
    if (this.mode === "enc" && !d.locals) {
      for (const n of names) this.domValue(sc, n, "member");
      return d.expr;
    }
    return `{ ${[...names].map((n) => `${key(n)}: ${this.domValue(sc, n, "member").expr}`).join(", ")} }`;
  }

  countOf(sc: Scope, name: string): string {
    const { expr, type } = this.domValue(sc, name, "length member");
    if (type && type.kind === "int" && type.width < 8 && !type.signed) return expr;
    return `$.count(${expr}, ${pathExpr(sc.path)})`;
  }

  tagOf(sc: Scope, name: string): string {
    const { expr, type } = this.domValue(sc, name, "discriminator");
    if (type && (type.kind === "enum" || (type.kind === "int" && type.width < 8))) return expr;
    return `$.tag(${expr})`;
  }

  verify(w: WireType, x: string, sc: Scope): void {
    if (!w.verify) return;
    const r = this.v("vr");
    this.emit(`{ let ${r}; try { ${r} = ${this.k(w.verify)}(${x}); } catch (e) { throw $.wrap(e, ${pathExpr(sc.path)}); }`);
    this.emit(`if (${r} !== true && ${r} !== 0) throw $.verifyErr(${r}, ${pathExpr(sc.path)}); }`);
  }

  // --- integers ----------------------------------------------------------------

  intCheck(w: WireInt | WireEnum, x: string, sc: Scope): void {
    const P = pathExpr(sc.path);
    let test: string;
    switch (`${w.width}${w.signed ? "s" : "u"}`) {
      case "1s":
        test = `(${x} << 24 >> 24) !== ${x}`;
        break;
      case "1u":
        test = `(${x} & 255) !== ${x}`;
        break;
      case "2s":
        test = `(${x} << 16 >> 16) !== ${x}`;
        break;
      case "2u":
        test = `(${x} & 65535) !== ${x}`;
        break;
      case "4s":
        test = `(${x} | 0) !== ${x}`;
        break;
      default:
        test = `(${x} >>> 0) !== ${x}`;
    }
    this.emit(`if (${test}) throw $.intErr(${x}, ${w.width}, ${w.signed}, ${P});`);
  }

  rangeCheck(w: WireInt | WireEnum, x: string, sc: Scope): void {
    if (!w.range) return;
    const big = w.kind === "int" && w.width === 8;
    const lo = big ? `${w.range[0]}n` : String(w.range[0]);
    const hi = big ? `${w.range[1]}n` : String(w.range[1]);
    this.emit(`if (${x} < ${lo} || ${x} > ${hi}) throw $.rangeErr(${x}, ${JSON.stringify(String(w.range[0]))}, ${JSON.stringify(String(w.range[1]))}, ${pathExpr(sc.path)});`);
  }

  enumCheck(w: WireEnum, x: string, sc: Scope): void {
    let maskAll = 0;
    for (const m of Object.values(w.masks)) maskAll |= m;
    const values = [...new Set(Object.values(w.values))];
    let res = x;
    if (maskAll !== 0) {
      res = this.v("er");
      const u = !w.signed && w.width === 4 ? " >>> 0" : "";
      this.emit(`const ${res} = (${x} & ${~maskAll})${u};`);
    }
    let test: string;
    if (values.length === 0) test = `${res} !== 0`;
    else if (values.length <= 8) test = values.map((v) => `${res} !== ${v}`).join(" && ");
    else test = `!${this.k(new Set(values))}.has(${res})`;
    this.emit(`if (${test}) throw $.enumErr(${x}, ${pathExpr(sc.path)});`);
  }
}

// ---------------------------------------------------------------------------
// encoder

class EncGen extends Gen {
  /** Encode the value held in local `x`. `reserved`: the caller already ensured fixedSize(w) bytes. */
  value(w: WireType, x: string, sc: Scope, reserved: boolean): void {
    const P = () => pathExpr(sc.path);
    switch (w.kind) {
      case "int": {
        if (w.width === 8) {
          const big = this.v("g");
          this.emit(`const ${big} = typeof ${x} === "bigint" ? ${x} : $.toBig(${x}, ${w.signed}, ${P()});`);
          const [lo, hi] = w.signed ? ["-9223372036854775808n", "9223372036854775807n"] : ["0n", "18446744073709551615n"];
          this.emit(`if (${big} < ${lo} || ${big} > ${hi}) throw $.bigErr(${big}, ${w.signed}, ${P()});`);
          this.rangeCheck(w, big, sc);
          this.verify(w, big, sc);
          if (!reserved) this.ensure(8);
          this.emit(`view.${w.signed ? "setBigInt64" : "setBigUint64"}(${this.at()}, ${big});`);
          this.off += 8;
        } else {
          this.intCheck(w, x, sc);
          this.rangeCheck(w, x, sc);
          this.verify(w, x, sc);
          if (!reserved) this.ensure(w.width);
          this.writeInt(w.width, w.signed, x);
        }
        if (!reserved) this.flush();
        return;
      }
      case "enum":
        this.intCheck(w, x, sc);
        this.enumCheck(w, x, sc);
        this.rangeCheck(w, x, sc);
        this.verify(w, x, sc);
        if (!reserved) this.ensure(w.width);
        this.writeInt(w.width, w.signed, x);
        if (!reserved) this.flush();
        return;
      case "bool":
        this.verify(w, x, sc);
        if (!reserved) this.ensure(1);
        this.emit(`if (${x} === true) buf[${this.at()}] = 1; else if (${x} === false) buf[${this.at()}] = 0; else throw $.typeErr("a boolean", ${x}, ${P()});`);
        this.off += 1;
        if (!reserved) this.flush();
        return;
      case "void":
        this.verify(w, x, sc);
        return;
      case "fd":
        this.emit(`if ((${x} | 0) !== ${x}) throw $.typeErr("an fd number", ${x}, ${P()});`);
        this.verify(w, x, sc);
        if (!reserved) this.ensure(1);
        this.emit(`if (${x} > 0) { ctx.fdsOut.push(${x}); buf[${this.at()}] = 255; } else buf[${this.at()}] = 0;`);
        this.off += 1;
        if (!reserved) this.flush();
        return;
      case "struct":
        return this.struct(w, x, sc, reserved);
      case "union":
        return this.union(w, x, sc);
      case "pointer":
        return this.pointer(w, x, sc, reserved);
      case "array":
        this.verify(w, x, sc);
        return this.arrayBody(w, x, sc, null);
      case "handle":
        return this.handle(w, x, sc);
      case "custom":
        return this.custom(w, x, sc);
      case "rec":
      case "ref":
        return this.call(w.id, x, sc, w.kind === "rec" ? w : null);
    }
  }

  writeInt(width: number, signed: boolean, x: string): void {
    switch (width) {
      case 1:
        this.emit(`buf[${this.at()}] = ${x};`);
        break;
      case 2:
        this.emit(`buf[${this.at()}] = ${x} >> 8; buf[${this.at(1)}] = ${x};`);
        break;
      case 4:
        this.emit(`view.${signed ? "setInt32" : "setUint32"}(${this.at()}, ${x});`);
        break;
    }
    this.off += width;
  }

  struct(w: WireStruct, x: string, sc: Scope, reserved: boolean): void {
    this.emit(`if (typeof ${x} !== "object" || ${x} === null) throw $.typeErr("an object", ${x}, ${pathExpr(sc.path)});`);
    this.verify(w, x, sc);
    const ms = w.members;
    let i = 0;
    while (i < ms.length) {
      // a run of fixed-size members shares one capacity check
      let j = i;
      let run = 0;
      if (!reserved) {
        while (j < ms.length && fixedSize(ms[j]!.type) >= 0) run += fixedSize(ms[j++]!.type);
        if (j - i >= 1 && run > 0) this.ensure(run);
      }
      const end = reserved ? ms.length : Math.max(j, i + 1);
      const inRun = reserved || j > i;
      for (let k = i; k < end; k++) {
        const m = ms[k]!;
        const mv = this.v("m");
        const runMember = reserved || k < j;
        const msc: Scope = { dom: { kind: "struct", wire: w, upto: k, expr: x, locals: null }, path: [...sc.path, `.${m.name}`] };
        this.emit(`const ${mv} = ${prop(x, m.name)};`);
        if (!runMember) this.flush();
        this.value(m.type, mv, msc, runMember);
      }
      if (!reserved && inRun) this.flush();
      i = end;
    }
  }

  union(w: WireUnion, x: string, sc: Scope): void {
    this.verify(w, x, sc);
    this.flush();
    const t = this.v("t");
    this.emit(`const ${t} = ${this.tagOf(sc, w.discrim)};`);
    this.emit(`switch (${t}) {`);
    for (const arm of w.arms) {
      this.emit(`case ${arm.tag}: {`);
      this.value(arm.type, x, sc, false);
      this.flush();
      this.emit(`break; }`);
    }
    this.emit(`default: throw $.fail(${Status.MALFORMED}, ${pathExpr(sc.path)}, "unknown union tag " + ${t});`);
    this.emit(`}`);
  }

  pointer(w: WirePointer, x: string, sc: Scope, reserved: boolean): void {
    const P = () => pathExpr(sc.path);
    this.verify(w, x, sc);
    // JS null means NULL; undefined too, unless the referent itself may be undefined (void / union with a void arm)
    const isNull = admitsUndefined(w.to, this.a.recs) ? `${x} === null` : `(${x} === null || ${x} === undefined)`;
    if (w.aliasable) {
      this.flush();
      const e = this.v("e");
      const tk = this.tk(w.to);
      if (w.notNull && admitsNullish(w.to, this.a.recs)) this.emit(`{`);
      else {
        this.emit(`if (${isNull}) {`);
        if (w.notNull) this.emit(`throw $.fail(${Status.MALFORMED}, ${P()}, "NULL where a non-null pointer is required");`);
        else {
          this.ensure(4);
          this.emit(`view.setUint32(p, 0); p += 4;`);
        }
        this.emit(`} else {`);
      }
      // one identity map per pointee type: in JS a pointer to a pointer has the same object as its referent
      const mm = this.v("mm");
      this.emit(`const ${mm} = typeof ${x} === "object" && ${x} !== null ? (st.m[${tk}] ??= new Map()) : null;`);
      this.emit(`const ${e} = ${mm} !== null ? ${mm}.get(${x}) : undefined;`);
      this.emit(`if (${e} !== undefined) {`);
      this.ensure(4);
      this.emit(`view.setUint32(p, ${e}); p += 4;`);
      this.emit(`} else {`);
      const id = this.v("id");
      this.emit(`const ${id} = st.n++;`);
      this.emit(`if (${id} > 4294967295) throw $.fail(${Status.OVERFLOW}, ${P()}, "too many aliased objects");`);
      this.emit(`if (${mm} !== null) ${mm}.set(${x}, ${id});`);
      this.ensure(4);
      this.emit(`view.setUint32(p, ${id}); p += 4;`);
      this.referent(w, x, sc);
      this.flush();
      this.emit(`} }`);
      return;
    }
    if (w.notNull) {
      const mayBeEmpty = w.to.kind === "array" && w.to.length.term === "member";
      if (mayBeEmpty) {
        // lwmsg accepts a NULL NOT_NULL pointer whose member length is 0
        this.flush();
        const n = this.countOf(sc, (w.to as WireArray & { length: { member: string } }).length.member);
        this.emit(`if (${isNull}) { if (${n} !== 0) throw $.fail(${Status.MALFORMED}, ${P()}, "NULL where a non-null pointer is required"); } else {`);
        this.referent(w, x, sc);
        this.flush();
        this.emit(`}`);
        return;
      }
      // a pointer to something that may itself be null (a nullable pointer, a void arm) passes null on to it
      if (!admitsNullish(w.to, this.a.recs)) this.emit(`if (${isNull}) throw $.fail(${Status.MALFORMED}, ${P()}, "NULL where a non-null pointer is required");`);
      if (reserved) this.value(w.to, x, sc, true);
      else this.referent(w, x, sc);
      return;
    }
    this.flush();
    this.emit(`if (${isNull}) {`);
    this.ensure(1);
    this.emit(`buf[p++] = 0; } else {`);
    if (w.to.kind === "array" && w.to.string && w.to.length.term === "zero" && !w.to.verify) {
      this.string(x, sc, true);
    } else {
      this.ensure(1);
      this.emit(`buf[p++] = 255;`);
      this.referent(w, x, sc);
      this.flush();
    }
    this.emit(`}`);
  }

  referent(w: WirePointer, x: string, sc: Scope): void {
    if (w.to.kind === "array") {
      this.verify(w.to, x, sc);
      this.arrayBody(w.to, x, sc, w);
    } else {
      const fs = fixedSize(w.to);
      if (fs > 0) {
        this.ensure(fs);
        this.value(w.to, x, sc, true);
        this.flush();
      } else this.value(w.to, x, sc, false);
    }
  }

  /** Zero-terminated text: u32 byte count (NUL excluded), then UTF-8; with `flag`, the FF presence byte first. */
  string(x: string, sc: Scope, flag: boolean): void {
    const P = pathExpr(sc.path);
    this.flush();
    const n = this.v("n");
    const q = this.v("q");
    const hdr = flag ? 5 : 4;
    this.emit(`if (typeof ${x} !== "string") throw $.typeErr("a string", ${x}, ${P});`);
    this.emit(`const ${n} = ${x}.length;`);
    this.ensure(`${hdr} + ${n} * 3`);
    if (flag) this.emit(`buf[p] = 255;`);
    this.emit(`let ${q} = p + ${hdr};`);
    // short ASCII strings: a plain loop beats any native call
    const i = this.v("i");
    this.emit(`if (${n} <= 16) { let ${i} = 0; for (; ${i} < ${n}; ${i}++) { const c = ${x}.charCodeAt(${i}); if (c > 127 || c === 0) break; buf[${q} + ${i}] = c; }`);
    this.emit(`${q} = ${i} === ${n} ? ${q} + ${n} : $.utf8Write(buf, ${x}, ${q}, ${P}); } else ${q} = $.utf8Write(buf, ${x}, ${q}, ${P});`);
    this.emit(`view.setUint32(p${flag ? " + 1" : ""}, ${q} - p - ${hdr}); p = ${q};`);
  }

  /** Elements of an inline array or a pointer referent (`ptr` set for referents). */
  arrayBody(a: WireArray, x: string, sc: Scope, _ptr: WirePointer | null): void {
    const P = () => pathExpr(sc.path);
    this.flush();
    const of = a.of;
    const len = a.length;
    if (a.string) {
      if (len.term === "zero") return this.string(x, sc, false);
      this.emit(`if (typeof ${x} !== "string") throw $.typeErr("a string", ${x}, ${P()});`);
      const b = this.v("b");
      this.emit(`const ${b} = $.utf8Length(${x});`);
      if (len.term === "static") {
        this.emit(`if (${b} > ${len.count}) throw $.fail(${Status.MALFORMED}, ${P()}, "string of " + ${b} + " bytes exceeds the static length ${len.count}");`);
        this.ensure(len.count);
        this.emit(`buf.fill(0, $.utf8Write(buf, ${x}, p, ${P()}), p + ${len.count}); p += ${len.count};`);
      } else {
        const c = this.countOf(sc, len.member);
        this.emit(`if (${b} !== ${c}) throw $.fail(${Status.MALFORMED}, ${P()}, "string of " + ${b} + " bytes does not match length " + ${c});`);
        this.ensure(b);
        this.emit(`p = $.utf8Write(buf, ${x}, p, ${P()});`);
      }
      return;
    }
    const byteArr = of.kind === "int" && of.width === 1;
    const cls = byteArr ? ((of as WireInt).signed ? "Int8Array" : "Uint8Array") : null;
    if (cls) this.emit(`if (!(${x} instanceof ${cls})) throw $.typeErr("a ${cls}", ${x}, ${P()});`);
    else this.emit(`if (!Array.isArray(${x})) throw $.typeErr("an array", ${x}, ${P()});`);
    const n = this.v("n");
    this.emit(`const ${n} = ${x}.length;`);
    if (len.term === "static") {
      this.emit(`if (${n} !== ${len.count}) throw $.fail(${Status.MALFORMED}, ${P()}, "array of " + ${n} + " elements where the static length is ${len.count}");`);
    } else if (len.term === "member") {
      const c = this.countOf(sc, len.member);
      this.emit(`if (${n} !== ${c}) throw $.fail(${Status.MALFORMED}, ${P()}, "array of " + ${n} + " elements does not match length member ${len.member} = " + ${c});`);
    } else {
      this.ensure(4);
      this.emit(`view.setUint32(p, ${n}); p += 4;`);
    }
    const elemPlain = byteArr && !of.verify && !(of as WireInt).range;
    if (byteArr && elemPlain) {
      this.ensure(n);
      if (cls === "Uint8Array") this.emit(`if (${n} <= 2048) buf.set(${x}, p); else $.copyBytes(${x}, buf, p); p += ${n};`);
      else this.emit(`for (let j = 0; j < ${n}; j++) buf[p + j] = ${x}[j]; p += ${n};`);
      return;
    }
    const i = this.v("i");
    const e = this.v("e");
    const esc: Scope = { dom: sc.dom, path: [...sc.path, { v: i }] };
    const fs = fixedSize(of);
    if (fs > 0) this.ensure(`${n} * ${fs}`);
    this.emit(`for (let ${i} = 0; ${i} < ${n}; ${i}++) {`);
    this.emit(`const ${e} = ${x}[${i}];`);
    this.value(of, e, esc, fs > 0);
    this.flush();
    this.emit(`}`);
  }

  handle(w: WireHandle, x: string, sc: Scope): void {
    const P = pathExpr(sc.path);
    this.verify(w, x, sc);
    this.flush();
    this.emit(`if (ctx.handles) { w.pos = p; try { ctx.handles.writeHandle(w, ${x}, ${JSON.stringify(w.typeName)}, ${w.flags}, ${w.notNull}); } catch (e) { throw $.prefix(e, ${P}); } p = w.pos; buf = w.buf; view = w.view; }`);
    this.emit(`else if (${x} === null || ${x} === undefined) {`);
    if (w.notNull) this.emit(`throw $.fail(${Status.INVALID_HANDLE}, ${P}, "NULL handle where a non-null handle is required");`);
    else {
      this.ensure(1);
      this.emit(`buf[p++] = 0;`);
    }
    this.emit(`} else throw $.fail(${Status.INVALID_HANDLE}, ${P}, "a handle needs a session (no handle table in this context)");`);
  }

  custom(w: WireCustom, x: string, sc: Scope): void {
    this.verify(w, x, sc);
    this.flush();
    let t = x;
    if (w.marshal) {
      t = this.v("c");
      this.emit(`let ${t}; try { ${t} = ${this.k(w.marshal)}(${x}); } catch (e) { throw $.wrap(e, ${pathExpr(sc.path)}); }`);
    }
    // inside a custom type the dominating struct starts afresh (lwmsg)
    this.value(w.transmit, t, { dom: null, path: sc.path }, false);
    this.flush();
  }

  call(id: string, x: string, sc: Scope, rec: WireRec | null): void {
    if (rec) this.verify(rec, x, sc);
    this.flush();
    const fn = this.fnFor(id);
    const dom = this.domArg(sc, freeNames(this.a.recs.get(id)!, this.a.recs));
    this.emit(`w.pos = p; try { ${fn}(${x}, w, ctx, st, ${dom}); } catch (e) { throw $.prefix(e, ${pathExpr(sc.path)}); } p = w.pos; buf = w.buf; view = w.view;`);
  }
}

// ---------------------------------------------------------------------------
// decoder

class DecGen extends Gen {
  /** Decode into the already-declared variable `t`. `reserved`: fixedSize(w) bytes were already bounds-checked. `reg`: the aliasable object id under which `t` must be registered as soon as it exists (for cycles). */
  value(w: WireType, t: string, sc: Scope, reserved: boolean, reg: Reg | null = null): void {
    const P = () => pathExpr(sc.path);
    switch (w.kind) {
      case "int": {
        if (!reserved) this.need(w.width, sc);
        this.emit(`${t} = ${this.readInt(w.width, w.signed)};`);
        this.off += w.width;
        if (!reserved) this.flush();
        this.rangeCheck(w, t, sc);
        break;
      }
      case "enum":
        if (!reserved) this.need(w.width, sc);
        this.emit(`${t} = ${this.readInt(w.width, w.signed)};`);
        this.off += w.width;
        if (!reserved) this.flush();
        this.enumCheck(w, t, sc);
        this.rangeCheck(w, t, sc);
        break;
      case "bool": {
        if (!reserved) this.need(1, sc);
        const b = this.v("b");
        this.emit(`const ${b} = buf[${this.at()}];`);
        this.emit(`if (${b} > 1) throw $.rangeErr(${b}, 0, 1, ${P()});`);
        this.emit(`${t} = ${b} === 1;`);
        this.off += 1;
        if (!reserved) this.flush();
        break;
      }
      case "void":
        this.emit(`${t} = undefined;`);
        break;
      case "fd": {
        if (!reserved) this.need(1, sc);
        const b = this.v("b");
        this.emit(`const ${b} = buf[${this.at()}];`);
        this.emit(`if (${b} === 255) ${t} = ctx.takeFd(); else if (${b} === 0) ${t} = -1; else throw $.fail(${Status.MALFORMED}, ${P()}, "fd indicator " + ${b});`);
        this.off += 1;
        if (!reserved) this.flush();
        break;
      }
      case "struct":
        this.struct(w, t, sc, reserved, reg);
        return this.verify(w, t, sc);
      case "union":
        this.union(w, t, sc);
        break;
      case "pointer":
        this.pointer(w, t, sc, reserved);
        break;
      case "array":
        this.arrayBody(w, t, sc, null, reg);
        break;
      case "handle":
        this.handle(w, t, sc);
        break;
      case "custom":
        this.custom(w, t, sc);
        break;
      case "rec":
      case "ref":
        this.call(w.id, t, sc, reg);
        if (w.kind === "rec") this.verify(w, t, sc);
        return;
    }
    this.verify(w, t, sc);
  }

  /** Code registering `v` under `reg` in the alias map. */
  regCode(reg: Reg, v: string): string {
    return `if (${reg.id} !== 0) st.m.set(${reg.id}, [${v}, ${reg.tk}]);`;
  }

  readInt(width: number, signed: boolean): string {
    switch (width) {
      case 1:
        return signed ? `(buf[${this.at()}] << 24 >> 24)` : `buf[${this.at()}]`;
      case 2:
        return signed ? `((buf[${this.at()}] << 24 >> 16) | buf[${this.at(1)}])` : `(buf[${this.at()}] << 8 | buf[${this.at(1)}])`;
      case 4:
        return `view.${signed ? "getInt32" : "getUint32"}(${this.at()})`;
      default:
        return `view.${signed ? "getBigInt64" : "getBigUint64"}(${this.at()})`;
    }
  }

  struct(w: WireStruct, t: string, sc: Scope, reserved: boolean, reg: Reg | null): void {
    const ms = w.members;
    const locals = new Map<string, string>();
    const vars = ms.map((m) => {
      const v = this.v("m");
      locals.set(m.name, v);
      return v;
    });
    if (reg) {
      // an aliasable referent must exist (and be registered) before its members, for cycles
      this.emit(`${t} = { ${ms.map((m) => `${key(m.name)}: undefined`).join(", ")} };`);
      this.emit(this.regCode(reg, t));
    }
    this.emit(`let ${vars.join(", ")};`);
    let i = 0;
    while (i < ms.length) {
      let j = i;
      let run = 0;
      if (!reserved) {
        while (j < ms.length && fixedSize(ms[j]!.type) >= 0) run += fixedSize(ms[j++]!.type);
        if (run > 0) this.need(run, { dom: sc.dom, path: [...sc.path, `.${ms[i]!.name}`] });
      }
      const end = reserved ? ms.length : Math.max(j, i + 1);
      for (let k = i; k < end; k++) {
        const m = ms[k]!;
        const runMember = reserved || k < j;
        if (!runMember) this.flush();
        const msc: Scope = { dom: { kind: "struct", wire: w, upto: k, expr: t, locals }, path: [...sc.path, `.${m.name}`] };
        this.value(m.type, vars[k]!, msc, runMember);
        if (reg) this.emit(`${prop(t, m.name)} = ${vars[k]};`);
      }
      if (!reserved) this.flush();
      i = end;
    }
    if (!reg) this.emit(`${t} = { ${ms.map((m, k) => `${key(m.name)}: ${vars[k]}`).join(", ")} };`);
  }

  union(w: WireUnion, t: string, sc: Scope): void {
    this.flush();
    const tag = this.v("t");
    this.emit(`const ${tag} = ${this.tagOf(sc, w.discrim)};`);
    this.emit(`switch (${tag}) {`);
    for (const arm of w.arms) {
      this.emit(`case ${arm.tag}: {`);
      this.value(arm.type, t, sc, false);
      this.flush();
      this.emit(`break; }`);
    }
    this.emit(`default: throw $.fail(${Status.MALFORMED}, ${pathExpr(sc.path)}, "unknown union tag " + ${tag});`);
    this.emit(`}`);
  }

  pointer(w: WirePointer, t: string, sc: Scope, reserved: boolean): void {
    const P = () => pathExpr(sc.path);
    if (w.aliasable) {
      this.flush();
      this.need(4, sc);
      const id = this.v("id");
      const e = this.v("e");
      const tk = this.tk(w.to);
      this.emit(`const ${id} = view.getUint32(p); p += 4;`);
      this.emit(`if (${id} === 0) {`);
      if (w.notNull) this.emit(`throw $.fail(${Status.MALFORMED}, ${P()}, "NULL where a non-null pointer is required");`);
      else this.emit(`${t} = null;`);
      this.emit(`} else { const ${e} = st.m.get(${id});`);
      this.emit(`if (${e} !== undefined) { if (${e}[1] !== ${tk}) throw $.fail(${Status.MALFORMED}, ${P()}, "object id " + ${id} + " refers to a different type"); ${t} = ${e}[0]; }`);
      this.emit(`else {`);
      const early = earlyable(w.to, this.a.recs);
      this.referent(w, t, sc, early ? { id, tk: String(tk) } : null);
      this.flush();
      if (!early) this.emit(`st.m.set(${id}, [${t}, ${tk}]);`);
      this.emit(`} }`);
      return;
    }
    if (w.notNull) {
      if (reserved) {
        this.value(w.to, t, sc, true);
        return;
      }
      this.referent(w, t, sc, null);
      return;
    }
    this.flush();
    this.need(1, sc);
    const f = this.v("f");
    this.emit(`const ${f} = buf[p++];`);
    this.emit(`if (${f} === 0) ${t} = null; else if (${f} !== 255) throw $.fail(${Status.MALFORMED}, ${P()}, "pointer flag " + ${f}); else {`);
    this.referent(w, t, sc, null);
    this.flush();
    this.emit(`}`);
  }

  referent(w: WirePointer, t: string, sc: Scope, reg: Reg | null): void {
    if (w.to.kind === "array") {
      this.arrayBody(w.to, t, sc, w, reg);
      this.verify(w.to, t, sc);
      return;
    }
    if (w.maxAlloc !== undefined) {
      const size = nativeSize(w.to, this.a.recs);
      if (size > w.maxAlloc) {
        this.emit(`throw $.fail(${Status.OVERFLOW}, ${pathExpr(sc.path)}, "referent of ${size} bytes exceeds maxAlloc ${w.maxAlloc}");`);
        return;
      }
    }
    const fs = fixedSize(w.to);
    if (fs > 0 && !reg) {
      this.need(fs, sc);
      this.value(w.to, t, sc, true);
      this.flush();
    } else this.value(w.to, t, sc, false, reg);
  }

  arrayBody(a: WireArray, t: string, sc: Scope, ptr: WirePointer | null, reg: Reg | null): void {
    const P = () => pathExpr(sc.path);
    this.flush();
    const of = a.of;
    const len = a.length;
    const n = this.v("n");
    if (len.term === "static") this.emit(`const ${n} = ${len.count};`);
    else if (len.term === "member") this.emit(`const ${n} = ${this.countOf(sc, len.member)};`);
    else {
      this.need(4, sc);
      this.emit(`const ${n} = view.getUint32(p); p += 4;`);
    }
    // size checks before any allocation: maxAlloc (OVERFLOW), then the bytes actually present (EOF)
    if (ptr?.maxAlloc !== undefined) {
      const es = nativeSize(of, this.a.recs);
      const extra = len.term === "zero" ? 1 : 0;
      this.emit(`if ((${n} + ${extra}) * ${es} > ${ptr.maxAlloc}) throw $.fail(${Status.OVERFLOW}, ${P()}, "referent of " + (${n} + ${extra}) * ${es} + " bytes exceeds maxAlloc ${ptr.maxAlloc}");`);
    }
    if (len.term !== "static") {
      // counts are at most 2^53 ($.count), so count × element size cannot overflow 64 bits here
      const mw = minWire(of, this.a.recs);
      if (mw > 0) this.emit(`if (${mw === 1 ? n : `${n} * ${mw}`} > end - p) throw $.eof(${P()});`);
      // elements that take no bytes cannot be bounded by the input; bound them by a fixed cap instead
      else this.emit(`if (${n} > 65536 && ${n} > end - p) throw $.fail(${Status.MEMORY}, ${P()}, ${n} + " elements of a zero-size type");`);
    }
    if (a.string) {
      if (len.term === "static") this.need(n, sc);
      if (len.term === "static") this.emit(`${t} = $.utf8ReadPadded(buf, p, p + ${n}); p += ${n};`);
      else this.emit(`${t} = $.strAt(buf, p, ${n}, ${this.k(new RT.StrMemo())}); p += ${n};`);
      return;
    }
    const byteArr = of.kind === "int" && of.width === 1;
    if (byteArr) {
      if (len.term === "static") this.need(n, sc);
      const signed = (of as WireInt).signed;
      this.emit(`${t} = ${signed ? `new Int8Array(buf.slice(p, p + ${n}).buffer)` : `buf.slice(p, p + ${n})`};`);
      if (reg) this.emit(this.regCode(reg, t));
      if (of.verify || (of as WireInt).range) {
        const i = this.v("i");
        const esc: Scope = { dom: sc.dom, path: [...sc.path, { v: i }] };
        this.emit(`for (let ${i} = 0; ${i} < ${n}; ${i}++) { const e = ${t}[${i}];`);
        this.rangeCheck(of as WireInt, "e", esc);
        this.verify(of, "e", esc);
        this.emit(`}`);
      }
      this.emit(`p += ${n};`);
      return;
    }
    const fs = fixedSize(of);
    // non-static counts were already checked against the bytes left (minWire = fs for fixed elements)
    if (fs > 0 && len.term === "static") this.need(`${n} * ${fs}`, sc);
    const i = this.v("i");
    const e = this.v("e");
    const esc: Scope = { dom: sc.dom, path: [...sc.path, { v: i }] };
    this.emit(`${t} = new Array(${n});`);
    if (reg) this.emit(this.regCode(reg, t));
    this.emit(`for (let ${i} = 0; ${i} < ${n}; ${i}++) { let ${e};`);
    this.value(of, e, esc, fs > 0);
    this.flush();
    this.emit(`${t}[${i}] = ${e}; }`);
  }

  handle(w: WireHandle, t: string, sc: Scope): void {
    const P = pathExpr(sc.path);
    this.flush();
    this.emit(`if (ctx.handles) { r.pos = p; try { ${t} = ctx.handles.readHandle(r, ${JSON.stringify(w.typeName)}, ${w.flags}, ${w.notNull}); } catch (e) { throw $.prefix(e, ${P}); } p = r.pos; }`);
    this.emit(`else { if (p >= end) throw $.eof(${P}); const b = buf[p++];`);
    if (w.notNull) this.emit(`throw $.fail(${Status.INVALID_HANDLE}, ${P}, b === 0 ? "NULL handle where a non-null handle is required" : "a handle needs a session (no handle table in this context)");`);
    else this.emit(`if (b !== 0) throw $.fail(${Status.INVALID_HANDLE}, ${P}, "a handle needs a session (no handle table in this context)"); ${t} = null;`);
    this.emit(`}`);
  }

  custom(w: WireCustom, t: string, sc: Scope): void {
    this.flush();
    if (!w.unmarshal) {
      this.value(w.transmit, t, { dom: null, path: sc.path }, false);
      this.flush();
      return;
    }
    const c = this.v("c");
    this.emit(`let ${c};`);
    this.value(w.transmit, c, { dom: null, path: sc.path }, false);
    this.flush();
    this.emit(`try { ${t} = ${this.k(w.unmarshal)}(${c}); } catch (e) { throw $.wrap(e, ${pathExpr(sc.path)}); }`);
  }

  call(id: string, t: string, sc: Scope, reg: Reg | null): void {
    this.flush();
    const fn = this.fnFor(id);
    const dom = this.domArg(sc, freeNames(this.a.recs.get(id)!, this.a.recs));
    const ra = reg ? `${reg.id}, ${reg.tk}` : "0, 0";
    this.emit(`r.pos = p; try { ${t} = ${fn}(r, ctx, st, ${dom}, ${ra}); } catch (e) { throw $.prefix(e, ${pathExpr(sc.path)}); } p = r.pos;`);
  }
}

// ---------------------------------------------------------------------------
// assembly

const PRELUDE = `"use strict";`;

function build(wire: WireType): CompiledCodec {
  const a = analyze(wire);
  const topDom = (): Dom => null;

  // encoder
  const kEnc: unknown[] = [];
  const eg = new EncGen(a, "enc", kEnc);
  const encFns: string[] = [];
  const encBody = (() => {
    eg.lines = [];
    eg.value(wire, "value", { dom: topDom(), path: ["value"] }, false);
    eg.flush();
    return eg.lines;
  })();
  for (let qi = 0; qi < eg.fnQueue.length; qi++) {
    const id = eg.fnQueue[qi]!;
    eg.lines = [];
    eg.off = 0;
    eg.value(a.recs.get(id)!, "x", { dom: { kind: "param" }, path: [""] }, false);
    eg.flush();
    encFns.push(`function ${eg.fnNames.get(id)}(x, w, ctx, st, dom) {\nlet buf = w.buf, view = w.view, p = w.pos;\n${eg.lines.join("\n")}\nw.pos = p;\n}`);
  }
  const guardEnc = a.hasFds || a.hasHandles || a.hasRefs || a.hasCustom;
  const encSrc = [
    PRELUDE,
    ...encFns,
    `return function encode(value, w, ctx) {`,
    `let buf = w.buf, view = w.view, p = w.pos;`,
    a.hasAlias ? `const st = { m: [], n: 1 };` : a.hasRefs ? `const st = null;` : ``,
    guardEnc ? `const p0 = p${a.hasFds ? ", f0 = ctx.fdsOut.length" : ""}; try {` : ``,
    ...encBody,
    `w.pos = p;`,
    guardEnc ? `} catch (e) { w.pos = p0;${a.hasFds ? " ctx.fdsOut.length = f0;" : ""} throw e; }` : ``,
    `};`,
  ].join("\n");

  // decoder
  const kDec: unknown[] = [];
  const dg = new DecGen(a, "dec", kDec);
  const decFns: string[] = [];
  dg.lines = [];
  dg.value(wire, "value", { dom: topDom(), path: ["value"] }, false);
  dg.flush();
  const decBody = dg.lines;
  for (let qi = 0; qi < dg.fnQueue.length; qi++) {
    const id = dg.fnQueue[qi]!;
    dg.lines = [];
    dg.off = 0;
    dg.value(a.recs.get(id)!, "x", { dom: { kind: "param" }, path: [""] }, false, { id: "rid", tk: "rtk" });
    dg.flush();
    decFns.push(`function ${dg.fnNames.get(id)}(r, ctx, st, dom, rid, rtk) {\nconst buf = r.buf, view = r.view, end = r.end; let p = r.pos;\nlet x;\n${dg.lines.join("\n")}\nr.pos = p;\nreturn x;\n}`);
  }
  const decSrc = [
    PRELUDE,
    ...decFns,
    `return function decode(r, ctx) {`,
    `const buf = r.buf, view = r.view, end = r.end; let p = r.pos;`,
    a.hasAlias ? `const st = { m: new Map() };` : a.hasRefs ? `const st = null;` : ``,
    `let value;`,
    ...decBody,
    `r.pos = p;`,
    `return value;`,
    `};`,
  ].join("\n");

  let encode: Encoder;
  let decode: Decoder;
  try {
    encode = new Function("K", "$", encSrc)(kEnc, RT) as Encoder;
    decode = new Function("K", "$", decSrc)(kDec, RT) as Decoder;
  } catch (e) {
    throw new LwMsgError(Status.INTERNAL, `codec generation failed: ${(e as Error).message}`, { cause: e });
  }
  return { encode, decode, hasFds: a.hasFds, hasHandles: a.hasHandles, wire, source: { encode: encSrc, decode: decSrc } };
}
