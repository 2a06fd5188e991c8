/**
 * A session's calls over one connection (lwmsg's `PeerAssocTask` in DISPATCH
 * state): the receive loop routes REPLY messages to the outgoing calls,
 * CONTROL messages to cancellation, and everything else to the dispatch
 * table as a new incoming call (§7.4). Calls are multiplexed by u16 cookie
 * per direction, so either side may call the other.
 * @module
 */
import { Call, CallDirection, CallError, OutgoingCall, onCallTimeout, type CallOptions } from "../call.ts";
import type { SessionTask } from "../channel.ts";
import type { Connection, OutgoingMessage, ReceivedMessage } from "../connection.ts";
import type { Session } from "../session.ts";
import { LwMsgError, Status } from "../status.ts";
import { MessageFlags, TAG_INVALID } from "../wire/packets.ts";
import { runIncoming, type Replier } from "./dispatch.ts";
import { completeOutgoing, failOutgoing, openOutgoing, reissueOutgoing } from "./outgoing.ts";
import { CALL_LOCAL_ENCODE_ERRORS, MAX_COOKIES, REPLY_ENCODE_ERRORS, asLwError, noop, type ChannelHost } from "./types.ts";

const peek = Bun.peek;
/** A call made this long (ms) after the previous one first checks whether the peer closed the idle connection (call()). */
const IDLE_CHECK_MS = 0.1;

/**
 * One connection of a peer (lwmsg's `PeerAssocTask` in DISPATCH state): its
 * call tables and its receive loop.
 */
export class AssocChannel implements SessionTask, Replier {
  status = 0;
  error: LwMsgError | null = null;
  readonly out = new Map<number, OutgoingCall>();
  readonly inCalls = new Map<number, Call>();
  private nextCookie = 0;
  /** Decoded bytes the requests of this session hold (admitted, not yet answered). */
  heldBytes = 0;
  /** The uid whose maxClientsPerUid slot this (incoming) connection holds; -1 for none. */
  slotUid = -1;
  /** A recv() promise is outstanding. */
  private waiting = false;
  /** Server side: not reading until our queued replies drain (see pump). */
  private awaitingDrain = false;
  /** No recv() outstanding by choice (pure client, nothing in flight). */
  parked = false;
  private pumpQueued = false;
  /** Yield once before the next recv(): async handlers just ran and their replies should leave with it. */
  private yieldBeforeRecv = false;
  // sweep bookkeeping (idle and message timeouts)
  activity = 0;
  seenActivity = -1;
  idleSince = 0;
  blockActivity = -1;
  blockedSince = 0;
  private finishedFlag = false;
  /** An orderly close (SHUTDOWN) is still flushing. */
  private closing = false;
  /** Server side, `Peer.drain`: new requests are dropped unrun; once the running ones have replied, SHUTDOWN(AGAIN). */
  private draining = false;
  private resolveFinished!: () => void;
  /** Resolves once the connection is gone and every incoming call has settled. */
  readonly finished: Promise<void>;

  constructor(
    readonly peer: ChannelHost,
    readonly session: Session<any>,
    readonly conn: Connection,
    /** Accepted by our server (else we connected). */
    readonly incoming: boolean,
  ) {
    this.finished = new Promise<void>((r) => (this.resolveFinished = r));
  }

  start(): void {
    // Requests beyond maxCallsPerSession are answered BUSY from their header, before their payload is decoded.
    const peer = this.peer;
    const inCalls = this.inCalls;
    const token = this.session.peerToken;
    const uid = token !== null && token.type === "local" ? token.euid : -1;
    const channel = this;
    this.conn.setAdmission({
      get limit() {
        return peer._maxCallsPerSession;
      },
      inFlight: () => inCalls.size,
      budgetLeft(): number {
        // What the session's and the uid's decoded-memory budgets still allow (-1: no budget).
        const perSession = peer._maxDecodedPerSession;
        let left = perSession < 0 ? -1 : Math.max(0, perSession - channel.heldBytes);
        const u = peer._uidBudgetLeft(uid);
        if (u >= 0) left = left < 0 ? u : Math.min(left, u);
        return left;
      },
      hold(n: number): void {
        channel.heldBytes += n;
        peer._uidHold(uid, n);
      },
      release(n: number): void {
        channel.heldBytes -= n;
        peer._uidHold(uid, -n);
      },
    });
    this.pump();
  }

  private parkable(): boolean {
    return !this.incoming && this.peer._dispatch.length === 0;
  }

  // ------------------------------------------------------------ receiving

  /** Receive and dispatch until recv() would wait (then wait on it) or the task parks. */
  pump = (): void => {
    this.pumpQueued = false;
    if (this.waiting || this.awaitingDrain) return;
    while (this.status === 0) {
      if (this.out.size === 0 && this.inCalls.size === 0 && this.parkable()) {
        this.parked = true;
        return;
      }
      if (this.yieldBeforeRecv) {
        this.yieldBeforeRecv = false;
        this.pumpQueued = true;
        queueMicrotask(this.pump);
        return;
      }
      this.parked = false;
      if (this.incoming && this.conn.sendBlocked) {
        // Replies are not draining (the client does not read): read no more
        // requests until they do, so the pending replies cannot pile up in
        // memory. The client keeps reading, so this cannot deadlock a live
        // peer; a dead one hits the message timeout.
        this.awaitingDrain = true;
        this.conn.drained().then(this.onDrained, this.onDrainError);
        return;
      }
      if (!this.recvOnce()) return;
    }
  };

  private onDrained = (): void => {
    this.awaitingDrain = false;
    this.pump();
  };

  private onDrainError = (e: unknown): void => {
    this.awaitingDrain = false;
    this.recvFailed(e);
  };

  /**
   * One recv(): a message that is already there is dispatched now (no
   * promise hop); otherwise wait on it. False when the loop should stop
   * (waiting, or the connection failed).
   */
  private recvOnce(): boolean {
    const p = this.conn.recv();
    const st = peek.status(p);
    if (st === "fulfilled") {
      this.dispatch(peek(p) as ReceivedMessage);
      return true;
    }
    if (st === "rejected") {
      const e = peek(p);
      p.then(undefined, noop);
      this.recvFailed(e);
      return false;
    }
    this.waiting = true;
    p.then(this.onRecv, this.onRecvError);
    return false;
  }

  private onRecv = (m: ReceivedMessage): void => {
    this.waiting = false;
    if (this.status !== 0) {
      m.dispose();
      return;
    }
    this.dispatch(m);
    this.pump();
    if (this.inputWaiters.length > 0) this.wakeInputWaiters();
  };

  private onRecvError = (e: unknown): void => {
    this.waiting = false;
    this.recvFailed(e);
    if (this.inputWaiters.length > 0) this.wakeInputWaiters();
  };

  /** Calls that waited for pending input to be taken in (see `call`). */
  private inputWaiters: (() => void)[] = [];
  private wakeInputWaiters(): void {
    const ws = this.inputWaiters;
    this.inputWaiters = [];
    for (const w of ws) w();
  }

  private recvFailed(e: unknown): void {
    if (this.status !== 0) return; // we dropped it ourselves
    this.handleAssocError(asLwError(e));
  }

  /** Take in synchronously whatever the socket already holds (before a call on a parked connection). */
  private drainParked(): void {
    this.parked = false;
    while (this.status === 0 && !this.waiting && this.recvOnce());
  }

  private schedulePump(): void {
    if (this.pumpQueued || this.waiting || this.awaitingDrain || this.status !== 0) return;
    this.pumpQueued = true;
    queueMicrotask(this.pump);
  }

  /** Route one received message (§7.2 step 4, §7.4). */
  private dispatch(m: ReceivedMessage): void {
    this.activity++;
    const flags = m.flags;
    if ((flags & MessageFlags.REPLY) !== 0) {
      const oc = this.out.get(m.cookie);
      if (oc !== undefined) {
        this.out.delete(m.cookie);
        // Let the caller's continuation (often the next call) run before the next recv(): its request then leaves with that recv's flush.
        this.yieldBeforeRecv = true;
        completeOutgoing(this.peer, oc, m);
        return;
      }
      // Legacy cancel: REPLY + ERROR + tag -1 naming one of *our* incoming calls.
      if (m.status === Status.ERROR && m.tag === TAG_INVALID) {
        const ic = this.inCalls.get(m.cookie);
        if (ic !== undefined) ic._cancel(this.peer._exceptionFn);
      }
      m.dispose(); // a reply nobody waits for is ignored
      return;
    }
    if ((flags & MessageFlags.CONTROL) !== 0) {
      if (m.status === Status.CANCELLED) {
        const ic = this.inCalls.get(m.cookie);
        if (ic !== undefined) ic._cancel(this.peer._exceptionFn);
      }
      m.dispose(); // other CONTROL statuses are dropped silently
      return;
    }
    // A new incoming call.
    if (this.draining) {
      // Not run: the client re-sends it elsewhere when our SHUTDOWN(AGAIN) arrives.
      return m.dispose();
    }
    if (this.inCalls.has(m.cookie)) {
      m.dispose();
      this.handleAssocError(new LwMsgError(Status.MALFORMED, `request cookie ${m.cookie} is already in use by an incoming call`));
      return;
    }
    const call = new Call(CallDirection.INCOMING, this.session, m.cookie, m.tag);
    call.request = m;
    const full = this.inCalls.size >= this.peer._maxCallsPerSession;
    this.inCalls.set(m.cookie, call);
    if (full) {
      this.reply(call, Status.BUSY, TAG_INVALID, undefined);
      return;
    }
    if ((flags & MessageFlags.SYNTHETIC) !== 0) {
      this.reply(call, m.status, TAG_INVALID, undefined);
      return;
    }
    runIncoming(this.peer, this, call, m.tag, m.data, m);
  }

  /** @internal Replier: an async handler's reply should leave with the next recv(). */
  asyncStarted(): void {
    this.yieldBeforeRecv = true;
  }

  // ------------------------------------------------------------ incoming calls

  /** Send the reply of an incoming call (§7.2 step 5); a reply that cannot be encoded becomes a synthetic one. */
  reply(call: Call, status: number, tag: string | number, data: unknown, synthetic = false): void {
    if (call._done) return;
    call._done = true;
    this.inCalls.delete(call.cookie);
    this.activity++;
    const tr = this.peer._trace;
    if (tr !== null && tr.end) this.peer._safe(() => tr.end!(call, { tag, data }, status));
    if (this.status === 0) {
      const flags = synthetic ? MessageFlags.REPLY | MessageFlags.SYNTHETIC : MessageFlags.REPLY;
      const p = this.conn.send({ flags, status, cookie: call.cookie, tag, data });
      const st = peek.status(p);
      if (st === "rejected") {
        const e = peek(p);
        p.then(undefined, noop);
        this.replyFailed(call.cookie, e);
      } else if (st === "pending") {
        const cookie = call.cookie;
        p.then(undefined, (e) => this.replyFailed(cookie, e));
      }
    }
    this.afterIncoming(call);
  }

  private replyFailed(cookie: number, e: unknown): void {
    if (this.status !== 0) return;
    const err = asLwError(e);
    if (REPLY_ENCODE_ERRORS.has(err.status)) {
      this.peer._warn(new LwMsgError(err.status, `reply to cookie ${cookie} could not be sent, sending a synthetic reply: ${err.message}`));
      const p = this.conn.send({ flags: MessageFlags.REPLY | MessageFlags.SYNTHETIC, status: err.status, cookie, tag: TAG_INVALID });
      p.then(undefined, noop);
    }
    // Connection-level failures reach the receive loop as recv errors.
  }

  private afterIncoming(call: Call): void {
    const m = call.request;
    if (m !== null) {
      call.request = null;
      m.dispose(); // also gives its decoded bytes back to the budgets
    }
    const after = call._after;
    if (after !== null) {
      call._after = null;
      for (const fn of after) this.peer._safe(fn);
    }
    if (this.status !== 0) this.maybeFinish();
    else if (this.draining) this.maybeEndDrain();
  }

  // ------------------------------------------------------------ outgoing calls

  private lastCallAt = -Infinity; // performance.now() of the last call (IDLE_CHECK_MS)

  call(message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    if (this.status !== 0) return Promise.reject(this.error);
    if (message === null || typeof message !== "object") return Promise.reject(new LwMsgError(Status.INVALID_PARAMETER, "call: message must be an object { tag, data }"));
    const now = performance.now();
    const since = now - this.lastCallAt;
    this.lastCallAt = now;
    if (since > IDLE_CHECK_MS && this.out.size === 0 && this.inCalls.size === 0 && this.conn.inputPending()) {
      // An idle connection with input pending: most likely the peer closed it. Take that in before sending, so a
      // call after a server restart reconnects instead of failing with PEER_CLOSE. Not between back-to-back calls
      // (< 100 µs apart): asking the kernel costs 2–3 µs of a 33 µs round trip, and a restart within 100 µs is
      // the race any in-flight call has anyway (a send to a closed socket is retried elsewhere).
      if (!this.waiting) {
        this.drainParked();
        if (this.status !== 0) return this.session.call(message as any, options) as Promise<any>; // reconnects when it can
      } else {
        // A receive is already pending; the poller delivers the input shortly.
        return new Promise<void>((r) => this.inputWaiters.push(r)).then(() => this.session.call(message as any, options) as Promise<any>);
      }
    }
    const out = this.out;
    if (out.size >= MAX_COOKIES) return Promise.reject(new LwMsgError(Status.BUSY, `call: ${MAX_COOKIES} calls are already in flight on this connection`));
    let cookie = this.nextCookie;
    while (out.has(cookie)) cookie = (cookie + 1) & 0xffff;
    this.nextCookie = (cookie + 1) & 0xffff;
    const oc = new OutgoingCall(this.session, cookie, message.tag);
    const promise = openOutgoing(oc, message, options);
    if (oc.settled) return promise; // a bad timeout, or already cancelled
    const signal = options?.signal;
    const timeout = options?.timeout;
    out.set(cookie, oc);
    const tr = this.peer._trace;
    if (tr !== null && tr.begin) this.peer._safe(() => tr.begin!(oc, message));
    const p = this.conn.send({ tag: message.tag, data: message.data, cookie });
    const st = peek.status(p);
    if (st === "rejected") {
      const e = peek(p);
      p.then(undefined, noop);
      this.requestFailed(oc, e, message, options);
      return promise;
    }
    if (st === "pending") p.then(undefined, (e) => this.requestFailed(oc, e, message, options));
    oc.sent = true;
    oc.owner = this;
    if (signal) {
      oc.signal_ = signal;
      signal.addEventListener("abort", oc);
    }
    if (timeout !== undefined && timeout !== null) oc.timer = setTimeout(onCallTimeout, timeout, oc);
    if (this.parked) {
      this.parked = false;
      this.schedulePump();
    }
    return promise;
  }

  /** The request could not be queued. Encoding errors fail only this call; a dead connection is retried once elsewhere. */
  private requestFailed(oc: OutgoingCall, e: unknown, message: OutgoingMessage, options: CallOptions | undefined): void {
    if (this.out.get(oc.cookie) === oc) this.out.delete(oc.cookie);
    const err = asLwError(e);
    // The connection decides, not the status: a send that failed while the association is still
    // established failed for this message alone (an encode error, an fd that is not open, …). Retrying
    // such a call on a new connection would fail the same way, forever.
    if (this.status === 0 && (CALL_LOCAL_ENCODE_ERRORS.has(err.status) || this.conn.established)) {
      failOutgoing(this.peer, oc, err.status, err.message, null);
      return;
    }
    // Connection-level: the request never reached the kernel. Find out what happened, then let the session retry (it reconnects if it can).
    if (this.status === 0) {
      this.drainParked();
      if (this.status === 0) this.handleAssocError(err);
    }
    if (oc.settled) return;
    oc.settled = true;
    oc.detach();
    const retry = this.session.call(message as any, options) as Promise<any>;
    retry.then(oc.resolve, oc.reject);
  }

  /** `lwmsg_call_cancel` (abort), or a call timeout: CONTROL cancel on the wire; the cookie stays reserved until the reply. */
  cancelOutgoing(oc: OutgoingCall, why: Status): void {
    if (oc._done || oc.settled) return;
    oc.detach();
    if (!oc._cancelled) {
      oc._cancelled = true;
      if (this.status === 0 && this.out.get(oc.cookie) === oc) {
        const p = this.conn.send({ flags: MessageFlags.CONTROL, status: Status.CANCELLED, cookie: oc.cookie, tag: TAG_INVALID });
        p.then(undefined, noop);
        if (this.parked) {
          this.parked = false;
          this.schedulePump();
        }
      }
    }
    if (why !== Status.CANCELLED) {
      // Timeout (or a bad option): the caller stops waiting now.
      oc.settled = true;
      oc.reject(new CallError(why, why === Status.TIMEOUT ? "call timed out" : "call failed", null));
    }
  }

  // ------------------------------------------------------------ teardown

  /** `handle_assoc_error` (§7.1): peer went away → drop; anything else (TIMEOUT included, §10.4) → close with SHUTDOWN. */
  handleAssocError(err: LwMsgError): void {
    switch (err.status) {
      case Status.CONNECTION_REFUSED:
      case Status.PEER_CLOSE:
      case Status.PEER_RESET:
      case Status.PEER_ABORT:
      case Status.AGAIN: // a draining server's SHUTDOWN(AGAIN): it closes, we drop
        this.shutdown(err, false);
        break;
      default:
        this.shutdown(err, true);
        break;
    }
  }

  /** Run the task down: outgoing calls complete with `err`, incoming calls are cancelled, the socket goes (with SHUTDOWN if `orderly`). */
  shutdown(err: LwMsgError, orderly: boolean): void {
    if (this.status !== 0) return;
    this.status = err.status || Status.ERROR;
    this.error = err;
    this.parked = false;
    const outs = [...this.out.values()];
    this.out.clear();
    // AGAIN: the server answered every call it started, so the others were not run: they go out again. Any other end fails them.
    const again = err.status === Status.AGAIN && !this.incoming;
    for (const oc of outs) {
      if (again && oc.message !== null && !oc._cancelled && !oc.settled) reissueOutgoing(this.peer, oc);
      else failOutgoing(this.peer, oc, err.status, err.message, null);
    }
    for (const c of [...this.inCalls.values()]) c._cancel(this.peer._exceptionFn);
    if (orderly) {
      // The socket stays ours (and so does the client slot) until the
      // goodbye is flushed: maxClients bounds fds as well as sessions.
      this.closing = true;
      this.peer._closingConns.add(this.conn);
      (err.status === Status.AGAIN ? this.conn.closeWith(Status.AGAIN) : this.conn.close()).then(this.onClosed, this.onClosed);
    } else this.conn.destroy();
    if (this.inputWaiters.length > 0) this.wakeInputWaiters();
    this.peer._taskEnded(this);
    this.maybeFinish();
  }

  /** Server side (`Peer.drain`): run no new request, let the running ones reply, then close with SHUTDOWN(AGAIN). */
  drain(): Promise<void> {
    if (this.incoming && !this.draining && this.status === 0) {
      this.draining = true;
      this.conn.setAdmission(null); // no BUSY from request headers now: each request read is dropped unrun, none refused
      this.maybeEndDrain();
    }
    return this.finished;
  }

  private maybeEndDrain(): void {
    if (this.status !== 0 || this.inCalls.size > 0) return;
    this.shutdown(new LwMsgError(Status.AGAIN, "the server is draining: requests it did not answer were not run"), true);
  }

  private onClosed = (): void => {
    this.closing = false;
    this.peer._closingConns.delete(this.conn);
    this.maybeFinish();
  };

  private maybeFinish(): void {
    if (this.finishedFlag || this.status === 0 || this.inCalls.size > 0 || this.closing) return;
    this.finishedFlag = true;
    this.peer._taskFinished(this);
    this.resolveFinished();
  }
}
