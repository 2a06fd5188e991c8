/**
 * Encoder generation (see compile.ts for the overall design). `value()`
 * emits the code that appends one value held in a local variable.
 * @module
 */
import { Status } from "../status.ts";
import { textForm, type WireArray, type WireCustom, type WireHandle, type WireInt, type WirePointer, type WireRec, type WireStruct, type WireType, type WireUnion } from "../types.ts";
import { admitsNullish, admitsUndefined, fixedSize, freeNames } from "./analyze.ts";
import { Gen, pathExpr, prop, type Scope } from "./gen.ts";
import { EXTERNAL_MIN_BYTES } from "./io.ts";

export class EncGen extends Gen {
  /** Encode the value held in local `x`. `reserved`: the caller already ensured fixedSize(w) bytes. */
  override value(w: WireType, x: string, sc: Scope, reserved: boolean): void {
    const P = () => pathExpr(sc.path);
    switch (w.kind) {
      case "int":
      case "enum": {
        let v = x;
        if (w.width === 8) {
          // 64-bit fields take a bigint (or a safe integer) and write it as one
          v = this.v("g");
          this.emit(`const ${v} = typeof ${x} === "bigint" ? ${x} : $.toBig(${x}, ${w.signed}, ${P()});`);
          const [lo, hi] = w.signed ? ["-9223372036854775808n", "9223372036854775807n"] : ["0n", "18446744073709551615n"];
          this.emit(`if (${v} < ${lo} || ${v} > ${hi}) throw $.bigErr(${v}, ${w.signed}, ${P()});`);
        } else {
          this.intCheck(w, x, sc);
          if (w.kind === "enum") this.enumCheck(w, x, sc);
        }
        this.rangeCheck(w, v, sc);
        this.verify(w, v, sc);
        if (!reserved) this.ensure(w.width);
        this.writeInt(w.width, w.signed, v);
        if (!reserved) this.flush();
        return;
      }
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
        return this.arrayBody(w, x, sc);
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
      default:
        this.emit(`view.${signed ? "setBigInt64" : "setBigUint64"}(${this.at()}, ${x});`);
    }
    this.off += width;
  }

  struct(w: WireStruct, x: string, sc: Scope, reserved: boolean): void {
    this.emit(`if (typeof ${x} !== "object" || ${x} === null) throw $.typeErr("an object", ${x}, ${pathExpr(sc.path)});`);
    this.verify(w, x, sc);
    // each member is read once: later lengths and discriminators use the value that was encoded
    const locals = new Map<string, string>();
    this.structRuns(
      w.members,
      reserved,
      (bytes) => this.ensure(bytes),
      (k, inRun) => {
        const m = w.members[k]!;
        const mv = this.v("m");
        const msc: Scope = { dom: { kind: "struct", wire: w, upto: k, expr: x, locals }, path: [...sc.path, `.${m.name}`] };
        this.emit(`const ${mv} = ${prop(x, m.name)};`);
        locals.set(m.name, mv);
        this.value(m.type, mv, msc, inRun);
      },
    );
  }

  union(w: WireUnion, x: string, sc: Scope): void {
    this.verify(w, x, sc);
    this.unionSwitch(w, x, sc);
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
      this.string(w.to, x, sc, true);
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
      this.arrayBody(w.to, x, sc);
    } else {
      const fs = fixedSize(w.to);
      if (fs > 0) {
        this.ensure(fs);
        this.value(w.to, x, sc, true);
        this.flush();
      } else this.value(w.to, x, sc, false);
    }
  }

  /** Zero-terminated text: u32 element count (NUL excluded), then the elements; with `flag`, the FF presence byte first. */
  string(a: WireArray, x: string, sc: Scope, flag: boolean): void {
    const P = pathExpr(sc.path);
    this.flush();
    const n = this.v("n");
    const q = this.v("q");
    const hdr = flag ? 5 : 4;
    const form = textForm(a);
    if (form === "bytes") {
      this.emit(`if (!(${x} instanceof Uint8Array)) throw $.typeErr("a Uint8Array", ${x}, ${P});`);
      this.emit(`$.checkBytes(${x}, ${P}); const ${n} = ${x}.length;`);
      this.ensure(`${hdr} + ${n}`);
      if (flag) this.emit(`buf[p] = 255;`);
      this.emit(`view.setUint32(p${flag ? " + 1" : ""}, ${n}); p += ${hdr};`);
      this.emit(`if (${n} <= 2048) buf.set(${x}, p); else $.copyBytes(${x}, buf, p); p += ${n};`);
      return;
    }
    this.emit(`if (typeof ${x} !== "string") throw $.typeErr("a string", ${x}, ${P});`);
    if (form !== "utf-8") {
      // one element per char: latin1/ascii bytes or 16-bit code units
      const wide = form === "utf-16";
      this.emit(`const ${n} = ${x}.length;`);
      this.ensure(wide ? `${hdr} + 2 * ${n}` : `${hdr} + ${n}`);
      if (flag) this.emit(`buf[p] = 255;`);
      this.emit(`view.setUint32(p${flag ? " + 1" : ""}, ${n});`);
      this.emit(wide ? `p = $.utf16Write(buf, ${x}, p + ${hdr}, ${P});` : `p = $.byteTextWrite(buf, ${x}, p + ${hdr}, ${form === "latin1" ? 255 : 127}, ${P});`);
      return;
    }
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
  arrayBody(a: WireArray, x: string, sc: Scope): void {
    const P = () => pathExpr(sc.path);
    this.flush();
    const of = a.of;
    const len = a.length;
    if (a.string) {
      if (len.term === "zero") return this.string(a, x, sc, false);
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
      // A large array may stay where it is: room is kept for it and the outgoing queue writes it from there.
      if (cls === "Uint8Array") this.emit(`if (${n} <= 2048) buf.set(${x}, p); else if (${n} >= ${EXTERNAL_MIN_BYTES} && ctx.externalOk) ctx.external.push(${x}, p); else $.copyBytes(${x}, buf, p); p += ${n};`);
      // Int8Array → Uint8Array set() stores the values modulo 256, i.e. the same bytes; a loop wins only for a few
      else this.emit(`if (${n} <= 16) for (let j = 0; j < ${n}; j++) buf[p + j] = ${x}[j]; else $.copyBytes(${x}, buf, p); p += ${n};`);
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
