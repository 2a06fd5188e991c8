/**
 * `lwmsg_connection_*` / `lwmsg_assoc_*`: an association over a UNIX stream
 * socket, wire-compatible with lwmsg (reference §3–§4).
 *
 * The hot path, and why it is fast:
 *  - send() encodes straight into one reusable outgoing buffer (15-byte
 *    header, then the payload the generated encoder appends). Messages queued
 *    in the same turn leave together in one `sendmsg`, their fds in one
 *    SCM_RIGHTS control message. A large message is fragmented in place
 *    (headers inserted by one backwards memmove), never re-encoded.
 *  - recv() reads as much as the kernel has (one `recvmsg` into a reusable
 *    buffer), decodes every complete message into a queue and serves later
 *    recv() calls from it without a syscall.
 *  - Readiness comes from the shared {@link Poller}; right after a request a
 *    short bounded `ppoll` on the socket catches a fast reply without the
 *    poller's thread hop (adaptive, see {@link ConnectionOptions.replyPollUs}).
 * @module
 */
import { ptr, type Pointer } from "bun:ffi";
import { native } from "./native/ffi.ts";
import { Poller, READABLE, WRITABLE, type Watch } from "./native/poller.ts";
import { adoptFd, closeFd, connectPath, connectResult, dupFd, encodeSocketPath, peerCredentials, selfCredentials, socketPair } from "./native/socket.ts";
import { Errno, LwMsgError, Status, mapSocketErrno } from "./status.ts";
import { ByteReader, ByteWriter, CodecContext, type HandleCodec } from "./codec/io.ts";
import type { Protocol, ProtocolEntry } from "./protocol.ts";
// Circular but safe: each side uses the other only inside functions.
import { Listener } from "./listener.ts";
import {
  BASE_HEADER_SIZE,
  DEFAULT_PACKET_SIZE,
  GREETING_SIZE,
  MAX_FDS_PER_MESSAGE,
  MAX_FDS_PER_SENDMSG,
  MESSAGE_HEADER_SIZE,
  MIN_PACKET_SIZE,
  MessageFlags,
  PacketFlags,
  PacketType,
  SHUTDOWN_SIZE,
  TAG_INVALID,
  decodeGreeting,
  encodeGreeting,
  encodeShutdown,
  shutdownError,
  writeMessageHeader,
} from "./wire.ts";

/** `LWMsgConnectionMode`. */
export const ConnectionMode = { NONE: 0, LOCAL: 1, PAIR: 3 } as const;
export type ConnectionMode = (typeof ConnectionMode)[keyof typeof ConnectionMode];

/** `LWMsgAssocState` (public states). */
export const AssocState = {
  NONE: 0,
  NOT_ESTABLISHED: 1,
  IDLE: 2,
  BLOCKED_SEND: 3,
  BLOCKED_RECV: 4,
  BLOCKED_SEND_RECV: 5,
  CLOSED: 6,
  BUSY: 7,
  ERROR: 8,
} as const;
export type AssocState = (typeof AssocState)[keyof typeof AssocState];

/** The "local" security token (§5): ids as the kernel reported them (PAIR: this process's own). */
export interface LocalToken {
  readonly type: "local";
  readonly euid: number;
  readonly egid: number;
  /** -1 where the platform cannot tell. */
  readonly pid: number;
}

/** `lwmsg_security_token_equal` for local tokens, as intended (§10.1: the C one compares a token with itself). */
export function tokensEqual(a: LocalToken | null, b: LocalToken | null): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return a.type === b.type && a.euid === b.euid && a.egid === b.egid;
}

export interface ConnectionOptions {
  /** Preferred maximum packet size; the effective one is the minimum of both peers' (default 8192, ≥ 20). */
  packetSize?: number;
  /** Largest message this side reassembles (default 16 MiB); a bigger incoming message is OVERFLOW and ends the connection. Also caps what send() encodes. */
  maxMessageSize?: number;
  /** Per-call timeouts in ms (default: none). `message` bounds each send/recv wait, `establish` the connect/accept handshake and close. */
  timeouts?: { message?: number | null; establish?: number | null };
  /**
   * Most received fds held for messages not yet complete (default 1024): a
   * peer that sends more fds ahead of their messages (or one message with
   * more fd fields) fails the connection with MALFORMED, and they are closed.
   */
  maxFds?: number;
  /** Bytes of queued outgoing data above which send() waits for the kernel to take some (default 1 MiB). */
  sendQueueLimit?: number;
  /**
   * Microseconds to wait on the socket right after this side sent something,
   * before parking on the poller (saves a thread hop when the reply is fast).
   * `"adaptive"` (default): a 2 ms window; after a miss the next 16 requests
   * park directly, doubling up to 4096 while misses continue. A number: that
   * window, always. `0` disables it (a server with many idle clients may want
   * this: a miss blocks the JS thread for the window).
   */
  replyPollUs?: number | "adaptive";
  /** Handle table for `Lw.Handle` fields (the session layer supplies it). */
  handles?: HandleCodec | null;
}

/** A message to send. `tag` is a protocol name or number; `-1` sends no payload. */
export interface OutgoingMessage {
  tag: string | number;
  data?: unknown;
  flags?: number;
  status?: number;
  cookie?: number;
}

const dispose: typeof Symbol.dispose = (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for("Symbol.dispose") as typeof Symbol.dispose);

/**
 * A received message. If it carried fds it owns them until the program takes
 * them ({@link takeFd}/{@link takeFds}); `using m = await c.recv()` closes the
 * ones not taken.
 */
export class ReceivedMessage implements Disposable {
  constructor(
    readonly tag: number,
    readonly name: string | undefined,
    readonly data: any,
    readonly flags: number,
    readonly status: number,
    readonly cookie: number,
    /** Fds received with this message, in wire order (null when none). */
    readonly fds: number[] | null,
  ) {}
  private taken: Set<number> | null = null;
  /** True for a message the connection made up because the payload failed to decode (§3.4). */
  get synthetic(): boolean {
    return (this.flags & MessageFlags.SYNTHETIC) !== 0;
  }
  /** Claim one fd of this message: disposal will not close it. */
  takeFd(fd: number): number {
    if (!this.fds || !this.fds.includes(fd)) throw new LwMsgError(Status.INVALID_PARAMETER, `fd ${fd} did not arrive with this message`);
    (this.taken ??= new Set()).add(fd);
    return fd;
  }
  /** Claim every fd of this message. */
  takeFds(): number[] {
    if (!this.fds) return [];
    for (const fd of this.fds) (this.taken ??= new Set()).add(fd);
    return this.fds.slice();
  }
  /** Close the fds not taken. Idempotent. */
  [dispose](): void {
    const fds = this.fds;
    if (!fds) return;
    for (const fd of fds) if (!this.taken?.has(fd)) closeFd(fd);
    (this as { fds: number[] | null }).fds = null;
  }
  /** Same as `[Symbol.dispose]()`. */
  dispose(): void {
    this[dispose]();
  }
}

type Waiter<T> = { resolve: (v: T) => void; reject: (e: unknown) => void; timer: ReturnType<typeof setTimeout> | null };

const enum Phase {
  START, // NOT_ESTABLISHED
  CONNECTING,
  HANDSHAKE,
  ESTABLISHED,
  CLOSED,
  ERROR,
}

/** A queued receive result as the promise recv() returns. */
function settled(m: ReceivedMessage | LwMsgError): Promise<ReceivedMessage> {
  return m instanceof LwMsgError ? Promise.reject(m) : Promise.resolve(m);
}

/** Hand a receive result to a parked recv(). */
function answer(w: Waiter<ReceivedMessage>, m: ReceivedMessage | LwMsgError): void {
  if (m instanceof LwMsgError) w.reject(m);
  else w.resolve(m);
}

/** One shared settled promise: a queued send allocates nothing for its result. */
const RESOLVED: Promise<void> = Promise.resolve();
const EMPTY = new Uint8Array(new ArrayBuffer(0));
const IN_BUFFER_SIZE = 256 * 1024;
/**
 * Reply-poll window. Measured on the project VM (KVM, haltpoll idle): a timed
 * ppoll shorter than ~2 ms costs ~14 µs extra even when the event comes in
 * 8 µs, while 2 ms+ windows match an untimed wait. A hit returns as soon as
 * the reply is readable; only a miss costs the window, and misses back off.
 */
const REPLY_POLL_DEFAULT_US = 2000;
const REPLY_POLL_MIN_BACKOFF = 16;
const REPLY_POLL_MAX_BACKOFF = 4096;
const OUT_BUFFER_SIZE = 64 * 1024;
/** Flush without waiting for the end of the turn once this much is queued. */
const FLUSH_THRESHOLD = 64 * 1024;
/** Received fds waiting for their message, by default; more is a protocol violation. */
const DEFAULT_MAX_FDS = 1024;
const MSG_CTRUNC = 0x8;

function checkTimeout(name: string, v: number | null | undefined): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `${name} timeout must be a non-negative number of ms or null, got ${v}`);
  return v;
}

function checkPacketSize(n: unknown): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < MIN_PACKET_SIZE || n > 0x7fffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `packet size must be an integer ≥ ${MIN_PACKET_SIZE}, got ${n}`);
  return n;
}

/** Settings of a {@link ConnectionOptions}, validated and with defaults. */
export interface ConnectionSettings {
  packetSize: number;
  maxMessageSize: number;
  maxFds: number;
  messageTimeout: number | null;
  establishTimeout: number | null;
  sendQueueLimit: number;
  replyPollUs: number | "adaptive";
}

/** A protocol object from `Lw.Protocol(...)`, or INVALID_PARAMETER. */
export function checkProtocol(protocol: unknown): void {
  if (!protocol || typeof (protocol as { byTag?: unknown }).byTag !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "a protocol from Lw.Protocol(...) is required");
}

/** Validate connection options (INVALID_PARAMETER naming the bad one) without building a connection. */
export function checkConnectionOptions(options: ConnectionOptions): ConnectionSettings {
  if (options === null || typeof options !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "options must be an object");
  const maxMessageSize = options.maxMessageSize ?? 16 * 1024 * 1024;
  if (!Number.isInteger(maxMessageSize) || maxMessageSize < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `maxMessageSize must be a positive integer, got ${maxMessageSize}`);
  const sendQueueLimit = options.sendQueueLimit ?? 1024 * 1024;
  if (!Number.isInteger(sendQueueLimit) || sendQueueLimit < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `sendQueueLimit must be a positive integer, got ${sendQueueLimit}`);
  const maxFds = options.maxFds ?? DEFAULT_MAX_FDS;
  if (!Number.isInteger(maxFds) || maxFds < 1 || maxFds > 1 << 20) throw new LwMsgError(Status.INVALID_PARAMETER, `maxFds must be an integer in 1..1048576, got ${maxFds}`);
  const rp = options.replyPollUs ?? "adaptive";
  if (rp !== "adaptive" && (typeof rp !== "number" || !(rp >= 0) || rp > 1_000_000)) throw new LwMsgError(Status.INVALID_PARAMETER, `replyPollUs must be "adaptive" or 0..1000000, got ${rp}`);
  return {
    packetSize: checkPacketSize(options.packetSize ?? DEFAULT_PACKET_SIZE),
    maxMessageSize,
    maxFds,
    messageTimeout: checkTimeout("message", options.timeouts?.message),
    establishTimeout: checkTimeout("establish", options.timeouts?.establish),
    sendQueueLimit,
    replyPollUs: rp,
  };
}

function randomCookie(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(8));
}

/**
 * An lwmsg association over a UNIX stream socket (`LWMsgAssoc` created by
 * `lwmsg_connection_new`).
 *
 * ```ts
 * const c = new Connection(protocol);
 * c.setEndpoint(ConnectionMode.LOCAL, "/run/app.sock");
 * await c.connect();
 * await c.send({ tag: "OPEN_REQ", data: { path: "/etc/motd", mode: 1 } });
 * using reply = await c.recv();
 * ```
 */
export class Connection<P extends Protocol<any> = Protocol<any>> {
  readonly protocol: P;
  private phase = Phase.START;
  private mode: ConnectionMode = ConnectionMode.NONE;
  private fd = -1;
  private endpoint: string | null = null;
  private fdGiven = false;
  private ownPacketSize: number;
  /** Negotiated packet size (own preference until established). */
  packetSize: number;
  readonly maxMessageSize: number;
  /** Most received fds held ahead of their messages (see ConnectionOptions.maxFds). */
  readonly maxFds: number;
  private messageTimeout: number | null;
  private establishTimeout: number | null;
  private readonly sendQueueLimit: number;
  private token: LocalToken | null = null;
  /** This side's 8-byte session cookie sent in CONNECT (`connect_id`). */
  connectCookie: Uint8Array = randomCookie();
  /** Cookie sent in ACCEPT (`accept_id`); all zero for a bare association (§10.11). */
  acceptCookie: Uint8Array = new Uint8Array(8);
  /** The cookie the peer sent in its greeting, once established. */
  peerCookie: Uint8Array | null = null;
  private watch: Watch | null = null;
  private poller: Poller | null = null;
  private refd = false;
  private fatal: LwMsgError | null = null;

  // outgoing
  private out: ByteWriter;
  private outPtr: number = 0;
  private outBufRef: Uint8Array | null = null;
  private sendPos = 0;
  private fdQ: number[] = []; // dup'd fds waiting to go
  private fdQOff: number[] = []; // byte offset in `out` of the message each belongs to
  private fdQHead = 0;
  private fdSend = new Int32Array(new ArrayBuffer(MAX_FDS_PER_SENDMSG * 4));
  private fdSendPtr: Pointer;
  private flushScheduled = false;
  private drainWaiters: Waiter<void>[] = [];
  private readonly encodeCtx: CodecContext;

  // incoming
  // Allocated when the socket is first attached: connections that never open cost no input buffer.
  private inBuf: Uint8Array = EMPTY;
  private inView: DataView = new DataView(EMPTY.buffer);
  private inPtr = 0;
  private rpos = 0;
  private wpos = 0;
  private fdIn: number[] = [];
  private fdInHead = 0;
  private recvFds = new Int32Array(new ArrayBuffer(256 * 4));
  private recvFdsPtr: Pointer;
  private recvOut = new Int32Array(new ArrayBuffer(8));
  private recvOutPtr: Pointer;
  private queue: (ReceivedMessage | LwMsgError)[] = [];
  private queueHead = 0;
  private reader = new ByteReader(new Uint8Array(0));
  private readonly decodeCtx: CodecContext;
  private reassembly: Uint8Array | null = null;
  private frag: { flags: number; status: number; cookie: number; tag: number; buf: Uint8Array; len: number } | null = null;
  private waiter: Waiter<ReceivedMessage> | null = null;
  /** The parked recv(); setting it keeps {@link Connection.parkedRecvs} in step. */
  private get recvWaiter(): Waiter<ReceivedMessage> | null {
    return this.waiter;
  }
  private set recvWaiter(w: Waiter<ReceivedMessage> | null) {
    if ((w === null) !== (this.waiter === null)) Connection.parkedRecvs += w === null ? -1 : 1;
    this.waiter = w;
  }
  /** recv() calls parked on the poller, process-wide. */
  private static parkedRecvs = 0;
  /** @internal reply polls made (for tests). */
  static replyPolls = 0;
  private replyPollUs: number;
  private readonly replyPollAdaptive: boolean;
  private replyPollSkip = 0;
  private replyPollBackoff = REPLY_POLL_MIN_BACKOFF;
  private justSent = false;
  private eofSeen = false;

  constructor(protocol: P, options: ConnectionOptions = {}) {
    checkProtocol(protocol);
    const o = checkConnectionOptions(options);
    this.protocol = protocol;
    this.ownPacketSize = this.packetSize = o.packetSize;
    this.maxMessageSize = o.maxMessageSize;
    this.maxFds = o.maxFds;
    this.messageTimeout = o.messageTimeout;
    this.establishTimeout = o.establishTimeout;
    this.sendQueueLimit = o.sendQueueLimit;
    this.replyPollAdaptive = o.replyPollUs === "adaptive";
    this.replyPollUs = o.replyPollUs === "adaptive" ? REPLY_POLL_DEFAULT_US : o.replyPollUs;
    // The writer's cap is set per message in enqueue(): the queue itself is
    // bounded by callers awaiting send(), not by refusing messages.
    this.out = new ByteWriter(OUT_BUFFER_SIZE);
    this.encodeCtx = new CodecContext(options.handles ?? null);
    this.decodeCtx = new CodecContext(options.handles ?? null);
    this.fdSendPtr = ptr(this.fdSend);
    this.recvFdsPtr = ptr(this.recvFds);
    this.recvOutPtr = ptr(this.recvOut);
  }

  // ---------------------------------------------------------------- config

  /** `lwmsg_connection_set_packet_size`. INVALID_STATE once established. */
  setPacketSize(size: number): void {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, "setPacketSize: the packet size is fixed once the connection is established");
    this.ownPacketSize = this.packetSize = checkPacketSize(size);
  }

  /** `lwmsg_connection_set_fd`: use an already-connected socket. The connection takes ownership of `fd`. */
  setFd(mode: ConnectionMode, fd: number): void {
    if (mode !== ConnectionMode.LOCAL && mode !== ConnectionMode.PAIR) throw new LwMsgError(Status.UNSUPPORTED, `setFd: unsupported connection mode ${mode}`);
    if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `setFd: fd must be a non-negative integer, got ${fd}`);
    if (this.phase !== Phase.START || this.fd >= 0 || this.endpoint !== null) throw new LwMsgError(Status.INVALID_STATE, "setFd: an fd or endpoint is already set");
    adoptFd(fd);
    this.fd = fd;
    this.mode = mode;
    this.fdGiven = true;
  }

  /** `lwmsg_connection_set_endpoint`: the socket path to connect to (a leading `\0` makes a Linux abstract name). */
  setEndpoint(mode: ConnectionMode, path: string): void {
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `setEndpoint: only LOCAL endpoints exist, got mode ${mode}`);
    encodeSocketPath(path); // validates
    if (this.phase !== Phase.START || this.fd >= 0 || this.endpoint !== null) throw new LwMsgError(Status.INVALID_STATE, "setEndpoint: an fd or endpoint is already set");
    this.endpoint = path;
    this.mode = mode;
  }

  /** `lwmsg_assoc_set_timeout`: `"message"` or `"establish"`, in ms; null = none. `"idle"` is UNSUPPORTED on a bare connection. */
  setTimeout(kind: "message" | "establish" | "idle", ms: number | null): void {
    if (kind === "message") this.messageTimeout = checkTimeout(kind, ms);
    else if (kind === "establish") this.establishTimeout = checkTimeout(kind, ms);
    else if (kind === "idle") throw new LwMsgError(Status.UNSUPPORTED, "setTimeout: connections have no idle timeout (peers do)");
    else throw new LwMsgError(Status.INVALID_PARAMETER, `setTimeout: unknown timeout kind ${String(kind)}`);
  }

  /** Swap in the session's handle table (the peer layer does this). */
  setHandles(handles: HandleCodec | null): void {
    this.encodeCtx.handles = handles;
    this.decodeCtx.handles = handles;
  }

  // ---------------------------------------------------------------- state

  /** True while the association can carry messages (handshake done, not closed or failed). */
  get established(): boolean {
    return this.phase === Phase.ESTABLISHED;
  }

  /** `lwmsg_assoc_get_state` (public state mapping of §4). */
  get state(): AssocState {
    switch (this.phase) {
      case Phase.START:
        return AssocState.NOT_ESTABLISHED;
      case Phase.CONNECTING:
        return AssocState.BLOCKED_SEND;
      case Phase.HANDSHAKE:
        return AssocState.BLOCKED_SEND_RECV;
      case Phase.CLOSED:
        return AssocState.CLOSED;
      case Phase.ERROR:
        return AssocState.ERROR;
      case Phase.ESTABLISHED: {
        const s = this.out.pos > this.sendPos;
        const r = this.wpos > this.rpos || this.frag !== null;
        return s && r ? AssocState.BLOCKED_SEND_RECV : s ? AssocState.BLOCKED_SEND : r ? AssocState.BLOCKED_RECV : AssocState.IDLE;
      }
    }
  }

  /** The peer's identity (§5), once established; null before. */
  get peerToken(): LocalToken | null {
    return this.token;
  }

  /** The socket fd (-1 when none). */
  get socketFd(): number {
    return this.fd;
  }

  get connectionMode(): ConnectionMode {
    return this.mode;
  }

  // ---------------------------------------------------------------- establish

  /**
   * `lwmsg_assoc_connect`: open the socket if an endpoint is set, send
   * CONNECT, receive ACCEPT. `authorize` runs with the server's token (from
   * the kernel) before the connection counts as established; throwing closes
   * it — e.g. `allowUids([0])` so a client only talks to a root daemon.
   */
  async connect(authorize?: (token: LocalToken) => void | Promise<void>): Promise<void> {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, `connect: connection is ${this.describePhase()}`);
    if (this.fd < 0 && this.endpoint === null) throw new LwMsgError(Status.INVALID_STATE, "connect: no fd or endpoint set");
    const deadline = this.establishTimeout === null ? null : Date.now() + this.establishTimeout;
    this.phase = Phase.CONNECTING;
    try {
      if (this.fd < 0) await this.openSocket(this.endpoint!, deadline);
      this.phase = Phase.HANDSHAKE;
      this.attach();
      await this.writeAll(encodeGreeting(PacketType.CONNECT, this.ownPacketSize, this.connectCookie), deadline, "sending CONNECT");
      const g = decodeGreeting(await this.readExact(GREETING_SIZE, deadline, "waiting for ACCEPT"), PacketType.ACCEPT);
      const token = this.readToken();
      if (authorize) await authorize(token);
      this.establish(g.packetSize, g.cookie, token);
    } catch (e) {
      this.failEstablish();
      throw e;
    }
  }

  /**
   * `lwmsg_assoc_accept`: receive CONNECT, answer ACCEPT. `authorize` runs
   * with the peer's token and connect cookie before ACCEPT goes out (the
   * session-constructor point of §3.2); throwing rejects the peer, which then
   * sees the connection close.
   */
  async accept(authorize?: (token: LocalToken, connectCookie: Uint8Array) => void | Promise<void>): Promise<void> {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, `accept: connection is ${this.describePhase()}`);
    if (this.fd < 0) throw new LwMsgError(Status.INVALID_STATE, "accept: no fd set (use setFd or Connection.listen)");
    const deadline = this.establishTimeout === null ? null : Date.now() + this.establishTimeout;
    this.phase = Phase.HANDSHAKE;
    try {
      this.attach();
      const g = decodeGreeting(await this.readExact(GREETING_SIZE, deadline, "waiting for CONNECT"), PacketType.CONNECT);
      const size = Math.min(this.ownPacketSize, g.packetSize);
      const token = this.readToken();
      if (authorize) {
        try {
          await authorize(token, g.cookie);
        } catch (e) {
          this.refuse(e);
          throw e;
        }
      }
      await this.writeAll(encodeGreeting(PacketType.ACCEPT, size, this.acceptCookie), deadline, "sending ACCEPT");
      this.establish(g.packetSize, g.cookie, token);
    } catch (e) {
      this.failEstablish();
      throw e;
    }
  }

  private async openSocket(path: string, deadline: number | null): Promise<void> {
    let backoff = 1;
    for (;;) {
      const { fd, inProgress } = connectPath(path);
      if (fd === -Errno.EAGAIN) {
        // Listener backlog full: retry on a timer (never block the thread).
        if (deadline !== null && Date.now() >= deadline) throw new LwMsgError(Status.TIMEOUT, `connect to ${path}: timed out (listener backlog full)`);
        await Bun.sleep(backoff);
        backoff = Math.min(backoff * 2, 50);
        continue;
      }
      this.fd = fd;
      if (inProgress) {
        this.attach();
        await this.waitFor(WRITABLE, deadline, `connecting to ${path}`);
        connectResult(fd, path);
      }
      return;
    }
  }

  private readToken(): LocalToken {
    const c = this.mode === ConnectionMode.PAIR ? selfCredentials() : peerCredentials(this.fd);
    return { type: "local", euid: c.uid, egid: c.gid, pid: c.pid };
  }

  private establish(peerPacketSize: number, peerCookie: Uint8Array, token?: LocalToken): void {
    this.packetSize = Math.min(this.ownPacketSize, peerPacketSize);
    this.token = token ?? this.readToken();
    this.peerCookie = peerCookie;
    // Rebuilding the buffers drops anything queued during the handshake (§3.2), fds included.
    this.closeQueuedInFds();
    if (this.packetSize + BASE_HEADER_SIZE > this.inBuf.length) this.growIn(this.packetSize + BASE_HEADER_SIZE);
    this.phase = Phase.ESTABLISHED;
    this.parse(); // bytes that came with the greeting
  }

  /**
   * The accept hook refused the client: tell it why before the socket goes,
   * with SHUTDOWN(status) in place of ACCEPT (one non-blocking write; 10
   * bytes always fit a fresh socket). Our clients read SHUTDOWN(SECURITY)
   * during the handshake as SECURITY; an lwmsg C client maps any status but
   * PEER_CLOSE/RESET/ABORT to PEER_ABORT (connection-wire.c), so it sees
   * PEER_ABORT — where a C server, closing, would have sent PEER_CLOSE.
   */
  private refuse(e: unknown): void {
    const status = e instanceof LwMsgError && e.status !== Status.SUCCESS ? e.status : Status.SECURITY;
    const b = encodeShutdown(status);
    native.lw_send(this.fd, b, b.length, null, 0);
  }

  private failEstablish(): void {
    this.releaseSocket();
    this.phase = Phase.ERROR;
  }

  private describePhase(): string {
    return ["not established", "connecting", "in its handshake", "established", "closed", "in error"][this.phase]!;
  }

  // ---------------------------------------------------------------- send

  /**
   * `lwmsg_assoc_send_message`. The message is taken at once: encoded into
   * the outgoing queue, its fds duplicated (so the caller may close its own
   * fds as soon as send() returns). It leaves with the others queued in this
   * turn. The promise resolves once the queue is under `sendQueueLimit`;
   * awaiting it is what bounds memory against a peer that stops reading.
   * Encoding errors (MALFORMED, INVALID_HANDLE, OVERFLOW) reject and leave
   * the connection usable, as in lwmsg (§3.4).
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
    return this.out.pos - this.sendPos >= this.sendQueueLimit || this.drainWaiters.length > 0;
  }

  /**
   * Resolves once send() would no longer wait (queued bytes under
   * `sendQueueLimit`); rejects if the connection fails first (TIMEOUT after
   * the message timeout). A server stops reading requests while its replies
   * cannot drain, so a client that does not read cannot grow its memory.
   */
  drained(): Promise<void> {
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("drained"));
    return this.sendBlocked ? this.waitDrained() : RESOLVED;
  }

  private afterEnqueue(): Promise<void> {
    const queued = this.out.pos - this.sendPos;
    if (queued >= FLUSH_THRESHOLD || queued >= this.sendQueueLimit) {
      this.flush();
      if (this.phase !== Phase.ESTABLISHED && this.fatal) return Promise.reject(this.fatal);
      if (this.out.pos - this.sendPos >= this.sendQueueLimit) return this.waitDrained();
    } else this.scheduleFlush();
    return RESOLVED;
  }

  /** Wait until queued bytes fall under the limit (or everything is sent). */
  private waitDrained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const w: Waiter<void> = { resolve, reject, timer: null };
      if (this.messageTimeout !== null) {
        w.timer = setTimeout(() => {
          const i = this.drainWaiters.indexOf(w);
          if (i >= 0) this.drainWaiters.splice(i, 1);
          this.unrefIfIdle();
          this.toError(new LwMsgError(Status.TIMEOUT, `send: peer did not read for ${this.messageTimeout} ms`));
          reject(this.fatal);
        }, this.messageTimeout);
      }
      this.drainWaiters.push(w);
      this.ref();
      this.flush();
    });
  }

  /** Encode one message into the outgoing buffer; on failure nothing of it stays queued. */
  private enqueue(message: OutgoingMessage): void {
    if (message === null || typeof message !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "send: message must be an object { tag, data }");
    let entry: ProtocolEntry | undefined;
    let tag: number;
    const t = message.tag;
    if (typeof t === "string") {
      entry = this.protocol.byName(t);
      if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag "${t}" is not in the protocol`);
      tag = entry.tag;
    } else if (t === TAG_INVALID) {
      tag = TAG_INVALID;
    } else if (typeof t === "number" && Number.isInteger(t)) {
      entry = this.protocol.byTag(t);
      if (!entry) throw new LwMsgError(Status.MALFORMED, `send: tag ${t} is not in the protocol`);
      tag = t;
    } else throw new LwMsgError(Status.INVALID_PARAMETER, `send: tag must be a protocol name or number, got ${String(t)}`);
    const flags = message.flags ?? 0;
    const status = message.status ?? 0;
    const cookie = message.cookie ?? 0;
    if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: flags must be a u8, got ${flags}`);
    if (!Number.isInteger(status) || status < 0 || status > 0xffffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: status must be a u32, got ${status}`);
    if (!Number.isInteger(cookie) || cookie < 0 || cookie > 0xffff) throw new LwMsgError(Status.INVALID_PARAMETER, `send: cookie must be a u16, got ${cookie}`);

    const w = this.out;
    // Compact: everything before sendPos is already in the kernel. Moving the
    // unsent tail keeps the buffer from growing with every large message sent
    // while the socket is full; it is done only while that tail is small (a
    // caller that awaits send() keeps it ≤ sendQueueLimit) or no bigger than
    // the space won, so a caller that does not await cannot make it quadratic.
    const tail = w.pos - this.sendPos;
    if (this.sendPos > 0 && (tail <= this.sendQueueLimit || tail <= this.sendPos)) {
      if (this.sendPos < w.pos) w.buf.copyWithin(0, this.sendPos, w.pos);
      this.rebaseFdQ(this.sendPos);
      w.pos -= this.sendPos;
      this.sendPos = 0;
    }
    const start = w.pos;
    // Room for this message at its largest, fragment headers included: an
    // oversized payload stops the encoder there instead of growing the buffer.
    const room = MESSAGE_HEADER_SIZE * (Math.ceil(this.maxMessageSize / (this.packetSize - MESSAGE_HEADER_SIZE)) + 1) + this.maxMessageSize;
    w.limit = start + room;
    w.ensure(MESSAGE_HEADER_SIZE);
    w.pos = start + MESSAGE_HEADER_SIZE;
    const ctx = this.encodeCtx;
    const encode = entry?.encode;
    if (encode) {
      ctx.fdsOut.length = 0;
      try {
        encode(message.data, w, ctx);
        if (ctx.fdsOut.length > 0) this.queueFds(ctx.fdsOut, start);
      } catch (e) {
        w.pos = start;
        if (e instanceof LwMsgError && e.status === Status.OVERFLOW && e.message.includes(`exceeds the ${w.limit}-byte limit`)) {
          // The writer hit this message's room: the payload is over maxMessageSize.
          throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: message exceeds maxMessageSize ${this.maxMessageSize}`, { cause: e });
        }
        throw e instanceof LwMsgError ? e : new LwMsgError(Status.MALFORMED, `send ${entry!.name}: ${(e as Error)?.message ?? e}`, { cause: e });
      }
      const payload = w.pos - start - MESSAGE_HEADER_SIZE;
      if (payload > this.maxMessageSize) {
        this.dropFdsFrom(start);
        w.pos = start;
        throw new LwMsgError(Status.OVERFLOW, `send ${entry!.name}: ${payload}-byte message exceeds maxMessageSize ${this.maxMessageSize}`);
      }
    }
    const total = w.pos - start;
    if (total <= this.packetSize) {
      writeMessageHeader(w.view, start, total, PacketFlags.SINGLE, flags, status, cookie, tag);
    } else this.fragmentInPlace(start, total - MESSAGE_HEADER_SIZE, flags, status, cookie, tag);
  }

  /** Split the payload at [start+15, …) into packets, each with its own header (§3.3), moving each chunk once. */
  private fragmentInPlace(start: number, payload: number, flags: number, status: number, cookie: number, tag: number): void {
    const chunk = this.packetSize - MESSAGE_HEADER_SIZE;
    const n = Math.ceil(payload / chunk);
    const w = this.out;
    const extra = (n - 1) * MESSAGE_HEADER_SIZE;
    w.ensure(extra);
    const buf = w.buf;
    for (let i = n - 1; i >= 1; i--) {
      const src = start + MESSAGE_HEADER_SIZE + i * chunk;
      const len = Math.min(chunk, payload - i * chunk);
      buf.copyWithin(start + i * this.packetSize + MESSAGE_HEADER_SIZE, src, src + len);
    }
    for (let i = 0; i < n; i++) {
      const len = Math.min(chunk, payload - i * chunk);
      const pf = (i === 0 ? PacketFlags.FIRST : 0) | (i === n - 1 ? PacketFlags.LAST : 0);
      writeMessageHeader(w.view, start + i * this.packetSize, len + MESSAGE_HEADER_SIZE, pf, flags, status, cookie, tag);
    }
    w.pos = start + MESSAGE_HEADER_SIZE * n + payload;
  }

  private queueFds(fds: number[], offset: number): void {
    if (fds.length > MAX_FDS_PER_MESSAGE) throw new LwMsgError(Status.MALFORMED, `send: ${fds.length} fds in one message (max ${MAX_FDS_PER_MESSAGE})`);
    const first = this.fdQ.length;
    try {
      // The sender's fds stay the sender's: we send dups and close them once sent (§3.6).
      for (const fd of fds) {
        this.fdQ.push(dupFd(fd));
        this.fdQOff.push(offset);
      }
    } catch (e) {
      for (let i = first; i < this.fdQ.length; i++) closeFd(this.fdQ[i]!);
      this.fdQ.length = this.fdQOff.length = first;
      throw e;
    }
  }

  private dropFdsFrom(offset: number): void {
    while (this.fdQ.length > this.fdQHead && this.fdQOff[this.fdQOff.length - 1]! >= offset) {
      closeFd(this.fdQ.pop()!);
      this.fdQOff.pop();
    }
  }

  private rebaseFdQ(by: number): void {
    for (let i = this.fdQHead; i < this.fdQOff.length; i++) this.fdQOff[i]! -= by;
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

  /** Push queued bytes (and their fds) into the kernel until it is empty or the socket is full. */
  private flush(): void {
    const w = this.out;
    while (this.sendPos < w.pos) {
      if (w.buf !== this.outBufRef) {
        this.outBufRef = w.buf;
        this.outPtr = ptr(w.buf);
      }
      let len = w.pos - this.sendPos;
      // Attach the fds of every message that starts within the bytes going out now.
      let nfds = 0;
      const end = this.sendPos + len;
      let i = this.fdQHead;
      while (i < this.fdQ.length && this.fdQOff[i]! < end && nfds < MAX_FDS_PER_SENDMSG) this.fdSend[nfds++] = this.fdQ[i++]!;
      if (i < this.fdQ.length && this.fdQOff[i]! < end) {
        // More fds than one sendmsg carries: stop where the next message starts (or after one byte if it is this one).
        len = Math.max(1, this.fdQOff[i]! - this.sendPos);
      }
      if (len > 0x7fff0000) len = 0x7fff0000;
      const r = native.lw_send(this.fd, (this.outPtr + this.sendPos) as Pointer, len, nfds > 0 ? this.fdSendPtr : null, nfds);
      if (r >= 0) {
        if (nfds > 0) {
          for (let k = 0; k < nfds; k++) closeFd(this.fdQ[this.fdQHead + k]!);
          this.fdQHead += nfds;
          if (this.fdQHead === this.fdQ.length) this.fdQ.length = this.fdQOff.length = this.fdQHead = 0;
          else if (this.fdQHead >= 1024 && this.fdQHead * 2 >= this.fdQ.length) {
            // A socket that stays full keeps fds queued for good: drop the sent front now and then.
            this.fdQ.splice(0, this.fdQHead);
            this.fdQOff.splice(0, this.fdQHead);
            this.fdQHead = 0;
          }
        }
        this.sendPos += r;
        this.justSent = true;
        continue;
      }
      if (r === -Errno.EAGAIN) {
        this.armWatch();
        break;
      }
      if (r === -Errno.EINTR) continue;
      this.toError(LwMsgError.fromErrno("sendmsg", r, true));
      return;
    }
    if (this.sendPos === w.pos) {
      this.rebaseFdQ(this.sendPos);
      this.sendPos = w.pos = 0;
    }
    this.wakeDrainWaiters();
  }

  private wakeDrainWaiters(): void {
    if (this.drainWaiters.length === 0) return;
    if (this.out.pos - this.sendPos >= this.sendQueueLimit) return;
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve();
    }
    this.unrefIfIdle();
  }

  // ---------------------------------------------------------------- receive

  /**
   * `lwmsg_assoc_recv_message`. Served from messages already read when there
   * are any. A payload that fails to decode gives a synthetic message (§3.4);
   * a tag not in the protocol rejects with MALFORMED and the connection stays
   * usable; a peer shutdown rejects with PEER_CLOSE/PEER_RESET/PEER_ABORT.
   * Only one recv may wait at a time (BUSY otherwise).
   */
  recv(): Promise<ReceivedMessage> {
    const m = this.takeQueued();
    if (m !== undefined) return settled(m);
    if (this.phase !== Phase.ESTABLISHED) return Promise.reject(this.notEstablished("recv"));
    if (this.recvWaiter) return Promise.reject(new LwMsgError(Status.BUSY, "recv: another recv is already waiting on this connection"));
    if (this.out.pos > this.sendPos) this.flush(); // about to wait: let the request go first
    this.pump();
    const m2 = this.takeQueued();
    if (m2 !== undefined) return settled(m2);
    // Poll before parking: a reply to what we just sent often arrives within
    // microseconds. Only while no other connection of this process waits for
    // input: the poll blocks the thread on this one socket, and a server with
    // many clients (bench/soak.ts: 9k calls/s, p99 0.65 s with 1,000 clients)
    // or a process with many client connections would stall all the others.
    if (this.justSent && this.replyPollUs > 0 && Connection.parkedRecvs === 0 && this.phase === Phase.ESTABLISHED) {
      if (this.replyPollSkip > 0) this.replyPollSkip--;
      else {
        Connection.replyPolls++;
        const r = native.lw_wait_readable(this.fd, this.replyPollUs);
        if (r === 1) {
          this.pump();
          this.replyPollBackoff = REPLY_POLL_MIN_BACKOFF;
          const m3 = this.takeQueued();
          if (m3 !== undefined) {
            this.justSent = false;
            return settled(m3);
          }
        } else if (this.replyPollAdaptive) {
          // A miss blocked the thread for the whole window: skip the next few
          // requests, twice as many after each consecutive miss.
          this.replyPollSkip = this.replyPollBackoff;
          this.replyPollBackoff = Math.min(this.replyPollBackoff * 2, REPLY_POLL_MAX_BACKOFF);
        }
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
          this.takeQueued(); // the timeout is reported here, not again
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
    await this.send(message);
    return this.recv();
  }

  private takeQueued(): ReceivedMessage | LwMsgError | undefined {
    const q = this.queue;
    if (this.queueHead < q.length) {
      const m = q[this.queueHead]!;
      q[this.queueHead++] = undefined as never;
      if (this.queueHead === q.length) q.length = this.queueHead = 0;
      return m;
    }
    return undefined;
  }

  private hasQueued(): boolean {
    return this.queueHead < this.queue.length;
  }

  /** Read until the kernel has nothing more or a message is ready. */
  private pump(): void {
    while (this.phase === Phase.ESTABLISHED) {
      const r = this.readOnce();
      if (r > 0) {
        this.parse();
        if (this.hasQueued()) return;
        continue;
      }
      // EAGAIN: nothing more for now. fds not yet claimed stay queued even
      // when every byte is parsed: a sendmsg that the kernel takes only in
      // part carries all its fds with the first part, so fds can arrive ahead
      // of bytes still to come (lwmsg §10.10 keeps them queued too). maxFds
      // bounds them; the connection's end closes them.
      if (r === -Errno.EAGAIN) return;
      return; // EOF or error: recorded by readOnce
    }
  }

  /** One recvmsg into the free tail of the input buffer. >0 bytes, -EAGAIN, or ≤ 0 after recording a fatal error. */
  private readOnce(): number {
    if (this.rpos > 0 && (this.rpos === this.wpos || this.inBuf.length - this.wpos < 4096)) {
      this.inBuf.copyWithin(0, this.rpos, this.wpos);
      this.wpos -= this.rpos;
      this.rpos = 0;
    }
    if (this.wpos === this.inBuf.length) this.growIn(this.inBuf.length * 2);
    const r = native.lw_recv(this.fd, (this.inPtr + this.wpos) as Pointer, this.inBuf.length - this.wpos, this.recvFdsPtr, this.recvOutPtr);
    const nfds = this.recvOut[0]!;
    if (nfds > 0) {
      // fds can stay ahead of their messages for good (coalesced sends), so the
      // FIFO's head does not always come back to 0: drop the consumed front now and then.
      if (this.fdInHead >= 1024 && this.fdInHead * 2 >= this.fdIn.length) {
        this.fdIn.splice(0, this.fdInHead);
        this.fdInHead = 0;
      }
      for (let i = 0; i < nfds; i++) this.fdIn.push(this.recvFds[i]!);
      if (this.fdIn.length - this.fdInHead > this.maxFds) {
        this.toError(new LwMsgError(Status.MALFORMED, `peer sent more than ${this.maxFds} fds ahead of their messages (maxFds)`));
        return -1;
      }
    }
    if (r > 0) {
      if (this.recvOut[1]! & MSG_CTRUNC) {
        // Fds were dropped by the kernel (usually RLIMIT_NOFILE): the fd stream can no longer be matched to messages.
        this.toError(new LwMsgError(Status.RESOURCE_LIMIT, "recvmsg: control data truncated (MSG_CTRUNC), received fds were lost — out of file descriptors?"));
        return -1;
      }
      this.wpos += r;
      return r;
    }
    if (r === 0) {
      this.eofSeen = true;
      this.toError(new LwMsgError(Status.PEER_CLOSE, "peer closed the connection"));
      return 0;
    }
    if (r === -Errno.EAGAIN || r === -Errno.EINTR) return -Errno.EAGAIN;
    this.toError(LwMsgError.fromErrno("recvmsg", r, true));
    return r;
  }

  private growIn(size: number): void {
    const next = new Uint8Array(new ArrayBuffer(size));
    next.set(this.inBuf.subarray(this.rpos, this.wpos));
    this.wpos -= this.rpos;
    this.rpos = 0;
    this.inBuf = next;
    this.inView = new DataView(next.buffer);
    this.inPtr = ptr(next);
  }

  /** Cut complete packets out of the input buffer and decode whole messages into the queue. */
  private parse(): void {
    const buf = this.inBuf;
    const v = this.inView;
    let p = this.rpos;
    const end = this.wpos;
    while (end - p >= BASE_HEADER_SIZE && this.phase === Phase.ESTABLISHED) {
      const len = v.getUint32(p);
      if (len > this.packetSize) return this.protocolError(`packet of ${len} bytes exceeds the negotiated packet size ${this.packetSize}`);
      if (len < BASE_HEADER_SIZE) return this.protocolError(`packet length ${len} is shorter than its header`);
      if (end - p < len) break;
      const type = buf[p + 4]!;
      if (type === PacketType.MESSAGE) {
        if (len < MESSAGE_HEADER_SIZE) return this.protocolError(`MESSAGE packet of ${len} bytes is shorter than its 15-byte header`);
        const pf = buf[p + 5]!;
        const flags = buf[p + 6]!;
        const status = v.getUint32(p + 7);
        const cookie = v.getUint16(p + 11);
        const tag = v.getInt16(p + 13);
        if ((pf & PacketFlags.FIRST) !== 0) {
          if (this.frag !== null) return this.protocolError("a new message began before the previous one's LAST fragment");
          if ((pf & PacketFlags.LAST) !== 0) {
            this.rpos = p + len;
            this.deliver(flags, status, cookie, tag, buf, p + MESSAGE_HEADER_SIZE, p + len);
            p = this.rpos;
            continue;
          }
          // The reassembly buffer is kept across messages (it only grows to the largest message seen, ≤ maxMessageSize).
          const rb = (this.reassembly ??= new Uint8Array(Math.min(this.maxMessageSize, Math.max(64 * 1024, 4 * this.packetSize))));
          this.frag = { flags, status, cookie, tag, buf: rb, len: 0 };
        } else if (this.frag === null) return this.protocolError("a continuation fragment arrived without a FIRST fragment");
        const f = this.frag;
        const n = len - MESSAGE_HEADER_SIZE;
        if (f.len + n > this.maxMessageSize) {
          this.rpos = p + len;
          return this.toError(new LwMsgError(Status.OVERFLOW, `incoming message exceeds maxMessageSize ${this.maxMessageSize}`));
        }
        if (f.len + n > f.buf.length) {
          const nb = new Uint8Array(Math.min(this.maxMessageSize, Math.max(f.buf.length * 2, f.len + n)));
          nb.set(f.buf.subarray(0, f.len));
          f.buf = nb;
          this.reassembly = nb;
        }
        f.buf.set(buf.subarray(p + MESSAGE_HEADER_SIZE, p + len), f.len);
        f.len += n;
        p += len;
        if ((pf & PacketFlags.LAST) !== 0) {
          this.frag = null;
          this.rpos = p;
          this.deliver(f.flags, f.status, f.cookie, f.tag, f.buf, 0, f.len);
          p = this.rpos;
        }
        continue;
      }
      if (type === PacketType.SHUTDOWN) {
        if (len !== SHUTDOWN_SIZE) return this.protocolError(`SHUTDOWN packet of ${len} bytes`);
        // §3.3: like any non-MESSAGE packet, a SHUTDOWN between the fragments of a message is MALFORMED
        if (this.frag !== null) return this.protocolError("SHUTDOWN packet in the middle of a fragmented message");
        this.rpos = p + len;
        return this.toError(shutdownError(v.getUint32(p + 6)));
      }
      return this.protocolError(`unexpected packet type ${type} on an established connection`);
    }
    this.rpos = p;
  }

  /** Decode one whole message from bytes[start, end) and queue it (or its synthetic stand-in). */
  private deliver(flags: number, status: number, cookie: number, tag: number, bytes: Uint8Array, start: number, end: number): void {
    if (tag === TAG_INVALID) {
      this.queue.push(new ReceivedMessage(tag, undefined, null, flags, status, cookie, null));
      return;
    }
    const entry = this.protocol.byTag(tag);
    if (!entry) {
      this.queue.push(new LwMsgError(Status.MALFORMED, `received tag ${tag} is not in the protocol`));
      return;
    }
    const decode = entry.decode;
    if (!decode) {
      this.queue.push(new ReceivedMessage(tag, entry.name, null, flags, status, cookie, null));
      return;
    }
    const ctx = this.decodeCtx;
    ctx.fdsIn = this.fdIn;
    ctx.fdsInPos = this.fdInHead;
    ctx.fdsTaken.length = 0;
    const handles = entry.hasHandles ? ctx.handles : null;
    handles?.beginDecode?.();
    const r = this.reader;
    r.reset(bytes, start, end);
    let data: unknown;
    try {
      data = decode(r, ctx);
    } catch (e) {
      handles?.decodeFailed?.();
      this.fdInHead = ctx.fdsInPos;
      for (const fd of ctx.fdsTaken) closeFd(fd);
      ctx.fdsTaken.length = 0;
      const err = e instanceof LwMsgError ? e : new LwMsgError(Status.MALFORMED, String((e as Error)?.message ?? e));
      const s = err.status;
      if (s === Status.MALFORMED || s === Status.INVALID_HANDLE || s === Status.OVERFLOW || s === Status.UNDERFLOW) {
        this.queue.push(new ReceivedMessage(TAG_INVALID, undefined, null, flags | MessageFlags.SYNTHETIC, s, cookie, null));
      } else if (s === Status.EOF) {
        // The payload ends before its type does: lwmsg reports running out of fragments as PEER_CLOSE (§3.3).
        this.toError(new LwMsgError(Status.PEER_CLOSE, `message ${entry.name} is truncated: ${err.message}`));
      } else this.toError(err);
      return;
    }
    this.fdInHead = ctx.fdsInPos;
    let fds: number[] | null = null;
    if (ctx.fdsTaken.length > 0) {
      fds = ctx.fdsTaken.slice();
      ctx.fdsTaken.length = 0;
    }
    if (this.fdInHead === this.fdIn.length && this.fdInHead > 0) this.fdIn.length = this.fdInHead = 0;
    this.queue.push(new ReceivedMessage(tag, entry.name, data, flags, status, cookie, fds));
  }

  private protocolError(what: string): void {
    this.toError(new LwMsgError(Status.MALFORMED, what));
  }

  private closeQueuedInFds(): void {
    for (let i = this.fdInHead; i < this.fdIn.length; i++) closeFd(this.fdIn[i]!);
    this.fdIn.length = this.fdInHead = 0;
  }

  // ---------------------------------------------------------------- readiness

  private attach(): void {
    if (this.watch) return;
    if (this.inBuf.length === 0) this.growIn(IN_BUFFER_SIZE);
    this.poller = Poller.shared();
    this.watch = this.poller.watch(this.fd, this.onReady);
  }

  private armWatch(): void {
    if (!this.watch) return;
    let ev = 0;
    if (this.recvWaiter || this.ioWaiter?.events === READABLE) ev |= READABLE;
    if (this.out.pos > this.sendPos || this.ioWaiter?.events === WRITABLE) ev |= WRITABLE;
    if (ev !== 0) this.watch.arm(ev);
  }

  private onReady = (events: number): void => {
    if (this.ioWaiter) {
      const w = this.ioWaiter;
      this.ioWaiter = null;
      w.resolve();
      return;
    }
    if (this.phase !== Phase.ESTABLISHED) return;
    if (this.out.pos > this.sendPos) this.flush();
    if (this.recvWaiter) {
      this.pump();
      // pump() may have failed the connection, which already answered the waiter.
      const w = this.recvWaiter as Waiter<ReceivedMessage> | null;
      const m = w ? this.takeQueued() : undefined;
      if (w && m !== undefined) {
        this.recvWaiter = null;
        if (w.timer) clearTimeout(w.timer);
        this.unrefIfIdle();
        answer(w, m);
      }
    }
    if (this.phase === Phase.ESTABLISHED) this.armWatch();
    void events;
  };

  // Handshake-time I/O: simple exact reads/writes with a deadline.
  private ioWaiter: { events: number; resolve: () => void } | null = null;

  private waitFor(events: number, deadline: number | null, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer) clearTimeout(timer);
        this.unrefIfIdle();
        resolve();
      };
      this.ioWaiter = { events, resolve: done };
      this.abortIo = (e: unknown) => {
        if (timer) clearTimeout(timer);
        this.ioWaiter = null;
        this.unrefIfIdle();
        reject(e);
      };
      if (deadline !== null) {
        timer = setTimeout(() => {
          this.ioWaiter = null;
          this.unrefIfIdle();
          reject(new LwMsgError(Status.TIMEOUT, `${what}: timed out`));
        }, Math.max(0, deadline - Date.now()));
      }
      this.ref();
      this.watch!.arm(events);
    });
  }
  private abortIo: ((e: unknown) => void) | null = null;

  private async writeAll(bytes: Uint8Array, deadline: number | null, what: string): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const r = native.lw_send(this.fd, (ptr(bytes) + off) as Pointer, bytes.length - off, null, 0);
      if (r > 0) {
        off += r;
        continue;
      }
      if (r === -Errno.EAGAIN) {
        await this.waitFor(WRITABLE, deadline, what);
        continue;
      }
      if (r === -Errno.EINTR) continue;
      throw LwMsgError.fromErrno(what, r, true);
    }
  }

  /** Read exactly n bytes into the input buffer's front (greetings). Extra bytes stay buffered for parse(). */
  private async readExact(n: number, deadline: number | null, what: string): Promise<Uint8Array> {
    for (;;) {
      if (this.wpos - this.rpos >= BASE_HEADER_SIZE) {
        const t = this.inBuf[this.rpos + 4];
        // A greeting is 19 bytes; a SHUTDOWN (peer rejected us) is 10.
        const need = t === PacketType.SHUTDOWN ? SHUTDOWN_SIZE : n;
        if (this.wpos - this.rpos >= need) {
          const out = this.inBuf.slice(this.rpos, this.rpos + need);
          this.rpos += need;
          return out;
        }
      }
      if (this.wpos === this.inBuf.length) this.growIn(this.inBuf.length * 2);
      const r = native.lw_recv(this.fd, (this.inPtr + this.wpos) as Pointer, this.inBuf.length - this.wpos, this.recvFdsPtr, this.recvOutPtr);
      // fds sent with a greeting (AUTH_LOCAL pipe on platforms without peer creds) are not used here.
      for (let i = 0; i < this.recvOut[0]!; i++) closeFd(this.recvFds[i]!);
      if (r > 0) {
        this.wpos += r;
        continue;
      }
      if (r === 0) throw new LwMsgError(Status.PEER_CLOSE, `${what}: peer closed the connection`);
      if (r === -Errno.EAGAIN || r === -Errno.EINTR) {
        await this.waitFor(READABLE, deadline, what);
        continue;
      }
      throw LwMsgError.fromErrno(what, r, true);
    }
  }

  private ref(): void {
    if (!this.refd && this.poller) {
      this.refd = true;
      this.poller.ref();
    }
  }

  private unrefIfIdle(): void {
    if (this.refd && !this.recvWaiter && this.drainWaiters.length === 0 && !this.ioWaiter) {
      this.refd = false;
      this.poller!.unref();
    }
  }

  // ---------------------------------------------------------------- errors and teardown

  private notEstablished(op: string): LwMsgError {
    if (this.fatal && this.phase === Phase.ERROR) return new LwMsgError(Status.INVALID_STATE, `${op}: connection is in error after ${this.fatal.message}`);
    return new LwMsgError(Status.INVALID_STATE, `${op}: connection is ${this.describePhase()}`);
  }

  /** Move to ERROR with `e`: queue it for recv (after the good messages) and fail every waiter. */
  private toError(e: LwMsgError): void {
    if (this.phase === Phase.ERROR || this.phase === Phase.CLOSED) return;
    this.phase = Phase.ERROR;
    this.fatal = e;
    this.queue.push(e);
    this.frag = null;
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      answer(rw, this.takeQueued()!);
    }
    this.failDrainWaiters(e);
    this.dropSendQueue();
    // Nothing will be parsed any more: fds not yet claimed by a message can never be (MSG_CTRUNC included).
    this.closeQueuedInFds();
    this.unrefIfIdle();
  }

  private failDrainWaiters(e: unknown): void {
    const dws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of dws) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(e);
    }
  }

  private dropSendQueue(): void {
    for (let i = this.fdQHead; i < this.fdQ.length; i++) closeFd(this.fdQ[i]!);
    this.fdQ.length = this.fdQOff.length = this.fdQHead = 0;
    this.sendPos = this.out.pos = 0;
  }

  /** Close the socket and every fd we hold; waiters fail with `reason`. */
  private releaseSocket(reason: LwMsgError = new LwMsgError(Status.CANCELLED, "connection closed locally")): void {
    if (this.abortIo) {
      const a = this.abortIo;
      this.abortIo = null;
      if (this.ioWaiter) a(reason);
    }
    this.ioWaiter = null;
    const rw = this.recvWaiter;
    if (rw) {
      this.recvWaiter = null;
      if (rw.timer) clearTimeout(rw.timer);
      rw.reject(reason);
    }
    this.failDrainWaiters(reason);
    this.dropSendQueue();
    this.closeQueuedInFds();
    // Messages received but never taken by recv(): close their fds.
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const m = this.queue[i];
      if (m instanceof ReceivedMessage) m.dispose();
    }
    this.queue.length = this.queueHead = 0;
    this.frag = null;
    this.reassembly = null;
    this.rpos = this.wpos = 0;
    if (this.watch) {
      this.watch.remove();
      this.watch = null;
    }
    if (this.refd) {
      this.refd = false;
      this.poller?.unref();
    }
    if (this.fd >= 0) {
      closeFd(this.fd);
      this.fd = -1;
    }
  }

  /** Best-effort: flush what is queued, then a SHUTDOWN packet, within the establish timeout. */
  private async sayGoodbye(status: number): Promise<void> {
    if (this.fd < 0 || this.eofSeen) return;
    const deadline = this.establishTimeout === null ? Date.now() + 5000 : Date.now() + this.establishTimeout;
    try {
      if (this.phase === Phase.ESTABLISHED) {
        this.flush();
        while (this.phase === Phase.ESTABLISHED && this.out.pos > this.sendPos) {
          await this.waitFor(WRITABLE, deadline, "flushing before shutdown");
          this.flush();
        }
      }
      if (!this.watch) this.attach();
      await this.writeAll(encodeShutdown(status), deadline, "sending SHUTDOWN");
    } catch {
      // PEER_CLOSE/RESET/ABORT (and timeouts) while saying goodbye are ignored, as in lwmsg (§3.5).
    }
  }

  /** `lwmsg_assoc_close`: flush, send SHUTDOWN(PEER_CLOSE), close the socket → CLOSED. */
  async close(): Promise<void> {
    if (this.phase === Phase.CLOSED) return;
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.ERROR) await this.sayGoodbye(Status.PEER_CLOSE);
    this.releaseSocket();
    this.phase = Phase.CLOSED;
  }

  /** `lwmsg_assoc_reset`: send SHUTDOWN(PEER_RESET), close the socket → NOT_ESTABLISHED; reconnectable (endpoint kept; a setFd must be repeated). */
  async reset(): Promise<void> {
    if (this.phase === Phase.ESTABLISHED || this.phase === Phase.ERROR) await this.sayGoodbye(Status.PEER_RESET);
    this.releaseSocket();
    this.phase = Phase.START;
    this.fatal = null;
    this.token = null;
    this.eofSeen = false;
    this.packetSize = this.ownPacketSize;
    if (this.fdGiven) {
      this.fdGiven = false;
      this.mode = this.endpoint !== null ? ConnectionMode.LOCAL : ConnectionMode.NONE;
    }
  }

  /**
   * `lwmsg_assoc_delete`: immediate teardown, no SHUTDOWN packet. Messages
   * already handed to `send()` (still queued for this turn's flush) get one
   * non-blocking write first: what the kernel takes at once reaches the
   * peer; only what a full socket cannot take is dropped.
   */
  destroy(): void {
    if (this.phase === Phase.ESTABLISHED && this.sendPos < this.out.pos) this.flush();
    this.releaseSocket();
    this.phase = Phase.CLOSED;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------- factories

  /** A socketpair with both ends established (PAIR mode). */
  static async pair<P extends Protocol<any>>(protocol: P, options: ConnectionOptions = {}): Promise<[Connection<P>, Connection<P>]> {
    const [fa, fb] = socketPair();
    const a = new Connection(protocol, options);
    const b = new Connection(protocol, options);
    try {
      a.setFd(ConnectionMode.PAIR, fa);
    } catch (e) {
      closeFd(fa);
      closeFd(fb);
      throw e;
    }
    try {
      b.setFd(ConnectionMode.PAIR, fb);
    } catch (e) {
      a.destroy();
      closeFd(fb);
      throw e;
    }
    try {
      await Promise.all([a.connect(), b.accept()]);
    } catch (e) {
      a.destroy();
      b.destroy();
      throw e;
    }
    return [a, b];
  }

  /** Listen on a socket path (unlink, bind, chmod `mode` (default 0600), listen). */
  static async listen<P extends Protocol<any>>(protocol: P, path: string, options: ListenOptions = {}): Promise<Listener<P>> {
    return new Listener(protocol, path, options);
  }
}

export interface ListenOptions extends ConnectionOptions {
  /** Socket file permissions (default 0o600: owner only). Ignored for abstract names. */
  mode?: number;
  /** `listen()` backlog (default 8, as lwmsg). */
  backlog?: number;
  /** Refuse (SECURITY) a socket directory that others could write to or that belongs to another user (default true). */
  checkDirectory?: boolean;
  /**
   * An abstract name (leading NUL) has no file permissions: any local user can
   * connect. `accept()` on one then requires an `authorize` function unless
   * this is true.
   */
  allowAnyUser?: boolean;
}
