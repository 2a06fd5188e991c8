// The public codec functions (issue 13, item 2): Lw.encode / Lw.decode reuse
// one writer, one reader and pooled contexts, so these check what reuse could
// break: a call made from inside another (Custom callbacks), results that must
// not alias the scratch buffers, fds that must not leak from one call into the
// next, and inputs on both sides of the small-input copy.
import { describe, expect, test } from "bun:test";
import { Lw } from "../lib/lw.ts";
import { Status } from "../lib/status.ts";
import { CodecContext } from "../lib/codec/io.ts";
import { expectStatus, toHex } from "./codec-helpers.ts";

const Inner = Lw.Struct({ a: Lw.UInt32(), s: Lw.String({ notNull: true }) });

describe("Lw.encode / Lw.decode reuse their buffers safely", () => {
  test("an encode called from inside a Custom marshal callback does not clobber the outer one", () => {
    // the custom type's transmitted form is the bytes of a nested Lw.encode
    const Nested = Lw.Custom({
      transmit: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }),
      marshal: (v: { a: number; s: string }) => Lw.encode(Inner, v),
      unmarshal: (b: Uint8Array) => Lw.decode(Inner, b),
    });
    const Outer = Lw.Struct({ head: Lw.String({ notNull: true }), x: Nested, y: Nested, tail: Lw.UInt16() });
    const v = { head: "outer-head", x: { a: 1, s: "first" }, y: { a: 0xdeadbeef, s: "second".repeat(50) }, tail: 0xabcd };
    const bytes = Lw.encode(Outer, v);
    // the outer bytes are exactly the concatenation the wire rules give
    const x = Lw.encode(Inner, v.x);
    const y = Lw.encode(Inner, v.y);
    const u32 = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    const want = new Uint8Array([...u32(10), ...new TextEncoder().encode("outer-head"), ...u32(x.length), ...x, ...u32(y.length), ...y, 0xab, 0xcd]);
    expect(toHex(bytes)).toBe(toHex(want));
    // and decoding, whose unmarshal decodes again from inside, gives the value back
    expect(Lw.decode(Outer, bytes)).toEqual(v);
  });

  test("results never alias the scratch buffers", () => {
    const a = Lw.encode(Inner, { a: 1, s: "aaaa" });
    const b = Lw.encode(Inner, { a: 2, s: "bbbb" });
    expect(toHex(a)).toBe("00 00 00 01 00 00 00 04 61 61 61 61");
    expect(a.buffer).not.toBe(b.buffer);
    const Bytes = Lw.Struct({ n: Lw.UInt32(), d: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" }), { notNull: true }) });
    const first = Lw.decode(Bytes, new Uint8Array([0, 0, 0, 2, 7, 8]));
    const second = Lw.decode(Bytes, new Uint8Array([0, 0, 0, 2, 9, 9]));
    expect(Array.from(first.d)).toEqual([7, 8]);
    expect(Array.from(second.d)).toEqual([9, 9]);
  });

  test("inputs on both sides of the small-input copy decode alike; trailing bytes are ignored", () => {
    const Bytes = Lw.Struct({ n: Lw.UInt32(), d: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" }), { notNull: true }) });
    for (const n of [0, 1, 1019, 1020, 1021, 5000, 70_000]) {
      const d = Uint8Array.from({ length: n }, (_, i) => (i * 7) & 255);
      const enc = Lw.encode(Bytes, { n, d });
      const padded = new Uint8Array(enc.length + 9);
      padded.set(enc, 3);
      const view = padded.subarray(3); // starts inside its buffer, 6 bytes of trailing junk
      const back = Lw.decode(Bytes, view);
      expect(back.n).toBe(n);
      expect(Buffer.from(back.d).equals(Buffer.from(d))).toBe(true);
      // a later decode must not change an earlier result, whatever path it took
      Lw.decode(Bytes, Lw.encode(Bytes, { n: 3, d: new Uint8Array([1, 2, 3]) }));
      expect(Buffer.from(back.d).equals(Buffer.from(d))).toBe(true);
    }
  });

  test("a failed call leaves nothing behind for the next one", () => {
    const S = Lw.Struct({ a: Lw.UInt8(), s: Lw.String({ notNull: true }) });
    expectStatus(() => Lw.decode(S, new Uint8Array([1, 0, 0, 0, 9, 0x61])), Status.EOF);
    expectStatus(() => Lw.encode(S, { a: 300, s: "x" }), Status.OVERFLOW);
    expect(Lw.decode(S, Lw.encode(S, { a: 1, s: "ok" }))).toEqual({ a: 1, s: "ok" });
  });

  test("fds met without a context are not carried into the next call; a given context gets them", () => {
    const F = Lw.Struct({ fd: Lw.Fd() });
    Lw.encode(F, { fd: 7 }); // no context: the fd number is dropped with the call
    const ctx = new CodecContext();
    expect(toHex(Lw.encode(F, { fd: 9 }, ctx))).toBe("ff");
    expect(ctx.fdsOut).toEqual([9]);
    // decoding an fd indicator without a context finds no fd (never one left over from another call)
    expectStatus(() => Lw.decode(F, new Uint8Array([0xff])), Status.MALFORMED, /fd indicator without a received fd/);
    const rx = new CodecContext();
    rx.fdsIn = [42];
    expect(Lw.decode(F, new Uint8Array([0xff]), rx)).toEqual({ fd: 42 });
  });
});
