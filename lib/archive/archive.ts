/**
 * `LWMsgArchive`: messages persisted to an `LWMA` file (format in
 * ./format.ts), written and read through the same message API as an
 * association — `send` appends, `recv` reads the next one.
 *
 * ```ts
 * const out = new Archive(protocol);
 * out.setFile("/tmp/session.lwma", 0o600);
 * await out.open(ArchiveDisposition.WRITE | ArchiveDisposition.SCHEMA);
 * await out.writeMessage({ tag: "OPEN", data: { path: "/etc/hosts" } });
 * await out.close();
 *
 * const inp = new Archive(Lw.Protocol({}));
 * inp.setFile("/tmp/session.lwma");
 * inp.setProtocolUpdate(true);                 // learn the messages from the file's schema
 * await inp.open(ArchiveDisposition.READ | ArchiveDisposition.SCHEMA);
 * for await (const m of inp) console.log(m.name, m.data);
 * ```
 *
 * Decisions where lwmsg leaves room (see README "Archives"):
 * - Records are encoded in memory, then written with their header in one
 *   write (lwmsg seeks back to fill the header in): the bytes are the same,
 *   and a pipe works as well as a file.
 * - A file opened for writing is truncated (lwmsg's `O_WRONLY|O_CREAT`
 *   leaves the old tail of a longer file behind).
 * - Payload-less messages (a `null` type) are written as 0-byte records and
 *   listed in the schema with type id 0. lwmsg crashes on both (it
 *   dereferences the NULL type), so C cannot read such archives.
 * - Fds cannot be archived: a message with an fd is UNSUPPORTED on write;
 *   an fd indicator read back is MALFORMED.
 * - Handles are stored as their wire locality and id (./handles.ts).
 * - An empty or short file, a wrong magic, a newer version, a length the
 *   file cannot hold or over the limits, a truncated record or a payload
 *   that does not fill its record exactly are MALFORMED, checked before
 *   anything is allocated; a clean end of file is EOF.
 * @module
 */
import { close as closeFdCb, open as openCb, constants as fsc } from "node:fs";
import type { Protocol, ProtocolEntry } from "../protocol.ts";
import { Lw } from "../lw.ts";
import { LwMsgError, Status, mapErrno } from "../status.ts";
import { ByteReader, ByteWriter, CodecContext } from "../codec/io.ts";
import { wireOf } from "../types.ts";
import { checkProtocolRep, errorDetail, protocolToRep, updateProtocol, ProtocolRepSpec, type ProtocolRep } from "../typerep/index.ts";
import {
  ArchiveDisposition,
  ByteOrder,
  HEADER_SIZE,
  encodeHeader,
  encodeRecordHeader,
  parseHeader,
  parseRecordHeader,
  recordHeaderSize,
  type ArchiveHeader,
  type ArchiveRecord,
} from "./format.ts";
import { recordedHandles } from "./handles.ts";
import { FdReader, writeAll } from "./stream.ts";
import { swapPayload } from "./swap.ts";

/** Limits for reading untrusted files. */
export interface ArchiveOptions {
  /** Largest record payload read or written (default 16 MiB, as a connection's `maxMessageSize`). */
  maxMessageSize?: number;
  /** Largest schema block read (default 16 MiB). */
  maxSchemaSize?: number;
}

/** A message to archive: as `Connection.send` takes it. */
export interface ArchiveMessageOut {
  tag: string | number;
  data?: unknown;
  flags?: number;
  status?: number;
  cookie?: number;
}

/** A message read from an archive; shaped like a received message (never with fds). */
export class ArchivedMessage implements Disposable {
  readonly fds: null = null;
  constructor(
    readonly tag: number,
    readonly name: string | undefined,
    readonly data: any,
    readonly flags: number,
    readonly status: number,
    readonly cookie: number,
  ) {}
  /** Nothing to close: archived messages carry no fds, and their arrays are copies (nothing to recycle). */
  [Symbol.dispose](): void {}
  dispose(): void {}
  /** As `ReceivedMessage.release()`; nothing to give back. */
  release(): void {}
  /** As `ReceivedMessage.keepBytes()`; the arrays are the archive reader's copies already. */
  keepBytes(): this {
    return this;
  }
}

function unsupported(op: string): LwMsgError {
  return new LwMsgError(Status.UNSUPPORTED, `${op} is not supported on an archive`);
}

function openFile(path: string, flags: number, mode: number): Promise<number> {
  return new Promise((resolve, reject) =>
    openCb(path, flags, mode, (e, fd) => (e ? reject(new LwMsgError(mapErrno(Math.abs(e.errno ?? 0)), `archive ${path}: ${e.message}`, { cause: e })) : resolve(fd))),
  );
}

/** `LWMsgArchive`. Operations run one at a time, in call order. */
export class Archive<P extends Protocol<any> = Protocol<any>> {
  private proto: Protocol<any>;
  private path: string | null = null;
  private mode = 0o600;
  private fd = -1;
  private disp = 0;
  private order: ByteOrder = ByteOrder.BIG_ENDIAN;
  private update = false;
  private reader: FdReader | null = null;
  private fileSize: number | null = null;
  private head: ArchiveHeader | null = null;
  private schemaRep: ProtocolRep | null = null;
  private records = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly maxMessageSize: number;
  private readonly maxSchemaSize: number;

  /** `lwmsg_archive_new`. */
  constructor(protocol: P, options: ArchiveOptions = {}) {
    if (!protocol || typeof (protocol as { byTag?: unknown }).byTag !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "a protocol from Lw.Protocol(...) is required");
    this.proto = protocol;
    this.maxMessageSize = options.maxMessageSize ?? 16 * 1024 * 1024;
    this.maxSchemaSize = options.maxSchemaSize ?? 16 * 1024 * 1024;
  }

  /** The protocol in use: after reading a schema with protocol update on, the one extended by it. */
  get protocol(): Protocol<any> {
    return this.proto;
  }
  /** The schema read from the file (READ | SCHEMA on a file that has one), else null. */
  get schema(): ProtocolRep | null {
    return this.schemaRep;
  }
  /** The file's header once open for reading. */
  get header(): ArchiveHeader | null {
    return this.head;
  }
  /** Byte order of the file (set, or read from the header). */
  get byteOrder(): ByteOrder {
    return this.order;
  }
  /** True between a successful `open` and `close`. */
  get isOpen(): boolean {
    return this.fd >= 0 && this.disp !== 0;
  }
  /** Records read or written so far. */
  get count(): number {
    return this.records;
  }

  private closeNow(): void {
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      closeFdCb(fd, () => {});
    }
    this.reader = null;
    this.disp = 0;
  }

  /** `lwmsg_archive_set_file`: the file to open (created with `mode` when writing). Closes a file or fd set before. */
  setFile(path: string, mode = 0o600): void {
    if (typeof path !== "string" || path === "") throw new LwMsgError(Status.INVALID_PARAMETER, "setFile needs a path");
    this.closeNow();
    this.path = path;
    this.mode = mode;
  }

  /** `lwmsg_archive_set_fd`: use an open fd (the archive owns it from now on: close() closes it). */
  setFd(fd: number): void {
    if (!Number.isInteger(fd) || fd < 0) throw new LwMsgError(Status.INVALID_PARAMETER, "Invalid file descriptor");
    this.closeNow();
    this.path = null;
    this.fd = fd;
  }

  /** `lwmsg_archive_set_byte_order` (default big-endian). Reading takes the order from the file. */
  setByteOrder(order: ByteOrder): void {
    if (order !== ByteOrder.BIG_ENDIAN && order !== ByteOrder.LITTLE_ENDIAN) throw new LwMsgError(Status.INVALID_PARAMETER, `byte order must be ByteOrder.BIG_ENDIAN or LITTLE_ENDIAN`);
    this.order = order;
  }

  /** `lwmsg_archive_set_protocol_update`: when reading a schema, add its unknown messages to the protocol instead of requiring them. */
  setProtocolUpdate(update: boolean): void {
    this.update = !!update;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op, op);
    this.chain = run.catch(() => {});
    return run;
  }

  /** `lwmsg_archive_open`: READ or WRITE, optionally with SCHEMA (write the schema / read and apply it). */
  open(disposition: number): Promise<void> {
    return this.serial(async () => {
      if (this.disp !== 0) throw new LwMsgError(Status.INVALID_STATE, "Archive is already open");
      const mode = disposition & (ArchiveDisposition.READ | ArchiveDisposition.WRITE);
      if (mode !== ArchiveDisposition.READ && mode !== ArchiveDisposition.WRITE) {
        throw new LwMsgError(Status.INVALID_PARAMETER, "open needs exactly one of ArchiveDisposition.READ and WRITE");
      }
      if (this.fd < 0) {
        if (this.path === null) throw new LwMsgError(Status.INVALID_STATE, "No fd or filename specified");
        const flags = mode === ArchiveDisposition.READ ? fsc.O_RDONLY : fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC;
        this.fd = await openFile(this.path, flags | ((fsc as Record<string, number>)["O_CLOEXEC"] ?? 0), this.mode);
      }
      this.disp = disposition;
      this.records = 0;
      try {
        if (mode === ArchiveDisposition.READ) await this.readHead();
        else await this.writeHead();
      } catch (e) {
        this.closeNow();
        throw e;
      }
    });
  }

  /** `lwmsg_assoc_connect` on an archive: open for writing. */
  connect(): Promise<void> {
    return this.open(ArchiveDisposition.WRITE);
  }

  private async writeHead(): Promise<void> {
    const schema = (this.disp & ArchiveDisposition.SCHEMA) !== 0;
    let block: Uint8Array | null = null;
    if (schema) {
      const rep = this.payloadBytes(ProtocolRepSpec, protocolToRep(this.proto));
      block = new Uint8Array(4 + rep.length);
      new DataView(block.buffer).setUint32(0, rep.length, this.order === ByteOrder.LITTLE_ENDIAN);
      block.set(rep, 4);
    }
    const header = encodeHeader(this.order, schema);
    await writeAll(this.fd, block ? concat(header, block) : header);
  }

  /** Encode `value` as `type` in the archive's byte order. */
  private payloadBytes(type: object, value: unknown): Uint8Array {
    const w = new ByteWriter(256, this.maxMessageSize);
    const ctx = new CodecContext(recordedHandles);
    Lw.compile(type as never).encode(value as never, w, ctx);
    if (ctx.fdsOut.length > 0) throw new LwMsgError(Status.UNSUPPORTED, `archives cannot hold file descriptors (the message has ${ctx.fdsOut.length}; lwmsg refuses them too)`);
    const out = w.buf.slice(0, w.pos);
    if (this.order === ByteOrder.LITTLE_ENDIAN) swapPayload(wireOf(type), out, false);
    return out;
  }

  private async readHead(): Promise<void> {
    this.reader = new FdReader(this.fd);
    this.fileSize = await this.reader.size();
    const hb = await this.reader.read(HEADER_SIZE);
    if (hb.length === 0) throw new LwMsgError(Status.MALFORMED, "not an lwmsg archive: the file is empty");
    const head = parseHeader(hb);
    this.head = head;
    this.order = head.byteOrder;
    this.schemaRep = null;
    if (!head.schema) return;
    const lb = await this.reader.read(4);
    if (lb.length < 4) throw new LwMsgError(Status.MALFORMED, "archive is truncated in its schema length");
    const length = new DataView(lb.buffer).getUint32(0, this.order === ByteOrder.LITTLE_ENDIAN);
    this.checkLength(length, this.maxSchemaSize, "schema block");
    if (!(this.disp & ArchiveDisposition.SCHEMA)) {
      if ((await this.reader.skip(length)) < length) throw new LwMsgError(Status.MALFORMED, `archive is truncated in its ${length}-byte schema block`);
      return;
    }
    const bytes = await this.reader.read(length);
    if (bytes.length < length) throw new LwMsgError(Status.MALFORMED, `archive is truncated in its ${length}-byte schema block (${bytes.length} bytes there)`);
    let rep: ProtocolRep;
    try {
      rep = this.decodeExact(ProtocolRepSpec, bytes, new CodecContext()) as ProtocolRep;
    } catch (e) {
      throw new LwMsgError(Status.MALFORMED, `archive schema: ${errorDetail(e)}`, { cause: e });
    }
    this.schemaRep = rep;
    if (this.update) this.proto = updateProtocol(this.proto, rep);
    else checkProtocolRep(this.proto, rep);
  }

  /** A length field read from the file: over `limit`, or more than the rest of a regular file, is MALFORMED (before allocating). */
  private checkLength(length: number, limit: number, what: string): void {
    if (length > limit) throw new LwMsgError(Status.MALFORMED, `${what} claims ${length} bytes, over the ${limit}-byte limit`);
    if (this.fileSize !== null && this.reader && length > this.fileSize - this.reader.offset) {
      throw new LwMsgError(Status.MALFORMED, `${what} claims ${length} bytes but the file has ${Math.max(0, this.fileSize - this.reader.offset)} left (truncated?)`);
    }
  }

  /** Decode `bytes` (archive byte order) as `type`; the value must take every byte, as lwmsg checks. */
  private decodeExact(type: object, bytes: Uint8Array, ctx: CodecContext): unknown {
    let r: ByteReader;
    let v: unknown;
    try {
      if (this.order === ByteOrder.LITTLE_ENDIAN) {
        bytes = bytes.slice();
        swapPayload(wireOf(type), bytes, true);
      }
      r = new ByteReader(bytes);
      v = Lw.compile(type as never).decode(r, ctx);
    } catch (e) {
      // a payload shorter than its type: lwmsg reports the record as MALFORMED (its buffer wrap finds nothing left)
      if (e instanceof LwMsgError && e.status === Status.EOF) throw new LwMsgError(Status.MALFORMED, `record is shorter than its type: ${errorDetail(e)}`, { cause: e });
      throw e;
    }
    if (r.pos !== bytes.length) throw new LwMsgError(Status.MALFORMED, `record has ${bytes.length - r.pos} bytes beyond its type`);
    return v;
  }

  /** `lwmsg_archive_close`. Closing a closed archive is fine. */
  close(): Promise<void> {
    return this.serial(async () => this.closeNow());
  }

  /** `lwmsg_assoc_reset`: UNSUPPORTED, as in lwmsg. */
  reset(): Promise<void> {
    return Promise.reject(unsupported("reset"));
  }
  /** An archive cannot accept: UNSUPPORTED. */
  accept(): Promise<void> {
    return Promise.reject(unsupported("accept"));
  }
  /** `lwmsg_assoc_set_timeout`: UNSUPPORTED, as in lwmsg. */
  setTimeout(_kind: string, _ms: number | null): void {
    throw unsupported("setTimeout");
  }
  /** `lwmsg_assoc_get_session`: UNSUPPORTED, as in lwmsg. */
  getSession(): never {
    throw unsupported("getSession");
  }
  /** `lwmsg_assoc_set_nonblock`: UNSUPPORTED, as in lwmsg. */
  setNonblock(_nonblock: boolean): void {
    throw unsupported("setNonblock");
  }

  private entryFor(tag: string | number): ProtocolEntry | null {
    if (tag === -1) return null;
    const e = typeof tag === "string" ? this.proto.byName(tag) : this.proto.byTag(tag);
    if (!e) throw new LwMsgError(Status.NOT_FOUND, `message ${String(tag)} is not in the protocol`);
    return e;
  }

  /** `lwmsg_archive_write_message`: append one message (tag by name or number; -1 = no payload). */
  writeMessage(message: ArchiveMessageOut): Promise<void> {
    return this.serial(async () => {
      this.needWrite();
      if (message === null || typeof message !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "writeMessage needs { tag, data }");
      const e = this.entryFor(message.tag);
      let payload: Uint8Array;
      try {
        payload = e?.type ? this.payloadBytes(e.type, message.data) : new Uint8Array(0);
      } catch (err) {
        if (err instanceof LwMsgError) throw new LwMsgError(err.status, `archive ${e?.name}: ${errorDetail(err)}`, { cause: err });
        throw err;
      }
      await this.putRecord(message.status ?? 0, message.flags ?? 0, message.cookie ?? 0, e ? e.tag : -1, payload);
    });
  }

  /** Append a record whose payload is already marshalled (in the archive's byte order): what `bun-lwmsg record` stores. */
  writeRecord(record: ArchiveRecord): Promise<void> {
    return this.serial(async () => {
      this.needWrite();
      await this.putRecord(record.status, record.flags, record.cookie, record.tag, record.payload);
    });
  }

  private needWrite(): void {
    if (this.fd < 0 || !(this.disp & ArchiveDisposition.WRITE)) throw new LwMsgError(Status.INVALID_STATE, "Archive not open for writing");
  }

  private async putRecord(status: number, flags: number, cookie: number, tag: number, payload: Uint8Array): Promise<void> {
    for (const [v, max, what] of [[status, 0xffffffff, "status"], [flags, 0xffff, "flags"], [cookie, 0xffff, "cookie"]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > max) throw new LwMsgError(Status.INVALID_PARAMETER, `${what} must be an integer in 0..${max}, got ${v}`);
    }
    if (!Number.isInteger(tag) || tag < -1 || tag > 0x7fff) throw new LwMsgError(Status.INVALID_PARAMETER, `tag must be -1..32767, got ${tag}`);
    if (payload.length > this.maxMessageSize) throw new LwMsgError(Status.OVERFLOW, `${payload.length}-byte payload exceeds maxMessageSize ${this.maxMessageSize}`);
    await writeAll(this.fd, concat(encodeRecordHeader(this.order, status, flags, cookie, tag, payload.length), payload));
    this.records++;
  }

  /** Read the next record without decoding it; rejects with EOF at the end of the file. */
  readRecord(): Promise<ArchiveRecord> {
    return this.serial(() => this.nextRecord());
  }

  private async nextRecord(): Promise<ArchiveRecord> {
    if (!this.reader || !(this.disp & ArchiveDisposition.READ)) throw new LwMsgError(Status.INVALID_STATE, "Archive not open for reading");
    const n = recordHeaderSize(this.head!.major);
    const hb = await this.reader.read(n);
    if (hb.length === 0) throw new LwMsgError(Status.EOF, `end of archive after ${this.records} records`);
    if (hb.length < n) throw new LwMsgError(Status.MALFORMED, `archive is truncated in the header of record ${this.records} (${hb.length} of ${n} bytes)`);
    const h = parseRecordHeader(hb, this.head!.major, this.order);
    this.checkLength(h.size, this.maxMessageSize, `record ${this.records}`);
    const payload = await this.reader.read(h.size);
    if (payload.length < h.size) throw new LwMsgError(Status.MALFORMED, `archive is truncated in record ${this.records}: ${payload.length} of ${h.size} payload bytes`);
    this.records++;
    return { status: h.status, flags: h.flags, cookie: h.cookie, tag: h.tag, payload };
  }

  /** The handle codec archives decode with (handles as their wire locality and id). */
  get recordHandles(): typeof recordedHandles {
    return recordedHandles;
  }

  /** Decode a record read by {@link readRecord} with the archive's protocol (`ctx`: a codec context of your own, e.g. one that maps fd indicators). */
  decodeRecord(record: ArchiveRecord, ctx?: CodecContext): ArchivedMessage {
    const { tag, payload } = record;
    let e: ProtocolEntry | null;
    try {
      e = this.entryFor(tag);
    } catch (err) {
      throw new LwMsgError(Status.NOT_FOUND, `archive record: tag ${tag} is not in the protocol`, { cause: err });
    }
    let data: unknown = null;
    if (!e?.type) {
      if (payload.length !== 0) throw new LwMsgError(Status.MALFORMED, `archive record ${e?.name ?? tag}: a message without payload has ${payload.length} bytes`);
    } else {
      try {
        data = this.decodeExact(e.type, payload, ctx ?? new CodecContext(recordedHandles));
      } catch (err) {
        if (err instanceof LwMsgError) throw new LwMsgError(err.status, `archive record ${e.name}: ${errorDetail(err)}`, { cause: err });
        throw err;
      }
    }
    return new ArchivedMessage(tag, e?.name, data, record.flags, record.status, record.cookie);
  }

  /** `lwmsg_archive_read_message`: the next message; rejects with status EOF after the last one. */
  readMessage(): Promise<ArchivedMessage> {
    return this.serial(async () => this.decodeRecord(await this.nextRecord()));
  }

  /** As an association: append. */
  send(message: ArchiveMessageOut): Promise<void> {
    return this.writeMessage(message);
  }
  /** As an association: read the next message (EOF at the end). */
  recv(): Promise<ArchivedMessage> {
    return this.readMessage();
  }

  /** Every remaining message, ending quietly at EOF. */
  async *[Symbol.asyncIterator](): AsyncGenerator<ArchivedMessage> {
    for (;;) {
      let m: ArchivedMessage;
      try {
        m = await this.readMessage();
      } catch (e) {
        if (e instanceof LwMsgError && e.status === Status.EOF) return;
        throw e;
      }
      yield m;
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
