/**
 * Authorisation building blocks (reference §5: lwmsg has no built-in ACL;
 * servers check the peer's token in the session constructor, clients may
 * check the server's token on connect).
 *
 * A {@link TokenCheck} looks at a {@link LocalToken} — which always comes from
 * the kernel (`SO_PEERCRED`), never from the wire — and throws
 * `LwMsgError(SECURITY)` to refuse. Checks compose ({@link anyOf},
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
import type { LocalToken } from "./connection.ts";
import type { Session, SessionHooks } from "./session.ts";

/** Looks at a peer's token; throws (normally `LwMsgError(SECURITY)`) to refuse it. */
export type TokenCheck = (token: LocalToken) => void;

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

function refuse(token: LocalToken, why: string): never {
  throw new LwMsgError(Status.SECURITY, `peer euid ${token.euid} egid ${token.egid} pid ${token.pid} refused: ${why}`);
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
    if (!set.has(token.euid)) refuse(token, `uid not in [${list}]`);
  };
}

/** Allow only peers whose effective gid is in `gids` (the primary group the kernel reports, not supplementary groups). */
export function allowGids(gids: Iterable<number>): TokenCheck {
  const set = checkIds("allowGids", gids);
  const list = [...set].join(", ");
  return (token) => {
    if (!set.has(token.egid)) refuse(token, `gid not in [${list}]`);
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
    if (token.euid === me) return;
    if (root && token.euid === 0) return;
    refuse(token, `not the same user as this process (euid ${me})`);
  };
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
    construct: (token: LocalToken, session: Session<any>) => {
      check(token);
      return construct ? construct(token, session) : undefined;
    },
    // Only when given: with exactOptionalPropertyTypes an explicit undefined is not a SessionHooks.
    ...(hooks.destruct ? { destruct: hooks.destruct } : {}),
  };
}
