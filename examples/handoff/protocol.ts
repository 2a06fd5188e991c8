import { Lw } from "../../lib/lw.ts";

/** The hand-off demo's one call: run request `id` (after `delayMs`), say who ran it. */
export const handoffProtocol = Lw.Protocol({
  RUN_REQ: [0, Lw.Struct({ id: Lw.UInt32(), delayMs: Lw.UInt32() })],
  RUN_RES: [1, Lw.Struct({ id: Lw.UInt32(), pid: Lw.Int32(), count: Lw.UInt32() })],
});
