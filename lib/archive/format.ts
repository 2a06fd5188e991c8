/**
 * The `LWMA` archive file format, byte for byte as lwmsg's
 * `archive-format.c` / `archive-private.h` (version 1.1):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | magic `"LWMA"` |
 * | 4 | 1 | version flags: bit 0 = big-endian |
 * | 5 | 1 | major (1) |
 * | 6 | 1 | minor (1) |
 * | 7 | 1 | micro (0) |
 * | 8 | 4 | format flags (file byte order): bit 0 = a schema block follows |
 * | 12 | 16 | protocol id (zeros) |
 *
 * Then, if flagged, the schema block: u32 length, then that many bytes of
 * marshalled `LWMsgProtocolRep`. Then records until the end of the file:
 * status u32, flags u16, cookie u16, tag i16, size u32 (14 bytes; version 0
 * files have status u32, cookie u32, tag i32, size u32 and no flags), then
 * `size` bytes of marshalled payload. Every multi-byte field is in the
 * file's byte order.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";

/** `LWMsgArchiveDisposition`. */
export const ArchiveDisposition = { READ: 0x1, WRITE: 0x2, SCHEMA: 0x4 } as const;
export type ArchiveDisposition = number;

/** `LWMsgByteOrder`. */
export const ByteOrder = { LITTLE_ENDIAN: 0, BIG_ENDIAN: 1 } as const;
export type ByteOrder = (typeof ByteOrder)[keyof typeof ByteOrder];

export const MAGIC = "LWMA";
export const HEADER_SIZE = 28;
export const RECORD_HEADER_SIZE = 14;
export const RECORD_HEADER_SIZE_V0 = 16;
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 1;
export const VERSION_MICRO = 0;
export const VERSION_FLAG_BIG_ENDIAN = 0x1;
export const FORMAT_FLAG_SCHEMA = 0x1;

/** A parsed file header. */
export interface ArchiveHeader {
  byteOrder: ByteOrder;
  major: number;
  minor: number;
  micro: number;
  /** The schema flag of the format flags. */
  schema: boolean;
  /** All format flags as read. */
  formatFlags: number;
}

/** One record: the message header fields and the raw payload bytes. */
export interface ArchiveRecord {
  status: number;
  flags: number;
  cookie: number;
  tag: number;
  payload: Uint8Array;
}

/** The 28-byte header lwmsg writes. */
export function encodeHeader(byteOrder: ByteOrder, schema: boolean): Uint8Array {
  const b = new Uint8Array(HEADER_SIZE);
  const v = new DataView(b.buffer);
  b.set([0x4c, 0x57, 0x4d, 0x41]); // "LWMA"
  b[4] = byteOrder === ByteOrder.BIG_ENDIAN ? VERSION_FLAG_BIG_ENDIAN : 0;
  b[5] = VERSION_MAJOR;
  b[6] = VERSION_MINOR;
  b[7] = VERSION_MICRO;
  v.setUint32(8, schema ? FORMAT_FLAG_SCHEMA : 0, byteOrder === ByteOrder.LITTLE_ENDIAN);
  return b;
}

/** Parse and check a header as lwmsg does: short or wrong magic, or a version newer than 1.1 (major or minor), is MALFORMED. */
export function parseHeader(b: Uint8Array): ArchiveHeader {
  if (b.length < HEADER_SIZE) throw new LwMsgError(Status.MALFORMED, `not an lwmsg archive: ${b.length}-byte file is shorter than the 28-byte header`);
  if (b[0] !== 0x4c || b[1] !== 0x57 || b[2] !== 0x4d || b[3] !== 0x41) {
    throw new LwMsgError(Status.MALFORMED, `not an lwmsg archive: magic is ${JSON.stringify(String.fromCharCode(b[0]!, b[1]!, b[2]!, b[3]!))}, expected "LWMA"`);
  }
  const major = b[5]!;
  const minor = b[6]!;
  if (major > VERSION_MAJOR || minor > VERSION_MINOR) throw new LwMsgError(Status.MALFORMED, `archive version ${major}.${minor} is newer than ${VERSION_MAJOR}.${VERSION_MINOR}`);
  const byteOrder: ByteOrder = b[4]! & VERSION_FLAG_BIG_ENDIAN ? ByteOrder.BIG_ENDIAN : ByteOrder.LITTLE_ENDIAN;
  const formatFlags = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(8, byteOrder === ByteOrder.LITTLE_ENDIAN);
  return { byteOrder, major, minor, micro: b[7]!, schema: (formatFlags & FORMAT_FLAG_SCHEMA) !== 0, formatFlags };
}

/** A version-1 record header (14 bytes). */
export function encodeRecordHeader(byteOrder: ByteOrder, status: number, flags: number, cookie: number, tag: number, size: number): Uint8Array {
  const b = new Uint8Array(RECORD_HEADER_SIZE);
  const v = new DataView(b.buffer);
  const le = byteOrder === ByteOrder.LITTLE_ENDIAN;
  v.setUint32(0, status >>> 0, le);
  v.setUint16(4, flags & 0xffff, le);
  v.setUint16(6, cookie & 0xffff, le);
  v.setInt16(8, tag, le);
  v.setUint32(10, size >>> 0, le);
  return b;
}

/** Parse a record header of the file's major version (0: 16 bytes without flags, 1: 14 bytes). */
export function parseRecordHeader(b: Uint8Array, major: number, byteOrder: ByteOrder): Omit<ArchiveRecord, "payload"> & { size: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = byteOrder === ByteOrder.LITTLE_ENDIAN;
  if (major === 0) {
    // lwmsg narrows the 32-bit cookie and tag of version 0 to 16 bits
    return { status: v.getUint32(0, le), flags: 0, cookie: v.getUint32(4, le) & 0xffff, tag: (v.getInt32(8, le) << 16) >> 16, size: v.getUint32(12, le) };
  }
  return { status: v.getUint32(0, le), flags: v.getUint16(4, le), cookie: v.getUint16(6, le), tag: v.getInt16(8, le), size: v.getUint32(10, le) };
}

/** Size of a record header for a file of this major version. */
export function recordHeaderSize(major: number): number {
  return major === 0 ? RECORD_HEADER_SIZE_V0 : RECORD_HEADER_SIZE;
}
