/**
 * Archives (`lwmsg_archive_*`): messages persisted to `LWMA` files that
 * lwmsg's C library and its `lwma` tool read, and read back here.
 * @module
 */
export { Archive, ArchivedMessage } from "./archive.ts";
export type { ArchiveOptions, ArchiveMessageOut } from "./archive.ts";
export { ArchiveDisposition, ByteOrder, HEADER_SIZE as ARCHIVE_HEADER_SIZE, encodeHeader, parseHeader, encodeRecordHeader, parseRecordHeader } from "./format.ts";
export type { ArchiveHeader, ArchiveRecord } from "./format.ts";
export { recordedHandles } from "./handles.ts";
export { swapPayload } from "./swap.ts";
