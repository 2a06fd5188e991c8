/**
 * Promises an association hands out while it waits: the parked recv() (at
 * most one) and the send()s waiting for the outgoing queue to drain.
 * @module
 */
import { LwMsgError } from "../status.ts";
import type { ReceivedMessage } from "./message.ts";

export type Waiter<T> = { resolve: (v: T) => void; reject: (e: unknown) => void; timer: ReturnType<typeof setTimeout> | null };

/** The send()s waiting until queued bytes fall under `sendQueueLimit`. */
export class DrainWaiters {
  private ws: Waiter<void>[] = [];

  get waiting(): boolean {
    return this.ws.length > 0;
  }

  /** Wait; after `timeoutMs` (if not null) `onTimeout()` runs and its error rejects this waiter. */
  wait(timeoutMs: number | null, onTimeout: () => LwMsgError): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const w: Waiter<void> = { resolve, reject, timer: null };
      if (timeoutMs !== null) {
        w.timer = setTimeout(() => {
          const i = this.ws.indexOf(w);
          if (i >= 0) this.ws.splice(i, 1);
          reject(onTimeout());
        }, timeoutMs);
      }
      this.ws.push(w);
    });
  }

  /** Resolve every waiter. */
  release(): void {
    const ws = this.ws;
    this.ws = [];
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve();
    }
  }

  /** Reject every waiter with `e`. */
  fail(e: unknown): void {
    const ws = this.ws;
    this.ws = [];
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(e);
    }
  }
}

/** A queued receive result as the promise recv() returns. */
export function settled(m: ReceivedMessage | LwMsgError): Promise<ReceivedMessage> {
  return m instanceof LwMsgError ? Promise.reject(m) : Promise.resolve(m);
}

/** Hand a receive result to a parked recv(). */
export function answer(w: Waiter<ReceivedMessage>, m: ReceivedMessage | LwMsgError): void {
  if (m instanceof LwMsgError) w.reject(m);
  else w.resolve(m);
}
