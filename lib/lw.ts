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

// One scratch writer for Lw.encode; a nested call (e.g. from a custom marshal callback) gets its own.
let scratch: ByteWriter | null = null;

/**
 * `lwmsg_data_marshal_flat_alloc`: encode `value` (top-level promotion as in
 * §2.4: a top-level pointer, string or handle keeps its presence byte,
 * anything else is written directly). Returns a fresh copy of the bytes. Fds
 * met on the way are pushed onto `ctx.fdsOut` when a context is given.
 */
function encode<S extends TSchema>(type: S, value: Static<S>, ctx: CodecContext = new CodecContext()): Uint8Array {
  const c = compile(type);
  let w = scratch;
  scratch = null;
  if (w === null) w = new ByteWriter(256);
  try {
    w.pos = 0;
    c.encode(value, w, ctx);
    return w.buf.slice(0, w.pos);
  } finally {
    // keep big buffers from pinning memory
    if (w.buf.length <= 64 * 1024) scratch = w;
  }
}

/**
 * `lwmsg_data_unmarshal_flat`: decode one value from the start of `bytes`
 * (trailing bytes are ignored). Received fds, if any, come from
 * `ctx.fdsIn`.
 */
function decode<S extends TSchema>(type: S, bytes: Uint8Array, ctx: CodecContext = new CodecContext()): Static<S> {
  const c = compile(type);
  return c.decode(new ByteReader(bytes), ctx) as Static<S>;
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
