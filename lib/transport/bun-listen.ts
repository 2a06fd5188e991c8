/**
 * Listening REMOTE endpoints on `Bun.listen` (TCP or TLS). Bun accepts
 * eagerly; this acceptor holds what it accepted until `accept()` takes it,
 * like a kernel backlog: a bounded queue (beyond it, new connections are
 * closed at once), and for TLS a bounded set of handshakes in progress, each
 * with a deadline. A TLS client is queued only after its handshake, and —
 * when the server asks for client certificates (`requestCert`) and does not
 * set `rejectUnauthorized: false` — only if its certificate verified: a
 * client that sent none or an unverified one never reaches `accept()`.
 * @module
 */
import { isIP } from "node:net";
import { LwMsgError, Status } from "../status.ts";
import { BunSocketTransport, SOCKET_HANDLERS, checkBufferBound, type BunSocket, type RemoteTlsOptions } from "./bun-socket.ts";
import { checkPortNumber, checkRemoteEndpoint } from "./remote-endpoint.ts";
import type { Acceptor } from "./types.ts";

export interface TcpListenOptions {
  /** Address to bind (`"127.0.0.1"`, `"::1"`, `"0.0.0.0"`, a name). */
  host: string;
  /** Port; 0 picks a free one ({@link TcpAcceptor.port} tells which). */
  port: number;
  /** TLS settings (`key` and `cert` required); null/absent = plain TCP (loopback only unless {@link allowInsecureTcp}). */
  tls?: RemoteTlsOptions | null;
  /** Allow plain TCP on an address that is not loopback: unauthenticated and readable on the network. */
  allowInsecureTcp?: boolean;
  /** Connections held (handshaking or waiting for accept()) before new ones are closed (default 128). */
  backlog?: number;
  /** Most ms a TLS client may take for its handshake before it is dropped (default 10,000). */
  handshakeTimeout?: number;
  /** Per connection: see {@link DEFAULT_MAX_BUFFERED_INPUT}. */
  maxBufferedInput?: number;
}

const DEFAULT_BACKLOG = 128;
const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

/** A listening TCP/TLS socket that hands out {@link BunSocketTransport}s. */
export class TcpAcceptor implements Acceptor {
  readonly description: string;
  readonly host: string;
  /** The port bound (the one picked when 0 was asked for). */
  readonly port: number;
  private readonly listener: Bun.TCPSocketListener<unknown>;
  private readonly ready: BunSocketTransport[] = [];
  private readonly handshaking = new Map<BunSocketTransport, ReturnType<typeof setTimeout>>();
  private onPending: (() => void) | null = null;
  private fireScheduled = false;
  private closed = false;
  private readonly backlog: number;
  private readonly handshakeTimeout: number;
  private readonly maxBufferedInput: number;
  private readonly requireClientCert: boolean;
  private readonly isTls: boolean;
  /** Connections closed at once because the backlog was full, or dropped in or after a failed TLS handshake (for tests and diagnostics). */
  refused = 0;

  private constructor(opts: TcpListenOptions) {
    const tls = opts.tls ?? null;
    checkRemoteEndpoint(opts.host, tls, opts.allowInsecureTcp === true);
    checkPortNumber(opts.port, true);
    if (tls !== null && (!tls.key || !tls.cert)) throw new LwMsgError(Status.INVALID_PARAMETER, "listen with tls: key and cert are required");
    this.backlog = opts.backlog ?? DEFAULT_BACKLOG;
    if (!Number.isInteger(this.backlog) || this.backlog < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `backlog must be a positive integer, got ${opts.backlog}`);
    this.handshakeTimeout = opts.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
    if (!(this.handshakeTimeout > 0)) throw new LwMsgError(Status.INVALID_PARAMETER, `handshakeTimeout must be a positive number of ms, got ${opts.handshakeTimeout}`);
    this.maxBufferedInput = checkBufferBound(opts.maxBufferedInput);
    this.requireClientCert = tls !== null && tls.requestCert === true && tls.rejectUnauthorized !== false;
    this.isTls = tls !== null;
    const kind = tls ? "tls" : "tcp";
    try {
      this.listener = Bun.listen<unknown>({
        hostname: opts.host,
        port: opts.port,
        ...(tls ? { tls } : {}),
        data: this,
        socket: { ...(SOCKET_HANDLERS as unknown as Bun.SocketHandler<unknown>), open: (s: Bun.Socket<unknown>) => this.onOpen(s as unknown as BunSocket) },
      });
    } catch (e) {
      throw listenError(e, `listen on ${kind} ${opts.host}:${opts.port}`);
    }
    this.listener.unref(); // accept() callers ref while they wait
    this.host = opts.host;
    this.port = this.listener.port;
    this.description = `${kind} ${isIP(opts.host) === 6 ? `[${opts.host}]` : opts.host}:${this.port}`;
  }

  /** Bind and listen (INVALID_PARAMETER for bad options or TLS material, SECURITY for plain TCP off loopback, SYSTEM for EADDRINUSE and the like). */
  static listen(opts: TcpListenOptions): TcpAcceptor {
    return new TcpAcceptor(opts);
  }

  private onOpen(s: BunSocket): void {
    const t = new BunSocketTransport(this.isTls, `${this.isTls ? "tls" : "tcp"} peer ${s.remoteAddress}:${s.remotePort}`, this.maxBufferedInput);
    s.data = t;
    t.onOpen(s);
    s.unref();
    if (this.closed || this.ready.length + this.handshaking.size >= this.backlog) {
      this.refused++;
      t.terminate();
      return;
    }
    if (!this.isTls) {
      this.enqueue(t);
      return;
    }
    const timer = setTimeout(() => this.dropHandshake(t), this.handshakeTimeout);
    timer.unref();
    this.handshaking.set(t, timer);
    t.hooks = {
      handshake: (tr, _ok, err) => {
        this.endHandshake(tr);
        // Bun also closes a client whose certificate did not verify; the check here does not rely on it.
        if (this.requireClientCert && (err !== null || tr.socket?.authorized !== true)) return this.dropHandshake(tr);
        this.enqueue(tr);
      },
      close: (tr) => this.dropHandshake(tr),
    };
  }

  private endHandshake(t: BunSocketTransport): void {
    const timer = this.handshaking.get(t);
    if (timer !== undefined) clearTimeout(timer);
    this.handshaking.delete(t);
    t.hooks = null;
  }

  private dropHandshake(t: BunSocketTransport): void {
    this.endHandshake(t);
    if (!t.isClosed) {
      this.refused++;
      t.terminate();
    }
  }

  private enqueue(t: BunSocketTransport): void {
    this.ready.push(t);
    this.schedulePending();
  }

  private schedulePending(): void {
    if (this.fireScheduled || this.onPending === null || this.ready.length === 0) return;
    this.fireScheduled = true;
    queueMicrotask(() => {
      this.fireScheduled = false;
      const f = this.onPending;
      this.onPending = null;
      f?.();
    });
  }

  accept(): BunSocketTransport | null {
    if (this.closed) throw new LwMsgError(Status.INVALID_STATE, `accept on ${this.description}: closed`);
    return this.ready.shift() ?? null;
  }

  arm(onPending: () => void): void {
    this.onPending = onPending;
    this.schedulePending();
  }

  ref(): void {
    if (!this.closed) this.listener.ref();
  }

  unref(): void {
    if (!this.closed) this.listener.unref();
  }

  /** Connections waiting for accept() (for tests). */
  get pending(): number {
    return this.ready.length;
  }

  /** Stop listening; close the connections not yet accepted. Accepted ones are theirs to close. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onPending = null;
    this.listener.unref();
    this.listener.stop(false);
    for (const t of this.ready.splice(0)) t.terminate();
    for (const t of [...this.handshaking.keys()]) this.dropHandshake(t);
  }
}

function listenError(e: unknown, what: string): LwMsgError {
  if (e instanceof LwMsgError) return e;
  const code = String((e as { code?: unknown }).code ?? "");
  const msg = (e as Error).message ?? String(e);
  if (code.startsWith("ERR_OSSL") || /PEM|X509|SSL|key|cert/i.test(msg)) return new LwMsgError(Status.INVALID_PARAMETER, `${what}: bad TLS key or certificate: ${msg}`, { cause: e });
  if (code === "EADDRINUSE") return new LwMsgError(Status.SYSTEM, `${what}: address already in use (EADDRINUSE)`, { errno: 98, cause: e });
  if (code === "EADDRNOTAVAIL") return new LwMsgError(Status.SYSTEM, `${what}: no such local address (EADDRNOTAVAIL)`, { errno: 99, cause: e });
  if (code === "EACCES") return new LwMsgError(Status.SYSTEM, `${what}: permission denied (EACCES: a port below 1024?)`, { errno: 13, cause: e });
  return new LwMsgError(Status.SYSTEM, `${what}: ${msg}${code ? ` (${code})` : ""}`, { cause: e });
}
