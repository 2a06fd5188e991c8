/**
 * `LWMsgPeer`: server, client and multiplexed calls (reference §7). One
 * {@link Peer} can listen (server: lib/peer/server.ts), connect (client:
 * lib/peer/client.ts), or both; each connection's calls run on an
 * association channel (lib/peer/assoc-channel.ts). The lwmsg → TypeScript
 * table and the decisions taken where lwmsg is silent are in docs/peer.md.
 * @module
 */
import { Call, CallDirection, CallError, type CallOptions } from "../call.ts";
import type { SessionTransport } from "../channel.ts";
import { checkConnectionOptions, checkProtocol, ConnectionMode, type Connection, type ConnectionOptions, type OutgoingMessage, type ReceivedMessage } from "../connection.ts";
import type { Protocol } from "../protocol.ts";
import { releasePidfd } from "../pidfd.ts";
import type { TokenCheck } from "../security.ts";
import { Session, type SessionHooks } from "../session.ts";
import { LwMsgError, Status } from "../status.ts";
import type { AssocChannel } from "./assoc-channel.ts";
import { PeerClient } from "./client.ts";
import { PeerServer, ServerState, type ServerHost } from "./server.ts";
import { TimeoutSweeper } from "./sweeper.ts";
import { checkRemoteEndpoint, parseHostPort } from "../transport/remote-endpoint.ts";
import type { RemoteTlsOptions } from "../transport/bun-socket.ts";
import { checkBudget, checkMs, type DispatchTable, type Handler, type PeerOptions, type TraceHooks } from "./types.ts";

export { Call, CallDirection, CallError, Session };
export type { CallOptions, SessionHooks };


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
export class Peer<P extends Protocol<any> = Protocol<any>> implements SessionTransport, ServerHost {
  readonly protocol: P;
  private _maxClients = 100;
  private _maxClientsPerUid: number | null = null;
  /** @internal */
  _maxCallsPerSession = 256;
  /** @internal */
  readonly authorizeServer: TokenCheck | null;
  /** @internal */
  readonly checkDirectory: boolean;
  private readonly maxRemoteHandles: number;
  /** @internal */
  readonly allowAnyUser: boolean;
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
  /** @internal */
  sessionHooks: SessionHooks | null = null;
  /** @internal */
  readonly _maxDecodedPerSession: number;
  private readonly maxDecodedPerUid: number;
  private readonly decodedByUid = new Map<number, number>();
  /** @internal REMOTE endpoints' TLS settings and plain-TCP opt-in (from the options). */
  readonly remote: { tls: RemoteTlsOptions | null; allowInsecureTcp: boolean };
  /** @internal connections whose orderly close is still flushing. */
  readonly _closingConns = new Set<Connection>();
  private readonly sweeper: TimeoutSweeper;
  private readonly server: PeerServer;
  private readonly client: PeerClient;

  /** `lwmsg_peer_new`. */
  constructor(protocol: P, options: PeerOptions = {}) {
    if (!protocol || typeof (protocol as { byTag?: unknown }).byTag !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "Peer needs a protocol from Lw.Protocol(...)");
    if (options === null || typeof options !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "options must be an object");
    this.protocol = protocol;
    const peer = this;
    this.sweeper = new TimeoutSweeper({
      get idle() {
        return peer.timeoutIdle;
      },
      get message() {
        return peer.timeoutMessage;
      },
      underPressure: () => this.server.numClients >= this._maxClients,
    });
    this.server = new PeerServer(this, this.sweeper);
    this.client = new PeerClient(this, this.sweeper);
    const { maxClients, backlog, timeouts, maxClientsPerUid, maxCallsPerSession, authorizeServer, checkDirectory, allowAnyUser, maxRemoteHandles, maxDecodedBytesPerSession, maxDecodedBytesPerUid, ...conn } = options;
    // Defaults that grow with the largest message this peer takes: a few of them decoded at once per session.
    const perSession = 64 * 1024 * 1024 + 4 * (conn.maxMessageSize ?? 16 * 1024 * 1024);
    this._maxDecodedPerSession = checkBudget("maxDecodedBytesPerSession", maxDecodedBytesPerSession, perSession);
    this.maxDecodedPerUid = checkBudget("maxDecodedBytesPerUid", maxDecodedBytesPerUid, 4 * perSession);
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
    this.remote = { tls: conn.tls ?? null, allowInsecureTcp: conn.allowInsecureTcp === true };
    // Validate the protocol and connection options now, not at the first connection.
    checkProtocol(protocol);
    checkConnectionOptions(conn);
  }

  // ------------------------------------------------------------ configuration

  private requireStopped(op: string): void {
    if (this.server.state !== ServerState.STOPPED) throw new LwMsgError(Status.INVALID_STATE, `${op}: only while the peer is stopped`);
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
    return this.server.numClients;
  }

  /** `"stopped"`, `"started"` or `"error"` (a failed startListen; sticky, as in lwmsg). */
  get listenState(): "stopped" | "started" | "error" {
    const st = this.server.state;
    return st === ServerState.STARTED ? "started" : st === ServerState.ERROR ? "error" : "stopped";
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

  /** @internal */
  newSession(direction: "incoming" | "outgoing"): Session<P> {
    const s = new Session<P>(this.protocol, direction, this);
    s.maxRemoteHandles = this.maxRemoteHandles;
    return s;
  }

  /** @internal */
  connectionOptions(session: Session<any>): ConnectionOptions {
    return { ...this.connOptions, handles: session, timeouts: { establish: this.timeoutEstablish, message: null } };
  }
  // ------------------------------------------------------------ server

  /**
   * `lwmsg_peer_add_listen_endpoint`: LOCAL listens on a socket path (`perms`
   * is chmod'ed onto the socket file; default 0o600); DIRECT registers a
   * name that clients of this process connect to without a socket.
   */
  addListenEndpoint(mode: ConnectionMode, path: string, perms = 0o600): this {
    if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "addListenEndpoint: the endpoint must be a non-empty string");
    if (mode === ConnectionMode.DIRECT) {
      this.requireStopped("addListenEndpoint");
      this.server.addEndpoint({ kind: "direct", name: path });
      return this;
    }
    if (mode === ConnectionMode.REMOTE) {
      const { host, port } = parseHostPort(path, { allowPortZero: true });
      checkRemoteEndpoint(host, this.remote.tls, this.remote.allowInsecureTcp);
      this.requireStopped("addListenEndpoint");
      this.server.addEndpoint({ kind: "remote", host, port });
      return this;
    }
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `addListenEndpoint: unsupported mode ${mode} (LOCAL, REMOTE or DIRECT)`);
    if (!Number.isInteger(perms) || perms < 0 || perms > 0o7777) throw new LwMsgError(Status.INVALID_PARAMETER, `addListenEndpoint: perms must be a permission number like 0o600, got ${perms}`);
    this.requireStopped("addListenEndpoint");
    this.server.addEndpoint({ kind: "local", path, perms });
    return this;
  }

  /** `lwmsg_peer_add_listen_fd`: listen on a bound socket fd; the peer takes ownership (stopListen closes it). */
  addListenFd(mode: ConnectionMode, fd: number): this {
    if (mode !== ConnectionMode.LOCAL) throw new LwMsgError(Status.UNSUPPORTED, `addListenFd: only LOCAL is supported, got mode ${mode}`);
    if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `addListenFd: fd must be a non-negative integer, got ${fd}`);
    this.requireStopped("addListenFd");
    this.server.addEndpoint({ kind: "fd", fd });
    return this;
  }

  /**
   * `lwmsg_peer_start_listen`: for each endpoint unlink, bind, chmod and
   * listen (backlog), then accept clients. A failure (e.g. FILE_NOT_FOUND for
   * a missing directory) closes what was opened and leaves the peer in an
   * error state that later start/stop calls report again (lwmsg's sticky
   * status).
   */
  startListen(): Promise<void> {
    return this.server.start();
  }

  /** REMOTE listen endpoints as `"host:port"`, with the port picked for port 0 (after startListen). */
  get listenAddresses(): string[] {
    return this.server.remoteAddresses;
  }

  /**
   * `lwmsg_peer_accept_fd`: serve an already-connected socket (e.g. one end
   * of a socketpair with `ConnectionMode.PAIR`) as an incoming session.
   * Resolves once the handshake is done; the session is served either way
   * (awaiting is optional).
   */
  acceptFd(mode: ConnectionMode, fd: number): Promise<Session<P>> {
    if (mode !== ConnectionMode.LOCAL && mode !== ConnectionMode.PAIR) return Promise.reject(new LwMsgError(Status.UNSUPPORTED, `acceptFd: unsupported mode ${mode}`));
    return this.server.acceptFd(mode, fd) as Promise<Session<P>>;
  }

  /**
   * `lwmsg_peer_stop_listen`: stop accepting and remove the socket files
   * (those still ours), drop every incoming connection without SHUTDOWN
   * (replies already handed over are written first), cancel the incoming
   * calls still running (their `call.signal` aborts, `onCancel` callbacks
   * run) and resolve once they have all settled and their sessions ended.
   */
  async stopListen(): Promise<void> {
    if (this.server.state === ServerState.ERROR) throw this.server.stickyError!;
    await this.server.rundown();
  }

  /** @internal */
  _uidBudgetLeft(uid: number): number {
    if (uid < 0 || this.maxDecodedPerUid < 0) return -1;
    return Math.max(0, this.maxDecodedPerUid - (this.decodedByUid.get(uid) ?? 0));
  }

  /** @internal */
  _uidHold(uid: number, n: number): void {
    if (uid < 0 || this.maxDecodedPerUid < 0) return;
    const v = (this.decodedByUid.get(uid) ?? 0) + n;
    if (v > 0) this.decodedByUid.set(uid, v);
    else this.decodedByUid.delete(uid);
  }

  /**
   * Stop accepting: the accept loops end and the listening sockets close; a
   * socket file handed off ({@link handOffListenFds}) stays for the
   * successor (others are removed, as by stopListen). Connections and their
   * calls go on; stopListen or drain ends them.
   */
  stopAccepting(): void {
    if (this.server.state === ServerState.ERROR) throw this.server.stickyError!;
    this.server.stopAccepting();
  }

  /**
   * Graceful stop for a restart: {@link stopAccepting}, then on each
   * incoming connection run no new request (those read from now on are
   * dropped unrun), let the running calls finish and their replies flush,
   * and close it with SHUTDOWN(AGAIN) — "what I did not answer was not run":
   * a bun-lwmsg client sends those calls again on a new connection (the
   * successor); an lwmsg C client sees PEER_ABORT. Then ends as stopListen.
   * After `timeout` ms (default: the establish timeout, else 10 s) what is
   * left is dropped as stopListen drops it (calls cancelled). Resolves true
   * if every connection drained in time.
   */
  drain(options: { timeout?: number } = {}): Promise<boolean> {
    if (this.server.state === ServerState.ERROR) return Promise.reject(this.server.stickyError!);
    const timeout = checkMs("drain", options.timeout) ?? this.timeoutEstablish ?? 10_000;
    return this.server.drain(timeout);
  }

  /**
   * For each listening socket this peer bound (a LOCAL path) or was given
   * (addListenFd): a duplicate of its fd (close-on-exec; the caller owns it
   * and closes it once passed on) and its path (null for a given fd), to
   * hand to a successor process (spawn stdio, systemd's LISTEN_FDS rules,
   * or an `Lw.Fd()` field). From then on closing the endpoint does not
   * remove its socket file: the successor serves that very socket.
   * INVALID_STATE unless listening.
   */
  handOffListenFds(): { fd: number; path: string | null }[] {
    return this.server.handOffListenFds();
  }

  /** @internal a channel lost its connection. */
  _taskEnded(task: { readonly incoming: boolean }): void {
    const t = task as AssocChannel;
    if (t.incoming) this.sweeper.serverTasks.delete(t);
    else this.sweeper.clientTasks.delete(t);
    this.sweeper.update();
  }

  /**
   * @internal a channel's connection is gone and its incoming calls have
   * settled. Only now does a server session give back its client slot, so
   * maxClients (and maxClientsPerUid) bound live sessions, including those
   * whose handlers still run after the client left.
   */
  _taskFinished(task: { readonly incoming: boolean }): void {
    if (task.incoming) this.server.finished(task as AssocChannel);
  }

  /** @internal */
  endSession(session: Session<any>): void {
    if (session.ended) return;
    session.ended = true;
    session.resetHandles(this._exceptionFn);
    session.peerToken = releasePidfd(session.peerToken);
  }

  // ------------------------------------------------------------ client

  /**
   * `lwmsg_peer_add_connect_endpoint`: endpoints are tried in order at each
   * (re)connect — LOCAL a socket path, DIRECT a name a server of this
   * process listens on (e.g. DIRECT first, then LOCAL, as lwmsg's daemons'
   * clients do: in-process when the server is linked in, the socket otherwise).
   */
  addConnectEndpoint(mode: ConnectionMode, path: string): this {
    if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "addConnectEndpoint: the endpoint must be a non-empty string");
    if (mode === ConnectionMode.DIRECT) this.client.addEndpoint({ kind: "direct", name: path });
    else if (mode === ConnectionMode.LOCAL) this.client.addEndpoint({ kind: "local", path });
    else if (mode === ConnectionMode.REMOTE) {
      const { host } = parseHostPort(path);
      checkRemoteEndpoint(host, this.remote.tls, this.remote.allowInsecureTcp);
      this.client.addEndpoint({ kind: "remote", endpoint: path });
    } else throw new LwMsgError(Status.UNSUPPORTED, `addConnectEndpoint: unsupported mode ${mode} (LOCAL, REMOTE or DIRECT)`);
    return this;
  }

  /**
   * `lwmsg_peer_connect`: the outgoing session (created on first use). No
   * connection is made here: the first call connects, trying each endpoint
   * in order, and a later call reconnects if the connection was lost.
   */
  connect(): Promise<Session<P>> {
    return this.client.connect() as Promise<Session<P>>;
  }

  /** The outgoing session, if `connect`/`connectFd` created one. */
  get session(): Session<P> | null {
    return this.client.session as Session<P> | null;
  }

  /**
   * `lwmsg_peer_connect_fd`: the outgoing session over an already-connected
   * socket (e.g. a socketpair end, `ConnectionMode.PAIR`). The handshake
   * starts now; calls wait for it. INVALID_STATE if an outgoing session
   * already exists. Such a session cannot reconnect.
   */
  connectFd(mode: ConnectionMode, fd: number): Promise<Session<P>> {
    return this.client.connectFd(mode, fd) as Promise<Session<P>>;
  }

  /** @internal SessionTransport: a call on a session without a live connection. */
  call(session: Session<any>, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    return this.client.call(session, message, options);
  }

  /**
   * `lwmsg_peer_disconnect`: close the outgoing session. Outgoing calls in
   * flight reject with CANCELLED, incoming callback calls are cancelled, the
   * connection is dropped, and the session ends (handle cleanups, then its
   * handles are invalid). `connect()` afterwards starts a new session.
   */
  disconnect(): Promise<void> {
    return this.client.disconnect();
  }

  /** `lwmsg_peer_delete`: stop listening and disconnect. */
  async close(): Promise<void> {
    try {
      await this.server.rundown();
    } finally {
      await this.client.disconnect();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
