/**
 * Calls the socket-activated demo once and prints the answer.
 *
 *   bun examples/systemd/client.ts PATH      (e.g. $XDG_RUNTIME_DIR/lwmsg-demo.sock)
 * @module
 */
import { ConnectionMode } from "../../lib/connection.ts";
import { Peer } from "../../lib/peer.ts";
import { helloProtocol } from "./protocol.ts";

const path = process.argv[2];
if (!path) {
  console.error("usage: bun examples/systemd/client.ts SOCKET_PATH");
  process.exit(2);
}
const client = new Peer(helloProtocol);
client.addConnectEndpoint(ConnectionMode.LOCAL, path);
try {
  const reply = await (await client.connect()).call({ tag: "HELLO_REQ" });
  const { pid, socket, yourUid } = reply.data!;
  console.log(`served by pid ${pid} through "${socket}"; it saw uid ${yourUid}`);
} catch (e) {
  console.error((e as Error).message); // the message names the status already
  process.exitCode = 1;
} finally {
  await client.close();
}
