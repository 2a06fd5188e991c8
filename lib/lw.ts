/**
 * The `Lw` namespace: type builders, the bare data model
 * (`encode`/`decode`/`print`, lwmsg `data_marshal_flat_alloc`,
 * `unmarshal_flat`, `print_graph_alloc`), `compile` and `Protocol`.
 *
 * ```ts
 * const Open = Lw.Struct({ mode: Lw.UInt32(), path: Lw.String({ notNull: true }) });
 * const bytes = Lw.encode(Open, { mode: 1, path: "/etc/hosts" });
 * const back = Lw.decode(Open, bytes); // { mode: 1, path: "/etc/hosts" }
 * ```
 * @module
 */
import type { Static, TSchema } from "@sinclair/typebox";
import * as T from "./types.ts";
import { compile, type CompiledCodec } from "./codec/compile.ts";
import { ByteReader, ByteWriter, CodecContext } from "./codec/io.ts";
import { printType as printWireType, printValue } from "./codec/print.ts";
import { createProtocol } from "./protocol.ts";

// Lw.encode and Lw.decode allocate nothing per call beyond their results:
// they reuse one writer, one reader and a free list of contexts. Each is taken
// out while in use and put back after, so a call made from inside another
// (a Custom marshal/unmarshal callback encoding or decoding on its own) gets
// fresh ones and cannot clobber the outer call's.
let scratchW: ByteWriter | null = null;
let scratchR: { r: ByteReader; mine: Uint8Array; view: DataView } | null = null;
const freeCtx: CodecContext[] = [];

/** Scratch buffers bigger than this are dropped after use rather than kept (they would pin memory). */
const KEEP_LIMIT = 64 * 1024;
/** Inputs up to this size are copied into the reader's own buffer (cheaper than a DataView over the caller's bytes). */
const COPY_LIMIT = 1024;

/** The context of calls given none whose type has no fds: nothing writes to it (handles are only read, and are null here). */
const NO_FDS = new CodecContext();

function takeCtx(): CodecContext {
  return freeCtx.pop() ?? new CodecContext();
}

function giveCtx(c: CodecContext): void {
  // (setting an array's length is a slow path in JSC: only when there is something to drop)
  if (c.fdsOut.length !== 0) c.fdsOut.length = 0;
  if (c.fdsIn.length !== 0) c.fdsIn.length = 0;
  if (c.fdsTaken.length !== 0) c.fdsTaken.length = 0;
  c.fdsInPos = 0;
  c.handles = null;
  if (freeCtx.length < 8) freeCtx.push(c);
}

/**
 * `lwmsg_data_marshal_flat_alloc`: encode `value` (top-level promotion as in
 * §2.4: a top-level pointer, string or handle keeps its presence byte,
 * anything else is written directly). Returns a fresh copy of the bytes. Fds
 * met on the way are pushed onto `ctx.fdsOut` when a context is given.
 */
function encode<S extends TSchema>(type: S, value: Static<S>, ctx?: CodecContext): Uint8Array {
  const c = compile(type);
  let w = scratchW;
  scratchW = null;
  if (w === null) w = new ByteWriter(256);
  const own = ctx === undefined && c.hasFds ? takeCtx() : null;
  try {
    w.pos = 0;
    c.encode(value, w, own ?? ctx ?? NO_FDS);
    return w.buf.slice(0, w.pos);
  } finally {
    if (w.buf.length <= KEEP_LIMIT) scratchW = w;
    if (own !== null) giveCtx(own);
  }
}

/**
 * `lwmsg_data_unmarshal_flat`: decode one value from the start of `bytes`
 * (trailing bytes are ignored). Received fds, if any, come from
 * `ctx.fdsIn`. The value never refers to `bytes` (byte arrays are copies).
 * What it may build is capped by `ctx.maxDecodedBytes` (default 1 MiB + 64
 * per input byte; beyond it MEMORY, before allocating), and
 * `ctx.decodedBytes` tells what it charged (SECURITY.md §4).
 */
function decode<S extends TSchema>(type: S, bytes: Uint8Array, ctx?: CodecContext): Static<S> {
  const c = compile(type);
  let sr = scratchR;
  scratchR = null;
  if (sr === null) {
    const mine = new Uint8Array(COPY_LIMIT);
    const r = new ByteReader(mine);
    sr = { r, mine, view: r.view };
  }
  const { r, mine } = sr;
  const n = bytes.length;
  const own = ctx === undefined && c.hasFds ? takeCtx() : null;
  try {
    if (n <= COPY_LIMIT) {
      // small input: copy it into the reader's own buffer (its DataView is reused) rather than build a DataView per call
      mine.set(bytes);
      r.reset(mine, 0, n);
    } else r.reset(bytes, 0, n);
    return c.decode(r, own ?? ctx ?? NO_FDS) as Static<S>;
  } finally {
    if (r.buf !== mine) {
      // keep no reference to the caller's bytes
      r.buf = mine;
      r.view = sr.view;
    }
    scratchR = sr;
    if (own !== null) giveCtx(own);
  }
}

/** `lwmsg_data_print_graph_alloc`: a human-readable dump of `value` (format in reference §2.6). */
function print<S extends TSchema>(type: S, value: Static<S>): string {
  return printValue(T.wireOf(type), value);
}

/** `lwmsg_type_print_spec_alloc`: print the type itself. */
function printType(type: TSchema): string {
  return printWireType(T.wireOf(type));
}

/** The compiled codec of a schema (built once, cached on the schema). */
function compileSchema<S extends TSchema>(type: S): CompiledCodec<Static<S>> {
  return compile<Static<S>>(type);
}

/** Everything in one namespace object: `Lw.Struct(...)`, `Lw.encode(...)`, `Lw.Protocol(...)`. */
export const Lw = {
  Int8: T.Int8,
  Int16: T.Int16,
  Int32: T.Int32,
  Int64: T.Int64,
  UInt8: T.UInt8,
  UInt16: T.UInt16,
  UInt32: T.UInt32,
  UInt64: T.UInt64,
  Bool: T.Bool,
  Enum: T.Enum,
  Struct: T.Struct,
  Union: T.Union,
  Void: T.Void,
  Pointer: T.Pointer,
  Array: T.Array,
  String: T.String,
  Fd: T.Fd,
  Handle: T.Handle,
  Custom: T.Custom,
  Recursive: T.Recursive,
  Protocol: createProtocol,
  encode,
  decode,
  print,
  printType,
  compile: compileSchema,
  /** The wire description of a schema. */
  wireOf: T.wireOf,
} as const;

export type { CompiledCodec } from "./codec/compile.ts";
export type { WireType, LwSchema } from "./types.ts";
export { Protocol, type ProtocolEntry, type MessageIn, type MessageOut } from "./protocol.ts";
