/**
 * An outgoing call's promise, and how the call ends: with its reply, with an
 * error, or — after a draining server's SHUTDOWN(AGAIN) — sent again
 * through its session.
 * @module
 */
import { CallError, type CallOptions, type OutgoingCall } from "../call.ts";
import type { ReceivedMessage } from "../connection.ts";
import { Status } from "../status.ts";
import { TAG_INVALID } from "../wire/packets.ts";
import { replyFailure, type ChannelHost } from "./types.ts";

/** The promise of a new call (`oc.settled` at once for a bad timeout or an aborted signal: nothing is to be sent). */
export function openOutgoing(oc: OutgoingCall, message: { tag: string | number; data?: unknown }, options: CallOptions | undefined): Promise<ReceivedMessage> {
  oc.message = message;
  oc.options = options;
  const promise = new Promise<ReceivedMessage>((resolve, reject) => {
    oc.resolve = resolve;
    oc.reject = reject;
  });
  const timeout = options?.timeout;
  if (timeout !== undefined && timeout !== null && (typeof timeout !== "number" || !(timeout >= 0))) {
    oc.settled = true;
    oc.reject(new CallError(Status.INVALID_PARAMETER, `call: timeout must be a non-negative number of ms, got ${String(timeout)}`, null));
  } else if (options?.signal?.aborted) {
    oc.settled = true;
    oc.reject(new CallError(Status.CANCELLED, "call cancelled before it was sent", null));
  } else if (typeof timeout === "number") oc.deadline = Date.now() + timeout; // a re-sent call keeps what is left
  return promise;
}

/** The reply came: resolve (SUCCESS) or reject with the reply's status. */
export function completeOutgoing(peer: ChannelHost, oc: OutgoingCall, m: ReceivedMessage): void {
  oc.detach();
  oc._done = true;
  const tr = peer._trace;
  if (tr !== null && tr.end) peer._safe(() => tr.end!(oc, m, oc._cancelled ? Status.CANCELLED : m.status));
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

/** No reply will come: reject with `status` (CANCELLED if the caller cancelled). */
export function failOutgoing(peer: ChannelHost, oc: OutgoingCall, status: number, message: string, reply: ReceivedMessage | null): void {
  if (oc._cancelled) status = Status.CANCELLED;
  oc.detach();
  oc._done = true;
  const tr = peer._trace;
  if (tr !== null && tr.end) peer._safe(() => tr.end!(oc, { tag: TAG_INVALID }, status));
  if (oc.settled) return;
  oc.settled = true;
  oc.reject(new CallError(status as Status, message, reply));
}

/**
 * The server said SHUTDOWN(AGAIN) before answering: the call was not run.
 * Send it again through the session (which reconnects — to the successor,
 * as the old server no longer accepts) with the caller's signal and what is
 * left of its timeout; the caller's promise follows the new call.
 *
 * Not a request with fd fields: it is encoded again from what the caller
 * passed, and the caller may have closed those fds once the call was sent
 * (or their numbers now name other files). That call fails with AGAIN
 * instead — not run, safe to send again with fresh fds.
 */
export function reissueOutgoing(peer: ChannelHost, oc: OutgoingCall): void {
  const message = oc.message!;
  const protocol = oc.session.protocol;
  const entry = typeof message.tag === "number" ? protocol.byTag(message.tag) : protocol.byName(message.tag);
  if (entry?.hasFds) {
    failOutgoing(peer, oc, Status.AGAIN, `${entry.name} was not run (the server is draining) and is not re-sent automatically: it carries fds, which may have been closed since it was sent; send it again`, null);
    return;
  }
  oc.detach();
  oc.settled = true;
  let options = oc.options;
  if (oc.deadline !== null) options = { ...options, timeout: Math.max(0, oc.deadline - Date.now()) };
  // Once the channel has ended: the session must see its connection gone before it reconnects.
  queueMicrotask(() => {
    const p = oc.session.call(message as any, options) as Promise<ReceivedMessage>;
    p.then(oc.resolve, oc.reject);
  });
}
