/**
 * The regression corpus: failing (and hand-picked nasty) inputs saved as JSON
 * under tests/fuzz/corpus/, replayed by tests/fuzz.test.ts.
 *
 * Bytes are stored as `hex`, as `gzip64` (gzip, base64) when large, or as
 * `parts: [{ hex, repeat? }]` for hand-written inputs with long repeats.
 * `pin`, when present, is the exact outcome the input must have (a status
 * name, "ok", or for live entries the event list), so a replay fails if a
 * fixed bug comes back even when the general oracle would accept the new
 * behaviour.
 * @module
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";

export const CORPUS_DIR = new URL("./corpus/", import.meta.url).pathname;

export interface StoredBytes {
  hex?: string;
  gzip64?: string;
  parts?: { hex: string; repeat?: number }[];
}

export interface DecoderEntry extends StoredBytes {
  kind: "decoder";
  schema: string;
  fdsIn: number;
  handles: boolean;
  /** What the oracle allows, in words. */
  expected: string;
  /** What happened when the entry was saved. */
  actual: string;
  /** Exact outcome to insist on: "ok" or a status name. */
  pin?: string;
  seed?: number;
  case?: number;
  note?: string;
}

export interface LiveEntry extends StoredBytes {
  kind: "live";
  protocol: string;
  /** Packet size the raw side announces in its CONNECT (the receiver's own is 8192). */
  packetSize: number;
  maxMessageSize?: number;
  /** Real fds (one per entry) sent with the stream's first byte. */
  fds: number;
  /** Close the raw side after writing (EOF). */
  close: boolean;
  /** The bytes start with the raw side's own (possibly mutated) CONNECT greeting. */
  greeting?: boolean;
  expected: string;
  actual: string;
  /** Exact event list to insist on (as live.ts prints events). */
  pin?: string[];
  seed?: number;
  case?: number;
  note?: string;
}

export type CorpusEntry = DecoderEntry | LiveEntry;

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/[^0-9a-fA-F]/g, "");
  return new Uint8Array(Buffer.from(clean, "hex"));
}

/** Bytes → the stored form (hex up to 16 KiB, gzip+base64 beyond). */
export function storeBytes(b: Uint8Array): StoredBytes {
  if (b.length <= 16 * 1024) return { hex: toHex(b) };
  return { gzip64: Buffer.from(Bun.gzipSync(new Uint8Array(b))).toString("base64") };
}

export function loadBytes(e: StoredBytes): Uint8Array {
  if (e.hex !== undefined) return fromHex(e.hex);
  if (e.gzip64 !== undefined) return new Uint8Array(Bun.gunzipSync(Buffer.from(e.gzip64, "base64")));
  if (e.parts !== undefined) {
    const chunks: Uint8Array[] = [];
    for (const p of e.parts) {
      const b = fromHex(p.hex);
      for (let i = 0; i < (p.repeat ?? 1); i++) chunks.push(b);
    }
    return new Uint8Array(Buffer.concat(chunks));
  }
  throw new Error("corpus entry has no bytes (hex, gzip64 or parts)");
}

function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Write `entry` to the corpus (file name from its kind, schema/protocol and content); returns the path. Existing files are kept. */
export function saveEntry(entry: CorpusEntry, dir = CORPUS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const what = entry.kind === "decoder" ? entry.schema : entry.protocol;
  const body = JSON.stringify(entry, null, 2) + "\n";
  const name = `${entry.kind}-${what.replace(/[^A-Za-z0-9_.-]/g, "_")}-${hash(JSON.stringify({ ...entry, actual: "", seed: 0, case: 0 }))}.json`;
  const path = join(dir, name);
  if (!existsSync(path)) writeFileSync(path, body);
  return path;
}

/** Every corpus file, sorted by name. */
export function loadCorpus(dir = CORPUS_DIR): { file: string; entry: CorpusEntry }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({ file: f, entry: JSON.parse(readFileSync(join(dir, f), "utf8")) as CorpusEntry }));
}
