/**
 * JSON for `--json` output and `call` input, lossless for what JSON lacks:
 * - 64-bit integers (bigint) → `{"$bigint": "123"}`
 * - byte arrays (`Uint8Array`) → `{"$bytes": "<base64>"}`, `Int8Array` → `{"$int8": "<base64>"}`
 * - handles → `{"$handle": {"type": "FileHandle", "location": "local", "id": 3}}`
 * - `undefined` (void members, void union arms) is left out.
 * Input also takes plain numbers or decimal strings for 64-bit fields,
 * arrays of numbers for byte arrays, text (its UTF-8 bytes) or numbers for
 * exact-bytes strings, and enum names (`"READ | WRITE"`), guided by the
 * message's type. Exact-bytes strings are output as `$bytes` like any
 * `Uint8Array`.
 * @module
 */
import { Handle, Lw, LwMsgError, Status } from "../../lib/index.ts";
import type { WireType } from "../../lib/lw.ts";

/** A JSON-safe copy of a decoded value. */
export function toJson(v: unknown): unknown {
  if (typeof v === "bigint") return { $bigint: v.toString() };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString("base64") };
  if (v instanceof Int8Array) return { $int8: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") };
  if (v instanceof Handle) return { $handle: { type: v.typeName, location: v.location === 1 ? "local" : "remote", id: v.id } };
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toJson(x);
    return out;
  }
  return v;
}

/** `JSON.parse` that turns the `$` markers back into bigints, byte arrays and handles. */
export function parseJson(text: string): unknown {
  return JSON.parse(text, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1) {
        if (typeof v.$bigint === "string") return BigInt(v.$bigint);
        if (typeof v.$bytes === "string") return new Uint8Array(Buffer.from(v.$bytes, "base64"));
        if (typeof v.$int8 === "string") return new Int8Array(Buffer.from(v.$int8, "base64"));
        if (v.$handle && typeof v.$handle === "object") return new Handle(String(v.$handle.type), v.$handle.location === "remote" ? 2 : 1, Number(v.$handle.id));
      }
    }
    return v;
  });
}

/**
 * An exact-bytes string (`Lw.String({ bytes: true })`) from JSON: `$bytes`
 * (already a `Uint8Array`) as is, a number array as its bytes, and text as
 * its UTF-8 bytes — unless it has a lone surrogate, which has no UTF-8 form
 * (it would become U+FFFD: a different name), so that is refused.
 */
function bytesOf(v: unknown): unknown {
  if (Array.isArray(v)) {
    const bad = v.find((x) => !Number.isInteger(x) || x < 0 || x > 255);
    if (bad !== undefined) throw new LwMsgError(Status.MALFORMED, `${JSON.stringify(bad)} in the numbers for a bytes string is not a byte (0-255)`);
    return Uint8Array.from(v as number[]);
  }
  if (typeof v !== "string") return v;
  if (!v.isWellFormed()) throw new LwMsgError(Status.MALFORMED, `the text ${JSON.stringify(v)} for a bytes string has a lone surrogate (no UTF-8 form); give {"$bytes": "<base64>"}`);
  return new TextEncoder().encode(v);
}

/**
 * Coerce parsed JSON toward `type`: numbers/strings for 64-bit integers,
 * number arrays for byte arrays, text or numbers for exact-bytes strings, and `"$fd"` (or a missing value) for an fd
 * field becomes `fd`.
 */
export function coerce(type: object, value: unknown, fd: number): unknown {
  const recs = new Map<string, WireType>();
  const walk = (w: WireType, v: unknown, dom: Record<string, unknown> | null, depth: number): unknown => {
    if (depth > 256) return v;
    switch (w.kind) {
      case "int":
        if (w.width === 8 && (typeof v === "number" || typeof v === "string")) return BigInt(v);
        return v;
      case "enum":
        // names as Lw.print shows them: "READ", "READ | WRITE"
        if (typeof v === "string" && /^[A-Za-z_]/.test(v)) {
          let n = 0;
          for (const part of v.split("|").map((x) => x.trim())) {
            const bit = w.values[part] ?? w.masks[part];
            if (bit === undefined) return v; // the encoder names the problem
            n |= bit;
          }
          return n;
        }
        return v;
      case "fd":
        return v === undefined || v === "$fd" ? fd : v;
      case "struct": {
        if (!v || typeof v !== "object") return v;
        const o = { ...(v as Record<string, unknown>) };
        for (const m of w.members) o[m.name] = walk(m.type, o[m.name], o, depth + 1);
        for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
        return o;
      }
      case "union": {
        const tag = dom?.[w.discrim];
        const arm = w.arms.find((a) => a.tag === Number(tag));
        return arm ? walk(arm.type, v, dom, depth + 1) : v;
      }
      case "pointer":
        return v === null ? v : walk(w.to, v, dom, depth + 1);
      case "array": {
        if (w.string) return w.bytes ? bytesOf(v) : v;
        if (w.of.kind === "int" && w.of.width === 1 && Array.isArray(v)) return w.of.signed ? Int8Array.from(v as number[]) : Uint8Array.from(v as number[]);
        if (Array.isArray(v)) return v.map((x) => walk(w.of, x, dom, depth + 1));
        return v;
      }
      case "custom":
        return w.marshal || w.unmarshal ? v : walk(w.transmit, v, null, depth + 1);
      case "rec":
        recs.set(w.id, w.type);
        return walk(w.type, v, dom, depth + 1);
      case "ref": {
        const body = recs.get(w.id);
        return body ? walk(body, v, dom, depth + 1) : v;
      }
      default:
        return v;
    }
  };
  return walk(Lw.wireOf(type), value, null, 0);
}
