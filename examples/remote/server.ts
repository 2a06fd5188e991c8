// A REMOTE (TLS) lwmsg server with mutual authentication: it requires a client
// certificate signed by the example CA, and admits only the subject CN=client.
//   bun examples/remote/server.ts [host:port]      (default 127.0.0.1:0 — prints the port it got)
import { readFileSync } from "node:fs";
import { Peer, ConnectionMode, authorize, allowSubjects, LwMsgError, Status } from "../../lib/index.ts";
import { remoteProtocol } from "./protocol.ts";

const certs = new URL("./certs/", import.meta.url);
const pem = (f: string) => readFileSync(new URL(f, certs), "utf8");

export async function startServer(endpoint = "127.0.0.1:0") {
  const server = new Peer(remoteProtocol, {
    tls: { key: pem("server.key"), cert: pem("server.crt"), ca: pem("ca.crt"), requestCert: true, rejectUnauthorized: true },
    maxClients: 64,
    timeouts: { establish: 5000 },
  });
  server.onSession(authorize(allowSubjects(["client"])));
  server.addDispatch({
    WHOAMI_REQ: (_d, call) => {
      const t = call.token;
      if (t?.type !== "x509") throw new LwMsgError(Status.SECURITY, "not a TLS peer");
      return { tag: "WHOAMI_RES", data: { subject: t.subject, fingerprint: t.fingerprint256 } };
    },
    ADD_REQ: ({ a, b }) => ({ tag: "ADD_RES", data: a + b }),
  });
  server.addListenEndpoint(ConnectionMode.REMOTE, endpoint);
  await server.startListen();
  return server;
}

if (import.meta.main) {
  const server = await startServer(process.argv[2]);
  console.log(`listening on ${server.listenAddresses[0]} (TLS, client certificates required)`);
  const stop = async () => {
    await server.close();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
