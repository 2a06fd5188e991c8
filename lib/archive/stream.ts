/**
 * Buffered, asynchronous reads and writes on a file descriptor, so an
 * archive streams: reading holds one 64 KiB buffer plus the record being
 * read, never the whole file. Works on regular files, pipes and sockets.
 * @module
 */
import { fstat, read, write } from "node:fs";
import { LwMsgError, Status, mapErrno } from "../status.ts";

const CHUNK = 64 * 1024;

function ioError(e: unknown, what: string): LwMsgError {
  const err = e as NodeJS.ErrnoException;
  const errno = typeof err?.errno === "number" ? Math.abs(err.errno) : undefined;
  const status = errno !== undefined ? mapErrno(errno) : Status.SYSTEM;
  return new LwMsgError(status, `${what}: ${err?.message ?? String(e)}`, { cause: e });
}

function readOnce(fd: number, buf: Uint8Array, off: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, off, len, null, (e, n) => {
      if (e) {
        if (e.code === "EAGAIN" || e.code === "EINTR") setTimeout(() => readOnce(fd, buf, off, len).then(resolve, reject), 1);
        else reject(ioError(e, "archive read"));
      } else resolve(n);
    });
  });
}

/** Sequential reader with a byte offset. */
export class FdReader {
  private buf = new Uint8Array(CHUNK);
  private start = 0;
  private end = 0;
  /** Bytes consumed so far (the file offset of the next byte). */
  offset = 0;

  constructor(private readonly fd: number) {}

  /** Size of the file if it is a regular file (used to refuse lengths the file cannot hold before allocating), else null. */
  size(): Promise<number | null> {
    return new Promise((resolve) => fstat(this.fd, (e, st) => resolve(!e && st.isFile() ? st.size : null)));
  }

  /** Exactly `n` bytes, or fewer only at the end of the file. The result is a fresh copy. */
  async read(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.start === this.end) {
        // a big remainder goes straight into `out`; small reads refill the buffer
        if (n - got >= CHUNK) {
          const r = await readOnce(this.fd, out, got, n - got);
          if (r === 0) break;
          got += r;
          this.offset += r;
          continue;
        }
        const r = await readOnce(this.fd, this.buf, 0, CHUNK);
        if (r === 0) break;
        this.start = 0;
        this.end = r;
      }
      const take = Math.min(n - got, this.end - this.start);
      out.set(this.buf.subarray(this.start, this.start + take), got);
      this.start += take;
      got += take;
      this.offset += take;
    }
    return got === n ? out : out.subarray(0, got);
  }

  /** Skip `n` bytes; returns how many there were. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const chunk = await this.read(Math.min(left, CHUNK));
      if (chunk.length === 0) break;
      left -= chunk.length;
    }
    return n - left;
  }
}

/** Write all of `bytes` (retrying short writes). */
export function writeAll(fd: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = 0;
    const step = () => {
      if (off >= bytes.length) return resolve();
      write(fd, bytes, off, bytes.length - off, null, (e, n) => {
        if (e) {
          if (e.code === "EAGAIN" || e.code === "EINTR") return setTimeout(step, 1);
          return reject(ioError(e, "archive write"));
        }
        off += n;
        step();
      });
    };
    step();
  });
}
