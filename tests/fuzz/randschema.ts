/**
 * Random schemas for the decoder fuzzer, as codec.property.test.ts makes
 * them (structs with length and discriminator members, unions inline and
 * behind pointers, counted/zero-terminated/static arrays, flexible members,
 * aliasable and maxAlloc pointers, handles, fds, recursion), so the
 * generated codecs get shapes no hand-written schema has. A schema is named
 * `random.<seed>.<k>` and rebuilt from that name alone (corpus replays).
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../../lib/lw.ts";
import { LwMsgError } from "../../lib/status.ts";
import { Rng, mixSeed } from "./rng.ts";
import { HANDLE_TYPES } from "./gen.ts";

type R = Rng;

function intT(rng: R): TSchema {
  const k = rng.pick(["Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32", "Int64", "UInt64"] as const);
  if (rng.chance(0.15) && !k.endsWith("64")) {
    const signed = k.startsWith("Int");
    const bits = { Int8: 8, UInt8: 8, Int16: 16, UInt16: 16, Int32: 32, UInt32: 32 }[k as "Int8"];
    const lo = signed ? -(2 ** (bits - 1)) : 0;
    const hi = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    const a = rng.int(lo, Math.floor((lo + hi) / 2));
    return (Lw[k] as (o: object) => TSchema)({ range: [a, rng.int(a, hi)] });
  }
  return (Lw[k] as () => TSchema)();
}

function enumT(rng: R): TSchema {
  const width = rng.pick([1, 2, 4] as const);
  const values: Record<string, number> = {};
  for (let i = rng.int(0, 4); i > 0; i--) values[`V${i}`] = rng.int(0, 15);
  const masks: Record<string, number> = {};
  const nm = Object.keys(values).length === 0 ? rng.int(1, 3) : rng.int(0, 2);
  for (let i = 0; i < nm; i++) masks[`M${i}`] = 1 << (4 + i + (width === 1 ? 0 : 4));
  return Lw.Enum(values, { width, masks, signed: width === 4 && rng.chance(0.2) });
}

function leaf(rng: R): TSchema {
  return rng.weighted<() => TSchema>([
    [30, () => intT(rng)],
    [10, () => enumT(rng)],
    [5, () => Lw.Bool()],
    [5, () => Lw.Fd()],
    [15, () => Lw.String(rng.chance(0.4) ? { notNull: true } : rng.chance(0.2) ? { maxAlloc: rng.int(1, 64) } : {})],
    [5, () => Lw.Handle(rng.pick(HANDLE_TYPES), rng.pick([{}, { notNull: true }, { localForSender: true }, { localForReceiver: true }]))],
    [3, () => Lw.Void()],
  ])();
}

function any(rng: R, depth: number): TSchema {
  if (depth <= 0) return leaf(rng);
  return rng.weighted<() => TSchema>([
    [30, () => leaf(rng)],
    [25, () => struct(rng, depth - 1)],
    [12, () => Lw.Pointer(any(rng, depth - 1), { notNull: rng.chance(0.4), aliasable: rng.chance(0.2) })],
    [15, () => Lw.Pointer(Lw.Array(any(rng, depth - 1), { length: rng.chance(0.6) ? "zero" : rng.int(0, 4) }), { notNull: rng.chance(0.3), aliasable: rng.chance(0.15), ...(rng.chance(0.15) ? { maxAlloc: rng.int(1, 200) } : {}) })],
    [5, () => Lw.Pointer(Lw.Array(Lw.UInt8(), { length: rng.chance(0.5) ? "zero" : rng.int(0, 40) }), { notNull: true })],
    [4, () => Lw.Recursive((Self) => Lw.Struct({ v: leaf(rng), next: Lw.Pointer(Self, { aliasable: rng.chance(0.3) }) }))],
  ])();
}

function struct(rng: R, depth: number): TSchema {
  const members: Record<string, TSchema> = {};
  let flexible: (() => void) | null = null;
  let id = 0;
  for (let n = rng.int(1, 5); n > 0; n--) {
    const k = rng.float();
    const i = id++;
    if (k < 0.5 || depth <= 0) members[`f${i}`] = any(rng, depth);
    else if (k < 0.75) {
      // a length member and an array counted by it (behind a pointer, or the flexible last member)
      members[`n${i}`] = rng.pick([Lw.UInt8(), Lw.UInt16(), Lw.UInt32(), Lw.Int32(), Lw.UInt64(), Lw.Int16()]);
      const el = rng.chance(0.3) ? Lw.UInt8() : any(rng, depth - 1);
      if (flexible === null && rng.chance(0.3)) flexible = () => (members[`a${i}`] = Lw.Array(el, { length: `n${i}` }));
      else members[`a${i}`] = Lw.Pointer(Lw.Array(el, { length: `n${i}` }), { notNull: rng.chance(0.5) });
    } else {
      // a discriminator and a union on it (inline or behind a pointer); arms may be void or use an outer length
      members[`c${i}`] = Lw.UInt16();
      members[`t${i}`] = rng.pick([Lw.Int8(), Lw.UInt16(), Lw.UInt32(), Lw.Bool(), Lw.Enum({ A: 1, B: 4, C: 7 }, { width: 1 })]);
      const arms: Record<number, TSchema> = {};
      const tags = [0, 1, 4, 7].filter(() => rng.chance(0.7));
      if (tags.length === 0) tags.push(1);
      for (const t of tags) {
        arms[t] = rng.weighted<() => TSchema>([
          [20, () => Lw.Void()],
          [20, () => Lw.Pointer(Lw.Array(struct(rng, depth - 1), { length: `c${i}` }))],
          [60, () => any(rng, depth - 1)],
        ])();
      }
      const U = Lw.Union(`t${i}`, arms);
      members[`u${i}`] = rng.chance(0.3) ? Lw.Pointer(U, { notNull: true }) : U;
    }
  }
  (flexible as (() => void) | null)?.();
  return Lw.Struct(members);
}

const cache = new Map<string, TSchema>();

/** The random schema `random.<seed>.<k>` (cached; INVALID_PARAMETER combinations are skipped by drawing again). */
export function randomSchema(seed: number, k: number): TSchema {
  const name = `random.${seed}.${k}`;
  let T = cache.get(name);
  if (T) return T;
  const rng = new Rng(mixSeed(seed, 0x5c4e3a, k));
  for (let tries = 0; ; tries++) {
    try {
      T = struct(rng, rng.int(1, 3));
      Lw.compile(T);
      break;
    } catch (e) {
      if (!(e instanceof LwMsgError) || tries > 50) throw e;
    }
  }
  cache.set(name, T);
  return T;
}

/** Parse `random.<seed>.<k>`. */
export function parseRandomName(name: string): { seed: number; k: number } | null {
  const m = /^random\.(\d+)\.(\d+)$/.exec(name);
  return m ? { seed: Number(m[1]), k: Number(m[2]) } : null;
}
