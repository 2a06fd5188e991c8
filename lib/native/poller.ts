/**
 * Tells the JS thread when a socket the library owns is readable or
 * writable, without blocking it and without busy-polling (SPEC §2).
 *
 * One epoll thread in the shim watches every armed fd (EPOLLONESHOT: an fd
 * reports once, then stays quiet until re-armed after draining). The thread
 * wakes JS by one of two mechanisms (reference/prior-art.md §B.6):
 *  - `"doorbell"` (default): a byte into a socketpair whose other end Bun
 *    itself watches (`Bun.connect({ fd })`); only stable Bun machinery runs on
 *    the JS side, and no JS is ever called from a foreign thread.
 *  - `"callback"`: a threadsafe `JSCallback` posted to the JS thread. Bun
 *    calls it experimental (crash history in prior-art §B.3), so opt-in only.
 * `bench/poller.bench.ts` compares both; pick with `LWMSG_POLLER=callback`.
 * @module
 */
import { JSCallback, type Pointer } from "bun:ffi";
import { native } from "./ffi.ts";
import { closeFd, socketPair } from "./socket.ts";
import { LwMsgError } from "../status.ts";

export const READABLE = 0x001; // EPOLLIN
export const WRITABLE = 0x004; // EPOLLOUT
export const ERROR = 0x008; // EPOLLERR
export const HANGUP = 0x010; // EPOLLHUP

export type PollerMechanism = "doorbell" | "callback";

/** One registered fd. `onReady(events)` runs on the JS thread after each armed readiness. */
export class Watch {
  armed = false;
  constructor(
    readonly poller: Poller,
    readonly fd: number,
    readonly token: number,
    public onReady: (events: number) => void,
  ) {}
  /** Arm for `events` (READABLE | WRITABLE), one shot. */
  arm(events: number): void {
    this.poller.arm(this, events);
  }
  /** Stop watching (before the fd is closed). */
  remove(): void {
    this.poller.remove(this);
  }
}

export class Poller {
  readonly mechanism: PollerMechanism;
  private handle: Pointer;
  private watches = new Map<number, Watch>();
  private nextToken = 1;
  private events = new Int32Array(new ArrayBuffer(2 * 256 * 4));
  private refs = 0;
  // doorbell
  private bellFds: [number, number] | null = null;
  private bellSocket: { ref(): void; unref(): void; end(): void } | null = null;
  // callback
  private callback: JSCallback | null = null;
  private keepAlive: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  constructor(mechanism: PollerMechanism = "doorbell") {
    this.mechanism = mechanism;
    if (mechanism === "doorbell") {
      const fds = socketPair();
      this.bellFds = fds;
      const h = native.lw_poller_new(fds[0], null);
      if (!h) {
        closeFd(fds[0]);
        closeFd(fds[1]);
        throw new Error("bun-lwmsg: could not start the poller thread");
      }
      this.handle = h as Pointer;
      // Bun owns the other end and reads (and discards) the doorbell bytes.
      Bun.connect({
        fd: fds[1],
        socket: {
          data: () => this.drain(),
          error: () => {},
          close: () => {},
        },
      } as unknown as Parameters<typeof Bun.connect>[0]).then(
        (s) => {
          this.bellSocket = s as unknown as { ref(): void; unref(): void; end(): void };
          if (this.closed) s.end(); // closed before Bun took the fd: it is Bun's to close now
          else if (this.refs === 0) this.bellSocket.unref();
        },
        () => closeFd(fds[1]),
      );
    } else {
      this.callback = new JSCallback(() => this.drain(), { args: [], returns: "void", threadsafe: true });
      const h = native.lw_poller_new(-1, this.callback.ptr);
      if (!h) {
        this.callback.close();
        throw new Error("bun-lwmsg: could not start the poller thread");
      }
      this.handle = h as Pointer;
    }
  }

  private static instance: Poller | null = null;
  /** The process-wide poller (one epoll thread serves every fd). */
  static shared(): Poller {
    if (!Poller.instance) {
      const m = (process.env["LWMSG_POLLER"] as PollerMechanism | undefined) ?? "doorbell";
      Poller.instance = new Poller(m === "callback" ? "callback" : "doorbell");
    }
    return Poller.instance;
  }

  /** Register `fd`; nothing is reported until {@link Watch.arm}. */
  watch(fd: number, onReady: (events: number) => void): Watch {
    const token = this.nextToken++ & 0x7fffffff || (this.nextToken = 2, 1);
    const w = new Watch(this, fd, token, onReady);
    this.watches.set(token, w);
    return w;
  }

  arm(w: Watch, events: number): void {
    const r = native.lw_poller_arm(this.handle, w.fd, events, w.token);
    if (r < 0) throw LwMsgError.fromErrno(`epoll arm fd ${w.fd}`, r);
    w.armed = true;
  }

  remove(w: Watch): void {
    if (!this.watches.delete(w.token)) return;
    w.armed = false;
    native.lw_poller_remove(this.handle, w.fd);
  }

  /** Keep the process alive while someone waits on an fd (like a Node socket). */
  ref(): void {
    if (this.refs++ === 0) {
      if (this.bellSocket) this.bellSocket.ref();
      else if (this.mechanism === "callback") this.keepAlive = setInterval(() => {}, 1 << 30);
    }
  }

  unref(): void {
    if (this.refs === 0) return;
    if (--this.refs === 0) {
      if (this.bellSocket) this.bellSocket.unref();
      if (this.keepAlive) {
        clearInterval(this.keepAlive);
        this.keepAlive = null;
      }
    }
  }

  /** Wake count of the poller thread (for the bench's CPU-per-wake figure). */
  get wakes(): number {
    return native.lw_poller_wakes(this.handle);
  }

  private drain(): void {
    // A wake posted before close() can still run after it (a queued threadsafe
    // JSCallback call, or doorbell bytes already read): the C poller is freed by
    // then, so touching the handle would be a use-after-free.
    if (this.closed) return;
    const ev = this.events;
    for (;;) {
      const n = native.lw_poller_take(this.handle, ev, 256);
      for (let i = 0; i < n; i++) {
        if (this.closed) return; // an onReady closed the poller
        const w = this.watches.get(ev[2 * i]!);
        if (w === undefined || !w.armed) continue; // removed since: a stale event
        w.armed = false;
        try {
          w.onReady(ev[2 * i + 1]!);
        } catch (e) {
          queueMicrotask(() => {
            throw e;
          });
        }
      }
      if (n < 256) break;
    }
  }

  /** Stop the thread and release everything (tests and benches). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.lw_poller_free(this.handle);
    this.watches.clear();
    if (this.bellFds) {
      closeFd(this.bellFds[0]);
      // Bun's end of the doorbell: its socket closes it. If Bun.connect has not
      // settled yet, its callback ends the socket (closing the number here too
      // would close whatever reused it by then).
      this.bellSocket?.end();
    }
    if (this.callback) this.callback.close();
    if (this.keepAlive) clearInterval(this.keepAlive);
    if (Poller.instance === this) Poller.instance = null;
  }
}
