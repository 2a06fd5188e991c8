/**
 * Checksums what clients hand it: a sealed memfd it maps (after checking the
 * seals and the size), or bytes that came in the message.
 *
 *   bun examples/shm/server.ts SOCKET_PATH      (prints "ready"; stops when stdin closes)
 * @module
 */
import { ConnectionMode } from "../../lib/connection.ts";
import { Peer } from "../../lib/peer.ts";
import { mapSealedMemfd, unmapNow } from "../../lib/transport/shm.ts";
import { MAX_MESSAGE, shmProtocol } from "./protocol.ts";

const path = process.argv[2];
if (!path) {
  console.error("usage: bun examples/shm/server.ts SOCKET_PATH");
  process.exit(2);
}
const server = new Peer(shmProtocol, { maxMessageSize: MAX_MESSAGE });
server.addDispatch({
  SUM_MEMFD_REQ: ({ size, mem }) => {
    // Refuses (SECURITY / INVALID_PARAMETER) a memfd that is not sealed or
    // not `size` bytes; the caller gets that status. The fd itself is closed
    // with the request when the call is over (we did not takeFd it), and the
    // mapping does not need it.
    const bytes = mapSealedMemfd(mem, size);
    try {
      return { tag: "SUM_RES", data: Bun.hash.crc32(bytes) };
    } finally {
      unmapNow(bytes); // give the 64 MiB back now, not at some later GC
    }
  },
  SUM_BYTES_REQ: ({ data }) => ({ tag: "SUM_RES", data: Bun.hash.crc32(data) }),
});
server.addListenEndpoint(ConnectionMode.LOCAL, path, 0o600);
await server.startListen();
console.log("ready");
for await (const _ of Bun.stdin.stream()) {
  // serve until stdin closes
}
await server.close();
