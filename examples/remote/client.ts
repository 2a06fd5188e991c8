// The REMOTE example's client: connects over TLS with its own certificate,
// checks the server's certificate against the example CA, and calls.
//   bun examples/remote/client.ts host:port
import { readFileSync } from "node:fs";
import { Peer, ConnectionMode, LwMsgError } from "../../lib/index.ts";
import { remoteProtocol } from "./protocol.ts";

const certs = new URL("./certs/", import.meta.url);
const pem = (f: string) => readFileSync(new URL(f, certs), "utf8");
const endpoint = process.argv[2];
if (!endpoint) {
  console.error("usage: bun examples/remote/client.ts host:port");
  process.exit(2);
}
const client = new Peer(remoteProtocol, {
  tls: { ca: pem("ca.crt"), cert: pem("client.crt"), key: pem("client.key"), serverName: "localhost" },
  timeouts: { establish: 5000 },
});
client.addConnectEndpoint(ConnectionMode.REMOTE, endpoint);
try {
  const session = await client.connect();
  const me = (await session.call({ tag: "WHOAMI_REQ" })).data as { subject: string };
  console.log(`server sees me as ${me.subject}`);
  const sum = await session.call({ tag: "ADD_REQ", data: { a: 40, b: 2 } });
  console.log(`40 + 2 = ${sum.data}`);
  const server = session.peerToken!;
  console.log(`server certificate: ${server.type === "x509" ? server.subject : server.type} (verified: ${server.type === "x509" && server.authorized})`);
} catch (e) {
  console.error(e instanceof LwMsgError ? e.message : String(e)); // the message already names the status
  process.exitCode = 1;
} finally {
  await client.close();
}

