/**
 * The code generator's shared machinery: the emitted lines, constants, the
 * compile-time cursor offset, field paths, and access to the dominating
 * struct's members. Encoder and decoder generators extend {@link Gen}.
 * @module
 */
import { Status } from "../status.ts";
import type { WireEnum, WireInt, WireMember, WireStruct, WireType, WireUnion } from "../types.ts";
import { bad, fixedSize, typeKey, type Analysis } from "./analyze.ts";

/** One piece of a field path: a constant, or a JS variable holding an index. */
export type PathPart = string | { v: string };

export function pathExpr(parts: PathPart[]): string {
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

export const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
export const prop = (obj: string, name: string) => (IDENT.test(name) ? `${obj}.${name}` : `${obj}[${JSON.stringify(name)}]`);
export const key = (name: string) => (IDENT.test(name) ? name : JSON.stringify(name));

/**
 * The struct that length and discriminator members resolve against: `expr`
 * is the struct object (encode) or the variable it is decoded into, `locals`
 * the variables holding its members `[0, upto)`.
 */
export type Dom =
  | { kind: "struct"; wire: WireStruct; upto: number; expr: string; locals: Map<string, string> }
  | { kind: "param" }
  | null;

export interface Scope {
  dom: Dom;
  path: PathPart[];
}

export class Gen {
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

  // --- capacity (encode) and bounds (decode) ----------------------------------

  /** JS expression for `n` more bytes after the pending offset. */
  private span(n: number | string): string {
    return typeof n === "number" ? String(this.off + n) : this.off === 0 ? `(${n})` : `${this.off} + (${n})`;
  }

  /** Encode: make room for `n` more bytes after the pending offset. */
  ensure(n: number | string): void {
    const need = this.span(n);
    this.emit(`if (p + ${need} > buf.length) { buf = $.grow(w, p, ${need}); view = w.view; }`);
  }

  /** Decode: make sure `n` more bytes are there after the pending offset. */
  need(n: number | string, sc: Scope): void {
    this.emit(`if (p + ${this.span(n)} > end) throw $.eof(${pathExpr(sc.path)});`);
  }

  /**
   * A struct's members in order (§2.3). Unless `reserved` (the caller checked
   * fixedSize(struct) bytes already), each run of fixed-size members shares one
   * capacity check (encode) or bounds check (decode): `check(bytes, first)`
   * before the run, then `member(k, inRun)` for each member, `inRun` meaning
   * its bytes are covered and it writes at constant offsets.
   */
  structRuns(ms: WireMember[], reserved: boolean, check: (bytes: number, first: number) => void, member: (k: number, inRun: boolean) => void): void {
    let i = 0;
    while (i < ms.length) {
      let j = i;
      let run = 0;
      if (!reserved) {
        for (let s; j < ms.length && (s = fixedSize(ms[j]!.type)) >= 0; j++) run += s;
        if (run > 0) check(run, i);
      }
      const end = reserved ? ms.length : Math.max(j, i + 1);
      for (let k = i; k < end; k++) {
        const inRun = reserved || k < j;
        if (!inRun) this.flush();
        member(k, inRun);
      }
      if (!reserved) this.flush();
      i = end;
    }
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
    return { expr: d.locals.get(name)!, type: mt };
  }

  /** The `dom` argument for a recursive function call. */
  domArg(sc: Scope, names: Set<string>): string {
    if (names.size === 0) return "undefined";
    const d = sc.dom;
    if (d === null) bad(`recursive type at ${pathExpr(sc.path)} uses ${[...names].join(", ")} but has no enclosing struct`);
    if (d.kind === "param") return "dom";
    if (this.mode === "enc") {
      // the struct being encoded exists: pass it rather than build an object per call
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

  /** A place where a value of `w` is created on its own (the root, a union arm, a referent, ...): the decoder charges its inline cost there. */
  site(_w: WireType, _sc: Scope): void {}

  /** Code for one value; each generator (encode, decode) supplies its own. */
  value(_w: WireType, _x: string, _sc: Scope, _reserved: boolean): void {
    throw new Error("Gen.value: implemented by EncGen/DecGen");
  }

  /**
   * A union (§2.3): only the active arm, chosen by the discriminator read
   * from the dominating struct; an unknown tag is MALFORMED. Same code for
   * both directions, `x` being the value written or the target assigned.
   */
  unionSwitch(w: WireUnion, x: string, sc: Scope): void {
    this.flush();
    const t = this.v("t");
    this.emit(`const ${t} = ${this.tagOf(sc, w.discrim)};`);
    this.emit(`switch (${t}) {`);
    for (const arm of w.arms) {
      this.emit(`case ${arm.tag}: {`);
      this.site(arm.type, sc);
      this.value(arm.type, x, sc, false);
      this.flush();
      this.emit(`break; }`);
    }
    this.emit(`default: throw $.fail(${Status.MALFORMED}, ${pathExpr(sc.path)}, "unknown union tag " + ${t});`);
    this.emit(`}`);
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
    // the value must survive truncation to its width unchanged (so also: a number, an integer)
    const shift = 32 - w.width * 8;
    const cut = w.width === 4 ? (w.signed ? `${x} | 0` : `${x} >>> 0`) : w.signed ? `${x} << ${shift} >> ${shift}` : `${x} & ${2 ** (w.width * 8) - 1}`;
    this.emit(`if ((${cut}) !== ${x}) throw $.intErr(${x}, ${w.width}, ${w.signed}, ${pathExpr(sc.path)});`);
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
