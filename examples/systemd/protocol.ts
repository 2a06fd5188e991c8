import { Lw } from "../../lib/lw.ts";

/** The socket-activated demo's one call: who served me, through which socket. */
export const helloProtocol = Lw.Protocol({
  HELLO_REQ: [0, null],
  HELLO_RES: [1, Lw.Struct({ pid: Lw.Int32(), socket: Lw.String({ notNull: true }), yourUid: Lw.UInt32() })],
});
