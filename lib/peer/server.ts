/**
 * The server half of a Peer (§7.2): its listen endpoints, the accept loop
 * with its client slots and per-uid limit, the handshake and session
 * constructor of each incoming connection, and `stopListen`'s rundown.
 * @module
 */
import { Connection, ConnectionMode, type ConnectionOptions } from "../connection.ts";
import type { Protocol } from "../protocol.ts";
import type { Session, SessionHooks } from "../session.ts";
import { LwMsgError, Status } from "../status.ts";
import { tokenToString } from "../token.ts";
import { ownPidfd } from "../pidfd.ts";
import type { Acceptor, Transport } from "../transport/types.ts";
import { adoptUnixSocketOrClose } from "../transport/unix.ts";
import { closeFd } from "../native/socket.ts";
import { UnixAcceptor, checkSocketDirectory, isAbstractPath } from "../transport/unix-listen.ts";
import { AssocChannel } from "./assoc-channel.ts";
import { DirectServer } from "./direct.ts";
import { TcpAcceptor } from "../transport/bun-listen.ts";
import type { RemoteTlsOptions } from "../transport/bun-socket.ts";
import type { TimeoutSweeper } from "./sweeper.ts";
import { asLwError, noop, type ChannelHost } from "./types.ts";

/** What the server reads from its Peer (the Peer implements it; no import of peer.ts here). */
export interface ServerHost extends ChannelHost {
  readonly protocol: Protocol<any>;
  /** REMOTE listen endpoints: TLS settings and the plain-TCP opt-in. */
  readonly remote: { tls: RemoteTlsOptions | null; allowInsecureTcp: boolean };
  readonly maxClients: number;
  readonly maxClientsPerUid: number | null;
  readonly backlog: number;
  readonly checkDirectory: boolean;
  readonly allowAnyUser: boolean;
  readonly sessionHooks: SessionHooks | null;
  newSession(direction: "incoming"): Session<any>;
  connectionOptions(session: Session<any>): ConnectionOptions;
  endSession(session: Session<any>): void;
}

export type ListenEndpoint =
  | { kind: "local"; path: string; perms: number }
  | { kind: "fd"; fd: number }
  | { kind: "direct"; name: string }
  | { kind: "remote"; host: string; port: number };

/** One listening endpoint of a server and its acceptor while started. */
class ListenPoint {
  acceptor: Acceptor | null = null;
  paused = false;
  dead = false;
  /** An fd handed over by addListenFd; consumed (owned, closed by close()) on the first open. */
  private givenFd: number;

  constructor(readonly endpoint: ListenEndpoint) {
    this.givenFd = endpoint.kind === "fd" ? endpoint.fd : -1;
  }

  open(backlog: number, remote: ServerHost["remote"]): void {
    const ep = this.endpoint;
    if (ep.kind === "direct") return;
    if (ep.kind === "remote") this.acceptor = TcpAcceptor.listen({ host: ep.host, port: ep.port, tls: remote.tls, allowInsecureTcp: remote.allowInsecureTcp });
    else if (ep.kind === "local") this.acceptor = UnixAcceptor.bind(ep.path, backlog, ep.perms);
    else {
      if (this.givenFd < 0) throw new LwMsgError(Status.INVALID_STATE, "listen fd was already used and closed by an earlier stopListen");
      // Owned from here on: a failure still closes it (and the number is never reused by a restart).
      const fd = this.givenFd;
      this.givenFd = -1;
      this.acceptor = UnixAcceptor.adopt(fd, backlog);
    }
  }

  close(): void {
    this.acceptor?.close();
    this.acceptor = null;
    this.paused = false;
  }
}

export const ServerState = { STOPPED: 0, STARTED: 1, ERROR: 2 } as const;
export type ServerState = (typeof ServerState)[keyof typeof ServerState];

export class PeerServer {
  state: ServerState = ServerState.STOPPED;
  stickyError: LwMsgError | null = null;
  private listenPoints: ListenPoint[] = [];
  private directNames: string[] = [];
  private directServers: DirectServer[] = [];
  /** Client slots in use: incoming connections (handshakes included) and sessions whose calls still run. */
  numClients = 0;
  /** Incoming connections per effective uid (maxClientsPerUid bookkeeping). */
  private readonly clientsByUid = new Map<number, number>();
  private readonly handshaking = new Set<Connection>();
  private readonly finishing = new Set<Promise<void>>();
  private stopGeneration = 0;
  /** drain() is running: connections that finish their handshake now are drained at once. */
  private draining = false;

  constructor(
    private readonly host: ServerHost,
    private readonly sweeper: TimeoutSweeper,
  ) {}

  addEndpoint(ep: ListenEndpoint): void {
    if (ep.kind === "direct") this.directNames.push(ep.name);
    else this.listenPoints.push(new ListenPoint(ep));
  }

  /** The socket paths listened on (for tests and diagnostics). */
  get paths(): string[] {
    return this.listenPoints.flatMap((lp) => (lp.endpoint.kind === "local" ? [lp.endpoint.path] : []));
  }

  /** REMOTE endpoints as listened on: `"host:port"` with the port picked for port 0 (while started). */
  get remoteAddresses(): string[] {
    return this.listenPoints.flatMap((lp) => {
      const ep = lp.endpoint;
      if (ep.kind !== "remote") return [];
      const port = lp.acceptor instanceof TcpAcceptor ? lp.acceptor.port : ep.port;
      return [ep.host.includes(":") ? `[${ep.host}]:${port}` : `${ep.host}:${port}`];
    });
  }

  async start(): Promise<void> {
    if (this.state === ServerState.ERROR) throw this.stickyError!;
    if (this.state === ServerState.STARTED) return;
    const host = this.host;
    // Policy checks first: a refusal opens nothing and is not sticky.
    for (const { endpoint: ep } of this.listenPoints) {
      if (ep.kind !== "local") continue;
      if (isAbstractPath(ep.path)) {
        if (!host.sessionHooks?.construct && !host.allowAnyUser) {
          throw new LwMsgError(Status.SECURITY, `startListen: abstract socket name ${JSON.stringify(ep.path)} has no file permissions, so any local user can connect; set onSession({ construct }) (e.g. authorize(sameUser())) or allowAnyUser: true`);
        }
      } else if (host.checkDirectory) checkSocketDirectory(ep.path);
    }
    try {
      for (const name of this.directNames) this.directServers.push(DirectServer.listen(name, host));
      for (const lp of this.listenPoints) lp.open(host.backlog, host.remote);
    } catch (e) {
      for (const d of this.directServers.splice(0)) void d.shutdown();
      for (const lp of this.listenPoints) lp.close();
      this.state = ServerState.ERROR;
      this.stickyError = asLwError(e);
      throw this.stickyError;
    }
    this.state = ServerState.STARTED;
    for (const lp of this.listenPoints) {
      lp.dead = false;
      lp.acceptor!.ref(); // a listening server keeps the process alive
    }
    this.sweeper.update();
    for (const lp of this.listenPoints) this.acceptLoop(lp);
  }

  /** Accept while there are free client slots; pause (kernel backlog keeps the rest) when full. */
  private acceptLoop(lp: ListenPoint): void {
    const acceptor = lp.acceptor;
    while (this.state === ServerState.STARTED && acceptor !== null && lp.acceptor === acceptor && !lp.dead) {
      if (this.numClients >= this.host.maxClients) {
        lp.paused = true;
        return;
      }
      lp.paused = false;
      let t: Transport | null;
      try {
        t = acceptor.accept();
      } catch (e) {
        // lwmsg's policy (§7.2 step 3): report, retry after BUSY/MEMORY/RESOURCE_LIMIT, stop for anything else.
        const err = asLwError(e);
        this.host._exception(err);
        if (err.status === Status.BUSY || err.status === Status.MEMORY || err.status === Status.RESOURCE_LIMIT) {
          const timer = setTimeout(() => this.acceptLoop(lp), 20);
          (timer as { unref?: () => void }).unref?.();
        } else lp.dead = true;
        return;
      }
      if (t === null) {
        acceptor.arm(() => this.acceptLoop(lp));
        return;
      }
      const uid = this.takeUidSlot(t);
      if (uid === null) continue;
      this.numClients++;
      this.acceptConnection(t, lp.endpoint.kind === "remote" ? ConnectionMode.REMOTE : ConnectionMode.LOCAL, uid).then(noop, noop);
    }
  }

  /**
   * maxClientsPerUid: count the new connection against its owner's uid (from
   * the kernel). Returns the uid (-1 when not limited), or null after closing
   * a connection over the limit.
   */
  private takeUidSlot(t: Transport): number | null {
    const limit = this.host.maxClientsPerUid;
    if (limit === null) return -1;
    let uid: number;
    try {
      const token = t.identity();
      if (token.type !== "local") return -1; // no uid to count (REMOTE peers)
      uid = token.euid;
    } catch (e) {
      t.close();
      this.host._warn(asLwError(e));
      return null;
    }
    const n = this.clientsByUid.get(uid) ?? 0;
    if (n >= limit) {
      t.close();
      this.host._warn(new LwMsgError(Status.BUSY, `refused a connection from uid ${uid}: it already has ${n} (maxClientsPerUid ${limit})`));
      return null;
    }
    this.clientsByUid.set(uid, n + 1);
    return uid;
  }

  private releaseSlot(uid: number): void {
    if (uid >= 0) {
      const n = this.clientsByUid.get(uid)! - 1;
      if (n > 0) this.clientsByUid.set(uid, n);
      else this.clientsByUid.delete(uid);
    }
    this.numClients--;
    if (this.numClients < this.host.maxClients) {
      for (const lp of this.listenPoints) if (lp.paused) queueMicrotask(() => this.acceptLoop(lp));
    }
  }

  /** Handshake on an accepted transport, run the session constructor, then serve. The caller holds a client slot for it. */
  private async acceptConnection(t: Transport, mode: ConnectionMode, uid = -1): Promise<Session<any>> {
    const host = this.host;
    const gen = this.stopGeneration;
    const session = host.newSession("incoming");
    let conn: Connection;
    try {
      conn = new Connection(host.protocol, host.connectionOptions(session));
    } catch (e) {
      t.close();
      this.releaseSlot(uid);
      throw e;
    }
    conn.setTransport(mode, t);
    conn.acceptCookie = session.acceptId;
    this.handshaking.add(conn);
    let constructed = false;
    let refused = false;
    const hooks = host.sessionHooks;
    try {
      await conn.accept(async (token, connectCookie) => {
        session.peerToken = token;
        session.connectId = connectCookie;
        if (hooks?.construct) {
          let d: unknown;
          try {
            d = await hooks.construct(token, session);
          } catch (e) {
            refused = true;
            throw e;
          }
          if (d !== undefined) session.data = d;
        }
        constructed = true;
        if (hooks?.destruct) session.destruct = hooks.destruct;
      });
    } catch (e) {
      this.handshaking.delete(conn);
      conn.destroy();
      this.releaseSlot(uid);
      if (constructed) host.endSession(session);
      // A refusal is the server's decision, worth an operator's eye (SECURITY.md §3): the exception hook hears of it.
      if (refused) {
        const err = asLwError(e, Status.SECURITY);
        host._warn(new LwMsgError(err.status, `refused client ${tokenToString(session.peerToken!)}: ${err.message.replace(/^[A-Z_]+: /, "")}`, { cause: e }));
      }
      throw e;
    }
    this.handshaking.delete(conn);
    session.peerToken = ownPidfd(session.peerToken); // the session's own pidfd: it may outlive the connection (closed by endSession)
    if (gen !== this.stopGeneration) {
      // stopListen ran during the handshake.
      conn.destroy();
      this.releaseSlot(uid);
      host.endSession(session);
      throw new LwMsgError(Status.CANCELLED, "the server stopped during the handshake");
    }
    const task = new AssocChannel(host, session, conn, true);
    task.slotUid = uid;
    session.task = task;
    this.sweeper.serverTasks.add(task);
    this.finishing.add(task.finished);
    this.sweeper.update();
    task.start();
    if (this.draining) void task.drain();
    return session;
  }

  /** `lwmsg_peer_accept_fd`: serve an already-connected socket as an incoming session. */
  acceptFd(mode: ConnectionMode, fd: number): Promise<Session<any>> {
    let t: Transport;
    try {
      t = adoptUnixSocketOrClose(fd, mode === ConnectionMode.PAIR);
    } catch (e) {
      return Promise.reject(e);
    }
    this.numClients++;
    const p = this.acceptConnection(t, mode);
    p.then(noop, noop);
    return p;
  }

  /** Stop accepting, drop every incoming connection, cancel their calls; resolves once they have all settled. */
  async rundown(): Promise<void> {
    this.stopGeneration++;
    this.state = this.state === ServerState.ERROR ? ServerState.ERROR : ServerState.STOPPED;
    for (const lp of this.listenPoints) lp.close();
    // A given listen fd is consumed.
    this.listenPoints = this.listenPoints.filter((lp) => lp.endpoint.kind !== "fd");
    for (const c of [...this.handshaking]) c.destroy();
    for (const c of [...this.host._closingConns]) c.destroy(); // goodbyes still flushing: stop waiting for slow readers
    for (const t of [...this.sweeper.serverTasks]) t.shutdown(new LwMsgError(Status.CANCELLED, "the server stopped listening"), false);
    await Promise.all(this.directServers.splice(0).map((d) => d.shutdown()));
    while (this.finishing.size > 0) await Promise.all([...this.finishing]);
    this.sweeper.update();
  }

  /** Stop the accept loops and close the listening sockets; a socket file handed off stays. Connections go on. */
  stopAccepting(): void {
    if (this.state !== ServerState.STARTED) return;
    this.state = ServerState.STOPPED;
    for (const lp of this.listenPoints) lp.close();
    this.listenPoints = this.listenPoints.filter((lp) => lp.endpoint.kind !== "fd"); // a given listen fd is consumed
  }

  /**
   * Peer.drain: stop accepting; each connection runs no new request, lets its
   * running calls reply and closes with SHUTDOWN(AGAIN); then stopListen's
   * rundown. After `timeoutMs`, whatever is left is dropped as stopListen
   * drops it. True if every connection drained in time.
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.stopAccepting();
    this.draining = true;
    let expired = false;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const expiry = new Promise<void>((r) => {
      timer = setTimeout(() => {
        expired = true;
        r();
      }, timeoutMs);
    });
    try {
      for (const t of [...this.sweeper.serverTasks]) void t.drain();
      while (!expired && (this.handshaking.size > 0 || this.finishing.size > 0)) {
        // A handshake still running becomes a task (drained at once) or fails: look again shortly.
        const settled = this.handshaking.size > 0 ? Bun.sleep(5) : Promise.all([...this.finishing]);
        await Promise.race([settled, expiry]);
      }
    } finally {
      clearTimeout(timer!);
      this.draining = false;
    }
    await this.rundown();
    return !expired;
  }

  /**
   * For each bound socket endpoint: a duplicate of its listening fd (caller
   * owns it) and its path (null for an fd given to addListenFd). The
   * endpoint is handed off from then on: closing it leaves the socket file.
   */
  handOffListenFds(): { fd: number; path: string | null }[] {
    if (this.state !== ServerState.STARTED) throw new LwMsgError(Status.INVALID_STATE, "handOffListenFds: the peer is not listening");
    const out: { fd: number; path: string | null }[] = [];
    try {
      for (const lp of this.listenPoints) {
        const a = lp.acceptor;
        if (a === null || !a.handOff) continue;
        out.push({ fd: a.handOff(), path: lp.endpoint.kind === "local" ? lp.endpoint.path : null });
      }
    } catch (e) {
      for (const h of out) closeFd(h.fd);
      throw e;
    }
    return out;
  }

  /** An incoming channel's connection is gone and its calls have settled: its client slot is free again. */
  finished(task: AssocChannel): void {
    this.finishing.delete(task.finished);
    this.host.endSession(task.session);
    this.releaseSlot(task.slotUid);
  }
}
