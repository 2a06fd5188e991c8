/**
 * The bounded reply poll (SPEC §4.1): right after a request, wait a little
 * on the socket itself before parking on the poller, so a fast reply reaches
 * the JS thread without the poller's thread hop.
 *
 * Measured on the project VM (KVM, haltpoll idle): a timed ppoll shorter than
 * ~2 ms costs ~14 µs extra even when the event comes in 8 µs, while 2 ms+
 * windows match an untimed wait. A hit returns as soon as the reply is
 * readable; only a miss costs the window, and misses back off.
 * @module
 */
import type { Transport } from "../transport/types.ts";

const REPLY_POLL_DEFAULT_US = 2000;
const REPLY_POLL_MIN_BACKOFF = 16;
const REPLY_POLL_MAX_BACKOFF = 4096;

export class ReplyPoll {
  /**
   * recv() calls parked on any transport, process-wide. The poll blocks the
   * thread on one socket, so it runs only while nothing else waits for
   * input: a server with many clients (bench/soak.ts: 9k calls/s, p99 0.65 s
   * with 1,000 clients) or a process with many connections — TLS ones too —
   * would stall all the others.
   */
  static parked = 0;
  /** Polls made (for tests). */
  static polls = 0;
  private readonly us: number;
  private readonly adaptive: boolean;
  private skip = 0;
  private backoff = REPLY_POLL_MIN_BACKOFF;

  constructor(setting: number | "adaptive") {
    this.adaptive = setting === "adaptive";
    this.us = setting === "adaptive" ? REPLY_POLL_DEFAULT_US : setting;
  }

  /** Wait for input on `t` if the policy allows; true if it became readable. */
  tryWait(t: Transport): boolean {
    if (this.us <= 0 || ReplyPoll.parked !== 0 || !t.caps.replyPoll) return false;
    if (this.skip > 0) {
      this.skip--;
      return false;
    }
    ReplyPoll.polls++;
    if (t.waitReadable(this.us)) {
      this.backoff = REPLY_POLL_MIN_BACKOFF;
      return true;
    }
    if (this.adaptive) {
      // A miss blocked the thread for the whole window: skip the next few
      // requests, twice as many after each consecutive miss.
      this.skip = this.backoff;
      this.backoff = Math.min(this.backoff * 2, REPLY_POLL_MAX_BACKOFF);
    }
    return false;
  }
}
