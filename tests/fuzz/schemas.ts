/**
 * Every schema the test suites use, by name, for the fuzzer: the message
 * payloads of the protocols in tests/fixtures and examples/fserv, the schemas
 * the codec suites define (inline ones copied here; shared ones from
 * tests/fixtures/codec-schemas.ts), and a few adversarial shapes that only the fuzzer uses
 * (zero-size elements, deep recursion, wide unions).
 *
 * `extra`: statuses a decode of this schema may fail with beyond the codec's
 * own set, because a callback of the schema returns them (see decoder.ts).
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../../lib/lw.ts";
import { Status } from "../../lib/status.ts";
import type { Protocol } from "../../lib/protocol.ts";
import { testProtocol } from "../fixtures/protocol.ts";
import { asyncProtocol, counterProtocol, multicallProtocol } from "../fixtures/peer-protocol.ts";
import { fservProtocol } from "../../examples/fserv/protocol.ts";
import { EveryKind, ProtocolLike, Stamp } from "../fixtures/codec-schemas.ts";
import { parseRandomName, randomSchema } from "./randschema.ts";

export interface SchemaEntry {
  name: string;
  /** Where the schema comes from. */
  source: string;
  T: TSchema;
  /** Extra statuses decode may give for this schema (its callbacks return them). */
  extra?: number[];
  /** Known-good values, for schemas whose verify callbacks random values rarely pass. */
  samples?: unknown[];
}

const entries: SchemaEntry[] = [];
const add = (source: string, name: string, T: TSchema, extra?: number[], samples?: unknown[]) => {
  if (entries.some((e) => e.name === name)) throw new Error(`duplicate fuzz schema name ${name}`);
  entries.push({ name, source, T, ...(extra ? { extra } : {}), ...(samples ? { samples } : {}) });
};

// ---------------------------------------------------------------------------
// protocols (payload types of every message that has one)

/** The protocols of the test fixtures and the example, by name (the live fuzzer runs them). */
export const protocols: Record<string, Protocol<any>> = {
  test: testProtocol,
  multicall: multicallProtocol,
  counter: counterProtocol,
  async: asyncProtocol,
  fserv: fservProtocol,
};

for (const [pname, p] of Object.entries(protocols)) {
  for (const e of p.entries()) if (e.type) add(`fixtures:${pname}`, `${pname}.${e.name}`, e.type);
}

// ---------------------------------------------------------------------------
// tests/codec.vectors.test.ts

{
  const S = "codec.vectors";
  add(S, "vectors.Basic", Lw.Struct({
    foo: Lw.Int16({ verify: (v) => v === -42 }),
    len: Lw.UInt64({ range: [1n, (1n << 63n) - 1n] }),
    ptr: Lw.Pointer(Lw.Array(Lw.Int64(), { length: "len" }), { notNull: true }),
  }), undefined, [{ foo: -42, len: 2n, ptr: [1234n, 4321n] }, { foo: -42, len: 1n, ptr: [-1n] }]);
  add(S, "vectors.B32", Lw.Struct({
    foo: Lw.Int16({ verify: (v) => v === -42 }),
    len: Lw.UInt32({ range: [1, 8] }),
    ptr: Lw.Pointer(Lw.Int64(), { notNull: true, length: "len" }),
  }), undefined, [{ foo: -42, len: 2, ptr: [1234n, 4321n] }, { foo: -42, len: 8, ptr: [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n] }]);
  add(S, "vectors.NotNullMemberLen", Lw.Struct({ len: Lw.UInt32(), ptr: Lw.Pointer(Lw.Int64(), { notNull: true, length: "len" }) }));
  add(S, "vectors.Alias", Lw.Struct({
    ptr1: Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 }), { notNull: true, aliasable: true }),
    ptr2: Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 }), { aliasable: true }),
  }));
  add(S, "vectors.LongPair", Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 })));
  const Ring = Lw.Recursive((Self) => Lw.Struct({ number: Lw.Int32(), next: Lw.Pointer(Self, { notNull: true, aliasable: true }) }, { name: "ring_struct" }));
  add(S, "vectors.RingPtr", Lw.Pointer(Ring, { aliasable: true }));
  add(S, "vectors.AliasTwoTypes", Lw.Struct({ a: Lw.Pointer(Lw.Int32(), { aliasable: true }), b: Lw.Pointer(Lw.Int16(), { aliasable: true }) }));
  add(S, "vectors.Strings", Lw.Struct({ foo: Lw.String({ maxAlloc: 256 }), bar: Lw.String({ sensitive: true }) }));
  add(S, "vectors.String", Lw.String());
  add(S, "vectors.StringNotNull", Lw.String({ notNull: true }));
  add(S, "vectors.StructArray", Lw.Struct({ len: Lw.UInt32(), foo: Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.Int8(), b: Lw.Int8() }), { length: "len" })) }));
  add(S, "vectors.StringArray", Lw.Struct({ strings: Lw.Pointer(Lw.Array(Lw.String(), { length: "zero" })) }));
  add(S, "vectors.StringArrayNN", Lw.Struct({ strings: Lw.Pointer(Lw.Array(Lw.String({ notNull: true }), { length: "zero" })) }));
  add(S, "vectors.InlineArray", Lw.Struct({ foo: Lw.Int16(), array: Lw.Array(Lw.Int16(), { length: 2 }), bar: Lw.Int16() }));
  add(S, "vectors.FlexibleString", Lw.Struct({ foo: Lw.Int16(), string: Lw.Array(Lw.UInt8(), { length: "zero", string: true }) }));
  add(S, "vectors.FlexibleArray", Lw.Struct({ len: Lw.Int16(), array: Lw.Array(Lw.Int16(), { length: "len" }) }));
  add(S, "vectors.ByteArrays", Lw.Struct({ n: Lw.UInt16(), s: Lw.Array(Lw.Int8(), { length: 2 }), data: Lw.Array(Lw.UInt8(), { length: "n" }) }));
  add(S, "vectors.StaticText", Lw.Struct({ name: Lw.Array(Lw.UInt8(), { length: 6, string: true }) }));
  const NumberString = (discrim: string) => Lw.Union(discrim, { 1: Lw.Int32(), 2: Lw.String(), 3: Lw.Void() }, { names: { 1: "number", 2: "string", 3: "empty" } });
  add(S, "vectors.TwoUnion", Lw.Struct({ tag1: Lw.Int8(), u1: Lw.Pointer(NumberString("tag1")), tag2: Lw.Int8(), u2: Lw.Pointer(NumberString("tag2")) }));
  add(S, "vectors.NestedStruct", Lw.Struct({ foo: Lw.Int32(), inner: Lw.Struct({ foo: Lw.Int32(), bar: Lw.String() }), bar: Lw.Int32() }));
  add(S, "vectors.NestedUnion", Lw.Struct({ tag1: Lw.Int8(), u1: NumberString("tag1"), tag2: Lw.Int8(), u2: NumberString("tag2") }));
  const Level1 = Lw.Struct({ number1: Lw.Int16() }, { name: "level_1_struct" });
  const Level2 = Lw.Struct({ number1: Lw.Int16(), number2: Lw.Int16() }, { name: "level_2_struct" });
  add(S, "vectors.InfoLevel", Lw.Struct({
    length: Lw.UInt32(),
    level: Lw.Int8(),
    array: Lw.Union("level", { 1: Lw.Pointer(Lw.Array(Level1, { length: "length" })), 2: Lw.Pointer(Lw.Array(Level2, { length: "length" })) }, { names: { 1: "level_1", 2: "level_2" }, name: "level_union" }),
  }, { name: "info_level_struct" }));
  add(S, "vectors.MixedEnum", Lw.Enum({ MIXED_VALUE_1: 1, MIXED_VALUE_2: 2 }, { width: 2, masks: { MIXED_MASK_1: 0x1000, MIXED_MASK_2: 0x2000 } }));
  add(S, "vectors.MaskEnum", Lw.Enum({}, { width: 2, masks: { MASK_MASK_1: 0x1000, MASK_MASK_2: 0x2000 } }));
  add(S, "vectors.RangeEnum", Lw.Enum({ A: 1, B: 2, C: 3 }, { width: 1, range: [1, 2] }));
  for (const k of ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"] as const) add(S, `vectors.${k}`, (Lw[k] as () => TSchema)());
  add(S, "vectors.NotNullPointer", Lw.Pointer(Lw.Int16(), { notNull: true }));
  add(S, "vectors.Bools", Lw.Struct({ a: Lw.Bool(), b: Lw.Bool() }));
  add(S, "vectors.ThreeFds", Lw.Struct({ a: Lw.Fd(), b: Lw.Fd(), c: Lw.Fd() }));
  add(S, "vectors.HandleTop", Lw.Handle("File"));
  add(S, "vectors.HandleAndByte", Lw.Struct({ h: Lw.Handle("File", { localForSender: true }), x: Lw.UInt8() }));
}

// ---------------------------------------------------------------------------
// tests/codec.errors.test.ts

{
  const S = "codec.errors";
  const Mode = Lw.Enum({ READ: 1, WRITE: 2 }, { width: 1 });
  const Item = Lw.Struct({ id: Lw.UInt32(), mode: Mode, name: Lw.String() });
  add(S, "errors.Item", Item);
  add(S, "errors.List", Lw.Struct({ count: Lw.UInt16(), items: Lw.Pointer(Lw.Array(Item, { length: "count" }), { notNull: true }) }));
  add(S, "errors.Ranges", Lw.Struct({ a: Lw.Int32({ range: [-10, 10] }), b: Lw.Int64({ range: [-5n, "5"] }) }));
  // verify returning a status: that status is thrown as is (INVALID_PARAMETER here)
  add(S, "errors.VerifyStatus", Lw.Struct({ x: Lw.UInt8({ verify: (v) => (v === 1 ? true : v === 2 ? Status.INVALID_PARAMETER : false) }) }), [Status.INVALID_PARAMETER], [{ x: 1 }]);
  add(S, "errors.VerifyThrows", Lw.Struct({ x: Lw.UInt8({ verify: () => { throw new Error("boom"); } }) }));
  add(S, "errors.StructVerify", Lw.Struct({ lo: Lw.UInt8(), hi: Lw.UInt8() }, { verify: (v) => v.lo <= v.hi }));
  add(S, "errors.Stamp", Lw.Struct({ at: Stamp }));
  add(S, "errors.AliasThreeTypes", Lw.Struct({
    a: Lw.Pointer(Lw.Array(Lw.Int16(), { length: 1 }), { aliasable: true }),
    b: Lw.Pointer(Lw.Array(Lw.Int32(), { length: 1 }), { aliasable: true }),
    c: Lw.Pointer(Lw.Array(Lw.Int16(), { length: 1 }), { aliasable: true }),
  }));
  add(S, "errors.HandleFile", Lw.Struct({ h: Lw.Handle("File") }));
  add(S, "errors.HandleNotNull", Lw.Handle("File", { notNull: true }));
  add(S, "errors.ByteAndHandle", Lw.Struct({ x: Lw.UInt8(), h: Lw.Handle("File") }));
  add(S, "errors.Node", Lw.Recursive((Self) => Lw.Struct({ v: Lw.UInt8(), next: Lw.Pointer(Self) })));
  add(S, "errors.FdAndByte", Lw.Struct({ fd: Lw.Fd(), n: Lw.UInt8() }));
  add(S, "errors.ZeroStructArray", Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.UInt32() }), { length: "zero" }), { notNull: true }));
  add(S, "errors.ZeroBytes", Lw.Array(Lw.UInt8(), { length: "zero" }));
  const Big = Lw.Struct({ a: Lw.UInt32(), b: Lw.UInt32(), c: Lw.UInt64() });
  add(S, "errors.BigMax8", Lw.Pointer(Big, { maxAlloc: 8 }));
  add(S, "errors.BigMax16", Lw.Pointer(Big, { maxAlloc: 16 }));
  add(S, "errors.ArrMaxAlloc", Lw.Struct({ n: Lw.UInt32(), a: Lw.Pointer(Lw.Array(Lw.UInt32(), { length: "n" }), { maxAlloc: 8 }) }));
  add(S, "errors.NegativeLength", Lw.Struct({ n: Lw.Int16(), a: Lw.Array(Lw.UInt8(), { length: "n" }) }));
  add(S, "errors.Memo", Lw.Struct({ s: Lw.String({ notNull: true }) }));
  add(S, "errors.Chunked", Lw.Struct({ pad: Lw.Array(Lw.UInt8(), { length: 3 }), n: Lw.UInt32(), data: Lw.Array(Lw.UInt8(), { length: "n" }) }));
}

// ---------------------------------------------------------------------------
// tests/codec.protocol.test.ts and tests/codec.property.test.ts (fixed schemas)

{
  const S = "codec.protocol";
  add(S, "protocol.OpenReq", Lw.Struct({ flags: Lw.UInt32(), path: Lw.String({ notNull: true }) }));
  add(S, "protocol.OpenRes", Lw.Struct({ handle: Lw.Handle("File") }));
  add(S, "protocol.ReadRes", Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) }));
  add(S, "protocol.Everything", EveryKind);
  const Inner = Lw.Struct({ x: Lw.UInt16() });
  add(S, "protocol.Wrapped", Lw.Struct({
    a: Lw.UInt8(),
    w: Lw.Custom({
      transmit: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }),
      marshal: (v: { x: number }) => Lw.encode(Inner, v),
      unmarshal: (b) => Lw.decode(Inner, b),
    }),
  }));
  add(S, "protocol.PrintAll", Lw.Struct({
    name: Lw.String(),
    none: Lw.String(),
    mode: Lw.Enum({ READ: 1, WRITE: 2 }, { width: 1, masks: { SYNC: 0x10 } }),
    h: Lw.Handle("File"),
    n: Lw.Handle("File"),
    fd: Lw.Fd(),
    big: Lw.UInt64(),
    ok: Lw.Bool(),
    tag: Lw.UInt8(),
    u: Lw.Union("tag", { 1: Lw.UInt32(), 2: Lw.Void() }, { names: { 1: "number", 2: "empty" } }),
  }));
  add(S, "protocol.HexAscii", Lw.Struct({ data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero", encoding: "hex+ascii" })) }));
  add(S, "protocol.StampU32", Lw.Struct({
    xs: Lw.Array(Lw.Int16(), { length: 2 }),
    at: Lw.Custom({ transmit: Lw.UInt32(), marshal: (d: Date) => Math.floor(d.getTime() / 1000), unmarshal: (t) => new Date(t * 1000) }),
  }));
  add(S, "protocol.EnumAndAliasArray", Lw.Struct({
    e: Lw.Enum({ A: 1, B: 2 }, { width: 2, masks: { M: 0x100 }, name: "my_enum" }),
    a: Lw.Pointer(Lw.Array(Lw.UInt32(), { length: 4 }), { aliasable: true, sensitive: true }),
  }, { name: "t" }));

  const P = "codec.property";
  add(P, "property.Tree", Lw.Recursive((Self) =>
    Lw.Struct({ id: Lw.UInt32(), kids: Lw.Pointer(Lw.Array(Lw.Pointer(Self, { aliasable: true, notNull: true }), { length: "zero" }), { notNull: true }) }),
  ));
  add(P, "property.Typebox", ProtocolLike);
  add(P, "property.Range64", Lw.Struct({ x: Lw.UInt64({ range: [1n, 1n << 60n] }) }));
  add(P, "property.Reuse", Lw.Struct({ s: Lw.String({ notNull: true }), b: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }) }));
}

// ---------------------------------------------------------------------------
// adversarial shapes, only here

{
  const S = "fuzz";
  // elements that take no bytes on the wire: counts cannot be bounded by the input
  add(S, "fuzz.VoidArray", Lw.Pointer(Lw.Array(Lw.Void(), { length: "zero" }), { notNull: true }));
  add(S, "fuzz.NestedVoidArrays", Lw.Pointer(Lw.Array(Lw.Pointer(Lw.Array(Lw.Void(), { length: "zero" }), { notNull: true }), { length: "zero" }), { notNull: true }));
  add(S, "fuzz.EmptyStructs", Lw.Struct({ n: Lw.UInt32(), a: Lw.Pointer(Lw.Array(Lw.Struct({ v: Lw.Void(), e: Lw.Array(Lw.UInt8(), { length: 0 }) }), { length: "n" }), { notNull: true }) }));
  add(S, "fuzz.VoidArmArray", Lw.Struct({
    tag: Lw.UInt8(),
    n: Lw.UInt64(),
    a: Lw.Pointer(Lw.Array(Lw.Union("tag", { 0: Lw.Void(), 1: Lw.Int32(), 2: Lw.String() }), { length: "n" })),
  }));
  // recursion: deep lists and trees with counted children
  add(S, "fuzz.List16", Lw.Recursive((Self) => Lw.Struct({ v: Lw.UInt16(), next: Lw.Pointer(Self) })));
  add(S, "fuzz.CountedTree", Lw.Recursive((Self) => Lw.Struct({ n: Lw.UInt8(), kids: Lw.Pointer(Lw.Array(Self, { length: "n" }), { notNull: true }) })));
  // every level one u32 count: a wide count at each of many nested levels
  add(S, "fuzz.WideTree", Lw.Recursive((Self) => Lw.Struct({ kids: Lw.Pointer(Lw.Array(Self, { length: "zero" }), { notNull: true }) })));
  add(S, "fuzz.AliasList", Lw.Pointer(Lw.Recursive((Self) => Lw.Struct({ s: Lw.String(), next: Lw.Pointer(Self, { aliasable: true }) })), { aliasable: true }));
  // every integer kind as a length member, and a wide bool/enum-discriminated union
  add(S, "fuzz.LengthKinds", Lw.Struct({
    a: Lw.UInt8(), pa: Lw.Pointer(Lw.Array(Lw.UInt16(), { length: "a" })),
    b: Lw.Int32(), pb: Lw.Pointer(Lw.Array(Lw.String(), { length: "b" }), { notNull: true }),
    c: Lw.UInt64(), pc: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "c" })),
    d: Lw.Int64(), pd: Lw.Pointer(Lw.Array(Lw.Int64(), { length: "d" })),
    e: Lw.Bool(), pe: Lw.Pointer(Lw.Array(Lw.UInt32(), { length: "e" }), { maxAlloc: 4 }),
  }));
  const Kind = Lw.Enum({ A: 1, B: 2, C: 7 }, { width: 4, masks: { F: 0x80000000 } });
  add(S, "fuzz.EnumUnion", Lw.Struct({
    k: Kind,
    flag: Lw.Bool(),
    u: Lw.Union("k", { 1: Lw.Int64(), 2: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: 5 }), { notNull: true }), 7: Lw.Struct({ fd: Lw.Fd(), h: Lw.Handle("Obj") }) }),
    v: Lw.Union("flag", { 0: Lw.Void(), 1: Lw.String({ notNull: true }) }),
  }));
  add(S, "fuzz.BigStatic", Lw.Struct({ xs: Lw.Array(Lw.UInt32(), { length: 300 }), s: Lw.Array(Lw.UInt8(), { length: 64, string: true }) }));
  add(S, "fuzz.SignedWide", Lw.Struct({ e: Lw.Enum({ NEG: -5, POS: 5 }, { width: 4, signed: true }), r: Lw.Int8({ range: [-3, 3] }), q: Lw.UInt16({ range: [100, 200] }) }));
  // (new schemas go last: the live fuzzer's protocol numbers them in order, and the corpus pins those tags)
  // issue 15: the other string forms (exact bytes, latin1, ascii, 16-bit code units)
  add(S, "strings.Forms", Lw.Struct({ raw: Lw.String({ bytes: true }), l1: Lw.String({ encoding: "latin1" }), a: Lw.String({ encoding: "ascii", notNull: true }), w: Lw.String({ encoding: "ucs-2" }) }));
}

/** All schemas, in a fixed order. */
export const schemas: readonly SchemaEntry[] = entries;

const byName = new Map(entries.map((e) => [e.name, e]));

/** A schema by name: one of {@link schemas}, or a random one (`random.<seed>.<k>`, see randschema.ts). */
export function schemaByName(name: string): SchemaEntry {
  let e = byName.get(name);
  if (!e) {
    const r = parseRandomName(name);
    if (!r) throw new Error(`no fuzz schema named ${name}`);
    e = { name, source: "random", T: randomSchema(r.seed, r.k) };
    byName.set(name, e);
  }
  return e;
}
