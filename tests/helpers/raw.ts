/**
 * A raw byte-level peer for wire tests: one end of a real socketpair read by
 * Bun itself (so it never blocks the thread the Connection runs on), written
 * with the shim (so it can also send SCM_RIGHTS fds).
 * @module
 */
import { ptr } from "bun:ffi";
import { native } from "../../lib/native/ffi.ts";

export interface RawPeer {
  readonly fd: number;
  /** Every byte received so far. */
  received(): Uint8Array;
  /** Wait until at least n bytes have arrived (rejects after `ms`). */
  waitBytes(n: number, ms?: number): Promise<Uint8Array>;
  /** Write bytes (and optionally fds) with one sendmsg. */
  write(bytes: Uint8Array, fds?: number[]): void;
  /** True once the other side closed. */
  readonly ended: boolean;
  waitEnd(ms?: number): Promise<void>;
  close(): void;
}

export async function rawPeer(fd: number): Promise<RawPeer> {
  let chunks: Uint8Array[] = [];
  let total = 0;
  let ended = false;
  let wake: (() => void) | null = null;
  const sock = await Bun.connect({
    fd,
    socket: {
      data(_s: unknown, d: Uint8Array) {
        chunks.push(new Uint8Array(d));
        total += d.length;
        wake?.();
      },
      end() {
        ended = true;
        wake?.();
      },
      close() {
        ended = true;
        wake?.();
      },
      error() {},
    },
  } as any);
  const received = () => {
    if (chunks.length !== 1) {
      const all = new Uint8Array(total);
      let o = 0;
      for (const c of chunks) {
        all.set(c, o);
        o += c.length;
      }
      chunks = [all];
    }
    return chunks[0] ?? new Uint8Array(0);
  };
  const until = async (cond: () => boolean, ms: number, what: string) => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`raw peer: timed out waiting for ${what} (have ${total} bytes)`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, Math.min(left, 50));
      });
      wake = null;
    }
  };
  return {
    fd,
    received,
    async waitBytes(n, ms = 5000) {
      await until(() => total >= n, ms, `${n} bytes`);
      return received();
    },
    write(bytes, fds = []) {
      const copy = new Uint8Array(new ArrayBuffer(bytes.length));
      copy.set(bytes);
      const f = new Int32Array(new ArrayBuffer(Math.max(4, fds.length * 4)));
      f.set(fds);
      let off = 0;
      while (off < copy.length) {
        const r = native.lw_send(fd, (ptr(copy) + off) as any, copy.length - off, fds.length && off === 0 ? ptr(f) : null, off === 0 ? fds.length : 0);
        if (r < 0) throw new Error(`raw peer write failed: errno ${-r}`);
        off += r;
      }
    },
    get ended() {
      return ended;
    },
    async waitEnd(ms = 5000) {
      await until(() => ended, ms, "end");
    },
    close() {
      (sock as any).end();
    },
  };
}

/** Hex string → bytes ("ff 00 0a" / "ff000a"). */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/[^0-9a-fA-F]/g, "");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
