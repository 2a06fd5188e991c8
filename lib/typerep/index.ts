/**
 * Type and protocol representations (`lwmsg_type_rep_*`,
 * `lwmsg_protocol_*_rep`): the form of a type, or of a whole protocol, that
 * travels with data (archives embed it) so a reader can decode it without
 * the program that wrote it, and lwmsg's assignable check between an old
 * writer's type and a new reader's.
 *
 * ```ts
 * const bytes = encodeTypeRep(typeToRep(MyStruct));      // lwmsg's bytes
 * const Again = typeFromRep(decodeTypeRep(bytes));        // a working Lw schema
 * checkAssignable(typeToRep(NewStruct), decodeTypeRep(bytes)); // MALFORMED if not
 * ```
 * @module
 */
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../lw.ts";
import { Protocol, type ProtocolSpec } from "../protocol.ts";
import { LwMsgError, Status, statusShortName } from "../status.ts";
import { wireOf } from "../types.ts";
import { checkAssignable } from "./assign.ts";
import { RepBuilder } from "./from-schema.ts";
import { ProtocolRepSpec, TypeRepSpec, type ProtocolMessageRep, type ProtocolRep, type TypeRep } from "./schema.ts";
import { schemaFromRep } from "./to-schema.ts";

export { checkAssignable } from "./assign.ts";
export { Kind as TypeRepKind, RepFlags as TypeRepFlags, TypeRepSpec, ProtocolRepSpec } from "./schema.ts";
export type { TypeRep, ProtocolRep, ProtocolMessageRep, IntegerDefRep, EnumDefRep, StructDefRep, UnionDefRep, VariantRep, FieldRep, ArmRep } from "./schema.ts";
export { MAX_DEPTH as TYPE_REP_MAX_DEPTH, MAX_NODES as TYPE_REP_MAX_NODES } from "./to-schema.ts";

/** The message of an error without the `STATUS: ` prefix `LwMsgError` adds (for wrapping it in another). */
export function errorDetail(e: unknown): string {
  if (e instanceof LwMsgError) {
    const p = `${statusShortName(e.status)}: `;
    return e.message.startsWith(p) ? e.message.slice(p.length) : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

/** `lwmsg_type_rep_from_spec`: the rep of an `Lw` schema. */
export function typeToRep(schema: TSchema): TypeRep {
  return new RepBuilder().build(wireOf(schema));
}

/** `lwmsg_type_spec_from_rep`: a working `Lw` schema from a rep; MALFORMED for reps that describe no valid type. */
export function typeFromRep(rep: TypeRep): TSchema {
  return schemaFromRep(rep);
}

/** Marshal a type rep as lwmsg does (`lwmsg_type_rep_spec`: a u32 object id, then the rep). */
export function encodeTypeRep(rep: TypeRep | null): Uint8Array {
  return Lw.encode(TypeRepSpec, rep as never);
}

function decodeRep<T>(what: string, decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof LwMsgError) throw new LwMsgError(Status.MALFORMED, `bad ${what}: ${errorDetail(e)}`, { cause: e });
    if (e instanceof RangeError) throw new LwMsgError(Status.MALFORMED, `bad ${what}: nests too deeply`, { cause: e });
    throw e;
  }
}

/** Unmarshal a type rep; any problem with the bytes (truncated, bad enum, bad id…) is MALFORMED. */
export function decodeTypeRep(bytes: Uint8Array): TypeRep | null {
  return decodeRep("type rep", () => Lw.decode(TypeRepSpec, bytes) as unknown as TypeRep | null);
}

/** `lwmsg_protocol_get_protocol_rep`: every message in tag order, payload-less ones with a null type; one rep map for all, as lwmsg. */
export function protocolToRep(protocol: Protocol<any>): ProtocolRep {
  const b = new RepBuilder();
  const messages: ProtocolMessageRep[] = protocol.entries().map((e) => ({ tag: e.tag, type: e.type ? b.build(wireOf(e.type)) : null, name: e.name }));
  return { message_count: messages.length, messages };
}

/** Marshal a protocol rep (the schema block of an archive). */
export function encodeProtocolRep(rep: ProtocolRep): Uint8Array {
  return Lw.encode(ProtocolRepSpec, rep as never);
}

/** Unmarshal a protocol rep; any problem is MALFORMED. */
export function decodeProtocolRep(bytes: Uint8Array): ProtocolRep {
  return decodeRep("protocol rep", () => Lw.decode(ProtocolRepSpec, bytes) as unknown as ProtocolRep);
}

function messageName(m: ProtocolMessageRep, used: Set<string>): string {
  let name = m.name ?? `__message_${m.tag}`;
  if (name === "" || name === "__proto__") throw new LwMsgError(Status.MALFORMED, `protocol rep: message name ${JSON.stringify(name)} is not allowed`);
  if (used.has(name)) throw new LwMsgError(Status.MALFORMED, `protocol rep: message name ${name} appears twice`);
  used.add(name);
  return name;
}

function fromRep(m: ProtocolMessageRep): TSchema | null {
  if (m.type === null) return null;
  try {
    return schemaFromRep(m.type);
  } catch (e) {
    throw new LwMsgError(Status.MALFORMED, `protocol rep: message ${m.name ?? m.tag}: ${errorDetail(e)}`, { cause: e });
  }
}

/** A protocol built from a rep alone (what a reader without the writer's program gets). */
export function protocolFromRep(rep: ProtocolRep): Protocol {
  return updateProtocol(new Protocol({}), rep);
}

/**
 * `lwmsg_protocol_add_protocol_rep`: messages of `rep` whose tag `protocol`
 * lacks are added (built from the rep); known tags must be assignable from
 * the rep (MALFORMED otherwise). Returns a new protocol (ours are
 * immutable). A payload-less message on either side matches only a
 * payload-less one (lwmsg crashes on them).
 */
export function updateProtocol(protocol: Protocol<any>, rep: ProtocolRep): Protocol {
  const spec: Record<string, readonly [number, TSchema | null]> = { ...(protocol.spec as ProtocolSpec) };
  const used = new Set(Object.keys(spec));
  const tags = new Set<number>();
  for (const m of rep.messages) {
    if (tags.has(m.tag)) throw new LwMsgError(Status.MALFORMED, `protocol rep: tag ${m.tag} appears twice`);
    tags.add(m.tag);
    const existing = protocol.byTag(m.tag);
    if (existing) checkMessage(existing.type, m);
    else spec[messageName(m, used)] = [m.tag, fromRep(m)];
  }
  try {
    return new Protocol(spec);
  } catch (e) {
    throw new LwMsgError(Status.MALFORMED, `protocol rep: ${errorDetail(e)}`, { cause: e });
  }
}

/** `lwmsg_protocol_is_protocol_rep_compatible`: every message of `rep` must exist in `protocol` with an assignable type; MALFORMED otherwise. */
export function checkProtocolRep(protocol: Protocol<any>, rep: ProtocolRep): void {
  for (const m of rep.messages) {
    const existing = protocol.byTag(m.tag);
    if (!existing) throw new LwMsgError(Status.MALFORMED, `schema message ${m.name ?? m.tag} (tag ${m.tag}) is not in the protocol`);
    checkMessage(existing.type, m);
  }
}

function checkMessage(type: TSchema | null, m: ProtocolMessageRep): void {
  const what = `message ${m.name ?? m.tag} (tag ${m.tag})`;
  if (type === null || m.type === null) {
    if (type !== m.type) throw new LwMsgError(Status.MALFORMED, `${what}: ${type === null ? "has a payload in the schema but none in the protocol" : "has no payload in the schema"}`);
    return;
  }
  checkAssignable(typeToRep(type), m.type, what);
}
