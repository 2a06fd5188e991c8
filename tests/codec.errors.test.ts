// Every error path of the codec, with the lwmsg status and the field path.
import { describe, expect, test } from "bun:test";
import { Lw } from "../lib/lw.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { ByteReader, ByteWriter, CodecContext } from "../lib/codec/io.ts";
import { expectStatus, hex } from "./codec-helpers.ts";
import { Stamp } from "./fixtures/codec-schemas.ts";

const Mode = Lw.Enum({ READ: 1, WRITE: 2 }, { width: 1 });
const Item = Lw.Struct({ id: Lw.UInt32(), mode: Mode, name: Lw.String() });
const List = Lw.Struct({ count: Lw.UInt16(), items: Lw.Pointer(Lw.Array(Item, { length: "count" }), { notNull: true }) });
const item = (i: number) => ({ id: i, mode: 1, name: `n${i}` });

describe("encode: wrong values", () => {
  test("the path names the offending field, through pointers and arrays", () => {
    const items = [item(0), item(1), item(2), { ...item(3), mode: 9 }];
    const e = expectStatus(() => Lw.encode(List, { count: 4, items }), Status.MALFORMED);
    expect(e.message).toBe("MALFORMED: value.items[3].mode: enum value 9 not declared");
  });
  test("out-of-range integers are OVERFLOW", () => {
    expectStatus(() => Lw.encode(List, { count: 70000, items: [] }), Status.OVERFLOW, "OVERFLOW: value.count: 70000 does not fit uint16");
    expectStatus(() => Lw.encode(Item, { id: -1, mode: 1, name: null }), Status.OVERFLOW, /value\.id: -1 does not fit uint32/);
  });
  test("wrong JS types are MALFORMED", () => {
    expectStatus(() => Lw.encode(Item, { id: "1" as never, mode: 1, name: null }), Status.MALFORMED, /value\.id: expected a number for uint32, got string "1"/);
    expectStatus(() => Lw.encode(Item, { id: 1.5, mode: 1, name: null }), Status.MALFORMED, /value\.id: expected an integer for uint32, got 1\.5/);
    expectStatus(() => Lw.encode(Item, { id: NaN, mode: 1, name: null }), Status.MALFORMED, /value\.id/);
    expectStatus(() => Lw.encode(Item, { id: 1, mode: 1, name: 5 as never }), Status.MALFORMED, /value\.name: expected a string, got 5/);
    expectStatus(() => Lw.encode(Item, null as never), Status.MALFORMED, /^MALFORMED: value: expected an object, got null$/);
    expectStatus(() => Lw.encode(List, { count: 1, items: { 0: item(0) } as never }), Status.MALFORMED, /value\.items: expected an array/);
    expectStatus(() => Lw.encode(Lw.Struct({ b: Lw.Bool() }), { b: 1 as never }), Status.MALFORMED, /value\.b: expected a boolean, got 1/);
    expectStatus(() => Lw.encode(Lw.Struct({ f: Lw.Fd() }), { f: "3" as never }), Status.MALFORMED, /value\.f: expected an fd number/);
    expectStatus(() => Lw.encode(Lw.Int64(), "5" as never), Status.MALFORMED, /expected a bigint for int64/);
    expectStatus(() => Lw.encode(Lw.Array(Lw.UInt8(), { length: 2 }), [1, 2] as never), Status.MALFORMED, /value: expected a Uint8Array, got an array of 2/);
  });
  test("array lengths must match the static length or the length member", () => {
    expectStatus(() => Lw.encode(List, { count: 2, items: [item(0)] }), Status.MALFORMED, /value\.items: array of 1 elements does not match length member count = 2/);
    expectStatus(() => Lw.encode(Lw.Array(Lw.Int16(), { length: 3 }), [1, 2]), Status.MALFORMED, /static length is 3/);
  });
  test("NULL where a pointer is NOT_NULL is MALFORMED", () => {
    expectStatus(() => Lw.encode(Lw.Struct({ s: Lw.String({ notNull: true }) }), { s: null as never }), Status.MALFORMED, /value\.s: NULL where a non-null pointer is required/);
    expectStatus(() => Lw.encode(Lw.Pointer(Lw.Int32(), { notNull: true }), undefined as never), Status.MALFORMED);
  });
  test("undefined encodes as NULL for nullable pointers", () => {
    expect(Array.from(Lw.encode(Item, { id: 1, mode: 2, name: undefined as never }))).toEqual([0, 0, 0, 1, 2, 0]);
  });
  test("a string containing NUL is MALFORMED (a C receiver would truncate it)", () => {
    expectStatus(() => Lw.encode(Lw.String(), "a\0b"), Status.MALFORMED, /value: string contains NUL/);
    expectStatus(() => Lw.encode(Lw.String(), "é\0".repeat(20)), Status.MALFORMED, /string contains NUL/);
  });
  test("range violations are MALFORMED on encode and decode", () => {
    const T = Lw.Struct({ a: Lw.Int32({ range: [-10, 10] }), b: Lw.Int64({ range: [-5n, "5"] }) });
    expectStatus(() => Lw.encode(T, { a: 11, b: 0n }), Status.MALFORMED, /value\.a: 11 is outside the range \[-10, 10\]/);
    expectStatus(() => Lw.encode(T, { a: -11, b: 0n }), Status.MALFORMED);
    expectStatus(() => Lw.encode(T, { a: 0, b: -6n }), Status.MALFORMED, /value\.b: -6 is outside the range \[-5, 5\]/);
    expect(Lw.decode(T, Lw.encode(T, { a: -10, b: 5n }))).toEqual({ a: -10, b: 5n });
    expectStatus(() => Lw.decode(T, hex("FF FF FF F5 00 00 00 00 00 00 00 00")), Status.MALFORMED, /value\.a: -11/);
  });
  test("verify: false → MALFORMED, a status → that status, a throw → MALFORMED with the cause", () => {
    const A = Lw.Struct({ x: Lw.UInt8({ verify: (v) => (v === 1 ? true : v === 2 ? Status.INVALID_PARAMETER : false) }) });
    expectStatus(() => Lw.encode(A, { x: 0 }), Status.MALFORMED, "MALFORMED: value.x: rejected by verify");
    expectStatus(() => Lw.encode(A, { x: 2 }), Status.INVALID_PARAMETER, /value\.x/);
    expectStatus(() => Lw.decode(A, hex("00")), Status.MALFORMED);
    const B = Lw.Struct({ x: Lw.UInt8({ verify: () => { throw new Error("boom"); } }) });
    const e = expectStatus(() => Lw.encode(B, { x: 0 }), Status.MALFORMED, /value\.x: callback threw: boom/);
    expect((e.cause as Error).message).toBe("boom");
    // struct-level verify sees the whole decoded struct
    const C = Lw.Struct({ lo: Lw.UInt8(), hi: Lw.UInt8() }, { verify: (v) => v.lo <= v.hi });
    expectStatus(() => Lw.decode(C, hex("05 01")), Status.MALFORMED, /^MALFORMED: value: rejected by verify$/);
    expect(Lw.decode(C, hex("01 05"))).toEqual({ lo: 1, hi: 5 });
  });
  test("custom marshal/unmarshal errors carry the path; LwMsgErrors keep their status", () => {
    const T = Lw.Struct({ at: Stamp });
    const d = new Date(1_700_000_000_000);
    expect(Lw.decode(T, Lw.encode(T, { at: d })).at.getTime()).toBe(d.getTime());
    expectStatus(() => Lw.encode(T, { at: "x" as never }), Status.MALFORMED, /value\.at: callback threw/);
    expectStatus(() => Lw.decode(T, hex("FF FF FF FF FF FF FF FF")), Status.OVERFLOW, "OVERFLOW: value.at: before the epoch");
  });
  test("one object behind aliasable pointers of different types gets one id per type", () => {
    const T = Lw.Struct({
      a: Lw.Pointer(Lw.Array(Lw.Int16(), { length: 1 }), { aliasable: true }),
      b: Lw.Pointer(Lw.Array(Lw.Int32(), { length: 1 }), { aliasable: true }),
      c: Lw.Pointer(Lw.Array(Lw.Int16(), { length: 1 }), { aliasable: true }),
    });
    const shared = [1];
    expect(Array.from(Lw.encode(T, { a: shared, b: shared, c: shared }))).toEqual([0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1]);
  });
  test("handles without a session: NULL encodes as 00, anything else is INVALID_HANDLE", () => {
    const T = Lw.Struct({ h: Lw.Handle("File") });
    expect(Array.from(Lw.encode(T, { h: null }))).toEqual([0]);
    expectStatus(() => Lw.encode(T, { h: {} as never }), Status.INVALID_HANDLE, /value\.h: a handle needs a session/);
    expectStatus(() => Lw.encode(Lw.Handle("File", { notNull: true }), null as never), Status.INVALID_HANDLE, /NULL handle/);
    expectStatus(() => Lw.decode(T, hex("01 00 00 00 01")), Status.INVALID_HANDLE, /value\.h/);
    expectStatus(() => Lw.decode(T, hex("")), Status.EOF);
    expect(Lw.decode(T, hex("00"))).toEqual({ h: null });
  });
  test("handle codec errors get the field path", () => {
    const ctx = new CodecContext({
      writeHandle() {
        throw new LwMsgError(Status.INVALID_HANDLE, "handle is not local");
      },
      readHandle() {
        throw new LwMsgError(Status.INVALID_HANDLE, "invalid handle id");
      },
    });
    const T = Lw.Struct({ x: Lw.UInt8(), h: Lw.Handle("File") });
    expectStatus(() => Lw.encode(T, { x: 1, h: null }, ctx), Status.INVALID_HANDLE, "INVALID_HANDLE: value.h: handle is not local");
    expectStatus(() => Lw.decode(T, hex("01 01 00 00 00 01"), ctx), Status.INVALID_HANDLE, "INVALID_HANDLE: value.h: invalid handle id");
  });
  test("errors inside recursive types have the full path", () => {
    const Node = Lw.Recursive((Self) => Lw.Struct({ v: Lw.UInt8(), next: Lw.Pointer(Self) }));
    const bad = { v: 1, next: { v: 2, next: { v: 300, next: null } } };
    expectStatus(() => Lw.encode(Node, bad), Status.OVERFLOW, "OVERFLOW: value.next.next.v: 300 does not fit uint8");
    expectStatus(() => Lw.decode(Node, hex("01 FF 02 FF 03 07")), Status.MALFORMED, "MALFORMED: value.next.next.next: pointer flag 7");
    expectStatus(() => Lw.decode(Node, hex("01 FF 02 FF")), Status.EOF, "EOF: value.next.next.v: unexpected end of input");
  });
  test("a failed encode leaves the writer position and the fd list as they were", () => {
    const T = Lw.Struct({ fd: Lw.Fd(), n: Lw.UInt8() });
    const w = new ByteWriter(16);
    w.pos = 3;
    const ctx = new CodecContext();
    const c = Lw.compile(T);
    expect(() => c.encode({ fd: 5, n: 999 }, w, ctx)).toThrow(LwMsgError);
    expect(w.pos).toBe(3);
    expect(ctx.fdsOut).toEqual([]);
    const L = Lw.compile(List);
    expect(() => L.encode({ count: 1, items: [{ id: 1, mode: 7, name: "x" }] }, w, ctx)).toThrow(LwMsgError);
    expect(w.pos).toBe(3);
  });
});

describe("decode: bad input", () => {
  test("every truncation of a valid message is EOF", () => {
    const b = Lw.encode(List, { count: 3, items: [item(1), item(2), { id: 3, mode: 2, name: null }] });
    for (let n = 0; n < b.length; n++) expectStatus(() => Lw.decode(List, b.subarray(0, n)), Status.EOF);
    expect(Lw.decode(List, b).items.length).toBe(3);
  });
  test("decoding stops at r.end, not at the end of the buffer", () => {
    const b = Lw.encode(Item, { id: 1, mode: 1, name: "abc" });
    const c = Lw.compile(Item);
    const r = new ByteReader(b, 0, b.length - 1);
    expectStatus(() => c.decode(r, new CodecContext()), Status.EOF, /value\.name/);
  });
  test("trailing bytes are ignored (unmarshal_flat), and the reader stops after the value", () => {
    const b = new Uint8Array([...Lw.encode(Item, { id: 1, mode: 1, name: "abc" }), 0xde, 0xad]);
    expect(Lw.decode(Item, b)).toEqual({ id: 1, mode: 1, name: "abc" });
    const r = new ByteReader(b);
    Lw.compile(Item).decode(r, new CodecContext());
    expect(r.pos).toBe(b.length - 2);
  });
  test("a bogus u32 count fails fast with EOF, allocating nothing", () => {
    const T = Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.UInt32() }), { length: "zero" }), { notNull: true });
    const t0 = performance.now();
    expectStatus(() => Lw.decode(T, hex("FF FF FF FF 00 00 00 01")), Status.EOF, /value: unexpected end of input/);
    expectStatus(() => Lw.decode(Lw.String({ notNull: true }), hex("FF FF FF FF 'abc'")), Status.EOF);
    expectStatus(() => Lw.decode(Lw.Array(Lw.UInt8(), { length: "zero" }), hex("7F FF FF FF")), Status.EOF);
    expect(performance.now() - t0).toBeLessThan(50);
  });
  test("pointer flags other than 00/FF and fd indicators other than 00/FF are MALFORMED", () => {
    expectStatus(() => Lw.decode(Item, hex("00 00 00 01 01 01")), Status.MALFORMED, "MALFORMED: value.name: pointer flag 1");
    expectStatus(() => Lw.decode(Lw.Struct({ f: Lw.Fd() }), hex("01")), Status.MALFORMED, /value\.f: fd indicator 1/);
  });
  test("enum values not declared are MALFORMED", () => {
    expectStatus(() => Lw.decode(List, hex("00 01 00 00 00 01 09 00")), Status.MALFORMED, "MALFORMED: value.items[0].mode: enum value 9 not declared");
  });
  test("maxAlloc on a single struct referent and on arrays → OVERFLOW before reading it", () => {
    const Big = Lw.Struct({ a: Lw.UInt32(), b: Lw.UInt32(), c: Lw.UInt64() });
    expectStatus(() => Lw.decode(Lw.Pointer(Big, { maxAlloc: 8 }), hex("FF")), Status.OVERFLOW, /referent of 16 bytes exceeds maxAlloc 8/);
    expect(Lw.decode(Lw.Pointer(Big, { maxAlloc: 16 }), hex("FF 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00 03"))).toEqual({ a: 1, b: 2, c: 3n });
    const Arr = Lw.Struct({ n: Lw.UInt32(), a: Lw.Pointer(Lw.Array(Lw.UInt32(), { length: "n" }), { maxAlloc: 8 }) });
    expectStatus(() => Lw.decode(Arr, hex("00 00 00 03 FF")), Status.OVERFLOW, /value\.a: referent of 12 bytes/);
    expect(Lw.decode(Arr, hex("00 00 00 02 FF 00 00 00 01 00 00 00 02"))).toEqual({ n: 2, a: [1, 2] });
  });
  test("negative member lengths are MALFORMED", () => {
    const T = Lw.Struct({ n: Lw.Int16(), a: Lw.Array(Lw.UInt8(), { length: "n" }) });
    expectStatus(() => Lw.decode(T, hex("FF FF")), Status.MALFORMED, /value\.a: negative length -1/);
    expectStatus(() => Lw.encode(T, { n: -1, a: new Uint8Array(0) }), Status.MALFORMED, /negative length/);
  });
});

describe("invalid schemas (INVALID_PARAMETER)", () => {
  test("a length member must be an earlier integer member of the dominating struct", () => {
    expectStatus(() => Lw.compile(Lw.Struct({ a: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" })), n: Lw.UInt8() })), Status.INVALID_PARAMETER, /length member "n" is not an earlier member/);
    expectStatus(() => Lw.compile(Lw.Struct({ n: Lw.String(), a: Lw.Array(Lw.UInt8(), { length: "n" }) })), Status.INVALID_PARAMETER, /must be an integer member/);
    expectStatus(() => Lw.compile(Lw.Array(Lw.UInt8(), { length: "n" })), Status.INVALID_PARAMETER, /no enclosing struct/);
  });
  test("a discriminator must name an earlier member", () => {
    expectStatus(() => Lw.compile(Lw.Struct({ u: Lw.Union("t", { 1: Lw.Int8() }), t: Lw.Int8() })), Status.INVALID_PARAMETER, /discriminator "t"/);
  });
  test("builders reject bad input", () => {
    expectStatus(() => Lw.Struct({ a: { type: "integer" } as never }), Status.INVALID_PARAMETER, /member a is not an Lw schema/);
    expectStatus(() => Lw.Int8({ range: [0, 300] }), Status.INVALID_PARAMETER, /exceeds the int8 bounds/);
    expectStatus(() => Lw.UInt32({ range: [5, 1] }), Status.INVALID_PARAMETER, /empty/);
    expectStatus(() => Lw.Array(Lw.UInt8(), { length: -1 }), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Array(Lw.Int16(), { length: 2, string: true }), Status.INVALID_PARAMETER, /8-bit/);
    expectStatus(() => Lw.Enum({ A: 300 }, { width: 1 }), Status.INVALID_PARAMETER, /does not fit uint8/);
    expectStatus(() => Lw.Enum({ A: 1 }, { width: 8 as never }), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Union("t", {}), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Pointer(Lw.UInt8(), { maxAlloc: 0 }), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Handle(""), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Struct({ a: Lw.Array(Lw.UInt8(), { length: "zero" }), b: Lw.UInt8() }), Status.INVALID_PARAMETER, /flexible array member/);
    expectStatus(() => Lw.encode({} as never, 1 as never), Status.INVALID_PARAMETER, /not an Lw schema/);
  });
});

describe("fast paths stay exact", () => {
  test("the per-field string memo never returns a stale string", () => {
    const T = Lw.Struct({ s: Lw.String({ notNull: true }) });
    const seq = ["alice", "alice", "alicf", "alic", "alice", "ålice", "ålice", "alice", "", "", "x".repeat(32), "x".repeat(33), "x".repeat(32), "y".repeat(32)];
    for (const s of seq) expect(Lw.decode(T, Lw.encode(T, { s })).s).toBe(s);
  });
  test("large byte arrays (chunked copies) survive at every alignment", () => {
    const T = Lw.Struct({ pad: Lw.Array(Lw.UInt8(), { length: 3 }), n: Lw.UInt32(), data: Lw.Array(Lw.UInt8(), { length: "n" }) });
    const data = Uint8Array.from({ length: 10_001 }, (_, i) => (i * 7 + 3) & 255);
    for (let off = 0; off < 20; off += 3) {
      const w = new ByteWriter(16);
      w.pos = off;
      Lw.compile(T).encode({ pad: new Uint8Array(3), n: data.length, data }, w, new CodecContext());
      const back = Lw.decode(T, w.buf.subarray(off, w.pos));
      expect(back.data).toEqual(data);
    }
  });
});

describe("encoder edge cases found in review", () => {
  test("a length member is read once: a getter that changes its answer cannot make the count disagree with the elements written", () => {
    const T = Lw.Struct({ n: Lw.UInt32(), v: Lw.Pointer(Lw.Array(Lw.UInt16(), { length: "n" }), { notNull: true }) });
    let reads = 0;
    const value = {
      get n() {
        return ++reads === 1 ? 2 : 3;
      },
      v: [7, 8, 9],
    };
    // Whatever the encoder does, the bytes must describe themselves: count, then that many elements.
    let bytes: Uint8Array | null = null;
    try {
      bytes = Lw.encode(T, value as never);
    } catch (e) {
      expect(e).toBeInstanceOf(LwMsgError); // refusing is fine; writing a lie is not
    }
    if (bytes) {
      const count = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);
      expect(bytes.length).toBe(4 + 2 * count);
    }
  });

  test("Int8Array payloads round-trip at 17 and 4096 elements, also from a view that starts inside its buffer", () => {
    const T = Lw.Struct({ n: Lw.UInt32(), v: Lw.Pointer(Lw.Array(Lw.Int8(), { length: "n" }), { notNull: true }) });
    for (const len of [16, 17, 4096]) {
      const backing = new Int8Array(len + 3);
      for (let i = 0; i < backing.length; i++) backing[i] = ((i * 37) % 256) - 128;
      const view = backing.subarray(3);
      const back = Lw.decode(T, Lw.encode(T, { n: len, v: view } as never)) as { v: ArrayLike<number> };
      expect(Array.from(back.v)).toEqual(Array.from(view));
    }
  });

  test("a ByteWriter created with no room grows instead of hanging", () => {
    const w = new ByteWriter(0);
    w.ensure(10);
    expect(w.buf.length).toBeGreaterThanOrEqual(10);
  });
});
