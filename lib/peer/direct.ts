/**
 * DIRECT endpoints (lwmsg `LWMSG_ENDPOINT_DIRECT`, `peer-direct.c`): a
 * client and a server in one process, calls handed to the server's handlers
 * with no socket and no codec. A process-wide registry maps a name to a
 * listening server; connecting makes a server session (its constructor runs
 * with this process's own credentials as the token) and one channel each
 * way, so the server's handlers can call back into the client.
 *
 * lwmsg's semantics, and where we differ:
 * - the request and reply values are handed over as they are (no copy), but
 *   fd fields carry duplicates: the receiver owns its descriptor and may
 *   close it, as over a socket;
 * - handles pass by reference: the object the server registered is what the
 *   client holds (there is no proxy), and lookups go to the owning session;
 * - a tag above the dispatch table or without a handler is UNIMPLEMENTED (C
 *   answers UNIMPLEMENTED for both in `lwmsg_direct_call_dispatch`);
 * - handlers run on a later microtask, never inside the caller's `call()`
 *   (C runs a non-blocking handler on the caller's thread, re-entrantly);
 * - nothing is encoded, so encoding checks (ranges, OVERFLOW) do not run.
 * @module
 */
import { CallError, Call, CallDirection, OutgoingCall, onCallTimeout, type CallOptions } from "../call.ts";
import type { SessionTask } from "../channel.ts";
import { ReceivedMessage, resolveOutgoing, type OutgoingMessage } from "../assoc/message.ts";
import type { Protocol } from "../protocol.ts";
import type { Session, SessionHooks } from "../session.ts";
import { LwMsgError, Status } from "../status.ts";
import { localToken, tokenToString } from "../token.ts";
import { MessageFlags, TAG_INVALID } from "../wire/packets.ts";
import { runIncoming, type Replier } from "./dispatch.ts";
import { withDupFds } from "./direct-fds.ts";
import { asLwError, replyFailure, type ChannelHost } from "./types.ts";

/** What a DIRECT server reads from its Peer. */
export interface DirectServerHost extends ChannelHost {
  readonly protocol: Protocol<any>;
  readonly sessionHooks: SessionHooks | null;
  newSession(direction: "incoming"): Session<any>;
  endSession(session: Session<any>): void;
}

/** lwmsg's process-global table of direct endpoints. */
const registry = new Map<string, DirectServer>();

/** A server's DIRECT endpoint while it listens. */
export class DirectServer {
  private readonly links = new Set<DirectLink>();

  private constructor(
    readonly name: string,
    readonly host: DirectServerHost,
  ) {}

  /** `lwmsg_direct_listen`: BUSY if another server of this process took the name. */
  static listen(name: string, host: DirectServerHost): DirectServer {
    if (registry.has(name)) throw new LwMsgError(Status.BUSY, `DIRECT endpoint ${JSON.stringify(name)} is already listened on in this process`);
    const s = new DirectServer(name, host);
    registry.set(name, s);
    return s;
  }

  /** `lwmsg_direct_shutdown`: no more connections; every connected session is run down (calls cancelled and awaited, handles reset). */
  async shutdown(): Promise<void> {
    if (registry.get(this.name) === this) registry.delete(this.name);
    await Promise.all([...this.links].map((l) => l.rundown(new LwMsgError(Status.CANCELLED, "the server stopped listening"))));
  }

  /** @internal */
  forget(link: DirectLink): void {
    this.links.delete(link);
  }

  /** @internal */
  add(link: DirectLink): void {
    this.links.add(link);
  }
}

/**
 * `lwmsg_direct_connect`: connect `clientSession` to the server listening on
 * `name` in this process (NOT_FOUND when none). The server's session
 * constructor runs with this process's credentials; a refusal fails the
 * connect with its status (SECURITY) and reaches the server's exception hook.
 */
export async function connectDirect(name: string, clientHost: ChannelHost, clientSession: Session<any>): Promise<DirectChannel> {
  const server = registry.get(name);
  if (!server) throw new LwMsgError(Status.NOT_FOUND, `no DIRECT endpoint named ${JSON.stringify(name)} in this process`);
  const host = server.host;
  const serverSession = host.newSession("incoming");
  const token = localToken(process.geteuid!(), process.getegid!(), process.pid);
  serverSession.peerToken = token;
  serverSession.connectId = clientSession.connectId;
  const hooks = host.sessionHooks;
  if (hooks?.construct) {
    try {
      const d = await hooks.construct(token, serverSession);
      if (d !== undefined) serverSession.data = d;
    } catch (e) {
      const err = asLwError(e, Status.SECURITY);
      host._warn(new LwMsgError(err.status, `refused client ${tokenToString(token)} (DIRECT ${name}): ${err.message.replace(/^[A-Z_]+: /, "")}`, { cause: e }));
      throw err;
    }
  }
  if (hooks?.destruct) serverSession.destruct = hooks.destruct;
  if (registry.get(name) !== server) {
    host.endSession(serverSession);
    throw new LwMsgError(Status.CANCELLED, "the server stopped during the connect");
  }
  const link = new DirectLink(server, clientHost, clientSession, serverSession);
  server.add(link);
  return link.toServer;
}

/** One connected client session: a channel each way. */
class DirectLink {
  readonly toServer: DirectChannel;
  readonly toClient: DirectChannel;
  private down: Promise<void> | null = null;

  constructor(
    private readonly server: DirectServer,
    readonly clientHost: ChannelHost,
    readonly clientSession: Session<any>,
    readonly serverSession: Session<any>,
  ) {
    this.toServer = new DirectChannel(this, clientHost, clientSession, server.host, serverSession);
    this.toClient = new DirectChannel(this, server.host, serverSession, clientHost, clientSession);
    clientSession.task = this.toServer;
    serverSession.task = this.toClient;
  }

  /** Cancel every call in both directions, wait for them to settle, then end the server session (lwmsg's rundown). */
  rundown(err: LwMsgError): Promise<void> {
    this.down ??= (async () => {
      this.server.forget(this);
      this.toServer.fail(err);
      this.toClient.fail(err);
      await Promise.all([this.toServer.settled(), this.toClient.settled()]);
      this.server.host.endSession(this.serverSession);
    })();
    return this.down;
  }
}

/** Calls from one side of a direct link to the other: `call()` runs the target's handler on a microtask. */
export class DirectChannel implements SessionTask, Replier {
  status = 0;
  error: LwMsgError | null = null;
  /** Calls running on the target side, with the caller's record of each. */
  private readonly running = new Map<Call, OutgoingCall>();
  private nextCookie = 0;
  private idle: (() => void) | null = null;

  constructor(
    private readonly link: DirectLink,
    private readonly callerHost: ChannelHost,
    private readonly callerSession: Session<any>,
    private readonly targetHost: ChannelHost,
    private readonly targetSession: Session<any>,
  ) {}

  call(message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    if (this.status !== 0) return Promise.reject(this.error);
    let h;
    try {
      h = resolveOutgoing(this.callerSession.protocol, message);
    } catch (e) {
      return Promise.reject(e);
    }
    const { entry, tag } = h;
    const timeout = options?.timeout;
    if (timeout !== undefined && timeout !== null && (typeof timeout !== "number" || !(timeout >= 0))) {
      return Promise.reject(new CallError(Status.INVALID_PARAMETER, `call: timeout must be a non-negative number of ms, got ${String(timeout)}`, null));
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new CallError(Status.CANCELLED, "call cancelled before it was sent", null));
    // fds: the callee gets its own duplicates (nothing was handed over if one is not open).
    const fds: number[] = [];
    let data = message.data;
    try {
      if (entry?.hasFds) data = withDupFds(entry.type, data, fds);
    } catch (e) {
      return Promise.reject(e);
    }
    const cookie = this.nextCookie;
    this.nextCookie = (cookie + 1) & 0xffff;
    const oc = new OutgoingCall(this.callerSession, cookie, message.tag);
    const promise = new Promise<ReceivedMessage>((resolve, reject) => {
      oc.resolve = resolve;
      oc.reject = reject;
    });
    const callee = new Call(CallDirection.INCOMING, this.targetSession, cookie, tag);
    callee.request = new ReceivedMessage(tag, entry?.name, data, h.flags, h.status, cookie, fds.length > 0 ? fds : null);
    this.running.set(callee, oc);
    oc.owner = this;
    oc.sent = true;
    if (signal) {
      oc.signal_ = signal;
      signal.addEventListener("abort", oc);
    }
    if (timeout !== undefined && timeout !== null) oc.timer = setTimeout(onCallTimeout, timeout, oc);
    const tr = this.callerHost._trace;
    if (tr !== null && tr.begin) this.callerHost._safe(() => tr.begin!(oc, message));
    // Never inside the caller's call(): the handler runs on a later microtask.
    queueMicrotask(() => {
      if (callee._done) return;
      if (callee._cancelled) return this.reply(callee, Status.CANCELLED, TAG_INVALID, undefined);
      runIncoming(this.targetHost, this, callee, tag, data, { tag, data }, "direct");
    });
    return promise;
  }

  /** @internal Replier: the callee's outcome goes back to the caller as a received reply. */
  reply(call: Call, status: number, tag: string | number, data: unknown, synthetic = false): void {
    if (call._done) return;
    call._done = true;
    const host = this.targetHost;
    const tr = host._trace;
    if (tr !== null && tr.end) host._safe(() => tr.end!(call, { tag, data }, status));
    let reply: ReceivedMessage;
    try {
      const r = resolveOutgoing(this.targetSession.protocol, { tag, status });
      const fds: number[] = [];
      if (r.entry?.hasFds) data = withDupFds(r.entry.type, data, fds);
      const flags = synthetic ? MessageFlags.REPLY | MessageFlags.SYNTHETIC : MessageFlags.REPLY;
      reply = new ReceivedMessage(r.tag, r.entry?.name, r.entry ? data : null, flags, status, call.cookie, fds.length > 0 ? fds : null);
    } catch (e) {
      // As over a socket, a reply that cannot be handed over becomes a synthetic one with the error's status.
      const err = asLwError(e, Status.MALFORMED);
      host._warn(new LwMsgError(err.status, `reply to ${String(call.tag)} could not be handed over, sending a synthetic reply: ${err.message}`));
      reply = new ReceivedMessage(TAG_INVALID, undefined, null, MessageFlags.REPLY | MessageFlags.SYNTHETIC, err.status, call.cookie, null);
    }
    const m = call.request;
    call.request = null;
    m?.dispose();
    const after = call._after;
    call._after = null;
    if (after !== null) for (const fn of after) host._safe(fn);
    const oc = this.running.get(call);
    this.running.delete(call);
    if (oc !== undefined) this.complete(oc, reply);
    else reply.dispose();
    if (this.running.size === 0 && this.idle !== null) this.idle();
  }

  /** @internal Replier: nothing to do (no receive loop to hold back). */
  asyncStarted(): void {}

  private complete(oc: OutgoingCall, m: ReceivedMessage): void {
    oc.detach();
    oc._done = true;
    const tr = this.callerHost._trace;
    if (tr !== null && tr.end) this.callerHost._safe(() => tr.end!(oc, m, oc._cancelled ? Status.CANCELLED : m.status));
    if (oc.settled) return m.dispose();
    oc.settled = true;
    if (oc._cancelled) oc.reject(new CallError(Status.CANCELLED, "call cancelled", m));
    else if (m.status === Status.SUCCESS) oc.resolve(m);
    else oc.reject(new CallError(m.status as Status, replyFailure(oc, m), m));
  }

  /** @internal `lwmsg_call_cancel` or a call timeout: the callee is cancelled; a timeout rejects now, a cancel when the callee settles. */
  cancelOutgoing(oc: OutgoingCall, why: Status): void {
    if (oc._done || oc.settled) return;
    oc.detach();
    if (!oc._cancelled) {
      oc._cancelled = true;
      for (const [callee, o] of this.running) if (o === oc) callee._cancel(this.targetHost._exceptionFn);
    }
    if (why !== Status.CANCELLED) {
      oc.settled = true;
      oc.reject(new CallError(why, why === Status.TIMEOUT ? "call timed out" : "call failed", null));
    }
  }

  /** The link went down: calls running on the target side are cancelled (their callers hear CANCELLED when they settle). */
  fail(err: LwMsgError): void {
    if (this.status !== 0) return;
    this.status = err.status;
    this.error = err;
    for (const [callee, oc] of this.running) {
      oc._cancelled = true;
      callee._cancel(this.targetHost._exceptionFn);
    }
  }

  /** Resolves once no call runs on the target side. */
  settled(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise<void>((r) => (this.idle = r));
  }

  /** The other side's identity (this process's credentials) and session cookie. */
  get peer(): { token: Session<any>["peerToken"]; acceptId: Uint8Array } {
    return { token: this.targetSession === this.link.serverSession ? this.link.serverSession.peerToken : null, acceptId: this.link.serverSession.acceptId };
  }

  /** `lwmsg_direct_disconnect` (from the client side): run the link down. */
  disconnect(): Promise<void> {
    return this.link.rundown(new LwMsgError(Status.CANCELLED, "disconnected"));
  }
}
