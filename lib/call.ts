/**
 * `LWMsgCall`: one call between two peers of a session (reference §1.14,
 * §7.4). A handler receives the incoming {@link Call} as its second argument;
 * trace hooks see both directions. Outgoing calls are made with
 * `session.call(...)`, which returns a promise instead of a call handle.
 * @module
 */
import type { ReceivedMessage } from "./assoc/message.ts";
import type { SecurityToken } from "./token.ts";
import { LwMsgError, Status } from "./status.ts";
import type { Session } from "./session.ts";
import type { Protocol } from "./protocol.ts";
import type { CallOptions } from "./channel.ts";

export type { CallOptions };

/** `LWMsgCallDirection`. */
export const CallDirection = { INCOMING: 0, OUTGOING: 1 } as const;
export type CallDirection = (typeof CallDirection)[keyof typeof CallDirection];

/**
 * The error a call rejects with when the reply carries a non-success status.
 * lwmsg fills the caller's `out` parameters even then (§10.8), so the reply
 * message is attached as {@link reply} (null when there was no reply: local
 * failures, timeouts, disconnects).
 */
export class CallError extends LwMsgError {
  /** The reply (`tag`, `data`, `flags`, `status`), when one arrived. */
  readonly reply: ReceivedMessage | null;
  constructor(status: Status, message: string | undefined, reply: ReceivedMessage | null) {
    super(status, message);
    this.name = "CallError";
    this.reply = reply;
  }
}

const noop = (): void => {};

/**
 * A call as the peer layer tracks it (`LWMsgCall`). The callee's handler gets
 * the incoming call:
 *
 * ```ts
 * server.addDispatch({
 *   SLOW_REQ: async (data, call) => {
 *     call.onCancel(() => console.log("caller gave up"));
 *     await work(data, { signal: call.signal });
 *     return { tag: "SLOW_RES", data: null };
 *   },
 * });
 * ```
 */
export class Call<P extends Protocol<any> = Protocol<any>> {
  /** `lwmsg_call_set_user_data` / `get_user_data`: free for the application. */
  userData: unknown = undefined;
  /** @internal cancellation requested (by the caller, a disconnect or stopListen). */
  _cancelled = false;
  /** @internal the reply went out (incoming) or the promise settled (outgoing). */
  _done = false;
  /** Incoming calls: the request as received. Its fds are closed when the call is over unless claimed (`call.request.takeFd(fd)`). */
  request: ReceivedMessage | null = null;
  private _ac: AbortController | null = null;
  private _cancelFns: (() => void)[] | null = null;
  /** @internal callbacks to run once the call is over. */
  _after: (() => void)[] | null = null;

  constructor(
    /** INCOMING (we are the callee) or OUTGOING (we are the caller). */
    readonly direction: CallDirection,
    /** `lwmsg_call_get_session`: the session the call travels on; `call.session.call(...)` calls back into the peer. */
    readonly session: Session<P>,
    /** The u16 cookie of this call on its connection (per direction). */
    readonly cookie: number,
    /** @internal request tag as given (a protocol name or number). */
    readonly _tag: string | number,
  ) {}

  /** Request tag number. */
  get tag(): number {
    const t = this._tag;
    if (typeof t === "number") return t;
    return this.session.protocol.byName(t)?.tag ?? -1;
  }

  /** The caller's security token (`lwmsg_session_get_peer_security_token`), null when unauthenticated. */
  get token(): SecurityToken | null {
    return this.session.peerToken;
  }

  /** True once the call was cancelled (caller's CONTROL cancel, disconnect, or the server stopping). */
  get cancelled(): boolean {
    return this._cancelled;
  }

  /** Aborts when the call is cancelled. Created on first use (nothing is allocated for calls that never ask). */
  get signal(): AbortSignal {
    if (this._ac === null) {
      this._ac = new AbortController();
      if (this._cancelled) this._ac.abort(new LwMsgError(Status.CANCELLED, "call cancelled"));
    }
    return this._ac.signal;
  }

  /**
   * `lwmsg_call_pend(call, cancel_fn)`: run `fn` when the call is cancelled.
   * If it already was, `fn` runs in a microtask. The handler should then
   * finish soon, normally by throwing `LwMsgError(Status.CANCELLED)`.
   */
  onCancel(fn: () => void): void {
    if (typeof fn !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "onCancel needs a function");
    if (this._cancelled) {
      if (!this._done) queueMicrotask(fn);
      return;
    }
    (this._cancelFns ??= []).push(fn);
  }

  /**
   * Incoming calls: run `fn` once the call is over — its reply handed to the
   * connection (fds in the reply are duplicated by then, so the handler's
   * originals may be closed here) or dropped with the connection.
   */
  onComplete(fn: () => void): void {
    if (typeof fn !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "onComplete needs a function");
    if (this._done) queueMicrotask(fn);
    else (this._after ??= []).push(fn);
  }

  /** @internal Mark cancelled, abort the signal, run the cancel callbacks (once). */
  _cancel(onError: (e: unknown) => void = noop): void {
    if (this._cancelled) return;
    this._cancelled = true;
    if (this._done) return;
    if (this._ac !== null) this._ac.abort(new LwMsgError(Status.CANCELLED, "call cancelled"));
    const fns = this._cancelFns;
    this._cancelFns = null;
    if (fns !== null) {
      for (const fn of fns) {
        try {
          fn();
        } catch (e) {
          onError(e);
        }
      }
    }
  }

  toString(): string {
    return `<call ${this.direction === CallDirection.INCOMING ? "in" : "out"} cookie=${this.cookie} tag=${String(this._tag)}>`;
  }
}

/** @internal An outgoing call waiting for its reply. Also the `abort` listener of its signal (no closure per call). */
export class OutgoingCall extends Call<any> {
  resolve: (m: ReceivedMessage) => void = noop;
  reject: (e: unknown) => void = noop;
  /** The request went out (so a cancel must go on the wire). */
  sent = false;
  /** The promise already rejected (timeout): the reply, when it comes, only frees the cookie. */
  settled = false;
  timer: ReturnType<typeof setTimeout> | null = null;
  signal_: AbortSignal | null = null;
  /** Set by the task: what to do when the signal aborts or the timer fires. */
  owner: { cancelOutgoing(c: OutgoingCall, why: Status): void } | null = null;
  /** The request as the caller gave it, and its options: re-issued when a draining server answers SHUTDOWN(AGAIN). */
  message: { tag: string | number; data?: unknown } | null = null;
  options: CallOptions | undefined = undefined;
  /** `Date.now()` at which the caller's timeout ends (null: none); a re-issued call keeps what remains. */
  deadline: number | null = null;

  constructor(session: Session<any>, cookie: number, tag: string | number) {
    super(CallDirection.OUTGOING, session, cookie, tag);
  }

  /** `abort` event on the caller's signal. */
  handleEvent(): void {
    this.owner?.cancelOutgoing(this, Status.CANCELLED);
  }

  /** Drop the timer and the signal listener. */
  detach(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.signal_ !== null) {
      this.signal_.removeEventListener("abort", this);
      this.signal_ = null;
    }
  }
}

/** @internal `setTimeout` callback for call timeouts (shared, the call comes as the argument). */
export function onCallTimeout(c: OutgoingCall): void {
  c.timer = null;
  c.owner?.cancelOutgoing(c, Status.TIMEOUT);
}
