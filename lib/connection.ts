/**
 * `lwmsg_connection_*`: a bare association over a socket, wire-compatible
 * with lwmsg (reference §3–§4), and the {@link Listener} that hands out
 * accepted ones. The state machine itself is {@link Association}
 * (lib/assoc/association.ts); this module picks the transport for the mode
 * (LOCAL path, PAIR/LOCAL fd) and runs the handshake (§3.2) over it.
 * @module
 */
import { Association } from "./assoc/association.ts";
import { ReceivedMessage, type OutgoingMessage } from "./assoc/message.ts";
import { AssocState, ConnectionMode, Phase, checkConnectionOptions, checkPacketSize, checkProtocol, checkTimeout, type ConnectionOptions, type ConnectionSettings } from "./assoc/options.ts";
import { ReplyPoll } from "./assoc/reply-poll.ts";
import type { Protocol } from "./protocol.ts";
import { LwMsgError, Status } from "./status.ts";
import { tokensEqual, type LocalToken, type SecurityToken } from "./token.ts";
import type { Acceptor, Connector, Transport } from "./transport/types.ts";
import { UnixConnector, adoptUnixSocket, unixPair, type UnixTransport } from "./transport/unix.ts";
import { UnixAcceptor, checkSocketDirectory, isAbstractPath } from "./transport/unix-listen.ts";
import { TcpConnector } from "./transport/bun-connect.ts";
import { TcpAcceptor } from "./transport/bun-listen.ts";
import type { RemoteTlsOptions } from "./transport/bun-socket.ts";
import { checkRemoteEndpoint, parseHostPort } from "./transport/remote-endpoint.ts";
import { GREETING_SIZE, PacketType, decodeGreeting, encodeGreeting } from "./wire/packets.ts";

export { AssocState, ConnectionMode, ReceivedMessage, checkConnectionOptions, checkProtocol, tokensEqual };
export type { ConnectionOptions, ConnectionSettings, LocalToken, OutgoingMessage, SecurityToken };

/**
 * Checks the peer's token during the handshake; throwing refuses the peer.
 * Declared as methods so a check written for local tokens only
 * (`(t: LocalToken) => …`, as before REMOTE existed) still type-checks.
 */
export type ConnectAuthorize = { check(token: SecurityToken): void | Promise<void> }["check"];
export type AcceptAuthorize = { check(token: SecurityToken, connectCookie: Uint8Array): void | Promise<void> }["check"];

/**
 * An lwmsg association over a socket (`LWMsgAssoc` created by
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
export class Connection<P extends Protocol<any> = Protocol<any>> extends Association<P> {
  private mode: ConnectionMode = ConnectionMode.NONE;
  /** Where connect() goes (setEndpoint). */
  private connector: Connector | null = null;
  /** A socket given by setFd (or an accepted one), not yet started. */
  private given: Transport | null = null;
  private readonly remote: { tls: RemoteTlsOptions | null; allowInsecureTcp: boolean };
  /** ConnectionOptions.pidfd: the peer's token carries a pidfd. */
  private readonly wantPidfd: boolean;

  constructor(protocol: P, options: ConnectionOptions = {}) {
    super(protocol, options);
    this.remote = { tls: options.tls ?? null, allowInsecureTcp: options.allowInsecureTcp === true };
    this.wantPidfd = options.pidfd === true;
  }

  // ---------------------------------------------------------------- config

  /** `lwmsg_connection_set_packet_size`. INVALID_STATE once established. */
  setPacketSize(size: number): void {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, "setPacketSize: the packet size is fixed once the connection is established");
    this.ownPacketSize = this.packetSize = this.framer.packetSize = checkPacketSize(size);
  }

  /** `lwmsg_connection_set_fd`: use an already-connected socket. The connection takes ownership of `fd`. */
  setFd(mode: ConnectionMode, fd: number): void {
    if (mode !== ConnectionMode.LOCAL && mode !== ConnectionMode.PAIR) throw new LwMsgError(Status.UNSUPPORTED, `setFd: unsupported connection mode ${mode}`);
    if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `setFd: fd must be a non-negative integer, got ${fd}`);
    this.requireUnset("setFd");
    this.given = adoptUnixSocket(fd, mode === ConnectionMode.PAIR);
    this.mode = mode;
  }

  /** @internal an accepted transport (Listener, Peer). */
  setTransport(mode: ConnectionMode, t: Transport): void {
    this.requireUnset("setTransport");
    this.given = t;
    this.mode = mode;
  }

  /**
   * `lwmsg_connection_set_endpoint`: LOCAL — the socket path to connect to (a
   * leading `\0` makes a Linux abstract name); REMOTE — `"host:port"` or
   * `"[::1]:port"`, over TLS when `options.tls` is set (plain TCP only to a
   * loopback address unless `allowInsecureTcp`).
   */
  setEndpoint(mode: ConnectionMode, path: string): void {
    if (typeof path !== "string" || path.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "setEndpoint: the endpoint must be a non-empty string");
    let c: Connector;
    if (mode === ConnectionMode.LOCAL) c = new UnixConnector(path); // validates
    else if (mode === ConnectionMode.REMOTE) {
      const { host, port } = parseHostPort(path);
      checkRemoteEndpoint(host, this.remote.tls, this.remote.allowInsecureTcp);
      c = new TcpConnector(host, port, this.remote);
    } else throw new LwMsgError(Status.UNSUPPORTED, `setEndpoint: unsupported mode ${mode} (LOCAL or REMOTE)`);
    this.requireUnset("setEndpoint");
    this.connector = c;
    this.mode = mode;
  }

  private requireUnset(op: string): void {
    if (this.phase !== Phase.START || this.given !== null || this.connector !== null) throw new LwMsgError(Status.INVALID_STATE, `${op}: an fd or endpoint is already set`);
  }

  /** `lwmsg_assoc_set_timeout`: `"message"` or `"establish"`, in ms; null = none. `"idle"` is UNSUPPORTED on a bare connection. */
  setTimeout(kind: "message" | "establish" | "idle", ms: number | null): void {
    if (kind === "message") this.messageTimeout = checkTimeout(kind, ms);
    else if (kind === "establish") this.establishTimeout = checkTimeout(kind, ms);
    else if (kind === "idle") throw new LwMsgError(Status.UNSUPPORTED, "setTimeout: connections have no idle timeout (peers do)");
    else throw new LwMsgError(Status.INVALID_PARAMETER, `setTimeout: unknown timeout kind ${String(kind)}`);
  }

  get connectionMode(): ConnectionMode {
    return this.mode;
  }

  /** The socket fd of a UNIX connection (-1 when none). For tests and diagnostics; the library above never uses it. */
  get socketFd(): number {
    const t = (this.transport ?? this.given) as UnixTransport | null;
    return t !== null && typeof t.fd === "number" ? t.fd : -1;
  }

  /** @internal reply polls made, process-wide (for tests). */
  static get replyPolls(): number {
    return ReplyPoll.polls;
  }

  // ---------------------------------------------------------------- establish

  /**
   * `lwmsg_assoc_connect`: open the socket if an endpoint is set, send
   * CONNECT, receive ACCEPT. `authorize` runs with the server's token (from
   * the kernel) before the connection counts as established; throwing closes
   * it — e.g. `allowUids([0])` so a client only talks to a root daemon.
   */
  async connect(authorize?: ConnectAuthorize): Promise<void> {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, `connect: connection is ${this.describePhase()}`);
    if (this.given === null && this.connector === null) throw new LwMsgError(Status.INVALID_STATE, "connect: no fd or endpoint set");
    const deadline = this.establishTimeout === null ? null : Date.now() + this.establishTimeout;
    this.phase = Phase.CONNECTING;
    try {
      const t = this.given ?? (await this.connector!.connect(deadline));
      this.given = null;
      this.phase = Phase.HANDSHAKE;
      this.attach(t);
      await this.writeAll(encodeGreeting(PacketType.CONNECT, this.ownPacketSize, this.connectCookie), deadline, "sending CONNECT");
      const g = decodeGreeting(await this.readGreeting(GREETING_SIZE, deadline, "waiting for ACCEPT"), PacketType.ACCEPT);
      const token = t.identity({ pidfd: this.wantPidfd });
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
   * session-constructor point of §3.2); throwing refuses the peer.
   *
   * A refused peer gets SHUTDOWN(status) in place of ACCEPT (one
   * non-blocking write; 10 bytes always fit a fresh socket). Our clients read
   * SHUTDOWN(SECURITY) during the handshake as SECURITY; an lwmsg C client
   * maps any status but PEER_CLOSE/RESET/ABORT to PEER_ABORT
   * (connection-wire.c), so it sees PEER_ABORT.
   */
  async accept(authorize?: AcceptAuthorize): Promise<void> {
    if (this.phase !== Phase.START) throw new LwMsgError(Status.INVALID_STATE, `accept: connection is ${this.describePhase()}`);
    const t = this.given;
    if (t === null) throw new LwMsgError(Status.INVALID_STATE, "accept: no fd set (use setFd or Connection.listen)");
    this.given = null;
    const deadline = this.establishTimeout === null ? null : Date.now() + this.establishTimeout;
    this.phase = Phase.HANDSHAKE;
    try {
      this.attach(t);
      const g = decodeGreeting(await this.readGreeting(GREETING_SIZE, deadline, "waiting for CONNECT"), PacketType.CONNECT);
      const size = Math.min(this.ownPacketSize, g.packetSize);
      const token = t.identity({ pidfd: this.wantPidfd });
      if (authorize) {
        try {
          await authorize(token, g.cookie);
        } catch (e) {
          this.sendRefusal(e instanceof LwMsgError && e.status !== Status.SUCCESS ? e.status : Status.SECURITY);
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

  /** `lwmsg_assoc_reset`: send SHUTDOWN(PEER_RESET), close the socket → NOT_ESTABLISHED; reconnectable (endpoint kept; a setFd must be repeated). */
  async reset(): Promise<void> {
    await this.resetAssociation();
    this.given?.close();
    this.given = null;
    if (this.connector === null) this.mode = ConnectionMode.NONE;
  }

  override destroy(): void {
    this.given?.close();
    this.given = null;
    super.destroy();
  }

  override async close(): Promise<void> {
    this.given?.close();
    this.given = null;
    await super.close();
  }

  /** @internal as close(), with SHUTDOWN(`status`) (a draining server's AGAIN). */
  override async closeWith(status: number): Promise<void> {
    this.given?.close();
    this.given = null;
    await super.closeWith(status);
  }

  // ---------------------------------------------------------------- factories

  /** A socketpair with both ends established (PAIR mode). */
  static async pair<P extends Protocol<any>>(protocol: P, options: ConnectionOptions = {}): Promise<[Connection<P>, Connection<P>]> {
    const [ta, tb] = unixPair();
    let a: Connection<P>, b: Connection<P>;
    try {
      a = new Connection(protocol, options);
      b = new Connection(protocol, options);
    } catch (e) {
      ta.close();
      tb.close();
      throw e;
    }
    a.setTransport(ConnectionMode.PAIR, ta);
    b.setTransport(ConnectionMode.PAIR, tb);
    try {
      await Promise.all([a.connect(), b.accept()]);
    } catch (e) {
      a.destroy();
      b.destroy();
      throw e;
    }
    return [a, b];
  }

  /**
   * Listen on a socket path (unlink, bind, chmod `mode` (default 0600),
   * listen), or — REMOTE — on `{ host, port, tls }` over TCP or TLS (port 0
   * picks a free port: `listener.port` tells which).
   */
  static async listen<P extends Protocol<any>>(protocol: P, where: string | RemoteListenOptions, options: ListenOptions = {}): Promise<Listener<P>> {
    if (typeof where === "string") return new Listener(protocol, where, options);
    if (where === null || typeof where !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "listen: a socket path or { host, port, tls }");
    const { host, port, tls, allowInsecureTcp, ...rest } = where;
    return new Listener(protocol, { host, port, tls: tls ?? null, allowInsecureTcp: allowInsecureTcp === true }, { ...options, ...rest });
  }
}

/** Where a REMOTE listener listens (with any {@link ListenOptions}). */
export interface RemoteListenOptions extends ListenOptions {
  /** Address to bind: `"127.0.0.1"`, `"::1"`, `"0.0.0.0"`, a host name. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
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

/**
 * A listening socket that hands out established {@link Connection}s: the
 * bare-association counterpart of a peer's listen endpoint (§7.2 step 2).
 */
export class Listener<P extends Protocol<any> = Protocol<any>> {
  /** The socket path, or `"host:port"` for REMOTE. */
  readonly path: string;
  /** REMOTE: the port listened on (the one picked when 0 was asked); -1 for a socket path. */
  readonly port: number;
  private readonly acceptor: Acceptor;
  private readonly mode: ConnectionMode;
  private waiters: { resolve: (t: Transport) => void; reject: (e: unknown) => void }[] = [];
  private closed = false;

  constructor(
    readonly protocol: P,
    where: string | { host: string; port: number; tls: RemoteTlsOptions | null; allowInsecureTcp: boolean },
    private readonly options: ListenOptions = {},
  ) {
    const mode = options.mode ?? 0o600;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new LwMsgError(Status.INVALID_PARAMETER, `listen: mode must be a permission number like 0o600, got ${mode}`);
    const backlog = options.backlog ?? 8;
    if (!Number.isInteger(backlog) || backlog < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `listen: backlog must be a positive integer, got ${backlog}`);
    // Validate the protocol and connection options now, not at the first accept.
    checkProtocol(protocol);
    checkConnectionOptions(options);
    if (typeof where === "string") {
      this.path = where;
      this.port = -1;
      this.mode = ConnectionMode.LOCAL;
      if (options.checkDirectory !== false) checkSocketDirectory(where);
      this.acceptor = UnixAcceptor.bind(where, backlog, mode);
    } else {
      const a = TcpAcceptor.listen({ host: where.host, port: where.port, tls: where.tls, allowInsecureTcp: where.allowInsecureTcp, ...(options.backlog !== undefined ? { backlog } : {}) });
      this.acceptor = a;
      this.port = a.port;
      this.path = where.host.includes(":") ? `[${where.host}]:${a.port}` : `${where.host}:${a.port}`;
      this.mode = ConnectionMode.REMOTE;
    }
  }

  /** The listening socket fd (-1 for REMOTE: Bun owns that socket). */
  get fd(): number {
    return this.acceptor instanceof UnixAcceptor ? this.acceptor.listeningFd : -1;
  }

  /** Accept the next client and run the lwmsg handshake (`authorize` as in {@link Connection.accept}). */
  async accept(authorize?: AcceptAuthorize): Promise<Connection<P>> {
    if (authorize === undefined && this.mode === ConnectionMode.LOCAL && isAbstractPath(this.path) && this.options.allowAnyUser !== true) {
      throw new LwMsgError(Status.SECURITY, "accept on an abstract socket name: it has no file permissions, so any local user can connect; pass an authorize function (or allowAnyUser: true when listening)");
    }
    const t = await this.acceptTransport();
    let c: Connection<P>;
    try {
      c = new Connection(this.protocol, this.options);
    } catch (e) {
      t.close();
      throw e;
    }
    c.setTransport(this.mode, t);
    try {
      await c.accept(authorize);
    } catch (e) {
      c.destroy();
      throw e;
    }
    return c;
  }

  /** Accept one socket without the handshake: the caller owns the fd (raw wire tests use this). */
  async acceptRaw(): Promise<number> {
    return ((await this.acceptTransport()) as UnixTransport).detach();
  }

  /** Accept one transport without the handshake. */
  private acceptTransport(): Promise<Transport> {
    if (this.closed) return Promise.reject(new LwMsgError(Status.INVALID_STATE, "accept: listener is closed"));
    if (this.waiters.length === 0) {
      let t: Transport | null;
      try {
        t = this.acceptor.accept(); // throws the mapped status (EMFILE → RESOURCE_LIMIT); null when nothing is pending
      } catch (e) {
        return Promise.reject(e);
      }
      if (t !== null) return Promise.resolve(t);
    }
    return new Promise<Transport>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.waiters.length === 1) {
        this.acceptor.ref();
        this.acceptor.arm(this.onPending);
      }
    });
  }

  private onPending = (): void => {
    while (this.waiters.length > 0) {
      let t: Transport | null;
      try {
        t = this.acceptor.accept();
      } catch (e) {
        // EMFILE and friends: report to this waiter, keep listening for the others.
        this.waiters.shift()!.reject(e);
        continue;
      }
      if (t === null) break;
      this.waiters.shift()!.resolve(t);
    }
    if (this.waiters.length > 0) this.acceptor.arm(this.onPending);
    else this.acceptor.unref();
  };

  /**
   * Stop listening: close the socket, remove the socket file if the path
   * still names the one this listener bound (deleted or replaced by another
   * server's socket meanwhile: left alone), fail pending accepts with CANCELLED.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.acceptor.close();
    for (const w of this.waiters.splice(0)) w.reject(new LwMsgError(Status.CANCELLED, "listener closed"));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
