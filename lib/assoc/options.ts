/**
 * Association settings (`lwmsg_connection_set_*`, `lwmsg_assoc_set_timeout`),
 * the public modes and states, and their validation.
 * @module
 */
import { LwMsgError, Status } from "../status.ts";
import { DEFAULT_PACKET_SIZE, MESSAGE_HEADER_SIZE, MIN_PACKET_SIZE } from "../wire/packets.ts";
import type { HandleCodec } from "../codec/io.ts";

/**
 * `LWMsgConnectionMode` / `LWMsgEndpointType`. REMOTE (2) is declared by
 * lwmsg's connection API and never built there: here it is TCP, with or
 * without TLS. DIRECT is lwmsg's `LWMSG_ENDPOINT_DIRECT` (a peer endpoint in
 * this process, not a connection mode); lwmsg numbers it 2 as well, so it is
 * 4 here. None of these values goes on the wire.
 */
export const ConnectionMode = { NONE: 0, LOCAL: 1, REMOTE: 2, PAIR: 3, DIRECT: 4 } as const;
export type ConnectionMode = (typeof ConnectionMode)[keyof typeof ConnectionMode];

/** `LWMsgAssocState` (public states). */
export const AssocState = {
  NONE: 0,
  NOT_ESTABLISHED: 1,
  IDLE: 2,
  BLOCKED_SEND: 3,
  BLOCKED_RECV: 4,
  BLOCKED_SEND_RECV: 5,
  CLOSED: 6,
  BUSY: 7,
  ERROR: 8,
} as const;
export type AssocState = (typeof AssocState)[keyof typeof AssocState];

/** The association's own phases (lwmsg's connection states, §4, folded to what is observable). */
export const Phase = { START: 0, CONNECTING: 1, HANDSHAKE: 2, ESTABLISHED: 3, CLOSED: 4, ERROR: 5 } as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** `lwmsg_connection_get_state`'s mapping (§4): established states tell what is half done. */
export function publicState(phase: Phase, sendPending: boolean, recvPartial: boolean): AssocState {
  switch (phase) {
    case Phase.START:
      return AssocState.NOT_ESTABLISHED;
    case Phase.CONNECTING:
      return AssocState.BLOCKED_SEND;
    case Phase.HANDSHAKE:
      return AssocState.BLOCKED_SEND_RECV;
    case Phase.CLOSED:
      return AssocState.CLOSED;
    case Phase.ERROR:
      return AssocState.ERROR;
    case Phase.ESTABLISHED:
      if (sendPending) return recvPartial ? AssocState.BLOCKED_SEND_RECV : AssocState.BLOCKED_SEND;
      return recvPartial ? AssocState.BLOCKED_RECV : AssocState.IDLE;
  }
}

export function describePhase(phase: Phase): string {
  return ["not established", "connecting", "in its handshake", "established", "closed", "in error"][phase]!;
}

export interface ConnectionOptions {
  /**
   * Preferred maximum packet size (≥ 20); the effective one is the minimum of
   * both peers'. Default: maxMessageSize + 15, so every message is one packet
   * between bun-lwmsg ends, while an lwmsg C peer's 8192 still wins the
   * minimum. lwmsg's own default is 8192 (`DEFAULT_PACKET_SIZE`).
   */
  packetSize?: number;
  /** Largest message this side reassembles (default 16 MiB); a bigger incoming message is OVERFLOW and ends the connection. Also caps what send() encodes. */
  maxMessageSize?: number;
  /** Per-call timeouts in ms (default: none). `message` bounds each send/recv wait, `establish` the connect/accept handshake and close. */
  timeouts?: { message?: number | null; establish?: number | null };
  /**
   * Most received fds held for messages not yet complete (default 1024): a
   * peer that sends more fds ahead of their messages (or one message with
   * more fd fields) fails the connection with MALFORMED, and they are closed.
   */
  maxFds?: number;
  /** Bytes of queued outgoing data above which send() waits for the kernel to take some (default 1 MiB). */
  sendQueueLimit?: number;
  /**
   * Microseconds to wait on the socket right after this side sent something,
   * before parking on the poller (saves a thread hop when the reply is fast).
   * `"adaptive"` (default): a 2 ms window; after a miss the next 16 requests
   * park directly, doubling up to 4096 while misses continue. A number: that
   * window, always. `0` disables it (a server with many idle clients may want
   * this: a miss blocks the JS thread for the window).
   */
  replyPollUs?: number | "adaptive";
  /**
   * Bytes of JS heap one received message may decode into (objects, array
   * slots, strings and byte arrays at their cost, SECURITY.md §4); more is
   * MEMORY and ends the connection. Default: 1 MiB + 64 per wire byte.
   */
  maxDecodedBytes?: number;
  /**
   * REMOTE over TLS: Bun's TLS options (`key`, `cert`, `ca`, `serverName`,
   * `requestCert`, `rejectUnauthorized`, …). A client gives `ca` (and its own
   * `key`/`cert` for mutual TLS); a server gives `key`/`cert` (and `ca` with
   * `requestCert: true` to require client certificates). Absent: plain TCP.
   */
  tls?: import("../transport/bun-socket.ts").RemoteTlsOptions | null;
  /**
   * REMOTE without TLS to or on an address that is not loopback: nothing
   * authenticates the peer and the network can read and change every byte.
   * Refused (SECURITY) unless this is true.
   */
  allowInsecureTcp?: boolean;
  /** Handle table for `Lw.Handle` fields (the session layer supplies it). */
  handles?: HandleCodec | null;
  /**
   * Put a pidfd of the peer process in its local token (`token.pidfd`, for
   * `pidfdAlive`): Linux ≥ 6.5 (SO_PEERPIDFD); elsewhere the field is
   * absent. Closed when the connection ends (a Peer's session: when the
   * session ends). Default false: one more fd per connection. See SECURITY.md.
   */
  pidfd?: boolean;
}

/** Settings of a {@link ConnectionOptions}, validated and with defaults. */
export interface ConnectionSettings {
  packetSize: number;
  maxMessageSize: number;
  maxFds: number;
  messageTimeout: number | null;
  establishTimeout: number | null;
  sendQueueLimit: number;
  replyPollUs: number | "adaptive";
  maxDecodedBytes: number;
}

/** Received fds waiting for their message, by default; more is a protocol violation. */
const DEFAULT_MAX_FDS = 1024;

export function checkTimeout(name: string, v: number | null | undefined): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new LwMsgError(Status.INVALID_PARAMETER, `${name} timeout must be a non-negative number of ms or null, got ${v}`);
  return v;
}

/**
 * The packet size proposed unless one is set: room for the largest message in
 * one packet. Negotiation takes the smaller proposal (§3.2), so an lwmsg C
 * peer (8192 unless configured) gets exactly the packets it asked for, while
 * two bun-lwmsg ends send a large message as one packet: one header, read
 * straight into the message's own buffer instead of reassembled from 8 KiB
 * fragments (10× faster for 16 MiB messages, see the bench).
 */
export function defaultPacketSize(maxMessageSize: number): number {
  return Math.min(0x7fffffff, Math.max(DEFAULT_PACKET_SIZE, maxMessageSize + MESSAGE_HEADER_SIZE));
}

export function checkPacketSize(n: unknown): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < MIN_PACKET_SIZE || n > 0x7fffffff) throw new LwMsgError(Status.INVALID_PARAMETER, `packet size must be an integer ≥ ${MIN_PACKET_SIZE}, got ${n}`);
  return n;
}

/** A protocol object from `Lw.Protocol(...)`, or INVALID_PARAMETER. */
export function checkProtocol(protocol: unknown): void {
  if (!protocol || typeof (protocol as { byTag?: unknown }).byTag !== "function") throw new LwMsgError(Status.INVALID_PARAMETER, "a protocol from Lw.Protocol(...) is required");
}

/** Validate connection options (INVALID_PARAMETER naming the bad one) without building a connection. */
export function checkConnectionOptions(options: ConnectionOptions): ConnectionSettings {
  if (options === null || typeof options !== "object") throw new LwMsgError(Status.INVALID_PARAMETER, "options must be an object");
  const maxMessageSize = options.maxMessageSize ?? 16 * 1024 * 1024;
  if (!Number.isInteger(maxMessageSize) || maxMessageSize < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `maxMessageSize must be a positive integer, got ${maxMessageSize}`);
  const sendQueueLimit = options.sendQueueLimit ?? 1024 * 1024;
  if (!Number.isInteger(sendQueueLimit) || sendQueueLimit < 1) throw new LwMsgError(Status.INVALID_PARAMETER, `sendQueueLimit must be a positive integer, got ${sendQueueLimit}`);
  const maxFds = options.maxFds ?? DEFAULT_MAX_FDS;
  if (!Number.isInteger(maxFds) || maxFds < 1 || maxFds > 1 << 20) throw new LwMsgError(Status.INVALID_PARAMETER, `maxFds must be an integer in 1..1048576, got ${maxFds}`);
  if (options.pidfd !== undefined && typeof options.pidfd !== "boolean") throw new LwMsgError(Status.INVALID_PARAMETER, `pidfd must be true or false, got ${String(options.pidfd)}`);
  const rp = options.replyPollUs ?? "adaptive";
  if (rp !== "adaptive" && (typeof rp !== "number" || !(rp >= 0) || rp > 1_000_000)) throw new LwMsgError(Status.INVALID_PARAMETER, `replyPollUs must be "adaptive" or 0..1000000, got ${rp}`);
  const maxDecodedBytes = options.maxDecodedBytes ?? -1;
  if (maxDecodedBytes !== -1 && (!Number.isInteger(maxDecodedBytes) || maxDecodedBytes < 1)) throw new LwMsgError(Status.INVALID_PARAMETER, `maxDecodedBytes must be a positive integer, got ${maxDecodedBytes}`);
  return {
    maxDecodedBytes,
    packetSize: checkPacketSize(options.packetSize ?? defaultPacketSize(maxMessageSize)),
    maxMessageSize,
    maxFds,
    messageTimeout: checkTimeout("message", options.timeouts?.message),
    establishTimeout: checkTimeout("establish", options.timeouts?.establish),
    sendQueueLimit,
    replyPollUs: rp,
  };
}
