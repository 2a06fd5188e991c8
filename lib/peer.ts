/**
 * `LWMsgPeer`: server, client and multiplexed calls (reference §7).
 *
 * One {@link Peer} can listen (server), connect (client), or both. Each
 * connection runs one receive loop that routes REPLY messages to the
 * outgoing-call table, CONTROL messages to cancellation, and everything else
 * to the dispatch table as a new incoming call (§7.4). Calls are multiplexed
 * by u16 cookie per direction, so many calls share one connection and either
 * side may call the other (callbacks).
 *
 * | lwmsg (C) | bun-lwmsg (TS) |
 * |---|---|
 * | `lwmsg_peer_new` / `lwmsg_peer_delete` | `new Peer(protocol, options)` / `peer.close()` |
 * | `lwmsg_peer_set_timeout(MESSAGE/ESTABLISH/IDLE)` | `peer.setTimeout("message" \| "establish" \| "idle", ms)` or `options.timeouts` |
 * | `lwmsg_peer_set_max_listen_clients` | `peer.maxClients = n` (default 100) |
 * | `lwmsg_peer_set_max_listen_backlog` | `peer.backlog = n` (default 8) |
 * | `lwmsg_peer_add_dispatch_spec` (`LWMSG_DISPATCH_BLOCK/NONBLOCK`) | `peer.addDispatch({ NAME: async (data, call) => reply })` |
 * | `lwmsg_peer_set_dispatch_data` | closures (not needed in JS) |
 * | `lwmsg_peer_add_listen_endpoint(LOCAL, path, perms)` | `peer.addListenEndpoint(ConnectionMode.LOCAL, path, perms)` |
 * | `lwmsg_peer_add_listen_fd` | `peer.addListenFd(mode, fd)` |
 * | `lwmsg_peer_set_listen_session_functions` | `peer.onSession({ construct, destruct })` |
 * | `lwmsg_peer_start_listen` / `lwmsg_peer_stop_listen` | `await peer.startListen()` / `await peer.stopListen()` |
 * | `lwmsg_peer_set_exception_function` | `peer.onException(fn)` |
 * | `lwmsg_peer_set_trace_functions` | `peer.onTrace({ begin, end })` |
 * | `lwmsg_peer_add_connect_endpoint` | `peer.addConnectEndpoint(ConnectionMode.LOCAL, path)` |
 * | `lwmsg_peer_connect` | `await peer.connect()` → {@link Session} |
 * | `lwmsg_peer_disconnect` | `await peer.disconnect()` |
 * | `lwmsg_peer_connect_fd` / `lwmsg_peer_accept_fd` | `await peer.connectFd(mode, fd)` / `await peer.acceptFd(mode, fd)` |
 * | `lwmsg_peer_acquire_call` (deprecated) | `(await peer.connect()).call(...)` |
 * | `lwmsg_session_acquire_call` + `lwmsg_call_dispatch` (+ `lwmsg_call_wait`) | `await session.call({ tag, data }, { signal, timeout })` |
 * | `lwmsg_call_cancel` | `AbortSignal` passed as `signal` |
 * | `lwmsg_call_pend` + cancel function | `call.onCancel(fn)` / `call.signal` (handlers are async functions) |
 * | `lwmsg_call_complete(call, status)` | the handler's promise settles (throw `LwMsgError(status)` for a failure) |
 * | `lwmsg_call_release` / `lwmsg_call_destroy_params` | not needed (GC); `using reply = await session.call(...)` closes unclaimed fds |
 * | `lwmsg_call_get_session` / `get_direction` / `set_user_data` / `get_user_data` | `call.session` / `call.direction` / `call.userData` |
 * | `lwmsg_session_register_handle` / `retain_handle` / `release_handle` / `unregister_handle` | `session.registerHandle` / `retainHandle` / `releaseHandle` / `unregisterHandle` |
 * | `lwmsg_session_get_handle_data` / `get_handle_location` | `session.getHandleData` / `getHandleLocation` |
 * | `lwmsg_session_get_data` / `get_peer_security_token` / `get_id` | `session.data` / `session.peerToken` / `session.id` |
 * | `lwmsg_security_token_equal` / `can_access` / `to_string` | `tokensEqual` / `tokenCanAccess` / `tokenToString` |
 * | `lwmsg_local_token_get_eid` / `get_pid` | `localTokenGetEid` / `localTokenGetPid` (or `token.euid/egid/pid`) |
 *
 * Decisions where lwmsg is silent or quirky (see also lib/session.ts for
 * handle reference counts):
 * - A handler that throws something other than `LwMsgError` fails the call
 *   with ERROR and is reported to the exception hook.
 * - A handler may return `{ tag, data, status }`: the reply payload is sent
 *   with a non-success status (lwmsg sends `out` whatever the status, §10.8).
 * - OVERFLOW/UNDERFLOW while encoding a *request* fail only that call (like
 *   MALFORMED/INVALID_HANDLE); lwmsg closes the connection there (§7.3.4).
 * - A cancelled call (AbortSignal) rejects with CANCELLED when the callee's
 *   reply arrives, whatever that reply's status. A timed-out call rejects
 *   with TIMEOUT at once; its cookie stays reserved until the reply arrives.
 * - Legacy cancel (REPLY, status ERROR, tag -1) is honoured only when no
 *   outgoing call owns that cookie (otherwise it is that call's reply).
 * - The session destructor runs for every session whose constructor
 *   succeeded (or that had no constructor), not only when it returned data.
 * - MESSAGE timeout: a server connection that stays blocked mid-message
 *   (partial packet received or data queued for sending) without a complete
 *   message arriving for that long is closed with TIMEOUT (checked by a
 *   periodic sweep, not per system call as in lwmsg).
 * - A pure client (no dispatch table) keeps no receive pending while it has
 *   no call in flight, so an idle client does not keep the process alive;
 *   before the next call it checks the socket for a pending close and
 *   reconnects. A client with a dispatch table (callbacks) always listens.
 * - An fd given to `addListenFd` is closed by `stopListen` (the peer owns
 *   it) and is not reused by a later `startListen`.
 * - `stopListen` removes a socket file only if the path still names the one
 *   this peer bound: one deleted meanwhile, or replaced by another server's
 *   socket, is left alone (lwmsg unlinks the path whatever is there).
 * - Limits lwmsg lacks (SECURITY.md §4): `maxClientsPerUid` closes a uid's
 *   extra connection right after accept (before reading a byte);
 *   `maxCallsPerSession` answers calls beyond it BUSY; a server connection
 *   whose replies cannot drain (`sendQueueLimit`) stops reading requests
 *   until they do. Only the server side throttles, and clients always read,
 *   so the two sides cannot wait on each other.
 * - `authorizeServer` (client) checks the server's kernel credentials on
 *   every connect; an abstract listen endpoint needs a session constructor
 *   (or `allowAnyUser`), and path endpoints pass the directory check.
 * @module
 */
import { Connection, ConnectionMode, AssocState, ReceivedMessage, checkConnectionOptions, checkProtocol, type ConnectionOptions, type LocalToken, type OutgoingMessage } from "./connection.ts";
import type { DataOf, MessageOut, Protocol } from "./protocol.ts";
import { LwMsgError, Status, Errno } from "./status.ts";
import { MessageFlags, TAG_INVALID } from "./wire.ts";
import { Poller, READABLE, type Watch } from "./native/poller.ts";
import { native } from "./native/ffi.ts";
import { acceptFd, adoptFd, checkListenDirectory, closeFd, isAbstractPath, listenFd, listenPath, peerCredentials, socketFileId, unlinkOwnSocketFile } from "./native/socket.ts";
import { Call, CallDirection, CallError, OutgoingCall, onCallTimeout, type CallOptions } from "./call.ts";
import { Session, tokenCanAccess, tokenToString, type SessionHooks, type SessionTask, type SessionTransport } from "./session.ts";
import type { TokenCheck } from "./security.ts";

export { Call, CallDirection, CallError, Session };
export type { CallOptions, SessionHooks };

/** What a handler returns: the reply message, or nothing for a reply without payload (tag -1). `status` sends the payload with a non-success status. */
export type Reply = { tag: string | number; data?: unknown; status?: number } | null | undefined | void;
/** A dispatch function (`LWMsgPeerCallFunction`): gets the request payload and the call; returns (or resolves to) the reply. Throw `LwMsgError(status)` to fail the call with that status. */
export type Handler = (data: any, call: Call<any>) => Reply | Promise<Reply>;

type SpecOf<P> = P extends Protocol<infer M> ? M : never;
/** A handler's reply on protocol `P` (typed by the reply tag). */
export type HandlerReply<P> = MessageOut<P> | null | undefined | void;
/** Message name → handler, typed by the protocol; `null` answers UNIMPLEMENTED. */
export type DispatchTable<P extends Protocol<any> = Protocol<any>> = {
  [K in keyof SpecOf<P> & string]?: ((data: DataOf<SpecOf<P>[K][1]>, call: Call<P>) => HandlerReply<P> | Promise<HandlerReply<P>>) | null;
};


/** Trace hooks (`lwmsg_peer_set_trace_functions`); `call.direction` tells which side. */
export interface TraceHooks {
  /** An incoming call is dispatched, or an outgoing request is sent. `message` is the request. */
  begin?(call: Call<any>, message: { tag: number | string; data?: unknown }): void;
  /** The reply is sent (incoming) or received (outgoing). */
  end?(call: Call<any>, message: { tag: number | string; data?: unknown }, status: number): void;
}

export interface PeerTimeouts {
  /** Handshake (and close) phases, ms. */
  establish?: number | null;
  /** A message that stays partially sent or received, ms (server connections). */
  message?: number | null;
  /** Idle server connections, ms — applied only while the server is at `maxClients`, for sessions with no handles and no incoming call in flight (§7.2 step 6). */
  idle?: number | null;
}

export interface PeerOptions extends Omit<ConnectionOptions, "handles" | "timeouts"> {
  /** Most incoming connections at once (default 100); accepting pauses while full. */
  maxClients?: number;
  /**
   * Most incoming connections from one effective uid at once (default: no
   * limit beyond maxClients). Counted from the kernel's credentials right
   * after accept(), handshakes included; one more is closed at once, before
   * any byte is read, so one local user cannot take every slot.
   */
  maxClientsPerUid?: number | null;
  /**
   * Most incoming calls in flight on one session (default 256). A request
   * beyond it is answered BUSY at once and its payload dropped, which bounds
   * what one client can make the server hold.
   */
  maxCallsPerSession?: number;
  /**
   * Client side: checks the server's token (from the kernel) on every connect
   * and reconnect, e.g. `allowUids([0])`; a refusal fails the connect with
   * its status (SECURITY) and closes the connection.
   */
  authorizeServer?: TokenCheck | null;
  /** Refuse (SECURITY) to listen in a directory others could write to or that belongs to another user (default true). */
  checkDirectory?: boolean;
  /** Most proxies for the peer's handles one session keeps (default 65536); see {@link Session.maxRemoteHandles}. */
  maxRemoteHandles?: number;
  /**
   * Listening on an abstract name (leading NUL) needs a session constructor
   * (`onSession({ construct })`, e.g. `authorize(sameUser())`): such a name
   * has no file permissions. `true` allows it without one.
   */
  allowAnyUser?: boolean;
  /** `listen()` backlog (default 8). */
  backlog?: number;
  timeouts?: PeerTimeouts;
}

const noop = (): void => {};
const RETRY_CONNECT = new Set<number>([Status.CONNECTION_REFUSED, Status.TIMEOUT, Status.FILE_NOT_FOUND, Status.NOT_FOUND]);
const CALL_LOCAL_ENCODE_ERRORS = new Set<number>([Status.MALFORMED, Status.INVALID_HANDLE, Status.OVERFLOW, Status.UNDERFLOW, Status.INVALID_PARAMETER]);
const REPLY_ENCODE_ERRORS = new Set<number>([Status.MALFORMED, Status.INVALID_HANDLE, Status.OVERFLOW, Status.UNDERFLOW, Status.INVALID_PARAMETER]);
const MAX_COOKIES = 65536;
const peek = Bun.peek;

function asLwError(e: unknown, fallback: Status = Status.ERROR): LwMsgError {
  if (e instanceof LwMsgError) return e;
  return new LwMsgError(fallback, String((e as Error)?.message ?? e), { cause: e });
}

/**
 * What a failed reply means, naming the request. A payload-less reply with
 * MALFORMED / UNSUPPORTED / UNIMPLEMENTED is how an lwmsg server answers a
 * tag it does not dispatch (§7.2 step 5; the wire carries no text, so a
 * handler that failed with the same status looks alike).
 */
function replyFailure(oc: OutgoingCall, m: ReceivedMessage): string {
  const tag = oc.tag;
  const name = oc.session.protocol.byTag(tag)?.name ?? String(oc._tag);
  if (m.tag === TAG_INVALID && (m.flags & MessageFlags.SYNTHETIC) === 0) {
    switch (m.status) {
      case Status.MALFORMED:
        return `no handler for ${name}: tag ${tag} is above every tag the server dispatches (or its handler failed with MALFORMED)`;
      case Status.UNSUPPORTED:
        return `no handler for ${name}: the server's dispatch table has no entry for tag ${tag} (or its handler failed with UNSUPPORTED)`;
      case Status.UNIMPLEMENTED:
        return `no handler for ${name}: the server declares tag ${tag} unimplemented (or its handler failed with UNIMPLEMENTED)`;
    }
  }
  return `${name} failed${(m.flags & MessageFlags.SYNTHETIC) !== 0 ? " (synthetic reply: a payload could not be encoded or decoded)" : ""}`;
}

function checkMs(kind: string, v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `${kind} timeout must be a non-negative number of ms or null, got ${String(v)}`);
  return v;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ---------------------------------------------------------------------- listen points

/** One listening socket (path or given fd) of a server. */
class ListenPoint {
  fd = -1;
  watch: Watch | null = null;
  paused = false;
  dead = false;
  /** The socket file bound at `path` (close() removes only that one). */
  fileId: string | null = null;
  constructor(
    readonly path: string | null,
    readonly perms: number,
    /** An fd handed over by addListenFd; consumed (owned, closed by close()) on the first open. */
    private givenFd: number,
  ) {}

  open(backlog: number): void {
    if (this.path !== null) {
      this.fd = listenPath(this.path, backlog, this.perms);
      this.fileId = socketFileId(this.path);
    } else {
      if (this.givenFd < 0) throw new LwMsgError(Status.INVALID_STATE, "listen fd was already used and closed by an earlier stopListen");
      // Owned from here on: a failure below still closes it (and the number is never reused by a restart).
      this.fd = this.givenFd;
      this.givenFd = -1;
      adoptFd(this.fd);
      listenFd(this.fd, backlog);
    }
  }

  close(): void {
    if (this.watch) {
      this.watch.remove();
      this.watch = null;
    }
    if (this.fd >= 0) {
      closeFd(this.fd);
      this.fd = -1;
      if (this.path !== null) unlinkOwnSocketFile(this.path, this.fileId);
    }
    this.paused = false;
  }
}

// ---------------------------------------------------------------------- the association task

/**
 * One connection of a peer (lwmsg's `PeerAssocTask` in DISPATCH state): its
 * call tables and its receive loop.
 */
class AssocTask implements SessionTask {
  status = 0;
  error: LwMsgError | null = null;
  readonly out = new Map<number, OutgoingCall>();
  readonly inCalls = new Map<number, Call>();
  private nextCookie = 0;
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
  private resolveFinished!: () => void;
  /** Resolves once the connection is gone and every incoming call has settled. */
  readonly finished: Promise<void>;

  constructor(
    readonly peer: Peer<any>,
    readonly session: Session<any>,
    readonly conn: Connection,
    /** Accepted by our server (else we connected). */
    readonly incoming: boolean,
  ) {
    this.finished = new Promise<void>((r) => (this.resolveFinished = r));
  }

  start(): void {
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
        this.completeOutgoing(oc, m);
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
    const vec = this.peer._dispatch;
    const tag = m.tag;
    if (tag < 0 || tag >= vec.length) {
      this.reply(call, Status.MALFORMED, TAG_INVALID, undefined);
      return;
    }
    const h = vec[tag];
    if (h === undefined) {
      this.reply(call, Status.UNSUPPORTED, TAG_INVALID, undefined);
      return;
    }
    if (h === null) {
      this.reply(call, Status.UNIMPLEMENTED, TAG_INVALID, undefined);
      return;
    }
    const tr = this.peer._trace;
    if (tr !== null && tr.begin) this.peer._safe(() => tr.begin!(call, m));
    let r: Reply | Promise<Reply>;
    try {
      r = h(m.data, call);
    } catch (e) {
      this.handlerFailed(call, e);
      return;
    }
    if (r !== null && typeof r === "object" && typeof (r as Promise<Reply>).then === "function") {
      this.yieldBeforeRecv = true;
      void runAsync(this, call, r as Promise<Reply>);
    } else this.handlerDone(call, r as Reply);
  }

  // ------------------------------------------------------------ incoming calls

  handlerDone(call: Call, r: Reply): void {
    if (r === null || r === undefined) {
      this.reply(call, Status.SUCCESS, TAG_INVALID, undefined);
      return;
    }
    if (typeof r !== "object" || !("tag" in r)) {
      this.peer._exception(new LwMsgError(Status.MALFORMED, `handler for tag ${call.tag} returned ${String(r)}, not { tag, data }`));
      this.reply(call, Status.MALFORMED, TAG_INVALID, undefined, true);
      return;
    }
    const status = r.status ?? Status.SUCCESS;
    this.reply(call, status, r.tag, r.data);
  }

  handlerFailed(call: Call, e: unknown): void {
    let status: number;
    if (e instanceof LwMsgError) status = e.status;
    else {
      status = Status.ERROR;
      this.peer._exception(e);
    }
    this.reply(call, status, TAG_INVALID, undefined);
  }

  /** Send the reply of an incoming call (§7.2 step 5); a reply that cannot be encoded becomes a synthetic one. */
  private reply(call: Call, status: number, tag: string | number, data: unknown, synthetic = false): void {
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
      m.dispose();
    }
    const after = call._after;
    if (after !== null) {
      call._after = null;
      for (const fn of after) this.peer._safe(fn);
    }
    if (this.status !== 0) this.maybeFinish();
  }

  // ------------------------------------------------------------ outgoing calls

  call(message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    if (this.status !== 0) return Promise.reject(this.error);
    if (message === null || typeof message !== "object") return Promise.reject(new LwMsgError(Status.INVALID_PARAMETER, "call: message must be an object { tag, data }"));
    if (this.out.size === 0 && this.inCalls.size === 0 && this.conn.inputPending()) {
      // An idle connection with input pending: most likely the peer closed it. Take that in before
      // sending, so a call after a server restart reconnects instead of failing with PEER_CLOSE.
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
    const promise = new Promise<ReceivedMessage>((resolve, reject) => {
      oc.resolve = resolve;
      oc.reject = reject;
    });
    const signal = options?.signal;
    const timeout = options?.timeout;
    if (timeout !== undefined && timeout !== null && (typeof timeout !== "number" || !(timeout >= 0))) {
      oc.settled = true;
      oc.reject(new CallError(Status.INVALID_PARAMETER, `call: timeout must be a non-negative number of ms, got ${String(timeout)}`, null));
      return promise;
    }
    if (signal?.aborted) {
      oc.settled = true;
      oc.reject(new CallError(Status.CANCELLED, "call cancelled before it was sent", null));
      return promise;
    }
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
      this.settleError(oc, err.status, err.message, null);
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

  private completeOutgoing(oc: OutgoingCall, m: ReceivedMessage): void {
    oc.detach();
    oc._done = true;
    // Let the caller's continuation (often the next call) run before the next recv(): its request then leaves with that recv's flush.
    this.yieldBeforeRecv = true;
    const tr = this.peer._trace;
    if (tr !== null && tr.end) this.peer._safe(() => tr.end!(oc, m, oc._cancelled ? Status.CANCELLED : m.status));
    if (oc.settled) {
      m.dispose();
    } else if (oc._cancelled) {
      oc.settled = true;
      oc.reject(new CallError(Status.CANCELLED, "call cancelled", m));
    } else if (m.status === Status.SUCCESS) {
      oc.settled = true;
      oc.resolve(m);
    } else {
      oc.settled = true;
      oc.reject(new CallError(m.status as Status, replyFailure(oc, m), m));
    }
  }

  private settleError(oc: OutgoingCall, status: number, message: string, reply: ReceivedMessage | null): void {
    if (oc._cancelled) status = Status.CANCELLED;
    oc.detach();
    oc._done = true;
    const tr = this.peer._trace;
    if (tr !== null && tr.end) this.peer._safe(() => tr.end!(oc, { tag: TAG_INVALID }, status));
    if (oc.settled) return;
    oc.settled = true;
    oc.reject(new CallError(status as Status, message, reply));
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
    for (const oc of outs) this.settleError(oc, err.status, err.message, null);
    for (const c of [...this.inCalls.values()]) c._cancel(this.peer._exceptionFn);
    if (orderly) {
      // The socket stays ours (and so does the client slot) until the
      // goodbye is flushed: maxClients bounds fds as well as sessions.
      this.closing = true;
      this.peer._closingConns.add(this.conn);
      this.conn.close().then(this.onClosed, this.onClosed);
    } else this.conn.destroy();
    if (this.inputWaiters.length > 0) this.wakeInputWaiters();
    this.peer._taskEnded(this);
    this.maybeFinish();
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

async function runAsync(task: AssocTask, call: Call, p: Promise<Reply>): Promise<void> {
  let r: Reply;
  try {
    r = await p;
  } catch (e) {
    task.handlerFailed(call, e);
    return;
  }
  task.handlerDone(call, r);
}

// ---------------------------------------------------------------------- Peer

const enum PeerState {
  STOPPED,
  STARTED,
  ERROR,
}

/** Internal per-session bookkeeping of outgoing sessions. */
interface ClientSessionState {
  /** Connect endpoints apply (false for connectFd sessions: no reconnect). */
  reconnectable: boolean;
  connecting: Promise<AssocTask> | null;
  /** The connection being handshaken right now (disconnect destroys it). */
  pending: Connection | null;
  closed: boolean;
}

/**
 * `LWMsgPeer`: a server, a client, or both.
 *
 * ```ts
 * const server = new Peer(protocol, { maxClients: 100 });
 * server.addDispatch({ PING: async () => ({ tag: "PONG", data: null }) });
 * server.addListenEndpoint(ConnectionMode.LOCAL, "/run/app.sock", 0o600);
 * await server.startListen();
 *
 * const client = new Peer(protocol);
 * client.addConnectEndpoint(ConnectionMode.LOCAL, "/run/app.sock");
 * const session = await client.connect();
 * const reply = await session.call({ tag: "PING", data: null });
 * await client.disconnect();
 * await server.stopListen();
 * ```
 */
export class Peer<P extends Protocol<any> = Protocol<any>> implements SessionTransport {
  readonly protocol: P;
  private state = PeerState.STOPPED;
  private stickyError: LwMsgError | null = null;
  private _maxClients = 100;
  private _maxClientsPerUid: number | null = null;
  /** @internal */
  _maxCallsPerSession = 256;
  private readonly authorizeServer: TokenCheck | null;
  private readonly checkDirectory: boolean;
  private readonly maxRemoteHandles: number;
  private readonly allowAnyUser: boolean;
  /** Incoming connections per effective uid (maxClientsPerUid bookkeeping). */
  private readonly clientsByUid = new Map<number, number>();
  private _backlog = 8;
  private timeoutEstablish: number | null = null;
  private timeoutMessage: number | null = null;
  private timeoutIdle: number | null = null;
  private readonly connOptions: Omit<ConnectionOptions, "handles" | "timeouts">;
  /** @internal dispatch vector indexed by tag: undefined = no entry, null = UNIMPLEMENTED. */
  _dispatch: (Handler | null | undefined)[] = [];
  /** @internal */
  _trace: TraceHooks | null = null;
  private exceptionHook: ((err: unknown) => void) | null = null;
  private sessionHooks: SessionHooks | null = null;
  // server
  private listenPoints: ListenPoint[] = [];
  private numClients = 0;
  private readonly serverTasks = new Set<AssocTask>();
  private readonly handshaking = new Set<Connection>();
  /** @internal connections whose orderly close is still flushing. */
  readonly _closingConns = new Set<Connection>();
  private readonly finishing = new Set<Promise<void>>();
  private stopGeneration = 0;
  private pollerRef: Poller | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  // client
  private connectEndpoints: { mode: ConnectionMode; path: string }[] = [];
  private connectSession: Session<P> | null = null;
  private readonly clientState = new WeakMap<Session, ClientSessionState>();
  private readonly clientTasks = new Set<AssocTask>();

  /** `lwmsg_peer_new`. */
  constructor(protocol: P, options: PeerOptions = {}) {
    if (!protocol || typeof (protocol as { byTag?: unknown }).byTag !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "Peer needs a protocol from Lw.Protocol(...)");
    if (options === null || typeof options !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "options must be an object");
    this.protocol = protocol;
    const { maxClients, backlog, timeouts, maxClientsPerUid, maxCallsPerSession, authorizeServer, checkDirectory, allowAnyUser, maxRemoteHandles, ...conn } = options;
    if (maxRemoteHandles !== undefined && (!Number.isInteger(maxRemoteHandles) || maxRemoteHandles < 0)) throw new LwMsgError(Status.INVALID_PARAMETER, `maxRemoteHandles must be a non-negative integer, got ${maxRemoteHandles}`);
    this.maxRemoteHandles = maxRemoteHandles ?? 65536;
    if (maxClients !== undefined) this.maxClients = maxClients;
    if (maxClientsPerUid !== undefined) this.maxClientsPerUid = maxClientsPerUid;
    if (maxCallsPerSession !== undefined) this.maxCallsPerSession = maxCallsPerSession;
    if (authorizeServer !== undefined && authorizeServer !== null && typeof authorizeServer !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "authorizeServer must be a function (token) => void, e.g. allowUids([0])");
    this.authorizeServer = authorizeServer ?? null;
    this.checkDirectory = checkDirectory !== false;
    this.allowAnyUser = allowAnyUser === true;
    if (backlog !== undefined) this.backlog = backlog;
    if (timeouts) {
      this.timeoutEstablish = checkMs("establish", timeouts.establish);
      this.timeoutMessage = checkMs("message", timeouts.message);
      this.timeoutIdle = checkMs("idle", timeouts.idle);
    }
    this.connOptions = conn;
    // Validate the protocol and connection options now, not at the first connection.
    checkProtocol(protocol);
    checkConnectionOptions(conn);
  }

  // ------------------------------------------------------------ configuration

  private requireStopped(op: string): void {
    if (this.state !== PeerState.STOPPED) throw new LwMsgError(Status.INVALID_STATE, `${op}: only while the peer is stopped`);
  }

  /** `lwmsg_peer_set_timeout`: `"message"`, `"establish"` or `"idle"`, in ms (null = none). Only while stopped. */
  setTimeout(kind: "message" | "establish" | "idle", ms: number | null): void {
    this.requireStopped("setTimeout");
    if (kind === "message") this.timeoutMessage = checkMs(kind, ms);
    else if (kind === "establish") this.timeoutEstablish = checkMs(kind, ms);
    else if (kind === "idle") this.timeoutIdle = checkMs(kind, ms);
    else throw new LwMsgError(Status.UNSUPPORTED, `setTimeout: unknown timeout kind ${String(kind)}`);
  }

  /** `lwmsg_peer_set_max_listen_clients` (default 100). Set only while stopped. */
  get maxClients(): number {
    return this._maxClients;
  }
  set maxClients(n: number) {
    this.requireStopped("maxClients");
    if (!Number.isInteger(n) || n < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `maxClients must be a positive integer, got ${n}`);
    this._maxClients = n;
  }

  /** Most incoming connections per effective uid (null = only maxClients applies). Set only while stopped. */
  get maxClientsPerUid(): number | null {
    return this._maxClientsPerUid;
  }
  set maxClientsPerUid(n: number | null) {
    this.requireStopped("maxClientsPerUid");
    if (n !== null && (!Number.isInteger(n) || n < 1)) throw new LwMsgError(Status.INVALID_PARAMETER, `maxClientsPerUid must be a positive integer or null, got ${n}`);
    this._maxClientsPerUid = n;
  }

  /** Most incoming calls in flight per session (default 256); more are answered BUSY. */
  get maxCallsPerSession(): number {
    return this._maxCallsPerSession;
  }
  set maxCallsPerSession(n: number) {
    if (!Number.isInteger(n) || n < 1 || n > 65536) throw new LwMsgError(Status.INVALID_PARAMETER, `maxCallsPerSession must be an integer in 1..65536, got ${n}`);
    this._maxCallsPerSession = n;
  }

  /** `lwmsg_peer_set_max_listen_backlog` (default 8). Set only while stopped. */
  get backlog(): number {
    return this._backlog;
  }
  set backlog(n: number) {
    this.requireStopped("backlog");
    if (!Number.isInteger(n) || n < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `backlog must be a positive integer, got ${n}`);
    this._backlog = n;
  }

  /** Client slots in use: incoming connections (handshakes included) and sessions whose calls still run after their client left. */
  get clientCount(): number {
    return this.numClients;
  }

  /** `"stopped"`, `"started"` or `"error"` (a failed startListen; sticky, as in lwmsg). */
  get listenState(): "stopped" | "started" | "error" {
    return this.state === PeerState.STARTED ? "started" : this.state === PeerState.ERROR ? "error" : "stopped";
  }

  /**
   * `lwmsg_peer_add_dispatch_spec`: merge handlers by message name (or tag
   * number). A tag above every dispatched tag answers MALFORMED, a tag with
   * no entry UNSUPPORTED, an entry of `null` UNIMPLEMENTED (§7.2 step 5).
   */
  addDispatch(table: DispatchTable<P>): this {
    if (table === null || typeof table !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "addDispatch needs an object { NAME: handler }");
    for (const [key, h] of Object.entries(table)) {
      const entry = this.protocol.byName(key) ?? (/^\d+$/.test(key) ? this.protocol.byTag(Number(key)) : undefined);
      if (!entry) throw new LwMsgError(Status.INVALID_PARAMETER, `addDispatch: "${key}" is not a message of the protocol`);
      if (h !== null && typeof h !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, `addDispatch: handler for ${key} must be a function or null`);
      while (this._dispatch.length <= entry.tag) this._dispatch.push(undefined);
      this._dispatch[entry.tag] = h as Handler | null;
    }
    return this;
  }

  /** `lwmsg_peer_set_listen_session_functions`. */
  onSession(hooks: SessionHooks | null): this {
    this.sessionHooks = hooks;
    return this;
  }

  /** `lwmsg_peer_set_exception_function`: listener errors (accept failures), handler crashes, hook errors. */
  onException(fn: ((err: unknown) => void) | null): this {
    this.exceptionHook = fn;
    return this;
  }

  /** `lwmsg_peer_set_trace_functions`. */
  onTrace(hooks: TraceHooks | null): this {
    this._trace = hooks && (hooks.begin || hooks.end) ? hooks : null;
    return this;
  }

  /** @internal */
  _exception(e: unknown): void {
    const fn = this.exceptionHook;
    if (fn) {
      try {
        fn(e);
      } catch {
        // an exception hook that throws has nowhere to report to
      }
    }
  }
  /** @internal */
  _exceptionFn = (e: unknown): void => this._exception(e);
  /** @internal a recoverable problem worth telling (lwmsg logs a warning). */
  _warn(e: LwMsgError): void {
    this._exception(e);
  }
  /** @internal run application code, reporting what it throws. */
  _safe(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this._exception(e);
    }
  }

  private newSession(direction: "incoming" | "outgoing"): Session<P> {
    const s = new Session<P>(this.protocol, direction, this);
    s.maxRemoteHandles = this.maxRemoteHandles;
    return s;
  }

  private connectionOptions(session: Session<any>): ConnectionOptions {
    return { ...this.connOptions, handles: session, timeouts: { establish: this.timeoutEstablish, message: null } };
  }

  // ------------------------------------------------------------ server

  /** `lwmsg_peer_add_listen_endpoint`: listen on a socket path (`perms` is chmod'ed onto the socket file; default 0o600). */
  addListenEndpoint(mode: ConnectionMode, path: string, perms = 0o600): this {
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `addListenEndpoint: only LOCAL endpoints are supported, got mode ${mode}`);
    if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "addListenEndpoint: path must be a non-empty string");
    if (!Number.isInteger(perms) || perms < 0 || perms > 0o7777) throw new LwMsgError(Status.INVALID_PARAMETER, `addListenEndpoint: perms must be a permission number like 0o600, got ${perms}`);
    this.requireStopped("addListenEndpoint");
    this.listenPoints.push(new ListenPoint(path, perms, -1));
    return this;
  }

  /** `lwmsg_peer_add_listen_fd`: listen on a bound socket fd; the peer takes ownership (stopListen closes it). */
  addListenFd(mode: ConnectionMode, fd: number): this {
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `addListenFd: only LOCAL is supported, got mode ${mode}`);
    if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `addListenFd: fd must be a non-negative integer, got ${fd}`);
    this.requireStopped("addListenFd");
    this.listenPoints.push(new ListenPoint(null, 0, fd));
    return this;
  }

  /**
   * `lwmsg_peer_start_listen`: for each endpoint unlink, bind, chmod and
   * listen (backlog), then accept clients. A failure (e.g. FILE_NOT_FOUND for
   * a missing directory) closes what was opened and leaves the peer in an
   * error state that later start/stop calls report again (lwmsg's sticky
   * status).
   */
  async startListen(): Promise<void> {
    if (this.state === PeerState.ERROR) throw this.stickyError!;
    if (this.state === PeerState.STARTED) return;
    // Policy checks first: a refusal opens nothing and is not sticky.
    for (const lp of this.listenPoints) {
      if (lp.path === null) continue;
      if (isAbstractPath(lp.path)) {
        if (!this.sessionHooks?.construct && !this.allowAnyUser) {
          throw new LwMsgError(Status.SECURITY, `startListen: abstract socket name ${JSON.stringify(lp.path)} has no file permissions, so any local user can connect; set onSession({ construct }) (e.g. authorize(sameUser())) or allowAnyUser: true`);
        }
      } else if (this.checkDirectory) checkListenDirectory(lp.path);
    }
    try {
      for (const lp of this.listenPoints) lp.open(this._backlog);
    } catch (e) {
      for (const lp of this.listenPoints) lp.close();
      this.state = PeerState.ERROR;
      this.stickyError = asLwError(e);
      throw this.stickyError;
    }
    this.state = PeerState.STARTED;
    const poller = Poller.shared();
    for (const lp of this.listenPoints) {
      lp.dead = false;
      lp.watch = poller.watch(lp.fd, () => this.acceptLoop(lp));
    }
    if (this.listenPoints.length > 0) {
      this.pollerRef = poller;
      poller.ref();
    }
    this.updateSweeper();
    for (const lp of this.listenPoints) this.acceptLoop(lp);
  }

  /** Accept while there are free client slots; pause (kernel backlog keeps the rest) when full. */
  private acceptLoop(lp: ListenPoint): void {
    while (this.state === PeerState.STARTED && lp.fd >= 0 && !lp.dead) {
      if (this.numClients >= this._maxClients) {
        lp.paused = true;
        return;
      }
      lp.paused = false;
      let fd: number;
      try {
        fd = acceptFd(lp.fd);
      } catch (e) {
        const err = asLwError(e);
        this._exception(err);
        if (err.status === Status.BUSY || err.status === Status.MEMORY || err.status === Status.RESOURCE_LIMIT) {
          const t = setTimeout(() => this.acceptLoop(lp), 20);
          (t as { unref?: () => void }).unref?.();
        } else lp.dead = true;
        return;
      }
      if (fd === -Errno.EAGAIN) {
        lp.watch?.arm(READABLE);
        return;
      }
      const uid = this.takeUidSlot(fd);
      if (uid === null) continue;
      this.numClients++;
      this.acceptConnection(fd, ConnectionMode.LOCAL, uid).then(noop, noop);
    }
  }

  /**
   * maxClientsPerUid: count the new connection against its owner's uid (from
   * the kernel). Returns the uid (-1 when not limited), or null after closing
   * a connection over the limit.
   */
  private takeUidSlot(fd: number): number | null {
    const limit = this._maxClientsPerUid;
    if (limit === null) return -1;
    let uid: number;
    try {
      uid = peerCredentials(fd).uid;
    } catch (e) {
      closeFd(fd);
      this._warn(asLwError(e));
      return null;
    }
    const n = this.clientsByUid.get(uid) ?? 0;
    if (n >= limit) {
      closeFd(fd);
      this._warn(new LwMsgError(Status.BUSY, `refused a connection from uid ${uid}: it already has ${n} (maxClientsPerUid ${limit})`));
      return null;
    }
    this.clientsByUid.set(uid, n + 1);
    return uid;
  }

  private releaseSlot(uid: number): void {
    if (uid >= 0) {
      const n = this.clientsByUid.get(uid)! - 1;
      if (n > 0) this.clientsByUid.set(uid, n);
      else this.clientsByUid.delete(uid);
    }
    this.numClients--;
    if (this.numClients < this._maxClients) {
      for (const lp of this.listenPoints) if (lp.paused) queueMicrotask(() => this.acceptLoop(lp));
    }
  }

  /** Handshake on an accepted fd, run the session constructor, then serve. The caller holds a client slot for it. */
  private async acceptConnection(fd: number, mode: ConnectionMode, uid = -1): Promise<Session<P>> {
    const gen = this.stopGeneration;
    const session = this.newSession("incoming");
    let conn: Connection;
    try {
      conn = new Connection(this.protocol, this.connectionOptions(session));
      conn.setFd(mode, fd);
    } catch (e) {
      closeFd(fd);
      this.releaseSlot(uid);
      throw e;
    }
    conn.acceptCookie = session.acceptId;
    this.handshaking.add(conn);
    let constructed = false;
    let refused = false;
    const hooks = this.sessionHooks;
    try {
      await conn.accept(async (token, connectCookie) => {
        session.peerToken = token;
        session.connectId = connectCookie;
        if (hooks?.construct) {
          let d: unknown;
          try {
            d = await hooks.construct(token, session);
          } catch (e) {
            refused = true;
            throw e;
          }
          if (d !== undefined) session.data = d;
        }
        constructed = true;
        if (hooks?.destruct) session.destruct = hooks.destruct;
      });
    } catch (e) {
      this.handshaking.delete(conn);
      conn.destroy();
      this.releaseSlot(uid);
      if (constructed) this.endSession(session);
      // A refusal is the server's decision, worth an operator's eye (SECURITY.md §3): the exception hook hears of it.
      if (refused) {
        const err = asLwError(e, Status.SECURITY);
        this._warn(new LwMsgError(err.status, `refused client ${tokenToString(session.peerToken!)}: ${err.message.replace(/^[A-Z_]+: /, "")}`, { cause: e }));
      }
      throw e;
    }
    this.handshaking.delete(conn);
    if (gen !== this.stopGeneration) {
      // stopListen ran during the handshake.
      conn.destroy();
      this.releaseSlot(uid);
      this.endSession(session);
      throw new LwMsgError(Status.CANCELLED, "the server stopped during the handshake");
    }
    const task = new AssocTask(this, session, conn, true);
    task.slotUid = uid;
    session.task = task;
    this.serverTasks.add(task);
    this.finishing.add(task.finished);
    this.updateSweeper();
    task.start();
    return session;
  }

  /**
   * `lwmsg_peer_accept_fd`: serve an already-connected socket (e.g. one end
   * of a socketpair with `ConnectionMode.PAIR`) as an incoming session.
   * Resolves once the handshake is done; the session is served either way
   * (awaiting is optional).
   */
  acceptFd(mode: ConnectionMode, fd: number): Promise<Session<P>> {
    if (mode !== ConnectionMode.LOCAL && mode !== ConnectionMode.PAIR) return Promise.reject(new LwMsgError(Status.UNSUPPORTED, `acceptFd: unsupported mode ${mode}`));
    this.numClients++;
    const p = this.acceptConnection(fd, mode);
    p.then(noop, noop);
    return p;
  }

  /**
   * `lwmsg_peer_stop_listen`: stop accepting and remove the socket files
   * (those still ours), drop every incoming connection without SHUTDOWN, cancel the incoming
   * calls still running (their `call.signal` aborts, `onCancel` callbacks
   * run) and resolve once they have all settled and their sessions ended.
   */
  async stopListen(): Promise<void> {
    if (this.state === PeerState.ERROR) throw this.stickyError!;
    await this.rundownServer();
  }

  private async rundownServer(): Promise<void> {
    this.stopGeneration++;
    const wasStarted = this.state === PeerState.STARTED;
    this.state = this.state === PeerState.ERROR ? PeerState.ERROR : PeerState.STOPPED;
    for (const lp of this.listenPoints) lp.close();
    // A given listen fd is consumed.
    this.listenPoints = this.listenPoints.filter((lp) => lp.path !== null);
    if (wasStarted && this.pollerRef) {
      this.pollerRef.unref();
      this.pollerRef = null;
    }
    for (const c of [...this.handshaking]) c.destroy();
    for (const c of [...this._closingConns]) c.destroy(); // goodbyes still flushing: stop waiting for slow readers
    for (const t of [...this.serverTasks]) t.shutdown(new LwMsgError(Status.CANCELLED, "the server stopped listening"), false);
    while (this.finishing.size > 0) await Promise.all([...this.finishing]);
    this.updateSweeper();
  }

  /** @internal a task lost its connection. */
  _taskEnded(task: AssocTask): void {
    if (task.incoming) this.serverTasks.delete(task);
    else this.clientTasks.delete(task);
    this.updateSweeper();
  }

  /**
   * @internal a task's connection is gone and its incoming calls have
   * settled. Only now does a server session give back its client slot, so
   * maxClients (and maxClientsPerUid) bound live sessions, including those
   * whose handlers still run after the client left.
   */
  _taskFinished(task: AssocTask): void {
    this.finishing.delete(task.finished);
    if (task.incoming) {
      this.endSession(task.session);
      this.releaseSlot(task.slotUid);
    }
  }

  private endSession(session: Session<any>): void {
    if (session.ended) return;
    session.ended = true;
    session.resetHandles(this._exceptionFn);
  }

  // ------------------------------------------------------------ timeouts sweep

  private updateSweeper(): void {
    const want = (this.timeoutIdle !== null || this.timeoutMessage !== null) && (this.serverTasks.size > 0 || this.clientTasks.size > 0);
    if (want && this.sweepTimer === null) {
      const base = Math.min(this.timeoutIdle ?? Infinity, this.timeoutMessage ?? Infinity);
      const every = Math.max(5, Math.min(250, Math.floor(base / 4)));
      this.sweepTimer = setInterval(this.sweep, every);
      (this.sweepTimer as { unref?: () => void }).unref?.();
    } else if (!want && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  private sweep = (): void => {
    const now = performance.now();
    const idle = this.timeoutIdle;
    const msg = this.timeoutMessage;
    const pressure = idle !== null && this.numClients >= this._maxClients;
    const expired: AssocTask[] = [];
    for (const t of this.serverTasks) {
      if (t.status !== 0) continue;
      if (idle !== null) {
        if (!pressure || t.activity !== t.seenActivity || t.inCalls.size > 0 || t.session.handleCount > 0) {
          t.seenActivity = t.activity;
          t.idleSince = now;
        } else if (now - t.idleSince >= idle) {
          expired.push(t);
          continue;
        }
      }
      if (msg !== null && this.blockedTooLong(t, now, msg)) expired.push(t);
    }
    if (msg !== null) for (const t of this.clientTasks) if (t.status === 0 && this.blockedTooLong(t, now, msg)) expired.push(t);
    for (const t of expired) t.handleAssocError(new LwMsgError(Status.TIMEOUT, "connection timed out"));
  };

  private blockedTooLong(t: AssocTask, now: number, limit: number): boolean {
    const st = t.conn.state;
    const blocked = st === AssocState.BLOCKED_SEND || st === AssocState.BLOCKED_RECV || st === AssocState.BLOCKED_SEND_RECV;
    if (!blocked || t.activity !== t.blockActivity) {
      t.blockActivity = t.activity;
      t.blockedSince = now;
      return false;
    }
    return now - t.blockedSince >= limit;
  }

  // ------------------------------------------------------------ client

  /** `lwmsg_peer_add_connect_endpoint`: endpoints are tried in order at each (re)connect. */
  addConnectEndpoint(mode: ConnectionMode, path: string): this {
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `addConnectEndpoint: only LOCAL endpoints are supported, got mode ${mode}`);
    if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "addConnectEndpoint: path must be a non-empty string");
    this.connectEndpoints.push({ mode, path });
    return this;
  }

  /**
   * `lwmsg_peer_connect`: the outgoing session (created on first use). No
   * connection is made here: the first call connects, trying each endpoint
   * in order, and a later call reconnects if the connection was lost.
   */
  async connect(): Promise<Session<P>> {
    if (this.connectSession) return this.connectSession;
    const s = this.newSession("outgoing");
    this.clientState.set(s, { reconnectable: true, connecting: null, pending: null, closed: false });
    this.connectSession = s;
    return s;
  }

  /** The outgoing session, if `connect`/`connectFd` created one. */
  get session(): Session<P> | null {
    return this.connectSession;
  }

  /**
   * `lwmsg_peer_connect_fd`: the outgoing session over an already-connected
   * socket (e.g. a socketpair end, `ConnectionMode.PAIR`). The handshake
   * starts now; calls wait for it. INVALID_STATE if an outgoing session
   * already exists. Such a session cannot reconnect.
   */
  async connectFd(mode: ConnectionMode, fd: number): Promise<Session<P>> {
    if (this.connectSession) throw new LwMsgError(Status.INVALID_STATE, "connectFd: an outgoing session already exists (disconnect first)");
    const s = this.newSession("outgoing");
    const cs: ClientSessionState = { reconnectable: false, connecting: null, pending: null, closed: false };
    this.clientState.set(s, cs);
    const conn = new Connection(this.protocol, this.connectionOptions(s));
    conn.setFd(mode, fd);
    this.connectSession = s;
    cs.connecting = this.establishClient(s, cs, conn);
    cs.connecting.then(noop, noop);
    return s;
  }

  /** @internal SessionTransport: a call on a session without a live connection. */
  call(session: Session<any>, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    if (session.ended) return Promise.reject(new LwMsgError(Status.INVALID_STATE, "call: the session has ended (disconnected)"));
    const cs = this.clientState.get(session);
    if (!cs) {
      const t = session.task as AssocTask | null;
      return Promise.reject(t?.error ?? new LwMsgError(Status.INVALID_STATE, "call: the session has no connection"));
    }
    return this.connectAndCall(session, cs, message, options);
  }

  private async connectAndCall(session: Session<any>, cs: ClientSessionState, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    const signal = options?.signal;
    if (signal?.aborted) throw new CallError(Status.CANCELLED, "call cancelled before it was sent", null);
    const connecting = this.ensureConnected(session, cs);
    let task: AssocTask;
    if (signal) {
      let onAbort: (() => void) | null = null;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(new CallError(Status.CANCELLED, "call cancelled before it was sent", null));
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        task = await Promise.race([connecting, aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort!);
      }
    } else task = await connecting;
    return task.call(message, options);
  }

  private ensureConnected(session: Session<any>, cs: ClientSessionState): Promise<AssocTask> {
    const t = session.task as AssocTask | null;
    if (t !== null && t.status === 0) return Promise.resolve(t);
    if (cs.connecting) return cs.connecting;
    if (!cs.reconnectable) return Promise.reject(t?.error ?? new LwMsgError(Status.INVALID_STATE, "the session's connection is gone and cannot be remade (connectFd)"));
    const p = this.connectEndpointsFor(session, cs);
    cs.connecting = p;
    p.then(
      () => {
        if (cs.connecting === p) cs.connecting = null;
      },
      () => {
        if (cs.connecting === p) cs.connecting = null;
      },
    );
    return p;
  }

  /** Try each connect endpoint in order (§7.3 step 2). */
  private async connectEndpointsFor(session: Session<any>, cs: ClientSessionState): Promise<AssocTask> {
    if (this.connectEndpoints.length === 0) throw new LwMsgError(Status.INVALID_STATE, "no connect endpoint (addConnectEndpoint)");
    let last: LwMsgError | null = null;
    for (const ep of this.connectEndpoints) {
      const conn = new Connection(this.protocol, this.connectionOptions(session));
      conn.setEndpoint(ep.mode, ep.path);
      try {
        return await this.establishClient(session, cs, conn);
      } catch (e) {
        const err = asLwError(e);
        last = err;
        if (!RETRY_CONNECT.has(err.status)) throw err;
      }
    }
    throw last!;
  }

  /** Handshake an outgoing connection and apply lwmsg's reconnect rules (token check, session reset on a new server instance). */
  private async establishClient(session: Session<any>, cs: ClientSessionState, conn: Connection): Promise<AssocTask> {
    conn.connectCookie = session.connectId;
    if (cs.closed) {
      conn.destroy();
      throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
    }
    cs.pending = conn;
    try {
      await conn.connect(this.authorizeServer ?? undefined);
    } catch (e) {
      conn.destroy();
      throw cs.closed ? new LwMsgError(Status.CANCELLED, "disconnected while connecting") : e;
    } finally {
      if (cs.pending === conn) cs.pending = null;
    }
    if (cs.closed || session.ended) {
      conn.destroy();
      throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
    }
    const token = conn.peerToken!;
    const accept = conn.peerCookie!;
    if (session.peerToken !== null) {
      if (!tokenCanAccess(session.peerToken, token)) {
        conn.destroy();
        throw new LwMsgError(Status.SECURITY, "reconnected to a server with a different identity");
      }
      if (!sameBytes(session.acceptId, accept) && session.handleCount > 0) session.resetHandles(this._exceptionFn);
    } else session.peerToken = token;
    session.acceptId = accept;
    const task = new AssocTask(this, session, conn, false);
    session.task = task;
    this.clientTasks.add(task);
    this.updateSweeper();
    task.start();
    return task;
  }

  /**
   * `lwmsg_peer_disconnect`: close the outgoing session. Outgoing calls in
   * flight reject with CANCELLED, incoming callback calls are cancelled, the
   * connection is dropped, and the session ends (handle cleanups, then its
   * handles are invalid). `connect()` afterwards starts a new session.
   */
  async disconnect(): Promise<void> {
    const s = this.connectSession;
    if (!s) return;
    this.connectSession = null;
    const cs = this.clientState.get(s);
    if (cs) {
      cs.closed = true;
      cs.pending?.destroy();
    }
    if (cs?.connecting) await cs.connecting.then(noop, noop);
    const t = s.task as AssocTask | null;
    if (t) {
      t.shutdown(new LwMsgError(Status.CANCELLED, "disconnected"), false);
      await t.finished;
    }
    this.endSession(s);
  }

  /** `lwmsg_peer_delete`: stop listening and disconnect. */
  async close(): Promise<void> {
    try {
      await this.rundownServer();
    } finally {
      await this.disconnect();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
