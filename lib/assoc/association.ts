/**
 * `lwmsg_assoc_*`: the association state machine (reference §3–§4), the same
 * code over any transport — a UNIX socket (LOCAL, PAIR), TCP/TLS (REMOTE) or
 * an in-memory pair in tests. Fast because send() encodes into one reusable
 * buffer whose messages leave together once per turn ({@link OutboundQueue}),
 * recv() decodes everything one read brought ({@link Inbox}), and a fast
 * reply is caught by a bounded wait without a thread hop ({@link ReplyPoll}).
 * @module
 */
import { CodecContext } from "../codec/io.ts";
import type { Protocol, ProtocolEntry } from "../protocol.ts";
import { LwMsgError, Status } from "../status.ts";
import type { SecurityToken } from "../token.ts";
import { AGAIN, READABLE, WRITABLE } from "../transport/types.ts";
import { InboundFramer, type FrameSink } from "../wire/inbound.ts";
import { OutboundQueue } from "../wire/outbound.ts";
import { encodeShutdown } from "../wire/packets.ts";
import { fdFieldPaths, resolveOutgoing, type OutgoingMessage, type ReceivedMessage } from "./message.ts";
import { Phase, checkConnectionOptions, checkProtocol, describePhase, publicState, type AssocState, type ConnectionOptions } from "./options.ts";
import { Inbox, type Admission } from "./inbox.ts";
import { Link } from "./link.ts";
import { ReplyPoll } from "./reply-poll.ts";
import { DrainWaiters, answer, settled, type Waiter } from "./waiters.ts";

/** One shared settled promise: a queued send allocates nothing for its result. */
const RESOLVED: Promise<void> = Promise.resolve();
const IN_BUFFER_SIZE = 256 * 1024;
/** Flush without waiting for the end of the turn once this much is queued; 4× that asks for a bigger kernel send buffer. */
const FLUSH_THRESHOLD = 64 * 1024;
const LARGE_WRITE = 4 * FLUSH_THRESHOLD;

export class Association<P extends Protocol<any> = Protocol<any>> extends Link implements FrameSink {
  readonly protocol: P;
  /** @internal */
  protected phase: Phase = Phase.START;
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
  /** @internal the peer closed (EOF): no goodbye is sent. */
  protected eofSeen = false;
  private readonly outq: OutboundQueue;
  private flushScheduled = false;
  private readonly drainWaiters = new DrainWaiters();
  private readonly encodeCtx: CodecContext;
  /** @internal */
  protected readonly framer: InboundFramer;
  private readonly inbox: Inbox;
  private waiter: Waiter<ReceivedMessage> | null = null;
  private readonly replyPoll: ReplyPoll;
  private justSent = false;

  constructor(protocol: P, options: ConnectionOptions = {}) {
    super();
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
    this.inbox = new Inbox(protocol, options.handles ?? null, o.maxDecodedBytes);
  }

  /** The parked recv(); setting it keeps the process-wide count of parked receives in step. */
  private get recvWaiter(): Waiter<ReceivedMessage> | null {
    return this.waiter;
  }
  private set recvWaiter(w: Waiter<ReceivedMessage> | null) {
    if ((w === null) !== (this.waiter === null)) ReplyPoll.parked += w === null ? -1 : 1;
    this.waiter = w;
  }

  /** @internal the peer layer's admission limit for requests (answered BUSY from their header beyond it). */
  setAdmission(a: Admission | null): void {
    this.inbox.admission = a;
  }

  /** Swap in the session's handle table (the peer layer does this). */
  setHandles(handles: ConnectionOptions["handles"]): void {
    this.encodeCtx.handles = handles ?? null;
    this.inbox.decodeCtx.handles = handles ?? null;
  }

  // ---------------------------------------------------------------- state

  /** True while the association can carry messages (handshake done, not closed or failed). */
  get established(): boolean {
    return this.phase === Phase.ESTABLISHED;
  }

  /** `lwmsg_assoc_get_state` (public state mapping of §4). */
  get state(): AssocState {
    return publicState(this.phase, this.outq.unsent > 0, this.framer.partial);
  }

  /** The peer's identity (§5, or the TLS certificate's for REMOTE), once established; null before. */
  get peerToken(): SecurityToken | null {
    return this.token;
  }

  /** @internal for tests: outgoing buffer capacity and unsent bytes, received fds held and their FIFO's length. */
  get _diag(): { outBuffer: number; unsent: number; heldFds: number; fdFifo: number } {
    return { outBuffer: this.outq.out.buf.length, unsent: this.outq.unsent, heldFds: this.inbox.fdIn.held, fdFifo: this.inbox.fdIn.fds.length };
  }

  // ---------------------------------------------------------------- establish (used by the handshake)

  /** @internal the handshake is done: fix the packet size and start serving messages. */
  protected establish(peerPacketSize: number, peerCookie: Uint8Array, token: SecurityToken): void {
    this.packetSize = this.framer.packetSize = Math.min(this.ownPacketSize, peerPacketSize);
    this.token = token;
    this.peerCookie = peerCookie;
    // Rebuilding the buffers drops anything queued during the handshake (§3.2), fds included.
    this.inbox.fdIn.closeAll();
    this.outq.writev = typeof this.transport?.writev === "function";
    this.phase = Phase.ESTABLISHED;
    this.framer.parse(this); // bytes that came with the greeting
  }

  /** @internal the handshake failed. */
  protected failEstablish(): void {
    this.releaseSocket();
    this.phase = Phase.ERROR;
  }

  /** @internal */
  protected describePhase(): string {
    return describePhase(this.phase);
  }

  // ---------------------------------------------------------------- send

  /**
   * `lwmsg_assoc_send_message`. The message is encoded at once (the caller may reuse or close what it
   * passed, fds included) and leaves with the other messages of this turn. Resolves once it is in the
   * kernel or in the bounded outgoing queue. Encoding errors reject and leave the connection usable (§3.4).
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
    return this.outq.unsent >= this.sendQueueLimit || this.drainWaiters.waiting;
  }

  /**
   * Resolves once send() would no longer wait (queued bytes under `sendQueueLimit`); rejects if the
   * connection fails first (TIMEOUT after the message timeout). A server stops reading requests while its
   * replies cannot drain, so a client that does not read cannot grow its memory.
   */
  drained(): Promise<void> {
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("drained"));
    return this.sendBlocked ? this.waitDrained() : RESOLVED;
  }

  private afterEnqueue(): Promise<void> {
    const queued = this.outq.unsent;
    if (queued >= FLUSH_THRESHOLD || queued >= this.sendQueueLimit) {
      this.flush();
      this.outq.settleExternal(); // what the kernel did not take of the caller's arrays is copied: taken at once
      if (this.phase !== Phase.ESTABLISHED && this.fatal) return Promise.reject(this.fatal);
      if (this.outq.unsent >= this.sendQueueLimit) return this.waitDrained();
    } else this.scheduleFlush(); // (never with arrays left in the caller's memory: those are ≥ FLUSH_THRESHOLD)
    return RESOLVED;
  }

  /** Wait until queued bytes fall under the limit (or everything is sent); the message timeout fails the connection. */
  private waitDrained(): Promise<void> {
    const p = this.drainWaiters.wait(this.messageTimeout, () => {
      this.unrefIfIdle();
      this.toError(new LwMsgError(Status.TIMEOUT, `send: peer did not read for ${this.messageTimeout} ms`));
      return this.fatal!;
    });
    this.ref();
    this.flush();
    return p;
  }

  /** Encode one message into the outgoing queue; on failure nothing of it stays queued. */
  private enqueue(message: OutgoingMessage): void {
    const h = resolveOutgoing(this.protocol, message);
    const entry = h.entry;
    if (entry !== undefined && entry.hasFds && !this.transport!.caps.fds) this.refuseFds(entry);
    const size = this.outq.enqueue(entry, h.tag, h.flags, h.status, h.cookie, message.data, this.encodeCtx, this.packetSize);
    if (size >= LARGE_WRITE) this.transport!.expectLargeWrites?.(size);
  }

  /** @internal a message with fd fields on a transport that cannot carry fds (REMOTE). */
  protected refuseFds(entry: ProtocolEntry): void {
    const fields = fdFieldPaths(entry.type).join(", ");
    throw new LwMsgError(Status.INVALID_PARAMETER, `send ${entry.name}: fd field ${fields} cannot travel over ${this.transport!.description} (fds pass only over UNIX sockets); nothing was sent`);
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
    else if (r < 0) {
      // The peer is gone: first take in what it sent before closing — a SHUTDOWN(AGAIN) lets calls be re-sent, EPIPE would not.
      while (this.phase === Phase.ESTABLISHED && this.readOnce() > 0) this.framer.parse(this);
      return this.toError(LwMsgError.fromErrno("sendmsg", r, true));
    }
    if (this.outq.unsent > 0) this.armWatch();
    this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    if (!this.drainWaiters.waiting || this.outq.unsent >= this.sendQueueLimit) return;
    this.drainWaiters.release();
    this.unrefIfIdle();
  }

  // ---------------------------------------------------------------- receive

  /**
   * `lwmsg_assoc_recv_message`, served from messages already read when there are any. A payload that fails
   * to decode gives a synthetic message (§3.4); a tag not in the protocol rejects with MALFORMED and the
   * connection stays usable; a peer shutdown rejects with PEER_CLOSE/PEER_RESET/PEER_ABORT (or AGAIN, see
   * `shutdownError`). Only one recv may wait at a time (BUSY otherwise).
   */
  recv(): Promise<ReceivedMessage> {
    const m = this.inbox.take();
    if (m !== undefined) return settled(m);
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("recv"));
    if (this.recvWaiter) return Promise.reject(new LwMsgError(Status.BUSY, "recv: another recv is already waiting on this connection"));
    if (this.outq.unsent > 0) this.flush(); // about to wait: let the request go first
    this.pump();
    const m2 = this.inbox.take();
    if (m2 !== undefined) return settled(m2);
    if (this.justSent && this.phase === Phase.ESTABLISHED && this.replyPoll.tryWait(this.transport!)) {
      this.pump();
      const m3 = this.inbox.take();
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
          this.inbox.take(); // the timeout is reported here, not again
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
    return this.send(message).then(() => this.recv());
  }

  /** Read until the transport has nothing more or a message is ready. */
  private pump(): void {
    if (this.framer.unparsed) {
      this.framer.parse(this); // bytes left by a parse that stopped at the admission limit
      if (this.inbox.ready) return;
    }
    while (this.phase === Phase.ESTABLISHED) {
      // fds not yet claimed stay queued even when every byte is parsed: a sendmsg that the kernel takes only in part
      // carries all its fds with the first part, so fds can arrive ahead of bytes still to come (lwmsg §10.10
      // keeps them queued too). maxFds bounds them.
      if (this.readOnce() <= 0) return;
      this.framer.parse(this);
      if (this.inbox.ready) return;
    }
  }

  /** One read into the framer's free tail. >0 bytes, AGAIN, or ≤ 0 after recording a fatal error. */
  private readOnce(): number {
    const f = this.framer;
    const fdIn = this.inbox.fdIn;
    const t = this.transport!;
    f.makeRoom();
    fdIn.compact();
    const r = t.read(f.readTarget, f.readOffset, f.readLength, fdIn.fds, this.maxFds + 1 - fdIn.held);
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
      f.wrote(r);
      return r;
    }
    if (r === AGAIN) return AGAIN;
    if (r === 0) this.eofSeen = true;
    this.toError(t.failure ?? (r === 0 ? new LwMsgError(Status.PEER_CLOSE, "peer closed the connection") : LwMsgError.fromErrno("recvmsg", r, true)));
    return r;
  }

  /** @internal FrameSink: the framer runs while established and the inbox has room (admission). */
  get open(): boolean {
    return this.phase === Phase.ESTABLISHED && !this.inbox.full;
  }

  /** @internal FrameSink: decode one whole message into the inbox. */
  message(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number, owned: boolean): void {
    const fatal = this.inbox.decode(flags, status, cookie, tag, bytes, start, end, owned);
    if (fatal !== null) this.toError(fatal);
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
    if (this.recvWaiter || this.ioEvents === READABLE) ev |= READABLE;
    if (this.outq.unsent > 0 || this.ioEvents === WRITABLE) ev |= WRITABLE;
    if (ev !== 0) t.arm(ev);
  }

  /** @internal Link: the transport is ready while established. */
  protected ready(): void {
    if (this.phase !== Phase.ESTABLISHED) return;
    if (this.outq.unsent > 0) this.flush();
    if (this.recvWaiter) {
      this.pump();
      // pump() may have failed the connection, which already answered the waiter.
      const w = this.recvWaiter as Waiter<ReceivedMessage> | null;
      const m = w ? this.inbox.take() : undefined;
      if (w && m !== undefined) {
        this.recvWaiter = null;
        if (w.timer) clearTimeout(w.timer);
        this.unrefIfIdle();
        answer(w, m);
      }
    }
    if (this.phase === Phase.ESTABLISHED) this.armWatch();
  }

  /** @internal Link: a receive or a send is waiting. */
  protected waiting(): boolean {
    return this.recvWaiter !== null || this.drainWaiters.waiting;
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
    this.inbox.end(e);
    this.framer.abandonMessage();
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      answer(rw, this.inbox.take()!);
    }
    this.drainWaiters.fail(e);
    this.outq.clear();
    // Nothing will be parsed any more: fds not yet claimed by a message can never be (MSG_CTRUNC included).
    this.inbox.fdIn.closeAll();
    this.unrefIfIdle();
  }

  /** @internal close the transport and every fd we hold; waiters fail with `reason`. */
  protected releaseSocket(reason: LwMsgError = new LwMsgError(Status.CANCELLED, "connection closed locally")): void {
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      rw.reject(reason);
    }
    this.drainWaiters.fail(reason);
    this.outq.clear();
    // Messages received but never taken by recv(), and fds never claimed: closed.
    this.inbox.clear();
    this.framer.clear();
    this.closeTransport(reason);
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
  close(): Promise<void> {
    return this.closeWith(Status.PEER_CLOSE);
  }

  /** @internal close() with SHUTDOWN(`status`): a draining server's AGAIN ("what I did not answer was not run"). */
  async closeWith(status: number): Promise<void> {
    if (this.phase === Phase.CLOSED) return;
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.ERROR) await this.sayGoodbye(status);
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
   * `lwmsg_assoc_delete`: immediate teardown, no SHUTDOWN packet. Messages already handed to `send()`
   * get one non-blocking write first: only what a full socket cannot take at once is dropped.
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
