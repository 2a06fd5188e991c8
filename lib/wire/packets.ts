/**
 * lwmsg connection packets, byte for byte (reference §3.1): the 6-byte base
 * header, the 15-byte MESSAGE header, the 19-byte CONNECT/ACCEPT greeting and
 * the 10-byte SHUTDOWN packet. All multi-byte fields are big-endian.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";

export const PacketType = { MESSAGE: 1, CONNECT: 2, ACCEPT: 3, SHUTDOWN: 5 } as const;
export const PacketFlags = { FIRST: 0x1, LAST: 0x2, SINGLE: 0x3 } as const;
/** `LWMsgMessageFlags`. */
export const MessageFlags = { CONTROL: 0x1, SYNTHETIC: 0x2, REPLY: 0x4 } as const;
/** Greeting flag: the client sent an auth pipe (platforms without peer creds). */
export const GREETING_AUTH_LOCAL = 0x1;

export const BASE_HEADER_SIZE = 6;
export const MESSAGE_HEADER_SIZE = 15;
export const GREETING_SIZE = 19;
export const SHUTDOWN_SIZE = 10;
/** Smallest packet size a peer may announce (§3.2): below it → MALFORMED. */
export const MIN_PACKET_SIZE = 20;
export const DEFAULT_PACKET_SIZE = 8192;
export { MAX_FDS_PER_MESSAGE, MAX_FDS_PER_SENDMSG } from "../transport/fdqueue.ts";
/** `LWMSG_TAG_INVALID`: a message without payload. */
export const TAG_INVALID = -1;

/** Write a MESSAGE header at `at`. */
export function writeMessageHeader(
  view: DataView,
  at: number,
  length: number,
  packetFlags: number,
  msgFlags: number,
  status: number,
  cookie: number,
  tag: number,
): void {
  view.setUint32(at, length);
  view.setUint8(at + 4, PacketType.MESSAGE);
  view.setUint8(at + 5, packetFlags);
  view.setUint8(at + 6, msgFlags);
  view.setUint32(at + 7, status);
  view.setUint16(at + 11, cookie);
  view.setInt16(at + 13, tag);
}

/** A CONNECT or ACCEPT greeting (19 bytes). */
export function encodeGreeting(type: 2 | 3, packetSize: number, cookie: Uint8Array, flags = 0): Uint8Array {
  // Backed by its own ArrayBuffer: the bytes go to the shim by pointer (small inline typed arrays may move).
  const b = new Uint8Array(new ArrayBuffer(GREETING_SIZE));
  const v = new DataView(b.buffer);
  v.setUint32(0, GREETING_SIZE);
  b[4] = type;
  b[5] = PacketFlags.SINGLE;
  b[6] = flags;
  v.setUint32(7, packetSize);
  b.set(cookie.subarray(0, 8), 11);
  return b;
}

export interface Greeting {
  flags: number;
  packetSize: number;
  cookie: Uint8Array;
}

/** Parse and validate a greeting of the expected type (§3.2): wrong type or length, or packet size < 20 → MALFORMED. */
export function decodeGreeting(b: Uint8Array, expect: 2 | 3): Greeting {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const what = expect === PacketType.CONNECT ? "CONNECT" : "ACCEPT";
  if (b.length < BASE_HEADER_SIZE) throw new LwMsgError(Status.MALFORMED, `short ${what} greeting`);
  const length = v.getUint32(0);
  if (b[4] === PacketType.SHUTDOWN && length === SHUTDOWN_SIZE && b.length >= SHUTDOWN_SIZE) {
    const status = v.getUint32(6);
    // In place of ACCEPT, SHUTDOWN(SECURITY) is a bun-lwmsg server refusing this client (see Connection.accept).
    if (status === Status.SECURITY) throw new LwMsgError(Status.SECURITY, `the server refused this client (SHUTDOWN with SECURITY in place of ${what})`);
    throw shutdownError(status);
  }
  if (b[4] !== expect) throw new LwMsgError(Status.MALFORMED, `expected ${what} greeting, got packet type ${b[4]}`);
  if (length !== GREETING_SIZE) throw new LwMsgError(Status.MALFORMED, `${what} greeting length ${length}, expected 19`);
  const packetSize = v.getUint32(7);
  if (packetSize < MIN_PACKET_SIZE) throw new LwMsgError(Status.MALFORMED, `peer packet size ${packetSize} is below 20`);
  return { flags: b[6]!, packetSize, cookie: b.slice(11, 19) };
}

export function encodeShutdown(status: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(SHUTDOWN_SIZE));
  const v = new DataView(b.buffer);
  v.setUint32(0, SHUTDOWN_SIZE);
  b[4] = PacketType.SHUTDOWN;
  b[5] = PacketFlags.SINGLE;
  v.setUint32(6, status);
  return b;
}

/**
 * A SHUTDOWN received where a message was expected (§3.3): CLOSE/RESET/ABORT
 * as-is, anything else ABORT — except AGAIN, kept as AGAIN (a deviation from
 * lwmsg, which maps it to PEER_ABORT): a draining bun-lwmsg server
 * (`Peer.drain`) says with it "every request I did not answer was not run,
 * send it again elsewhere".
 */
export function shutdownError(status: number): LwMsgError {
  if (status === Status.AGAIN) return new LwMsgError(Status.AGAIN, "peer is draining: requests it did not answer were not run (SHUTDOWN with AGAIN)");
  const s = status === Status.PEER_CLOSE || status === Status.PEER_RESET || status === Status.PEER_ABORT ? status : Status.PEER_ABORT;
  return new LwMsgError(s as Status, `peer shut the connection down (status ${status})`);
}
