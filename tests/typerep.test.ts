// Type and protocol reps (lib/typerep): bytes derived from lwmsg's type-rep.c
// and protocol.c, round trips of every schema the suites use, the
// assignable check, and bad rep bytes (truncated, mutated, cyclic, deep).
import { describe, expect, test } from "bun:test";
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../lib/lw.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import {
  checkAssignable,
  checkProtocolRep,
  decodeProtocolRep,
  decodeTypeRep,
  encodeProtocolRep,
  encodeTypeRep,
  protocolFromRep,
  protocolToRep,
  typeFromRep,
  typeToRep,
  updateProtocol,
  type TypeRep,
} from "../lib/typerep/index.ts";
import { schemas } from "./fuzz/schemas.ts";
import { Rng } from "./fuzz/rng.ts";
import { validEncoding } from "./fuzz/gen.ts";
import { randomSchema } from "./fuzz/randschema.ts";
import { fservProtocol } from "../examples/fserv/protocol.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s.replace(/[\s|]/g, ""), "hex"));
const repBytes = (T: TSchema) => encodeTypeRep(typeToRep(T));
const statusOf = (f: () => unknown): number | string => {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof LwMsgError) return e.status;
    throw e;
  }
};

// An integer rep, field by field (type_rep_spec → integer_rep_spec → integer_def_rep_spec):
// rep id, kind INTEGER, flags, definition id, width, sign (0 signed, 1 unsigned), lower u64, upper u64.
const INT32 = "00000001 | 02 | 00000000 | 00000002 | 04 | 00 | 0000000000000000 | 0000000000000000";

describe("type rep bytes (lwmsg type-rep.c layout)", () => {
  test("int32", () => {
    expect(hex(repBytes(Lw.Int32()))).toBe(hex(unhex(INT32)));
  });

  test("uint8 with a range: RANGE flag and the bounds as u64", () => {
    expect(hex(repBytes(Lw.UInt8({ range: [1, 8] })))).toBe(hex(unhex("00000001 02 00000008 00000002 01 01 0000000000000001 0000000000000008")));
  });

  test("a negative signed bound is its two's complement u64", () => {
    expect(hex(repBytes(Lw.Int16({ range: [-2, 5] })))).toBe(hex(unhex("00000001 02 00000008 00000002 02 00 fffffffffffffffe 0000000000000005")));
  });

  test("a pstr: pointer, zero-terminated, encoding \"\" (LWMSG_ATTR_STRING), static length 0, no length member", () => {
    const uint8 = "00000002 02 00000000 00000003 01 01 0000000000000000 0000000000000000";
    expect(hex(repBytes(Lw.String()))).toBe(hex(unhex(`00000001 07 00000000 ${uint8} 01 00000000 ffff ff 00000000`)));
    // NOT_NULL is flag 0x01
    expect(hex(repBytes(Lw.String({ notNull: true })))).toBe(hex(unhex(`00000001 07 00000001 ${uint8} 01 00000000 ffff ff 00000000`)));
  });

  test("a pointer to one element: static length 1, no encoding; aliasable is flag 0x08", () => {
    const int32 = "00000002 02 00000000 00000003 04 00 0000000000000000 0000000000000000";
    expect(hex(repBytes(Lw.Pointer(Lw.Int32(), { aliasable: true })))).toBe(hex(unhex(`00000001 07 00000008 ${int32} 00 00000001 ffff 00`)));
  });

  test("an inline array writes zero_terminated twice (array_rep_spec lists the member twice)", () => {
    const int16 = "00000002 02 00000000 00000003 02 00 0000000000000000 0000000000000000";
    expect(hex(repBytes(Lw.Array(Lw.Int16(), { length: 2 })))).toBe(hex(unhex(`00000001 06 00000000 ${int16} 00 00 00000002 ffff 00`)));
    expect(hex(repBytes(Lw.Array(Lw.UInt8(), { length: "zero", string: true })))).toEndWith(hex(unhex("01 01 00000000 ffff ff 00000000")));
  });

  test("a struct: definition id, field count, fields (type rep, name), struct name; length member as an index", () => {
    const T = Lw.Struct({ n: Lw.UInt16(), p: Lw.Pointer(Lw.Int8(), { length: "n", notNull: true }) }, { name: "foo" });
    const u16 = "00000003 02 00000000 00000004 02 01 0000000000000000 0000000000000000";
    const i8 = "00000006 02 00000000 00000007 01 00 0000000000000000 0000000000000000";
    const expected = `00000001 04 00000000 | 00000002 0002 | ${u16} ff 00000001 6e | 00000005 07 00000001 ${i8} 00 00000000 0000 00 ff 00000001 70 | ff 00000003 666f6f`;
    expect(hex(repBytes(T))).toBe(hex(unhex(expected)));
  });

  test("a union: arms (type, tag u32, name) and the discriminator's member index", () => {
    const T = Lw.Struct({ tag: Lw.UInt8(), u: Lw.Union("tag", { 1: Lw.UInt32(), 2: Lw.Void() }, { names: { 1: "num", 2: "none" } }) });
    const b = hex(repBytes(T));
    // union rep: kind 05, flags, definition (id 6: arm count 2, arms..., no name), discrim index 0000
    expect(b).toContain("0000000505000000000000000600020000000702000000000000000804");
    expect(b).toContain(hex(unhex("00000001 ff 00000003 6e756d")));
    expect(b).toMatch(/00000009010000000000000002ff00000004(6e6f6e65)00(0000)ff0000000175/);
  });

  test("an enum: width, sign, variants (is_mask, value u64, name), name", () => {
    const E = Lw.Enum({ A: 1, B: 2 }, { width: 2, masks: { M: 0x100 }, name: "e" });
    expect(hex(repBytes(E))).toBe(
      hex(unhex("00000001 03 00000000 00000002 02 01 0003 | 00 0000000000000001 ff000000 0141 | 00 0000000000000002 ff00000001 42 | 01 0000000000000100 ff00000001 4d | ff 00000001 65".replace("ff000000 0141", "ff00000001 41"))),
    );
  });

  test("the same schema object used twice is written once, then by its object id", () => {
    const X = Lw.Int32();
    const b = hex(repBytes(Lw.Struct({ a: X, b: X })));
    // the second field's type is just the id of the first field's rep
    expect(b).toContain(hex(unhex("ff 00000001 61 00000003 ff 00000001 62")));
  });

  test("an fd is written as lwmsg's fd class transmit type, a plain uint8 (lwmsg quirk), shared by all fds", () => {
    expect(hex(repBytes(Lw.Fd()))).toBe(hex(unhex("00000001 02 00000000 00000002 01 01 0000000000000000 0000000000000000")));
    const back = typeFromRep(decodeTypeRep(repBytes(Lw.Struct({ a: Lw.Fd(), b: Lw.Fd() })))!);
    expect(Lw.printType(back)).toContain("uint8 a;");
    expect(hex(repBytes(Lw.Struct({ a: Lw.Fd(), b: Lw.Fd() })))).toContain(hex(unhex("ff 00000001 61 00000003 ff 00000001 62")));
  });

  test("a bool is lwmsg's BOOL: uint8 with RANGE(0, 1)", () => {
    expect(hex(repBytes(Lw.Bool()))).toBe(hex(repBytes(Lw.UInt8({ range: [0, 1] }))));
  });

  test("a protocol rep: count, then tag, type rep (0 for no payload), name; one object map for the whole protocol", () => {
    const P = Lw.Protocol({ PING: [0, null], ECHO: [1, Lw.Int32()], ECHO2: [3, Lw.Int32()] });
    const b = encodeProtocolRep(protocolToRep(P));
    expect(hex(b)).toBe(
      hex(unhex(`0003 | 0000 00000000 ff00000004 50494e47 | 0001 ${INT32} ff00000004 4543484f | 0003 00000003 02 00000000 00000004 04 00 0000000000000000 0000000000000000 ff00000005 4543484f32`)),
    );
  });
});

describe("rep round trips", () => {
  for (const { name, T } of schemas) {
    test(`${name}: schema → rep → schema encodes, decodes and prints the same bytes`, () => {
      const bytes = repBytes(T);
      const T2 = typeFromRep(decodeTypeRep(bytes)!);
      // a second trip is a fixpoint (the first may reorder union arms and enum variants into tag order)
      const b2 = repBytes(T2);
      expect(hex(repBytes(typeFromRep(decodeTypeRep(b2)!)))).toBe(hex(b2));
      checkAssignable(typeToRep(T), decodeTypeRep(b2)!);
      checkAssignable(typeToRep(T2), decodeTypeRep(bytes)!);
      const rng = new Rng(0x7e9 ^ name.length);
      for (let i = 0; i < 20; i++) {
        let enc;
        try {
          enc = validEncoding(T, rng, { handles: null, maxDepth: 3, maxCount: 4 });
        } catch {
          continue;
        }
        const v = Lw.decode(T2 as never, enc.bytes);
        expect(hex(Lw.encode(T2 as never, v as never))).toBe(hex(enc.bytes));
        expect(typeof Lw.print(T2 as never, v as never)).toBe("string");
      }
    });
  }

  test("400 of the fuzzer's random schemas: schema → rep → schema decodes and re-encodes the same bytes", () => {
    let checked = 0;
    for (let seed = 1; seed <= 16; seed++) {
      for (let k = 0; k < 25; k++) {
        const T = randomSchema(seed, k);
        const T2 = typeFromRep(decodeTypeRep(repBytes(T))!);
        expect(hex(repBytes(T2))).toBe(hex(repBytes(typeFromRep(decodeTypeRep(repBytes(T2))!))));
        const rng = new Rng(seed * 1000 + k);
        for (let i = 0; i < 5; i++) {
          let enc;
          try {
            enc = validEncoding(T, rng, { handles: null, maxDepth: 3, maxCount: 4 });
            Lw.decode(T as never, enc.bytes); // (values over a maxAlloc encode but do not decode)
          } catch {
            continue;
          }
          // e.g. random schemas 1.1 and 2.24: a pointer to one nullable pointer must keep outer and inner null apart
          expect([seed, k, hex(Lw.encode(T2 as never, Lw.decode(T2 as never, enc.bytes) as never))]).toEqual([seed, k, hex(enc.bytes)]);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });

  test("fserv's protocol: rep → protocol prints every message and decodes the same data", () => {
    const rep = decodeProtocolRep(encodeProtocolRep(protocolToRep(fservProtocol)));
    const P = protocolFromRep(rep);
    expect(P.entries().map((e) => [e.tag, e.name])).toEqual(fservProtocol.entries().map((e) => [e.tag, e.name]));
    checkProtocolRep(fservProtocol, rep);
    expect(P.print()).toContain("OPEN_REQ");
  });

  test("a recursive type becomes Lw.Recursive and decodes a cycle", () => {
    const Ring = Lw.Recursive((S) => Lw.Struct({ n: Lw.Int32(), next: Lw.Pointer(S, { aliasable: true, notNull: true }) }));
    const T2 = typeFromRep(decodeTypeRep(repBytes(Lw.Pointer(Ring, { aliasable: true })))!);
    const a: any = { n: 10, next: null };
    a.next = { n: 20, next: { n: 30, next: a } };
    const bytes = Lw.encode(Lw.Pointer(Ring, { aliasable: true }) as never, a as never);
    const back: any = Lw.decode(T2 as never, bytes);
    expect(back.next.next.next).toBe(back);
    expect(hex(Lw.encode(T2 as never, back as never))).toBe(hex(bytes));
  });
});

describe("string forms (issue 15): bytes, encodings, text", () => {
  const uint8 = "00000002 02 00000000 00000003 01 01 0000000000000000 0000000000000000";
  const pointer = (el: string, enc: string) => `00000001 07 00000000 ${el} 01 00000000 ffff ${enc}`;
  const Forms = schemas.find((s) => s.name === "strings.Forms")!.T;
  const back = (T: TSchema) => typeFromRep(decodeTypeRep(repBytes(T))!);

  test("rep bytes: exact bytes are a PSTR whose uint8 has RANGE(0, 255); latin1 keeps its name; ucs-2 is pbis's PWSTR (uint16, zero-terminated)", () => {
    const bytesEl = "00000002 02 00000008 00000003 01 01 0000000000000000 00000000000000ff";
    expect(hex(repBytes(Lw.String({ bytes: true })))).toBe(hex(unhex(pointer(bytesEl, "ff 00000000"))));
    expect(hex(repBytes(Lw.String({ bytes: true, encoding: "hex+ascii" })))).toBe(hex(unhex(pointer(bytesEl, `ff 00000009 ${hex(Buffer.from("hex+ascii"))}`))));
    expect(hex(repBytes(Lw.String({ encoding: "latin1" })))).toBe(hex(unhex(pointer(uint8, `ff 00000006 ${hex(Buffer.from("latin1"))}`))));
    const uint16 = "00000002 02 00000000 00000003 02 01 0000000000000000 0000000000000000";
    expect(hex(repBytes(Lw.String({ encoding: "ucs-2" })))).toBe(hex(unhex(pointer(uint16, `ff 00000005 ${hex(Buffer.from("ucs-2"))}`))));
    // default text is unchanged: lwmsg's LWMSG_PSTR
    expect(hex(repBytes(Lw.String()))).toBe(hex(unhex(pointer(uint8, "ff 00000000"))));
  });

  test("each form comes back with the same presentation: bytes as Uint8Array (NUL refused), latin1 and ucs-2 as text, UTF-8 as text", () => {
    const T2 = back(Forms);
    const wire = Lw.encode(Forms as never, { raw: new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0xff]), l1: "café ÿ", a: "plain", w: "日本 😀" } as never);
    const v: any = Lw.decode(T2 as never, wire);
    expect(v).toEqual(Lw.decode(Forms as never, wire) as any);
    expect(v.raw).toBeInstanceOf(Uint8Array);
    expect([...v.raw]).toEqual([0x63, 0x61, 0x66, 0xe9, 0xff]);
    expect([v.l1, v.a, v.w]).toEqual(["café ÿ", "plain", "日本 😀"]);
    expect(hex(Lw.encode(T2 as never, v as never))).toBe(hex(wire));
    expect(Lw.print(T2 as never, v as never)).toBe(Lw.print(Forms as never, v as never));
    expect(Lw.decode(T2 as never, Lw.encode(Forms as never, { raw: null, l1: null, a: "", w: null } as never)) as unknown).toEqual({ raw: null, l1: null, a: "", w: null });
    // what the forms refuse, the rep's schema refuses too
    const withNul = unhex("ff 00000002 6100 00 00000000 00");
    expect(statusOf(() => Lw.decode(T2 as never, withNul))).toBe(Status.MALFORMED);
    expect(statusOf(() => Lw.decode(Forms as never, withNul))).toBe(Status.MALFORMED);
    const utf8 = back(Lw.Struct({ s: Lw.String({ notNull: true }) }));
    expect(Lw.decode(utf8 as never, unhex("00000003 e282ac")) as unknown).toEqual({ s: "€" });
    expect(statusOf(() => Lw.decode(utf8 as never, unhex("00000001 e9")))).toBe(Status.MALFORMED);
    // a bytes hint survives
    const hinted = back(Lw.Struct({ b: Lw.String({ bytes: true, notNull: true, encoding: "hex+ascii" }) }));
    expect(Lw.print(hinted as never, { b: new Uint8Array([1, 2]) } as never)).toContain("00000000   01 02");
  });

  test("C's own string reps: PWSTR (\"UCS-2LE\"/\"utf-16\") is text; an encoding we cannot round-trip, or latin1 without a terminator, is its exact bytes", () => {
    const ptr = (el: TypeRep, zero: boolean, encoding: string | null, length = 0): TypeRep => ({ kind: 7, flags: 1, info: { pointee_type: el, zero_terminated: zero ? 1 : 0, static_length: length, length_member_index: -1, encoding } });
    const int = (width: number, sign: number): TypeRep => ({ kind: 2, flags: 0, info: { definition: { width, sign }, lower_bound: 0n, upper_bound: 0n } });
    for (const enc of ["UCS-2LE", "utf-16", "UCS-2BE"]) expect(Lw.decode(typeFromRep(ptr(int(2, 1), true, enc)) as never, unhex("00000002 65e5 672c")) as unknown).toBe("日本");
    expect(Lw.decode(typeFromRep(ptr(int(1, 1), true, "CP1252")) as never, unhex("00000002 80e9")) as unknown).toEqual(new Uint8Array([0x80, 0xe9]));
    expect(Lw.decode(typeFromRep(ptr(int(1, 1), false, "latin1", 2)) as never, unhex("63e9")) as unknown).toEqual(new Uint8Array([0x63, 0xe9]));
    expect(Lw.decode(typeFromRep(ptr(int(1, 1), true, "latin1")) as never, unhex("00000002 63e9")) as unknown).toBe("cé");
    // int16 (signed) elements are no UTF-16 text the codec has: their numbers
    expect(Lw.decode(typeFromRep(ptr(int(2, 0), true, "utf-16")) as never, unhex("00000001 0041")) as unknown).toEqual([0x41]);
  });

  test("assignable both ways between a C PSTR and an exact-bytes string (the full range bounds nothing); a narrower range still fails", () => {
    const ok = (reader: TSchema, writer: TSchema) => statusOf(() => checkAssignable(typeToRep(reader), typeToRep(writer)));
    expect(ok(Lw.String(), Lw.String({ bytes: true }))).toBe("ok");
    expect(ok(Lw.String({ bytes: true }), Lw.String())).toBe("ok");
    expect(ok(Lw.String({ encoding: "ucs-2" }), Lw.String())).toBe(Status.MALFORMED);
    expect(ok(Lw.UInt8({ range: [0, 255] }), Lw.UInt8())).toBe("ok");
    expect(ok(Lw.UInt8({ range: [0, 254] }), Lw.UInt8())).toBe(Status.MALFORMED);
    expect(ok(Lw.Int8({ range: [-128, 127] }), Lw.Int8())).toBe("ok");
    expect(ok(Lw.Int8({ range: [-127, 127] }), Lw.Int8())).toBe(Status.MALFORMED);
  });
});

describe("assignable (old writer → new reader)", () => {
  const E1 = Lw.Enum({ A: 1, B: 2 });
  const E2 = Lw.Enum({ A: 1, B: 2, C: 3 });
  const ok = (reader: TSchema, writer: TSchema) => statusOf(() => checkAssignable(typeToRep(reader), typeToRep(writer)));
  test("a reader enum with more values accepts an older writer, not the other way", () => {
    expect(ok(E2, E1)).toBe("ok");
    expect(ok(E1, E2)).toBe(Status.MALFORMED);
  });
  test("integers: width and sign must match; a reader range must cover the writer's", () => {
    expect(ok(Lw.Int32(), Lw.Int32())).toBe("ok");
    expect(ok(Lw.Int32(), Lw.UInt32())).toBe(Status.MALFORMED);
    expect(ok(Lw.Int32(), Lw.Int16())).toBe(Status.MALFORMED);
    expect(ok(Lw.Int32(), Lw.Int32({ range: [0, 5] }))).toBe("ok");
    expect(ok(Lw.Int32({ range: [0, 9] }), Lw.Int32({ range: [0, 5] }))).toBe("ok");
    expect(ok(Lw.Int32({ range: [0, 5] }), Lw.Int32({ range: [0, 9] }))).toBe(Status.MALFORMED);
    expect(ok(Lw.Int32({ range: [-5, 5] }), Lw.Int32({ range: [-9, 5] }))).toBe(Status.MALFORMED);
    expect(ok(Lw.Int32({ range: [0, 5] }), Lw.Int32())).toBe(Status.MALFORMED);
  });
  test("structs: same field count, fields assignable in order (names do not matter)", () => {
    expect(ok(Lw.Struct({ a: E2, b: Lw.String() }), Lw.Struct({ x: E1, y: Lw.String() }))).toBe("ok");
    expect(ok(Lw.Struct({ a: E2 }), Lw.Struct({ a: E2, b: Lw.String() }))).toBe(Status.MALFORMED);
  });
  test("unions: every writer arm exists in the reader; pointers: same flags and length", () => {
    const U = (arms: Record<number, TSchema>) => Lw.Struct({ t: Lw.UInt8(), u: Lw.Union("t", arms) });
    expect(ok(U({ 1: Lw.Int32(), 2: Lw.Void() }), U({ 1: Lw.Int32() }))).toBe("ok");
    expect(ok(U({ 1: Lw.Int32() }), U({ 1: Lw.Int32(), 2: Lw.Void() }))).toBe(Status.MALFORMED);
    expect(ok(Lw.String(), Lw.String({ notNull: true }))).toBe(Status.MALFORMED);
    expect(ok(Lw.Pointer(Lw.Int32(), { length: 2 }), Lw.Pointer(Lw.Int32(), { length: 3 }))).toBe(Status.MALFORMED);
  });
  test("the failure names where it is", () => {
    expect(() => checkAssignable(typeToRep(Lw.Struct({ a: E1 })), typeToRep(Lw.Struct({ a: E2 })))).toThrow(/value\.a: enum value C is unknown/);
  });
  test("protocol update: new tags are added, known tags must be assignable, payload-less messages match only each other", () => {
    const old = Lw.Protocol({ A: [0, E1], B: [1, null] });
    const next = Lw.Protocol({ A: [0, E2], B: [1, null], C: [2, Lw.String()] });
    const repNext = decodeProtocolRep(encodeProtocolRep(protocolToRep(next)));
    const merged = updateProtocol(old, repNext.messages.filter((m) => m.tag !== 0).length ? { message_count: 2, messages: repNext.messages.filter((m) => m.tag !== 0) } : repNext);
    expect(merged.nameOf(2)).toBe("C");
    expect(() => updateProtocol(old, repNext)).toThrow(LwMsgError); // old reader, A has a new value
    expect(() => checkProtocolRep(next, decodeProtocolRep(encodeProtocolRep(protocolToRep(old))))).not.toThrow();
    expect(statusOf(() => checkProtocolRep(old, repNext))).toBe(Status.MALFORMED);
    expect(statusOf(() => checkProtocolRep(Lw.Protocol({ A: [0, E2], B: [1, Lw.Int32()] }), decodeProtocolRep(encodeProtocolRep(protocolToRep(old)))))).toBe(Status.MALFORMED);
  });
});

describe("bad rep bytes", () => {
  const good = repBytes(schemas.find((s) => s.name.includes("EveryKind"))?.T ?? Lw.Struct({ a: Lw.String() }));

  test("every truncation is MALFORMED", () => {
    for (let n = 0; n < good.length; n++) expect(statusOf(() => decodeTypeRep(good.subarray(0, n)))).toBe(Status.MALFORMED);
  });

  test("a struct that contains itself without a pointer is MALFORMED (infinite size)", () => {
    const s: TypeRep = { kind: 4, flags: 0 };
    s.info = { definition: { field_count: 1, fields: [{ type: s, name: "me" }], name: null } };
    expect(statusOf(() => typeFromRep(s))).toBe(Status.MALFORMED);
    // …and the same as bytes: field 0's type is object id 1, the struct itself
    const bytes = unhex("00000001 04 00000000 00000002 0001 00000001 ff00000002 6d65 00");
    expect(statusOf(() => typeFromRep(decodeTypeRep(bytes)!))).toBe(Status.MALFORMED);
  });

  test("nesting deeper than the limit is MALFORMED, not a stack overflow", () => {
    let T: TSchema = Lw.Int32();
    for (let i = 0; i < 300; i++) T = Lw.Pointer(T);
    expect(statusOf(() => typeFromRep(decodeTypeRep(repBytes(T))!))).toBe(Status.MALFORMED);
  });

  test("5,000 nested pointer reps as bytes: MALFORMED from the decoder's depth bound, not a stack overflow", () => {
    const depth = 5000;
    const head: number[] = [];
    for (let i = 1; i <= depth; i++) head.push(...unhex(`${i.toString(16).padStart(8, "0")} 07 00000000`));
    const leaf = unhex(`${(depth + 1).toString(16).padStart(8, "0")} 01 00000000`); // void
    const tail = unhex("00 00000001 ffff 00");
    const bytes = new Uint8Array(head.length + leaf.length + tail.length * depth);
    bytes.set(head);
    bytes.set(leaf, head.length);
    for (let i = 0; i < depth; i++) bytes.set(tail, head.length + leaf.length + i * tail.length);
    expect(statusOf(() => decodeTypeRep(bytes))).toBe(Status.MALFORMED);
    // the same at 200 levels decodes, and converts
    const ok = typeFromRep(decodeTypeRep(repBytes(Array.from({ length: 200 }).reduce<TSchema>((t) => Lw.Pointer(t), Lw.Void())))!);
    expect(Lw.printType(ok)).toContain("void*");
  });

  test("widths the codec lacks, bad indices and duplicate names are MALFORMED", () => {
    const intRep = (width: number): TypeRep => ({ kind: 2, flags: 0, info: { definition: { width, sign: 0 }, lower_bound: 0n, upper_bound: 0n } });
    expect(statusOf(() => typeFromRep(intRep(3)))).toBe(Status.MALFORMED);
    const dup: TypeRep = { kind: 4, flags: 0, info: { definition: { field_count: 2, fields: [{ type: intRep(4), name: "a" }, { type: intRep(4), name: "a" }], name: null } } };
    expect(statusOf(() => typeFromRep(dup))).toBe(Status.MALFORMED);
    const arr: TypeRep = { kind: 6, flags: 0, info: { element_type: intRep(4), zero_terminated: 0, zero_terminated_again: 0, static_length: 0, length_member_index: 7, encoding: null } };
    const s: TypeRep = { kind: 4, flags: 0, info: { definition: { field_count: 1, fields: [{ type: arr, name: "a" }], name: null } } };
    expect(statusOf(() => typeFromRep(s))).toBe(Status.MALFORMED);
    // kind byte 9 is not an LWMsgKind
    expect(statusOf(() => decodeTypeRep(unhex("00000001 09 00000000")))).toBe(Status.MALFORMED);
    // flag PROMOTED (0x04) is not allowed in a rep
    expect(statusOf(() => decodeTypeRep(unhex("00000001 01 00000004")))).toBe(Status.MALFORMED);
  });

  test("a huge field count with no bytes behind it fails at once without allocating it", () => {
    const bytes = unhex("00000001 04 00000000 00000002 ffff");
    const before = process.memoryUsage().rss;
    expect(statusOf(() => decodeTypeRep(bytes))).toBe(Status.MALFORMED);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });

  test("seeded mutation batch: only MALFORMED or a usable schema, never anything else", () => {
    const rng = new Rng(0x7e9e9);
    const seeds = schemas.slice(0, 40).map((s) => repBytes(s.T));
    const tally: Record<string, number> = {};
    for (let i = 0; i < 3000; i++) {
      const b = Uint8Array.from(rng.pick(seeds));
      const n = 1 + rng.below(4);
      for (let k = 0; k < n; k++) {
        const at = rng.below(b.length);
        b[at] = rng.chance(0.5) ? rng.below(256) : rng.pick([0, 1, 0xff, 0x7f, 0x80, b[at]! ^ 1]);
      }
      const cut = rng.chance(0.2) ? b.subarray(0, rng.below(b.length)) : b;
      let outcome: string;
      try {
        const rep = decodeTypeRep(cut);
        if (rep) {
          const T = typeFromRep(rep);
          Lw.printType(T);
        }
        outcome = "ok";
      } catch (e) {
        if (!(e instanceof LwMsgError)) throw new Error(`case ${i}: ${String(e)}`);
        expect(e.status).toBe(Status.MALFORMED);
        outcome = "MALFORMED";
      }
      tally[outcome] = (tally[outcome] ?? 0) + 1;
    }
    expect(tally.MALFORMED).toBeGreaterThan(100);
    expect(tally.ok).toBeGreaterThan(10);
  });
});
