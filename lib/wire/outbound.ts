/**
 * Outbound framing: messages → lwmsg packets in one reusable buffer (§3.1,
 * §3.3). A message is encoded straight after room for its 15-byte header;
 * a payload over one packet is fragmented in place (one backwards memmove
 * inserts the per-fragment headers), never re-encoded. Messages queued in
 * the same turn leave together: {@link OutboundQueue.flushTo} hands the
 * transport as many bytes as it takes per call, with the fds of the
 * messages those bytes start.
 * @module
 */
import { ByteWriter, EXTERNAL_MIN_BYTES, type CodecContext } from "../codec/io.ts";
import { copyBytes } from "../codec/runtime.ts";
import type { ProtocolEntry } from "../protocol.ts";
import { LwMsgError, Status } from "../status.ts";
import { FdOutQueue } from "../transport/fdqueue.ts";
import { AGAIN, type Transport } from "../transport/types.ts";
import { MESSAGE_HEADER_SIZE, PacketFlags, writeMessageHeader } from "./packets.ts";

const OUT_BUFFER_SIZE = 64 * 1024;
/** Pieces per writev (the transport's limit is 64). */
const MAX_SEGS = 64;

export class OutboundQueue {
  /** The packets; bytes before {@link sendPos} are in the kernel already. */
  readonly out = new ByteWriter(OUT_BUFFER_SIZE);
  sendPos = 0;
  readonly fds = new FdOutQueue();
  /** Byte arrays left in the caller's memory by the message being sent: (array, position in {@link out}) pairs. */
  private readonly external: (Uint8Array | number)[] = [];
  /** The transport can write several buffers at once (the precondition for {@link external}). */
  writev = false;

  constructor(
    private readonly maxMessageSize: number,
    /** Compaction keeps the buffer from growing while at most this much is unsent (see enqueue). */
    private readonly sendQueueLimit: number,
  ) {}

  /** Bytes queued and not yet taken by the transport. */
  get unsent(): number {
    return this.out.pos - this.sendPos;
  }

  /**
   * Encode one message (header + payload, fragmented to `packetSize`); returns
   * its bytes on the wire. On failure nothing of it stays queued (its fds are
   * closed again).
   */
  enqueue(entry: ProtocolEntry | undefined, tag: number, flags: number, status: number, cookie: number, data: unknown, ctx: CodecContext, packetSize: number): number {
    const w = this.out;
    // Compact: everything before sendPos is already in the kernel. Moving the
    // unsent tail keeps the buffer from growing with every large message sent
    // while the socket is full; it is done only while that tail is small (a
    // caller that awaits send() keeps it ≤ sendQueueLimit) or no bigger than
    // the space won, so a caller that does not await cannot make it quadratic.
    const tail = w.pos - this.sendPos;
    if (this.sendPos > 0 && (tail <= this.sendQueueLimit || tail <= this.sendPos)) {
      if (this.sendPos < w.pos) w.buf.copyWithin(0, this.sendPos, w.pos);
      this.fds.rebase(this.sendPos);
      w.pos -= this.sendPos;
      this.sendPos = 0;
    }
    const start = w.pos;
    const max = this.maxMessageSize;
    // Room for this message at its largest, fragment headers included: an
    // oversized payload stops the encoder there instead of growing the buffer.
    const room = MESSAGE_HEADER_SIZE * (Math.ceil(max / (packetSize - MESSAGE_HEADER_SIZE)) + 1) + max;
    w.limit = start + room;
    w.ensure(MESSAGE_HEADER_SIZE);
    w.pos = start + MESSAGE_HEADER_SIZE;
    const encode = entry?.encode;
    if (encode) {
      ctx.fdsOut.length = 0;
      // Large byte arrays may stay in the caller's memory while the message is one packet (see flushTo).
      ctx.externalOk = this.writev && packetSize - MESSAGE_HEADER_SIZE >= EXTERNAL_MIN_BYTES;
      ctx.external.length = 0;
      try {
        encode(data, w, ctx);
        if (ctx.fdsOut.length > 0) this.fds.push(ctx.fdsOut, start);
      } catch (e) {
        ctx.external.length = 0;
        w.pos = start;
        if (e instanceof LwMsgError && e.status === Status.OVERFLOW && e.message.includes(`exceeds the ${w.limit}-byte limit`)) {
          // The writer hit this message's room: the payload is over maxMessageSize.
          throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: message exceeds maxMessageSize ${max}`, { cause: e });
        }
        throw e instanceof LwMsgError ? e : new LwMsgError(Status.MALFORMED, `send ${entry!.name}: ${(e as Error)?.message ?? e}`, { cause: e });
      }
      const payload = w.pos - start - MESSAGE_HEADER_SIZE;
      if (payload > max) {
        ctx.external.length = 0;
        this.fds.dropFrom(start);
        w.pos = start;
        throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: ${payload}-byte message exceeds maxMessageSize ${max}`);
      }
    }
    const total = w.pos - start;
    const ext = ctx.external;
    if (ext.length > 0) {
      // Left in place only while the message is one packet; fragmenting moves bytes, so then they are copied now.
      if (total <= packetSize) for (let i = 0; i < ext.length; i++) this.external.push(ext[i]!);
      else for (let i = 0; i < ext.length; i += 2) copyBytes(ext[i] as Uint8Array, w.buf, ext[i + 1] as number);
      ext.length = 0;
    }
    if (total <= packetSize) writeMessageHeader(w.view, start, total, PacketFlags.SINGLE, flags, status, cookie, tag);
    else this.fragmentInPlace(start, total - MESSAGE_HEADER_SIZE, flags, status, cookie, tag, packetSize);
    return w.pos - start;
  }

  /**
   * Byte arrays still in the caller's memory (see {@link enqueue}): copy the
   * part the kernel has not taken into the room kept for it. Called before
   * send() returns, so the caller may change or reuse its arrays at once.
   */
  settleExternal(): void {
    const ext = this.external;
    if (ext.length === 0) return;
    const buf = this.out.buf;
    for (let i = 0; i < ext.length; i += 2) {
      const src = ext[i] as Uint8Array;
      const pos = ext[i + 1] as number;
      const from = this.sendPos - pos;
      if (from >= src.length) continue; // all of it is in the kernel
      if (from <= 0) copyBytes(src, buf, pos);
      else copyBytes(src.subarray(from), buf, pos + from);
    }
    ext.length = 0;
  }

  /** Split the payload at [start+15, …) into packets, each with its own header (§3.3), moving each chunk once. */
  private fragmentInPlace(start: number, payload: number, flags: number, status: number, cookie: number, tag: number, packetSize: number): void {
    const chunk = packetSize - MESSAGE_HEADER_SIZE;
    const n = Math.ceil(payload / chunk);
    const w = this.out;
    w.ensure((n - 1) * MESSAGE_HEADER_SIZE);
    const buf = w.buf;
    for (let i = n - 1; i >= 1; i--) {
      const src = start + MESSAGE_HEADER_SIZE + i * chunk;
      const len = Math.min(chunk, payload - i * chunk);
      buf.copyWithin(start + i * packetSize + MESSAGE_HEADER_SIZE, src, src + len);
    }
    for (let i = 0; i < n; i++) {
      const len = Math.min(chunk, payload - i * chunk);
      const pf = (i === 0 ? PacketFlags.FIRST : 0) | (i === n - 1 ? PacketFlags.LAST : 0);
      writeMessageHeader(w.view, start + i * packetSize, len + MESSAGE_HEADER_SIZE, pf, flags, status, cookie, tag);
    }
    w.pos = start + MESSAGE_HEADER_SIZE * n + payload;
  }

  /**
   * Push queued bytes (and their fds) into the transport until it is empty
   * or full. Returns the bytes that went, or a negative errno other than
   * EAGAIN for a failed write. {@link unsent} tells whether it is full.
   */
  flushTo(t: Transport): number {
    const w = this.out;
    let sent = 0;
    while (this.sendPos < w.pos) {
      // Attach the fds of every message that starts within the bytes going out now.
      const nfds = this.fds.size > 0 ? this.fds.batch(this.sendPos, w.pos) : 0;
      let len = (this.fds.size > 0 ? this.fds.batchEnd : w.pos) - this.sendPos;
      if (len > 0x7fff0000) len = 0x7fff0000;
      const r =
        this.external.length > 0
          ? this.writeAround(t, this.sendPos, this.sendPos + len, nfds > 0 ? this.fds.batchFds : null, nfds)
          : t.write(w.buf, this.sendPos, len, nfds > 0 ? this.fds.batchFds : null, nfds);
      if (r >= 0) {
        if (nfds > 0) this.fds.sent(nfds);
        this.sendPos += r;
        sent += r;
        continue;
      }
      if (r === AGAIN) break;
      return r;
    }
    if (this.sendPos === w.pos) {
      this.fds.rebase(this.sendPos);
      this.sendPos = w.pos = 0;
    }
    return sent;
  }

  /**
   * One writev of queue bytes [start, end), taking the ranges held by external arrays from those arrays. With
   * more arrays than pieces fit, it stops before the room of the first array left out (the next call goes on).
   */
  private writeAround(t: Transport, start: number, end: number, fds: Int32Array | null, nfds: number): number {
    const segs = this.segs;
    const ext = this.external;
    const buf = this.out.buf;
    let n = 0;
    let cur = start;
    let i = 0;
    for (; i < ext.length; i += 2) {
      const src = ext[i] as Uint8Array;
      const pos = ext[i + 1] as number;
      const e = pos + src.length;
      if (e <= cur) continue;
      if (pos >= end || n > MAX_SEGS - 2) break; // (room for a gap piece and this array)
      if (pos > cur) {
        segs[3 * n] = buf;
        segs[3 * n + 1] = cur;
        segs[3 * n + 2] = pos - cur;
        n++;
        cur = pos;
      }
      const to = (e < end ? e : end) - pos;
      segs[3 * n] = src;
      segs[3 * n + 1] = cur - pos;
      segs[3 * n + 2] = to - (cur - pos);
      n++;
      cur = pos + to;
    }
    // The queue's own bytes after the last piece, up to the room of an array not written this time.
    let tail = end;
    if (i < ext.length && (ext[i + 1] as number) < tail) tail = ext[i + 1] as number;
    if (cur < tail && n < MAX_SEGS) {
      segs[3 * n] = buf;
      segs[3 * n + 1] = cur;
      segs[3 * n + 2] = tail - cur;
      n++;
    }
    return t.writev!(segs, n, fds, nfds);
  }
  private readonly segs: (Uint8Array | number)[] = [];

  /** Drop everything queued (teardown); queued fds are closed. */
  clear(): void {
    this.external.length = 0;
    this.fds.closeAll();
    this.sendPos = this.out.pos = 0;
  }
}
