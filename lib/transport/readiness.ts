/**
 * One-shot readiness for transports whose data is pushed to us (Bun's
 * sockets, the in-memory pair): `arm()` asks for READABLE/WRITABLE, and the
 * association hears of it on a microtask — never inside one of its own calls.
 * @module
 */

export abstract class PushReadiness {
  /** @internal */
  protected onReady: ((events: number) => void) | null = null;
  /** @internal */
  protected armed = 0;
  /** @internal */
  protected closed = false;
  private deliveryScheduled = false;

  /** READABLE/WRITABLE as things stand now. */
  protected abstract readyEvents(): number;

  start(onReady: (events: number) => void): void {
    this.onReady = onReady;
  }

  arm(events: number): void {
    this.armed |= events;
    this.maybeDeliver();
  }

  /** @internal report armed events that are ready, on a microtask. */
  protected maybeDeliver(): void {
    if (this.deliveryScheduled || this.closed || this.onReady === null || (this.readyEvents() & this.armed) === 0) return;
    this.deliveryScheduled = true;
    queueMicrotask(this.deliver);
  }

  private deliver = (): void => {
    this.deliveryScheduled = false;
    if (this.closed || this.onReady === null) return;
    const ev = this.readyEvents() & this.armed;
    if (ev === 0) return;
    this.armed &= ~ev;
    this.onReady(ev);
  };

  /** @internal no more readiness (the transport closed). */
  protected stopReadiness(): void {
    this.closed = true;
    this.armed = 0;
    this.onReady = null;
  }
}
