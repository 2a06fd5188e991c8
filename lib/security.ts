/**
 * Authorisation building blocks (reference §5: lwmsg has no built-in ACL;
 * servers check the peer's token in the session constructor, clients may
 * check the server's token on connect).
 *
 * A {@link TokenCheck} looks at a {@link SecurityToken} — which always comes
 * from the kernel (`SO_PEERCRED`) or the TLS session (REMOTE), never from
 * the wire — and throws `LwMsgError(SECURITY)` to refuse. A uid/gid check
 * meeting a token that is not local fails closed, and so does a certificate
 * check meeting a token that is not a verified x509 one. Checks compose ({@link anyOf},
 * {@link allOf}) and plug in where lwmsg has its hooks:
 *
 * ```ts
 * server.onSession(authorize(sameUser()));                  // lwmsg_peer_set_listen_session_functions
 * server.onSession(authorize(allowUids([0, 1000]), { construct: (t) => ({ uid: t.euid }) }));
 * new Peer(protocol, { authorizeServer: allowUids([0]) });   // client: talk only to a root daemon
 * await connection.connect(allowUids([0]));                  // bare association
 * await listener.accept(sameUser());
 * ```
 *
 * The process's own euid is read once, when a check is built.
 * @module
 */
import { LwMsgError, Status } from "./status.ts";
import { tokenToString, type LocalToken, type SecurityToken, type X509Token } from "./token.ts";
import type { Session, SessionHooks } from "./session.ts";

/** Looks at a peer's token; throws (normally `LwMsgError(SECURITY)`) to refuse it. */
export type TokenCheck = { check(token: SecurityToken): void }["check"];

function checkIds(what: string, ids: Iterable<number>): Set<number> {
  if (ids === null || typeof ids !== "object" || typeof (ids as Iterable<number>)[Symbol.iterator] !== "function") {
    throw new LwMsgError(Status.INVALID_PARAMETER, `${what}: expected an iterable of ids, got ${String(ids)}`);
  }
  const set = new Set<number>();
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `${what}: ids must be integers in 0..2^32-1, got ${String(id)}`);
    set.add(id);
  }
  return set;
}

function refuse(token: SecurityToken, why: string): never {
  if (token.type === "local") throw new LwMsgError(Status.SECURITY, `peer euid ${token.euid} egid ${token.egid} pid ${token.pid} refused: ${why}`);
  throw new LwMsgError(Status.SECURITY, `peer ${tokenToString(token)} refused: ${why}`);
}

/** The token as a local one, or a refusal: uid/gid checks fail closed on any other kind (REMOTE peers have no uid). */
function local(token: SecurityToken, what: string): LocalToken {
  if (!token || token.type !== "local") refuse(token, `${what} needs a local peer (kernel credentials), got a ${token?.type ?? "missing"} token`);
  return token;
}

/** The token as a verified x509 one, or a refusal. */
function verified(token: SecurityToken, what: string): X509Token {
  if (!token || token.type !== "x509") refuse(token, `${what} needs a TLS peer with a certificate, got a ${token?.type ?? "missing"} token`);
  if (!token.authorized) refuse(token, `its certificate did not verify (${token.authorizationError ?? "not authorized"})`);
  return token;
}

/** This process's effective uid. */
function ownEuid(): number {
  return process.geteuid!();
}

/** Allow only peers whose effective uid is in `uids`. */
export function allowUids(uids: Iterable<number>): TokenCheck {
  const set = checkIds("allowUids", uids);
  const list = [...set].join(", ");
  return (token) => {
    if (!set.has(local(token, "allowUids").euid)) refuse(token, `uid not in [${list}]`);
  };
}

/** Allow only peers whose effective gid is in `gids` (the primary group the kernel reports, not supplementary groups). */
export function allowGids(gids: Iterable<number>): TokenCheck {
  const set = checkIds("allowGids", gids);
  const list = [...set].join(", ");
  return (token) => {
    if (!set.has(local(token, "allowGids").egid)) refuse(token, `gid not in [${list}]`);
  };
}

/**
 * Allow only peers running as this process's own effective uid (and root,
 * unless `allowRoot: false`: root can ptrace us anyway, so refusing it buys
 * nothing but breaks admin tools).
 */
export function sameUser(options: { allowRoot?: boolean } = {}): TokenCheck {
  const me = ownEuid();
  const root = options.allowRoot !== false;
  return (token) => {
    const t = local(token, "sameUser");
    if (t.euid === me) return;
    if (root && t.euid === 0) return;
    refuse(token, `not the same user as this process (euid ${me})`);
  };
}

/** Normalise a SHA-256 fingerprint: hex with or without colons, any case → `AA:BB:…`. */
function fingerprint(f: string): string {
  const hex = typeof f === "string" ? f.replace(/:/g, "").toUpperCase() : "";
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new LwMsgError(Status.INVALID_PARAMETER, `pinFingerprints: expected SHA-256 fingerprints (64 hex digits, colons optional), got ${JSON.stringify(f)}`);
  return hex.match(/../g)!.join(":");
}

/**
 * REMOTE over TLS: allow only peers whose certificate verified and whose
 * SHA-256 fingerprint is one of `fingerprints` (certificate pinning).
 */
export function pinFingerprints(fingerprints: Iterable<string>): TokenCheck {
  const set = new Set([...fingerprints].map(fingerprint));
  if (set.size === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "pinFingerprints: needs at least one fingerprint");
  return (token) => {
    if (!set.has(verified(token, "pinFingerprints").fingerprint256.toUpperCase())) refuse(token, "certificate fingerprint not pinned");
  };
}

/** REMOTE over TLS: allow only verified peers whose subject is one of `subjects` (`"CN=client,O=Example"`, as {@link X509Token.subject} shows it), or whose subject's CN is, for plain names. */
export function allowSubjects(subjects: Iterable<string>): TokenCheck {
  const set = new Set([...subjects].map(String));
  if (set.size === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "allowSubjects: needs at least one subject");
  return (token) => {
    const t = verified(token, "allowSubjects");
    const cn = /(?:^|,)CN=([^,]*)/.exec(t.subject)?.[1];
    if (!set.has(t.subject) && (cn === undefined || !set.has(cn))) refuse(token, `subject not in [${[...set].join("; ")}]`);
  };
}

/** REMOTE over TLS: allow only verified peers whose certificate was issued by one of `issuers` (issuer subject as the token shows it, or its CN). */
export function allowIssuers(issuers: Iterable<string>): TokenCheck {
  const set = new Set([...issuers].map(String));
  if (set.size === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "allowIssuers: needs at least one issuer");
  return (token) => {
    const t = verified(token, "allowIssuers");
    const cn = /(?:^|,)CN=([^,]*)/.exec(t.issuer)?.[1];
    if (!set.has(t.issuer) && (cn === undefined || !set.has(cn))) refuse(token, `issuer not in [${[...set].join("; ")}]`);
  };
}

/** REMOTE over TLS: allow any peer whose certificate verified against the configured CAs. */
export function verifiedCertificate(): TokenCheck {
  return (token) => void verified(token, "verifiedCertificate");
}

/** Passes when every check passes (the first refusal is thrown). */
export function allOf(...checks: TokenCheck[]): TokenCheck {
  for (const c of checks) if (typeof c !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "allOf: every check must be a function");
  return (token) => {
    for (const c of checks) c(token);
  };
}

/** Passes when at least one check passes; otherwise refuses with every reason. */
export function anyOf(...checks: TokenCheck[]): TokenCheck {
  if (checks.length === 0) throw new LwMsgError(Status.INVALID_PARAMETER, "anyOf: needs at least one check");
  for (const c of checks) if (typeof c !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "anyOf: every check must be a function");
  return (token) => {
    const reasons: string[] = [];
    for (const c of checks) {
      try {
        c(token);
        return;
      } catch (e) {
        reasons.push(e instanceof Error ? e.message : String(e));
      }
    }
    throw new LwMsgError(Status.SECURITY, `no check allowed the peer: ${reasons.join("; ")}`);
  };
}

/**
 * Session hooks that run `check` before the application's own constructor
 * (`lwmsg_peer_set_listen_session_functions` with an authorising
 * constructor). A refused client's connection is closed before ACCEPT.
 */
export function authorize(check: TokenCheck, hooks: SessionHooks = {}): SessionHooks {
  if (typeof check !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "authorize: check must be a function (token) => void");
  const construct = hooks.construct;
  return {
    construct: (token: SecurityToken, session: Session<any>) => {
      check(token);
      return construct ? construct(token, session) : undefined;
    },
    // Only when given: with exactOptionalPropertyTypes an explicit undefined is not a SessionHooks.
    ...(hooks.destruct ? { destruct: hooks.destruct } : {}),
  };
}
