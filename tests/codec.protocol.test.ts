// Lw.Protocol, message typing (checked by tsc), printing and the Lw namespace surface.
import { describe, expect, test } from "bun:test";
import type { Static } from "@sinclair/typebox";
import { Lw, type MessageIn, type MessageOut } from "../lib/lw.ts";
import { Protocol } from "../lib/protocol.ts";
import { Status } from "../lib/status.ts";
import { Handle } from "../lib/handle.ts";
import { expectStatus, hex, toHex } from "./codec-helpers.ts";
import { EveryKind } from "./fixtures/codec-schemas.ts";

const OpenReq = Lw.Struct({ flags: Lw.UInt32(), path: Lw.String({ notNull: true }) });
const OpenRes = Lw.Struct({ handle: Lw.Handle("File") });
const ReadRes = Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) });
const FdRes = Lw.Struct({ fd: Lw.Fd() });

const proto = Lw.Protocol({
  OPEN_REQ: [0, OpenReq],
  OPEN_RES: [1, OpenRes],
  READ_RES: [3, ReadRes],
  PING: [5, null],
  FD_RES: [6, FdRes],
});

describe("Lw.Protocol", () => {
  test("lookups by tag and by name; holes and out-of-range tags give undefined", () => {
    expect(proto).toBeInstanceOf(Protocol);
    expect(proto.byTag(0)!.name).toBe("OPEN_REQ");
    expect(proto.byName("READ_RES")!.tag).toBe(3);
    expect(proto.byTag(2)).toBeUndefined(); // a hole: lwmsg crashed here (quirk 3)
    expect(proto.byTag(4)).toBeUndefined();
    expect(proto.byTag(99)).toBeUndefined();
    expect(proto.byTag(-1)).toBeUndefined();
    expect(proto.byName("NOPE")).toBeUndefined();
    expect(proto.tagOf("PING")).toBe(5);
    expectStatus(() => proto.tagOf("NOPE"), Status.NOT_FOUND);
    expect(proto.nameOf(6)).toBe("FD_RES");
    expect(proto.nameOf(2)).toBeUndefined();
    expect(proto.entries().map((e) => e.tag)).toEqual([0, 1, 3, 5, 6]);
  });
  test("entries carry compiled codecs and the fd/handle flags", () => {
    const ping = proto.byName("PING")!;
    expect(ping.type).toBeNull();
    expect(ping.encode).toBeNull();
    expect(ping.decode).toBeNull();
    expect(proto.byName("FD_RES")!.hasFds).toBe(true);
    expect(proto.byName("OPEN_RES")!.hasHandles).toBe(true);
    expect(proto.byName("OPEN_REQ")!.hasFds).toBe(false);
    const e = proto.byName("OPEN_REQ")!;
    expect(e.encode as unknown).toBe(Lw.compile(OpenReq).encode);
  });
  test("invalid specs are INVALID_PARAMETER", () => {
    expectStatus(() => Lw.Protocol({ A: [1, OpenReq], B: [1, null] }), Status.INVALID_PARAMETER, /tag 1 is already used by A/);
    expectStatus(() => Lw.Protocol({ A: [-1, null] }), Status.INVALID_PARAMETER, /tag -1 must be an integer in 0\.\.32767/);
    expectStatus(() => Lw.Protocol({ A: [32768, null] }), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Protocol({ A: [1.5, null] }), Status.INVALID_PARAMETER);
    expectStatus(() => Lw.Protocol({ A: [1, { type: "object" } as never] }), Status.INVALID_PARAMETER, /protocol message A type is not an Lw schema/);
    expectStatus(() => Lw.Protocol({ A: 1 as never }), Status.INVALID_PARAMETER, /expected \[tag, type \| null\]/);
    expectStatus(() => Lw.Protocol(null as never), Status.INVALID_PARAMETER);
    const Bad = Lw.Struct({ u: Lw.Union("nope", { 1: Lw.UInt8() }) });
    expectStatus(() => Lw.Protocol({ A: [1, Bad] }), Status.INVALID_PARAMETER, /protocol message A: .*discriminator "nope"/);
  });
  test("print: NAME (tag): type, one per message (lwmsg_protocol_print)", () => {
    const p = Lw.Protocol({ PING: [0, null], OPEN: [1, OpenReq] });
    expect(p.print()).toBe("PING (0)\nOPEN (1): struct <anonymous>\n    {\n        uint32 flags;\n        uint8& <string> path;\n    }");
  });
});

describe("message typing (tsc checks these)", () => {
  test("MessageOut: data follows the tag; MessageIn is discriminated by name", () => {
    type Out = MessageOut<typeof proto>;
    const a: Out = { tag: "OPEN_REQ", data: { flags: 1, path: "/etc/hosts" } };
    const b: Out = { tag: 0, data: { flags: 1, path: "/x" }, cookie: 3 };
    const c: Out = { tag: "PING" };
    const d: Out = { tag: "READ_RES", data: { size: 1, data: new Uint8Array(1) }, status: 0, flags: 4 };
    // @ts-expect-error: wrong payload for the tag
    const e: Out = { tag: "OPEN_REQ", data: { size: 1, data: new Uint8Array(1) } };
    // @ts-expect-error: unknown tag name
    const f: Out = { tag: "NOPE" };
    expect([a, b, c, d, e, f].length).toBe(6);

    const handle = (m: MessageIn<typeof proto>): string => {
      switch (m.name) {
        case "OPEN_REQ":
          return m.data.path;
        case "READ_RES":
          return String(m.data.data.length);
        case "PING":
          return String(m.data);
        default:
          return String(m.tag);
      }
    };
    expect(handle({ tag: 0, name: "OPEN_REQ", data: { flags: 0, path: "/p" }, flags: 0, status: 0, cookie: 0 })).toBe("/p");
  });
  test("Static<> of the builders", () => {
    const T = EveryKind;
    type V = Static<typeof T>;
    const v: V = {
      a: 1,
      b: 2n,
      c: null,
      d: "x",
      e: null,
      f: 3,
      g: new Uint8Array(2),
      h: [1, 2],
      i: true,
      j: null,
      k: new Handle("File", 1, 7),
      l: -1,
      m: 1,
      n: new Int8Array(3),
      o: [1, 2],
      tag: 3,
      z: "text",
    };
    // @ts-expect-error: 64-bit values are bigint
    const w: V = { ...v, b: 2 };
    expect(w.b).toBe(2 as never);
    // a non-null handle needs a session's handle table
    expectStatus(() => Lw.encode(T, v), Status.INVALID_HANDLE, /value\.k/);
    const { k: _k, ...rest } = v;
    const T2 = Lw.Struct({ ...T.properties, k: Lw.Handle("File") } as never);
    expect(Lw.decode(T2, Lw.encode(T2, { ...rest, k: null } as never))).toEqual({ ...rest, u: undefined, k: null } as never);
  });
});

describe("Lw namespace", () => {
  test("exposes every builder and the data-model functions", () => {
    for (const k of ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Bool", "Enum", "Struct", "Union", "Void", "Pointer", "Array", "String", "Fd", "Handle", "Custom", "Recursive", "Protocol", "encode", "decode", "print", "printType", "compile"]) {
      expect(typeof (Lw as Record<string, unknown>)[k]).toBe("function");
    }
  });
  test("compile returns encode/decode/hasFds/hasHandles", () => {
    const c = Lw.compile(ReadRes);
    expect(typeof c.encode).toBe("function");
    expect(typeof c.decode).toBe("function");
    expect(c.hasFds).toBe(false);
    expect(c.hasHandles).toBe(false);
  });
  test("encode returns a fresh copy every time", () => {
    const a = Lw.encode(OpenReq, { flags: 1, path: "a" });
    const b = Lw.encode(OpenReq, { flags: 2, path: "b" });
    expect(toHex(a)).toBe("00 00 00 01 00 00 00 01 61");
    expect(toHex(b)).toBe("00 00 00 02 00 00 00 01 62");
    expect(a.buffer).not.toBe(b.buffer);
  });
  test("a custom marshal callback may call Lw.encode itself", () => {
    const Inner = Lw.Struct({ x: Lw.UInt16() });
    const Wrapped = Lw.Custom({
      transmit: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }),
      marshal: (v: { x: number }) => Lw.encode(Inner, v),
      unmarshal: (b) => Lw.decode(Inner, b),
    });
    const T = Lw.Struct({ a: Lw.UInt8(), w: Wrapped });
    const bytes = Lw.encode(T, { a: 1, w: { x: 258 } });
    expect(toHex(bytes)).toBe(toHex(hex("01 00 00 00 02 01 02")));
    expect(Lw.decode(T, bytes)).toEqual({ a: 1, w: { x: 258 } });
  });
});

describe("Lw.print (lwmsg data print format)", () => {
  test("structs, nulls, strings, enums, handles, fds, unions", () => {
    const Mode = Lw.Enum({ READ: 1, WRITE: 2 }, { width: 1, masks: { SYNC: 0x10 } });
    const T = Lw.Struct({
      name: Lw.String(),
      none: Lw.String(),
      mode: Mode,
      h: Lw.Handle("File"),
      n: Lw.Handle("File"),
      fd: Lw.Fd(),
      big: Lw.UInt64(),
      ok: Lw.Bool(),
      tag: Lw.UInt8(),
      u: Lw.Union("tag", { 1: Lw.UInt32(), 2: Lw.Void() }, { names: { 1: "number", 2: "empty" } }),
    });
    const s = Lw.print(T, { name: "foo", none: null, mode: 0x12, h: new Handle("File", 1, 3), n: null, fd: 7, big: 1n << 63n, ok: true, tag: 2 });
    expect(s).toBe(
      [
        "{",
        '    name = "foo"',
        "    none = <null>",
        "    mode = WRITE | SYNC",
        "    h = <File:local[3]>",
        "    n = <null>",
        "    fd = 7",
        "    big = 9223372036854775808",
        "    ok = true",
        "    tag = 2",
        "    u = <arm:empty>",
        "}",
      ].join("\n"),
    );
  });
  test("byte arrays print as a hex+ascii block", () => {
    const T = Lw.Struct({ data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero", encoding: "hex+ascii" })) });
    const s = Lw.print(T, { data: new TextEncoder().encode("hello, world!\n0123456789") });
    expect(s).toBe(
      [
        "{",
        "    data = ",
        "    {",
        "        00000000   68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 0a 30 31  |hello, world!.01|",
        "        00000010   32 33 34 35 36 37 38 39                           |23456789|",
        "    }",
        "}",
      ].join("\n"),
    );
  });
  test("arrays of other elements print one per line; custom types print their transmitted form", () => {
    const Stamp = Lw.Custom({ transmit: Lw.UInt32(), marshal: (d: Date) => Math.floor(d.getTime() / 1000), unmarshal: (t) => new Date(t * 1000) });
    const T = Lw.Struct({ xs: Lw.Array(Lw.Int16(), { length: 2 }), at: Stamp });
    expect(Lw.print(T, { xs: [1, -2], at: new Date(5000) })).toBe("{\n    xs = \n    {\n        1\n        -2\n    }\n    at = 5\n}");
  });
  test("printType of enums, arrays and pointers", () => {
    const E = Lw.Enum({ A: 1, B: 2 }, { width: 2, masks: { M: 0x100 }, name: "my_enum" });
    const T = Lw.Struct({ e: E, a: Lw.Pointer(Lw.Array(Lw.UInt32(), { length: 4 }), { aliasable: true, sensitive: true }) }, { name: "t" });
    expect(Lw.printType(T)).toBe("struct t\n{\n    uint16 enum my_enum\n    {\n        A = 1,\n        B = 2,\n        M = 0x0100\n    } e;\n    uint32*! <length=4,sensitive> a;\n}");
  });
});
