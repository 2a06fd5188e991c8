/**
 * The fserv protocol of lwmsg's example file server (`example/fserv`,
 * reference §9.1), byte for byte: tags 0–7 are the original messages, so the
 * C `fcat`/`fsink` work against the Bun server and vice versa. Tags 8–9 are
 * added here: open a file and receive its descriptor itself over the socket.
 * @module
 */
import { Lw } from "../../lib/lw.ts";

/** `OpenMode`: a 1-byte unsigned enum of masks. */
export const OPEN_MODE = { READ: 1, WRITE: 2, APPEND: 4 } as const;
export const OpenMode = Lw.Enum({}, { width: 1, masks: OPEN_MODE, name: "OpenMode" });

/** `LWMSG_HANDLE(FileHandle)`: an open file on the server. */
export const FileHandle = Lw.Handle("FileHandle");

/**
 * `OpenRequest { pstr path; OpenMode mode }`. The path is taken as its exact
 * bytes (`bytes: true`): a Linux file name is any bytes but `/` and NUL, and a
 * C client sends whatever it has (a Latin-1 `caf\xe9` is a different file from
 * a UTF-8 `café`).
 */
export const OpenRequest = Lw.Struct({ path: Lw.String({ bytes: true }), mode: OpenMode }, { name: "OpenRequest" });
/** `ReadRequest { FileHandle handle; uint64 size }` */
export const ReadRequest = Lw.Struct({ handle: FileHandle, size: Lw.UInt64() }, { name: "ReadRequest" });
/** `ReadReply { uint64 size; uint8* data /* length: size *\/ }` (data NULL at end of file) */
export const ReadReply = Lw.Struct({ size: Lw.UInt64(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" })) }, { name: "ReadReply" });
/** `WriteRequest { FileHandle handle; uint64 size; uint8* data }` */
export const WriteRequest = Lw.Struct({ handle: FileHandle, size: Lw.UInt64(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" })) }, { name: "WriteRequest" });
/** `StatusReply { uint32 err }`: an errno value. */
export const StatusReply = Lw.Struct({ err: Lw.UInt32() }, { name: "StatusReply" });
/** Added: the opened file's descriptor, passed with SCM_RIGHTS. */
export const OpenFdReply = Lw.Struct({ fd: Lw.Fd() }, { name: "OpenFdReply" });

export const fservProtocol = Lw.Protocol({
  FSERV_OPEN_REQ: [0, OpenRequest],
  FSERV_OPEN_RES: [1, FileHandle],
  FSERV_READ_REQ: [2, ReadRequest],
  FSERV_READ_RES: [3, ReadReply],
  FSERV_WRITE_REQ: [4, WriteRequest],
  FSERV_CLOSE_REQ: [5, FileHandle],
  FSERV_VOID_RES: [6, null],
  FSERV_ERROR_RES: [7, StatusReply],
  // added by this port
  FSERV_OPEN_FD_REQ: [8, OpenRequest],
  FSERV_OPEN_FD_RES: [9, OpenFdReply],
});
export type FservProtocol = typeof fservProtocol;

/** A path for the wire: a JS string as its UTF-8 bytes, bytes as they are. */
export function pathBytes(path: string | Uint8Array): Uint8Array {
  return typeof path === "string" ? new TextEncoder().encode(path) : path;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** A path's bytes for logs and messages: UTF-8 when they are, else printable ASCII with `\xNN` for the rest. */
export function showPath(path: Uint8Array | string): string {
  if (typeof path === "string") return path;
  try {
    return strictUtf8.decode(path);
  } catch {
    let s = "";
    for (const c of path) s += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
    return s;
  }
}

/** `FSERV_SOCKET_PATH` of the C example; `FSERV_SOCKET` in the environment overrides it. */
export const DEFAULT_SOCKET_PATH = process.env.FSERV_SOCKET || "/tmp/.fserv-socket";

/** `--socket PATH` (or `--socket=PATH`) from argv, else the default; returns the remaining args. */
export function parseSocketArg(argv: string[]): { socketPath: string; rest: string[]; flags: Set<string> } {
  let socketPath = DEFAULT_SOCKET_PATH;
  const rest: string[] = [];
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--socket" || a === "-s") socketPath = argv[++i] ?? socketPath;
    else if (a.startsWith("--socket=")) socketPath = a.slice(9);
    else if (a.startsWith("--") && a.length > 2) flags.add(a.slice(2));
    else rest.push(a);
  }
  return { socketPath, rest, flags };
}
