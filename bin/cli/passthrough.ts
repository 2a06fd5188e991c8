/**
 * The protocol `bun-lwmsg record` runs its two connections with: every tag
 * 0..32767 is known, and a message's "value" is its payload bytes exactly
 * as they arrived, so the recorder forwards each message unchanged — tag,
 * flags, status, cookie and payload bytes — through the public
 * `Connection` API, on connections that each negotiate their own packet
 * size. The payload is also decoded with the real protocol when one is
 * given, only to print it (handles are read as their wire locality and id).
 *
 * Fds: with a known type the message takes exactly the fds its fd fields
 * announce; without one (no protocol, or a payload that does not decode)
 * it takes every fd that has arrived and not been claimed yet. Both keep
 * the fds in order, which is all a receiver relies on (an lwmsg receiver
 * hands out received fds first come, first served), so they reach the
 * server or client as they were sent.
 *
 * This relies on what `Connection` does with a protocol entry (`encode`
 * writes the payload, `decode` reads it and claims fds through the
 * context), which is the public `ProtocolEntry`/`CodecContext` contract.
 * @module
 */
import { ByteReader, CodecContext, LwMsgError, Protocol, type ProtocolEntry } from "../../lib/index.ts";
import { recordedHandles } from "../../lib/archive/index.ts";

/** What a forwarded message carries as its `data`. */
export interface Passed {
  /** The payload bytes (big-endian wire form, as an archive stores them). */
  raw: Uint8Array;
  /** The fds that came with it (owned by the received message until it is disposed). */
  fds: number[];
  /** The payload decoded with the known protocol, when that worked. */
  decoded?: unknown;
  /** Why it could not be decoded (no protocol, unknown tag, or the decoder's error). */
  undecoded?: string;
}

export class PassthroughProtocol extends Protocol<any> {
  private readonly cache = new Map<number, ProtocolEntry>();

  /**
   * `known`: the real protocol, if any. `decodeAll`: decode every payload (to
   * print it); otherwise only payloads whose type has fds are decoded (to
   * count them exactly).
   */
  constructor(
    readonly known: Protocol<any> | null,
    readonly decodeAll = true,
  ) {
    super({});
  }

  override byTag(tag: number): ProtocolEntry | undefined {
    if (!Number.isInteger(tag) || tag < 0 || tag > 0x7fff) return undefined;
    let e = this.cache.get(tag);
    if (!e) this.cache.set(tag, (e = this.entry(tag)));
    return e;
  }

  override byName(name: string): ProtocolEntry | undefined {
    const k = this.known?.byName(name);
    return k ? this.byTag(k.tag) : undefined;
  }

  override nameOf(tag: number): string | undefined {
    return this.known?.nameOf(tag);
  }

  private entry(tag: number): ProtocolEntry {
    const known = this.known?.byTag(tag);
    const name = known?.name ?? `tag ${tag}`;
    return {
      tag,
      name,
      type: null,
      hasFds: true,
      hasHandles: false,
      encode: (value, w, ctx) => {
        const p = value as Passed;
        w.ensure(p.raw.length);
        w.buf.set(p.raw, w.pos);
        w.pos += p.raw.length;
        for (const fd of p.fds) ctx.fdsOut.push(fd);
      },
      decode: (r, ctx) => {
        const raw = r.buf.slice(r.pos, r.end); // a copy: the receive buffer is reused
        r.pos = r.end;
        const out: Passed = { raw, fds: [] };
        let count = ctx.fdsIn.length - ctx.fdsInPos;
        if (!this.known) out.undecoded = "no protocol";
        else if (!known) out.undecoded = `tag ${tag} is not in the protocol`;
        else if (known.decode && !this.decodeAll && !known.hasFds) {
          out.undecoded = "not decoded";
          count = 0;
        } else if (known.decode) {
          const sub = new CodecContext(recordedHandles);
          sub.fdsIn = ctx.fdsIn;
          sub.fdsInPos = ctx.fdsInPos;
          try {
            out.decoded = known.decode(new ByteReader(raw), sub);
            count = sub.fdsInPos - ctx.fdsInPos;
          } catch (e) {
            out.undecoded = e instanceof LwMsgError ? e.message : String(e);
          }
        } else if (raw.length === 0) {
          out.decoded = null;
          count = 0;
        } else out.undecoded = `${name} has no payload type but ${raw.length} bytes came`;
        for (let i = 0; i < count; i++) out.fds.push(ctx.takeFd());
        return out;
      },
    };
  }
}
