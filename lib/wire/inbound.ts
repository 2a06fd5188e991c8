/**
 * Inbound framing: bytes from the transport → whole lwmsg messages (§3.1,
 * §3.3). Owns the receive ring (the transport reads straight into its free
 * tail), cuts complete packets, checks their lengths and fragment flags, and
 * reassembles fragmented messages. Pure: no I/O, testable on byte arrays.
 *
 * Large messages never pass through the ring: a packet of at least
 * {@link DIRECT_MIN} bytes that has not all arrived is read straight into
 * its message's own buffer ({@link readTarget}), and a message of at least
 * {@link OWNED_MIN} bytes is handed over in that buffer (`owned`), so the
 * decoder can return views into it instead of copies.
 * @module
 */
import { reusableBuffer } from "../native/big.ts";
import { LwMsgError, Status } from "../status.ts";
import { BASE_HEADER_SIZE, MESSAGE_HEADER_SIZE, PacketFlags, PacketType, SHUTDOWN_SIZE, shutdownError } from "./packets.ts";

/** Where whole messages go. One implementation (the association): the call stays monomorphic. */
export interface FrameSink {
  /**
   * A whole message: its payload is `bytes[start, end)`. Unless `owned`, the
   * bytes are the framer's and valid only until the next read; `owned` bytes
   * belong to this message alone (the framer never touches them again).
   */
  message(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number, owned: boolean): void;
  /** The stream is unusable from here on (MALFORMED, OVERFLOW, the peer's SHUTDOWN). */
  fail(e: LwMsgError): void;
  /** False once the sink stopped taking messages (the loop ends). */
  readonly open: boolean;
}

/** A packet this long whose bytes are not all in the ring is read straight into its message's buffer. */
export const DIRECT_MIN = 64 * 1024;
/** A message this long is handed over in a buffer of its own (`owned`); shorter ones are copied out of shared buffers by the decoder. */
export const OWNED_MIN = 64 * 1024;
/** First size of a fragmented message's buffer (it doubles as fragments arrive, up to maxMessageSize). */
const REASSEMBLY_START = 64 * 1024;

const EMPTY = new Uint8Array(new ArrayBuffer(0));

interface Fragmented {
  flags: number;
  status: number;
  cookie: number;
  tag: number;
  buf: Uint8Array;
  len: number;
  /** `buf` may hold bytes of an earlier message beyond `len`. */
  stale: boolean;
}

export class InboundFramer {
  buf: Uint8Array = EMPTY;
  private view = new DataView(EMPTY.buffer);
  /** First unparsed byte. */
  rpos = 0;
  /** End of the bytes read. */
  wpos = 0;
  /** Negotiated packet size (own preference until established). */
  packetSize: number;
  /** Where the next read goes (set by {@link makeRoom}): `readTarget[readOffset, readOffset + readLength)`. */
  readTarget: Uint8Array = EMPTY;
  readOffset = 0;
  readLength = 0;
  /** The buffer of the last fragmented message that was copied out (not owned): reused for the next one. */
  private reassembly: Uint8Array | null = null;
  private frag: Fragmented | null = null;
  /** Payload bytes of the current packet still to be read straight into `frag.buf` (direct mode while > 0 or a packet awaits delivery). */
  private direct = 0;
  private directPacket = false;
  private directLast = false;
  /** Size of the last owned message: a fragmented message past its first buffer grows straight to it. */
  private sizeHint = REASSEMBLY_START;

  constructor(
    packetSize: number,
    readonly maxMessageSize: number,
    private readonly initialSize: number,
  ) {
    this.packetSize = packetSize;
  }

  /** Bytes read and not yet parsed, or a large packet read whole and not yet handed over. */
  get unparsed(): boolean {
    return this.wpos > this.rpos || (this.directPacket && this.direct === 0);
  }

  /** Bytes read but not yet parsed, or a fragmented message still open. */
  get partial(): boolean {
    return this.wpos > this.rpos || this.frag !== null;
  }

  /**
   * Say where the next read goes ({@link readTarget}): the rest of a large
   * packet straight into its message's buffer, else the ring's free tail
   * (allocated on first use: connections that never open cost no buffer).
   */
  makeRoom(): void {
    if (this.direct > 0) {
      const f = this.frag!;
      this.readTarget = f.buf;
      this.readOffset = f.len;
      this.readLength = this.direct;
      return;
    }
    if (this.buf.length === 0) this.grow(this.initialSize);
    if (this.rpos > 0 && (this.rpos === this.wpos || this.buf.length - this.wpos < 4096)) {
      this.buf.copyWithin(0, this.rpos, this.wpos);
      this.wpos -= this.rpos;
      this.rpos = 0;
    }
    if (this.wpos === this.buf.length) this.grow(this.buf.length * 2);
    this.readTarget = this.buf;
    this.readOffset = this.wpos;
    this.readLength = this.buf.length - this.wpos;
  }

  /** `n` bytes were read into {@link readTarget} where {@link makeRoom} said. */
  wrote(n: number): void {
    if (this.direct > 0) {
      this.frag!.len += n;
      this.direct -= n;
    } else this.wpos += n;
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
    if (this.directPacket) {
      // A large packet read straight into its message's buffer: done once all its bytes are in.
      if (this.direct > 0 || !sink.open) return;
      this.directPacket = false;
      if (this.directLast) this.deliver(sink);
    }
    const buf = this.buf;
    const v = this.view;
    let p = this.rpos;
    const end = this.wpos;
    while (end - p >= BASE_HEADER_SIZE && sink.open) {
      const len = v.getUint32(p);
      if (len > this.packetSize) return this.malformed(sink, `packet of ${len} bytes exceeds the negotiated packet size ${this.packetSize}`);
      if (len < BASE_HEADER_SIZE) return this.malformed(sink, `packet length ${len} is shorter than its header`);
      const whole = end - p >= len;
      const type = buf[p + 4]!;
      if (type === PacketType.MESSAGE) {
        if (!whole && (len < DIRECT_MIN || end - p < MESSAGE_HEADER_SIZE)) break;
        if (len < MESSAGE_HEADER_SIZE) return this.malformed(sink, `MESSAGE packet of ${len} bytes is shorter than its 15-byte header`);
        const pf = buf[p + 5]!;
        const n = len - MESSAGE_HEADER_SIZE;
        if ((pf & PacketFlags.FIRST) !== 0) {
          if (this.frag !== null) return this.malformed(sink, "a new message began before the previous one's LAST fragment");
          if ((pf & PacketFlags.LAST) !== 0 && whole) {
            this.rpos = p + len;
            sink.message(buf[p + 6]!, v.getUint32(p + 7), v.getUint16(p + 11), v.getInt16(p + 13), buf, p + MESSAGE_HEADER_SIZE, p + len, false);
            p = this.rpos;
            continue;
          }
          if (n > this.maxMessageSize) return this.overflow(sink, p + len);
          // One packet: its own buffer of exactly its size (overwritten whole before it is handed over). Fragments:
          // the buffer kept from the last small fragmented message, or a new one. A kept or pooled buffer holds an
          // earlier message's bytes past what this one fills: `stale` (see deliver).
          const single = (pf & PacketFlags.LAST) !== 0;
          const kept = single ? null : this.reassembly;
          if (kept !== null) this.reassembly = null;
          const r = kept === null ? reusableBuffer(single ? n : Math.min(this.maxMessageSize, Math.max(REASSEMBLY_START, n))) : null;
          const rb = r !== null ? new Uint8Array(r.buffer) : kept!;
          this.frag = { flags: buf[p + 6]!, status: v.getUint32(p + 7), cookie: v.getUint16(p + 11), tag: v.getInt16(p + 13), buf: rb, len: 0, stale: r === null || r.stale };
        } else if (this.frag === null) return this.malformed(sink, "a continuation fragment arrived without a FIRST fragment");
        const f = this.frag;
        if (f.len + n > this.maxMessageSize) return this.overflow(sink, p + len);
        if (f.len + n > f.buf.length) {
          // Past its first size, a message grows straight to the size of the last large one (a stream of large
          // messages then costs one buffer each, not a doubling series of copies).
          // (a pooled buffer may serve: deliver() zeroes what the message did not fill before anyone sees it)
          const r = reusableBuffer(Math.min(this.maxMessageSize, Math.max(f.buf.length * 2, f.len + n, this.sizeHint)));
          const nb = new Uint8Array(r.buffer);
          nb.set(f.buf.subarray(0, f.len));
          f.buf = nb;
          f.stale = r.stale;
        }
        if (!whole) {
          // The rest of this packet goes straight from the socket into the message's buffer (makeRoom/wrote).
          const have = end - p - MESSAGE_HEADER_SIZE;
          f.buf.set(buf.subarray(p + MESSAGE_HEADER_SIZE, end), f.len);
          f.len += have;
          this.direct = n - have;
          this.directPacket = true;
          this.directLast = (pf & PacketFlags.LAST) !== 0;
          this.rpos = this.wpos = 0;
          return;
        }
        f.buf.set(buf.subarray(p + MESSAGE_HEADER_SIZE, p + len), f.len);
        f.len += n;
        p += len;
        if ((pf & PacketFlags.LAST) !== 0) {
          this.rpos = p;
          this.deliver(sink);
          p = this.rpos;
        }
        continue;
      }
      // Only a SHUTDOWN may follow the greeting besides messages (§3.3). lwmsg judges a packet once it is whole
      // (cut short, it is PEER_CLOSE); one too large for the ring is judged from its header instead, so a bogus
      // length never makes the ring wait for (and grow to) bytes that can only be refused.
      if (!whole && len < DIRECT_MIN) break;
      if (type !== PacketType.SHUTDOWN) return this.malformed(sink, `unexpected packet type ${type} on an established connection`);
      if (len !== SHUTDOWN_SIZE) return this.malformed(sink, `SHUTDOWN packet of ${len} bytes`);
      // like any non-MESSAGE packet, a SHUTDOWN between the fragments of a message is MALFORMED
      if (this.frag !== null) return this.malformed(sink, "SHUTDOWN packet in the middle of a fragmented message");
      this.rpos = p + len;
      return sink.fail(shutdownError(v.getUint32(p + 6)));
    }
    this.rpos = p;
  }

  /** The open message is complete: hand it over, in its own buffer when large (the decoder may keep views into it). */
  private deliver(sink: FrameSink): void {
    const f = this.frag!;
    this.frag = null;
    const owned = f.len >= OWNED_MIN;
    // Past the message, a kept or pooled buffer still holds an earlier one's bytes: its .buffer must not show them.
    if (owned && f.stale && f.buf.length > f.len) f.buf.fill(0, f.len);
    if (owned) this.sizeHint = Math.max(REASSEMBLY_START, f.len);
    else if (f.buf.length <= 4 * REASSEMBLY_START) this.reassembly = f.buf;
    sink.message(f.flags, f.status, f.cookie, f.tag, f.buf, 0, f.len, owned);
  }

  private overflow(sink: FrameSink, next: number): void {
    this.rpos = next > this.wpos ? this.wpos : next;
    this.frag = null;
    this.direct = 0;
    this.directPacket = false;
    sink.fail(new LwMsgError(Status.OVERFLOW, `incoming message exceeds maxMessageSize ${this.maxMessageSize}`));
  }

  private malformed(sink: FrameSink, what: string): void {
    this.frag = null;
    sink.fail(new LwMsgError(Status.MALFORMED, what));
  }

  /** Drop a fragmented message in progress (the connection failed). */
  abandonMessage(): void {
    this.frag = null;
    this.direct = 0;
    this.directPacket = false;
  }

  /** Forget everything (teardown, reset); the ring itself is kept for reuse. */
  clear(): void {
    this.abandonMessage();
    this.reassembly = null;
    this.sizeHint = REASSEMBLY_START;
    this.rpos = this.wpos = 0;
  }
}
