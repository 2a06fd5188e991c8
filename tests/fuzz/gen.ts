/**
 * Valid values for any `Lw` schema, generated from its wire description, so
 * the fuzzer has valid encodings of every schema to mutate. Lengths and
 * discriminators are chosen first (as lwmsg reads them from the dominating
 * struct), handles come from a pair of sessions (sender/receiver) whose
 * tables agree, customs are built by unmarshalling a generated transmitted
 * value, and recursive aliasable types close into cycles.
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../../lib/lw.ts";
import { LwMsgError } from "../../lib/status.ts";
import { ByteReader, CodecContext } from "../../lib/codec/io.ts";
import { analyze } from "../../lib/codec/analyze.ts";
import { Session } from "../../lib/session.ts";
import { Handle } from "../../lib/handle.ts";
import type { WireType, WireStruct, WireInt, WireEnum } from "../../lib/types.ts";
import { testProtocol } from "../fixtures/protocol.ts";
import { Rng } from "./rng.ts";

/** A value could not be generated (e.g. a non-null handle without sessions); pick another case. */
export class Skip extends Error {}

// ---------------------------------------------------------------------------
// roles of struct members: which are lengths, which discriminate unions

export interface Roles {
  /** Members used as a length by some array in the struct's dominion. */
  lengths: Set<string>;
  /** Members used as a discriminator: the arm tags of every union that uses them. */
  tags: Map<string, number[][]>;
}

/** What the members of `s` are used for by the types it dominates (through pointers, unions, arrays of non-structs, recursion). */
export function rolesOf(s: WireStruct, recs: Map<string, WireType>): Roles {
  const roles: Roles = { lengths: new Set(), tags: new Map() };
  const guard = new Set<string>();
  const walk = (w: WireType): void => {
    switch (w.kind) {
      case "union": {
        const l = roles.tags.get(w.discrim) ?? [];
        l.push(w.arms.map((a) => a.tag));
        roles.tags.set(w.discrim, l);
        for (const a of w.arms) walk(a.type);
        break;
      }
      case "pointer":
        walk(w.to);
        break;
      case "array":
        if (w.length.term === "member") roles.lengths.add(w.length.member);
        if (w.of.kind !== "struct") walk(w.of);
        break;
      case "rec":
      case "ref":
        if (!guard.has(w.id)) {
          guard.add(w.id);
          walk(recs.get(w.id)!);
        }
        break;
      default:
        break;
    }
  };
  for (const m of s.members) walk(m.type);
  return roles;
}

/** Recursive roots of a wire tree by id (as the codec's analysis finds them). */
export function recsOf(w: WireType): Map<string, WireType> {
  return analyze(w).recs;
}

// ---------------------------------------------------------------------------
// handles: a sender and a receiver session whose tables agree

const noTransport = {
  call(): Promise<never> {
    return Promise.reject(new Error("fuzz session: no calls"));
  },
};

export const HANDLE_TYPES = ["Obj", "IntFunction", "CounterHandle", "FileHandle", "File"] as const;
const PER_TYPE = 4;

/**
 * Handles that encode on the sender's session and decode on the receiver's:
 * the receiver registered `PER_TYPE` local handles of every type (ids
 * sequential from 0), the sender holds proxies for them (sent as the
 * receiver's LOCAL) and local handles of its own (sent as REMOTE for the
 * receiver, which makes a proxy). `resetReceiver()` starts a fresh receiver
 * table with the same ids, so proxies made by fuzzed input cannot pile up.
 */
export class HandleWorld {
  sender: Session;
  receiver!: Session;
  private senderLocal = new Map<string, Handle[]>();
  private senderRemote = new Map<string, Handle[]>();
  constructor() {
    this.sender = new Session(testProtocol, "outgoing", noTransport);
    this.resetReceiver();
    HANDLE_TYPES.forEach((t, k) => {
      const remote: Handle[] = [];
      const local: Handle[] = [];
      for (let i = 0; i < PER_TYPE; i++) {
        const id = k * PER_TYPE + i;
        const b = new Uint8Array([1, 0, 0, 0, 0]);
        new DataView(b.buffer).setUint32(1, id);
        remote.push(this.sender.readHandle(new ByteReader(b), t, 0, false) as Handle);
        local.push(this.sender.registerHandle(t, { t, i }));
      }
      this.senderRemote.set(t, remote);
      this.senderLocal.set(t, local);
    });
  }
  resetReceiver(): void {
    this.receiver = new Session(testProtocol, "incoming", noTransport);
    for (const t of HANDLE_TYPES) for (let i = 0; i < PER_TYPE; i++) this.receiver.registerHandle(t, { t, i });
  }
  /** A non-null handle of `typeName` that satisfies the LOCAL_FOR_* `flags` (1 = for receiver, 2 = for sender). */
  make(rng: Rng, typeName: string, flags: number): Handle {
    const local = this.senderLocal.get(typeName);
    const remote = this.senderRemote.get(typeName);
    if (!local || !remote) throw new Skip(`no handles of type ${typeName}`);
    const useRemote = (flags & 1) !== 0 ? true : (flags & 2) !== 0 ? false : rng.chance(0.5);
    return rng.pick(useRemote ? remote : local);
  }
}

// ---------------------------------------------------------------------------
// values

export interface GenOptions {
  /** Handles to use; null: only NULL handles (non-null ones → Skip). */
  handles: HandleWorld | null;
  /** Recursion depth beyond which lengths go to 0 and nullable pointers to null. */
  maxDepth?: number;
  /** Upper bound for free counts (zero-terminated arrays). */
  maxCount?: number;
}

type Env = Map<string, number>;

const INT_EDGES = (w: WireInt): bigint[] => {
  const bits = BigInt(w.width * 8);
  const lo = w.signed ? -(1n << (bits - 1n)) : 0n;
  const hi = w.signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  return [lo, hi, 0n, 1n, w.signed ? -1n : 2n, lo + 1n, hi - 1n];
};

function randomString(rng: Rng, maxBytes: number): string {
  let s = "";
  let bytes = 0;
  const n = rng.size(Math.min(maxBytes, 48));
  while (bytes < n) {
    const k = rng.float();
    let ch: string;
    if (k < 0.8) ch = String.fromCharCode(rng.int(1, 127));
    else if (k < 0.9) ch = String.fromCharCode(rng.int(0x80, 0x7ff));
    else if (k < 0.97) ch = String.fromCharCode(rng.int(0x800, 0xd7ff));
    else ch = String.fromCodePoint(rng.int(0x10000, 0x10ffff));
    const len = Buffer.byteLength(ch);
    if (bytes + len > n) break;
    s += ch;
    bytes += len;
  }
  return s;
}

class ValueGen {
  private depth = 0;
  private readonly recObjs = new Map<string, object[]>();
  private readonly shared = new Map<WireType, unknown[]>();
  /** The value being generated is the referent of an aliasable pointer. */
  private aliasTarget = false;
  constructor(
    readonly rng: Rng,
    readonly recs: Map<string, WireType>,
    readonly opts: GenOptions,
  ) {}

  private get deep(): boolean {
    return this.depth >= (this.opts.maxDepth ?? 4);
  }

  intValue(w: WireInt, want?: number): number | bigint {
    const rng = this.rng;
    const big = w.width === 8;
    let lo: bigint, hi: bigint;
    if (w.range) {
      lo = BigInt(w.range[0]);
      hi = BigInt(w.range[1]);
    } else [lo, hi] = [INT_EDGES(w)[0]!, INT_EDGES(w)[1]!];
    let v: bigint;
    if (want !== undefined) v = BigInt(want);
    else if (rng.chance(0.3)) v = rng.pick(INT_EDGES(w));
    else {
      const span = hi - lo + 1n;
      const r = (BigInt(rng.u32()) << 32n) | BigInt(rng.u32());
      v = lo + (r % span);
    }
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return big ? v : Number(v);
  }

  enumValue(w: WireEnum): number {
    const rng = this.rng;
    const vals = Object.values(w.values);
    const masks = Object.values(w.masks);
    for (let tries = 0; tries < 20; tries++) {
      let v = vals.length ? rng.pick(vals) : 0;
      for (const m of masks) if (rng.chance(0.4)) v |= m;
      v = w.signed ? (w.width === 4 ? v | 0 : v) : w.width === 4 ? v >>> 0 : v;
      if (!w.range || (v >= w.range[0] && v <= w.range[1])) return v;
    }
    throw new Skip("no enum value in range");
  }

  /** A value for a member used as a length (count) or a discriminator (tag). */
  control(w: WireType, role: "length" | number[]): { value: unknown; n: number } {
    const rng = this.rng;
    let n: number;
    if (role === "length") n = this.deep ? 0 : rng.chance(0.1) ? rng.int(5, this.opts.maxCount ?? 24) : rng.int(0, 4);
    else n = rng.pick(role);
    switch (w.kind) {
      case "bool":
        n = Math.min(n, 1);
        return { value: n === 1, n };
      case "enum": {
        if (role === "length") throw new Skip("enum length");
        return { value: n, n };
      }
      case "int": {
        if (w.range) {
          const lo = Number(w.range[0]);
          const hi = Number(w.range[1]);
          if (n < lo || n > hi) {
            if (role !== "length") throw new Skip("tag out of range");
            n = Math.max(lo, 0);
            if (n > hi) throw new Skip("no count in range");
          }
        }
        const v = this.intValue(w, n);
        return { value: v, n: Number(v) };
      }
      default:
        throw new Skip(`control member of kind ${w.kind}`);
    }
  }

  value(w: WireType, env: Env | null): unknown {
    const rng = this.rng;
    if (w.kind !== "rec" && w.kind !== "ref") this.aliasTarget = false;
    switch (w.kind) {
      case "int":
        return this.intValue(w);
      case "enum":
        return this.enumValue(w);
      case "bool":
        return rng.chance(0.5);
      case "void":
        return undefined;
      case "fd":
        return rng.chance(0.3) ? -1 : rng.int(3, 1000);
      case "handle": {
        if (!w.notNull && (this.opts.handles === null || rng.chance(0.3))) return null;
        if (this.opts.handles === null) throw new Skip("non-null handle without sessions");
        return this.opts.handles.make(rng, w.typeName, w.flags);
      }
      case "struct":
        return this.struct(w, null);
      case "union": {
        const t = env?.get(w.discrim);
        const arm = w.arms.find((a) => a.tag === t);
        if (!arm) throw new Skip(`no arm for tag ${t}`);
        return this.value(arm.type, env);
      }
      case "pointer": {
        if (w.aliasable) {
          const prev = this.shared.get(w.to);
          if (prev && prev.length && (this.deep || rng.chance(0.25))) return rng.pick(prev);
        }
        if (!w.notNull && (this.deep ? rng.chance(0.9) : rng.chance(0.15))) return null;
        if (w.aliasable && this.deep) {
          const id = w.to.kind === "ref" || w.to.kind === "rec" ? w.to.id : null;
          const objs = id ? this.recObjs.get(id) : undefined;
          if (objs && objs.length) return rng.pick(objs);
        }
        this.depth++;
        try {
          // only an object behind an aliasable pointer may be shared (an inline struct is always a copy on the wire)
          this.aliasTarget = w.aliasable;
          const v = this.value(w.to, env);
          // a nullable pointer to something whose JS value is null/undefined (void, an inner pointer) reads as NULL
          if (!w.notNull && (v === null || v === undefined)) return null;
          if (w.aliasable && v !== null && typeof v === "object") {
            let l = this.shared.get(w.to);
            if (!l) this.shared.set(w.to, (l = []));
            l.push(v);
          }
          return v;
        } finally {
          this.depth--;
        }
      }
      case "array":
        return this.array(w, env);
      case "custom": {
        const t = this.value(w.transmit, null);
        if (!w.unmarshal) return t;
        try {
          return w.unmarshal(t);
        } catch {
          throw new Skip("custom unmarshal refused the generated value");
        }
      }
      case "rec":
      case "ref": {
        const id = w.id;
        const body = this.recs.get(id)!;
        const shared = this.aliasTarget;
        this.aliasTarget = false;
        if (body.kind === "struct" && shared) {
          // the object exists before its members, so an aliasable pointer further down can close a cycle
          const shell: Record<string, unknown> = {};
          let l = this.recObjs.get(id);
          if (!l) this.recObjs.set(id, (l = []));
          l.push(shell);
          return this.struct(body, shell);
        }
        return this.value(body, env);
      }
    }
  }

  struct(w: WireStruct, into: Record<string, unknown> | null): Record<string, unknown> {
    const roles = rolesOf(w, this.recs);
    const env: Env = new Map();
    const out = into ?? {};
    for (const m of w.members) {
      const tagSets = roles.tags.get(m.name);
      let v: unknown;
      if (tagSets) {
        // a tag every union on this member knows
        let common = tagSets[0]!;
        for (const s of tagSets.slice(1)) common = common.filter((t) => s.includes(t));
        if (common.length === 0) throw new Skip("no common tag");
        const c = this.control(m.type, common);
        v = c.value;
        env.set(m.name, c.n);
      } else if (roles.lengths.has(m.name)) {
        const c = this.control(m.type, "length");
        v = c.value;
        env.set(m.name, c.n);
      } else v = this.value(m.type, env);
      out[m.name] = v;
    }
    return out;
  }

  array(w: Extract<WireType, { kind: "array" }>, env: Env | null): unknown {
    const rng = this.rng;
    let n: number;
    if (w.length.term === "static") n = w.length.count;
    else if (w.length.term === "member") {
      const v = env?.get(w.length.member);
      if (v === undefined) throw new Skip("length member not set");
      n = v;
    } else n = this.deep ? 0 : rng.chance(0.1) ? rng.int(5, this.opts.maxCount ?? 24) : rng.int(0, 4);
    if (w.string) {
      if (w.bytes) return Uint8Array.from(rng.bytes(rng.int(0, 24)), (b) => b || 1);
      if (w.of.kind === "int" && w.of.width === 2) return String.fromCharCode(...Array.from({ length: rng.int(0, 24) }, () => rng.int(1, 0xffff)));
      const max = w.encoding === "latin1" ? 255 : w.encoding === "ascii" ? 127 : 0;
      if (max) return String.fromCharCode(...Array.from({ length: rng.int(0, 24) }, () => rng.int(1, max)));
      if (w.length.term === "zero") return randomString(rng, 64);
      if (w.length.term === "static") return randomString(rng, n);
      let s = "";
      for (let i = 0; i < n; i++) s += String.fromCharCode(rng.int(1, 127));
      return s;
    }
    const of = w.of;
    if (of.kind === "int" && of.width === 1 && !of.range && !of.verify) {
      const b = rng.bytes(n);
      return of.signed ? new Int8Array(b.buffer) : b;
    }
    const items: unknown[] = [];
    this.depth++;
    try {
      for (let i = 0; i < n; i++) items.push(this.value(of, env));
    } finally {
      this.depth--;
    }
    if (of.kind === "int" && of.width === 1) return of.signed ? Int8Array.from(items as number[]) : Uint8Array.from(items as number[]);
    return items;
  }
}

/** A valid value of `T` (throws {@link Skip} when none can be made with these options). */
export function generateValue(T: TSchema, rng: Rng, opts: GenOptions): unknown {
  const w = Lw.wireOf(T);
  const g = new ValueGen(rng, recsOf(w), opts);
  return g.value(w, null);
}

/** Encode a generated value: the bytes, and the fds the encoder met (the generated, fake numbers). `samples`: known-good values to fall back on (schemas whose verify callbacks random values rarely pass). */
export function validEncoding(T: TSchema, rng: Rng, opts: GenOptions, samples: readonly unknown[] = []): { value: unknown; bytes: Uint8Array; fds: number[] } {
  const attempt = (value: unknown) => {
    const ctx = new CodecContext(opts.handles?.sender ?? null);
    try {
      const bytes = Lw.encode(T as never, value as never, ctx);
      return { value, bytes, fds: ctx.fdsOut.slice() };
    } catch (e) {
      if (e instanceof LwMsgError) return null; // e.g. a verify callback said no
      throw e;
    }
  };
  for (let tries = 0; tries < 6; tries++) {
    let value: unknown;
    try {
      value = generateValue(T, rng, opts);
    } catch (e) {
      if (e instanceof Skip) continue;
      throw e;
    }
    const r = attempt(value);
    if (r) return r;
  }
  if (samples.length) {
    const r = attempt(rng.pick(samples));
    if (r) return r;
  }
  throw new Skip("no valid value");
}
