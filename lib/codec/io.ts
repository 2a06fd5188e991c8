/**
 * The byte cursors the generated codecs read and write, and the per-message
 * context through which fds and handles leave and enter the data model.
 *
 * The connection owns one {@link ByteWriter} per association and reuses it:
 * it writes the 15-byte packet header, lets the encoder append the payload
 * straight after it, and hands the same bytes to `sendmsg` (no copy). Large
 * payloads are fragmented by pointing iovecs into this buffer, so the encoder
 * never needs to know about packet boundaries.
 * @module
 */
import { bigBuffer } from "../native/big.ts";
import { LwMsgError, Status } from "../status.ts";

/** Growable big-endian byte writer. `buf`/`view`/`pos` are public so generated code can inline its writes. */
export class ByteWriter {
  buf: Uint8Array;
  view: DataView;
  pos = 0;
  /** Hard cap on growth; exceeding it is OVERFLOW (the message is too large to encode). */
  limit: number;
  constructor(initialSize = 64 * 1024, limit = 0x7fffffff) {
    this.buf = new Uint8Array(new ArrayBuffer(initialSize));
    this.view = new DataView(this.buf.buffer);
    this.limit = limit;
  }
  /** Make room for `n` more bytes at `pos`, keeping what is written. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    this.grow(need);
  }
  private grow(need: number): void {
    if (need > this.limit) throw new LwMsgError(Status.OVERFLOW, `message exceeds the ${this.limit}-byte limit`);
    let size = Math.max(this.buf.length * 2, 64); // (doubling 0 would never reach `need`)
    while (size < need) size *= 2;
    // Past the limit, a quarter of headroom: an exact fit would grow again for the next message a few bytes longer.
    if (size > this.limit) size = Math.max(need, Math.min(size, this.limit + (this.limit >> 2)));
    const next = new Uint8Array(bigBuffer(size));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  /** Bytes written so far, as a view (not a copy). */
  written(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

/** Big-endian cursor over one contiguous view. `end` bounds reads; running past it is EOF. */
export class ByteReader {
  buf: Uint8Array;
  view: DataView;
  pos: number;
  end: number;
  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
    this.end = end;
  }
  /** Point the reader at new bytes without allocating a new reader. */
  reset(bytes: Uint8Array, start = 0, end = bytes.length): void {
    if (bytes !== this.buf) {
      this.buf = bytes;
      this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    this.pos = start;
    this.end = end;
  }
}

/**
 * How `Lw.Handle` values reach the session's handle table (§6.3). The
 * connection/session layer implements it; without one, only NULL handles
 * encode and any non-NULL handle is INVALID_HANDLE.
 */
export interface HandleCodec {
  /** Write locality byte (+ u32 id) for `handle`, or throw LwMsgError(INVALID_HANDLE). `flags`: 1 = LOCAL_FOR_RECEIVER, 2 = LOCAL_FOR_SENDER. */
  writeHandle(w: ByteWriter, handle: unknown, typeName: string, flags: number, notNull: boolean): void;
  /** Read locality byte (+ u32 id) and resolve it, or throw LwMsgError(INVALID_HANDLE / EOF). */
  readHandle(r: ByteReader, typeName: string, flags: number, notNull: boolean): unknown;
  /** A decode that may read handles starts: forget what the last one created. */
  beginDecode?(): void;
  /** That decode failed: drop the proxies its readHandle calls created (nothing will ever refer to them). */
  decodeFailed?(): void;
}

/**
 * Per-message state for fds and handles. The connection keeps one and resets
 * it per message, so encoding allocates nothing for it.
 */
/** Smallest byte array an encoder leaves in the caller's memory when {@link CodecContext.externalOk} is set. */
export const EXTERNAL_MIN_BYTES = 64 * 1024;

/** Smallest byte array decoded as a view when {@link CodecContext.viewBytes} is set (below it a copy is as cheap and pins nothing). */
export const VIEW_MIN_BYTES = 1024;

export class CodecContext {
  /** Fds the encoder met, in wire order (the caller's numbers; the connection dups them). */
  fdsOut: number[] = [];
  /** Received fds in arrival order (FIFO); the decoder takes from `fdsInPos`. */
  fdsIn: number[] = [];
  fdsInPos = 0;
  /** Fds the decoder handed to the decoded value, in order (so a failed decode can close them). */
  fdsTaken: number[] = [];
  handles: HandleCodec | null = null;
  /**
   * Set by the outgoing queue when its transport can write from several
   * buffers at once: a Uint8Array of at least {@link EXTERNAL_MIN_BYTES} is
   * then not copied; the writer keeps room for it and `external` records
   * (array, position) pairs, so the bytes can go from the caller's memory.
   */
  externalOk = false;
  readonly external: (Uint8Array | number)[] = [];
  /**
   * Decoded-size budget of each decode with this context, in bytes of JS heap
   * (see `COST` in codec/runtime.ts): a decode that would build more fails
   * with MEMORY before allocating it. Negative (the default): 1 MiB + 64 per
   * input byte (`defaultDecodeBudget`).
   */
  maxDecodedBytes = -1;
  /**
   * The bytes being decoded belong to the decoded value alone (a large
   * message's own buffer): byte arrays of at least {@link VIEW_MIN_BYTES} are
   * returned as views into them instead of copies. Never set for shared or
   * caller-owned bytes.
   */
  viewBytes = false;
  /** Views made under {@link viewBytes} (the caller resets it): none means the bytes are garbage after the decode. */
  views = 0;
  /** What the last successful decode with this context charged against its budget (its decoded size, in the same units). */
  decodedBytes = 0;
  constructor(handles: HandleCodec | null = null) {
    this.handles = handles;
  }
  resetOut(): void {
    this.fdsOut.length = 0;
  }
  /** Next received fd for an `FF` indicator; MALFORMED when none is left (never a hang, unlike lwmsg's PENDING). */
  takeFd(): number {
    if (this.fdsInPos >= this.fdsIn.length) throw new LwMsgError(Status.MALFORMED, "fd indicator without a received fd");
    const fd = this.fdsIn[this.fdsInPos++]!;
    this.fdsTaken.push(fd);
    return fd;
  }
}

/** A compiled encoder: appends `value` to `w`. Throws LwMsgError. */
export type Encoder<T = unknown> = (value: T, w: ByteWriter, ctx: CodecContext) => void;
/** A compiled decoder: reads one value from `r`. Throws LwMsgError. */
export type Decoder<T = unknown> = (r: ByteReader, ctx: CodecContext) => T;
