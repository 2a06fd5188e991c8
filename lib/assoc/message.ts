/**
 * Messages as an association sends and receives them (`LWMsgMessage`).
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { recycleBuffer } from "../native/big.ts";
import { closeFd } from "../transport/fdqueue.ts";
import type { Protocol, ProtocolEntry } from "../protocol.ts";
import { wireOf, type WireType } from "../types.ts";
import { MessageFlags, TAG_INVALID } from "../wire/packets.ts";

/** A message to send. `tag` is a protocol name or number; `-1` sends no payload. */
export interface OutgoingMessage {
  tag: string | number;
  data?: unknown;
  flags?: number;
  status?: number;
  cookie?: number;
}

/** A message's header as it will go on the wire (one object, reused: nothing allocated per send). */
export interface OutgoingHeader {
  entry: ProtocolEntry | undefined;
  tag: number;
  flags: number;
  status: number;
  cookie: number;
}
const header: OutgoingHeader = { entry: undefined, tag: 0, flags: 0, status: 0, cookie: 0 };

/**
 * Check a message to send and resolve its tag (MALFORMED for a tag not in
 * the protocol, INVALID_PARAMETER for a bad header field). The result is
 * valid until the next call.
 */
export function resolveOutgoing(protocol: Protocol<any>, message: OutgoingMessage): OutgoingHeader {
  if (message === null || typeof message !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "send: message must be an object { tag, data }");
  let entry: ProtocolEntry | undefined;
  let tag: number;
  const t = message.tag;
  if (typeof t === "string") {
    entry = protocol.byName(t);
    if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag "${t}" is not in the protocol`);
    tag = entry.tag;
  } else if (t === TAG_INVALID) {
    tag = TAG_INVALID;
  } else if (typeof t === "number" && Number.isInteger(t)) {
    entry = protocol.byTag(t);
    if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag ${t} is not in the protocol`);
    tag = t;
  } else throw new LwMsgError(Status.INVALID_PARAMETER, `send: tag must be a protocol name or number, got ${String(t)}`);
  const flags = message.flags ?? 0;
  const status = message.status ?? 0;
  const cookie = message.cookie ?? 0;
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: flags must be a u8, got ${flags}`);
  if (!Number.isInteger(status) || status < 0 || status > 0xffffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: status must be a u32, got ${status}`);
  if (!Number.isInteger(cookie) || cookie < 0 || cookie > 0xffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: cookie must be a u16, got ${cookie}`);
  header.entry = entry;
  header.tag = tag;
  header.flags = flags;
  header.status = status;
  header.cookie = cookie;
  return header;
}

const dispose: typeof Symbol.dispose = (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for("Symbol.dispose") as typeof Symbol.dispose);

/**
 * A received message. If it carried fds it owns them until the program takes
 * them ({@link takeFd}/{@link takeFds}). A large message (≥ 64 KiB) may arrive
 * in a buffer of its own, and its byte arrays are then views into it.
 *
 * `using m = await c.recv()` {@link release}s it at the end of the scope: the
 * fds not taken are closed, and a large message's buffer goes back for the
 * next large message (its byte arrays then read as empty, never as another
 * message's bytes) — lwmsg's `lwmsg_assoc_destroy_message`, made safe. Keep
 * the bytes past the scope with {@link keepBytes}, or do not use `using`.
 */
export class ReceivedMessage implements Disposable {
  constructor(
    readonly tag: number,
    readonly name: string | undefined,
    readonly data: any,
    readonly flags: number,
    readonly status: number,
    readonly cookie: number,
    /** Fds received with this message, in wire order (null when none). */
    readonly fds: number[] | null,
  ) {}
  private taken: Set<number> | null = null;
  /** Decoded bytes a request holds against its server's budgets (0 when not counted). */
  decodedBytes = 0;
  /** @internal gives `decodedBytes` back to the budgets; runs once, when the message is disposed (however its call ends). */
  releaseHeld: ((n: number) => void) | null = null;
  /** @internal the buffer of a large message, which its byte arrays view; {@link release} recycles it. */
  ownBuffer: ArrayBuffer | null = null;
  /** True for a message the connection made up because the payload failed to decode (§3.4). */
  get synthetic(): boolean {
    return (this.flags & MessageFlags.SYNTHETIC) !== 0;
  }
  /** Claim one fd of this message: disposal will not close it. */
  takeFd(fd: number): number {
    if (!this.fds || !this.fds.includes(fd)) throw new LwMsgError(Status.INVALID_PARAMETER, `fd ${fd} did not arrive with this message`);
    (this.taken ??= new Set()).add(fd);
    return fd;
  }
  /** Claim every fd of this message. */
  takeFds(): number[] {
    if (!this.fds) return [];
    for (const fd of this.fds) (this.taken ??= new Set()).add(fd);
    return this.fds.slice();
  }
  /** Keep this message's byte arrays valid after {@link release} (or `using`): its buffer is then left to the garbage collector. */
  keepBytes(): this {
    this.ownBuffer = null;
    return this;
  }
  /** Close the fds not taken. Idempotent. The data stays valid. */
  dispose(): void {
    const release = this.releaseHeld;
    if (release !== null) {
      this.releaseHeld = null;
      release(this.decodedBytes);
    }
    const fds = this.fds;
    if (!fds) return;
    for (const fd of fds) if (!this.taken?.has(fd)) closeFd(fd);
    (this as { fds: number[] | null }).fds = null;
  }
  /**
   * Done with this message: {@link dispose} it, and give a large message's
   * buffer back for reuse (unless {@link keepBytes}); its byte arrays become
   * empty (detached). What `using` calls. Idempotent.
   */
  release(): void {
    this.dispose();
    const b = this.ownBuffer;
    if (b !== null) {
      this.ownBuffer = null;
      recycleBuffer(b);
    }
  }
  /** Same as {@link release}. */
  [dispose](): void {
    this.release();
  }
}

/** Where a message type holds fds, as field paths (`fd`, `files[].fd`, `<arm:x>.fd`): for errors that name them. */
export function fdFieldPaths(type: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<WireType>();
  const walk = (w: WireType, at: string): void => {
    if (seen.has(w) || out.length >= 8) return;
    switch (w.kind) {
      case "fd":
        out.push(at || "(the payload)");
        return;
      case "struct":
        seen.add(w);
        for (const m of w.members) walk(m.type, at ? `${at}.${m.name}` : m.name);
        seen.delete(w);
        return;
      case "union":
        for (const a of w.arms) walk(a.type, `${at}<arm:${a.name ?? a.tag}>`);
        return;
      case "pointer":
        return walk(w.to, at);
      case "array":
        return walk(w.of, `${at}[]`);
      case "custom":
        return walk(w.transmit, at);
      case "rec":
        seen.add(w);
        walk(w.type, at);
        return;
    }
  };
  walk(wireOf(type), "");
  return out;
}
