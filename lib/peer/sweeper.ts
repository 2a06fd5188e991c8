/**
 * The peer's idle and message timeouts (§7.2 step 6), checked by a periodic
 * sweep over its connections. lwmsg checks them per system call; the
 * association's own message timeout bounds one recv()/send() wait, which for
 * a peer connection is mostly idle time, so the peer's "blocked mid-message
 * for too long" needs this view across calls.
 * @module
 */
import { AssocState } from "../connection.ts";
import { LwMsgError, Status } from "../status.ts";
import type { AssocChannel } from "./assoc-channel.ts";

export interface SweepSettings {
  /** Idle server connections, ms (null = none); applied only under pressure. */
  readonly idle: number | null;
  /** A message that stays partially sent or received, ms (null = none). */
  readonly message: number | null;
  /** The server is at maxClients: idle connections may be evicted. */
  underPressure(): boolean;
}

export class TimeoutSweeper {
  readonly serverTasks = new Set<AssocChannel>();
  readonly clientTasks = new Set<AssocChannel>();
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly settings: SweepSettings) {}

  /** Run the sweep while there is something to time out (call after the task sets or the timeouts change). */
  update(): void {
    const { idle, message } = this.settings;
    const want = (idle !== null || message !== null) && (this.serverTasks.size > 0 || this.clientTasks.size > 0);
    if (want && this.timer === null) {
      const base = Math.min(idle ?? Infinity, message ?? Infinity);
      const every = Math.max(5, Math.min(250, Math.floor(base / 4)));
      this.timer = setInterval(this.sweep, every);
      (this.timer as { unref?: () => void }).unref?.();
    } else if (!want && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private sweep = (): void => {
    const now = performance.now();
    const { idle, message } = this.settings;
    const pressure = idle !== null && this.settings.underPressure();
    const expired: AssocChannel[] = [];
    for (const t of this.serverTasks) {
      if (t.status !== 0) continue;
      if (idle !== null) {
        if (!pressure || t.activity !== t.seenActivity || t.inCalls.size > 0 || t.session.handleCount > 0) {
          t.seenActivity = t.activity;
          t.idleSince = now;
        } else if (now - t.idleSince >= idle) {
          expired.push(t);
          continue;
        }
      }
      if (message !== null && blockedTooLong(t, now, message)) expired.push(t);
    }
    if (message !== null) for (const t of this.clientTasks) if (t.status === 0 && blockedTooLong(t, now, message)) expired.push(t);
    for (const t of expired) t.handleAssocError(new LwMsgError(Status.TIMEOUT, "connection timed out"));
  };
}

function blockedTooLong(t: AssocChannel, now: number, limit: number): boolean {
  const st = t.conn.state;
  const blocked = st === AssocState.BLOCKED_SEND || st === AssocState.BLOCKED_RECV || st === AssocState.BLOCKED_SEND_RECV;
  if (!blocked || t.activity !== t.blockActivity) {
    t.blockActivity = t.activity;
    t.blockedSince = now;
    return false;
  }
  return now - t.blockedSince >= limit;
}
