/**
 * Inbound framing: bytes from the transport → whole lwmsg messages (§3.1,
 * §3.3). Owns the receive buffer (the transport reads straight into its free
 * tail), cuts complete packets, checks their lengths and fragment flags, and
 * reassembles fragmented messages. Pure: no I/O, testable on byte arrays.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { BASE_HEADER_SIZE, MESSAGE_HEADER_SIZE, PacketFlags, PacketType, SHUTDOWN_SIZE, shutdownError } from "./packets.ts";

/** Where whole messages go. One implementation (the association): the call stays monomorphic. */
export interface FrameSink {
  /** A whole message: its payload is `bytes[start, end)` (valid until the next read). */
  message(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number): void;
  /** The stream is unusable from here on (MALFORMED, OVERFLOW, the peer's SHUTDOWN). */
  fail(e: LwMsgError): void;
  /** False once the sink stopped taking messages (the loop ends). */
  readonly open: boolean;
}

const EMPTY = new Uint8Array(new ArrayBuffer(0));

export class InboundFramer {
  buf: Uint8Array = EMPTY;
  private view = new DataView(EMPTY.buffer);
  /** First unparsed byte. */
  rpos = 0;
  /** End of the bytes read. */
  wpos = 0;
  /** Negotiated packet size (own preference until established). */
  packetSize: number;
  private reassembly: Uint8Array | null = null;
  private frag: { flags: number; status: number; cookie: number; tag: number; buf: Uint8Array; len: number } | null = null;

  constructor(
    packetSize: number,
    readonly maxMessageSize: number,
    private readonly initialSize: number,
  ) {
    this.packetSize = packetSize;
  }

  /** Bytes read but not yet parsed, or a fragmented message still open. */
  get partial(): boolean {
    return this.wpos > this.rpos || this.frag !== null;
  }

  /** Make room at the tail for the next read (allocated on first use: connections that never open cost no buffer). */
  makeRoom(): void {
    if (this.buf.length === 0) this.grow(this.initialSize);
    if (this.rpos > 0 && (this.rpos === this.wpos || this.buf.length - this.wpos < 4096)) {
      this.buf.copyWithin(0, this.rpos, this.wpos);
      this.wpos -= this.rpos;
      this.rpos = 0;
    }
    if (this.wpos === this.buf.length) this.grow(this.buf.length * 2);
  }

  /** Make sure a whole packet of the negotiated size fits. */
  fitPacket(): void {
    if (this.packetSize + BASE_HEADER_SIZE > this.buf.length) this.grow(this.packetSize + BASE_HEADER_SIZE);
  }

  private grow(size: number): void {
    const next = new Uint8Array(new ArrayBuffer(size));
    next.set(this.buf.subarray(this.rpos, this.wpos));
    this.wpos -= this.rpos;
    this.rpos = 0;
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /**
   * The next greeting (n bytes) or SHUTDOWN (10 bytes: the peer refused us)
   * when enough has arrived, else null. Bytes after it stay for {@link parse}.
   */
  takeGreeting(n: number): Uint8Array | null {
    if (this.wpos - this.rpos < BASE_HEADER_SIZE) return null;
    const need = this.buf[this.rpos + 4] === PacketType.SHUTDOWN ? SHUTDOWN_SIZE : n;
    if (this.wpos - this.rpos < need) return null;
    const out = this.buf.slice(this.rpos, this.rpos + need);
    this.rpos += need;
    return out;
  }

  /** Cut complete packets and hand every whole message to `sink`, until the buffer or the sink runs out. */
  parse(sink: FrameSink): void {
    const buf = this.buf;
    const v = this.view;
    let p = this.rpos;
    const end = this.wpos;
    while (end - p >= BASE_HEADER_SIZE && sink.open) {
      const len = v.getUint32(p);
      if (len > this.packetSize) return this.malformed(sink, `packet of ${len} bytes exceeds the negotiated packet size ${this.packetSize}`);
      if (len < BASE_HEADER_SIZE) return this.malformed(sink, `packet length ${len} is shorter than its header`);
      if (end - p < len) break;
      const type = buf[p + 4]!;
      if (type === PacketType.MESSAGE) {
        if (len < MESSAGE_HEADER_SIZE) return this.malformed(sink, `MESSAGE packet of ${len} bytes is shorter than its 15-byte header`);
        const pf = buf[p + 5]!;
        if ((pf & PacketFlags.FIRST) !== 0) {
          if (this.frag !== null) return this.malformed(sink, "a new message began before the previous one's LAST fragment");
          if ((pf & PacketFlags.LAST) !== 0) {
            this.rpos = p + len;
            sink.message(buf[p + 6]!, v.getUint32(p + 7), v.getUint16(p + 11), v.getInt16(p + 13), buf, p + MESSAGE_HEADER_SIZE, p + len);
            p = this.rpos;
            continue;
          }
          // The reassembly buffer is kept across messages (it only grows to the largest message seen, ≤ maxMessageSize).
          const rb = (this.reassembly ??= new Uint8Array(Math.min(this.maxMessageSize, Math.max(64 * 1024, 4 * this.packetSize))));
          this.frag = { flags: buf[p + 6]!, status: v.getUint32(p + 7), cookie: v.getUint16(p + 11), tag: v.getInt16(p + 13), buf: rb, len: 0 };
        } else if (this.frag === null) return this.malformed(sink, "a continuation fragment arrived without a FIRST fragment");
        const f = this.frag;
        const n = len - MESSAGE_HEADER_SIZE;
        if (f.len + n > this.maxMessageSize) {
          this.rpos = p + len;
          this.frag = null;
          return sink.fail(new LwMsgError(Status.OVERFLOW, `incoming message exceeds maxMessageSize ${this.maxMessageSize}`));
        }
        if (f.len + n > f.buf.length) {
          const nb = new Uint8Array(Math.min(this.maxMessageSize, Math.max(f.buf.length * 2, f.len + n)));
          nb.set(f.buf.subarray(0, f.len));
          f.buf = nb;
          this.reassembly = nb;
        }
        f.buf.set(buf.subarray(p + MESSAGE_HEADER_SIZE, p + len), f.len);
        f.len += n;
        p += len;
        if ((pf & PacketFlags.LAST) !== 0) {
          this.frag = null;
          this.rpos = p;
          sink.message(f.flags, f.status, f.cookie, f.tag, f.buf, 0, f.len);
          p = this.rpos;
        }
        continue;
      }
      if (type === PacketType.SHUTDOWN) {
        if (len !== SHUTDOWN_SIZE) return this.malformed(sink, `SHUTDOWN packet of ${len} bytes`);
        // §3.3: like any non-MESSAGE packet, a SHUTDOWN between the fragments of a message is MALFORMED
        if (this.frag !== null) return this.malformed(sink, "SHUTDOWN packet in the middle of a fragmented message");
        this.rpos = p + len;
        return sink.fail(shutdownError(v.getUint32(p + 6)));
      }
      return this.malformed(sink, `unexpected packet type ${type} on an established connection`);
    }
    this.rpos = p;
  }

  private malformed(sink: FrameSink, what: string): void {
    this.frag = null;
    sink.fail(new LwMsgError(Status.MALFORMED, what));
  }

  /** Drop a fragmented message in progress (the connection failed). */
  abandonMessage(): void {
    this.frag = null;
  }

  /** Forget everything (teardown, reset); the buffer itself is kept for reuse. */
  clear(): void {
    this.frag = null;
    this.reassembly = null;
    this.rpos = this.wpos = 0;
  }
}
