/**
 * A socket-activated lwmsg server: serves the listening sockets systemd passes
 * (lwmsg-demo.socket + lwmsg-demo.service here), or, started by hand, binds
 * `--socket PATH` itself.
 *
 *   bun examples/systemd/server.ts [--socket PATH]
 *
 * Prints one line per socket it serves. SIGTERM/SIGINT (`systemctl stop`)
 * stop it; the socket systemd holds stays bound, and the next client starts
 * the service again.
 * @module
 */
import { ConnectionMode } from "../../lib/connection.ts";
import { Peer } from "../../lib/peer.ts";
import { listenFds } from "../../lib/transport/systemd.ts";
import { helloProtocol } from "./protocol.ts";

const inherited = listenFds(); // [] when not socket-activated
const server = new Peer(helloProtocol);
// A Peer cannot tell which listen point a session came through, so this demo
// answers with the name(s) it serves.
const served = inherited.length > 0 ? inherited.map((s) => s.name).join(",") : "own";
server.addDispatch({
  HELLO_REQ: (_data, call) => ({ tag: "HELLO_RES", data: { pid: process.pid, socket: served, yourUid: call.token?.euid ?? 0 } }),
});
if (inherited.length > 0) {
  for (const s of inherited) {
    server.addListenFd(ConnectionMode.LOCAL, s.fd); // the Peer owns the fd from startListen on
    console.log(`serving fd ${s.fd} (${s.name}) from systemd`);
  }
} else {
  const i = process.argv.indexOf("--socket");
  const path = i > 0 ? process.argv[i + 1] : undefined;
  if (!path) {
    console.error("not socket-activated (no LISTEN_FDS for this pid) and no --socket PATH given");
    process.exit(2);
  }
  server.addListenEndpoint(ConnectionMode.LOCAL, path, 0o600);
  console.log(`serving ${path}`);
}
await server.startListen();

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
