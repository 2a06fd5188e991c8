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
 *   anything is allocated; a bogus u32 count cannot allocate gigabytes. Arrays
 *   of variable-size elements preallocate at most 64 slots and grow as their
 *   elements decode: nested levels would otherwise each claim the same bytes
 *   left again (a 300 KB tree of wide arrays allocated 2 GB before failing).
 * - Error messages (with the field path, e.g. `value.items[3].mode`) are
 *   built only when throwing; the path is assembled from constants and the
 *   loop indices that are in scope at the throw site.
 * - Only recursive types (`Lw.Recursive`) become separate functions; every
 *   other nested type is inlined.
 *
 * Every decode charges what it builds against one decoded-size budget
 * (`ctx.maxDecodedBytes`, default 1 MiB + 64 per input byte; runtime.ts
 * `COST` has the price of an object, a slot, a string, ...), before it
 * allocates it: an array's count is charged before the array exists (arrays
 * of variable-size elements, which grow as they decode, charge each element
 * as it is appended, so nested levels cannot claim the same input twice).
 * Beyond the budget is MEMORY, where lwmsg would try the allocation. It also
 * bounds elements that take no bytes on the wire (`Lw.Void()`, empty
 * structs), which the input left cannot. `ctx.decodedBytes` reports what a
 * decode charged.
 *
 * Recursive types (`Lw.Recursive`) nest at most `MAX_DEPTH` (4096) levels on
 * encode and decode: deeper is OVERFLOW, never a RangeError from the stack.
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
import * as TEXT from "./text.ts";
import { wireOf, type WireType } from "../types.ts";
import { analyze } from "./analyze.ts";
import { EncGen } from "./encode-gen.ts";
import { DecGen } from "./decode-gen.ts";
import type { Gen, Scope } from "./gen.ts";

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

/** What generated code calls as `$`: the runtime helpers and the text codecs. */
const HELPERS = Object.freeze({ ...RT, ...TEXT });

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

/** The generated module: recursive helper functions, then the entry point, all sharing `K` (constants) and `$` (runtime.ts); `D` is the recursion depth, `Z` what is left of the decoded-size budget `ZL` of the decode in progress. */
function assemble(fns: string[], entry: string[]): string {
  return [`"use strict";`, `let D = 0, Z = 0, ZL = 0;`, ...fns, ...entry.filter((l) => l !== "")].join("\n");
}

/**
 * The entry body for `wire`, then one function per recursive type it
 * reached (the queue grows while bodies are generated): `rec` generates the
 * body of a recursive type into `x`, `fn` wraps it as a function.
 */
function generate(g: Gen, wire: WireType, rec: (w: WireType, sc: Scope) => void, fn: (name: string, body: string) => string): { entry: string[]; fns: string[] } {
  g.site(wire, { dom: null, path: ["value"] });
  g.value(wire, "value", { dom: null, path: ["value"] }, false);
  g.flush();
  const entry = g.lines;
  const fns: string[] = [];
  for (let qi = 0; qi < g.fnQueue.length; qi++) {
    const id = g.fnQueue[qi]!;
    g.lines = [];
    g.off = 0;
    rec(g.a.recs.get(id)!, { dom: { kind: "param" }, path: [""] });
    g.flush();
    fns.push(fn(g.fnNames.get(id)!, g.lines.join("\n")));
  }
  return { entry, fns };
}

function build(wire: WireType): CompiledCodec {
  const a = analyze(wire);

  const kEnc: unknown[] = [];
  const eg = new EncGen(a, "enc", kEnc);
  const { entry: encBody, fns: encFns } = generate(
    eg,
    wire,
    (w, sc) => eg.value(w, "x", sc, false),
    (name, body) => `function ${name}(x, w, ctx, st, dom) {\nif (++D > ${RT.MAX_DEPTH}) throw $.tooDeep();\nlet buf = w.buf, view = w.view, p = w.pos;\n${body}\nw.pos = p;\nD--;\n}`,
  );
  // external calls (handles, callbacks, recursion) move w.pos and ctx.fdsOut; undo that on failure
  const guard = a.hasFds || a.hasHandles || a.hasRefs || a.hasCustom;
  const encSrc = assemble(encFns, [
    `return function encode(value, w, ctx) {`,
    `let buf = w.buf, view = w.view, p = w.pos;`,
    a.hasAlias ? `const st = { m: [], n: 1 };` : a.hasRefs ? `const st = null;` : ``,
    a.hasRefs ? `D = 0;` : ``,
    guard ? `const p0 = p${a.hasFds ? ", f0 = ctx.fdsOut.length" : ""}; try {` : ``,
    ...encBody,
    `w.pos = p;`,
    guard ? `} catch (e) { w.pos = p0;${a.hasFds ? " ctx.fdsOut.length = f0;" : ""} throw ${a.hasRefs ? "$.stackErr(e)" : "e"}; }` : ``,
    `};`,
  ]);

  const kDec: unknown[] = [];
  const dg = new DecGen(a, "dec", kDec);
  const { entry: decBody, fns: decFns } = generate(
    dg,
    wire,
    // a recursive referent registers itself under the caller's object id (rid) as soon as it exists
    (w, sc) => {
      dg.site(w, sc);
      dg.value(w, "x", sc, false, { id: "rid", tk: "rtk" });
    },
    (name, body) => `function ${name}(r, ctx, st, dom, rid, rtk) {\nif (++D > ${RT.MAX_DEPTH}) throw $.tooDeep();\nconst buf = r.buf, view = r.view, end = r.end; let p = r.pos;\nlet x;\n${body}\nr.pos = p;\nD--;\nreturn x;\n}`,
  );
  // user callbacks may run this same codec again from inside a decode: keep the outer decode's D, Z and ZL
  const nest = a.hasCallbacks;
  const decSrc = assemble(decFns, [
    `return function decode(r, ctx) {`,
    `const buf = r.buf, view = r.view, end = r.end; let p = r.pos;`,
    a.hasAlias ? `const st = { m: new Map() };` : a.hasRefs ? `const st = null;` : ``,
    nest ? `const D0 = D, Z0 = Z, ZL0 = ZL; try {` : ``,
    a.hasRefs ? `D = 0;` : ``,
    `const lim = ctx.maxDecodedBytes; ZL = lim >= 0 ? lim : ${RT.DECODE_BUDGET_FLOOR} + ${RT.DECODE_BUDGET_PER_BYTE} * (end - p); Z = ZL;`,
    `let value;`,
    a.hasRefs ? `try {` : ``,
    ...decBody,
    a.hasRefs ? `} catch (e) { throw $.stackErr(e); }` : ``,
    `r.pos = p;`,
    `ctx.decodedBytes = ZL - Z;`,
    `return value;`,
    nest ? `} finally { D = D0; Z = Z0; ZL = ZL0; }` : ``,
    `};`,
  ]);

  let encode: Encoder;
  let decode: Decoder;
  try {
    encode = new Function("K", "$", encSrc)(kEnc, HELPERS) as Encoder;
    decode = new Function("K", "$", decSrc)(kDec, HELPERS) as Decoder;
  } catch (e) {
    throw new LwMsgError(Status.INTERNAL, `codec generation failed: ${(e as Error).message}`, { cause: e });
  }
  return { encode, decode, hasFds: a.hasFds, hasHandles: a.hasHandles, wire, source: { encode: encSrc, decode: decSrc } };
}
