/**
 * Received messages waiting for recv(): whole messages from the framer are
 * decoded here (fds claimed from the incoming fd queue, handles through the
 * session's table) into a FIFO, or into the synthetic message lwmsg makes
 * for a payload that fails to decode (§3.4).
 * @module
 */
import { ByteReader, CodecContext, type HandleCodec } from "../codec/io.ts";
import type { Protocol } from "../protocol.ts";
import { LwMsgError, Status } from "../status.ts";
import { FdInQueue, closeFd } from "../transport/fdqueue.ts";
import { MessageFlags, TAG_INVALID } from "../wire/packets.ts";
import { ReceivedMessage } from "./message.ts";

/** What a server lets in before decoding (issue 16): at most `limit` requests held, in flight or queued. */
export interface Admission {
  readonly limit: number;
  /** Requests the channel is running now. */
  inFlight(): number;
  /** Decoded bytes a request may still build within the session's and its uid's budgets (-1: no budget). */
  budgetLeft(): number;
  /** A decoded request holds `n` bytes until the channel releases them (when its call is over). */
  hold(n: number): void;
  /** Called unbound, from the message's dispose. */
  release(n: number): void;
}

const NOT_A_REQUEST = MessageFlags.REPLY | MessageFlags.CONTROL | MessageFlags.SYNTHETIC;

export class Inbox {
  /** Set by the peer layer: requests beyond the limit are answered BUSY from their header, never decoded. */
  admission: Admission | null = null;
  /** Decoded requests waiting in the queue (they count against the admission limit). */
  private queuedRequests = 0;
  /** Incoming fds, waiting for the message that claims them. */
  readonly fdIn = new FdInQueue();
  readonly decodeCtx: CodecContext;
  private queue: (ReceivedMessage | LwMsgError)[] = [];
  private head = 0;
  private readonly reader = new ByteReader(new Uint8Array(0));

  constructor(
    private readonly protocol: Protocol<any>,
    handles: HandleCodec | null,
    /** Decoded bytes one message may build (-1: the codec's default, 1 MiB + 64 per wire byte). */
    private readonly maxDecodedBytes: number,
  ) {
    this.decodeCtx = new CodecContext(handles);
  }

  /** Requests running and decoded requests waiting fill the admission limit: decode nothing more until some are taken. */
  get full(): boolean {
    const adm = this.admission;
    return adm !== null && this.queuedRequests > 0 && adm.inFlight() + this.queuedRequests >= adm.limit;
  }

  /** A result is waiting. */
  get ready(): boolean {
    return this.head < this.queue.length;
  }

  /** The next result (a message, or the error that ended the stream), if any. */
  take(): ReceivedMessage | LwMsgError | undefined {
    const q = this.queue;
    if (this.head < q.length) {
      const m = q[this.head]!;
      if (m instanceof ReceivedMessage && (m.flags & NOT_A_REQUEST) === 0) this.queuedRequests--;
      q[this.head++] = undefined as never;
      if (this.head === q.length) q.length = this.head = 0;
      return m;
    }
    return undefined;
  }

  /** Queue the error that ends the stream, after the good messages. */
  end(e: LwMsgError): void {
    this.queue.push(e);
  }

  /**
   * Decode one whole message from bytes[start, end) and queue it (or its
   * synthetic stand-in). Returns an error that must end the connection, or null.
   */
  decode(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number, owned: boolean): LwMsgError | null {
    if (tag === TAG_INVALID) {
      this.push(new ReceivedMessage(tag, undefined, null, flags, status, cookie, null));
      return null;
    }
    const entry = this.protocol.byTag(tag);
    if (!entry) {
      this.queue.push(new LwMsgError(Status.MALFORMED, `received tag ${tag} is not in the protocol`));
      return null;
    }
    const adm = this.admission;
    // While the handlers already running fill the limit, a request is answered BUSY without its payload
    // ever being decoded (a type with fd fields must be decoded: only its decoder knows which queued fds
    // are its own). Decoded requests waiting in the queue do not make others BUSY: they stop the parse
    // instead (see `full`), so a pipelining client is slowed down, not refused.
    const request = adm !== null && (flags & NOT_A_REQUEST) === 0;
    let cap = this.maxDecodedBytes;
    let budgeted = false;
    if (request) {
      const left = adm.budgetLeft();
      if (!entry.hasFds && (adm.inFlight() >= adm.limit || left === 0)) return this.busy(tag, entry.name, flags, cookie);
      if (left > 0 && (cap < 0 || left < cap)) {
        cap = left;
        budgeted = true;
      }
    }
    const decode = entry.decode;
    if (!decode) {
      this.push(new ReceivedMessage(tag, entry.name, null, flags, status, cookie, null));
      return null;
    }
    const ctx = this.decodeCtx;
    const fdIn = this.fdIn;
    ctx.fdsIn = fdIn.fds;
    ctx.fdsInPos = fdIn.pos;
    if (ctx.fdsTaken.length !== 0) ctx.fdsTaken.length = 0;
    ctx.maxDecodedBytes = cap;
    // A large message arrives in a buffer of its own: its byte arrays become views into it, not copies.
    ctx.viewBytes = owned;
    ctx.views = 0;
    const handles = entry.hasHandles ? ctx.handles : null;
    handles?.beginDecode?.();
    const r = this.reader;
    r.reset(bytes, start, end);
    let data: unknown;
    try {
      data = decode(r, ctx);
    } catch (e) {
      handles?.decodeFailed?.();
      fdIn.pos = ctx.fdsInPos;
      for (const fd of ctx.fdsTaken) closeFd(fd);
      ctx.fdsTaken.length = 0;
      const err = e instanceof LwMsgError ? e : new LwMsgError(Status.MALFORMED, String((e as Error)?.message ?? e));
      const s = err.status;
      if (s === Status.MALFORMED || s === Status.INVALID_HANDLE || s === Status.OVERFLOW || s === Status.UNDERFLOW) {
        this.queue.push(new ReceivedMessage(TAG_INVALID, undefined, null, flags | MessageFlags.SYNTHETIC, s, cookie, null));
        return null;
      }
      // Over what the session's (or uid's) budget had left, not over the per-message cap: the sender kept
      // the rules; this request is refused (BUSY) and the connection stays. Over the cap itself, MEMORY
      // ends the connection, as a failed allocation does in lwmsg.
      if (s === Status.MEMORY && budgeted) return this.busy(tag, entry.name, flags, cookie);
      // The payload ends before its type does: lwmsg reports running out of fragments as PEER_CLOSE (§3.3).
      if (s === Status.EOF) return new LwMsgError(Status.PEER_CLOSE, `message ${entry.name} is truncated: ${err.message}`);
      return err;
    }
    fdIn.pos = ctx.fdsInPos;
    let fds: number[] | null = null;
    if (ctx.fdsTaken.length > 0) {
      fds = ctx.fdsTaken.slice();
      ctx.fdsTaken.length = 0;
    }
    fdIn.compact();
    const m = new ReceivedMessage(tag, entry.name, data, flags, status, cookie, fds);
    // Kept for release() only if the value views it (owned, so ≥ 64 KiB); otherwise it is garbage now (the GC pools it).
    if (ctx.views > 0) m.ownBuffer = bytes.buffer as ArrayBuffer;
    if (request) {
      m.decodedBytes = ctx.decodedBytes;
      adm.hold(m.decodedBytes);
      m.releaseHeld = adm.release; // whichever path ends the request disposes it, and gives the bytes back
    }
    this.push(m);
    return null;
  }

  /** A request answered BUSY from its header: queued as a synthetic message, its payload never decoded. */
  private busy(tag: number, name: string, flags: number, cookie: number): null {
    this.queue.push(new ReceivedMessage(tag, name, null, flags | MessageFlags.SYNTHETIC, Status.BUSY, cookie, null));
    return null;
  }

  private push(m: ReceivedMessage): void {
    if ((m.flags & NOT_A_REQUEST) === 0) this.queuedRequests++;
    this.queue.push(m);
  }

  /** Teardown: close the fds of messages never taken and of fds never claimed. */
  clear(): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const m = this.queue[i];
      if (m instanceof ReceivedMessage) {
        m.dispose();
      }
    }
    this.queue.length = this.head = 0;
    this.queuedRequests = 0;
    this.fdIn.closeAll();
  }
}
