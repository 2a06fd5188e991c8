// Exact bytes: every example of reference §2.5 and every data-model case of
// lwmsg's test-marshal.c and test-convert.c (§9.2), as hand-written vectors.
import { describe, expect, test } from "bun:test";
import { Lw } from "../lib/lw.ts";
import { Status } from "../lib/status.ts";
import { CodecContext } from "../lib/codec/io.ts";
import { expectStatus, hex, toHex } from "./codec-helpers.ts";

/** encode must give exactly `bytes`, and decoding them must give back `value` (or `back`). */
function vector(T: any, value: unknown, bytes: string, back: unknown = value) {
  const want = hex(bytes);
  expect(toHex(Lw.encode(T, value as never))).toBe(toHex(want));
  expect(Lw.decode(T, want)).toEqual(back as never);
}

// ---------------------------------------------------------------------------
describe("test-marshal.c: basic", () => {
  // reference §2.5 form: uint64 len with range [1, SIZE_MAX/2]
  const Basic = Lw.Struct({
    foo: Lw.Int16({ verify: (v) => v === -42 }),
    len: Lw.UInt64({ range: [1n, (1n << 63n) - 1n] }),
    ptr: Lw.Pointer(Lw.Array(Lw.Int64(), { length: "len" }), { notNull: true }),
  });
  const bytes = "FF D6 | 00 00 00 00 00 00 00 02 | 00 00 00 00 00 00 04 D2 | 00 00 00 00 00 00 10 E1";

  test("basic: exact 26 bytes (no presence byte) and a round trip", () => {
    expect(hex(bytes).length).toBe(26);
    vector(Basic, { foo: -42, len: 2n, ptr: [1234n, 4321n] }, bytes);
  });
  test("basic (pbis variant): uint32 len with RANGE(1, 8) gives 22 bytes", () => {
    const B32 = Lw.Struct({
      foo: Lw.Int16({ verify: (v) => v === -42 }),
      len: Lw.UInt32({ range: [1, 8] }),
      ptr: Lw.Pointer(Lw.Int64(), { notNull: true, length: "len" }),
    });
    vector(B32, { foo: -42, len: 2, ptr: [1234n, 4321n] }, "FF D6 00 00 00 02 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1");
    expectStatus(() => Lw.decode(B32, hex("FF D6 00 00 00 09 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1")), Status.MALFORMED, /value\.len: 9 is outside the range \[1, 8\]/);
  });
  test("basic_verify_marshal_failure: foo ≠ -42 → MALFORMED", () => {
    expectStatus(() => Lw.encode(Basic, { foo: 12, len: 2n, ptr: [1n, 2n] }), Status.MALFORMED, /value\.foo: rejected by verify/);
  });
  test("basic_verify_unmarshal_failure: foo = 12 on the wire → MALFORMED", () => {
    expectStatus(() => Lw.decode(Basic, hex("00 0C 00 00 00 00 00 00 00 02 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1")), Status.MALFORMED, /value\.foo/);
  });
  test("basic_verify_range_failure_low / _high → MALFORMED", () => {
    expectStatus(() => Lw.decode(Basic, hex("FF D6 00 00 00 00 00 00 00 00")), Status.MALFORMED, /value\.len: 0 is outside the range/);
    expectStatus(() => Lw.decode(Basic, hex("FF D6 80 00 00 00 00 00 00 00")), Status.MALFORMED, /value\.len/);
    expectStatus(() => Lw.encode(Basic, { foo: -42, len: 0n, ptr: [] }), Status.MALFORMED, /value\.len/);
  });
  test("basic_verify_null_failure: truncated stream → EOF", () => {
    expectStatus(() => Lw.decode(Basic, hex("FF D6 00 00 00 00 00 00 00 02")), Status.EOF, /value\.ptr/);
  });
  test("basic_verify_overflow_failure: len = SIZE_MAX/2 elements of 8 bytes → OVERFLOW", () => {
    expectStatus(() => Lw.decode(Basic, hex("FF D6 7F FF FF FF FF FF FF FF")), Status.OVERFLOW, /value\.ptr/);
  });
  test("NOT_NULL pointer with member length: NULL with count 0 encodes, count > 0 is MALFORMED", () => {
    const T = Lw.Struct({ len: Lw.UInt32(), ptr: Lw.Pointer(Lw.Int64(), { notNull: true, length: "len" }) });
    expect(toHex(Lw.encode(T, { len: 0, ptr: null as never }))).toBe("00 00 00 00");
    expectStatus(() => Lw.encode(T, { len: 1, ptr: null as never }), Status.MALFORMED, /value\.ptr: NULL/);
  });
});

// ---------------------------------------------------------------------------
describe("test-marshal.c: aliasing and the ring", () => {
  const LongPair = Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 }));
  const Alias = Lw.Struct({
    ptr1: Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 }), { notNull: true, aliasable: true }),
    ptr2: Lw.Pointer(Lw.Array(Lw.Int64(), { length: 2 }), { aliasable: true }),
  });

  test("alias: two pointers to one long[2] → ids 1, 1; decoded pointers are identical", () => {
    const longs = [1234n, 4321n];
    const b = Lw.encode(Alias, { ptr1: longs, ptr2: longs });
    expect(toHex(b)).toBe(toHex(hex("00 00 00 01 | 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1 | 00 00 00 01")));
    const out = Lw.decode(Alias, b);
    expect(out.ptr1).toEqual([1234n, 4321n]);
    expect(out.ptr2).toBe(out.ptr1);
    expect(Lw.print(Alias, out)).toBe("{\n    ptr1 = <alias:1> \n    {\n        1234\n        4321\n    }\n    ptr2 = <alias:1>\n}");
  });
  test("alias_null: NULL second pointer → id 0", () => {
    vector(Alias, { ptr1: [1234n, 4321n], ptr2: null }, "00 00 00 01 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1 00 00 00 00");
  });
  test("alias with equal but distinct arrays gives two ids", () => {
    vector(Alias, { ptr1: [1n, 2n], ptr2: [1n, 2n] }, "00 00 00 01 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02");
  });
  test("alias_verify_null_marshal_failure / _unmarshal_failure → MALFORMED", () => {
    expectStatus(() => Lw.encode(Alias, { ptr1: null as never, ptr2: [1n, 2n] }), Status.MALFORMED, /value\.ptr1: NULL/);
    expectStatus(() => Lw.decode(Alias, hex("00 00 00 00 00 00 00 01 00 00 00 00 00 00 04 D2 00 00 00 00 00 00 10 E1")), Status.MALFORMED, /value\.ptr1/);
  });
  test("a top-level nullable pointer keeps its presence byte (§2.4)", () => {
    vector(LongPair, [1n, 2n], "FF 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02");
    vector(LongPair, null, "00");
  });

  const Ring = Lw.Recursive((Self) => Lw.Struct({ number: Lw.Int32(), next: Lw.Pointer(Self, { notNull: true, aliasable: true }) }, { name: "ring_struct" }));
  const RingPtr = Lw.Pointer(Ring, { aliasable: true });

  test("ring: a 3-node cycle encodes as id1 10 id2 20 id3 30 id1 and decodes back into a cycle", () => {
    type N = { number: number; next: N };
    const r1 = { number: 10 } as N;
    const r2 = { number: 20 } as N;
    const r3 = { number: 30 } as N;
    r1.next = r2;
    r2.next = r3;
    r3.next = r1;
    const b = Lw.encode(RingPtr, r1);
    expect(toHex(b)).toBe(toHex(hex("00 00 00 01 00 00 00 0A 00 00 00 02 00 00 00 14 00 00 00 03 00 00 00 1E 00 00 00 01")));
    const out = Lw.decode(RingPtr, b) as N;
    expect(out.number).toBe(10);
    expect(out.next.number).toBe(20);
    expect(out.next.next.number).toBe(30);
    expect(out.next.next.next).toBe(out);
  });
  test("ring_print_type", () => {
    expect(Lw.printType(RingPtr)).toBe("struct ring_struct\n{\n    int32 number;\n    struct ring_struct&! next;\n}*!");
  });
  test("an id that refers to a different pointee type is MALFORMED", () => {
    const T = Lw.Struct({
      a: Lw.Pointer(Lw.Int32(), { aliasable: true }),
      b: Lw.Pointer(Lw.Int16(), { aliasable: true }),
    });
    expectStatus(() => Lw.decode(T, hex("00 00 00 01 00 00 00 05 00 00 00 01")), Status.MALFORMED, /value\.b: object id 1 refers to a different type/);
  });
});

// ---------------------------------------------------------------------------
describe("test-marshal.c: strings and arrays", () => {
  const Strings = Lw.Struct({ foo: Lw.String({ maxAlloc: 256 }), bar: Lw.String({ sensitive: true }) });

  test("string: two pstrs → FF len 'foo' FF len 'bar' (the NUL is not written)", () => {
    vector(Strings, { foo: "foo", bar: "bar" }, "FF 00 00 00 03 'foo' FF 00 00 00 03 'bar'");
  });
  test("string: SENSITIVE prints <sensitive>", () => {
    expect(Lw.print(Strings, { foo: "foo", bar: "bar" })).toBe('{\n    foo = "foo"\n    bar = <sensitive>\n}');
  });
  test("string_max_alloc_fail: 511 chars with MAX_ALLOC(256) → OVERFLOW on decode", () => {
    const b = Lw.encode(Strings, { foo: "x".repeat(511), bar: "bar" });
    expectStatus(() => Lw.decode(Strings, b), Status.OVERFLOW, /value\.foo: referent of 512 bytes exceeds maxAlloc 256/);
    // 255 chars + terminator = 256 bytes still fits
    expect(Lw.decode(Strings, Lw.encode(Strings, { foo: "y".repeat(255), bar: null })).foo).toBe("y".repeat(255));
  });
  test("a top-level pstr keeps its presence byte: FF len bytes", () => {
    vector(Lw.String(), "foo", "FF 00 00 00 03 'foo'");
    vector(Lw.String(), null, "00");
    vector(Lw.String({ notNull: true }), "", "00 00 00 00");
  });
  test("UTF-8 strings count bytes, not UTF-16 units", () => {
    vector(Lw.String(), "é€😀", "FF 00 00 00 09 C3 A9 E2 82 AC F0 9F 98 80");
  });

  test("struct_array: pointer to a struct array with a member length", () => {
    const T = Lw.Struct({
      len: Lw.UInt32(),
      foo: Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.Int8(), b: Lw.Int8() }), { length: "len" })),
    });
    vector(T, { len: 2, foo: [{ a: 97, b: 98 }, { a: 99, b: 100 }] }, "00 00 00 02 FF 'ab' 'cd'");
  });

  // pbis test-marshal.c: LWMSG_POINTER(LWMSG_PSTR) + ZERO_TERMINATED (nullable elements)
  const StringArray = Lw.Struct({ strings: Lw.Pointer(Lw.Array(Lw.String(), { length: "zero" })) });
  // reference §2.5: the elements are NOT_NULL
  const StringArrayNN = Lw.Struct({ strings: Lw.Pointer(Lw.Array(Lw.String({ notNull: true }), { length: "zero" })) });

  test("string_array: zero-terminated array of pstrs (u32 count excludes the terminator)", () => {
    vector(StringArray, { strings: ["foo", "bar"] }, "FF 00 00 00 02 FF 00 00 00 03 'foo' FF 00 00 00 03 'bar'");
    vector(StringArrayNN, { strings: ["foo", "bar"] }, "FF 00 00 00 02 00 00 00 03 'foo' 00 00 00 03 'bar'");
  });
  test("string_array_empty / string_array_null", () => {
    vector(StringArrayNN, { strings: [] }, "FF 00 00 00 00");
    vector(StringArrayNN, { strings: null }, "00");
    vector(StringArray, { strings: [] }, "FF 00 00 00 00");
    vector(StringArray, { strings: null }, "00");
  });

  test("inline_array: static int16[2] between int16 members", () => {
    const T = Lw.Struct({ foo: Lw.Int16(), array: Lw.Array(Lw.Int16(), { length: 2 }), bar: Lw.Int16() });
    vector(T, { foo: 1, array: [2, 3], bar: 4 }, "00 01 00 02 00 03 00 04");
  });
  test("flexible_string: {int16 42; char[] 'foo'} (zero-terminated flexible member)", () => {
    const T = Lw.Struct({ foo: Lw.Int16(), string: Lw.Array(Lw.UInt8(), { length: "zero", string: true }) });
    vector(T, { foo: 42, string: "foo" }, "00 2A 00 00 00 03 'foo'");
  });
  test("flexible_string_print_type", () => {
    const T = Lw.Struct({ foo: Lw.Int16(), string: Lw.Array(Lw.UInt8(), { length: "zero", string: true }) }, { name: "flexible_string_struct" });
    expect(Lw.printType(T)).toBe("struct flexible_string_struct\n{\n    int16 foo;\n    uint8[] <string> string;\n}");
  });
  test("flexible_array: member length, no count on the wire", () => {
    const T = Lw.Struct({ len: Lw.Int16(), array: Lw.Array(Lw.Int16(), { length: "len" }) });
    vector(T, { len: 2, array: [1, 2] }, "00 02 00 01 00 02");
    expect(Lw.printType(T)).toBe("struct <anonymous>\n{\n    int16 len;\n    int16[len] array;\n}");
  });
  test("8-bit element arrays are Uint8Array (copies, not views) and Int8Array", () => {
    const T = Lw.Struct({ n: Lw.UInt16(), s: Lw.Array(Lw.Int8(), { length: 2 }), data: Lw.Array(Lw.UInt8(), { length: "n" }) });
    const bytes = hex("00 03 FF 7F 01 02 FF");
    const out = Lw.decode(T, bytes);
    expect(out.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(out.data)).toEqual([1, 2, 255]);
    expect(out.s).toBeInstanceOf(Int8Array);
    expect(Array.from(out.s)).toEqual([-1, 127]);
    bytes[4] = 99;
    expect(out.data[0]).toBe(1); // not a view of the input
    expect(toHex(Lw.encode(T, out))).toBe("00 03 ff 7f 01 02 ff");
  });
  test("static-length text is NUL-padded and read up to the first NUL", () => {
    const T = Lw.Struct({ name: Lw.Array(Lw.UInt8(), { length: 6, string: true }) });
    vector(T, { name: "abc" }, "'abc' 00 00 00");
    expectStatus(() => Lw.encode(T, { name: "abcdefg" }), Status.MALFORMED, /value\.name: string of 7 bytes exceeds the static length 6/);
  });
});

// ---------------------------------------------------------------------------
describe("test-marshal.c: unions, nested structs, info levels", () => {
  const NumberString = (discrim: string) =>
    Lw.Union(discrim, { 1: Lw.Int32(), 2: Lw.String(), 3: Lw.Void() }, { names: { 1: "number", 2: "string", 3: "empty" } });

  test("two_union: unions behind pointers, discriminators in the outer struct", () => {
    const T = Lw.Struct({
      tag1: Lw.Int8(),
      u1: Lw.Pointer(NumberString("tag1")),
      tag2: Lw.Int8(),
      u2: Lw.Pointer(NumberString("tag2")),
    });
    vector(T, { tag1: 1, u1: 42, tag2: 2, u2: "foo" }, "01 FF 00 00 00 2A 02 FF FF 00 00 00 03 'foo'");
  });
  test("nested_struct: inline member struct", () => {
    const T = Lw.Struct({ foo: Lw.Int32(), inner: Lw.Struct({ foo: Lw.Int32(), bar: Lw.String() }), bar: Lw.Int32() });
    const v = { foo: 42, inner: { foo: 24, bar: "bar" }, bar: -12 };
    vector(T, v, "00 00 00 2A 00 00 00 18 FF 00 00 00 03 'bar' FF FF FF F4");
    expect(Lw.print(T, v)).toBe('{\n    foo = 42\n    inner = \n    {\n        foo = 24\n        bar = "bar"\n    }\n    bar = -12\n}');
  });
  const Nested = Lw.Struct({ tag1: Lw.Int8(), u1: NumberString("tag1"), tag2: Lw.Int8(), u2: NumberString("tag2") });
  test("nested_union: inline unions", () => {
    vector(Nested, { tag1: 2, u1: "foo", tag2: 1, u2: 42 }, "02 FF 00 00 00 03 'foo' 01 00 00 00 2A");
    expect(Lw.print(Nested, { tag1: 2, u1: "foo", tag2: 1, u2: 42 })).toBe('{\n    tag1 = 2\n    u1 = <arm:string>"foo"\n    tag2 = 1\n    u2 = <arm:number>42\n}');
  });
  test("nested_union_empty: a VOID arm encodes nothing", () => {
    vector(Nested, { tag1: 3, tag2: 1, u2: 42 }, "03 01 00 00 00 2A", { tag1: 3, u1: undefined, tag2: 1, u2: 42 });
  });
  test("an unknown union tag is MALFORMED, on encode and on decode", () => {
    expectStatus(() => Lw.encode(Nested, { tag1: 9, u1: 1, tag2: 1, u2: 42 }), Status.MALFORMED, /value\.u1: unknown union tag 9/);
    expectStatus(() => Lw.decode(Nested, hex("07 01 00 00 00 2A")), Status.MALFORMED, /value\.u1: unknown union tag 7/);
  });

  // info_level: a union of pointers whose length lives in the outer struct (reaches through union + pointer)
  const Level1 = Lw.Struct({ number1: Lw.Int16() }, { name: "level_1_struct" });
  const Level2 = Lw.Struct({ number1: Lw.Int16(), number2: Lw.Int16() }, { name: "level_2_struct" });
  const InfoLevel = Lw.Struct(
    {
      length: Lw.UInt32(),
      level: Lw.Int8(),
      array: Lw.Union(
        "level",
        { 1: Lw.Pointer(Lw.Array(Level1, { length: "length" })), 2: Lw.Pointer(Lw.Array(Level2, { length: "length" })) },
        { names: { 1: "level_1", 2: "level_2" }, name: "level_union" },
      ),
    },
    { name: "info_level_struct" },
  );
  test("info_level_1", () => {
    vector(InfoLevel, { length: 2, level: 1, array: [{ number1: 42 }, { number1: 84 }] }, "00 00 00 02 01 FF 00 2A 00 54");
  });
  test("info_level_2", () => {
    vector(InfoLevel, { length: 2, level: 2, array: [{ number1: 42, number2: -42 }, { number1: 84, number2: -84 }] }, "00 00 00 02 02 FF 00 2A FF D6 00 54 FF AC");
  });
  test("info_level_print_type", () => {
    expect(Lw.printType(InfoLevel)).toBe(
      [
        "struct info_level_struct",
        "{",
        "    uint32 length;",
        "    int8 level;",
        "    union level_union",
        "    {",
        "        struct level_1_struct",
        "        {",
        "            int16 number1;",
        "        }* <length=length> level_1 <tag=1>;",
        "        struct level_2_struct",
        "        {",
        "            int16 number1;",
        "            int16 number2;",
        "        }* <length=length> level_2 <tag=2>;",
        "    } <discrim=level> array;",
        "}",
      ].join("\n"),
    );
  });
});

// ---------------------------------------------------------------------------
describe("test-marshal.c: enums (quirk 13)", () => {
  const Mixed = Lw.Enum({ MIXED_VALUE_1: 1, MIXED_VALUE_2: 2 }, { width: 2, masks: { MIXED_MASK_1: 0x1000, MIXED_MASK_2: 0x2000 } });
  const Mask = Lw.Enum({}, { width: 2, masks: { MASK_MASK_1: 0x1000, MASK_MASK_2: 0x2000 } });

  test("mixed_enum_mixed: VALUE_1 | MASK_2 → 20 01, printed with names", () => {
    vector(Mixed, 0x2001, "20 01");
    expect(Lw.print(Mixed, 0x2001)).toBe("MIXED_VALUE_1 | MIXED_MASK_2");
  });
  test("mixed_enum_value: 00 01", () => {
    vector(Mixed, 1, "00 01");
    expect(Lw.print(Mixed, 0x3002)).toBe("MIXED_VALUE_2 | MIXED_MASK_1 | MIXED_MASK_2");
  });
  test("mixed_enum_unmarshal_zero_fail: mask bits without a scalar → MALFORMED", () => {
    expectStatus(() => Lw.decode(Mixed, hex("10 00")), Status.MALFORMED, /enum value 4096 not declared/);
    expectStatus(() => Lw.encode(Mixed, 0x1000), Status.MALFORMED);
  });
  test("mixed_enum_unmarshal_bogus_fail: 00 03 → MALFORMED", () => {
    expectStatus(() => Lw.decode(Mixed, hex("00 03")), Status.MALFORMED, /value: enum value 3 not declared/);
  });
  test("mask_enum_zero: a pure mask enum accepts 0", () => {
    vector(Mask, 0, "00 00");
    vector(Mask, 0x3000, "30 00");
    expect(Lw.print(Mask, 0)).toBe("0");
    expectStatus(() => Lw.decode(Mask, hex("00 01")), Status.MALFORMED);
  });
  test("enum range is checked too", () => {
    const E = Lw.Enum({ A: 1, B: 2, C: 3 }, { width: 1, range: [1, 2] });
    vector(E, 2, "02");
    expectStatus(() => Lw.decode(E, hex("03")), Status.MALFORMED, /outside the range/);
  });
});

// ---------------------------------------------------------------------------
describe("test-convert.c: integer width conversion", () => {
  test("neu16_to_neu32: unsigned widening", () => {
    vector(Lw.UInt32(), 0xffff, "00 00 FF FF");
  });
  test("nes16_to_beu32: -42 as a 16-bit pattern written as u32 is zero-extended: 00 00 FF D6", () => {
    vector(Lw.UInt32(), -42 & 0xffff, "00 00 FF D6");
  });
  test("nes16_to_nes32: sign is kept when widening a signed value", () => {
    vector(Lw.Int32(), -42, "FF FF FF D6");
    vector(Lw.Int16(), -42, "FF D6");
  });
  test("leu32_to_nes16_overflow: a value beyond int16 → OVERFLOW", () => {
    expectStatus(() => Lw.encode(Lw.Int16(), 0xffd6), Status.OVERFLOW, /65494 does not fit int16/);
  });
  test("beu8_to_nes32: widening fully overwrites the target", () => {
    expect(Lw.decode(Lw.UInt8(), hex("FF"))).toBe(255);
    expect(Lw.decode(Lw.Int8(), hex("FF"))).toBe(-1);
  });
  test("nes16_to_nes8_overflow / _overflow2: 128 and -129 → int8 OVERFLOW", () => {
    expectStatus(() => Lw.encode(Lw.Int8(), 128), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.Int8(), -129), Status.OVERFLOW);
    vector(Lw.Int8(), -128, "80");
    vector(Lw.Int8(), 127, "7F");
  });
  test("every width and sign at its bounds", () => {
    vector(Lw.UInt8(), 255, "FF");
    vector(Lw.UInt16(), 65535, "FF FF");
    vector(Lw.Int16(), -32768, "80 00");
    vector(Lw.UInt32(), 0xffffffff, "FF FF FF FF");
    vector(Lw.Int32(), -0x80000000, "80 00 00 00");
    vector(Lw.UInt64(), (1n << 64n) - 1n, "FF FF FF FF FF FF FF FF");
    vector(Lw.Int64(), -(1n << 63n), "80 00 00 00 00 00 00 00");
    vector(Lw.Int64(), -1n, "FF FF FF FF FF FF FF FF");
    expectStatus(() => Lw.encode(Lw.UInt8(), 256), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.UInt16(), -1), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.UInt32(), 2 ** 32), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.Int32(), 2 ** 31), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.UInt64(), -1n), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.UInt64(), 1n << 64n), Status.OVERFLOW);
    expectStatus(() => Lw.encode(Lw.Int64(), 1n << 63n), Status.OVERFLOW);
  });
  test("64-bit fields accept safe-integer numbers, never lossy ones", () => {
    expect(toHex(Lw.encode(Lw.UInt64(), 5 as never))).toBe("00 00 00 00 00 00 00 05");
    expectStatus(() => Lw.encode(Lw.UInt64(), 2 ** 60 as never), Status.OVERFLOW, /not a safe integer/);
  });
});

// ---------------------------------------------------------------------------
describe("§2.4 top-level promotion, bools, fds and handles", () => {
  test("payload LWMSG_INT32: 4 bytes, no presence byte", () => {
    vector(Lw.Int32(), 7, "00 00 00 07");
  });
  test("payload LWMSG_HANDLE: the locality byte is kept (NULL handle → 00)", () => {
    vector(Lw.Handle("File"), null, "00");
  });
  test("a top-level NOT_NULL pointer has no presence byte", () => {
    vector(Lw.Pointer(Lw.Int16(), { notNull: true }), 5, "00 05");
  });
  test("bool is a u8 with range 0..1", () => {
    const T = Lw.Struct({ a: Lw.Bool(), b: Lw.Bool() });
    vector(T, { a: true, b: false }, "01 00");
    expectStatus(() => Lw.decode(T, hex("02 00")), Status.MALFORMED, /value\.a: 2 is outside the range \[0, 1\]/);
  });
  test("fd: FF pushes the fd onto ctx.fdsOut, fd ≤ 0 writes 00; decode takes fds in order", () => {
    const T = Lw.Struct({ a: Lw.Fd(), b: Lw.Fd(), c: Lw.Fd() });
    const ctx = new CodecContext();
    const b = Lw.encode(T, { a: 7, b: -1, c: 9 }, ctx);
    expect(toHex(b)).toBe("ff 00 ff");
    expect(ctx.fdsOut).toEqual([7, 9]);
    expect(toHex(Lw.encode(T, { a: 0, b: -1, c: 0 }))).toBe("00 00 00"); // fd 0 cannot be transmitted
    const rx = new CodecContext();
    rx.fdsIn = [40, 41];
    expect(Lw.decode(T, b, rx)).toEqual({ a: 40, b: -1, c: 41 });
    expect(rx.fdsTaken).toEqual([40, 41]);
    expect(Lw.compile(T).hasFds).toBe(true);
    expect(Lw.compile(T).hasHandles).toBe(false);
  });
  test("fd indicator without a received fd is MALFORMED", () => {
    expectStatus(() => Lw.decode(Lw.Struct({ a: Lw.Fd() }), hex("FF")), Status.MALFORMED, /fd indicator without a received fd/);
  });
  test("handles go through ctx.handles when there is one", () => {
    const T = Lw.Struct({ h: Lw.Handle("File", { localForSender: true }), x: Lw.UInt8() });
    const calls: unknown[] = [];
    const ctx = new CodecContext({
      writeHandle(w, handle, typeName, flags, notNull) {
        calls.push(["w", handle, typeName, flags, notNull]);
        w.ensure(5);
        w.buf[w.pos] = 1;
        w.view.setUint32(w.pos + 1, 77);
        w.pos += 5;
      },
      readHandle(r, typeName, flags, notNull) {
        calls.push(["r", typeName, flags, notNull, r.buf[r.pos]]);
        const id = r.view.getUint32(r.pos + 1);
        r.pos += 5;
        return { typeName, id };
      },
    });
    const b = Lw.encode(T, { h: "H" as never, x: 3 }, ctx);
    expect(toHex(b)).toBe("01 00 00 00 4d 03");
    expect(Lw.decode(T, b, ctx)).toEqual({ h: { typeName: "File", id: 77 } as never, x: 3 });
    expect(calls).toEqual([
      ["w", "H", "File", 2, false],
      ["r", "File", 2, false, 1],
    ]);
    expect(Lw.compile(T).hasHandles).toBe(true);
  });
});
