/**
 * Human-readable dumps, in lwmsg's formats (reference §2.6):
 * {@link printValue} follows `lwmsg_data_print_graph_alloc` (data-print.c)
 * and {@link printType} follows `lwmsg_type_print_spec_alloc` (type-print.c).
 *
 * Differences from lwmsg, on purpose: no leading blank line before a
 * top-level struct; booleans print `true`/`false`; 8-bit integer arrays
 * (`Uint8Array`/`Int8Array`) always print as a hex+ascii block rather than
 * one element per line; strings are printed raw between quotes, as lwmsg does.
 * @module
 */
import type { WireArray, WireEnum, WireStruct, WireType, WireUnion } from "../types.ts";
import { analyze } from "./analyze.ts";
import { MAX_DEPTH, stackErr, tag, tooDeep, wrap } from "./runtime.ts";

class Out {
  parts: string[] = [];
  depth = 0;
  nl = true;
  print(text: string): void {
    if (this.nl) {
      if (this.depth > 0) this.parts.push(" ".repeat(this.depth));
      this.nl = false;
    }
    this.parts.push(text);
  }
  newline(): void {
    this.parts.push("\n");
    this.nl = true;
  }
  newlineIf(): void {
    if (!this.nl) this.newline();
  }
  /** `{` on a line of its own; what follows is indented by 4. */
  open(): void {
    this.newlineIf();
    this.print("{");
    this.newline();
    this.depth += 4;
  }
  /** Back out one level and print `close` (`}` and whatever follows it). */
  close(close = "}"): void {
    this.depth -= 4;
    this.print(close);
  }
  toString(): string {
    return this.parts.join("");
  }
}

/** lwmsg_data_print_enum: the scalar's name (or number), then the set mask names, joined by ` | `. */
function formatEnum(w: WireEnum, value: number): string {
  let mask = 0;
  for (const m of Object.values(w.masks)) mask |= m & value;
  const res = (value & ~mask) >>> 0 === value >>> 0 ? value : w.signed ? value & ~mask : (value & ~mask) >>> 0;
  const scalars = Object.entries(w.values);
  const parts: string[] = [];
  const hit = scalars.find(([, v]) => v === res);
  if (hit) parts.push(hit[0]);
  else if (scalars.length > 0 || mask === 0) parts.push(String(res));
  for (const [name, m] of Object.entries(w.masks)) {
    if (mask & m) {
      mask &= ~m;
      parts.push(name);
    }
  }
  return parts.join(" | ");
}

function hexAscii(out: Out, bytes: Uint8Array): void {
  out.open();
  for (let cluster = 0; cluster < bytes.length; cluster += 16) {
    let line = cluster.toString(16).padStart(8, "0") + "  ";
    for (let i = cluster; i < cluster + 16; i++) {
      if (i % 8 === 0) line += " ";
      line += i < bytes.length ? bytes[i]!.toString(16).padStart(2, "0") : "  ";
      if (i < cluster + 15) line += " ";
    }
    line += "  |";
    for (let i = cluster; i < cluster + 16 && i < bytes.length; i++) {
      const c = bytes[i]!;
      line += c >= 32 && c <= 126 ? String.fromCharCode(c) : ".";
    }
    line += "|";
    out.print(line);
    out.newline();
  }
  out.close();
}

/** Print a value of the given wire type (lwmsg data print format). */
export function printValue(wire: WireType, value: unknown): string {
  const out = new Out();
  const recs = analyze(wire).recs;
  const aliases = new Map<unknown, number>();
  let depth = 0;

  const arrayBody = (a: WireArray, v: unknown, dom: unknown): void => {
    if (a.string) {
      if (v instanceof Uint8Array) {
        // exact bytes (bytes: true): printable ASCII as is, anything else escaped
        if (a.encoding === "hex+ascii") return hexAscii(out, v);
        let s = "";
        for (const c of v) s += c >= 32 && c <= 126 && c !== 92 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
        out.print(`"${s}"`);
        return;
      }
      if (a.encoding === "hex+ascii") return hexAscii(out, new TextEncoder().encode(String(v)));
      out.print(`"${String(v)}"`);
      return;
    }
    if (v instanceof Uint8Array || v instanceof Int8Array) {
      return hexAscii(out, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    }
    out.open();
    for (const e of v as unknown[]) {
      node(a.of, e, dom);
      out.newlineIf();
    }
    out.close();
  };

  const node = (w: WireType, v: unknown, dom: unknown): void => {
    if (w.sensitive) {
      out.print("<sensitive>");
      return;
    }
    switch (w.kind) {
      case "int":
      case "bool":
      case "fd":
        out.print(String(v));
        return;
      case "enum":
        out.print(formatEnum(w, v as number));
        return;
      case "void":
        return;
      case "struct":
        out.open();
        for (const m of w.members) {
          out.print(`${m.name} = `);
          node(m.type, (v as Record<string, unknown>)[m.name], v);
          out.newlineIf();
        }
        out.close();
        return;
      case "union": {
        const t = tag((dom as Record<string, unknown> | null)?.[w.discrim]);
        const arm = w.arms.find((a) => a.tag === t);
        if (!arm) {
          out.print(`<invalid tag ${t}>`);
          return;
        }
        if (arm.name !== undefined) out.print(`<arm:${arm.name}>`);
        node(arm.type, v, dom);
        return;
      }
      case "pointer":
        if (v === null || v === undefined) {
          out.print("<null>");
          return;
        }
        if (w.aliasable) {
          const id = typeof v === "object" ? aliases.get(v) : undefined;
          if (id !== undefined) {
            out.print(`<alias:${id}>`);
            return;
          }
          const n = aliases.size + 1;
          if (typeof v === "object") aliases.set(v, n);
          out.print(`<alias:${n}> `);
        }
        if (w.to.kind === "array") arrayBody(w.to, v, dom);
        else node(w.to, v, dom);
        return;
      case "array":
        arrayBody(w, v, dom);
        return;
      case "handle":
        out.print(v === null || v === undefined ? "<null>" : String(v));
        return;
      case "custom": {
        let t = v;
        if (w.marshal) {
          // as on encode: a callback's error becomes MALFORMED (an LwMsgError keeps its status)
          try {
            t = w.marshal(v);
          } catch (e) {
            throw wrap(e, "value");
          }
        }
        node(w.transmit, t, null);
        return;
      }
      case "rec":
      case "ref":
        if (++depth > MAX_DEPTH) throw tooDeep();
        node(recs.get(w.id)!, v, dom);
        depth--;
        return;
    }
  };

  try {
    node(wire, value, null);
  } catch (e) {
    throw stackErr(e);
  }
  return out.toString();
}

/** Print a wire type (lwmsg type print format, e.g. `struct foo { int16 a; ... }`). */
export function printType(wire: WireType): string {
  const out = new Out();
  const recs = analyze(wire).recs;
  const seen = new Set<WireType>();
  const recNames = new Map<string, string>();

  const typeName = (w: WireStruct | WireUnion | WireEnum, rec?: string) => w.name ?? (rec ? recNames.get(rec) : undefined) ?? "<anonymous>";

  /** `label`, then on the type's first appearance its body (`lines` prints it) between `{` and `close`; later appearances print the label only. */
  const block = (w: WireStruct | WireUnion | WireEnum, label: string, close: string, lines: () => void): void => {
    const first = !seen.has(w);
    if (first) out.newlineIf();
    out.print(label);
    if (!first) return;
    seen.add(w);
    out.newline();
    out.open();
    lines();
    out.close(close);
  };

  const lengthAttr = (a: WireArray): string[] => {
    const attrs: string[] = [];
    if (a.length.term === "static" && a.length.count !== 1) attrs.push(`length=${a.length.count}`);
    if (a.length.term === "zero") attrs.push(a.string ? "string" : "zero");
    if (a.encoding) attrs.push(`encoding=${a.encoding}`);
    if (a.length.term === "member") attrs.push(`length=${a.length.member}`);
    return attrs;
  };

  const node = (w: WireType, dom: WireStruct | null, recId?: string): void => {
    switch (w.kind) {
      case "int":
        out.print(`${w.signed ? "" : "u"}int${w.width * 8}`);
        if (w.range) out.print(` <range=${w.range[0]},${w.range[1]}>`);
        return;
      case "bool":
        out.print("uint8 <range=0,1>");
        return;
      case "enum":
        block(w, `${w.signed ? "" : "u"}int${w.width * 8} enum ${typeName(w)}`, "}", () => {
          const vs = [...Object.entries(w.values).map(([n, v]) => `${n} = ${v}`), ...Object.entries(w.masks).map(([n, v]) => `${n} = 0x${(v >>> 0).toString(16).padStart(w.width * 2, "0")}`)];
          vs.forEach((s, i) => {
            out.print(s + (i < vs.length - 1 ? "," : ""));
            out.newline();
          });
        });
        return;
      case "struct":
        block(w, `struct ${typeName(w, recId)}`, "}", () => {
          for (const m of w.members) {
            node(m.type, w);
            out.print(` ${m.name};`);
            out.newline();
          }
        });
        return;
      case "union":
        block(w, `union ${typeName(w, recId)}`, `} <discrim=${w.discrim}>`, () => {
          const discrim = dom?.members.find((m) => m.name === w.discrim)?.type;
          w.arms.forEach((a, i) => {
            node(a.type, dom);
            let shown = String(a.tag);
            if (discrim?.kind === "enum") shown = Object.entries(discrim.values).find(([, v]) => v === a.tag)?.[0] ?? shown;
            out.print(` ${a.name ?? `arm${i}`} <tag=${shown}>;`);
            out.newline();
          });
        });
        return;
      case "pointer": {
        const to = w.to;
        const attrs: string[] = [];
        if (to.kind === "array") {
          node(to.of, dom);
          attrs.push(...lengthAttr(to));
        } else node(to, dom);
        out.print(w.notNull ? "&" : "*");
        if (w.aliasable) out.print("!");
        if (w.sensitive) attrs.push("sensitive");
        if (w.maxAlloc !== undefined) attrs.push(`max_alloc=${w.maxAlloc}`);
        if (attrs.length) out.print(` <${attrs.join(",")}>`);
        return;
      }
      case "array":
        node(w.of, dom);
        if (w.length.term === "static") out.print(`[${w.length.count}]`);
        else if (w.length.term === "member") out.print(`[${w.length.member}]`);
        else out.print("[]");
        if (w.length.term === "zero") out.print(w.string ? " <string>" : " <zero>");
        return;
      case "void":
        out.print("void");
        return;
      case "fd":
        out.print("fd");
        return;
      case "handle":
        out.print(`handle ${w.typeName}${w.notNull ? "&" : "*"}`);
        return;
      case "custom":
        out.print(`custom ${w.name ?? "<anonymous>"} (`);
        node(w.transmit, null);
        out.print(")");
        return;
      case "rec":
        if (w.name) recNames.set(w.id, w.name);
        node(w.type, dom, w.id);
        return;
      case "ref":
        node(recs.get(w.id)!, dom, w.id);
        return;
    }
  };
  node(wire, null);
  return out.toString();
}
