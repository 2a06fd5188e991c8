/**
 * What carries a session's calls, seen from the session: a channel. The
 * association channel (lib/peer/assoc-channel.ts) runs them over a
 * connection; the direct channel (lib/peer/direct.ts) hands them to a
 * server's handlers in the same process (lwmsg `peer-direct.c`). The session
 * never sees which.
 * @module
 */
import type { OutgoingMessage, ReceivedMessage } from "./assoc/message.ts";

/** Options of `session.call`. */
export interface CallOptions {
  /** Aborting cancels the call (`lwmsg_call_cancel`): a CONTROL cancel goes to the callee and the call rejects with CANCELLED once the callee's reply arrives (at once if the request was never sent). */
  signal?: AbortSignal;
  /** Milliseconds; when exceeded the call rejects with TIMEOUT at once and is cancelled on the wire (its cookie stays reserved until the callee's reply arrives). */
  timeout?: number;
}

/** @internal The live channel of a session. */
export interface SessionTask {
  /** 0 while usable, else the status it failed with. */
  status: number;
  call(message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage>;
}

/** @internal What (re)makes a session's channel when it has none (the peer). */
export interface SessionTransport {
  call(session: any, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage>;
}
