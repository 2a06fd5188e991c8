/**
 * `Lw.Protocol`: the table of message names, tags and payload types
 * (lwmsg `LWMsgProtocolSpec`, reference §1.8), with each payload's codec
 * compiled up front.
 * @module
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { LwMsgError, Status } from "./status.ts";
import { compile } from "./codec/compile.ts";
import { printType } from "./codec/print.ts";
import { wireOf } from "./types.ts";
import type { Decoder, Encoder } from "./codec/io.ts";

/** `{ NAME: [tag, type | null] }`: tags are int16 ≥ 0; `null` means no payload. */
export type ProtocolSpec = { readonly [name: string]: readonly [number, TSchema | null] };

/** One message type of a protocol. */
export interface ProtocolEntry {
  tag: number;
  name: string;
  type: TSchema | null;
  /** Payload encoder, `null` for payload-less messages. */
  encode: Encoder | null;
  decode: Decoder | null;
  hasFds: boolean;
  hasHandles: boolean;
}

/** The payload type of an entry (`undefined` for payload-less messages). */
export type DataOf<T> = T extends TSchema ? Static<T> : undefined;

/** Largest message tag (`LWMsgTag` is int16; negative tags are reserved). */
export const MAX_TAG = 0x7fff;

/**
 * A protocol: message names ↔ tags ↔ payload codecs. Lookups by tag are an
 * array index; tags never registered (holes) give `undefined`, where lwmsg
 * crashed (quirk §10.3).
 */
export class Protocol<M extends ProtocolSpec = ProtocolSpec> {
  /** The spec this protocol was built from. */
  readonly spec: M;
  private readonly tags: (ProtocolEntry | undefined)[] = [];
  private readonly names = new Map<string, ProtocolEntry>();
  private readonly list: ProtocolEntry[] = [];

  /** Validates the spec and compiles every payload codec; invalid input is `LwMsgError(INVALID_PARAMETER)`. */
  constructor(spec: M) {
    if (spec === null || typeof spec !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "Protocol needs a { NAME: [tag, type | null] } object");
    this.spec = spec;
    for (const [name, def] of Object.entries(spec)) {
      if (!Array.isArray(def) || def.length !== 2) throw new LwMsgError(Status.INVALID_PARAMETER, `protocol message ${name}: expected [tag, type | null]`);
      const [tag, type] = def as [unknown, unknown];
      if (typeof tag !== "number" || !Number.isInteger(tag) || tag < 0 || tag > MAX_TAG) {
        throw new LwMsgError(Status.INVALID_PARAMETER, `protocol message ${name}: tag ${String(tag)} must be an integer in 0..${MAX_TAG}`);
      }
      const dup = this.tags[tag];
      if (dup) throw new LwMsgError(Status.INVALID_PARAMETER, `protocol message ${name}: tag ${tag} is already used by ${dup.name}`);
      let entry: ProtocolEntry;
      if (type === null || type === undefined) {
        entry = { tag, name, type: null, encode: null, decode: null, hasFds: false, hasHandles: false };
      } else {
        wireOf(type, `protocol message ${name} type`);
        let c;
        try {
          c = compile(type as TSchema);
        } catch (e) {
          if (e instanceof LwMsgError) throw new LwMsgError(e.status, `protocol message ${name}: ${e.message}`, { cause: e });
          throw e;
        }
        entry = { tag, name, type: type as TSchema, encode: c.encode, decode: c.decode, hasFds: c.hasFds, hasHandles: c.hasHandles };
      }
      this.tags[tag] = entry;
      this.names.set(name, entry);
      this.list.push(entry);
    }
    this.list.sort((a, b) => a.tag - b.tag);
  }

  /** The entry for `tag`, or `undefined` (unknown tag, hole, or out of range). */
  byTag(tag: number): ProtocolEntry | undefined {
    return this.tags[tag];
  }

  /** The entry for a message name. */
  byName(name: string): ProtocolEntry | undefined {
    return this.names.get(name);
  }

  /** Tag of a message name; `LwMsgError(NOT_FOUND)` for unknown names. */
  tagOf(name: string): number {
    const e = this.names.get(name);
    if (!e) throw new LwMsgError(Status.NOT_FOUND, `message ${name} is not in the protocol`);
    return e.tag;
  }

  /** Name of a tag (`lwmsg_protocol_get_message_name`). */
  nameOf(tag: number): string | undefined {
    return this.tags[tag]?.name;
  }

  /** All entries in tag order. */
  entries(): ProtocolEntry[] {
    return this.list.slice();
  }

  /** `lwmsg_protocol_print`: one line (or block) per message, `NAME (tag): type`. */
  print(): string {
    return this.list
      .map((e) => {
        if (!e.type) return `${e.name} (${e.tag})`;
        const t = printType(wireOf(e.type)).replace(/\n/g, "\n    ");
        return `${e.name} (${e.tag}): ${t}`;
      })
      .join("\n");
  }
}

type SpecOf<P> = P extends Protocol<infer M> ? M : P extends ProtocolSpec ? P : never;
type Names<M> = keyof M & string;

/**
 * A message to send on a protocol `P`: `tag` is the name (or its number) and
 * `data` is typed by it; payload-less messages take no `data`.
 */
export type MessageOut<P> = {
  [K in Names<SpecOf<P>>]: {
    tag: K | SpecOf<P>[K][0];
    cookie?: number;
    status?: number;
    flags?: number;
  } & (SpecOf<P>[K][1] extends TSchema ? { data: Static<SpecOf<P>[K][1]> } : { data?: undefined });
}[Names<SpecOf<P>>];

/** A received message on protocol `P`, discriminated by `name`. */
export type MessageIn<P> = {
  [K in Names<SpecOf<P>>]: {
    tag: SpecOf<P>[K][0];
    name: K;
    data: DataOf<SpecOf<P>[K][1]>;
    flags: number;
    status: number;
    cookie: number;
  };
}[Names<SpecOf<P>>];

/** Build a {@link Protocol}: `Lw.Protocol({ OPEN: [1, OpenReq], CLOSE: [2, null] })`. */
export function createProtocol<const M extends ProtocolSpec>(spec: M): Protocol<M> {
  return new Protocol(spec);
}
