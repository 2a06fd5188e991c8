/**
 * `LWMsgPeer` (reference §7): the Peer lives in lib/peer/ — peer.ts (the
 * class), server.ts, client.ts, assoc-channel.ts, dispatch.ts, sweeper.ts,
 * types.ts. This module is the entry point tests and apps import.
 * @module
 */
export { Peer, Call, CallDirection, CallError, Session } from "./peer/peer.ts";
export type { CallOptions, SessionHooks } from "./peer/peer.ts";
export type { DispatchTable, Handler, HandlerReply, PeerOptions, PeerTimeouts, Reply, TraceHooks } from "./peer/types.ts";
