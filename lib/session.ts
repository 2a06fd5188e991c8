/**
 * Sessions, handle tables and security-token helpers (reference §5, §6).
 *
 * A {@link Session} is the shared state between two peers: the peer's
 * security token, the session id (connect cookie + accept cookie), user data
 * from the session constructor, and the **handle table**. It implements
 * {@link HandleCodec}, so the connection encodes and decodes `Lw.Handle`
 * fields through it with lwmsg's rules (§6.3).
 *
 * ### Reference counts in JS (a decision; lwmsg's C rules assume manual frees)
 * - `registerHandle` creates a LOCAL handle with one reference: the table's.
 * - **Sending a handle never releases a reference and receiving one never
 *   adds one.** In C, freeing a message released one reference and each
 *   decoded occurrence added one; JS has no message free, so those two
 *   cancel out and we do neither. A server therefore does *not* need
 *   lwmsg's `retain_handle` before returning a new handle in a reply (a
 *   ported `retain` is harmless: the extra reference only delays the cleanup
 *   to the end of the session).
 * - The first time the peer's id arrives a REMOTE proxy is created with one
 *   reference; later arrivals return the same object.
 * - `unregisterHandle` marks the handle invalid and drops one reference;
 *   `releaseHandle` drops one; at zero the handle leaves the table, becomes
 *   invalid and its cleanup runs once.
 * - When the session ends (its connection is gone and its calls are done, or
 *   the client disconnects) every remaining handle is invalidated and its
 *   cleanup runs, then the session destructor. A client whose reconnect
 *   reaches a different server instance (new accept cookie) while holding
 *   handles resets the session the same way; stale handles then give
 *   INVALID_HANDLE (test `handle_invalidation`).
 * @module
 */
import { Handle, HandleLocation } from "./handle.ts";
import type { ByteReader, ByteWriter, HandleCodec } from "./codec/io.ts";
import { LwMsgError, Status } from "./status.ts";
import type { OutgoingMessage, ReceivedMessage } from "./assoc/message.ts";
import { localToken, localTokenGetEid, localTokenGetPid, tokenCanAccess, tokenHash, tokenToString, tokenType, tokensEqual, type LocalToken, type SecurityToken } from "./token.ts";
import type { MessageIn, MessageOut, Protocol } from "./protocol.ts";
import type { CallOptions, SessionTask, SessionTransport } from "./channel.ts";

export { localToken, localTokenGetEid, localTokenGetPid, tokenCanAccess, tokenHash, tokenToString, tokenType, tokensEqual };
export type { LocalToken, SecurityToken, SessionTask, SessionTransport };

/** Session constructor/destructor (`lwmsg_peer_set_listen_session_functions`); see lib/security.ts for authorising ones. */
export interface SessionHooks {
  /** Runs when a client connects, before ACCEPT is sent, with the client's token. Throwing rejects the client. The return value becomes `session.data`. */
  construct?(token: SecurityToken, session: Session<any>): unknown | Promise<unknown>;
  /** Runs when the session ends (after its handle cleanups). */
  destruct?(session: Session<any>): void;
}

// ------------------------------------------------------------------ session

/**
 * A reply as `session.call` resolves it: the received message, with `name`
 * and `data` typed by the protocol. `using reply = await session.call(...)`
 * closes fds the program did not take.
 */
export type ReplyMessage<P> = Omit<ReceivedMessage, "tag" | "name" | "data"> & MessageIn<P>;

/** A handle's last reference went, or its session ended: it becomes invalid, and its cleanup runs once and lets go of the object. */
function retire(h: Handle): void {
  h.valid = false;
  const fn = h.cleanup;
  const data = h.data;
  h.cleanup = undefined;
  h.data = undefined;
  if (fn) fn(data);
}

function hex(b: Uint8Array | null): string {
  let s = "";
  for (let i = 0; i < 8; i++) s += ((b?.[i] ?? 0) as number).toString(16).padStart(2, "0");
  return s;
}

/**
 * `LWMsgSession`: what two peers share. Get one from `client.connect()`
 * (outgoing) or from `call.session` / the session hooks (incoming).
 */
export class Session<P extends Protocol<any> = Protocol<any>> implements HandleCodec {
  /** The peer's identity (`lwmsg_session_get_peer_security_token`); null until established. */
  peerToken: SecurityToken | null = null;
  /** `lwmsg_session_get_data`: what the session constructor returned (incoming sessions). */
  data: unknown = undefined;
  /** Session id half sent by the connecting side (8 bytes). */
  connectId: Uint8Array;
  /** Session id half sent by the accepting side (8 bytes; all zero until known). */
  acceptId: Uint8Array;
  /** @internal the association currently carrying this session. */
  task: SessionTask | null = null;
  /** @internal destructor to run when the session ends or is reset. */
  destruct: ((session: Session<any>) => void) | null = null;
  /** @internal set once the session has ended. */
  ended = false;
  private local = new Map<number, Handle>();
  private remote = new Map<number, Handle>();
  /** Proxies created by the decode in progress (see beginDecode / decodeFailed). */
  private made: Handle[] = [];
  /**
   * Most proxies for the peer's handles this session keeps (default 65536).
   * Every new id the peer sends creates one, so without a bound a peer could
   * grow the table forever; beyond it the decode fails with RESOURCE_LIMIT
   * and the connection ends, as for the other receive limits (maxFds,
   * maxMessageSize): the peer broke a bound, not just one message.
   */
  maxRemoteHandles = 65536;
  private nextHid = 0;

  constructor(
    /** The protocol the session speaks. */
    readonly protocol: P,
    /** `"outgoing"`: we connected (client); `"incoming"`: we accepted (server). */
    readonly direction: "incoming" | "outgoing",
    private readonly transport: SessionTransport,
  ) {
    this.connectId = direction === "outgoing" ? crypto.getRandomValues(new Uint8Array(8)) : new Uint8Array(8);
    this.acceptId = direction === "incoming" ? crypto.getRandomValues(new Uint8Array(8)) : new Uint8Array(8);
  }

  /**
   * `lwmsg_session_acquire_call` + `lwmsg_call_dispatch`: call the session's
   * peer and wait for the reply. Resolves to the reply for SUCCESS; rejects
   * with {@link CallError} (an `LwMsgError`, the reply attached) for any other
   * status. An outgoing session (re)connects first when it has no live
   * connection. Works from a server handler too (`call.session.call(...)`
   * is a callback into the client).
   */
  call(message: MessageOut<P>, options?: CallOptions): Promise<ReplyMessage<P>> {
    const t = this.task;
    if (t !== null && t.status === 0) return t.call(message as OutgoingMessage, options) as Promise<any>;
    return this.transport.call(this, message as OutgoingMessage, options) as Promise<any>;
  }

  /** `lwmsg_session_id_to_string`: `"16hex-16hex"` (connect id, accept id). */
  get id(): string {
    return `${hex(this.connectId)}-${hex(this.acceptId)}`;
  }

  /** `lwmsg_session_get_handle_count`. */
  get handleCount(): number {
    return this.local.size + this.remote.size;
  }

  // -------------------------------------------------------------- handle API (§6.2)

  /**
   * `lwmsg_session_register_handle`: a new LOCAL handle of type `typeName`
   * (the name given to `Lw.Handle`) for `data`, with one reference.
   * `cleanup(data)` runs once, when the last reference goes or the session
   * ends. `data` null/undefined → INVALID_PARAMETER (as lwmsg).
   */
  registerHandle<T>(typeName: string, data: T, cleanup?: (data: T) => void): Handle<T> {
    if (typeof typeName !== "string" || typeName === "") throw new LwMsgError(Status.INVALID_PARAMETER, "registerHandle: the handle type name must be a non-empty string");
    if (data === null || data === undefined) throw new LwMsgError(Status.INVALID_PARAMETER, "registerHandle: data must not be null");
    if (cleanup !== undefined && typeof cleanup !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "registerHandle: cleanup must be a function");
    if (this.ended) throw new LwMsgError(Status.INVALID_STATE, "registerHandle: the session has ended");
    if (this.local.size >= 0xffffffff) throw new LwMsgError(Status.RESOURCE_LIMIT, "registerHandle: handle table full");
    let id = this.nextHid;
    while (this.local.has(id)) id = (id + 1) >>> 0;
    this.nextHid = (id + 1) >>> 0;
    const h = new Handle<T>(typeName, HandleLocation.LOCAL, id, data, cleanup as ((d: T | undefined) => void) | undefined);
    this.local.set(id, h as unknown as Handle);
    return h;
  }

  /** `lwmsg_session_retain_handle`: one more reference. Allowed on invalid handles; INVALID_HANDLE for another session's live handle. */
  retainHandle(handle: Handle): void {
    this.checkRef(handle, "retainHandle");
    if (handle.refs > 0) handle.refs++;
  }

  /** `lwmsg_session_release_handle`: one reference less; at zero the handle leaves the table, is invalid and its cleanup runs. INVALID_HANDLE for another session's live handle. */
  releaseHandle(handle: Handle): void {
    this.checkRef(handle, "releaseHandle");
    if (handle.refs <= 0) return;
    if (--handle.refs === 0) this.freeHandle(handle);
  }

  /** `lwmsg_session_unregister_handle`: invalidate and release once. INVALID_HANDLE if already invalid or another session's. */
  unregisterHandle(handle: Handle): void {
    this.checkRef(handle, "unregisterHandle");
    if (!handle.valid) throw new LwMsgError(Status.INVALID_HANDLE, `unregisterHandle: ${handle} is already invalid`);
    handle.valid = false;
    this.releaseHandle(handle);
  }

  /** `lwmsg_session_get_handle_data` (local handles carry the object; proxies have none). INVALID_HANDLE when invalid or not this session's. */
  getHandleData<T = unknown>(handle: Handle<T>): T {
    this.check(handle, "getHandleData");
    return handle.data as T;
  }

  /** `lwmsg_session_get_handle_location`: `HandleLocation.LOCAL` or `REMOTE`. INVALID_HANDLE when invalid or not this session's. */
  getHandleLocation(handle: Handle): 1 | 2 {
    this.check(handle, "getHandleLocation");
    return handle.location;
  }

  /** True if `handle` is a valid handle of this session. */
  owns(handle: unknown): boolean {
    if (!(handle instanceof Handle) || !handle.valid) return false;
    return (handle.location === HandleLocation.LOCAL ? this.local : this.remote).get(handle.id) === handle;
  }

  /** INVALID_HANDLE unless `handle` is a valid handle of this session. */
  private check(handle: unknown, op?: string): asserts handle is Handle {
    const what = op ? `${op}: ` : "";
    if (!(handle instanceof Handle)) throw new LwMsgError(Status.INVALID_HANDLE, `${what}not a Handle`);
    if (!this.owns(handle)) throw new LwMsgError(Status.INVALID_HANDLE, `${what}${handle} is ${handle.valid ? "not a handle of this session" : "invalid"}`);
  }

  /**
   * For the reference-count calls, which stay allowed on invalid handles
   * (§6.2): INVALID_PARAMETER for a non-Handle, INVALID_HANDLE for a live
   * handle of another session (its cleanup must not run from here).
   */
  private checkRef(handle: unknown, op: string): asserts handle is Handle {
    if (!(handle instanceof Handle)) throw new LwMsgError(Status.INVALID_PARAMETER, `${op}: not a Handle`);
    if (handle.valid && !this.owns(handle)) throw new LwMsgError(Status.INVALID_HANDLE, `${op}: ${handle} is not a handle of this session`);
  }

  private freeHandle(h: Handle): void {
    const table = h.location === HandleLocation.LOCAL ? this.local : this.remote;
    if (table.get(h.id) === h) table.delete(h.id);
    retire(h);
  }

  /**
   * @internal Invalidate every handle and run the cleanups, then the
   * destructor (session end, or reset after reconnecting to a new server
   * instance). Errors from callbacks go to `onError`; all still run.
   */
  resetHandles(onError: (e: unknown) => void): void {
    const all = [...this.local.values(), ...this.remote.values()];
    this.local.clear();
    this.remote.clear();
    for (const h of all) {
      try {
        retire(h);
      } catch (e) {
        onError(e);
      }
    }
    const d = this.destruct;
    this.destruct = null;
    try {
      d?.(this);
    } catch (e) {
      onError(e);
    }
    this.data = undefined;
  }

  // -------------------------------------------------------------- HandleCodec (§6.3)

  /** @internal Encode a handle: locality byte as the sender sees it, then the u32 id. */
  writeHandle(w: ByteWriter, handle: unknown, typeName: string, flags: number, notNull: boolean): void {
    if (handle === null || handle === undefined) {
      if (notNull) throw new LwMsgError(Status.INVALID_HANDLE, "expected a non-null handle");
      w.ensure(1);
      w.buf[w.pos++] = 0;
      return;
    }
    this.check(handle);
    const h = handle;
    if (h.typeName !== typeName) throw new LwMsgError(Status.INVALID_HANDLE, `expected a handle of type '${typeName}', got '${h.typeName}'`);
    if ((flags & 1) !== 0 && h.location !== HandleLocation.REMOTE) throw new LwMsgError(Status.INVALID_HANDLE, `${h}: expected a handle which is local for the receiver`);
    if ((flags & 2) !== 0 && h.location !== HandleLocation.LOCAL) throw new LwMsgError(Status.INVALID_HANDLE, `${h}: expected a handle which is local for the sender`);
    w.ensure(5);
    w.buf[w.pos] = h.location;
    w.view.setUint32(w.pos + 1, h.id);
    w.pos += 5;
  }

  /** @internal Decode a handle: invert the locality, check, resolve or create a proxy. */
  readHandle(r: ByteReader, typeName: string, flags: number, notNull: boolean): unknown {
    if (r.pos >= r.end) throw new LwMsgError(Status.EOF, "handle: end of data");
    const b = r.buf[r.pos++]!;
    if (b === 0) {
      if (notNull) throw new LwMsgError(Status.INVALID_HANDLE, "expected a non-null handle");
      return null;
    }
    if (b !== HandleLocation.LOCAL && b !== HandleLocation.REMOTE) throw new LwMsgError(Status.MALFORMED, `handle locality byte ${b} is not 0, 1 or 2`);
    if (r.pos + 4 > r.end) throw new LwMsgError(Status.EOF, "handle id: end of data");
    const id = r.view.getUint32(r.pos);
    r.pos += 4;
    // The sender's LOCAL is our REMOTE and vice versa.
    const loc = b === HandleLocation.LOCAL ? HandleLocation.REMOTE : HandleLocation.LOCAL;
    if ((flags & 1) !== 0 && loc !== HandleLocation.LOCAL) throw new LwMsgError(Status.INVALID_HANDLE, `handle ${id}: expected a handle which is local for the receiver`);
    if ((flags & 2) !== 0 && loc !== HandleLocation.REMOTE) throw new LwMsgError(Status.INVALID_HANDLE, `handle ${id}: expected a handle which is local for the sender`);
    const table = loc === HandleLocation.LOCAL ? this.local : this.remote;
    const h = table.get(id);
    if (h !== undefined) {
      if (!h.valid || h.typeName !== typeName) throw new LwMsgError(Status.INVALID_HANDLE, `handle ${id}: ${h.valid ? `type '${h.typeName}' where '${typeName}' was expected` : "invalid"}`);
      return h;
    }
    if (loc === HandleLocation.LOCAL) throw new LwMsgError(Status.INVALID_HANDLE, `invalid handle id ${id}`);
    if (this.ended) throw new LwMsgError(Status.INVALID_HANDLE, `handle ${id}: the session has ended`);
    if (this.remote.size >= this.maxRemoteHandles) throw new LwMsgError(Status.RESOURCE_LIMIT, `handle ${id}: the session already holds ${this.remote.size} of the peer's handles (maxRemoteHandles)`);
    const p = new Handle(typeName, HandleLocation.REMOTE, id);
    this.remote.set(id, p);
    this.made.push(p);
    return p;
  }

  /** @internal HandleCodec: a decode that may read handles starts. */
  beginDecode(): void {
    this.made.length = 0;
  }

  /** @internal HandleCodec: that decode failed; the proxies it created are dropped, so a peer cannot fill the table with messages that never decode. */
  decodeFailed(): void {
    for (const p of this.made) this.freeHandle(p);
    this.made.length = 0;
  }

  toString(): string {
    return `<session ${this.direction} ${this.id}>`;
  }
}
