/**
 * Running an incoming call (§7.2 step 5): the dispatch vector's rule for the
 * request's tag, the handler, and its outcome as a reply. Shared by the
 * association channel (requests from a socket) and the direct channel
 * (requests from this process).
 * @module
 */
import type { Call } from "../call.ts";
import { LwMsgError, Status } from "../status.ts";
import { TAG_INVALID } from "../wire/packets.ts";
import type { ChannelHost, Reply } from "./types.ts";

/** Where an incoming call's outcome goes: the channel sends it back as the reply. */
export interface Replier {
  /** Send the reply of `call` (once); `synthetic` marks one the callee made up (an unusable handler result). */
  reply(call: Call, status: number, tag: string | number, data: unknown, synthetic?: boolean): void;
  /** An async handler started: its reply should leave with the next receive. */
  asyncStarted(): void;
}

/**
 * Dispatch `call` (tag `tag`, payload `data`). Over a connection (`"assoc"`,
 * §7.2 step 5) a tag above every dispatched tag answers MALFORMED, a tag
 * with no entry UNSUPPORTED, an entry of null UNIMPLEMENTED; a DIRECT call
 * (`"direct"`, `lwmsg_direct_call_dispatch`) answers UNIMPLEMENTED for all
 * three. Otherwise the handler runs and its result (or what it throws)
 * becomes the reply.
 */
export function runIncoming(host: ChannelHost, replier: Replier, call: Call, tag: number, data: unknown, request: { tag: number | string; data?: unknown }, rule: "assoc" | "direct" = "assoc"): void {
  const vec = host._dispatch;
  const direct = rule === "direct";
  if (tag < 0 || tag >= vec.length) return replier.reply(call, direct ? Status.UNIMPLEMENTED : Status.MALFORMED, TAG_INVALID, undefined);
  const h = vec[tag];
  if (h === undefined) return replier.reply(call, direct ? Status.UNIMPLEMENTED : Status.UNSUPPORTED, TAG_INVALID, undefined);
  if (h === null) return replier.reply(call, Status.UNIMPLEMENTED, TAG_INVALID, undefined);
  const tr = host._trace;
  if (tr !== null && tr.begin) host._safe(() => tr.begin!(call, request));
  let r: Reply | Promise<Reply>;
  try {
    r = h(data, call);
  } catch (e) {
    return handlerFailed(host, replier, call, e);
  }
  if (r !== null && typeof r === "object" && typeof (r as Promise<Reply>).then === "function") {
    replier.asyncStarted();
    (r as Promise<Reply>).then(
      (v) => handlerDone(host, replier, call, v),
      (e) => handlerFailed(host, replier, call, e),
    );
  } else handlerDone(host, replier, call, r as Reply);
}

function handlerDone(host: ChannelHost, replier: Replier, call: Call, r: Reply): void {
  if (r === null || r === undefined) return replier.reply(call, Status.SUCCESS, TAG_INVALID, undefined);
  if (typeof r !== "object" || !("tag" in r)) {
    host._exception(new LwMsgError(Status.MALFORMED, `handler for tag ${call.tag} returned ${String(r)}, not { tag, data }`));
    return replier.reply(call, Status.MALFORMED, TAG_INVALID, undefined, true);
  }
  replier.reply(call, r.status ?? Status.SUCCESS, r.tag, r.data);
}

/** A handler that throws `LwMsgError(status)` fails the call with that status; anything else is ERROR and goes to the exception hook. */
function handlerFailed(host: ChannelHost, replier: Replier, call: Call, e: unknown): void {
  let status: number;
  if (e instanceof LwMsgError) status = e.status;
  else {
    status = Status.ERROR;
    host._exception(e);
  }
  replier.reply(call, status, TAG_INVALID, undefined);
}
