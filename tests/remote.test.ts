// REMOTE mode (issue 12): lwmsg's LWMSG_CONNECTION_MODE_REMOTE over TCP and
// TLS on loopback, through the public Connection/Listener/Peer API: endpoint
// parsing and policy, certificate identity and the checks that use it, and
// no growth across many connect/close cycles.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { Peer } from "../lib/peer.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { allowSubjects, allowUids, authorize, pinFingerprints, sameUser, verifiedCertificate } from "../lib/security.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck, openFdCount } from "./helpers/fds.ts";
import { throwStatus, rejectionStatus } from "./helpers/status.ts";
import { clientTls, mutualTls } from "./helpers/endpoints.ts";
import { multicallProtocol } from "./fixtures/peer-protocol.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const pem = (name: string) => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), "utf8");

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return Status.SUCCESS;
  } catch (e) {
    if (e instanceof LwMsgError) return e.status;
    throw e;
  }
}

describe("endpoints and policy", () => {
  test("setEndpoint(REMOTE) parses host:port and [v6]:port; bad ones are INVALID_PARAMETER; plain TCP off loopback is SECURITY unless allowInsecureTcp", () => {
    const c = () => new Connection(multicallProtocol);
    c().setEndpoint(ConnectionMode.REMOTE, "127.0.0.1:4000");
    c().setEndpoint(ConnectionMode.REMOTE, "[::1]:4000");
    c().setEndpoint(ConnectionMode.REMOTE, "localhost:1");
    for (const bad of ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1:80", "::1:80", "host:port", ""]) {
      expect(throwStatus(() => c().setEndpoint(ConnectionMode.REMOTE, bad))).toBe(Status.INVALID_PARAMETER);
    }
    expect(throwStatus(() => c().setEndpoint(ConnectionMode.REMOTE, "192.0.2.1:4000"))).toBe(Status.SECURITY);
    new Connection(multicallProtocol, { allowInsecureTcp: true }).setEndpoint(ConnectionMode.REMOTE, "192.0.2.1:4000");
    new Connection(multicallProtocol, { tls: clientTls() }).setEndpoint(ConnectionMode.REMOTE, "192.0.2.1:4000");
    expect(throwStatus(() => new Peer(multicallProtocol).addConnectEndpoint(ConnectionMode.REMOTE, "192.0.2.1:4000"))).toBe(Status.SECURITY);
    expect(throwStatus(() => new Peer(multicallProtocol).addListenEndpoint(ConnectionMode.REMOTE, "0.0.0.0:0"))).toBe(Status.SECURITY);
  });

  test("Connection.listen({ host, port: 0 }) picks a port (listener.port); connect, messages, SHUTDOWN as over LOCAL", async () => {
    const listener = await Connection.listen(multicallProtocol, { host: "127.0.0.1", port: 0 });
    expect(listener.port).toBeGreaterThan(0);
    expect(listener.path).toBe(`127.0.0.1:${listener.port}`);
    const client = new Connection(multicallProtocol, { packetSize: 64 });
    client.setEndpoint(ConnectionMode.REMOTE, listener.path);
    const [server] = await Promise.all([listener.accept(), client.connect()]);
    expect(client.packetSize).toBe(64); // negotiated: the minimum
    expect(server.peerToken?.type).toBe("address");
    const s = "fragmented ".repeat(100);
    await client.send({ tag: "ECHO_REQUEST", data: { n: 1, s } });
    expect((await server.recv()).data).toEqual({ n: 1, s });
    await client.close();
    expect(await status(server.recv())).toBe(Status.PEER_CLOSE);
    await server.close();
    await listener.close();
  });

  test("failures: refused port, unresolvable host, wrong CA, no client certificate", async () => {
    const refused = new Connection(multicallProtocol, { timeouts: { establish: 3000 } });
    refused.setEndpoint(ConnectionMode.REMOTE, "127.0.0.1:1");
    expect(await status(refused.connect())).toBe(Status.CONNECTION_REFUSED);
    const nohost = new Connection(multicallProtocol, { tls: clientTls(), timeouts: { establish: 5000 } });
    nohost.setEndpoint(ConnectionMode.REMOTE, "nonexistent.invalid:443");
    expect(await status(nohost.connect())).toBe(Status.NOT_FOUND);
    const listener = await Connection.listen(multicallProtocol, { host: "127.0.0.1", port: 0, tls: mutualTls() });
    const wrongCa = new Connection(multicallProtocol, { tls: { ca: pem("other-ca.crt"), serverName: "localhost" }, timeouts: { establish: 3000 } });
    wrongCa.setEndpoint(ConnectionMode.REMOTE, listener.path);
    expect(await status(wrongCa.connect())).toBe(Status.SECURITY);
    const noCert = new Connection(multicallProtocol, { tls: { ca: pem("ca.crt"), serverName: "localhost" }, timeouts: { establish: 3000 } });
    noCert.setEndpoint(ConnectionMode.REMOTE, listener.path);
    expect([Status.SECURITY, Status.PEER_CLOSE] as number[]).toContain(await status(noCert.connect()));
    await listener.close();
  });
});

describe("identity from the TLS session", () => {
  test("the x509 token carries the client certificate; pinFingerprints / allowSubjects / verifiedCertificate pass it; a uid check fails closed with SECURITY", async () => {
    const seen: unknown[] = [];
    const client = async (check: Parameters<typeof authorize>[0]) => {
      const server = new Peer(multicallProtocol, { tls: mutualTls() });
      server.onSession(authorize(check, { construct: (t) => void seen.push(t) }));
      server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
      server.addListenEndpoint(ConnectionMode.REMOTE, "127.0.0.1:0");
      await server.startListen();
      const c = new Peer(multicallProtocol, { tls: clientTls() });
      c.addConnectEndpoint(ConnectionMode.REMOTE, server.listenAddresses[0]!);
      const st = await status((await c.connect()).call({ tag: "PING_REQUEST" }));
      await c.close();
      await server.close();
      return st;
    };
    const fp = new (await import("node:crypto")).X509Certificate(pem("client.crt")).fingerprint256;
    expect(await client(verifiedCertificate())).toBe(Status.SUCCESS);
    const token = seen[0] as { type: string; subject: string; fingerprint256: string; authorized: boolean; euid: number };
    expect(token.type).toBe("x509");
    expect(token.subject).toContain("CN=client");
    expect(token.fingerprint256).toBe(fp);
    expect(token.authorized).toBe(true);
    expect(token.euid).toBe(-1);
    expect(await client(pinFingerprints([fp.replace(/:/g, "").toLowerCase()]))).toBe(Status.SUCCESS);
    expect(await client(allowSubjects(["client"]))).toBe(Status.SUCCESS);
    expect(await client(pinFingerprints(["00".repeat(32)]))).toBe(Status.SECURITY);
    expect(await client(allowSubjects(["someone-else"]))).toBe(Status.SECURITY);
    expect(await client(allowUids([process.geteuid!()]))).toBe(Status.SECURITY); // no uid over TLS: fails closed
    expect(await client(sameUser())).toBe(Status.SECURITY);
    expect(throwStatus(() => pinFingerprints(["not a fingerprint"]))).toBe(Status.INVALID_PARAMETER);
  });

  test("a client checks the server: authorizeServer with the server certificate's fingerprint", async () => {
    const server = new Peer(multicallProtocol, { tls: mutualTls() });
    server.addDispatch({ PING_REQUEST: () => ({ tag: "PING_REPLY" }) });
    server.addListenEndpoint(ConnectionMode.REMOTE, "127.0.0.1:0");
    await server.startListen();
    const fp = new (await import("node:crypto")).X509Certificate(pem("server.crt")).fingerprint256;
    for (const [check, want] of [[pinFingerprints([fp]), Status.SUCCESS], [pinFingerprints(["11".repeat(32)]), Status.SECURITY]] as const) {
      const c = new Peer(multicallProtocol, { tls: clientTls(), authorizeServer: check });
      c.addConnectEndpoint(ConnectionMode.REMOTE, server.listenAddresses[0]!);
      expect(await status((await c.connect()).call({ tag: "PING_REQUEST" }))).toBe(want);
      await c.close();
    }
    await server.close();
  });
});

test("10,000 REMOTE connect/close cycles: no fd or socket growth, memory flat", async () => {
  const listener = await Connection.listen(multicallProtocol, { host: "127.0.0.1", port: 0 });
  const serve = (async () => {
    for (;;) {
      let c: Connection;
      try {
        c = await listener.accept();
      } catch {
        return;
      }
      c.recv().then(
        () => c.destroy(),
        () => c.destroy(),
      );
    }
  })();
  const cycle = async () => {
    const c = new Connection(multicallProtocol);
    c.setEndpoint(ConnectionMode.REMOTE, listener.path);
    await c.connect();
    await c.close();
  };
  for (let i = 0; i < 500; i++) await cycle(); // warm up
  Bun.gc(true);
  const fds = openFdCount();
  const rss = process.memoryUsage.rss();
  for (let i = 0; i < 10_000; i++) await cycle();
  Bun.gc(true);
  await Bun.sleep(50);
  expect(openFdCount()).toBeLessThanOrEqual(fds + 2);
  expect(process.memoryUsage.rss() - rss).toBeLessThan(48 * 1024 * 1024);
  await listener.close();
  await serve;
}, 120_000);
