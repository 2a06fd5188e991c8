/**
 * An in-process transport pair for tests of the layers above (framer,
 * handshake, association): bytes written on one end become readable on the
 * other, with no socket and no kernel. It can misbehave on purpose the way
 * real streams do: deliver in tiny pieces (reassembly), take writes in part
 * and refuse them when the peer does not read (backpressure), end (EOF).
 *
 * Readiness is reported asynchronously (a microtask), never from inside the
 * call that made it true, like the poller behind the UNIX transport.
 * @module
 */
import { PushReadiness } from "./readiness.ts";
import { Errno } from "../status.ts";
import type { SecurityToken } from "../token.ts";
import { AGAIN, READABLE, WRITABLE, type Transport, type TransportCaps } from "./types.ts";

const MEMORY_CAPS: TransportCaps = { fds: false, replyPoll: false };

/** Options of {@link memoryPair} (both ends get the same). */
export interface MemoryPairOptions {
  /**
   * Deliver bytes in random pieces of 1..`chunk` bytes, each piece becoming
   * readable on a later turn (setImmediate), and take writes in such pieces
   * too. `1` delivers one byte per turn. Default: whole writes at once.
   */
  chunk?: number;
  /**
   * Most unread bytes one end holds for the other: `write` takes only what
   * fits and returns AGAIN when nothing does; WRITABLE fires once the reader
   * drains some. Default: unbounded.
   */
  capacity?: number;
  /** The token `identity()` reports on both ends (default: this process's {@link LocalToken}). */
  token?: SecurityToken;
  /** Seed for the piece sizes (default 1): runs repeat exactly. */
  seed?: number;
}

/** The bytes one end has written and the other has not read yet. */
class Pipe {
  readonly chunks: Uint8Array[] = [];
  /** Offset into chunks[0]. */
  head = 0;
  /** Bytes queued (visible or not). */
  queued = 0;
  /** Bytes the reader may take now (the rest is still "in flight" while chunking). */
  visible = 0;
  /** The writer closed: EOF after the queued bytes. */
  ended = false;
}

/** Keeps the process alive while any memory transport is ref'd (a parked recv must not let the test process exit). */
let keepAliveRefs = 0;
let keepAliveTimer: ReturnType<typeof setInterval> | null = null;
function keepAlive(delta: number): void {
  keepAliveRefs += delta;
  if (keepAliveRefs > 0 && keepAliveTimer === null) keepAliveTimer = setInterval(() => {}, 1 << 30);
  else if (keepAliveRefs === 0 && keepAliveTimer !== null) {
    clearInterval(keepAliveTimer);
    keepAliveTimer = null;
  }
}

/** One end of a {@link memoryPair}. */
export class MemoryTransport extends PushReadiness implements Transport {
  readonly caps = MEMORY_CAPS;
  readonly description = "memory";
  readonly truncated = false;
  /** Set by memoryPair. */
  peer!: MemoryTransport;
  private refd = false;
  private releaseScheduled = false;
  /** Bytes written on this end in total (for tests). */
  bytesWritten = 0;

  constructor(
    /** What this end reads from. */
    private readonly inbound: Pipe,
    /** What this end writes to (the peer's inbound). */
    private readonly outbound: Pipe,
    private readonly opts: { chunk: number; capacity: number; token: SecurityToken; random: () => number },
  ) {
    super();
  }

  read(dst: Uint8Array, off: number, len: number, _fds: number[] | null, _maxFds: number): number {
    if (this.closed) return -Errno.EBADF;
    const p = this.inbound;
    if (p.visible === 0) return p.ended && p.queued === 0 ? 0 : AGAIN;
    let n = 0;
    while (n < len && p.visible > 0) {
      const c = p.chunks[0]!;
      const take = Math.min(len - n, c.length - p.head, p.visible);
      dst.set(c.subarray(p.head, p.head + take), off + n);
      n += take;
      p.head += take;
      p.visible -= take;
      p.queued -= take;
      if (p.head === c.length) {
        p.chunks.shift();
        p.head = 0;
      }
    }
    // Room again for the writer: it may be waiting for WRITABLE.
    if (n > 0) this.peer.maybeDeliver();
    return n;
  }

  write(src: Uint8Array, off: number, len: number, _fds: Int32Array | null, nfds: number): number {
    if (this.closed) return -Errno.EBADF;
    if (nfds > 0) return -Errno.EINVAL; // caps.fds is false: the association never asks
    const p = this.outbound;
    if (this.peer.closed) return -Errno.EPIPE;
    if (len === 0) return 0;
    let n = Math.min(len, this.opts.capacity - p.queued);
    if (n <= 0) return AGAIN;
    if (this.opts.chunk > 0) n = Math.min(n, this.piece());
    p.chunks.push(src.slice(off, off + n)); // copied: the caller reuses its buffer
    p.queued += n;
    this.bytesWritten += n;
    if (this.opts.chunk > 0) this.peer.scheduleRelease();
    else {
      p.visible += n;
      this.peer.maybeDeliver();
    }
    return n;
  }

  private piece(): number {
    return 1 + Math.floor(this.opts.random() * this.opts.chunk);
  }

  /** Chunking: make one more piece of the inbound bytes readable, one piece per turn. */
  private scheduleRelease(): void {
    if (this.releaseScheduled) return;
    this.releaseScheduled = true;
    setImmediate(this.release);
  }

  private release = (): void => {
    this.releaseScheduled = false;
    if (this.closed) return;
    const p = this.inbound;
    const hidden = p.queued - p.visible;
    if (hidden > 0) {
      p.visible += Math.min(hidden, this.piece());
      this.maybeDeliver();
    }
    if (p.queued - p.visible > 0) this.scheduleRelease();
  };

  private scheduleReleaseIfHidden(): void {
    const p = this.inbound;
    if (p.queued - p.visible > 0) this.scheduleRelease();
    else this.maybeDeliver(); // EOF is "visible" once every byte before it is
  }

  /** Events that are true right now. */
  protected readyEvents(): number {
    let ev = 0;
    const p = this.inbound;
    if (p.visible > 0 || (p.ended && p.queued === 0)) ev |= READABLE;
    if (this.peer.closed || this.outbound.queued < this.opts.capacity) ev |= WRITABLE;
    return ev;
  }

  waitReadable(_us: number): boolean {
    return false;
  }

  inputPending(): boolean {
    const p = this.inbound;
    return p.visible > 0 || (p.ended && p.queued === 0);
  }

  identity(): SecurityToken {
    return this.opts.token;
  }

  ref(): void {
    if (!this.refd && !this.closed) {
      this.refd = true;
      keepAlive(1);
    }
  }

  unref(): void {
    if (this.refd) {
      this.refd = false;
      keepAlive(-1);
    }
  }

  /** Close this end: the peer reads what was written, then EOF; its writes fail with EPIPE. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.unref();
    this.stopReadiness();
    this.outbound.ended = true;
    // What this end never read is dropped.
    this.inbound.chunks.length = 0;
    this.inbound.queued = this.inbound.visible = 0;
    this.peer.scheduleReleaseIfHidden();
  }

  /** True once close() ran. */
  get isClosed(): boolean {
    return this.closed;
  }
}

/** A seeded xorshift32: piece sizes repeat from run to run. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

/**
 * Two connected in-memory transports. Caps: no fds, no reply poll; the
 * identity is this process's local token unless `opts.token` says otherwise.
 *
 * ```ts
 * const [ta, tb] = memoryPair({ chunk: 1 });
 * a.setTransport(ConnectionMode.PAIR, ta);
 * b.setTransport(ConnectionMode.PAIR, tb);
 * await Promise.all([a.connect(), b.accept()]);
 * ```
 */
export function memoryPair(opts: MemoryPairOptions = {}): [MemoryTransport, MemoryTransport] {
  const chunk = opts.chunk ?? 0;
  if (!Number.isInteger(chunk) || chunk < 0) throw new RangeError(`memoryPair: chunk must be a non-negative integer, got ${chunk}`);
  const capacity = opts.capacity ?? Infinity;
  if (capacity !== Infinity && (!Number.isInteger(capacity) || capacity < 1)) throw new RangeError(`memoryPair: capacity must be a positive integer, got ${capacity}`);
  const token: SecurityToken = opts.token ?? { type: "local", euid: process.geteuid!(), egid: process.getegid!(), pid: process.pid };
  const o = { chunk, capacity, token, random: xorshift(opts.seed ?? 1) };
  const ab = new Pipe();
  const ba = new Pipe();
  const a = new MemoryTransport(ba, ab, o);
  const b = new MemoryTransport(ab, ba, o);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
