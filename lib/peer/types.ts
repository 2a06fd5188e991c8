/**
 * The Peer's public types (handlers, dispatch tables, options, hooks) and
 * what its parts share: the host interface a channel reports to, and the
 * status rules of the call protocol (§7).
 * @module
 */
import type { Connection, ConnectionOptions, ReceivedMessage } from "../connection.ts";
import type { DataOf, MessageOut, Protocol } from "../protocol.ts";
import { LwMsgError, Status } from "../status.ts";
import { MessageFlags, TAG_INVALID } from "../wire/packets.ts";
import type { Call, OutgoingCall } from "../call.ts";
import type { TokenCheck } from "../security.ts";

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
  /**
   * Decoded bytes (JS heap, as the codec charges it: SECURITY.md §4) the
   * requests of one session may hold at once — decoded and not yet answered
   * (default 64 MiB; null: no budget). A request that would go over is
   * answered BUSY; the connection stays. Default: 64 MiB + 4 × maxMessageSize
   * (128 MiB with the default 16 MiB messages); null: no budget.
   */
  maxDecodedBytesPerSession?: number | null;
  /** The same across every session of one local uid (default 4 × the per-session budget; null: no budget). */
  maxDecodedBytesPerUid?: number | null;
  timeouts?: PeerTimeouts;
}

export const noop = (): void => {};
/** Connect failures that move on to the next connect endpoint (§7.3 step 2). */
export const RETRY_CONNECT = new Set<number>([Status.CONNECTION_REFUSED, Status.TIMEOUT, Status.FILE_NOT_FOUND, Status.NOT_FOUND]);
/** Send failures that fail only the call (the message could not be encoded); the connection stays. */
export const CALL_LOCAL_ENCODE_ERRORS = new Set<number>([Status.MALFORMED, Status.INVALID_HANDLE, Status.OVERFLOW, Status.UNDERFLOW, Status.INVALID_PARAMETER]);
/** Reply failures answered with a synthetic reply carrying the status. */
export const REPLY_ENCODE_ERRORS = CALL_LOCAL_ENCODE_ERRORS;
export const MAX_COOKIES = 65536;

export function asLwError(e: unknown, fallback: Status = Status.ERROR): LwMsgError {
  if (e instanceof LwMsgError) return e;
  return new LwMsgError(fallback, String((e as Error)?.message ?? e), { cause: e });
}

/**
 * What a failed reply means, naming the request. A payload-less reply with
 * MALFORMED / UNSUPPORTED / UNIMPLEMENTED is how an lwmsg server answers a
 * tag it does not dispatch (§7.2 step 5; the wire carries no text, so a
 * handler that failed with the same status looks alike).
 */
export function replyFailure(oc: OutgoingCall, m: ReceivedMessage): string {
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

export function checkMs(kind: string, v: unknown): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `${kind} timeout must be a non-negative number of ms or null, got ${String(v)}`);
  return v;
}

/** A decoded-bytes budget option: a positive integer, null (none: -1), or the default when undefined. */
export function checkBudget(name: string, v: number | null | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (v === null) return -1;
  if (!Number.isInteger(v) || v < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `${name} must be a positive integer or null, got ${String(v)}`);
  return v;
}

export function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** @internal What a channel reports to and reads from its Peer (implemented by Peer: no import of it here). */
export interface ChannelHost {
  /** Dispatch vector indexed by tag: undefined = no entry, null = UNIMPLEMENTED. */
  readonly _dispatch: (Handler | null | undefined)[];
  readonly _trace: TraceHooks | null;
  readonly _maxCallsPerSession: number;
  /** Connections whose orderly close is still flushing (stopListen cuts them short). */
  readonly _closingConns: Set<Connection>;
  _exception(e: unknown): void;
  readonly _exceptionFn: (e: unknown) => void;
  _warn(e: LwMsgError): void;
  _safe(fn: () => void): void;
  /** Decoded bytes one session's requests may hold at once (-1: no budget). */
  readonly _maxDecodedPerSession: number;
  /** What `uid`'s budget still allows (-1: no budget, or no uid). */
  _uidBudgetLeft(uid: number): number;
  /** `uid`'s requests hold `n` more (or, negative, fewer) decoded bytes. */
  _uidHold(uid: number, n: number): void;
  /** A channel lost its connection. */
  _taskEnded(task: { readonly incoming: boolean }): void;
  /** A channel's connection is gone and its incoming calls have settled. */
  _taskFinished(task: { readonly incoming: boolean }): void;
}
