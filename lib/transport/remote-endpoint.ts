/**
 * REMOTE endpoints before any socket exists: parsing `"host:port"`, and the
 * policy that plain TCP (no TLS) is for loopback only unless the caller opts
 * in by a loudly named flag. Plain TCP proves nothing about the peer and
 * hides nothing from the network; on loopback only local processes can
 * reach it, which is the same exposure as an abstract UNIX socket name.
 * @module
 */
import { isIP, isIPv6 } from "node:net";
import { LwMsgError, Status } from "../status.ts";

/** A parsed REMOTE endpoint. `host` has no brackets (`"::1"`, not `"[::1]"`). */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Parse `"host:port"`, `"[v6addr]:port"` (INVALID_PARAMETER naming what is
 * wrong: no port, a port out of range, unbalanced brackets, an IPv6 address
 * without brackets). `allowPortZero` is for listening ("pick a free port").
 */
export function parseHostPort(endpoint: string, opts: { allowPortZero?: boolean } = {}): HostPort {
  const bad = (why: string) => new LwMsgError(Status.INVALID_PARAMETER, `REMOTE endpoint ${JSON.stringify(endpoint)}: ${why}`);
  if (typeof endpoint !== "string") throw new LwMsgError(Status.INVALID_PARAMETER, `REMOTE endpoint must be a "host:port" string, got ${typeof endpoint}`);
  let host: string;
  let portText: string;
  if (endpoint.startsWith("[")) {
    const close = endpoint.indexOf("]");
    if (close < 0) throw bad('"[" without a closing "]" (IPv6 addresses are written "[::1]:port")');
    host = endpoint.slice(1, close);
    const rest = endpoint.slice(close + 1);
    if (rest === "") throw bad('no port (expected "[addr]:port")');
    if (!rest.startsWith(":")) throw bad(`unexpected ${JSON.stringify(rest)} after "]" (expected ":port")`);
    portText = rest.slice(1);
    if (!isIPv6(host)) throw bad(`${JSON.stringify(host)} in brackets is not an IPv6 address`);
  } else {
    if (endpoint.includes("]")) throw bad('"]" without an opening "["');
    const colon = endpoint.lastIndexOf(":");
    if (colon < 0) throw bad('no port (expected "host:port")');
    host = endpoint.slice(0, colon);
    portText = endpoint.slice(colon + 1);
    if (host.includes(":")) throw bad('an IPv6 address needs brackets: "[::1]:port"');
  }
  checkHost(host, bad);
  return { host, port: checkPort(portText, opts.allowPortZero === true, bad) };
}

function checkHost(host: string, bad: (why: string) => LwMsgError): void {
  if (host === "") throw bad("empty host");
  if (host.length > 253) throw bad("host name longer than 253 characters");
  if (isIP(host) !== 0) return;
  // A DNS name: letters, digits, '-', '_' (some internal names), dots. Anything else is a typo or an injection.
  if (!/^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/.test(host)) throw bad(`${JSON.stringify(host)} is not a valid host name or IP address`);
}

function checkPort(text: string, allowZero: boolean, bad: (why: string) => LwMsgError): number {
  if (text === "") throw bad("empty port");
  if (!/^[0-9]{1,5}$/.test(text)) throw bad(`port ${JSON.stringify(text)} is not a decimal number`);
  const port = Number(text);
  if (port > 65535 || port < (allowZero ? 0 : 1)) throw bad(`port ${port} is out of range (${allowZero ? 0 : 1}..65535)`);
  return port;
}

/** Check a numeric port (listen options): an integer in 1..65535, or 0 with `allowZero`. */
export function checkPortNumber(port: unknown, allowZero: boolean, what = "port"): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < (allowZero ? 0 : 1) || port > 65535) {
    throw new LwMsgError(Status.INVALID_PARAMETER, `${what} must be an integer in ${allowZero ? 0 : 1}..65535, got ${String(port)}`);
  }
  return port;
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (`::ffff:127.x.x.x`). Names are not addresses: see {@link isLoopbackHost}. */
export function isLoopbackAddress(address: string): boolean {
  const kind = isIP(address);
  if (kind === 4) return address.startsWith("127.");
  if (kind === 6) {
    const a = address.toLowerCase();
    if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
    const m = /^(?:0:0:0:0:0:|::)ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
    return m !== null && m[1]!.startsWith("127.");
  }
  return false;
}

/** A loopback address, or the name `localhost` (whose resolved addresses are checked again at connect). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  return h === "localhost" || isLoopbackAddress(h);
}

/**
 * The plain-TCP policy: without `tls`, only loopback hosts, unless
 * `allowInsecureTcp` is true. Throws SECURITY with the reason and the way
 * out. Called when an endpoint is configured, and again at connect time on
 * the addresses a name resolved to (so `localhost` pointing elsewhere is caught).
 */
export function checkRemoteEndpoint(host: string, tls: object | null | undefined, allowInsecureTcp = false): void {
  if (tls !== null && tls !== undefined) {
    if (typeof tls !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, `tls must be an object of TLS options (key, cert, ca, serverName, ...), got ${typeof tls}`);
    return;
  }
  if (allowInsecureTcp === true || isLoopbackHost(host)) return;
  throw new LwMsgError(
    Status.SECURITY,
    `plain TCP to ${JSON.stringify(host)} refused: without TLS the peer is not authenticated and the traffic is readable by anyone on the path; ` +
      "use tls: { ... }, a loopback address, or set allowInsecureTcp: true to accept that",
  );
}
