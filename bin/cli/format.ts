/**
 * How `bun-lwmsg` prints messages: lwmsg's `lwmsg_assoc_print_message_alloc`
 * text (`NAME: <Lw.print of the payload>`, or just `NAME` without one),
 * headed by what the text lacks (cookie, flags, status) when they are not
 * zero; undecodable payloads as a header line and a hex+ascii dump.
 * @module
 */
import { Lw, MessageFlags, statusShortName, type Protocol } from "../../lib/index.ts";

/** Names of the set message flags, e.g. `REPLY|SYNTHETIC`. */
export function flagNames(flags: number): string {
  const names = Object.entries(MessageFlags)
    .filter(([, bit]) => flags & bit)
    .map(([n]) => n);
  const rest = flags & ~Object.values(MessageFlags).reduce((a, b) => a | b, 0);
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.join("|");
}

/** ` cookie=3 flags=REPLY status=MALFORMED`, only the non-zero parts. */
export function metaText(m: { cookie: number; flags: number; status: number }): string {
  let s = "";
  if (m.cookie) s += ` cookie=${m.cookie}`;
  if (m.flags) s += ` flags=${flagNames(m.flags)}`;
  if (m.status) s += ` status=${statusShortName(m.status)}`;
  return s;
}

/** The lwmsg text of a decoded message. */
export function messageText(protocol: Protocol<any>, tag: number, name: string | undefined, data: unknown): string {
  const type = tag >= 0 ? protocol.byTag(tag)?.type : null;
  const label = name ?? (tag === -1 ? "(no payload)" : `tag ${tag}`);
  return type ? `${label}: ${Lw.print(type as never, data as never)}` : label;
}

/** A hex+ascii dump, 16 bytes a line, as lwmsg prints `hex+ascii` data. */
export function hexDump(bytes: Uint8Array, indent = "    ", max = 4096): string {
  const lines: string[] = [];
  const n = Math.min(bytes.length, max);
  for (let off = 0; off < n; off += 16) {
    const row = bytes.subarray(off, Math.min(off + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${indent}${off.toString(16).padStart(8, "0")}   ${hex.padEnd(48)}  |${ascii}|`);
  }
  if (bytes.length > n) lines.push(`${indent}… ${bytes.length - n} more bytes`);
  return lines.join("\n");
}

/** A message that could not be decoded: header line, why, and its bytes. */
export function rawText(tag: number, payload: Uint8Array, why: string | null): string {
  return `tag ${tag}, ${payload.length} bytes${why ? ` (${why})` : ""}${payload.length ? "\n" + hexDump(payload) : ""}`;
}
