// Strings are never changed on the way through (issue 15, item 4): lwmsg
// strings are raw bytes, so what is not valid in the declared encoding, or
// holds a NUL, is MALFORMED naming the field; exact bytes (`bytes: true`),
// latin1/ascii and 16-bit code units (`ucs-2`/`utf-16`, pbis's LWMSG_PWSTR)
// are there for what C really sends.
import { describe, expect, test } from "bun:test";
import { Lw } from "../lib/lw.ts";
import { Status } from "../lib/status.ts";
import { expectStatus, hex, toHex } from "./codec-helpers.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);
/** A pstr payload: FF, u32 count, the bytes. */
const pstr = (bytes: number[] | Uint8Array) => new Uint8Array([0xff, 0, 0, bytes.length >> 8, bytes.length & 255, ...bytes]);

describe("UTF-8 strings (the default)", () => {
  const Open = Lw.Struct({ mode: Lw.UInt8(), path: Lw.String() });
  const open = (bytes: number[]) => new Uint8Array([1, ...pstr(bytes)]);

  test("a Latin-1 name from C (caf\\xe9) is MALFORMED naming the field, never U+FFFD", () => {
    expectStatus(() => Lw.decode(Open, open([0x63, 0x61, 0x66, 0xe9])), Status.MALFORMED, /value\.path: invalid UTF-8 at byte 3 of 4 \(0xe9\).*bytes: true/);
    // distinct names would otherwise collapse into one
    expectStatus(() => Lw.decode(Open, open([0x63, 0x61, 0x66, 0xe8])), Status.MALFORMED, /value\.path/);
  });

  test("an embedded NUL is MALFORMED on decode, as on encode (a C receiver would read \"a\")", () => {
    expectStatus(() => Lw.decode(Open, open([0x61, 0, 0x62])), Status.MALFORMED, /value\.path: string contains NUL at byte 1/);
    expectStatus(() => Lw.encode(Open, { mode: 1, path: "a\0b" }), Status.MALFORMED, /value\.path: string contains NUL/);
    // long strings take the other path
    expectStatus(() => Lw.decode(Open, open([...utf8("é".repeat(30)), 0, 0x41])), Status.MALFORMED, /NUL at byte 60/);
  });

  test("every kind of invalid UTF-8 is refused, in short and long strings", () => {
    const bad: [string, number[]][] = [
      ["lone continuation", [0x80]],
      ["overlong NUL", [0xc0, 0x80]],
      ["overlong 3-byte", [0xe0, 0x80, 0xaf]],
      ["UTF-8-encoded surrogate", [0xed, 0xa0, 0x80]],
      ["truncated 3-byte", [0xe2, 0x82]],
      ["beyond U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
      ["0xff", [0xff]],
    ];
    for (const [what, seq] of bad) {
      for (const pad of [0, 40]) {
        const bytes = [...utf8("x".repeat(pad)), ...seq, 0x41];
        const e = expectStatus(() => Lw.decode(Open, open(bytes)), Status.MALFORMED, /value\.path: invalid UTF-8/);
        expect(e.message, what).toContain(`at byte ${pad} of ${bytes.length}`);
      }
    }
  });

  test("valid UTF-8 decodes exactly, a literal U+FFFD included", () => {
    for (const s of ["café", "\uFFFD", "a\uFFFDb".repeat(20), "😀 ok", "x".repeat(100), "日本語のファイル名.txt"]) {
      expect(Lw.decode(Open, Lw.encode(Open, { mode: 1, path: s }))).toEqual({ mode: 1, path: s });
    }
  });

  test("a memoized string does not let a later NUL or bad byte through", () => {
    const T = Lw.String({ notNull: true });
    expect(Lw.decode(T, hex("00000003 'abc'"))).toBe("abc");
    expectStatus(() => Lw.decode(T, hex("00000003 61 00 63")), Status.MALFORMED, /NUL/);
    expectStatus(() => Lw.decode(T, hex("00000003 61 e9 63")), Status.MALFORMED, /invalid UTF-8/);
    expect(Lw.decode(T, hex("00000003 'abc'"))).toBe("abc");
  });

  test("static- and member-length text are checked the same way", () => {
    const Static = Lw.Struct({ name: Lw.Array(Lw.UInt8(), { length: 6, string: true }) });
    expect(Lw.decode(Static, hex("'ab' 00 ff ff ff"))).toEqual({ name: "ab" }); // after the NUL: padding, as in C
    expectStatus(() => Lw.decode(Static, hex("'ab' e9 00 00 00")), Status.MALFORMED, /value\.name: invalid UTF-8 at byte 2 of 3/);
    const Counted = Lw.Struct({ n: Lw.UInt8(), name: Lw.Array(Lw.UInt8(), { length: "n", string: true }) });
    expectStatus(() => Lw.decode(Counted, hex("03 'a' 00 'b'")), Status.MALFORMED, /value\.name: string contains NUL/);
    expectStatus(() => Lw.decode(Counted, hex("02 c3 28")), Status.MALFORMED, /value\.name: invalid UTF-8/);
  });

  test("a JS string with a lone surrogate is MALFORMED on encode (UTF-8 has no form for it)", () => {
    expectStatus(() => Lw.encode(Open, { mode: 1, path: "a\uD800b" }), Status.MALFORMED, /value\.path: string has a lone surrogate at index 1/);
    expectStatus(() => Lw.encode(Open, { mode: 1, path: "x".repeat(40) + "\uDC00" }), Status.MALFORMED, /lone surrogate at index 40/);
    // a pair is fine
    expect(toHex(Lw.encode(Lw.String(), "\uD83D\uDE00"))).toBe("ff 00 00 00 04 f0 9f 98 80");
  });
});

describe("bytes: true — the exact bytes as a Uint8Array", () => {
  const Open = Lw.Struct({ path: Lw.String({ bytes: true }), mode: Lw.UInt8() });

  test("takes what C sends, byte for byte, and sends it back unchanged", () => {
    const raw = new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0xff, 0x80]);
    const wire = new Uint8Array([...pstr(raw), 2]);
    const v = Lw.decode(Open, wire);
    expect(v.path).toBeInstanceOf(Uint8Array);
    expect(Array.from(v.path!)).toEqual(Array.from(raw));
    expect(toHex(Lw.encode(Open, v))).toBe(toHex(wire));
  });

  test("same wire as the string form; null is 00; a NUL is refused both ways", () => {
    expect(toHex(Lw.encode(Lw.String({ bytes: true }), utf8("café")))).toBe(toHex(Lw.encode(Lw.String(), "café")));
    expect(Lw.decode(Open, hex("00 01"))).toEqual({ path: null, mode: 1 });
    expectStatus(() => Lw.decode(Open, hex("ff 00000003 61 00 62 01")), Status.MALFORMED, /value\.path: string contains NUL at byte 1/);
    expectStatus(() => Lw.encode(Open, { path: new Uint8Array([1, 0, 2]), mode: 1 }), Status.MALFORMED, /value\.path: string bytes contain NUL at byte 1/);
    expectStatus(() => Lw.encode(Open, { path: "text" as never, mode: 1 }), Status.MALFORMED, /expected a Uint8Array/);
  });

  test("a decoded value is a copy, not a view into the input", () => {
    const wire = new Uint8Array([...pstr([0x41, 0x42]), 0]);
    const v = Lw.decode(Open, wire);
    wire[5] = 0x5a;
    expect(Array.from(v.path!)).toEqual([0x41, 0x42]);
  });

  test("prints printable ASCII as is and escapes the rest", () => {
    expect(Lw.print(Lw.String({ bytes: true, notNull: true }), new Uint8Array([0x63, 0x61, 0x66, 0xe9]))).toBe('"caf\\xe9"');
  });
});

describe("LWMSG_ATTR_ENCODING", () => {
  test("ucs-2: uint16 elements, big-endian, the count in elements (pbis's LWMSG_PWSTR)", () => {
    const W = Lw.String({ encoding: "ucs-2" });
    // FF, u32 count 2, 0068 00E9 — no terminator on the wire
    expect(toHex(Lw.encode(W, "hé"))).toBe("ff 00 00 00 02 00 68 00 e9");
    expect(Lw.decode(W, hex("ff 00000002 0068 00e9"))).toBe("hé");
    // exactly what lwmsg writes for LWMSG_POINTER(LWMSG_UINT16) + ZERO_TERMINATED holding those code units
    const Units = Lw.Pointer(Lw.Array(Lw.UInt16(), { length: "zero" }));
    const s = "日本😀";
    expect(toHex(Lw.encode(W, s))).toBe(toHex(Lw.encode(Units, Array.from({ length: s.length }, (_, i) => s.charCodeAt(i)))));
    expect(Lw.decode(W, Lw.encode(W, s))).toBe(s);
    expect(Lw.printType(W)).toBe("uint16* <string,encoding=ucs-2>");
  });

  test("ucs-2: code units travel exactly (a lone surrogate too); a 0 unit is MALFORMED; odd bytes are EOF", () => {
    const W = Lw.Struct({ w: Lw.String({ encoding: "utf-16", notNull: true }) });
    expect(Lw.decode(W, Lw.encode(W, { w: "a\uD800" }))).toEqual({ w: "a\uD800" });
    expectStatus(() => Lw.encode(W, { w: "a\0" }), Status.MALFORMED, /value\.w: string contains NUL at index 1/);
    expectStatus(() => Lw.decode(W, hex("00000002 0061 0000")), Status.MALFORMED, /value\.w: string contains NUL at element 1/);
    expectStatus(() => Lw.decode(W, hex("00000002 0061 00")), Status.EOF);
    // a long one goes through the chunked path
    const long = Array.from({ length: 10000 }, (_, i) => String.fromCharCode(1 + (i * 7919) % 0xfffe)).join("");
    expect(Lw.decode(W, Lw.encode(W, { w: long }))).toEqual({ w: long });
  });

  test("ucs-2: maxAlloc counts (count + 1) 16-bit elements, as lwmsg allocates", () => {
    const W = Lw.String({ encoding: "ucs-2", maxAlloc: 8 });
    expect(Lw.decode(W, Lw.encode(W, "abc"))).toBe("abc");
    expectStatus(() => Lw.decode(W, Lw.encode(Lw.String({ encoding: "ucs-2" }), "abcd")), Status.OVERFLOW, /10 bytes exceeds maxAlloc 8/);
  });

  test("latin1: one byte per character, both ways; what latin1 cannot hold is MALFORMED", () => {
    const L = Lw.Struct({ name: Lw.String({ encoding: "latin1" }) });
    expect(Lw.decode(L, hex("ff 00000004 'caf' e9"))).toEqual({ name: "café" });
    expect(toHex(Lw.encode(L, { name: "café" }))).toBe("ff 00 00 00 04 63 61 66 e9");
    expectStatus(() => Lw.encode(L, { name: "€" }), Status.MALFORMED, /value\.name: character U\+20AC at index 0 is not latin1/);
    expectStatus(() => Lw.decode(L, hex("ff 00000002 61 00")), Status.MALFORMED, /value\.name: string contains NUL/);
    // true ISO-8859-1, not windows-1252: 0x80 is U+0080
    expect(Lw.decode(L, hex("ff 00000001 80"))).toEqual({ name: "\u0080" });
  });

  test("ascii: bytes above 0x7f are MALFORMED both ways", () => {
    const A = Lw.String({ encoding: "ascii", notNull: true });
    expect(Lw.decode(A, hex("00000002 'ok'"))).toBe("ok");
    expectStatus(() => Lw.decode(A, hex("00000002 'o' e9")), Status.MALFORMED, /byte 0xe9 at 1 is not ascii/);
    expectStatus(() => Lw.encode(A, "é"), Status.MALFORMED, /not ascii/);
  });

  test("encodings that cannot round-trip, or do not fit the elements, are INVALID_PARAMETER when the type is built", () => {
    expectStatus(() => Lw.String({ encoding: "koi8-r" }), Status.INVALID_PARAMETER, /koi8-r.*bytes: true/);
    expectStatus(() => Lw.Array(Lw.UInt8(), { length: 8, string: true, encoding: "ucs-2" }), Status.INVALID_PARAMETER, /uint16 elements/);
    expectStatus(() => Lw.Array(Lw.UInt16(), { length: 8, string: true, encoding: "ucs-2" }), Status.INVALID_PARAMETER, /zero-terminated/);
    expectStatus(() => Lw.Array(Lw.UInt16(), { length: "zero", string: true }), Status.INVALID_PARAMETER, /8-bit integer elements/);
    // a wire description from JSON is checked when compiled
    const wire = JSON.parse(JSON.stringify(Lw.String({ encoding: "latin1" })));
    wire["x-lwmsg"].to.encoding = "ebcdic";
    expectStatus(() => Lw.compile(wire), Status.INVALID_PARAMETER, /ebcdic/);
    // the spellings pbis uses work
    for (const e of ["UCS-2LE", "UCS-2BE", "utf-16", "ISO-8859-1", "US-ASCII", "UTF-8", ""]) expect(() => Lw.String({ encoding: e })).not.toThrow();
  });
});
