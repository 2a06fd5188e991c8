/**
 * The fds of an association: outgoing ones waiting to ride with their
 * message's bytes, incoming ones waiting for the message that claims them.
 * The only place above the shim that duplicates or closes descriptors.
 * @module
 */
import { closeFd, dupFd } from "../native/socket.ts";
import { LwMsgError, Status } from "../status.ts";

export { closeFd, dupFd };

/** lwmsg `MAX_FD_PAYLOAD`: fds per message. */
export const MAX_FDS_PER_MESSAGE = 256;
/** Linux `SCM_MAX_FD`: fds per sendmsg. */
export const MAX_FDS_PER_SENDMSG = 253;

/**
 * Outgoing fds: duplicates of the sender's (so the sender may close its own
 * at once, §3.6), each tagged with the byte offset of its message in the
 * outgoing buffer; they leave with the first sendmsg that carries bytes of
 * that message, in one control message of at most 253.
 */
export class FdOutQueue {
  private fds: number[] = [];
  private offs: number[] = [];
  private head = 0;
  /** The control-message batch {@link batch} fills. */
  readonly batchFds = new Int32Array(new ArrayBuffer(MAX_FDS_PER_SENDMSG * 4));

  get size(): number {
    return this.fds.length - this.head;
  }

  /** Queue duplicates of `fds` for the message starting at `offset`. Throws (leaving nothing queued) if one is not open. */
  push(fds: readonly number[], offset: number): void {
    if (fds.length > MAX_FDS_PER_MESSAGE) throw new LwMsgError(Status.MALFORMED, `send: ${fds.length} fds in one message (max ${MAX_FDS_PER_MESSAGE})`);
    const first = this.fds.length;
    try {
      for (const fd of fds) {
        this.fds.push(dupFd(fd));
        this.offs.push(offset);
      }
    } catch (e) {
      for (let i = first; i < this.fds.length; i++) closeFd(this.fds[i]!);
      this.fds.length = this.offs.length = first;
      throw e;
    }
  }

  /** Where the bytes of the sendmsg {@link batch} prepared must stop. */
  batchEnd = 0;

  /**
   * Fill {@link batchFds} with the fds of messages starting in [from, end)
   * (at most 253) and return their count. {@link batchEnd} is `end`, or the
   * start of a message whose fds did not fit (at least one byte on).
   */
  batch(from: number, end: number): number {
    let nfds = 0;
    let i = this.head;
    const out = this.batchFds;
    while (i < this.fds.length && this.offs[i]! < end && nfds < MAX_FDS_PER_SENDMSG) out[nfds++] = this.fds[i++]!;
    this.batchEnd = i < this.fds.length && this.offs[i]! < end ? from + Math.max(1, this.offs[i]! - from) : end;
    return nfds;
  }

  /** The first `n` queued fds went out: close our duplicates. */
  sent(n: number): void {
    for (let k = 0; k < n; k++) closeFd(this.fds[this.head + k]!);
    this.head += n;
    if (this.head === this.fds.length) this.fds.length = this.offs.length = this.head = 0;
    else if (this.head >= 1024 && this.head * 2 >= this.fds.length) {
      // A socket that stays full keeps fds queued for good: drop the sent front now and then.
      this.fds.splice(0, this.head);
      this.offs.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Drop (and close) the fds of messages at or after `offset` (a message that failed to encode). */
  dropFrom(offset: number): void {
    while (this.fds.length > this.head && this.offs[this.offs.length - 1]! >= offset) {
      closeFd(this.fds.pop()!);
      this.offs.pop();
    }
  }

  /** The outgoing buffer moved its unsent bytes `by` bytes towards 0. */
  rebase(by: number): void {
    for (let i = this.head; i < this.offs.length; i++) this.offs[i]! -= by;
  }

  closeAll(): void {
    for (let i = this.head; i < this.fds.length; i++) closeFd(this.fds[i]!);
    this.fds.length = this.offs.length = this.head = 0;
  }
}

/** Incoming fds, in arrival order, waiting for the message that claims them. */
export class FdInQueue {
  /** Appended to by the transport's read; the decoder takes from `pos`. */
  readonly fds: number[] = [];
  /** The first fd not yet claimed. */
  pos = 0;

  get held(): number {
    return this.fds.length - this.pos;
  }

  /** fds can stay ahead of their messages for good (coalesced sends): drop the consumed front now and then. */
  compact(): void {
    if (this.pos === this.fds.length && this.pos > 0) this.fds.length = this.pos = 0;
    else if (this.pos >= 1024 && this.pos * 2 >= this.fds.length) {
      this.fds.splice(0, this.pos);
      this.pos = 0;
    }
  }

  closeAll(): void {
    for (let i = this.pos; i < this.fds.length; i++) closeFd(this.fds[i]!);
    this.fds.length = this.pos = 0;
  }
}
