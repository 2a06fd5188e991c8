/**
 * Where the interesting fields of an encoding are: a small interpreter that
 * walks bytes along a wire description (the way lwmsg's unmarshaller does,
 * §2.3) and records each field's offset, size and role, so mutations can aim
 * at counts, length and discriminator members, presence bytes, alias ids, fd
 * indicators, handle localities and union tags. It is only run on valid
 * encodings; if it meets something it cannot follow it stops, keeping the
 * fields found so far.
 * @module
 */
import type { WireType, WireStruct } from "../../lib/types.ts";
import { rolesOf } from "./gen.ts";

export type FieldKind =
  | "int" // plain integer
  | "enum"
  | "bool"
  | "length" // integer member used as an array length
  | "tag" // integer/enum member used as a union discriminator
  | "count" // u32 count of a zero-terminated array
  | "presence" // pointer presence byte
  | "alias" // u32 object id of an aliasable pointer
  | "fd" // fd indicator
  | "locality" // handle locality byte
  | "hid" // handle id
  | "bytes"; // string or byte-array content

export interface Field {
  off: number;
  size: number;
  kind: FieldKind;
  signed?: boolean;
}

class Stop extends Error {}

export function layoutOf(root: WireType, recs: Map<string, WireType>, bytes: Uint8Array): Field[] {
  const fields: Field[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  const seenIds = new Set<number>();
  const need = (n: number) => {
    if (p + n > bytes.length) throw new Stop();
  };
  const readUInt = (width: number, signed: boolean): number => {
    need(width);
    let v: number;
    if (width === 1) v = signed ? view.getInt8(p) : view.getUint8(p);
    else if (width === 2) v = signed ? view.getInt16(p) : view.getUint16(p);
    else if (width === 4) v = signed ? view.getInt32(p) : view.getUint32(p);
    else v = Number(signed ? view.getBigInt64(p) : view.getBigUint64(p));
    return v;
  };
  type Env = Map<string, number> | null;

  const value = (w: WireType, env: Env, role: FieldKind | null = null): number | null => {
    switch (w.kind) {
      case "int":
      case "enum": {
        const v = readUInt(w.width, w.signed);
        fields.push({ off: p, size: w.width, kind: role ?? w.kind, signed: w.signed });
        p += w.width;
        return v;
      }
      case "bool": {
        need(1);
        const v = bytes[p]!;
        fields.push({ off: p, size: 1, kind: role ?? "bool" });
        p += 1;
        return v;
      }
      case "void":
        return null;
      case "fd":
        need(1);
        fields.push({ off: p, size: 1, kind: "fd" });
        p += 1;
        return null;
      case "handle": {
        need(1);
        const b = bytes[p]!;
        fields.push({ off: p, size: 1, kind: "locality" });
        p += 1;
        if (b !== 0) {
          need(4);
          fields.push({ off: p, size: 4, kind: "hid" });
          p += 4;
        }
        return null;
      }
      case "struct":
        struct(w);
        return null;
      case "union": {
        const t = env?.get(w.discrim);
        const arm = w.arms.find((a) => a.tag === t);
        if (!arm) throw new Stop();
        value(arm.type, env);
        return null;
      }
      case "pointer": {
        if (w.aliasable) {
          need(4);
          const id = view.getUint32(p);
          fields.push({ off: p, size: 4, kind: "alias" });
          p += 4;
          if (id === 0 || seenIds.has(id)) return null;
          seenIds.add(id);
          value(w.to, env);
          return null;
        }
        if (!w.notNull) {
          need(1);
          const f = bytes[p]!;
          fields.push({ off: p, size: 1, kind: "presence" });
          p += 1;
          if (f === 0) return null;
        }
        value(w.to, env);
        return null;
      }
      case "array": {
        let n: number;
        if (w.length.term === "static") n = w.length.count;
        else if (w.length.term === "member") {
          const v = env?.get(w.length.member);
          if (v === undefined) throw new Stop();
          n = v;
        } else {
          need(4);
          n = view.getUint32(p);
          fields.push({ off: p, size: 4, kind: "count" });
          p += 4;
        }
        const of = w.of;
        if (w.string || (of.kind === "int" && of.width === 1)) {
          const size = of.kind === "int" ? n * of.width : n;
          need(size);
          if (size > 0) fields.push({ off: p, size, kind: "bytes" });
          p += size;
          return null;
        }
        for (let i = 0; i < n; i++) value(of, env);
        return null;
      }
      case "custom":
        value(w.transmit, null);
        return null;
      case "rec":
      case "ref":
        value(recs.get(w.id)!, env);
        return null;
    }
  };

  const struct = (s: WireStruct) => {
    const roles = rolesOf(s, recs);
    const env = new Map<string, number>();
    for (const m of s.members) {
      const role: FieldKind | null = roles.tags.has(m.name) ? "tag" : roles.lengths.has(m.name) ? "length" : null;
      const v = value(m.type, env, role);
      if (v !== null) env.set(m.name, v);
    }
  };

  try {
    value(root, null);
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }
  return fields;
}
