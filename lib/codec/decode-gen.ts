/**
 * Decoder generation (see compile.ts for the overall design). `value()`
 * emits the code that reads one value into a declared local variable.
 * @module
 */
import { Status } from "../status.ts";
import { textForm, type WireArray, type WireCustom, type WireHandle, type WireInt, type WirePointer, type WireStruct, type WireType, type WireUnion } from "../types.ts";
import { earlyable, fixedSize, freeNames, inlineCost, minWire, nativeSize, type Reg } from "./analyze.ts";
import { Gen, key, pathExpr, prop, type Scope } from "./gen.ts";
import * as RT from "./runtime.ts";
import { VIEW_MIN_BYTES } from "./io.ts";
import { StrMemo } from "./text.ts";

export class DecGen extends Gen {
  /** Charge `cost` (a JS expression or a number) against the decode's budget `Z`, before what it pays for is allocated. */
  charge(cost: string | number, sc: Scope): void {
    if (cost === 0) return;
    this.emit(`if ((Z -= ${cost}) < 0) throw $.budgetErr(${pathExpr(sc.path)}, ZL);`);
  }

  /** A value of `w` created on its own: charge what it holds inline (see analyze.ts inlineCost). */
  override site(w: WireType, sc: Scope): void {
    this.charge(inlineCost(w), sc);
  }

  /** Decode into the already-declared variable `t`. `reserved`: fixedSize(w) bytes were already bounds-checked. `reg`: the aliasable object id under which `t` must be registered as soon as it exists (for cycles). */
  override value(w: WireType, t: string, sc: Scope, reserved: boolean, reg: Reg | null = null): void {
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
    this.structRuns(
      ms,
      reserved,
      (bytes, first) => this.need(bytes, { dom: sc.dom, path: [...sc.path, `.${ms[first]!.name}`] }),
      (k, inRun) => {
        const m = ms[k]!;
        const msc: Scope = { dom: { kind: "struct", wire: w, upto: k, expr: t, locals }, path: [...sc.path, `.${m.name}`] };
        this.value(m.type, vars[k]!, msc, inRun);
        if (reg) this.emit(`${prop(t, m.name)} = ${vars[k]};`);
      },
    );
    if (!reg) this.emit(`${t} = { ${ms.map((m, k) => `${key(m.name)}: ${vars[k]}`).join(", ")} };`);
  }

  union(w: WireUnion, t: string, sc: Scope): void {
    this.unionSwitch(w, t, sc);
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
      this.site(w.to, sc);
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
    this.site(w.to, sc);
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
      // (elements that take no bytes cannot be bounded by the input: only the budget below bounds them)
      if (mw > 0) this.emit(`if (${mw === 1 ? n : `${n} * ${mw}`} > end - p) throw $.eof(${P()});`);
    } else if (fixedSize(of) * len.count > 0) {
      // a static count of fixed-size elements (text and bytes included): one bounds check
      this.need(fixedSize(of) * len.count, sc);
    }
    // the decoded size, charged in full before anything is allocated (nested arrays charge as they are reached)
    const byteArr = of.kind === "int" && of.width === 1;
    if (a.string) this.charge(`${RT.COST.STRING} + ${textForm(a) === "utf-16" ? `2 * ${n}` : n}`, sc);
    else if (byteArr) this.charge(`${RT.COST.BYTES} + ${n}`, sc);
    else if (len.term === "static") this.charge(RT.COST.ARRAY + (RT.COST.SLOT + inlineCost(of)) * len.count, sc);
    // allocated at once below: charged at once; variable-size elements are charged one by one as they are appended
    else if (fixedSize(of) >= 0) this.charge(`${RT.COST.ARRAY} + ${RT.COST.SLOT + inlineCost(of)} * ${n}`, sc);
    else this.charge(RT.COST.ARRAY, sc);
    if (a.string) {
      // text is never changed on the way in: what the form refuses (bad UTF-8, a NUL, ...) is MALFORMED, naming the field
      const form = textForm(a);
      const refused = (size: string) => `if (${t} === null) throw $.textErr(buf, p, ${n}, ${JSON.stringify(form)}, ${P()}${len.term === "static" ? ", true" : ""}); p += ${size};`;
      if (form === "bytes") {
        this.emit(`${t} = buf.slice(p, p + ${n}); if (${t}.indexOf(0) !== -1) ${t} = null;`);
        this.emit(refused(n));
      } else if (form === "utf-16") {
        this.emit(`${t} = $.utf16Text(buf, p, ${n});`);
        this.emit(refused(`2 * ${n}`));
      } else if (form !== "utf-8") {
        this.emit(`${t} = $.byteText(buf, p, ${n}, ${form === "latin1" ? 255 : 127});`);
        this.emit(refused(n));
      } else {
        if (len.term === "static") this.emit(`${t} = $.utf8ReadPadded(buf, p, p + ${n});`);
        else this.emit(`${t} = $.strAt(buf, p, ${n}, ${this.k(new StrMemo())});`);
        this.emit(refused(n));
      }
      return;
    }
    if (byteArr) {
      const signed = (of as WireInt).signed;
      // Views only into a buffer the message owns (ctx.viewBytes); anything else is copied out.
      const view = `ctx.viewBytes && ${n} >= ${VIEW_MIN_BYTES}`;
      if (signed) this.emit(`if (${view}) { ${t} = new Int8Array(buf.buffer, buf.byteOffset + p, ${n}); ctx.views++; } else ${t} = new Int8Array(buf.slice(p, p + ${n}).buffer);`);
      else this.emit(`if (${view}) { ${t} = buf.subarray(p, p + ${n}); ctx.views++; } else ${t} = buf.slice(p, p + ${n});`);
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
    const i = this.v("i");
    const e = this.v("e");
    const esc: Scope = { dom: sc.dom, path: [...sc.path, { v: i }] };
    // Variable-size elements may nest (recursion, arrays of arrays): preallocating every level to its count
    // would let each level claim the same remaining input again (a 300 KB message could allocate gigabytes
    // before failing). Beyond a few elements they are appended as they decode, so memory follows the input.
    if (fs > 0 || len.term === "static") this.emit(`${t} = new Array(${n});`);
    else this.emit(`${t} = ${n} > ${RT.PREALLOC_MAX} ? [] : new Array(${n});`);
    if (reg) this.emit(this.regCode(reg, t));
    this.emit(`for (let ${i} = 0; ${i} < ${n}; ${i}++) { let ${e};`);
    if (fs < 0 && len.term !== "static") this.charge(RT.COST.SLOT + inlineCost(of), esc);
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
    this.site(w.transmit, sc);
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
