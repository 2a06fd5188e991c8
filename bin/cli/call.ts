/**
 * `bun-lwmsg call PATH TAG JSON --protocol MODULE [--fd FILE] [--json]`: one
 * request over a plain `Connection` (what `varlinkctl call` is to varlink),
 * then the reply printed in lwmsg's format. `--fd FILE` opens FILE and sends
 * its descriptor in the request's fd fields (those given as `"$fd"` or left
 * out); fds that come back are listed with what they point at.
 * Handles print from the caller's view (`<FileHandle:remote[1]>` for a
 * server's object) and can be sent back as `{"$handle": {...}}`.
 * @module
 */
import { closeSync, fstatSync, openSync, readlinkSync } from "node:fs";
import { Connection, ConnectionMode, Handle, LwMsgError, Status, type HandleCodec, type Protocol } from "../../lib/index.ts";
import { recordedHandles } from "../../lib/archive/index.ts";
import { UsageError } from "./args.ts";
import { messageText, metaText } from "./format.ts";
import { coerce, parseJson, toJson } from "./json.ts";

/** Handles as the caller sees them: the wire locality is the sender's, so reading flips it. */
const callerHandles: HandleCodec = {
  writeHandle: recordedHandles.writeHandle,
  readHandle(r, typeName, flags, notNull) {
    const h = recordedHandles.readHandle(r, typeName, flags, notNull) as Handle | null;
    return h ? new Handle(h.typeName, h.location === 1 ? 2 : 1, h.id) : h;
  },
};

function describeFd(fd: number): string {
  let what = "?";
  try {
    what = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {}
  try {
    const st = fstatSync(fd);
    if (st.isFile()) what += ` (file, ${st.size} bytes)`;
  } catch {}
  return what;
}

export interface CallArgs {
  path: string;
  tag: string;
  json: string;
  protocol: Protocol<any>;
  fdFile: string | null;
  jsonOut: boolean;
  timeoutMs: number;
}

/** Run the call; returns the exit code (0 = reply received with status SUCCESS, 1 = a reply with another status). */
export async function call(args: CallArgs, write: (s: string) => void): Promise<number> {
  const entry = /^-?\d+$/.test(args.tag) ? args.protocol.byTag(Number(args.tag)) : args.protocol.byName(args.tag);
  if (!entry) throw new UsageError(`message ${args.tag} is not in the protocol (it has ${args.protocol.entries().map((e) => e.name).join(", ")})`);
  let value: unknown;
  try {
    value = parseJson(args.json);
  } catch (e) {
    throw new UsageError(`the request is not valid JSON: ${(e as Error).message}`);
  }
  const fd = args.fdFile !== null ? openSync(args.fdFile, "r") : -1;
  let ours = fd; // our copy of the fd, until send() has taken its duplicate
  const c = new Connection(args.protocol);
  try {
    const data = entry.type ? coerce(entry.type, value, fd) : undefined;
    c.setHandles(callerHandles);
    c.setTimeout("establish", args.timeoutMs);
    c.setTimeout("message", args.timeoutMs);
    c.setEndpoint(ConnectionMode.LOCAL, args.path);
    await c.connect();
    await c.send({ tag: entry.tag, data });
    if (ours >= 0) closeSync(ours); // send() took its own duplicate
    ours = -1;
    using reply = await c.recv();
    const fds = reply.fds ?? [];
    if (args.jsonOut) {
      write(JSON.stringify({ tag: reply.tag, name: reply.name ?? null, cookie: reply.cookie, flags: reply.flags, status: reply.status, data: toJson(reply.data), fds: fds.map((f) => ({ fd: f, target: describeFd(f) })) }) + "\n");
    } else {
      write(`${metaText(reply) ? `[${metaText(reply).trim()}] ` : ""}${messageText(args.protocol, reply.tag, reply.name, reply.data)}\n`);
      for (const f of fds) write(`fd ${f} → ${describeFd(f)}\n`);
    }
    return reply.status === Status.SUCCESS ? 0 : 1;
  } catch (e) {
    if (ours >= 0) closeSync(ours);
    if (e instanceof LwMsgError && e.status === Status.MALFORMED && /data|value/.test(e.message)) throw new LwMsgError(e.status, `the request does not fit ${entry.name}: ${e.message.replace(/^[A-Z_]+: /, "")}`, { cause: e });
    throw e;
  } finally {
    await c.close().catch(() => c.destroy());
  }
}
