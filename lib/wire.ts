/** The lwmsg packet format (reference §3.1); lives in lib/wire/packets.ts. */
export * from "./wire/packets.ts";
