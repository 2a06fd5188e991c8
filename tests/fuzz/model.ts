/**
 * A reference model of what a receiving connection must report for a byte
 * stream (reference §3.1–§3.4, §3.6, §4), written from the reference rather
 * than from the code: the oracle of the live fuzzer.
 *
 * Per packet: a length above the negotiated packet size or below the 6-byte
 * base header is MALFORMED; a MESSAGE shorter than 15 bytes is MALFORMED; a
 * FIRST fragment while a message is open, or a continuation with none open,
 * is MALFORMED; SHUTDOWN (exactly 10 bytes, else MALFORMED) ends receiving
 * with PEER_CLOSE/PEER_RESET/PEER_ABORT as sent, any other status as
 * PEER_ABORT — unless it comes in the middle of a fragmented message, where
 * like any non-MESSAGE packet it is MALFORMED; any other packet type is
 * MALFORMED. Reassembled payloads larger
 * than `maxMessageSize` are OVERFLOW (this port's bound on buffering; checked
 * when fragments are joined). All of these end the connection (ERROR).
 *
 * Per message (§3.4): tag -1 carries no payload; a tag not in the protocol is
 * MALFORMED and the connection stays usable; a payload that fails to decode
 * with MALFORMED, INVALID_HANDLE, OVERFLOW or UNDERFLOW becomes a synthetic
 * message (flags | SYNTHETIC, that status, tag -1, no data, cookie kept) and
 * the connection stays usable; one that runs out of bytes (EOF) is lwmsg's
 * "running out of fragments", PEER_CLOSE, fatal; any other status is fatal
 * with that status. Header flags, status and cookie are carried verbatim.
 * Fds: each FF indicator takes the next received fd in arrival order (§3.6).
 *
 * EOF (the peer closed) where a message was expected, or in the middle of
 * one, is PEER_CLOSE.
 * @module
 */
import { LwMsgError, Status, statusShortName } from "../../lib/status.ts";
import { ByteReader, CodecContext, type HandleCodec } from "../../lib/codec/io.ts";
import type { Protocol } from "../../lib/protocol.ts";

export const SYNTHETIC_STATUSES: ReadonlySet<number> = new Set([Status.MALFORMED, Status.INVALID_HANDLE, Status.OVERFLOW, Status.UNDERFLOW]);
/** Fake fd numbers the model's decoder hands out: FAKE_FD + arrival index. */
export const FAKE_FD = 1_000_000;

export type ModelEvent =
  | { kind: "msg"; tag: number; name: string | undefined; flags: number; status: number; cookie: number; data: unknown; fds: number[] }
  | { kind: "synthetic"; status: number; flags: number; cookie: number }
  | { kind: "error"; status: number; fatal: boolean };

export interface ModelResult {
  events: ModelEvent[];
  /** "open": ended cleanly on a message boundary, the connection is usable; "fatal": the last event ended it; "pending": bytes of an unfinished packet or message wait for more. */
  end: "open" | "fatal" | "pending";
  /** Fds (arrival indices) no message took. */
  orphanFds: number;
}

export interface ModelConfig {
  protocol: Protocol<any>;
  packetSize: number;
  maxMessageSize: number;
  /** Fds that arrive with the stream (before any of its messages is decoded). */
  fds: number;
  /** The peer closes after the stream. */
  close: boolean;
  /** The receiver's handle table (a twin of the connection's). */
  handles: HandleCodec | null;
  /** false: framing only (every complete message counts as delivered; nothing is decoded). */
  decode?: boolean;
}

function fatal(events: ModelEvent[], status: number): ModelEvent[] {
  events.push({ kind: "error", status, fatal: true });
  return events;
}

export function modelReceive(stream: Uint8Array, cfg: ModelConfig): ModelResult {
  const events: ModelEvent[] = [];
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const ctx = new CodecContext(cfg.handles);
  for (let i = 0; i < cfg.fds; i++) ctx.fdsIn.push(FAKE_FD + i);
  let fdHead = 0;
  let p = 0;
  let frag: { flags: number; status: number; cookie: number; tag: number; chunks: Uint8Array[]; len: number } | null = null;
  const orphans = () => cfg.fds - fdHead;

  const deliver = (flags: number, status: number, cookie: number, tag: number, payload: Uint8Array): boolean => {
    if (tag === -1) {
      events.push({ kind: "msg", tag, name: undefined, flags, status, cookie, data: null, fds: [] });
      return true;
    }
    if (cfg.decode === false) {
      events.push({ kind: "msg", tag, name: undefined, flags, status, cookie, data: null, fds: [] });
      return true;
    }
    const entry = cfg.protocol.byTag(tag);
    if (!entry) {
      events.push({ kind: "error", status: Status.MALFORMED, fatal: false });
      return true;
    }
    if (!entry.decode) {
      events.push({ kind: "msg", tag, name: entry.name, flags, status, cookie, data: null, fds: [] });
      return true;
    }
    ctx.fdsInPos = fdHead;
    ctx.fdsTaken.length = 0;
    let data: unknown;
    try {
      data = entry.decode(new ByteReader(payload), ctx);
    } catch (e) {
      fdHead = ctx.fdsInPos;
      const s = e instanceof LwMsgError ? e.status : Status.MALFORMED;
      if (SYNTHETIC_STATUSES.has(s)) {
        events.push({ kind: "synthetic", status: s, flags: flags | 2, cookie });
        return true;
      }
      fatal(events, s === Status.EOF ? Status.PEER_CLOSE : s);
      return false;
    }
    fdHead = ctx.fdsInPos;
    events.push({ kind: "msg", tag, name: entry.name, flags, status, cookie, data, fds: ctx.fdsTaken.map((fd) => fd - FAKE_FD) });
    return true;
  };

  while (stream.length - p >= 6) {
    const len = view.getUint32(p);
    if (len > cfg.packetSize || len < 6) return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
    if (stream.length - p < len) break;
    const type = stream[p + 4]!;
    if (type === 1) {
      if (len < 15) return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
      const pf = stream[p + 5]!;
      const flags = stream[p + 6]!;
      const status = view.getUint32(p + 7);
      const cookie = view.getUint16(p + 11);
      const tag = view.getInt16(p + 13);
      const payload = stream.subarray(p + 15, p + len);
      p += len;
      if ((pf & 1) !== 0) {
        if (frag) return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
        if ((pf & 2) !== 0) {
          if (!deliver(flags, status, cookie, tag, payload)) return { events, end: "fatal", orphanFds: orphans() };
          continue;
        }
        // the first fragment's payload is the start of the message (and counts against maxMessageSize like the rest)
        frag = { flags, status, cookie, tag, chunks: [], len: 0 };
      } else if (!frag) return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
      if (frag.len + payload.length > cfg.maxMessageSize) return { events: fatal(events, Status.OVERFLOW), end: "fatal", orphanFds: orphans() };
      frag.chunks.push(payload);
      frag.len += payload.length;
      if ((pf & 2) !== 0) {
        const f = frag;
        frag = null;
        const whole = new Uint8Array(f.len);
        let o = 0;
        for (const c of f.chunks) {
          whole.set(c, o);
          o += c.length;
        }
        if (!deliver(f.flags, f.status, f.cookie, f.tag, whole)) return { events, end: "fatal", orphanFds: orphans() };
      }
      continue;
    }
    if (type === 5) {
      // §3.3: a SHUTDOWN ends receiving where a message was expected; in the middle of one it is
      // "a non-MESSAGE packet in the middle of a message": MALFORMED
      if (len !== 10 || frag) return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
      const s = view.getUint32(p + 6);
      const st = s === Status.PEER_CLOSE || s === Status.PEER_RESET || s === Status.PEER_ABORT ? s : Status.PEER_ABORT;
      return { events: fatal(events, st), end: "fatal", orphanFds: orphans() };
    }
    return { events: fatal(events, Status.MALFORMED), end: "fatal", orphanFds: orphans() };
  }
  if (cfg.close) return { events: fatal(events, Status.PEER_CLOSE), end: "fatal", orphanFds: orphans() };
  if (p < stream.length || frag) return { events, end: "pending", orphanFds: orphans() };
  return { events, end: "open", orphanFds: orphans() };
}

/** The outcome of a handshake for a greeting stream (§3.2 as the accepting side): the negotiated packet size, or the status accept() fails with. */
export function modelAccept(greeting: Uint8Array, ownPacketSize: number, close: boolean): { ok: true; packetSize: number; rest: Uint8Array } | { ok: false; status: number } | { ok: "pending" } {
  const view = new DataView(greeting.buffer, greeting.byteOffset, greeting.byteLength);
  if (greeting.length < 6) return close ? { ok: false, status: Status.PEER_CLOSE } : { ok: "pending" };
  const type = greeting[4]!;
  const need = type === 5 ? 10 : 19;
  if (greeting.length < need) return close ? { ok: false, status: Status.PEER_CLOSE } : { ok: "pending" };
  const len = view.getUint32(0);
  if (type === 5 && len === 10) {
    const s = view.getUint32(6);
    return { ok: false, status: s === Status.PEER_CLOSE || s === Status.PEER_RESET || s === Status.PEER_ABORT ? s : Status.PEER_ABORT };
  }
  if (type !== 2 || len !== 19) return { ok: false, status: Status.MALFORMED };
  const ps = view.getUint32(7);
  if (ps < 20) return { ok: false, status: Status.MALFORMED };
  return { ok: true, packetSize: Math.min(ownPacketSize, ps), rest: greeting.subarray(19) };
}

export function describeEvent(e: ModelEvent): string {
  switch (e.kind) {
    case "msg":
      return `msg tag=${e.tag} flags=${e.flags} status=${e.status} cookie=${e.cookie}${e.fds.length ? ` fds=[${e.fds.join(",")}]` : ""}`;
    case "synthetic":
      return `synthetic ${statusShortName(e.status)} flags=${e.flags} cookie=${e.cookie}`;
    case "error":
      return `${e.fatal ? "fatal" : "error"} ${statusShortName(e.status)}`;
  }
}
