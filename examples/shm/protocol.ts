import { Lw } from "../../lib/lw.ts";

/** Two ways to hand the server a block of bytes to checksum: a sealed memfd, or the bytes themselves. */
export const shmProtocol = Lw.Protocol({
  SUM_MEMFD_REQ: [0, Lw.Struct({ size: Lw.UInt32(), mem: Lw.Fd() })],
  SUM_BYTES_REQ: [1, Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) })],
  SUM_RES: [2, Lw.UInt32()],
});

/** Both sides accept messages this large, so 64 MiB fit in one message field. */
export const MAX_MESSAGE = 80 * 1024 * 1024;
