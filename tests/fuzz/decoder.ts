/**
 * Decoder fuzzing: `Lw.decode(schema, bytes)` on random bytes and on
 * mutations of valid encodings, for every schema of {@link schemas}.
 *
 * The oracle. A decode either returns a value, or throws an `LwMsgError`
 * whose status is one lwmsg's unmarshaller can give (reference §2.3, §2.6,
 * §3.6, §6.3, §8):
 *  - MALFORMED: bad data — pointer presence byte or fd indicator other than
 *    00/FF, unknown union tag, enum value not declared, RANGE or VERIFY
 *    failure, NULL where NOT_NULL, alias id registered for another type,
 *    negative member length; and (this port, documented in io.ts) an FF fd
 *    indicator with no fd left, where lwmsg returns the odd PENDING.
 *  - EOF: the input ends before the type does ("premature end of input").
 *  - OVERFLOW: MAX_ALLOC exceeded, a length that cannot be a size, and (this
 *    port) recursive types nested deeper than the codec's limit.
 *  - UNDERFLOW: declared, handled alongside OVERFLOW, never produced; allowed.
 *  - INVALID_HANDLE: handle locality/id/type checks (§6.3).
 *  - MEMORY: lwmsg's allocation failure; this port gives it for counts of
 *    zero-width elements that no input could bound (compile.ts).
 * plus, per schema, the statuses its own callbacks return (`extra`).
 * Anything else — TypeError, RangeError, a plain Error, another status — is
 * a failure. A value that decodes must print, and re-encode without a
 * non-LwMsgError; when it re-encodes (and holds no handles) decoding the new
 * bytes must give an equal value. The reader must never run past its end,
 * and a generated valid encoding must decode to the value it came from. In
 * the huge-count sweep and corpus replays, the array slots a decode
 * preallocates are counted and must stay within {@link allocBound}.
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../../lib/lw.ts";
import { LwMsgError, Status, statusShortName } from "../../lib/status.ts";
import { ByteReader, CodecContext } from "../../lib/codec/io.ts";
import { COST, MAX_DEPTH, PREALLOC_MAX, defaultDecodeBudget } from "../../lib/codec/runtime.ts";
import type { WireType } from "../../lib/types.ts";
import { schemas, schemaByName, type SchemaEntry } from "./schemas.ts";
import { HandleWorld, Skip, recsOf, validEncoding } from "./gen.ts";
import { layoutOf, type Field } from "./layout.ts";
import { mutate, randomBytes } from "./mutate.ts";
import { Rng, mixSeed } from "./rng.ts";

export const DECODE_STATUSES: ReadonlySet<number> = new Set([Status.MALFORMED, Status.EOF, Status.OVERFLOW, Status.UNDERFLOW, Status.INVALID_HANDLE, Status.MEMORY]);

/** Random schemas per run (codec.property.test.ts style), next to the fixed ones. */
export const RANDOM_SCHEMAS = 300;

/** First fake fd number handed to the decoder (they are never real fds here). */
const FAKE_FD = 1_000_000;

export interface DecoderInput {
  schema: string;
  bytes: Uint8Array;
  /** How many (fake) fds are queued for the decoder. */
  fdsIn: number;
  /** Decode with the receiver session's handle table (else: no table, non-NULL handles are INVALID_HANDLE). */
  handles: boolean;
  /** A generated valid encoding of `value` (stricter oracle: must decode to it), with the fd numbers it holds. */
  valid?: { value: unknown; fds: number[] };
}

export interface DecoderResult {
  /** "ok" or the status name. */
  outcome: string;
  /** Set when the oracle failed. */
  failure?: string;
  ms: number;
}

interface Prepared {
  entry: SchemaEntry;
  wire: WireType;
  recs: Map<string, WireType>;
  hasHandles: boolean;
  hasMaxAlloc: boolean;
  pool: { bytes: Uint8Array; fields: Field[]; fds: number[]; value: unknown }[];
}

function hasMaxAlloc(w: WireType, seen = new Set<WireType>()): boolean {
  if (seen.has(w)) return false;
  seen.add(w);
  switch (w.kind) {
    case "pointer":
      return w.maxAlloc !== undefined || hasMaxAlloc(w.to, seen);
    case "struct":
      return w.members.some((m) => hasMaxAlloc(m.type, seen));
    case "union":
      return w.arms.some((a) => hasMaxAlloc(a.type, seen));
    case "array":
      return hasMaxAlloc(w.of, seen);
    case "custom":
      return hasMaxAlloc(w.transmit, seen);
    case "rec":
      return hasMaxAlloc(w.type, seen);
    default:
      return false;
  }
}

/** Plain-data description of a thrown value, for reports. */
export function describeError(e: unknown): string {
  if (e instanceof LwMsgError) return `LwMsgError(${statusShortName(e.status)}): ${e.message}`;
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}`;
  return `non-Error thrown: ${String(e)}`;
}

export class DecoderFuzzer {
  readonly world = new HandleWorld();
  private prepared = new Map<string, Prepared>();
  private sinceReset = 0;

  prepare(entry: SchemaEntry, rng: Rng): Prepared {
    let p = this.prepared.get(entry.name);
    if (!p) {
      const wire = Lw.wireOf(entry.T);
      p = { entry, wire, recs: recsOf(wire), hasHandles: Lw.compile(entry.T).hasHandles, hasMaxAlloc: hasMaxAlloc(wire), pool: [] };
      this.prepared.set(entry.name, p);
    }
    if (p.pool.length < 12 || rng.chance(0.02)) {
      try {
        const v = validEncoding(entry.T, rng, { handles: this.world }, entry.samples);
        const item = { bytes: v.bytes, fields: layoutOf(p.wire, p.recs, v.bytes), fds: v.fds, value: v.value };
        if (p.pool.length < 12) p.pool.push(item);
        else p.pool[rng.below(p.pool.length)] = item;
      } catch (e) {
        if (!(e instanceof Skip)) throw e;
      }
    }
    return p;
  }

  /** Build case `index` of a run seeded with `seed`. */
  makeCase(seed: number, index: number): DecoderInput & { kind: string; ops: string[] } {
    const rng = new Rng(mixSeed(seed, 0xdec0de, index));
    // a quarter of the cases use one of RANDOM_SCHEMAS random schemas of this run
    const entry = rng.chance(0.25) ? schemaByName(`random.${seed >>> 0}.${rng.below(RANDOM_SCHEMAS)}`) : schemas[rng.below(schemas.length)]!;
    const p = this.prepare(entry, rng);
    const handles = rng.chance(0.7);
    const k = rng.float();
    if (p.pool.length === 0 || k < 0.15) {
      return { schema: entry.name, bytes: randomBytes(rng), fdsIn: rng.int(0, 3), handles, kind: "random", ops: [] };
    }
    const base = rng.pick(p.pool);
    if (k < 0.2) return { schema: entry.name, bytes: base.bytes, fdsIn: base.fds.length, handles: true, kind: "valid", ops: [], valid: { value: base.value, fds: base.fds } };
    const other = () => {
      const q = rng.chance(0.7) ? p : this.prepare(schemas[rng.below(schemas.length)]!, rng);
      return q.pool.length ? rng.pick(q.pool).bytes : randomBytes(rng);
    };
    const m = mutate(rng, base.bytes, base.fields, other);
    // fds: as many as the valid encoding had, sometimes fewer or more
    const fdsIn = rng.chance(0.7) ? base.fds.length : Math.max(0, base.fds.length + rng.int(-2, 2));
    return { schema: entry.name, bytes: m.bytes, fdsIn, handles, kind: "mutant", ops: m.ops };
  }

  /** Run one input through the oracle. */
  run(input: DecoderInput): DecoderResult {
    if (++this.sinceReset >= 5000) {
      // proxies made by fuzzed REMOTE ids would otherwise pile up in the receiver's table
      this.world.resetReceiver();
      this.sinceReset = 0;
    }
    const entry = schemaByName(input.schema);
    const T = entry.T;
    const codec = Lw.compile(T);
    // a valid encoding is checked against a receiver table that fuzzed input has not touched
    if (input.valid) this.world.resetReceiver();
    const ctx = new CodecContext(input.handles ? this.world.receiver : null);
    if (input.valid) ctx.fdsIn = input.valid.fds.slice();
    else for (let i = 0; i < input.fdsIn; i++) ctx.fdsIn.push(FAKE_FD + i);
    const r = new ByteReader(input.bytes);
    const t0 = performance.now();
    let value: unknown;
    try {
      value = codec.decode(r, ctx);
    } catch (e) {
      const ms = performance.now() - t0;
      if (!(e instanceof LwMsgError)) return { outcome: "THROW", failure: `decode threw ${describeError(e)}`, ms };
      const name = statusShortName(e.status);
      if (!DECODE_STATUSES.has(e.status) && !(entry.extra ?? []).includes(e.status)) return { outcome: name, failure: `decode failed with a status the unmarshaller never gives: ${describeError(e)}`, ms };
      if (input.valid && !(e.status === Status.OVERFLOW && this.prepared.get(entry.name)?.hasMaxAlloc)) {
        return { outcome: name, failure: `a valid encoding failed to decode: ${describeError(e)}`, ms };
      }
      return { outcome: name, ms };
    }
    if (r.pos > input.bytes.length) return { outcome: "ok", failure: `decoder read past the end: pos ${r.pos} > ${input.bytes.length}`, ms: performance.now() - t0 };
    if (ctx.fdsInPos > ctx.fdsIn.length) return { outcome: "ok", failure: `decoder took ${ctx.fdsInPos} fds of ${ctx.fdsIn.length}`, ms: performance.now() - t0 };
    const failure = this.checkValue(T, value, input, codec.hasHandles, JSON.stringify(codec.wire).includes('"kind":"custom"'));
    return { outcome: "ok", ms: performance.now() - t0, ...(failure ? { failure } : {}) };
  }

  /** A decoded value prints, re-encodes (or fails with an LwMsgError) and decodes back equal. */
  private checkValue(T: TSchema, value: unknown, input: DecoderInput, hasHandles: boolean, hasCustom: boolean): string | undefined {
    try {
      const s = Lw.print(T as never, value as never);
      if (typeof s !== "string") return `print returned ${typeof s}`;
    } catch (e) {
      if (!(e instanceof LwMsgError)) return `print of a decoded value threw ${describeError(e)}`;
    }
    const out = new CodecContext(input.handles ? this.world.receiver : null);
    let bytes: Uint8Array;
    try {
      bytes = Lw.encode(T as never, value as never, out);
    } catch (e) {
      if (!(e instanceof LwMsgError)) return `re-encoding a decoded value threw ${describeError(e)}`;
      // handles may not go back the way they came (LOCAL_FOR_SENDER/RECEIVER): INVALID_HANDLE is right then, and
      // custom callbacks may unmarshal what they do not marshal; anything else that decodes must encode again
      // (strings included: what the encoder refuses, the decoder refuses)
      if (!hasHandles && (input.valid || !hasCustom)) return `re-encoding a decoded${input.valid ? " valid" : ""} value failed: ${describeError(e)}`;
      return undefined;
    }
    if (hasHandles) return undefined; // handles change sides on the way back; their checks are live.ts's
    const back = new CodecContext();
    back.fdsIn = out.fdsOut.slice();
    let again: unknown;
    try {
      again = Lw.decode(T as never, bytes, back);
    } catch (e) {
      // The default decoded-size budget grows with the input, and zero-size elements re-encode to nothing,
      // so it may refuse what it accepted the first time.
      if (e instanceof LwMsgError && e.status === Status.MEMORY) return undefined;
      return `decode(encode(decode(x))) failed: ${describeError(e)}`;
    }
    if (!Bun.deepEquals(again, value, true)) return "decode(encode(decode(x))) differs from decode(x)";
    if (input.valid && !Bun.deepEquals(value, input.valid.value, true)) return "a valid encoding decoded to a different value";
    return undefined;
  }
}

/** Per-kind and per-outcome counters. */
export class Tally {
  cases = 0;
  byKind = new Map<string, number>();
  byOutcome = new Map<string, number>();
  maxMs = 0;
  maxCase = "";
  add(kind: string, outcome: string, ms: number, label: string): void {
    this.cases++;
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    this.byOutcome.set(outcome, (this.byOutcome.get(outcome) ?? 0) + 1);
    if (ms > this.maxMs) {
      this.maxMs = ms;
      this.maxCase = label;
    }
  }
}

/** Replay a saved decoder input: the oracle must hold and, if pinned, the outcome must be the pinned one. Returns the failure or null. */
export function replayDecoder(f: DecoderFuzzer, e: { schema: string; fdsIn: number; handles: boolean; pin?: string }, bytes: Uint8Array): string | null {
  const { value: r, total } = withArrayProbe(() => f.run({ schema: e.schema, bytes, fdsIn: e.fdsIn, handles: e.handles }));
  if (r.failure) return r.failure;
  if (total > allocBound(bytes.length)) return `preallocated ${total} array slots for ${bytes.length} input bytes (bound ${allocBound(bytes.length)})`;
  if (e.pin !== undefined && r.outcome !== e.pin) return `outcome ${r.outcome}, pinned ${e.pin}`;
  return null;
}

export interface DecoderFailure {
  index: number;
  input: DecoderInput;
  kind: string;
  ops: string[];
  outcome: string;
  failure: string;
}

/** Cases `from..to-1` of a run seeded with `seed`; failures are deduplicated by schema and message shape. */
export function runDecoderBatch(f: DecoderFuzzer, seed: number, from: number, to: number, tally: Tally, failures: Map<string, DecoderFailure>): void {
  for (let i = from; i < to; i++) {
    const c = f.makeCase(seed, i);
    const r = f.run(c);
    tally.add(c.kind, r.outcome, r.ms, `${c.schema} #${i}`);
    if (r.failure) {
      const key = `${c.schema}|${r.failure.replace(/\d+/g, "N").slice(0, 120)}`;
      if (!failures.has(key)) failures.set(key, { index: i, input: c, kind: c.kind, ops: c.ops, outcome: r.outcome, failure: r.failure });
    }
  }
}

/**
 * Run `fn` with `Array` wrapped, so every `new Array(n)` a generated decoder
 * makes is seen (the generated code looks `Array` up globally at run time).
 * Returns the largest n and the sum of all n.
 */
export function withArrayProbe<T>(fn: () => T): { value: T; biggest: number; total: number } {
  const RealArray = Array;
  let biggest = 0;
  let total = 0;
  const probe = new Proxy(RealArray, {
    construct(target, args, newTarget) {
      if (args.length === 1 && typeof args[0] === "number") {
        if (args[0] > biggest) biggest = args[0];
        total += args[0];
      }
      return Reflect.construct(target, args, newTarget);
    },
  });
  (globalThis as { Array: ArrayConstructor }).Array = probe;
  try {
    return { value: fn(), biggest, total };
  } finally {
    (globalThis as { Array: ArrayConstructor }).Array = RealArray;
  }
}

/**
 * Array slots one decode may preallocate for `inputBytes` of input: every
 * array allocated at once is charged to the decoded-size budget first (at
 * least COST.SLOT per slot, against the default budget for that input), and
 * at most PREALLOC_MAX slots per array are claimed before its elements exist
 * (nesting is bounded by MAX_DEPTH).
 */
export function allocBound(inputBytes: number): number {
  return defaultDecodeBudget(inputBytes) / COST.SLOT + PREALLOC_MAX * MAX_DEPTH;
}

export interface SweepResult {
  cases: number;
  /** Array slots a decode preallocated, relative to {@link allocBound} of its input (must stay ≤ 1). */
  worstRatio: number;
  worst: string;
  maxMs: number;
  failures: string[];
  byOutcome: Map<string, number>;
}

const HUGE = [0xffffffff, 0x7fffffff, 0x80000000, 0x10000, 0xffff] as const;

/**
 * Every count, length member and alias id of valid encodings of every schema
 * set huge (2^32-1, 2^31-1, 2^31, 65536, 65535, the bytes left + 1, the
 * field's maximum): the decode must fail (or succeed) without allocating
 * more than the input can back. Checked directly: while these decodes run,
 * `Array` is wrapped so every `new Array(n)` the generated code makes is
 * seen, and n may not exceed what the decoded-size budget allows.
 */
export function sweepCounts(f: DecoderFuzzer, seed: number, perSchema: number, extraSchemas: string[] = []): SweepResult {
  const res: SweepResult = { cases: 0, worstRatio: 0, worst: "", maxMs: 0, failures: [], byOutcome: new Map() };
  const rng = new Rng(mixSeed(seed, 0x5eeb));
  const entries = [...schemas, ...extraSchemas.map((n) => schemaByName(n))];
  for (const entry of entries) {
    let p = f.prepare(entry, rng);
    for (let tries = 0; p.pool.length < perSchema && tries < 4 * perSchema; tries++) p = f.prepare(entry, rng);
    for (let k = 0; k < perSchema && k < p.pool.length; k++) {
      const base = p.pool[k]!;
      for (const field of base.fields) {
        if (field.kind !== "count" && field.kind !== "length" && field.kind !== "alias" && field.kind !== "hid") continue;
        const remaining = base.bytes.length - (field.off + field.size);
        const max = 2n ** BigInt(field.size * 8) - 1n;
        for (const v of [...HUGE.map(BigInt), BigInt(remaining + 1), max, max >> 1n]) {
          const bytes = base.bytes.slice();
          let x = v & max;
          for (let i = field.size - 1; i >= 0; i--) {
            bytes[field.off + i] = Number(x & 0xffn);
            x >>= 8n;
          }
          const { value: r, total } = withArrayProbe(() => f.run({ schema: entry.name, bytes, fdsIn: base.fds.length, handles: true }));
          res.cases++;
          res.byOutcome.set(r.outcome, (res.byOutcome.get(r.outcome) ?? 0) + 1);
          if (r.ms > res.maxMs) res.maxMs = r.ms;
          const ratio = total / allocBound(bytes.length);
          if (ratio > res.worstRatio) {
            res.worstRatio = ratio;
            res.worst = `${entry.name}: ${total} array slots from ${bytes.length} bytes (${field.kind} at ${field.off} = ${v})`;
          }
          if (r.failure) res.failures.push(`${entry.name} ${field.kind}@${field.off}=${v}: ${r.failure}`);
          if (ratio > 1) res.failures.push(`${entry.name} ${field.kind}@${field.off}=${v}: ${total} array slots preallocated from ${bytes.length} input bytes (bound ${allocBound(bytes.length)})`);
        }
      }
    }
  }
  return res;
}
