/**
 * Security tokens (reference §5): who is on the other end, as the transport
 * learned it — never from the wire. `local` comes from the kernel
 * (SO_PEERCRED; PAIR: this process's own ids); `x509` from a TLS session's
 * peer certificate (REMOTE mode, which lwmsg named and never built).
 * @module
 */

/** The "local" security token (§5): ids as the kernel reported them (PAIR: this process's own). */
export interface LocalToken {
  readonly type: "local";
  readonly euid: number;
  readonly egid: number;
  /** -1 where the platform cannot tell. */
  readonly pid: number;
  /**
   * A pidfd of the peer process (opt-in `pidfd: true`; Linux ≥ 6.5,
   * SO_PEERPIDFD), taken by the kernel when the connection was made: it
   * names that process and no later one with its pid — see `pidfdAlive`.
   * Owned by the token's owner (the connection, or the Peer's session) and
   * closed when it ends. Absent when not asked for, for PAIR, or when the
   * kernel cannot give one.
   */
  readonly pidfd?: number;
}

/**
 * Tokens that are not local carry euid/egid/pid as -1: no local identity.
 * Code written for local tokens (`token.euid === 0`) then fails closed, and
 * every check in lib/security.ts looks at `type` first. Check `token.type`.
 */
export interface NoLocalIds {
  readonly euid: -1;
  readonly egid: -1;
  readonly pid: -1;
}

/**
 * A TLS peer's identity (REMOTE over TLS), from the certificate the peer
 * presented in the handshake. `authorized` is true only if it verified
 * against the configured CA(s); a token that is not authorized is refused by
 * every check in lib/security.ts.
 */
export interface X509Token extends NoLocalIds {
  readonly type: "x509";
  /** Subject distinguished name, RFC 2253 style (`CN=client,O=Example`). */
  readonly subject: string;
  readonly issuer: string;
  /** SHA-256 fingerprint of the DER certificate, colon-separated upper-case hex (as Node prints it). */
  readonly fingerprint256: string;
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly validTo: string;
  /** Subject alternative names as the certificate lists them (`DNS:host, IP Address:127.0.0.1`), or "". */
  readonly subjectAltName: string;
  /** The chain verified against the trusted CAs. */
  readonly authorized: boolean;
  /** Why it did not verify (`authorizationError`), or null. */
  readonly authorizationError: string | null;
}

/**
 * A peer over plain TCP (REMOTE without TLS, allowed on loopback or by
 * explicit opt-in): its address is all there is, and it proves nothing.
 */
export interface AddressToken extends NoLocalIds {
  readonly type: "address";
  readonly address: string;
  readonly port: number;
}

/** Any security token a connection can carry. */
export type SecurityToken = LocalToken | X509Token | AddressToken;

import { LwMsgError, Status } from "./status.ts";

/** `lwmsg_security_token_equal`, as intended (§10.1: the C one compares a token with itself). */
export function tokensEqual(a: SecurityToken | null, b: SecurityToken | null): boolean {
  if (a === b) return true;
  if (!a || !b || a.type !== b.type) return false;
  if (a.type === "local") return a.euid === (b as LocalToken).euid && a.egid === (b as LocalToken).egid;
  if (a.type === "x509") return a.fingerprint256 === (b as X509Token).fingerprint256;
  return a.address === (b as AddressToken).address;
}

/** `lwmsg_security_token_to_string`: `<local euid:N egid:N pid:N>`, `<x509 subject:… sha256:…>`, `<address host:port>`. */
export function tokenToString(token: SecurityToken): string {
  if (token.type === "local") return `<local euid:${token.euid} egid:${token.egid} pid:${token.pid}>`;
  if (token.type === "x509") return `<x509 subject:${token.subject} sha256:${token.fingerprint256}${token.authorized ? "" : " unverified"}>`;
  return `<address ${token.address}:${token.port}>`;
}

/** `lwmsg_security_token_get_type`: `"local"`, `"x509"` or `"address"`. */
export function tokenType(token: SecurityToken): string {
  return token.type;
}

/** The token class's hash: local `(egid << 16) ^ euid` (as lwmsg); x509 the fingerprint's first 32 bits; address its text's. */
export function tokenHash(token: SecurityToken): number {
  if (token.type === "local") return ((token.egid << 16) ^ token.euid) >>> 0;
  const s = token.type === "x509" ? token.fingerprint256 : `${token.address}:${token.port}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * `lwmsg_security_token_can_access(owner, other)`: the same identity (local:
 * euid and egid; x509: certificate fingerprint). lwmsg's version always says
 * yes (§10.1, it compares a token with itself); this one compares as intended.
 */
export function tokenCanAccess(owner: SecurityToken | null, other: SecurityToken | null): boolean {
  return tokensEqual(owner, other);
}

/** `lwmsg_local_token_get_eid` (INVALID_PARAMETER for a token that is not local). */
export function localTokenGetEid(token: SecurityToken): { euid: number; egid: number } {
  if (!token || token.type !== "local") throw new LwMsgError(Status.INVALID_PARAMETER, "not a local security token");
  return { euid: token.euid, egid: token.egid };
}

/** `lwmsg_local_token_get_pid` (-1 where the platform cannot tell). */
export function localTokenGetPid(token: SecurityToken): number {
  if (!token || token.type !== "local") throw new LwMsgError(Status.INVALID_PARAMETER, "not a local security token");
  return token.pid;
}

/** `lwmsg_local_token_new`. */
export function localToken(euid: number, egid: number, pid = -1): LocalToken {
  return { type: "local", euid, egid, pid };
}
