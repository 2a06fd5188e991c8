/**
 * `lwmsg_assoc_*`: the association state machine (reference §3–§4), the same
 * code over any {@link Transport} — a UNIX socket (LOCAL, PAIR), TCP/TLS
 * (REMOTE) or an in-memory pair in tests.
 *
 * The hot path, and why it is fast:
 *  - send() encodes straight into one reusable outgoing buffer
 *    ({@link OutboundQueue}); messages queued in the same turn leave together
 *    in one transport write, their fds in one control message.
 *  - recv() reads as much as the transport has into the framer's buffer,
 *    decodes every complete message into a queue and serves later recv()
 *    calls from it without another read.
 *  - Right after a request, a short bounded wait on the socket catches a fast
 *    reply without the poller's thread hop (where the transport can wait;
 *    adaptive, see {@link ConnectionOptions.replyPollUs}).
 * @module
 */
import { ByteReader, CodecContext } from "../codec/io.ts";
import type { Protocol, ProtocolEntry } from "../protocol.ts";
import { Errno, LwMsgError, Status } from "../status.ts";
import type { SecurityToken } from "../token.ts";
import { FdInQueue, closeFd } from "../transport/fdqueue.ts";
import { AGAIN, READABLE, WRITABLE, type Transport } from "../transport/types.ts";
import { InboundFramer, type FrameSink } from "../wire/inbound.ts";
import { OutboundQueue } from "../wire/outbound.ts";
import { MessageFlags, TAG_INVALID, encodeShutdown } from "../wire/packets.ts";
import { ReceivedMessage, type OutgoingMessage } from "./message.ts";
import { AssocState, checkConnectionOptions, checkProtocol, type ConnectionOptions } from "./options.ts";
import { ReplyPoll } from "./reply-poll.ts";

export type Waiter<T> = { resolve: (v: T) => void; reject: (e: unknown) => void; timer: ReturnType<typeof setTimeout> | null };

export const enum Phase {
  START, // NOT_ESTABLISHED
  CONNECTING,
  HANDSHAKE,
  ESTABLISHED,
  CLOSED,
  ERROR,
}

/** A queued receive result as the promise recv() returns. */
function settled(m: ReceivedMessage | LwMsgError): Promise<ReceivedMessage> {
  return m instanceof LwMsgError ? Promise.reject(m) : Promise.resolve(m);
}

/** Hand a receive result to a parked recv(). */
function answer(w: Waiter<ReceivedMessage>, m: ReceivedMessage | LwMsgError): void {
  if (m instanceof LwMsgError) w.reject(m);
  else w.resolve(m);
}

/** One shared settled promise: a queued send allocates nothing for its result. */
const RESOLVED: Promise<void> = Promise.resolve();
const IN_BUFFER_SIZE = 256 * 1024;
/** Flush without waiting for the end of the turn once this much is queued. */
const FLUSH_THRESHOLD = 64 * 1024;

export class Association<P extends Protocol<any> = Protocol<any>> implements FrameSink {
  readonly protocol: P;
  /** @internal */
  protected phase = Phase.START;
  /** @internal what carries the bytes (null before connect/accept and after teardown). */
  protected transport: Transport | null = null;
  /** @internal own preferred packet size (sent in the greeting). */
  protected ownPacketSize: number;
  /** Negotiated packet size (own preference until established). */
  packetSize: number;
  readonly maxMessageSize: number;
  /** Most received fds held ahead of their messages (see ConnectionOptions.maxFds). */
  readonly maxFds: number;
  /** @internal */
  protected messageTimeout: number | null;
  /** @internal */
  protected establishTimeout: number | null;
  private readonly sendQueueLimit: number;
  /** @internal */
  protected token: SecurityToken | null = null;
  /** This side's 8-byte session cookie sent in CONNECT (`connect_id`). */
  connectCookie: Uint8Array = crypto.getRandomValues(new Uint8Array(8));
  /** Cookie sent in ACCEPT (`accept_id`); all zero for a bare association (§10.11). */
  acceptCookie: Uint8Array = new Uint8Array(8);
  /** The cookie the peer sent in its greeting, once established. */
  peerCookie: Uint8Array | null = null;
  private fatal: LwMsgError | null = null;
  private refd = false;
  /** @internal the peer closed (EOF): no goodbye is sent. */
  protected eofSeen = false;

  // outgoing
  private readonly outq: OutboundQueue;
  private flushScheduled = false;
  private drainWaiters: Waiter<void>[] = [];
  private readonly encodeCtx: CodecContext;

  // incoming
  /** @internal */
  protected readonly framer: InboundFramer;
  private readonly fdIn = new FdInQueue();
  private queue: (ReceivedMessage | LwMsgError)[] = [];
  private queueHead = 0;
  private reader = new ByteReader(new Uint8Array(0));
  private readonly decodeCtx: CodecContext;
  private waiter: Waiter<ReceivedMessage> | null = null;
  private readonly replyPoll: ReplyPoll;
  private justSent = false;

  constructor(protocol: P, options: ConnectionOptions = {}) {
    checkProtocol(protocol);
    const o = checkConnectionOptions(options);
    this.protocol = protocol;
    this.ownPacketSize = this.packetSize = o.packetSize;
    this.maxMessageSize = o.maxMessageSize;
    this.maxFds = o.maxFds;
    this.messageTimeout = o.messageTimeout;
    this.establishTimeout = o.establishTimeout;
    this.sendQueueLimit = o.sendQueueLimit;
    this.replyPoll = new ReplyPoll(o.replyPollUs);
    // The writer's cap is set per message in enqueue(): the queue itself is
    // bounded by callers awaiting send(), not by refusing messages.
    this.outq = new OutboundQueue(o.maxMessageSize, o.sendQueueLimit);
    this.framer = new InboundFramer(o.packetSize, o.maxMessageSize, IN_BUFFER_SIZE);
    this.encodeCtx = new CodecContext(options.handles ?? null);
    this.decodeCtx = new CodecContext(options.handles ?? null);
  }

  /** The parked recv(); setting it keeps the process-wide count of parked receives in step. */
  private get recvWaiter(): Waiter<ReceivedMessage> | null {
    return this.waiter;
  }
  private set recvWaiter(w: Waiter<ReceivedMessage> | null) {
    if ((w === null) !== (this.waiter === null)) ReplyPoll.parked += w === null ? -1 : 1;
    this.waiter = w;
  }

  /** Swap in the session's handle table (the peer layer does this). */
  setHandles(handles: ConnectionOptions["handles"]): void {
    this.encodeCtx.handles = handles ?? null;
    this.decodeCtx.handles = handles ?? null;
  }

  // ---------------------------------------------------------------- state

  /** True while the association can carry messages (handshake done, not closed or failed). */
  get established(): boolean {
    return this.phase === Phase.ESTABLISHED;
  }

  /** `lwmsg_assoc_get_state` (public state mapping of §4). */
  get state(): AssocState {
    switch (this.phase) {
      case Phase.START:
        return AssocState.NOT_ESTABLISHED;
      case Phase.CONNECTING:
        return AssocState.BLOCKED_SEND;
      case Phase.HANDSHAKE:
        return AssocState.BLOCKED_SEND_RECV;
      case Phase.CLOSED:
        return AssocState.CLOSED;
      case Phase.ERROR:
        return AssocState.ERROR;
      case Phase.ESTABLISHED: {
        const s = this.outq.unsent > 0;
        const r = this.framer.partial;
        return s && r ? AssocState.BLOCKED_SEND_RECV : s ? AssocState.BLOCKED_SEND : r ? AssocState.BLOCKED_RECV : AssocState.IDLE;
      }
    }
  }

  /** The peer's identity (§5, or the TLS certificate's for REMOTE), once established; null before. */
  get peerToken(): SecurityToken | null {
    return this.token;
  }

  /** @internal for tests: capacity of the outgoing buffer (bounded memory), received fds held and the length of their FIFO. */
  get _diag(): { outBuffer: number; unsent: number; heldFds: number; fdFifo: number } {
    return { outBuffer: this.outq.out.buf.length, unsent: this.outq.unsent, heldFds: this.fdIn.held, fdFifo: this.fdIn.fds.length };
  }

  /** True if input (or the peer's close) is waiting to be read: lets the peer layer notice a dead idle connection before it sends. */
  inputPending(): boolean {
    return this.transport !== null && this.transport.inputPending();
  }

  // ---------------------------------------------------------------- establish (used by the handshake)

  /** @internal start reading from the transport (buffers allocated on first use). */
  protected attach(t: Transport): void {
    this.transport = t;
    this.framer.makeRoom();
    t.start(this.onReady);
  }

  /** @internal the handshake is done: fix the packet size and start serving messages. */
  protected establish(peerPacketSize: number, peerCookie: Uint8Array, token: SecurityToken): void {
    this.packetSize = this.framer.packetSize = Math.min(this.ownPacketSize, peerPacketSize);
    this.token = token;
    this.peerCookie = peerCookie;
    // Rebuilding the buffers drops anything queued during the handshake (§3.2), fds included.
    this.fdIn.closeAll();
    this.framer.fitPacket();
    this.phase = Phase.ESTABLISHED;
    this.framer.parse(this); // bytes that came with the greeting
  }

  /** @internal the handshake failed. */
  protected failEstablish(): void {
    this.releaseSocket();
    this.phase = Phase.ERROR;
  }

  /** @internal a refusal travels as SHUTDOWN(status) in place of ACCEPT (see Connection.accept). */
  protected sendRefusal(status: number): void {
    const b = encodeShutdown(status);
    this.transport?.write(b, 0, b.length, null, 0);
  }

  /** @internal */
  protected describePhase(): string {
    return ["not established", "connecting", "in its handshake", "established", "closed", "in error"][this.phase]!;
  }

  // ---------------------------------------------------------------- send

  /**
   * `lwmsg_assoc_send_message`. The message is encoded at once (the caller
   * may reuse or close what it passed, fds included) and leaves with the
   * other messages of this turn. Resolves once it is in the kernel or in the
   * bounded outgoing queue. Encoding errors reject and leave the connection
   * usable, as in lwmsg (§3.4).
   */
  send(message: OutgoingMessage): Promise<void> {
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("send"));
    try {
      this.enqueue(message);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.afterEnqueue();
  }

  /** True while send() would wait: queued outgoing bytes are at `sendQueueLimit` (the peer is not reading fast enough). */
  get sendBlocked(): boolean {
    return this.outq.unsent >= this.sendQueueLimit || this.drainWaiters.length > 0;
  }

  /**
   * Resolves once send() would no longer wait (queued bytes under
   * `sendQueueLimit`); rejects if the connection fails first (TIMEOUT after
   * the message timeout). A server stops reading requests while its replies
   * cannot drain, so a client that does not read cannot grow its memory.
   */
  drained(): Promise<void> {
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("drained"));
    return this.sendBlocked ? this.waitDrained() : RESOLVED;
  }

  private afterEnqueue(): Promise<void> {
    const queued = this.outq.unsent;
    if (queued >= FLUSH_THRESHOLD || queued >= this.sendQueueLimit) {
      this.flush();
      if (this.phase !== Phase.ESTABLISHED && this.fatal) return Promise.reject(this.fatal);
      if (this.outq.unsent >= this.sendQueueLimit) return this.waitDrained();
    } else this.scheduleFlush();
    return RESOLVED;
  }

  /** Wait until queued bytes fall under the limit (or everything is sent). */
  private waitDrained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const w: Waiter<void> = { resolve, reject, timer: null };
      if (this.messageTimeout !== null) {
        w.timer = setTimeout(() => {
          const i = this.drainWaiters.indexOf(w);
          if (i >= 0) this.drainWaiters.splice(i, 1);
          this.unrefIfIdle();
          this.toError(new LwMsgError(Status.TIMEOUT, `send: peer did not read for ${this.messageTimeout} ms`));
          reject(this.fatal);
        }, this.messageTimeout);
      }
      this.drainWaiters.push(w);
      this.ref();
      this.flush();
    });
  }

  /** Encode one message into the outgoing queue; on failure nothing of it stays queued. */
  private enqueue(message: OutgoingMessage): void {
    if (message === null || typeof message !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "send: message must be an object { tag, data }");
    let entry: ProtocolEntry | undefined;
    let tag: number;
    const t = message.tag;
    if (typeof t === "string") {
      entry = this.protocol.byName(t);
      if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag "${t}" is not in the protocol`);
      tag = entry.tag;
    } else if (t === TAG_INVALID) {
      tag = TAG_INVALID;
    } else if (typeof t === "number" && Number.isInteger(t)) {
      entry = this.protocol.byTag(t);
      if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag ${t} is not in the protocol`);
      tag = t;
    } else throw new LwMsgError(Status.INVALID_PARAMETER, `send: tag must be a protocol name or number, got ${String(t)}`);
    const flags = message.flags ?? 0;
    const status = message.status ?? 0;
    const cookie = message.cookie ?? 0;
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: flags must be a u8, got ${flags}`);
    if (!Number.isInteger(status) || status < 0 || status > 0xffffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: status must be a u32, got ${status}`);
    if (!Number.isInteger(cookie) || cookie < 0 || cookie > 0xffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: cookie must be a u16, got ${cookie}`);
    if (entry?.hasFds && !this.transport!.caps.fds) this.refuseFds(entry, message.data);
    this.outq.enqueue(entry, tag, flags, status, cookie, message.data, this.encodeCtx, this.packetSize);
  }

  /** @internal a message with fd fields on a transport that cannot carry fds (REMOTE). */
  protected refuseFds(entry: ProtocolEntry, _data: unknown): void {
    throw new LwMsgError(Status.INVALID_PARAMETER, `send ${entry.name}: its type has fd fields, and fds cannot travel over ${this.transport!.description}; nothing was sent`);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushTask);
  }

  private flushTask = (): void => {
    this.flushScheduled = false;
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.HANDSHAKE) this.flush();
  };

  /** Push queued bytes (and their fds) into the transport until it is empty or full. */
  private flush(): void {
    const r = this.outq.flushTo(this.transport!);
    if (r > 0) this.justSent = true;
    else if (r < 0) return this.toError(LwMsgError.fromErrno("sendmsg", r, true));
    if (this.outq.unsent > 0) this.armWatch();
    this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    if (this.drainWaiters.length === 0) return;
    if (this.outq.unsent >= this.sendQueueLimit) return;
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve();
    }
    this.unrefIfIdle();
  }

  // ---------------------------------------------------------------- receive

  /**
   * `lwmsg_assoc_recv_message`. Served from messages already read when there
   * are any. A payload that fails to decode gives a synthetic message (§3.4);
   * a tag not in the protocol rejects with MALFORMED and the connection stays
   * usable; a peer shutdown rejects with PEER_CLOSE/PEER_RESET/PEER_ABORT.
   * Only one recv may wait at a time (BUSY otherwise).
   */
  recv(): Promise<ReceivedMessage> {
    const m = this.takeQueued();
    if (m !== undefined) return settled(m);
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("recv"));
    if (this.recvWaiter) return Promise.reject(new LwMsgError(Status.BUSY, "recv: another recv is already waiting on this connection"));
    if (this.outq.unsent > 0) this.flush(); // about to wait: let the request go first
    this.pump();
    const m2 = this.takeQueued();
    if (m2 !== undefined) return settled(m2);
    if (this.justSent && this.phase === Phase.ESTABLISHED && this.replyPoll.tryWait(this.transport!)) {
      this.pump();
      const m3 = this.takeQueued();
      if (m3 !== undefined) {
        this.justSent = false;
        return settled(m3);
      }
    }
    this.justSent = false;
    return new Promise<ReceivedMessage>((resolve, reject) => {
      const w: Waiter<ReceivedMessage> = { resolve, reject, timer: null };
      if (this.messageTimeout !== null) {
        w.timer = setTimeout(() => {
          if (this.recvWaiter !== w) return;
          this.recvWaiter = null;
          this.unrefIfIdle();
          this.toError(new LwMsgError(Status.TIMEOUT, `recv: no message within ${this.messageTimeout} ms`));
          this.takeQueued(); // the timeout is reported here, not again
          reject(new LwMsgError(Status.TIMEOUT, `recv: no message within ${this.messageTimeout} ms`));
        }, this.messageTimeout);
      }
      this.recvWaiter = w;
      this.ref();
      this.armWatch();
    });
  }

  /** `lwmsg_assoc_send_message_transact`: send, then receive the next message. */
  async transact(message: OutgoingMessage): Promise<ReceivedMessage> {
    await this.send(message);
    return this.recv();
  }

  private takeQueued(): ReceivedMessage | LwMsgError | undefined {
    const q = this.queue;
    if (this.queueHead < q.length) {
      const m = q[this.queueHead]!;
      q[this.queueHead++] = undefined as never;
      if (this.queueHead === q.length) q.length = this.queueHead = 0;
      return m;
    }
    return undefined;
  }

  /** Read until the transport has nothing more or a message is ready. */
  private pump(): void {
    while (this.phase === Phase.ESTABLISHED) {
      // fds not yet claimed stay queued even when every byte is parsed: a
      // sendmsg that the kernel takes only in part carries all its fds with
      // the first part, so fds can arrive ahead of bytes still to come
      // (lwmsg §10.10 keeps them queued too). maxFds bounds them.
      if (this.readOnce() <= 0) return;
      this.framer.parse(this);
      if (this.queueHead < this.queue.length) return;
    }
  }

  /** One read into the framer's free tail. >0 bytes, AGAIN, or ≤ 0 after recording a fatal error. */
  private readOnce(): number {
    const f = this.framer;
    f.makeRoom();
    const fdIn = this.fdIn;
    fdIn.compact();
    const t = this.transport!;
    const r = t.read(f.buf, f.wpos, f.buf.length - f.wpos, fdIn.fds, this.maxFds + 1 - fdIn.held);
    if (fdIn.held > this.maxFds) {
      this.toError(new LwMsgError(Status.MALFORMED, `peer sent more than ${this.maxFds} fds ahead of their messages (maxFds)`));
      return -1;
    }
    if (r > 0) {
      if (t.truncated) {
        // Fds were dropped by the kernel: over our maxFds budget, or out of descriptors (RLIMIT_NOFILE).
        // Either way the fd stream can no longer be matched to messages.
        this.toError(new LwMsgError(Status.RESOURCE_LIMIT, "recvmsg: control data truncated (MSG_CTRUNC), received fds were lost — over maxFds, or out of file descriptors?"));
        return -1;
      }
      f.wpos += r;
      return r;
    }
    if (r === 0) {
      this.eofSeen = true;
      this.toError(new LwMsgError(Status.PEER_CLOSE, "peer closed the connection"));
      return 0;
    }
    if (r === AGAIN) return AGAIN;
    this.toError(LwMsgError.fromErrno("recvmsg", r, true));
    return r;
  }

  /** @internal FrameSink: the framer runs while established. */
  get open(): boolean {
    return this.phase === Phase.ESTABLISHED;
  }

  /** @internal FrameSink: decode one whole message from bytes[start, end) and queue it (or its synthetic stand-in). */
  message(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number): void {
    if (tag === TAG_INVALID) {
      this.queue.push(new ReceivedMessage(tag, undefined, null, flags, status, cookie, null));
      return;
    }
    const entry = this.protocol.byTag(tag);
    if (!entry) {
      this.queue.push(new LwMsgError(Status.MALFORMED, `received tag ${tag} is not in the protocol`));
      return;
    }
    const decode = entry.decode;
    if (!decode) {
      this.queue.push(new ReceivedMessage(tag, entry.name, null, flags, status, cookie, null));
      return;
    }
    const ctx = this.decodeCtx;
    const fdIn = this.fdIn;
    ctx.fdsIn = fdIn.fds;
    ctx.fdsInPos = fdIn.pos;
    ctx.fdsTaken.length = 0;
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
      } else if (s === Status.EOF) {
        // The payload ends before its type does: lwmsg reports running out of fragments as PEER_CLOSE (§3.3).
        this.toError(new LwMsgError(Status.PEER_CLOSE, `message ${entry.name} is truncated: ${err.message}`));
      } else this.toError(err);
      return;
    }
    fdIn.pos = ctx.fdsInPos;
    let fds: number[] | null = null;
    if (ctx.fdsTaken.length > 0) {
      fds = ctx.fdsTaken.slice();
      ctx.fdsTaken.length = 0;
    }
    fdIn.compact();
    this.queue.push(new ReceivedMessage(tag, entry.name, data, flags, status, cookie, fds));
  }

  /** @internal FrameSink: the stream failed (MALFORMED, OVERFLOW, the peer's SHUTDOWN). */
  fail(e: LwMsgError): void {
    this.toError(e);
  }

  // ---------------------------------------------------------------- readiness

  private armWatch(): void {
    const t = this.transport;
    if (!t) return;
    let ev = 0;
    if (this.recvWaiter || this.ioWaiter?.events === READABLE) ev |= READABLE;
    if (this.outq.unsent > 0 || this.ioWaiter?.events === WRITABLE) ev |= WRITABLE;
    if (ev !== 0) t.arm(ev);
  }

  private onReady = (): void => {
    if (this.ioWaiter) {
      const w = this.ioWaiter;
      this.ioWaiter = null;
      w.resolve();
      return;
    }
    if (this.phase !== Phase.ESTABLISHED) return;
    if (this.outq.unsent > 0) this.flush();
    if (this.recvWaiter) {
      this.pump();
      // pump() may have failed the connection, which already answered the waiter.
      const w = this.recvWaiter as Waiter<ReceivedMessage> | null;
      const m = w ? this.takeQueued() : undefined;
      if (w && m !== undefined) {
        this.recvWaiter = null;
        if (w.timer) clearTimeout(w.timer);
        this.unrefIfIdle();
        answer(w, m);
      }
    }
    if (this.phase === Phase.ESTABLISHED) this.armWatch();
  };

  // Handshake-time I/O: exact reads/writes with a deadline.
  private ioWaiter: { events: number; resolve: () => void } | null = null;
  private abortIo: ((e: unknown) => void) | null = null;

  /** @internal wait for the transport to be readable/writable, or the deadline. */
  protected waitFor(events: number, deadline: number | null, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer) clearTimeout(timer);
        this.unrefIfIdle();
        resolve();
      };
      this.ioWaiter = { events, resolve: done };
      this.abortIo = (e: unknown) => {
        if (timer) clearTimeout(timer);
        this.ioWaiter = null;
        this.unrefIfIdle();
        reject(e);
      };
      if (deadline !== null) {
        timer = setTimeout(() => {
          this.ioWaiter = null;
          this.unrefIfIdle();
          reject(new LwMsgError(Status.TIMEOUT, `${what}: timed out`));
        }, Math.max(0, deadline - Date.now()));
      }
      this.ref();
      this.transport!.arm(events);
    });
  }

  /** @internal write all of `bytes` (a greeting, a SHUTDOWN) before the deadline. */
  protected async writeAll(bytes: Uint8Array, deadline: number | null, what: string): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const r = this.transport!.write(bytes, off, bytes.length - off, null, 0);
      if (r > 0) off += r;
      else if (r === AGAIN || r === 0) await this.waitFor(WRITABLE, deadline, what);
      else throw LwMsgError.fromErrno(what, r, true);
    }
  }

  /** @internal read the peer's greeting (or the SHUTDOWN that refuses us). Extra bytes stay for the framer. */
  protected async readGreeting(n: number, deadline: number | null, what: string): Promise<Uint8Array> {
    const f = this.framer;
    for (;;) {
      const g = f.takeGreeting(n);
      if (g !== null) return g;
      f.makeRoom();
      // fds sent with a greeting (AUTH_LOCAL pipe on platforms without peer creds) are not used here.
      const r = this.transport!.read(f.buf, f.wpos, f.buf.length - f.wpos, null, 0);
      if (r > 0) f.wpos += r;
      else if (r === 0) throw new LwMsgError(Status.PEER_CLOSE, `${what}: peer closed the connection`);
      else if (r === AGAIN) await this.waitFor(READABLE, deadline, what);
      else throw LwMsgError.fromErrno(what, r, true);
    }
  }

  /** @internal */
  protected ref(): void {
    if (!this.refd && this.transport) {
      this.refd = true;
      this.transport.ref();
    }
  }

  private unrefIfIdle(): void {
    if (this.refd && !this.recvWaiter && this.drainWaiters.length === 0 && !this.ioWaiter) {
      this.refd = false;
      this.transport?.unref();
    }
  }

  // ---------------------------------------------------------------- errors and teardown

  /** @internal */
  protected notEstablished(op: string): LwMsgError {
    if (this.fatal && this.phase === Phase.ERROR) return new LwMsgError(Status.INVALID_STATE, `${op}: connection is in error after ${this.fatal.message}`);
    return new LwMsgError(Status.INVALID_STATE, `${op}: connection is ${this.describePhase()}`);
  }

  /** Move to ERROR with `e`: queue it for recv (after the good messages) and fail every waiter. */
  private toError(e: LwMsgError): void {
    if (this.phase === Phase.ERROR || this.phase === Phase.CLOSED) return;
    this.phase = Phase.ERROR;
    this.fatal = e;
    this.queue.push(e);
    this.framer.abandonMessage();
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      answer(rw, this.takeQueued()!);
    }
    this.failDrainWaiters(e);
    this.outq.clear();
    // Nothing will be parsed any more: fds not yet claimed by a message can never be (MSG_CTRUNC included).
    this.fdIn.closeAll();
    this.unrefIfIdle();
  }

  private failDrainWaiters(e: unknown): void {
    const dws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of dws) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(e);
    }
  }

  /** @internal close the transport and every fd we hold; waiters fail with `reason`. */
  protected releaseSocket(reason: LwMsgError = new LwMsgError(Status.CANCELLED, "connection closed locally")): void {
    if (this.abortIo) {
      const a = this.abortIo;
      this.abortIo = null;
      if (this.ioWaiter) a(reason);
    }
    this.ioWaiter = null;
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      rw.reject(reason);
    }
    this.failDrainWaiters(reason);
    this.outq.clear();
    this.fdIn.closeAll();
    // Messages received but never taken by recv(): close their fds.
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const m = this.queue[i];
      if (m instanceof ReceivedMessage) m.dispose();
    }
    this.queue.length = this.queueHead = 0;
    this.framer.clear();
    if (this.refd) {
      this.refd = false;
      this.transport?.unref();
    }
    this.transport?.close();
    this.transport = null;
  }

  /** Best-effort: flush what is queued, then a SHUTDOWN packet, within the establish timeout. */
  private async sayGoodbye(status: number): Promise<void> {
    if (this.transport === null || this.eofSeen) return;
    const deadline = this.establishTimeout === null ? Date.now() + 5000 : Date.now() + this.establishTimeout;
    try {
      if (this.phase === Phase.ESTABLISHED) {
        this.flush();
        while (this.phase === Phase.ESTABLISHED && this.outq.unsent > 0) {
          await this.waitFor(WRITABLE, deadline, "flushing before shutdown");
          this.flush();
        }
      }
      await this.writeAll(encodeShutdown(status), deadline, "sending SHUTDOWN");
    } catch {
      // PEER_CLOSE/RESET/ABORT (and timeouts) while saying goodbye are ignored, as in lwmsg (§3.5).
    }
  }

  /** `lwmsg_assoc_close`: flush, send SHUTDOWN(PEER_CLOSE), close the socket → CLOSED. */
  async close(): Promise<void> {
    if (this.phase === Phase.CLOSED) return;
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.ERROR) await this.sayGoodbye(Status.PEER_CLOSE);
    this.releaseSocket();
    this.phase = Phase.CLOSED;
  }

  /** @internal `lwmsg_assoc_reset`'s part here: SHUTDOWN(PEER_RESET), close → NOT_ESTABLISHED. */
  protected async resetAssociation(): Promise<void> {
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.ERROR) await this.sayGoodbye(Status.PEER_RESET);
    this.releaseSocket();
    this.phase = Phase.START;
    this.fatal = null;
    this.token = null;
    this.eofSeen = false;
    this.packetSize = this.framer.packetSize = this.ownPacketSize;
  }

  /**
   * `lwmsg_assoc_delete`: immediate teardown, no SHUTDOWN packet. Messages
   * already handed to `send()` (still queued for this turn's flush) get one
   * non-blocking write first: what the transport takes at once reaches the
   * peer; only what a full socket cannot take is dropped.
   */
  destroy(): void {
    if (this.phase === Phase.ESTABLISHED && this.outq.unsent > 0) this.flush();
    this.releaseSocket();
    this.phase = Phase.CLOSED;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export { Errno };
