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
import { ByteWriter, type CodecContext } from "../codec/io.ts";
import type { ProtocolEntry } from "../protocol.ts";
import { LwMsgError, Status } from "../status.ts";
import { FdOutQueue } from "../transport/fdqueue.ts";
import { AGAIN, type Transport } from "../transport/types.ts";
import { MESSAGE_HEADER_SIZE, PacketFlags, writeMessageHeader } from "./packets.ts";

const OUT_BUFFER_SIZE = 64 * 1024;

export class OutboundQueue {
  /** The packets; bytes before {@link sendPos} are in the kernel already. */
  readonly out = new ByteWriter(OUT_BUFFER_SIZE);
  sendPos = 0;
  readonly fds = new FdOutQueue();

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
   * Encode one message (header + payload, fragmented to `packetSize`). On
   * failure nothing of it stays queued (its fds are closed again).
   */
  enqueue(entry: ProtocolEntry | undefined, tag: number, flags: number, status: number, cookie: number, data: unknown, ctx: CodecContext, packetSize: number): void {
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
      try {
        encode(data, w, ctx);
        if (ctx.fdsOut.length > 0) this.fds.push(ctx.fdsOut, start);
      } catch (e) {
        w.pos = start;
        if (e instanceof LwMsgError && e.status === Status.OVERFLOW && e.message.includes(`exceeds the ${w.limit}-byte limit`)) {
          // The writer hit this message's room: the payload is over maxMessageSize.
          throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: message exceeds maxMessageSize ${max}`, { cause: e });
        }
        throw e instanceof LwMsgError ? e : new LwMsgError(Status.MALFORMED, `send ${entry!.name}: ${(e as Error)?.message ?? e}`, { cause: e });
      }
      const payload = w.pos - start - MESSAGE_HEADER_SIZE;
      if (payload > max) {
        this.fds.dropFrom(start);
        w.pos = start;
        throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: ${payload}-byte message exceeds maxMessageSize ${max}`);
      }
    }
    const total = w.pos - start;
    if (total <= packetSize) writeMessageHeader(w.view, start, total, PacketFlags.SINGLE, flags, status, cookie, tag);
    else this.fragmentInPlace(start, total - MESSAGE_HEADER_SIZE, flags, status, cookie, tag, packetSize);
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
      const r = t.write(w.buf, this.sendPos, len, nfds > 0 ? this.fds.batchFds : null, nfds);
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

  /** Drop everything queued (teardown); queued fds are closed. */
  clear(): void {
    this.fds.closeAll();
    this.sendPos = this.out.pos = 0;
  }
}
