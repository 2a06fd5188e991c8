/**
 * The association's hold on its transport: which one, keeping the process
 * alive while something waits on it, and the exact reads and writes with a
 * deadline that the handshake and the goodbye need. {@link Association}
 * builds the message traffic on top.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { AGAIN, READABLE, WRITABLE, type Transport } from "../transport/types.ts";
import type { InboundFramer } from "../wire/inbound.ts";
import { encodeShutdown } from "../wire/packets.ts";

export abstract class Link {
  /** @internal what carries the bytes (null before connect/accept and after teardown). */
  protected transport: Transport | null = null;
  private refd = false;
  // Handshake-time I/O: one exact read or write waiting for readiness.
  private ioWaiter: { events: number; resolve: () => void } | null = null;
  private abortIo: ((e: unknown) => void) | null = null;

  /** @internal */
  protected abstract readonly framer: InboundFramer;
  /** @internal true while a receive or a send waits (the process must stay alive). */
  protected abstract waiting(): boolean;
  /** @internal readiness while established (the handshake's waits are served first). */
  protected abstract ready(): void;

  /** @internal start reading from `t`. */
  protected attach(t: Transport): void {
    this.transport = t;
    this.framer.makeRoom();
    t.start(this.onReady);
  }

  private onReady = (): void => {
    const w = this.ioWaiter;
    if (w !== null) {
      this.ioWaiter = null;
      w.resolve();
      return;
    }
    this.ready();
  };

  /** True if input (or the peer's close) is waiting to be read: lets the peer layer notice a dead idle connection before it sends. */
  inputPending(): boolean {
    return this.transport !== null && this.transport.inputPending();
  }

  /** @internal a refusal travels as SHUTDOWN(status) in place of ACCEPT (see Connection.accept). */
  protected sendRefusal(status: number): void {
    const b = encodeShutdown(status);
    this.transport?.write(b, 0, b.length, null, 0);
  }

  /** @internal READABLE/WRITABLE the handshake is waiting for (0 when none). */
  protected get ioEvents(): number {
    return this.ioWaiter?.events ?? 0;
  }

  /** @internal wait for the transport to be readable/writable, or the deadline. */
  protected waitFor(events: number, deadline: number | null, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer) clearTimeout(timer);
        this.unrefIfIdle();
        resolve();
      };
      this.ioWaiter = { events, resolve: done };
      this.abortIo = (e: unknown) => {
        if (timer) clearTimeout(timer);
        this.ioWaiter = null;
        this.unrefIfIdle();
        reject(e);
      };
      if (deadline !== null) {
        timer = setTimeout(() => {
          this.ioWaiter = null;
          this.unrefIfIdle();
          reject(new LwMsgError(Status.TIMEOUT, `${what}: timed out`));
        }, Math.max(0, deadline - Date.now()));
      }
      this.ref();
      this.transport!.arm(events);
    });
  }

  /** @internal write all of `bytes` (a greeting, a SHUTDOWN) before the deadline. */
  protected async writeAll(bytes: Uint8Array, deadline: number | null, what: string): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const r = this.transport!.write(bytes, off, bytes.length - off, null, 0);
      if (r > 0) off += r;
      else if (r === AGAIN || r === 0) await this.waitFor(WRITABLE, deadline, what);
      else throw LwMsgError.fromErrno(what, r, true);
    }
  }

  /** @internal read the peer's greeting (or the SHUTDOWN that refuses us). Extra bytes stay for the framer. */
  protected async readGreeting(n: number, deadline: number | null, what: string): Promise<Uint8Array> {
    const f = this.framer;
    for (;;) {
      const g = f.takeGreeting(n);
      if (g !== null) return g;
      f.makeRoom();
      // fds sent with a greeting (AUTH_LOCAL pipe on platforms without peer creds) are not used here.
      const r = this.transport!.read(f.readTarget, f.readOffset, f.readLength, null, 0);
      if (r > 0) f.wrote(r);
      else if (r === AGAIN) await this.waitFor(READABLE, deadline, what);
      // What EOF or an errno cannot tell (a TLS alert: the peer refused our certificate) the transport says.
      else throw this.transport!.failure ?? (r === 0 ? new LwMsgError(Status.PEER_CLOSE, `${what}: peer closed the connection`) : LwMsgError.fromErrno(what, r, true));
    }
  }

  /** @internal keep the process alive while something waits. */
  protected ref(): void {
    if (!this.refd && this.transport) {
      this.refd = true;
      this.transport.ref();
    }
  }

  /** @internal let go once nothing waits any more. */
  protected unrefIfIdle(): void {
    if (this.refd && !this.waiting() && !this.ioWaiter) {
      this.refd = false;
      this.transport?.unref();
    }
  }

  /** @internal fail a pending handshake wait with `reason`, then close the transport. */
  protected closeTransport(reason: LwMsgError): void {
    const a = this.abortIo;
    this.abortIo = null;
    if (a !== null && this.ioWaiter !== null) a(reason);
    this.ioWaiter = null;
    if (this.refd) {
      this.refd = false;
      this.transport?.unref();
    }
    this.transport?.close();
    this.transport = null;
  }
}
