/**
 * `bun-lwmsg dump FILE [--protocol MODULE] [--json]`: what lwmsg's `lwma
 * dump` prints — the schema, then each message as `[i] NAME: <data>` —
 * read as a stream (one record in memory at a time). The file's own schema
 * is used when it has one (a `--protocol` is then checked against it and
 * extended by it); records that do not decode are shown as hex.
 * `--json`: one JSON object per line (`{"schema": …}`, then one per message).
 * @module
 */
import { Archive, ArchiveDisposition, CodecContext, Lw, LwMsgError, Status, type Protocol } from "../../lib/index.ts";
import { hexDump, messageText, metaText } from "./format.ts";
import { toJson } from "./json.ts";

/** Fd indicators in recorded messages: the fds themselves are not in the file. */
class NoFds extends CodecContext {
  override takeFd(): number {
    return -1;
  }
}

type Write = (s: string) => void | Promise<void>;

export async function dump(file: string, protocol: Protocol<any> | null, json: boolean, write: Write): Promise<number> {
  const a = new Archive(protocol ?? Lw.Protocol({}));
  a.setFile(file);
  a.setProtocolUpdate(true);
  await a.open(ArchiveDisposition.READ | ArchiveDisposition.SCHEMA);
  let count = 0;
  try {
    const p = a.protocol;
    const h = a.header!;
    if (json) {
      await write(
        JSON.stringify({
          archive: { version: `${h.major}.${h.minor}.${h.micro}`, byteOrder: h.byteOrder ? "big-endian" : "little-endian", schema: h.schema },
          schema: p.entries().map((e) => ({ tag: e.tag, name: e.name, type: e.type ? Lw.printType(e.type) : null })),
        }) + "\n",
      );
    } else {
      await write(`------\nSchema\n------\n\n${h.schema ? p.print() : "(none in the file)"}\n\n--------\nMessages\n--------\n\n`);
    }
    for (;; count++) {
      let rec;
      try {
        rec = await a.readRecord();
      } catch (e) {
        if (e instanceof LwMsgError && e.status === Status.EOF) break;
        throw e;
      }
      let text: string;
      let out: Record<string, unknown>;
      const meta = { index: count, tag: rec.tag, cookie: rec.cookie, flags: rec.flags, status: rec.status };
      try {
        const m = a.decodeRecord(rec, new NoFds(a.recordHandles));
        text = messageText(p, m.tag, m.name, m.data);
        out = { ...meta, name: m.name ?? null, data: toJson(m.data) };
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        text = `${p.nameOf(rec.tag) ?? `tag ${rec.tag}`}: <undecoded, ${rec.payload.length} bytes: ${why}>${rec.payload.length ? "\n" + hexDump(rec.payload) : ""}`;
        out = { ...meta, name: p.nameOf(rec.tag) ?? null, error: why, payload: toJson(rec.payload) };
      }
      if (json) await write(JSON.stringify(out) + "\n");
      else await write(`[${count}${metaText(rec)}] ${text}\n\n`);
    }
  } finally {
    await a.close();
  }
  return count;
}
