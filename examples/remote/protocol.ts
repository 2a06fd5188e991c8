// The REMOTE example's protocol: ask the server who it thinks you are, and add numbers.
import { Lw } from "../../lib/lw.ts";

export const remoteProtocol = Lw.Protocol({
  WHOAMI_REQ: [0, null],
  WHOAMI_RES: [1, Lw.Struct({ subject: Lw.String({ notNull: true }), fingerprint: Lw.String({ notNull: true }) })],
  ADD_REQ: [2, Lw.Struct({ a: Lw.Int32(), b: Lw.Int32() })],
  ADD_RES: [3, Lw.Int32()],
});
