/**
 * pidfd identities (Linux ≥ 6.5, SO_PEERPIDFD): with `pidfd: true` a local
 * token carries a pidfd of the peer process, taken by the kernel when the
 * connection was made. Unlike its pid, a pidfd cannot come to name another
 * process: "is the client that connected still alive" has no pid-reuse race.
 * SECURITY.md §pidfd says when to use it.
 * @module
 */
import { native } from "./native/ffi.ts";
import { closeFd, dupFd } from "./native/socket.ts";
import { LwMsgError, Status } from "./status.ts";
import type { LocalToken, SecurityToken } from "./token.ts";

/**
 * Is the process a token's pidfd names still running? `null` when the
 * token has no pidfd (not asked for, not a local token, or a kernel older
 * than 6.5): "cannot tell" is falsy, so `if (pidfdAlive(t))` fails closed.
 * INVALID_STATE if the pidfd was already closed (its owner ended).
 */
export function pidfdAlive(token: SecurityToken | null | undefined): boolean | null {
  if (!token || token.type !== "local" || token.pidfd === undefined) return null;
  const r = native.lw_pidfd_alive(token.pidfd);
  if (r < 0) throw new LwMsgError(Status.INVALID_STATE, `pidfdAlive: the token's pidfd ${token.pidfd} is not open (the connection or session that owned it has ended)`);
  return r === 1;
}

/** @internal `token` with a pidfd of its own (a dup) for an owner that outlives the connection (a Peer session). */
export function ownPidfd<T extends SecurityToken | null>(token: T): T {
  if (token === null || token.type !== "local" || token.pidfd === undefined) return token;
  return { ...token, pidfd: dupFd(token.pidfd) } as T;
}

/** @internal close the pidfd {@link ownPidfd} gave; the token without it. */
export function releasePidfd<T extends SecurityToken | null>(token: T): T {
  if (token === null || token.type !== "local" || token.pidfd === undefined) return token;
  closeFd(token.pidfd);
  const { pidfd: _closed, ...rest } = token as LocalToken;
  return rest as T;
}
