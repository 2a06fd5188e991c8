/**
 * REMOTE transports on Bun's own sockets (`Bun.connect` / `Bun.listen`),
 * plain TCP or TLS. Bun pushes data at us in callbacks; the association
 * pulls. {@link BunSocketTransport} adapts one to the other: incoming chunks
 * wait in a queue that read() copies out of, bounded by pausing the socket
 * (a peer cannot grow our memory while nobody reads); write() returns what
 * Bun took; READABLE and WRITABLE (Bun's `drain`) are one-shot, delivered on
 * a microtask. The peer's identity comes from the TLS session (the verified
 * certificate) or, for plain TCP, is only an address.
 *
 * Connecting is transport/bun-connect.ts, listening transport/bun-listen.ts;
 * endpoint parsing and the plain-TCP policy transport/remote-endpoint.ts.
 * @module
 */
import { PushReadiness } from "./readiness.ts";
import type { PeerCertificate } from "node:tls";
import { Errno, LwMsgError, Status } from "../status.ts";
import type { AddressToken, SecurityToken, X509Token } from "../token.ts";
import { AGAIN, READABLE, WRITABLE, type Transport, type TransportCaps } from "./types.ts";

const REMOTE_CAPS: TransportCaps = { fds: false, replyPoll: false };

/** TLS settings, as Bun takes them (`key`, `cert`, `ca`, `serverName`, `requestCert`, `rejectUnauthorized`, `passphrase`, ...). */
export type RemoteTlsOptions = Bun.TLSOptions;

/**
 * Input held for the association before the socket is paused (default
 * 256 KiB). Bun may deliver one more read after the pause, so the most a
 * connection buffers is this plus one socket read (at most 512 KiB in Bun 1.4).
 */
export const DEFAULT_MAX_BUFFERED_INPUT = 256 * 1024;

/** Bun's socket with our transport as its `data`. */
export type BunSocket = Bun.Socket<BunSocketTransport>;

/** Hooks the connector / acceptor sets while a socket is not yet handed over. */
export interface EstablishHooks {
  handshake?(t: BunSocketTransport, ok: boolean, err: Error | null): void;
  close?(t: BunSocketTransport, err: Error | undefined): void;
}

/** One TCP or TLS socket, adapted to the pull-based {@link Transport}. */
export class BunSocketTransport extends PushReadiness implements Transport {
  readonly caps = REMOTE_CAPS;
  readonly truncated = false;
  description: string;
  /** Set once the socket exists (open). */
  socket: BunSocket | null = null;
  /** The connector/acceptor's hooks until the socket is handed over. */
  hooks: EstablishHooks | null = null;
  private token: SecurityToken | null = null;
  /** A TLS failure, or why the stream ended, when the transport knows more than EOF (see {@link failure}). */
  private failed: LwMsgError | null = null;

  // input
  private readonly chunks: Uint8Array[] = [];
  private head = 0;
  private buffered = 0;
  private paused = false;
  /** FIN received, or the socket closed under us. */
  private eof = false;
  private reset = false;

  // output and readiness
  private writeBlocked = false;
  private refd = false;

  constructor(
    readonly tls: boolean,
    description: string,
    private readonly maxBufferedInput: number = DEFAULT_MAX_BUFFERED_INPUT,
  ) {
    super();
    this.description = description;
  }

  // ---------------------------------------------------------------- Bun's callbacks (via SOCKET_HANDLERS)

  /** @internal */
  onOpen(s: BunSocket): void {
    this.socket = s;
    if (this.closed) {
      s.terminate(); // given up (timed out) before the connect completed
      return;
    }
    s.setNoDelay(true); // the association batches per turn: Nagle would only add latency
    if (!this.tls) this.token = addressToken(s);
  }

  /** @internal */
  onHandshake(s: BunSocket, ok: boolean, err: Error | null): void {
    this.token = x509Token(s, err);
    this.hooks?.handshake?.(this, ok, err);
  }

  /** @internal */
  onData(d: Uint8Array): void {
    if (this.closed) return;
    this.chunks.push(d); // Bun hands over a fresh buffer per callback: kept as it is, copied once by read()
    this.buffered += d.length;
    if (!this.paused && this.buffered >= this.maxBufferedInput) {
      this.paused = true;
      this.socket?.pause();
    }
    this.maybeDeliver();
  }

  /** @internal */
  onDrain(): void {
    this.writeBlocked = false;
    this.maybeDeliver();
  }

  /** @internal FIN from the peer. */
  onEnd(): void {
    this.eof = true;
    this.maybeDeliver();
  }

  /** @internal a TLS failure or a handler error. Bun closes the socket after a TLS failure. */
  onError(err: Error): void {
    this.failed ??= mapSocketError(err, this.description);
  }

  /** @internal */
  onClose(err: Error | undefined): void {
    this.eof = true;
    if (err) {
      this.reset = true;
      this.failed ??= mapSocketError(err, this.description);
    }
    const h = this.hooks;
    if (h?.close) h.close(this, err);
    this.maybeDeliver();
  }

  // ---------------------------------------------------------------- Transport

  read(dst: Uint8Array, off: number, len: number, _fds: number[] | null, _maxFds: number): number {
    if (this.closed) return -Errno.EBADF;
    if (this.buffered === 0) {
      if (this.reset) return -Errno.ECONNRESET;
      return this.eof ? 0 : AGAIN;
    }
    let n = 0;
    const chunks = this.chunks;
    while (n < len && chunks.length > 0) {
      const c = chunks[0]!;
      const take = Math.min(len - n, c.length - this.head);
      dst.set(this.head === 0 && take === c.length ? c : c.subarray(this.head, this.head + take), off + n);
      n += take;
      this.head += take;
      if (this.head === c.length) {
        chunks.shift();
        this.head = 0;
      }
    }
    this.buffered -= n;
    if (this.paused && this.buffered <= this.maxBufferedInput >>> 1) {
      this.paused = false;
      this.socket?.resume();
    }
    return n;
  }

  write(src: Uint8Array, off: number, len: number, _fds: Int32Array | null, nfds: number): number {
    if (this.closed) return -Errno.EBADF;
    if (nfds > 0) return -Errno.EINVAL; // caps.fds is false: the association refuses such messages before this
    const s = this.socket;
    if (s === null || this.eof) return -Errno.EPIPE;
    if (len === 0) return 0;
    const n = s.write(off === 0 && len === src.length ? src : src.subarray(off, off + len));
    if (n < 0) return -Errno.EPIPE;
    if (n < len) this.writeBlocked = true; // Bun calls drain once the kernel takes more
    return n === 0 ? AGAIN : n;
  }

  protected readyEvents(): number {
    let ev = 0;
    if (this.buffered > 0 || this.eof) ev |= READABLE;
    if (!this.writeBlocked || this.eof) ev |= WRITABLE;
    return ev;
  }

  waitReadable(_us: number): boolean {
    return false; // no blocking wait on the JS thread for a Bun socket
  }

  inputPending(): boolean {
    return this.buffered > 0 || this.eof;
  }

  /** The peer's identity: the TLS peer certificate ({@link X509Token}), or for plain TCP its address ({@link AddressToken}). */
  identity(): SecurityToken {
    if (this.token === null) throw new LwMsgError(Status.INVALID_STATE, `${this.description}: no peer identity yet (handshake not done)`);
    return this.token;
  }

  /**
   * Why the stream failed when the transport knows more than EOF or an errno
   * tells: a TLS alert from the peer (`certificate required`: SECURITY), a
   * record that did not decrypt. Null when it just ended.
   */
  get failure(): LwMsgError | null {
    return this.failed;
  }

  /** Bytes received and not yet read (for tests: the input bound). */
  get bufferedInput(): number {
    return this.buffered;
  }

  /** True while reading is paused because {@link bufferedInput} reached the bound. */
  get inputPaused(): boolean {
    return this.paused;
  }

  ref(): void {
    if (!this.refd && !this.closed) {
      this.refd = true;
      this.socket?.ref();
    }
  }

  unref(): void {
    if (this.refd) {
      this.refd = false;
      this.socket?.unref();
    }
  }

  /**
   * End the connection: FIN (TLS: close_notify) after what the kernel holds,
   * fd closed by Bun. Unread input is dropped. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.stopReadiness();
    this.hooks = null;
    this.chunks.length = 0;
    this.buffered = 0;
    const s = this.socket;
    if (s !== null) {
      s.unref();
      this.refd = false;
      s.end();
    }
  }

  /** Close at once (RST): for sockets refused before they were handed over. */
  terminate(): void {
    this.close();
    this.socket?.terminate();
  }

  /** @internal true once close() ran. */
  get isClosed(): boolean {
    return this.closed;
  }
}

/** Bun's callbacks for every REMOTE socket: each forwards to the transport in `socket.data`. */
export const SOCKET_HANDLERS: Bun.SocketHandler<BunSocketTransport, "uint8array"> = {
  binaryType: "uint8array",
  open: (s) => s.data.onOpen(s),
  handshake: (s, ok, err) => s.data.onHandshake(s, ok, err),
  data: (s, d) => s.data.onData(d),
  drain: (s) => s.data.onDrain(),
  end: (s) => s.data.onEnd(),
  error: (s, err) => s.data.onError(err),
  close: (s, err) => s.data.onClose(err),
};

// ---------------------------------------------------------------- identity

/** RFC 2253 order and escaping: most specific first (`CN=client,O=Example`). */
export function formatDn(name: Record<string, string | string[]> | undefined | null): string {
  if (!name) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(name)) for (const one of Array.isArray(v) ? v : [v]) parts.push(`${k}=${escapeDnValue(one)}`);
  return parts.reverse().join(",");
}

function escapeDnValue(v: string): string {
  let s = v.replace(/[,+"\\<>;]/g, (c) => `\\${c}`); // as OpenSSL -nameopt RFC2253 (which leaves "=" alone)
  if (s.startsWith(" ") || s.startsWith("#")) s = `\\${s}`;
  if (s.endsWith(" ") && s.length > 1) s = `${s.slice(0, -1)}\\ `;
  return s;
}

function addressToken(s: BunSocket): AddressToken {
  return { type: "address", address: s.remoteAddress, port: s.remotePort, euid: -1, egid: -1, pid: -1 };
}

/**
 * The peer's certificate as an {@link X509Token}, read from the TLS session.
 * A peer that sent no certificate (a client of a server that did not ask for
 * one) has no x509 identity: it gets an {@link AddressToken}, which proves
 * nothing, like plain TCP.
 */
function x509Token(s: BunSocket, err: Error | null): SecurityToken {
  let c: PeerCertificate | null = null;
  try {
    c = s.getPeerCertificate();
  } catch {
    c = null;
  }
  if (!c || !c.fingerprint256) return addressToken(s);
  const authorized = s.authorized === true && err === null;
  return {
    type: "x509",
    subject: formatDn(c.subject as unknown as Record<string, string | string[]>),
    issuer: formatDn(c.issuer as unknown as Record<string, string | string[]>),
    fingerprint256: c.fingerprint256,
    serialNumber: c.serialNumber ?? "",
    validFrom: c.valid_from ?? "",
    validTo: c.valid_to ?? "",
    subjectAltName: c.subjectaltname ?? "",
    authorized,
    authorizationError: authorized ? null : (err?.message ?? s.getAuthorizationError()?.message ?? "certificate not verified"),
    euid: -1,
    egid: -1,
    pid: -1,
  };
}

// ---------------------------------------------------------------- errors

/** Codes of certificate verification failures (Node's names, as Bun reports them). */
const CERT_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME|ISSUER|CHAIN|SIGNATURE|UNKNOWN_CA|CERTIFICATE/;

/** Bun's socket/TLS error → lwmsg status, with the reason kept in the message. */
export function mapSocketError(err: Error, what: string): LwMsgError {
  const code = String((err as { code?: unknown }).code ?? "");
  const msg = err.message || code;
  if (code === "ECONNREFUSED") return new LwMsgError(Status.CONNECTION_REFUSED, `${what}: connection refused`, { errno: Errno.ECONNREFUSED, cause: err });
  if (code === "ETIMEDOUT") return new LwMsgError(Status.TIMEOUT, `${what}: connect timed out`, { errno: Errno.ETIMEDOUT, cause: err });
  if (code === "ECONNRESET" || code === "EPIPE") return new LwMsgError(Status.PEER_CLOSE, `${what}: peer closed the connection (${msg})`, { cause: err });
  if (code === "EMFILE" || code === "ENFILE" || code === "ENOBUFS" || code === "ENOMEM") return new LwMsgError(Status.RESOURCE_LIMIT, `${what}: ${msg}`, { cause: err });
  const alert = /ALERT_([A-Z_]+)/.exec(msg);
  if (alert !== null) {
    const name = alert[1]!.toLowerCase();
    const why = name === "certificate_required" ? " (it requires a client certificate)" : /certificate|unknown_ca/.test(name) ? " (it did not accept our certificate)" : "";
    return new LwMsgError(Status.SECURITY, `${what}: the peer refused the TLS session: alert ${name}${why}`, { cause: err });
  }
  if (CERT_CODES.test(code) || CERT_CODES.test(msg)) return new LwMsgError(Status.SECURITY, `${what}: TLS certificate did not verify: ${msg}`, { cause: err });
  if (code === "EPROTO" || code.startsWith("ERR_SSL") || /SSL|TLS/.test(msg)) return new LwMsgError(Status.SECURITY, `${what}: TLS handshake failed: ${msg}`, { cause: err });
  return new LwMsgError(Status.SYSTEM, `${what}: ${msg}${code ? ` (${code})` : ""}`, { cause: err });
}

/** Validate `maxBufferedInput` (INVALID_PARAMETER). */
export function checkBufferBound(n: number | undefined): number {
  const v = n ?? DEFAULT_MAX_BUFFERED_INPUT;
  if (!Number.isInteger(v) || v < 1024) throw new LwMsgError(Status.INVALID_PARAMETER, `maxBufferedInput must be an integer ≥ 1024, got ${n}`);
  return v;
}
