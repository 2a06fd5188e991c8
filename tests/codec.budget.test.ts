// The decoded-size budget (issue 16, item 1, decoder part): every decode
// charges what it builds (objects, array slots, string and byte lengths, at
// the costs in codec/runtime.ts COST) against one budget, before allocating
// it, and reports what it charged; over the budget is MEMORY.
import { describe, expect, test } from "bun:test";
import { Lw } from "../lib/lw.ts";
import { Status } from "../lib/status.ts";
import { CodecContext } from "../lib/codec/io.ts";
import { COST, DECODE_BUDGET_FLOOR, DECODE_BUDGET_PER_BYTE, defaultDecodeBudget } from "../lib/codec/runtime.ts";
import { expectStatus } from "./codec-helpers.ts";

/** Run `fn` with `new Array(n)` / `Array(n)` watched; returns its result and the largest n asked for. */
function watchArrays<T>(fn: () => T): { value: T; biggest: number } {
  const RealArray = Array;
  let biggest = 0;
  const probe = new Proxy(RealArray, {
    construct(target, args) {
      if (args.length === 1 && typeof args[0] === "number") biggest = Math.max(biggest, args[0]);
      return Reflect.construct(target, args);
    },
    apply(target, self, args) {
      if (args.length === 1 && typeof args[0] === "number") biggest = Math.max(biggest, args[0]);
      return Reflect.apply(target, self, args);
    },
  });
  (globalThis as { Array: ArrayConstructor }).Array = probe;
  try {
    return { value: fn(), biggest };
  } finally {
    (globalThis as { Array: ArrayConstructor }).Array = RealArray;
  }
}

const ctxWith = (max: number) => {
  const c = new CodecContext();
  c.maxDecodedBytes = max;
  return c;
};

describe("the amplifying request: 64 KiB of 1-byte structs", () => {
  const Req = Lw.Struct({ items: Lw.Pointer(Lw.Array(Lw.Struct({ a: Lw.UInt8() }), { length: "zero" }), { notNull: true }) });
  const n = 64 * 1024;
  const wire = Lw.encode(Req, { items: Array.from({ length: n }, (_, i) => ({ a: i & 255 })) });

  test("costs its realistic decoded size, about 48× its wire size", () => {
    const ctx = new CodecContext();
    const v = Lw.decode(Req, wire, ctx);
    expect(v.items.length).toBe(n);
    // the outer struct, the array, and per element a slot plus an object with one member
    const want = COST.OBJECT + COST.SLOT + COST.ARRAY + n * (COST.SLOT + COST.OBJECT + COST.SLOT);
    expect(ctx.decodedBytes).toBe(want);
    const ratio = ctx.decodedBytes / wire.length;
    expect(ratio).toBeGreaterThan(40);
    expect(ratio).toBeLessThan(DECODE_BUDGET_PER_BYTE); // so the default budget takes it
  });

  test("a cap below that is MEMORY, before the array is allocated; at the cost it decodes", () => {
    const full = new CodecContext();
    Lw.decode(Req, wire, full);
    const { biggest } = watchArrays(() => expectStatus(() => Lw.decode(Req, wire, ctxWith(full.decodedBytes - 1)), Status.MEMORY, /value\.items: decoding it would exceed the decoded-size budget of \d+ bytes/));
    expect(biggest).toBe(0); // refused on the count, nothing allocated
    expect(Lw.decode(Req, wire, ctxWith(full.decodedBytes)).items.length).toBe(n);
    // a tight cap, as a hardened server would set it: 1 MiB refuses this 64 KiB request
    expectStatus(() => Lw.decode(Req, wire, ctxWith(1 << 20)), Status.MEMORY);
  });

  test("the default budget is 1 MiB + 64 per input byte", () => {
    expect(defaultDecodeBudget(wire.length)).toBe(DECODE_BUDGET_FLOOR + DECODE_BUDGET_PER_BYTE * wire.length);
    expect(Lw.decode(Req, wire).items.length).toBe(n);
  });
});

describe("what is charged", () => {
  test("objects, slots, strings and byte arrays, exactly as documented", () => {
    const T = Lw.Struct({ a: Lw.UInt32(), s: Lw.String(), big: Lw.Int64(), b: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "a" }), { notNull: true }) });
    const ctx = new CodecContext();
    Lw.decode(T, Lw.encode(T, { a: 5, s: "héllo", big: 1n, b: new Uint8Array(5) }), ctx);
    const struct = COST.OBJECT + 4 * COST.SLOT + COST.BIGINT;
    expect(ctx.decodedBytes).toBe(struct + (COST.STRING + 6) + (COST.BYTES + 5));
    // a NULL pointer charges nothing beyond its slot; 16-bit text charges 2 per code unit
    const U = Lw.Struct({ p: Lw.Pointer(Lw.Struct({ x: Lw.UInt8() })), w: Lw.String({ encoding: "ucs-2", notNull: true }) });
    Lw.decode(U, Lw.encode(U, { p: null, w: "abc" }), ctx);
    expect(ctx.decodedBytes).toBe(COST.OBJECT + 2 * COST.SLOT + COST.STRING + 6);
    Lw.decode(U, Lw.encode(U, { p: { x: 1 }, w: "" }), ctx);
    expect(ctx.decodedBytes).toBe(COST.OBJECT + 2 * COST.SLOT + (COST.OBJECT + COST.SLOT) + COST.STRING);
  });

  test("a long string or byte array is refused on its length, before it is copied", () => {
    const S = Lw.Struct({ s: Lw.String({ notNull: true }), b: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "zero" }), { notNull: true }) });
    const wire = Lw.encode(S, { s: "x".repeat(100_000), b: new Uint8Array(10) });
    expectStatus(() => Lw.decode(S, wire, ctxWith(50_000)), Status.MEMORY, /value\.s: decoding it would exceed the decoded-size budget of 50000 bytes/);
    const wire2 = Lw.encode(S, { s: "x", b: new Uint8Array(100_000) });
    expectStatus(() => Lw.decode(S, wire2, ctxWith(50_000)), Status.MEMORY, /value\.b:/);
  });

  test("one budget per decode: nested arrays and recursive types draw on the same one", () => {
    const Grid = Lw.Struct({ rows: Lw.Pointer(Lw.Array(Lw.Pointer(Lw.Array(Lw.UInt16(), { length: "zero" }), { notNull: true }), { length: "zero" }), { notNull: true }) });
    const v = { rows: Array.from({ length: 100 }, () => Array.from({ length: 100 }, (_, i) => i)) };
    const wire = Lw.encode(Grid, v as never);
    const ctx = new CodecContext();
    Lw.decode(Grid, wire, ctx);
    const want = COST.OBJECT + COST.SLOT + COST.ARRAY + 100 * COST.SLOT + 100 * (COST.ARRAY + 100 * COST.SLOT);
    expect(ctx.decodedBytes).toBe(want);
    expectStatus(() => Lw.decode(Grid, wire, ctxWith(want - 1)), Status.MEMORY, /value\.rows\[99\]/);
    const List = Lw.Recursive((Self) => Lw.Struct({ n: Lw.Int32(), next: Lw.Pointer(Self) }));
    let list: { n: number; next: unknown } | null = null;
    for (let i = 0; i < 1000; i++) list = { n: i, next: list };
    const lw = Lw.encode(List, list as never);
    const lc = new CodecContext();
    Lw.decode(List, lw, lc);
    expect(lc.decodedBytes).toBe(1000 * (COST.OBJECT + 2 * COST.SLOT));
    expectStatus(() => Lw.decode(List, lw, ctxWith(999 * (COST.OBJECT + 2 * COST.SLOT))), Status.MEMORY);
  });

  test("elements that take no bytes are bounded by the budget alone, charged before the array exists", () => {
    const Voids = Lw.Struct({ n: Lw.UInt32(), v: Lw.Pointer(Lw.Array(Lw.Void(), { length: "n" }), { notNull: true }) });
    // 10 bytes claiming 2^30 voids: refused at once under the default budget, nothing allocated
    const { biggest } = watchArrays(() => expectStatus(() => Lw.decode(Voids, new Uint8Array([0x40, 0, 0, 0])), Status.MEMORY, /value\.v/));
    expect(biggest).toBeLessThanOrEqual(64);
    // what fits the budget decodes
    const ok = Lw.decode(Voids, new Uint8Array([0, 1, 0, 0]));
    expect(ok.v.length).toBe(65536);
  });
});

describe("the budget's bookkeeping", () => {
  test("decodedBytes is per decode; a failed decode leaves the context usable", () => {
    const T = Lw.Struct({ s: Lw.String({ notNull: true }) });
    const ctx = new CodecContext();
    Lw.decode(T, Lw.encode(T, { s: "abc" }), ctx);
    expect(ctx.decodedBytes).toBe(COST.OBJECT + COST.SLOT + COST.STRING + 3);
    ctx.maxDecodedBytes = 10;
    expectStatus(() => Lw.decode(T, Lw.encode(T, { s: "abc" }), ctx), Status.MEMORY);
    ctx.maxDecodedBytes = -1;
    Lw.decode(T, Lw.encode(T, { s: "a" }), ctx);
    expect(ctx.decodedBytes).toBe(COST.OBJECT + COST.SLOT + COST.STRING + 1);
  });

  test("a decode run from inside a custom callback of the same codec keeps the outer decode's budget", () => {
    const Leaf = Lw.Struct({ x: Lw.UInt8() });
    let nested = true;
    const Wrap: any = Lw.Struct({
      // the first time, unmarshal decodes a whole (empty) Wrap with the same codec: its own budget and count
      a: Lw.Custom({ transmit: Lw.UInt8(), unmarshal: (b: number): unknown => (nested ? ((nested = false), Lw.decode(Wrap, new Uint8Array([b, 0, 0, 0, 0]))) : b) }),
      leaves: Lw.Pointer(Lw.Array(Leaf, { length: "zero" }), { notNull: true }),
    });
    const wire = Lw.encode(Wrap, { a: 7, leaves: [{ x: 1 }, { x: 2 }] });
    const cost = COST.OBJECT + 2 * COST.SLOT + COST.ARRAY + 2 * (COST.SLOT + COST.OBJECT + COST.SLOT);
    const ctx = ctxWith(cost - 1);
    expectStatus(() => Lw.decode(Wrap, wire, ctx), Status.MEMORY, /value\.leaves/);
    expect(nested).toBe(false); // the nested decode ran (and succeeded) before the outer one ran out
    nested = true;
    ctx.maxDecodedBytes = cost;
    const v = Lw.decode(Wrap, wire, ctx);
    expect(v.a).toEqual({ a: 7, leaves: [] });
    expect(ctx.decodedBytes).toBe(cost);
  });
});
