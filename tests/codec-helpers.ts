// Shared helpers for the codec suites.
import { expect } from "bun:test";
import { LwMsgError, type Status } from "../lib/status.ts";

/** "FF D6 00 'foo'" → bytes. Quoted runs are ASCII. */
export function hex(s: string): Uint8Array {
  const out: number[] = [];
  const re = /'([^']*)'|([0-9a-fA-F]{2})|\s+|\|/g;
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(s)) !== null) {
    if (m.index !== last) throw new Error(`bad hex at ${last}: ${s}`);
    last = re.lastIndex;
    if (m[1] !== undefined) for (const c of m[1]) out.push(c.charCodeAt(0));
    else if (m[2] !== undefined) out.push(parseInt(m[2], 16));
  }
  if (last !== s.length) throw new Error(`bad hex at ${last}: ${s}`);
  return new Uint8Array(out);
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** Expect `fn` to throw an LwMsgError with `status` (and a message matching `msg`). */
export function expectStatus(fn: () => unknown, status: Status, msg?: RegExp | string): LwMsgError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof LwMsgError)) throw new Error(`expected LwMsgError(${status}), got ${err === undefined ? "no error" : String(err)}`);
  expect(err.status).toBe(status);
  if (msg !== undefined) expect(err.message).toMatch(msg);
  return err;
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
