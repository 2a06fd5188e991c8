/**
 * Handles in archives. An archive has no session, so a handle is stored as
 * what went over the wire: its locality byte (from the writer's view: 1 =
 * local to the sender, 2 = remote) and its id. Reading gives a
 * {@link Handle} with that location and id, which prints as lwmsg prints
 * handles (`<FileHandle:local[3]>`) and writes back unchanged. (lwmsg
 * itself cannot archive a non-NULL handle: its handle class needs a session.)
 * @module
 */
import { Handle } from "../handle.ts";
import type { ByteReader, ByteWriter, HandleCodec } from "../codec/io.ts";
import { LwMsgError, Status } from "../status.ts";

export const recordedHandles: HandleCodec = {
  writeHandle(w: ByteWriter, handle: unknown, _typeName: string, _flags: number, notNull: boolean): void {
    w.ensure(5);
    if (handle === null || handle === undefined) {
      if (notNull) throw new LwMsgError(Status.INVALID_HANDLE, "NULL handle where a non-null handle is required");
      w.buf[w.pos++] = 0;
      return;
    }
    const h = handle as { location?: unknown; id?: unknown };
    if ((h.location !== 1 && h.location !== 2) || typeof h.id !== "number" || !Number.isInteger(h.id) || h.id < 0 || h.id > 0xffffffff) {
      throw new LwMsgError(Status.INVALID_HANDLE, "an archived handle needs { location: 1 | 2, id: u32 }");
    }
    w.buf[w.pos++] = h.location;
    w.view.setUint32(w.pos, h.id);
    w.pos += 4;
  },
  readHandle(r: ByteReader, typeName: string, _flags: number, notNull: boolean): unknown {
    if (r.pos >= r.end) throw new LwMsgError(Status.EOF, "payload ends inside a handle");
    const loc = r.buf[r.pos++]!;
    if (loc === 0) {
      if (notNull) throw new LwMsgError(Status.INVALID_HANDLE, "NULL handle where a non-null handle is required");
      return null;
    }
    if (loc !== 1 && loc !== 2) throw new LwMsgError(Status.MALFORMED, `handle locality ${loc}`);
    if (r.pos + 4 > r.end) throw new LwMsgError(Status.EOF, "payload ends inside a handle");
    const id = r.view.getUint32(r.pos);
    r.pos += 4;
    return new Handle(typeName, loc, id);
  },
};
