/**
 * Connecting to a REMOTE endpoint over Bun's sockets: resolve, connect,
 * TLS handshake, each bounded by the establish deadline, failures mapped to
 * lwmsg statuses (see {@link TcpConnector}).
 * @module
 */
import { isIP } from "node:net";
import { LwMsgError, Status } from "../status.ts";
import { BunSocketTransport, SOCKET_HANDLERS, checkBufferBound, mapSocketError, type RemoteTlsOptions } from "./bun-socket.ts";
import { checkPortNumber, checkRemoteEndpoint, isLoopbackAddress } from "./remote-endpoint.ts";
import type { Connector, Transport } from "./types.ts";

export interface TcpConnectOptions {
  /** TLS settings; null/absent = plain TCP (loopback only unless {@link allowInsecureTcp}). */
  tls?: RemoteTlsOptions | null;
  /** Allow plain TCP to a host that is not loopback: unauthenticated and readable on the network. */
  allowInsecureTcp?: boolean;
  /** See {@link DEFAULT_MAX_BUFFERED_INPUT}. */
  maxBufferedInput?: number;
}

/**
 * Connects to a REMOTE endpoint: resolves the host, connects (trying each
 * address on refusal), completes the TLS handshake, all before the
 * deadline. Rejects with NOT_FOUND (no such host), CONNECTION_REFUSED,
 * TIMEOUT, SECURITY (certificate did not verify, TLS alert, plain TCP to a
 * non-loopback address) or PEER_CLOSE (peer hung up mid-handshake).
 */
export class TcpConnector implements Connector {
  readonly description: string;
  private readonly tls: RemoteTlsOptions | null;
  private readonly allowInsecureTcp: boolean;
  private readonly maxBufferedInput: number;

  constructor(
    readonly host: string,
    readonly port: number,
    opts: TcpConnectOptions = {},
  ) {
    checkPortNumber(port, false);
    this.tls = opts.tls ?? null;
    this.allowInsecureTcp = opts.allowInsecureTcp === true;
    checkRemoteEndpoint(host, this.tls, this.allowInsecureTcp);
    this.maxBufferedInput = checkBufferBound(opts.maxBufferedInput);
    this.description = `${this.tls ? "tls" : "tcp"} ${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  }

  async connect(deadline: number | null): Promise<Transport> {
    const addresses = await withDeadline(resolveHost(this.host, this.description), deadline, `${this.description}: resolving the host`);
    if (!this.tls && !this.allowInsecureTcp) {
      for (const a of addresses) if (!isLoopbackAddress(a)) checkRemoteEndpoint(a, null, false);
    }
    let last: unknown = null;
    for (const address of addresses) {
      try {
        return await this.connectOne(address, deadline);
      } catch (e) {
        last = e;
        if (!(e instanceof LwMsgError && e.status === Status.CONNECTION_REFUSED)) throw e;
      }
    }
    throw last;
  }

  private connectOne(address: string, deadline: number | null): Promise<BunSocketTransport> {
    const t = new BunSocketTransport(this.tls !== null, this.description, this.maxBufferedInput);
    const what = this.description;
    return new Promise<BunSocketTransport>((resolve, reject) => {
      let settled = false;
      let timer: ReturnType<typeof setTimeout> | null = null;
      const finish = (e: LwMsgError | null) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        t.hooks = null;
        if (e === null) {
          t.socket!.unref(); // the association refs while it waits
          resolve(t);
        } else {
          t.terminate();
          reject(e);
        }
      };
      t.hooks = {
        handshake: (_t, ok, err) => {
          // Bun closes the socket itself after a failed verification (rejectUnauthorized).
          if (err && (!ok || this.tls!.rejectUnauthorized !== false)) finish(mapSocketError(err, what));
          else finish(null);
        },
        close: (tr, err) => finish(tr.failure ?? (err ? mapSocketError(err, what) : new LwMsgError(Status.PEER_CLOSE, `${what}: peer closed the connection during the ${this.tls ? "TLS handshake" : "connect"}`))),
      };
      if (deadline !== null) {
        timer = setTimeout(() => finish(new LwMsgError(Status.TIMEOUT, `${what}: ${t.socket ? "TLS handshake" : "connect"} timed out`)), Math.max(0, deadline - Date.now()));
      }
      Bun.connect<BunSocketTransport>({
        hostname: address,
        port: this.port,
        data: t,
        ...(this.tls === null ? {} : { tls: tlsForClient(this.tls, this.host) }),
        socket: SOCKET_HANDLERS as unknown as Bun.SocketHandler<BunSocketTransport>,
      }).then(
        (s) => {
          t.socket ??= s;
          if (settled) {
            s.terminate(); // timed out meanwhile
            return;
          }
          if (!this.tls) finish(null); // TLS: the handshake hook decides
        },
        (err: Error) => finish(mapSocketError(err, what)),
      );
    });
  }
}

/** Client TLS options: the certificate is checked against the host name asked for, even when connecting by the resolved address. */
function tlsForClient(tls: RemoteTlsOptions, host: string): RemoteTlsOptions {
  if (tls.serverName !== undefined || isIP(host) !== 0) return tls;
  return { ...tls, serverName: host };
}

/** IP literal: itself. A name: its addresses (NOT_FOUND when there are none). */
async function resolveHost(host: string, what: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  try {
    const r = await Bun.dns.lookup(host, {});
    const out = r.map((a) => a.address);
    if (out.length > 0) return out;
  } catch (e) {
    const code = String((e as { code?: unknown }).code ?? "");
    throw new LwMsgError(Status.NOT_FOUND, `${what}: cannot resolve host ${JSON.stringify(host)} (${code || (e as Error).message})`, { cause: e });
  }
  throw new LwMsgError(Status.NOT_FOUND, `${what}: host ${JSON.stringify(host)} has no addresses`);
}

function withDeadline<T>(p: Promise<T>, deadline: number | null, what: string): Promise<T> {
  if (deadline === null) return p;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LwMsgError(Status.TIMEOUT, `${what}: timed out`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer!));
}
