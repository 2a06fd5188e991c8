/**
 * Messages as an association sends and receives them (`LWMsgMessage`).
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { closeFd } from "../transport/fdqueue.ts";
import { MessageFlags } from "../wire/packets.ts";

/** A message to send. `tag` is a protocol name or number; `-1` sends no payload. */
export interface OutgoingMessage {
  tag: string | number;
  data?: unknown;
  flags?: number;
  status?: number;
  cookie?: number;
}

const dispose: typeof Symbol.dispose = (Symbol as { dispose?: typeof Symbol.dispose }).dispose ?? (Symbol.for("Symbol.dispose") as typeof Symbol.dispose);

/**
 * A received message. If it carried fds it owns them until the program takes
 * them ({@link takeFd}/{@link takeFds}); `using m = await c.recv()` closes the
 * ones not taken.
 */
export class ReceivedMessage implements Disposable {
  constructor(
    readonly tag: number,
    readonly name: string | undefined,
    readonly data: any,
    readonly flags: number,
    readonly status: number,
    readonly cookie: number,
    /** Fds received with this message, in wire order (null when none). */
    readonly fds: number[] | null,
  ) {}
  private taken: Set<number> | null = null;
  /** True for a message the connection made up because the payload failed to decode (§3.4). */
  get synthetic(): boolean {
    return (this.flags & MessageFlags.SYNTHETIC) !== 0;
  }
  /** Claim one fd of this message: disposal will not close it. */
  takeFd(fd: number): number {
    if (!this.fds || !this.fds.includes(fd)) throw new LwMsgError(Status.INVALID_PARAMETER, `fd ${fd} did not arrive with this message`);
    (this.taken ??= new Set()).add(fd);
    return fd;
  }
  /** Claim every fd of this message. */
  takeFds(): number[] {
    if (!this.fds) return [];
    for (const fd of this.fds) (this.taken ??= new Set()).add(fd);
    return this.fds.slice();
  }
  /** Close the fds not taken. Idempotent. */
  [dispose](): void {
    const fds = this.fds;
    if (!fds) return;
    for (const fd of fds) if (!this.taken?.has(fd)) closeFd(fd);
    (this as { fds: number[] | null }).fds = null;
  }
  /** Same as `[Symbol.dispose]()`. */
  dispose(): void {
    this[dispose]();
  }
}
