// Round trips over random values of random schemas (seeded, reproducible),
// plus: TypeBox accepts every generated and decoded value, schemas survive
// JSON.stringify, truncations are EOF, and random bytes never crash.
import { describe, expect, test } from "bun:test";
import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { Value } from "@sinclair/typebox/value";
import { Lw } from "../lib/lw.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { ByteWriter, CodecContext } from "../lib/codec/io.ts";
import { prng } from "./codec-helpers.ts";
import { ProtocolLike } from "./fixtures/codec-schemas.ts";

type Rng = () => number;
type Env = Record<string, number>;
/** A random schema and a generator of valid values for it (`env`: the dominating struct's length/tag members). */
interface Gen {
  T: TSchema;
  gen(rng: Rng, env: Env): unknown;
  /** Contains fds (decode needs the encoder's fds). */
  fds?: boolean;
}

const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

function randString(rng: Rng): string {
  const n = pick(rng, [0, 1, 3, 8, 16, 17, 40, 100]);
  let s = "";
  for (let i = 0; i < n; i++) {
    const k = rng();
    if (k < 0.8) s += String.fromCharCode(int(rng, 1, 127));
    else if (k < 0.9) s += String.fromCharCode(int(rng, 0x80, 0x7ff));
    else if (k < 0.97) s += String.fromCharCode(int(rng, 0x800, 0xd7ff));
    else s += String.fromCodePoint(int(rng, 0x10000, 0x10ffff));
  }
  return s;
}

function intGen(rng: Rng): Gen {
  const k = pick(rng, ["Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32", "Int64", "UInt64"] as const);
  const width = { Int8: 1, UInt8: 1, Int16: 2, UInt16: 2, Int32: 4, UInt32: 4, Int64: 8, UInt64: 8 }[k];
  const signed = k.startsWith("Int");
  if (width === 8) {
    const lo = signed ? -(1n << 63n) : 0n;
    const hi = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
    return {
      T: Lw[k as "Int64"](),
      gen: (r) => {
        const x = r();
        if (x < 0.1) return lo;
        if (x < 0.2) return hi;
        const v = (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32));
        return signed ? BigInt.asIntN(64, v) : v;
      },
    };
  }
  const lo = signed ? -(2 ** (width * 8 - 1)) : 0;
  const hi = signed ? 2 ** (width * 8 - 1) - 1 : 2 ** (width * 8) - 1;
  const ranged = rng() < 0.2;
  const rlo = ranged ? int(rng, lo, Math.floor((lo + hi) / 2)) : lo;
  const rhi = ranged ? int(rng, rlo, hi) : hi;
  return {
    T: (Lw as any)[k](ranged ? { range: [rlo, rhi] } : undefined),
    gen: (r) => {
      const x = r();
      return x < 0.1 ? rlo : x < 0.2 ? rhi : int(r, rlo, rhi);
    },
  };
}

function enumGen(rng: Rng): Gen {
  const width = pick(rng, [1, 2, 4] as const);
  const values: Record<string, number> = {};
  const nv = int(rng, 0, 5);
  for (let i = 0; i < nv; i++) values[`V${i}`] = int(rng, 0, 15);
  const masks: Record<string, number> = {};
  const nm = nv === 0 ? int(rng, 1, 3) : int(rng, 0, 3);
  for (let i = 0; i < nm; i++) masks[`M${i}`] = 1 << (4 + i + (width === 1 ? 0 : 4));
  const vs = Object.values(values);
  const ms = Object.values(masks);
  return {
    T: Lw.Enum(values, { width, masks }),
    gen: (r) => {
      let v = vs.length ? pick(r, vs) : 0;
      for (const m of ms) if (r() < 0.5) v |= m;
      return v;
    },
  };
}

function leaf(rng: Rng): Gen {
  const k = rng();
  if (k < 0.35) return intGen(rng);
  if (k < 0.45) return enumGen(rng);
  if (k < 0.5) return { T: Lw.Bool(), gen: (r) => r() < 0.5 };
  if (k < 0.55) return { T: Lw.Fd(), gen: (r) => (r() < 0.3 ? -1 : int(r, 1, 1000)), fds: true };
  const notNull = rng() < 0.4;
  return { T: Lw.String(notNull ? { notNull: true } : {}), gen: (r) => (!notNull && r() < 0.15 ? null : randString(r)) };
}

let nameCounter = 0;

/** JS form of an array of `el`: typed arrays for 8-bit integers. */
function arrayValue(el: TSchema, items: unknown[]): unknown {
  const w = (el as any)["x-lwmsg"];
  if (w.kind === "int" && w.width === 1) return w.signed ? Int8Array.from(items as number[]) : Uint8Array.from(items as number[]);
  return items;
}

/** A random type; `depth` bounds nesting. */
function anyGen(rng: Rng, depth: number): Gen {
  if (depth <= 0) return leaf(rng);
  const k = rng();
  if (k < 0.3) return leaf(rng);
  if (k < 0.55) return structGen(rng, depth - 1);
  if (k < 0.7) {
    // pointer to one element
    const inner = anyGen(rng, depth - 1);
    // JS null cannot tell an outer NULL from an inner one: nullable-to-nullable is ambiguous by design
    const innerNullable = (inner.T as any)["x-lwmsg"].kind === "pointer" && !(inner.T as any)["x-lwmsg"].notNull;
    const notNull = innerNullable || rng() < 0.4;
    const aliasable = rng() < 0.2;
    return { T: Lw.Pointer(inner.T, { notNull, aliasable }), gen: (r, env) => (!notNull && r() < 0.2 ? null : inner.gen(r, env)), fds: inner.fds };
  }
  if (k < 0.85) {
    // pointer to a zero-terminated or static array
    const inner = anyGen(rng, depth - 1);
    const zero = rng() < 0.6;
    const n = int(rng, 0, 4);
    const notNull = rng() < 0.3;
    const aliasable = rng() < 0.15;
    const T = Lw.Pointer(Lw.Array(inner.T, { length: zero ? "zero" : n }), { notNull, aliasable });
    return {
      T,
      gen: (r, env) => (!notNull && r() < 0.15 ? null : arrayValue(inner.T, Array.from({ length: zero ? int(r, 0, 4) : n }, () => inner.gen(r, env)))),
      fds: inner.fds,
    };
  }
  // byte buffers
  const zero = rng() < 0.5;
  const n = int(rng, 0, 40);
  return {
    T: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: zero ? "zero" : n }), { notNull: true }),
    gen: (r) => Uint8Array.from({ length: zero ? int(r, 0, 70) : n }, () => int(r, 0, 255)),
  };
}

/** A struct with plain members, counted arrays (length members) and unions (discriminator members). */
function structGen(rng: Rng, depth: number): Gen {
  const members: Record<string, TSchema> = {};
  const gens: { name: string; gen: (r: Rng, env: Env) => unknown; ctl?: (r: Rng, env: Env) => number }[] = [];
  let fds = false;
  const count = int(rng, 1, 6);
  let flexible: null | (() => void) = null;
  for (let i = 0; i < count; i++) {
    const k = rng();
    const id = nameCounter++;
    if (k < 0.5 || depth <= 0) {
      const g = anyGen(rng, depth);
      members[`f${id}`] = g.T;
      gens.push({ name: `f${id}`, gen: g.gen });
      fds ||= !!g.fds;
    } else if (k < 0.75) {
      // n + (pointer to | flexible inline) array counted by n
      const lenT = pick(rng, [Lw.UInt8(), Lw.UInt16(), Lw.UInt32(), Lw.Int32(), Lw.UInt64()]);
      const isBig = (lenT as any)["x-lwmsg"].width === 8;
      const inner: Gen = rng() < 0.3 ? { T: Lw.UInt8(), gen: (r: Rng) => int(r, 0, 255) } : anyGen(rng, depth - 1);
      fds ||= !!inner.fds;
      const n = `n${id}`;
      members[n] = lenT;
      gens.push({ name: n, gen: (_r, env) => (isBig ? BigInt(env[n]!) : env[n]), ctl: (r) => int(r, 0, 5) });
      const mk = (r: Rng, env: Env) => {
        return arrayValue(inner.T, Array.from({ length: env[n]! }, () => inner.gen(r, env)));
      };
      if (rng() < 0.3 && flexible === null) {
        flexible = () => {
          members[`a${id}`] = Lw.Array(inner.T, { length: n });
          gens.push({ name: `a${id}`, gen: mk });
        };
      } else {
        const notNull = rng() < 0.5;
        members[`a${id}`] = Lw.Pointer(Lw.Array(inner.T, { length: n }), { notNull });
        gens.push({ name: `a${id}`, gen: (r, env) => (!notNull && r() < 0.2 ? null : mk(r, env)) });
      }
    } else {
      // tag + union (inline or behind a pointer); arms may be void, or use an outer length member (info_level)
      const t = `t${id}`;
      const tagT = pick(rng, [Lw.Int8(), Lw.UInt16(), Lw.UInt32()]);
      const n = `c${id}`;
      members[n] = Lw.UInt16();
      gens.push({ name: n, gen: (_r, env) => env[n], ctl: (r) => int(r, 0, 3) });
      members[t] = tagT;
      const arms: Record<number, TSchema> = {};
      const armGens: Record<number, Gen["gen"]> = {};
      const na = int(rng, 1, 4);
      for (let a = 0; a < na; a++) {
        const tag = a * 3 + 1;
        const kk = rng();
        if (kk < 0.2) {
          arms[tag] = Lw.Void();
          armGens[tag] = () => undefined;
        } else if (kk < 0.4) {
          const el = structGen(rng, depth - 1);
          fds ||= !!el.fds;
          arms[tag] = Lw.Pointer(Lw.Array(el.T, { length: n }));
          armGens[tag] = (r, env) => Array.from({ length: env[n]! }, () => el.gen(r, env));
        } else {
          const g = anyGen(rng, depth - 1);
          fds ||= !!g.fds;
          arms[tag] = g.T;
          armGens[tag] = g.gen;
        }
      }
      const tags = Object.keys(arms).map(Number);
      gens.push({ name: t, gen: (_r, env) => env[t], ctl: (r) => pick(r, tags) });
      const U = Lw.Union(t, arms);
      const viaPtr = rng() < 0.3;
      members[`u${id}`] = viaPtr ? Lw.Pointer(U, { notNull: true }) : U;
      gens.push({ name: `u${id}`, gen: (r, env) => armGens[env[t]!]!(r, env) });
    }
  }
  (flexible as (() => void) | null)?.();
  const T = Lw.Struct(members);
  return {
    T,
    fds,
    gen: (r) => {
      const env: Env = {};
      for (const g of gens) if (g.ctl) env[g.name] = g.ctl(r, env);
      const o: Record<string, unknown> = {};
      for (const g of gens) o[g.name] = g.gen(r, env);
      return o;
    },
  };
}

/** Decode what `encode` wrote, handing the encoder's fds to the decoder. */
function roundTrip(T: TSchema, v: unknown): { bytes: Uint8Array; back: unknown } {
  const out = new CodecContext();
  const bytes = Lw.encode(T as never, v as never, out);
  const inp = new CodecContext();
  inp.fdsIn = out.fdsOut.slice();
  const back = Lw.decode(T as never, bytes, inp);
  expect(inp.fdsInPos).toBe(inp.fdsIn.length);
  return { bytes, back };
}

describe("property: random schemas", () => {
  test("round trip, TypeBox checks and JSON survival over 3000 values of 300 schemas", () => {
    const rng = prng(Number(process.env.LW_SEED ?? 0x1a2b3c));
    let values = 0;
    for (let s = 0; s < 300; s++) {
      const g = structGen(rng, 3);
      const checker = TypeCompiler.Compile(g.T);
      const json = JSON.stringify(g.T);
      const clone = JSON.parse(json);
      for (let i = 0; i < 10; i++) {
        const v = g.gen(rng, {});
        let rt: ReturnType<typeof roundTrip>;
        try {
          rt = roundTrip(g.T, v);
        } catch (e) {
          throw new Error(`round trip failed for schema ${json}: ${(e as Error).message}`, { cause: e });
        }
        const { bytes, back } = rt;
        expect(back).toEqual(v as never);
        expect(Lw.encode(g.T as never, back as never)).toEqual(bytes);
        if (!checker.Check(v)) throw new Error(`TypeCompiler rejected a valid value of ${json}: ${JSON.stringify([...checker.Errors(v)].slice(0, 2), (_k, x) => (typeof x === "bigint" ? `${x}n` : x))}`);
        expect(checker.Check(back)).toBe(true);
        expect(Value.Check(g.T, back)).toBe(true);
        // a schema that went through JSON encodes identically
        expect(Lw.encode(clone, v as never, new CodecContext())).toEqual(bytes);
        values++;
      }
    }
    expect(values).toBe(3000);
  }, 30_000);

  test("every truncation is EOF and random bytes never throw anything but LwMsgError", () => {
    const rng = prng(Number(process.env.LW_SEED ?? 77));
    const allowed = new Set<number>([Status.EOF, Status.MALFORMED, Status.OVERFLOW, Status.INVALID_HANDLE, Status.MEMORY]);
    for (let s = 0; s < 150; s++) {
      const g = structGen(rng, 2);
      const v = g.gen(rng, {});
      const ctx = new CodecContext();
      const bytes = Lw.encode(g.T as never, v as never, ctx);
      for (let n = 0; n < bytes.length; n++) {
        const rx = new CodecContext();
        rx.fdsIn = ctx.fdsOut.slice();
        try {
          Lw.decode(g.T as never, bytes.subarray(0, n), rx);
          throw new Error(`truncation to ${n} of ${bytes.length} bytes decoded`);
        } catch (e) {
          if (!(e instanceof LwMsgError) || e.status !== Status.EOF) throw e;
        }
      }
      for (let k = 0; k < 20; k++) {
        const junk = Uint8Array.from({ length: int(rng, 0, 64) }, () => (rng() < 0.3 ? pick(rng, [0, 255, 1]) : int(rng, 0, 255)));
        const rx = new CodecContext();
        rx.fdsIn = [100, 101, 102, 103];
        try {
          Lw.decode(g.T as never, junk, rx);
        } catch (e) {
          if (!(e instanceof LwMsgError) || !allowed.has(e.status)) throw e;
        }
      }
    }
  }, 30_000);

  test("aliasing: shared referents stay shared and cycles survive", () => {
    const Node = Lw.Recursive((Self) =>
      Lw.Struct({ id: Lw.UInt32(), kids: Lw.Pointer(Lw.Array(Lw.Pointer(Self, { aliasable: true, notNull: true }), { length: "zero" }), { notNull: true }) }),
    );
    const rng = prng(5);
    for (let trial = 0; trial < 50; trial++) {
      type N = { id: number; kids: N[] };
      const nodes: N[] = Array.from({ length: int(rng, 1, 8) }, (_, i) => ({ id: i, kids: [] }));
      for (const n of nodes) for (let k = int(rng, 0, 3); k > 0; k--) n.kids.push(pick(rng, nodes));
      // the root goes behind an aliasable pointer too, so kids pointing back at it share it
      const Root = Lw.Pointer(Node, { aliasable: true, notNull: true });
      const back = Lw.decode(Root, Lw.encode(Root, nodes[0]!)) as N;
      // walk both graphs in lockstep: same shape, same sharing
      const map = new Map<N, N>();
      const walk = (a: N, b: N): void => {
        const seen = map.get(a);
        if (seen) {
          expect(seen).toBe(b);
          return;
        }
        map.set(a, b);
        expect(b.id).toBe(a.id);
        expect(b.kids.length).toBe(a.kids.length);
        a.kids.forEach((k, i) => walk(k, b.kids[i]!));
      };
      walk(nodes[0]!, back);
    }
  });

  test("encoding into a reused writer appends at w.pos and grows as needed", () => {
    const T = Lw.Struct({ s: Lw.String({ notNull: true }), b: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }) });
    const c = Lw.compile(T);
    const w = new ByteWriter(8);
    const ctx = new CodecContext();
    const v = { s: "héllo wörld ".repeat(30), b: new Uint8Array(5000).fill(7) };
    w.pos = 15;
    c.encode(v, w, ctx);
    const end = w.pos;
    expect(Lw.decode(T, w.buf.subarray(15, end))).toEqual(v);
    c.encode(v, w, ctx);
    expect(w.pos).toBe(15 + 2 * (end - 15));
  });
});

describe("TypeBox integration", () => {
  test("Static<> and checks agree with the codec on a protocol-like type", () => {
    const T = ProtocolLike;
    const v = { a: 1, b: 2n, c: null, d: new Uint8Array([1]), e: null, f: -1, g: true, h: [1, 2] };
    expect(TypeCompiler.Compile(T).Check(v)).toBe(true);
    expect(Value.Check(T, v)).toBe(true);
    expect(Value.Check(T, { ...v, a: 300 })).toBe(false);
    expect(Value.Check(T, { ...v, h: [1] })).toBe(false);
    const json = JSON.stringify(T);
    expect(json).toContain('"x-lwmsg"');
    expect(JSON.parse(json)["x-lwmsg"].kind).toBe("struct");
  });
  test("64-bit ranges are stored as strings, so JSON.stringify works", () => {
    const T = Lw.Struct({ x: Lw.UInt64({ range: [1n, 1n << 60n] }) });
    const parsed = JSON.parse(JSON.stringify(T));
    expect(parsed["x-lwmsg"].members[0].type.range).toEqual(["1", String(1n << 60n)]);
    expect(Lw.decode(parsed, Lw.encode(T, { x: 5n }))).toEqual({ x: 5n });
  });
  test("a recursive schema compiles again from its JSON form", () => {
    const Ring = Lw.Pointer(Lw.Recursive((S) => Lw.Struct({ n: Lw.Int32(), next: Lw.Pointer(S, { aliasable: true, notNull: true }) })), { aliasable: true });
    type R = { n: number; next: R };
    const r = { n: 1 } as R;
    r.next = r;
    const a = Lw.encode(Ring, r);
    expect(Lw.encode(JSON.parse(JSON.stringify(Ring)), r)).toEqual(a);
  });
  test("compiled codecs are cached per schema", () => {
    const T = Lw.Struct({ a: Lw.UInt8() });
    expect(Lw.compile(T)).toBe(Lw.compile(T));
  });
});
