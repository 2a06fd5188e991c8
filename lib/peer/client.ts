/**
 * The client half of a Peer (§7.3): its connect endpoints, tried in order at
 * each (re)connect; the outgoing session, connected lazily by its first call
 * and reconnected after a lost connection; lwmsg's reconnect rules (the
 * server's identity must not change; a new server instance resets handles).
 * @module
 */
import type { CallOptions } from "../call.ts";
import { CallError } from "../call.ts";
import { Connection, ConnectionMode, type ConnectionOptions, type OutgoingMessage, type ReceivedMessage } from "../connection.ts";
import type { Session } from "../session.ts";
import { LwMsgError, Status } from "../status.ts";
import { tokenCanAccess } from "../token.ts";
import type { TokenCheck } from "../security.ts";
import { AssocChannel } from "./assoc-channel.ts";
import { ownPidfd } from "../pidfd.ts";
import { DirectChannel, connectDirect } from "./direct.ts";
import type { TimeoutSweeper } from "./sweeper.ts";
import { RETRY_CONNECT, asLwError, noop, sameBytes, type ChannelHost } from "./types.ts";

/** What the client reads from its Peer (the Peer implements it; no import of peer.ts here). */
export interface ClientHost extends ChannelHost {
  readonly protocol: import("../protocol.ts").Protocol<any>;
  readonly authorizeServer: TokenCheck | null;
  newSession(direction: "outgoing"): Session<any>;
  connectionOptions(session: Session<any>): ConnectionOptions;
  endSession(session: Session<any>): void;
}

export type ConnectEndpoint = { kind: "local"; path: string } | { kind: "direct"; name: string } | { kind: "remote"; endpoint: string };
type Channel = AssocChannel | DirectChannel;

/** Internal per-session bookkeeping of outgoing sessions. */
interface ClientSessionState {
  /** Connect endpoints apply (false for connectFd sessions: no reconnect). */
  reconnectable: boolean;
  connecting: Promise<Channel> | null;
  /** The connection being handshaken right now (disconnect destroys it). */
  pending: Connection | null;
  closed: boolean;
}

export class PeerClient {
  private connectEndpoints: ConnectEndpoint[] = [];
  private connectSession: Session<any> | null = null;
  private readonly clientState = new WeakMap<Session, ClientSessionState>();

  constructor(
    private readonly host: ClientHost,
    private readonly sweeper: TimeoutSweeper,
  ) {}

  addEndpoint(ep: ConnectEndpoint): void {
    this.connectEndpoints.push(ep);
  }

  /**
   * `lwmsg_peer_connect`: the outgoing session (created on first use). No
   * connection is made here: the first call connects, trying each endpoint
   * in order, and a later call reconnects if the connection was lost.
   */
  async connect(): Promise<Session<any>> {
    if (this.connectSession) return this.connectSession;
    const s = this.host.newSession("outgoing");
    this.clientState.set(s, { reconnectable: true, connecting: null, pending: null, closed: false });
    this.connectSession = s;
    return s;
  }

  /** The outgoing session, if `connect`/`connectFd` created one. */
  get session(): Session<any> | null {
    return this.connectSession;
  }

  /**
   * `lwmsg_peer_connect_fd`: the outgoing session over an already-connected
   * socket (e.g. a socketpair end, `ConnectionMode.PAIR`). The handshake
   * starts now; calls wait for it. INVALID_STATE if an outgoing session
   * already exists. Such a session cannot reconnect.
   */
  async connectFd(mode: ConnectionMode, fd: number): Promise<Session<any>> {
    if (this.connectSession) throw new LwMsgError(Status.INVALID_STATE, "connectFd: an outgoing session already exists (disconnect first)");
    const s = this.host.newSession("outgoing");
    const cs: ClientSessionState = { reconnectable: false, connecting: null, pending: null, closed: false };
    this.clientState.set(s, cs);
    const conn = new Connection(this.host.protocol, this.host.connectionOptions(s));
    conn.setFd(mode, fd);
    this.connectSession = s;
    cs.connecting = this.establishClient(s, cs, conn);
    cs.connecting.then(noop, noop);
    return s;
  }

  /** @internal SessionTransport: a call on a session without a live connection. */
  call(session: Session<any>, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    if (session.ended) return Promise.reject(new LwMsgError(Status.INVALID_STATE, "call: the session has ended (disconnected)"));
    const cs = this.clientState.get(session);
    if (!cs) {
      const t = session.task as AssocChannel | null;
      return Promise.reject(t?.error ?? new LwMsgError(Status.INVALID_STATE, "call: the session has no connection"));
    }
    return this.connectAndCall(session, cs, message, options);
  }

  private async connectAndCall(session: Session<any>, cs: ClientSessionState, message: OutgoingMessage, options: CallOptions | undefined): Promise<ReceivedMessage> {
    const signal = options?.signal;
    if (signal?.aborted) throw new CallError(Status.CANCELLED, "call cancelled before it was sent", null);
    const connecting = this.ensureConnected(session, cs);
    let task: Channel;
    if (signal) {
      let onAbort: (() => void) | null = null;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(new CallError(Status.CANCELLED, "call cancelled before it was sent", null));
        signal.addEventListener("abort", onAbort, { once: true });
      });
      try {
        task = await Promise.race([connecting, aborted]);
      } finally {
        signal.removeEventListener("abort", onAbort!);
      }
    } else task = await connecting;
    return task.call(message, options);
  }

  private ensureConnected(session: Session<any>, cs: ClientSessionState): Promise<Channel> {
    const t = session.task as Channel | null;
    if (t !== null && t.status === 0) return Promise.resolve(t);
    if (cs.connecting) return cs.connecting;
    if (!cs.reconnectable) return Promise.reject(t?.error ?? new LwMsgError(Status.INVALID_STATE, "the session's connection is gone and cannot be remade (connectFd)"));
    const p = this.connectEndpointsFor(session, cs);
    cs.connecting = p;
    p.then(
      () => {
        if (cs.connecting === p) cs.connecting = null;
      },
      () => {
        if (cs.connecting === p) cs.connecting = null;
      },
    );
    return p;
  }

  /** Try each connect endpoint in order (§7.3 step 2). */
  private async connectEndpointsFor(session: Session<any>, cs: ClientSessionState): Promise<Channel> {
    if (this.connectEndpoints.length === 0) throw new LwMsgError(Status.INVALID_STATE, "no connect endpoint (addConnectEndpoint)");
    let last: LwMsgError | null = null;
    for (const ep of this.connectEndpoints) {
      try {
        if (ep.kind === "direct") return await this.establishDirect(session, cs, ep.name);
        const conn = new Connection(this.host.protocol, this.host.connectionOptions(session));
        if (ep.kind === "remote") conn.setEndpoint(ConnectionMode.REMOTE, ep.endpoint);
        else conn.setEndpoint(ConnectionMode.LOCAL, ep.path);
        return await this.establishClient(session, cs, conn);
      } catch (e) {
        const err = asLwError(e);
        last = err;
        if (!RETRY_CONNECT.has(err.status)) throw err;
      }
    }
    throw last!;
  }

  /** Handshake an outgoing connection and apply lwmsg's reconnect rules (token check, session reset on a new server instance). */
  private async establishClient(session: Session<any>, cs: ClientSessionState, conn: Connection): Promise<AssocChannel> {
    conn.connectCookie = session.connectId;
    if (cs.closed) {
      conn.destroy();
      throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
    }
    cs.pending = conn;
    try {
      await conn.connect(this.host.authorizeServer ?? undefined);
    } catch (e) {
      conn.destroy();
      throw cs.closed ? new LwMsgError(Status.CANCELLED, "disconnected while connecting") : e;
    } finally {
      if (cs.pending === conn) cs.pending = null;
    }
    if (cs.closed || session.ended) {
      conn.destroy();
      throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
    }
    try {
      this.adoptServer(session, conn.peerToken!, conn.peerCookie!);
    } catch (e) {
      conn.destroy();
      throw e;
    }
    const task = new AssocChannel(this.host, session, conn, false);
    session.task = task;
    this.sweeper.clientTasks.add(task);
    this.sweeper.update();
    task.start();
    return task;
  }

  /** lwmsg's reconnect rules: the server's identity must not change; a new server instance (accept cookie) resets the session's handles. */
  private adoptServer(session: Session<any>, token: NonNullable<Session<any>["peerToken"]>, accept: Uint8Array): void {
    if (session.peerToken !== null) {
      if (!tokenCanAccess(session.peerToken, token)) throw new LwMsgError(Status.SECURITY, "reconnected to a server with a different identity");
      if (!sameBytes(session.acceptId, accept) && session.handleCount > 0) session.resetHandles(this.host._exceptionFn);
    } else session.peerToken = ownPidfd(token); // the first server's, for the session's life (closed by endSession)
    session.acceptId = accept;
  }

  /** Connect to a DIRECT endpoint of this process: no socket, the token is our own credentials. */
  private async establishDirect(session: Session<any>, cs: ClientSessionState, name: string): Promise<DirectChannel> {
    if (cs.closed) throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
    const ch = await connectDirect(name, this.host, session);
    try {
      if (cs.closed || session.ended) throw new LwMsgError(Status.CANCELLED, "disconnected while connecting");
      const { token, acceptId } = ch.peer;
      if (this.host.authorizeServer) await this.host.authorizeServer(token!);
      this.adoptServer(session, token!, acceptId);
    } catch (e) {
      await ch.disconnect();
      throw e;
    }
    return ch;
  }

  /**
   * `lwmsg_peer_disconnect`: close the outgoing session. Outgoing calls in
   * flight reject with CANCELLED, incoming callback calls are cancelled, the
   * connection is dropped, and the session ends (handle cleanups, then its
   * handles are invalid). `connect()` afterwards starts a new session.
   */
  async disconnect(): Promise<void> {
    const s = this.connectSession;
    if (!s) return;
    this.connectSession = null;
    const cs = this.clientState.get(s);
    if (cs) {
      cs.closed = true;
      cs.pending?.destroy();
    }
    if (cs?.connecting) await cs.connecting.then(noop, noop);
    const t = s.task as Channel | null;
    if (t instanceof DirectChannel) await t.disconnect();
    else if (t) {
      t.shutdown(new LwMsgError(Status.CANCELLED, "disconnected"), false);
      await t.finished;
    }
    this.host.endSession(s);
  }
}
