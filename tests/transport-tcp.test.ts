// REMOTE transports on Bun's sockets (lib/transport/bun-*.ts): real TCP and TLS sockets on
// loopback only (127.0.0.1 / ::1), real certificates (tests/fixtures/tls), the lwmsg
// association run over them through Connection.setTransport, every failure with its status.
import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import type { X509Token } from "../lib/token.ts";
import { TcpConnector } from "../lib/transport/bun-connect.ts";
import { TcpAcceptor, type TcpListenOptions } from "../lib/transport/bun-listen.ts";
import { DEFAULT_MAX_BUFFERED_INPUT, formatDn, type BunSocketTransport, type RemoteTlsOptions } from "../lib/transport/bun-socket.ts";
import { checkRemoteEndpoint, isLoopbackAddress, parseHostPort } from "../lib/transport/remote-endpoint.ts";
import type { ConnectionOptions } from "../lib/assoc/options.ts";
import { socketPair } from "../lib/native/socket.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck, openFdCount } from "./helpers/fds.ts";
import { rejectionStatus, throwStatus, rejection } from "./helpers/status.ts";
import { hex, rawPeer, toHex } from "./helpers/raw.ts";
import { useChildren } from "./helpers/child.ts";
import { testProtocol } from "./fixtures/protocol.ts";

fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });
const spawn = useChildren();

const pem = (name: string) => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), "utf8");
const CA = pem("ca.crt");
const serverTls = (cert = "server", extra: RemoteTlsOptions = {}): RemoteTlsOptions => ({ key: pem(`${cert}.key`), cert: pem(`${cert}.crt`), ...extra });
const mutualServerTls = (extra: RemoteTlsOptions = {}) => serverTls("server", { ca: CA, requestCert: true, ...extra });
const clientTls = (who: string | null = "client", ca = CA, extra: RemoteTlsOptions = {}): RemoteTlsOptions => ({ ca, ...(who ? { key: pem(`${who}.key`), cert: pem(`${who}.crt`) } : {}), ...extra });

/** The next transport the acceptor hands out (waits for one). */
async function acceptOne(acc: TcpAcceptor): Promise<BunSocketTransport> {
  for (;;) {
    const t = acc.accept();
    if (t) return t;
    acc.ref();
    await new Promise<void>((r) => acc.arm(r));
    acc.unref();
  }
}

function listen(opts: Partial<TcpListenOptions> = {}): TcpAcceptor {
  return TcpAcceptor.listen({ host: "127.0.0.1", port: 0, ...opts });
}

/** Client and server Connections over one TCP/TLS connection, established. */
async function remotePair(opts: { host?: string; server?: RemoteTlsOptions | null; client?: RemoteTlsOptions | null; a?: ConnectionOptions; b?: ConnectionOptions } = {}) {
  const host = opts.host ?? "127.0.0.1";
  const acc = listen({ host, tls: opts.server ?? null });
  const connector = new TcpConnector(host, acc.port, { tls: opts.client ?? null });
  const [tc, ts] = await Promise.all([connector.connect(Date.now() + 5000), acceptOne(acc)]);
  acc.close();
  const a = new Connection(testProtocol, opts.a ?? {});
  const b = new Connection(testProtocol, opts.b ?? opts.a ?? {});
  a.setTransport(ConnectionMode.REMOTE, tc);
  b.setTransport(ConnectionMode.REMOTE, ts);
  await Promise.all([a.connect(), b.accept()]);
  return { a, b, tc: tc as BunSocketTransport, ts };
}

async function closeBoth(a: Connection, b: Connection) {
  await Promise.all([a.close(), b.close()]);
}

/** A port with nothing listening on it (bound, then released). */
function closedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}


describe("endpoints and the plain-TCP policy", () => {
  test("parseHostPort: names, IPv4, bracketed IPv6; port 0 only when asked", () => {
    expect(parseHostPort("localhost:4000")).toEqual({ host: "localhost", port: 4000 });
    expect(parseHostPort("127.0.0.1:1")).toEqual({ host: "127.0.0.1", port: 1 });
    expect(parseHostPort("[::1]:65535")).toEqual({ host: "::1", port: 65535 });
    expect(parseHostPort("db-1.example.org:5432")).toEqual({ host: "db-1.example.org", port: 5432 });
    expect(parseHostPort("127.0.0.1:0", { allowPortZero: true })).toEqual({ host: "127.0.0.1", port: 0 });
  });

  test("parseHostPort: bad endpoints → INVALID_PARAMETER naming the problem", () => {
    const cases: [string, RegExp][] = [
      ["localhost", /no port/],
      ["localhost:", /empty port/],
      ["localhost:65536", /out of range/],
      ["localhost:0", /out of range/],
      ["localhost:-1", /not a decimal number/],
      ["localhost:80x", /not a decimal number/],
      [":80", /empty host/],
      ["[::1", /without a closing/],
      ["[::1]", /no port/],
      ["[::1]80", /after "]"/],
      ["::1:80", /needs brackets/],
      ["[localhost]:80", /not an IPv6 address/],
      ["::1]:80", /without an opening/],
      ["bad host:80", /not a valid host name/],
      ["a/b:80", /not a valid host name/],
    ];
    for (const [ep, why] of cases) {
      let err: unknown = null;
      try {
        parseHostPort(ep);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LwMsgError);
      expect((err as LwMsgError).status).toBe(Status.INVALID_PARAMETER);
      expect((err as LwMsgError).message).toMatch(why);
    }
  });

  test("plain TCP only on loopback: other hosts → SECURITY naming the way out; TLS or allowInsecureTcp lift it", () => {
    for (const h of ["127.0.0.1", "127.9.8.7", "::1", "localhost", "LOCALHOST."]) expect(() => checkRemoteEndpoint(h, null)).not.toThrow();
    for (const h of ["10.0.0.1", "0.0.0.0", "::", "192.0.2.7", "example.com", "localhost.example.com"]) {
      expect(throwStatus(() => checkRemoteEndpoint(h, null))).toBe(Status.SECURITY);
      expect(() => checkRemoteEndpoint(h, {})).not.toThrow();
      expect(() => checkRemoteEndpoint(h, null, true)).not.toThrow();
    }
    expect(() => checkRemoteEndpoint("example.com", null)).toThrow(/allowInsecureTcp/);
    expect(isLoopbackAddress("::ffff:127.0.0.1")).toBe(true);
    expect(isLoopbackAddress("::ffff:10.0.0.1")).toBe(false);
    // The transports apply it before any socket exists.
    expect(throwStatus(() => new TcpConnector("192.0.2.7", 80))).toBe(Status.SECURITY);
    expect(throwStatus(() => TcpAcceptor.listen({ host: "0.0.0.0", port: 0 }))).toBe(Status.SECURITY);
    expect(throwStatus(() => new TcpConnector("127.0.0.1", 0))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => TcpAcceptor.listen({ host: "127.0.0.1", port: 70000 }))).toBe(Status.INVALID_PARAMETER);
    expect(throwStatus(() => TcpAcceptor.listen({ host: "127.0.0.1", port: 0, tls: { ca: CA } }))).toBe(Status.INVALID_PARAMETER);
  });

  test("listen errors: a port in use → SYSTEM (EADDRINUSE); TLS material that is not PEM → INVALID_PARAMETER", () => {
    const a = listen();
    let e: LwMsgError | null = null;
    try {
      listen({ port: a.port });
    } catch (x) {
      e = x as LwMsgError;
    }
    expect(e?.status).toBe(Status.SYSTEM);
    expect(e?.message).toContain("EADDRINUSE");
    a.close();
    expect(throwStatus(() => listen({ tls: { key: "not a key", cert: "not a cert" } }))).toBe(Status.INVALID_PARAMETER);
  });
});

describe("lwmsg over TCP", () => {
  test("handshake and messages over 127.0.0.1; tokens are the peers' addresses; description names the endpoint", async () => {
    const { a, b, tc, ts } = await remotePair();
    expect(a.peerToken).toMatchObject({ type: "address", address: "127.0.0.1", port: tc.socket!.remotePort, euid: -1, egid: -1, pid: -1 });
    expect(b.peerToken).toMatchObject({ type: "address", address: "127.0.0.1", port: tc.socket!.localPort });
    expect(tc.description).toMatch(/^tcp 127\.0\.0\.1:\d+$/);
    expect(ts.caps).toEqual({ fds: false, replyPoll: false });
    await a.send({ tag: "FOO", data: { a: 1, b: 2, s: "over tcp" } });
    expect((await b.recv()).data).toEqual({ a: 1, b: 2, s: "over tcp" });
    const reply = b.recv().then(() => b.send({ tag: "FOO_REPL", data: { size: 2, data: [5, 6] } }));
    const r = await a.transact({ tag: "FOO_REQ", data: { size: 2 } });
    await reply;
    expect(r.data).toEqual({ size: 2, data: [5, 6] });
    await closeBoth(a, b);
  });

  test("over ::1 and via the name localhost", async () => {
    const v6 = await remotePair({ host: "::1" });
    expect(v6.a.peerToken).toMatchObject({ type: "address", address: "::1" });
    expect(v6.tc.description).toMatch(/^tcp \[::1\]:\d+$/);
    await v6.a.send({ tag: "EMPTY" });
    expect((await v6.b.recv()).name).toBe("EMPTY");
    await closeBoth(v6.a, v6.b);

    const acc = listen();
    const [tc, ts] = await Promise.all([new TcpConnector("localhost", acc.port).connect(null), acceptOne(acc)]);
    expect(tc.description).toBe(`tcp localhost:${acc.port}`);
    tc.close();
    ts.close();
    acc.close();
  });

  test("the bytes on the wire are LOCAL's, byte for byte: greeting, a fragmented message, SHUTDOWN", async () => {
    // The same script against a LOCAL connection (socketpair + raw peer) and a REMOTE one (TCP + raw Bun socket).
    const script = async (c: Connection, write: (b: Uint8Array) => void, waitBytes: (n: number) => Promise<Uint8Array>) => {
      const done = c.accept();
      write(hex("00000013 02 03 00 00000020 0000000000000000")); // CONNECT, packet size 32
      await done;
      await c.send({ tag: "FOO", data: { a: 1, b: 2, s: "abcdefghijklmnopqrstuvwxyz" }, cookie: 0x1234, status: 0 });
      await c.close();
      return toHex(await waitBytes(19 + 32 + 32 + 20 + 10));
    };
    const [fa, fb] = socketPair();
    const local = new Connection(testProtocol);
    local.setFd(ConnectionMode.PAIR, fa);
    const raw = await rawPeer(fb);
    const localBytes = await script(local, (b) => raw.write(b), (n) => raw.waitBytes(n));
    raw.close();

    const acc = listen();
    let got = new Uint8Array(0);
    let wake: (() => void) | null = null;
    const client = await Bun.connect({
      hostname: "127.0.0.1",
      port: acc.port,
      socket: {
        data(_s, d: Uint8Array) {
          const n = new Uint8Array(got.length + d.length);
          n.set(got);
          n.set(d, got.length);
          got = n;
          wake?.();
        },
      },
    });
    const remote = new Connection(testProtocol);
    remote.setTransport(ConnectionMode.REMOTE, await acceptOne(acc));
    acc.close();
    const remoteBytes = await script(
      remote,
      (b) => client.write(b),
      async (n) => {
        while (got.length < n) await new Promise<void>((r) => ((wake = r), setTimeout(r, 50)));
        return got;
      },
    );
    client.end();
    const hdr = (len: number, pf: number) => `${len.toString(16).padStart(8, "0")}01${pf.toString(16).padStart(2, "0")}00000000001234 0001`;
    const payload = "00000001" + "00000002" + "ff" + "0000001a" + toHex(new TextEncoder().encode("abcdefghijklmnopqrstuvwxyz"));
    const vector = ("00000013 03 03 00 00000020 0000000000000000" + hdr(32, 1) + payload.slice(0, 34) + hdr(32, 0) + payload.slice(34, 68) + hdr(20, 2) + payload.slice(68) + "0000000a 05 03 00000013").replace(/ /g, "");
    expect(remoteBytes).toBe(vector);
    expect(localBytes).toBe(vector);
  });

  test("fragmentation: packet size 64 negotiated down from 8192, messages of many fragments both ways", async () => {
    const { a, b } = await remotePair({ a: { packetSize: 64 }, b: {} });
    expect(a.packetSize).toBe(64);
    expect(b.packetSize).toBe(64);
    const size = 10_000;
    const data = Uint8Array.from({ length: size }, (_, i) => (i * 31) & 255);
    await a.send({ tag: "BLOB", data: { size, data } });
    await b.send({ tag: "BLOB", data: { size, data } });
    for (const c of [b, a]) {
      const m = await c.recv();
      expect(m.data.size).toBe(size);
      expect(Buffer.from(m.data.data).equals(Buffer.from(data))).toBe(true);
    }
    await closeBoth(a, b);
  });

  test("a message type with fd fields → INVALID_PARAMETER naming it and the transport; nothing sent; still usable", async () => {
    const { a, b } = await remotePair();
    const e = await rejection(a.send({ tag: "FD", data: { fd: 0 } }));
    expect(e.status).toBe(Status.INVALID_PARAMETER);
    expect(e.message).toMatch(/FD.*tcp 127\.0\.0\.1:\d+.*nothing was sent/);
    await a.send({ tag: "FOO", data: { a: 3, b: 4, s: "next" } });
    const m = await b.recv();
    expect(m.name).toBe("FOO");
    await closeBoth(a, b);
  });

  test("close → the peer's recv gets PEER_CLOSE; a peer whose socket just goes away → PEER_CLOSE too", async () => {
    const x = await remotePair();
    await x.a.close();
    expect(await rejectionStatus(x.b.recv())).toBe(Status.PEER_CLOSE);
    await x.b.close();
    const y = await remotePair();
    y.tc.socket!.terminate(); // RST, no SHUTDOWN packet
    expect(await rejectionStatus(y.b.recv())).toBe(Status.PEER_CLOSE);
    y.a.destroy();
    await y.b.close();
  });

  test("peer closing mid-handshake: the server drops the socket after CONNECT → connect() rejects PEER_CLOSE", async () => {
    const acc = listen();
    const c = new Connection(testProtocol);
    c.setTransport(ConnectionMode.REMOTE, await new TcpConnector("127.0.0.1", acc.port).connect(null));
    const p = c.connect();
    const ts = await acceptOne(acc);
    while (ts.bufferedInput < 19) await Bun.sleep(5);
    ts.close();
    expect(await rejectionStatus(p)).toBe(Status.PEER_CLOSE);
    await c.close();
    acc.close();
  });

  test("large messages (4 MiB) with backpressure: send waits at sendQueueLimit, the receiver's input stays bounded", async () => {
    const { a, b, ts } = await remotePair({ a: { sendQueueLimit: 256 * 1024, maxMessageSize: 8 << 20 } });
    const size = 4 << 20;
    const data = Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) & 255);
    const sends = [a.send({ tag: "BLOB", data: { size, data } }), a.send({ tag: "BLOB", data: { size, data } })];
    let settled = 0;
    for (const s of sends) void s.then(() => settled++);
    // Nobody reads at b: the kernel buffers fill, b's transport pauses its socket at the bound.
    while (!ts.inputPaused) await Bun.sleep(5);
    expect(a.sendBlocked).toBe(true);
    expect(settled).toBeLessThan(2);
    expect(ts.bufferedInput).toBeLessThanOrEqual(DEFAULT_MAX_BUFFERED_INPUT + 512 * 1024);
    for (let i = 0; i < 2; i++) {
      const m = await b.recv();
      expect(m.data.size).toBe(size);
      expect(Buffer.from(m.data.data).equals(Buffer.from(data))).toBe(true);
    }
    await Promise.all(sends);
    await closeBoth(a, b);
  });
});

describe("lwmsg over TLS", () => {
  test("distinguished names print RFC 2253 style: most specific first, special characters escaped", () => {
    expect(formatDn({ C: "US", O: "Example, Inc.", OU: ["ops", "db"], CN: "client" })).toBe("CN=client,OU=db,OU=ops,O=Example\\, Inc.,C=US");
    expect(formatDn({ CN: " lead+trail " })).toBe("CN=\\ lead\\+trail\\ ");
    expect(formatDn({ CN: "#x, y", O: 'a"b<c>;d=e\\f' })).toBe('O=a\\"b\\<c\\>\\;d=e\\\\f,CN=\\#x\\, y'); // escaped as openssl x509 -nameopt RFC2253 escapes
    expect(formatDn(undefined)).toBe("");
  });


  test("mutual TLS: handshake, messages both ways, x509 tokens from the certificates", async () => {
    const { a, b } = await remotePair({ host: "127.0.0.1", server: mutualServerTls(), client: clientTls("client", CA, { serverName: "localhost" }) });
    const server = a.peerToken as X509Token;
    const client = b.peerToken as X509Token;
    const sx = new X509Certificate(pem("server.crt"));
    const cx = new X509Certificate(pem("client.crt"));
    expect(server).toMatchObject({
      type: "x509",
      subject: "CN=localhost,O=bun-lwmsg tests",
      issuer: "CN=bun-lwmsg test CA,O=bun-lwmsg tests",
      fingerprint256: sx.fingerprint256,
      serialNumber: "03E9",
      subjectAltName: "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
      authorized: true,
      authorizationError: null,
      euid: -1,
      egid: -1,
      pid: -1,
    });
    expect(new Date(server.validTo).getTime()).toBe(new Date(sx.validTo).getTime());
    expect(new Date(server.validFrom).getTime()).toBe(new Date(sx.validFrom).getTime());
    expect(client).toMatchObject({ type: "x509", subject: "CN=client,O=bun-lwmsg tests", issuer: "CN=bun-lwmsg test CA,O=bun-lwmsg tests", fingerprint256: cx.fingerprint256, serialNumber: "03EA", authorized: true });
    await a.send({ tag: "FOO", data: { a: 9, b: 8, s: "secret" } });
    expect((await b.recv()).data.s).toBe("secret");
    await b.send({ tag: "EMPTY" });
    expect((await a.recv()).name).toBe("EMPTY");
    await closeBoth(a, b);
  });

  test("server-only TLS over ::1: the client has no certificate, its token is only its address", async () => {
    const { a, b, tc } = await remotePair({ host: "::1", server: serverTls(), client: clientTls(null) });
    expect(tc.description).toMatch(/^tls \[::1\]:\d+$/);
    expect(a.peerToken).toMatchObject({ type: "x509", subject: "CN=localhost,O=bun-lwmsg tests", authorized: true });
    expect(b.peerToken).toMatchObject({ type: "address", address: "::1" });
    await closeBoth(a, b);
  });

  test("large messages over TLS, small packets: 3 MiB in 1 KiB packets, with backpressure", async () => {
    const { a, b, ts } = await remotePair({ server: mutualServerTls(), client: clientTls(), a: { packetSize: 1024, sendQueueLimit: 128 * 1024, maxMessageSize: 4 << 20 } });
    const size = 3 << 20;
    const data = Uint8Array.from({ length: size }, (_, i) => (i ^ (i >> 8)) & 255);
    const sends = [a.send({ tag: "BLOB", data: { size, data } }), a.send({ tag: "BLOB", data: { size, data } })];
    while (!ts.inputPaused) await Bun.sleep(5);
    expect(a.sendBlocked).toBe(true);
    for (let i = 0; i < 2; i++) {
      const m = await b.recv();
      expect(Buffer.from(m.data.data).equals(Buffer.from(data))).toBe(true);
    }
    await Promise.all(sends);
    await closeBoth(a, b);
  });

  test("server side with rejectUnauthorized: false: an unverified client is let through with authorized=false and the reason", async () => {
    const { a, b } = await remotePair({ server: mutualServerTls({ rejectUnauthorized: false }), client: clientTls("other-client") });
    const t = b.peerToken as X509Token;
    expect(t.type).toBe("x509");
    expect(t.issuer).toBe("CN=bun-lwmsg other CA,O=bun-lwmsg tests");
    expect(t.authorized).toBe(false);
    expect(t.authorizationError).toBeTruthy();
    await closeBoth(a, b);
  });
});

describe("connect failures and their statuses", () => {
  test("unresolvable host → NOT_FOUND naming the host", async () => {
    const e = await rejection(new TcpConnector("nonexistent.invalid", 4000, { tls: clientTls() }).connect(Date.now() + 5000));
    expect(e.status).toBe(Status.NOT_FOUND);
    expect(e.message).toContain("nonexistent.invalid");
  });

  test("nothing listening on 127.0.0.1 → CONNECTION_REFUSED; on ::1 too", async () => {
    const port = closedPort();
    expect(await rejectionStatus(new TcpConnector("127.0.0.1", port).connect(null))).toBe(Status.CONNECTION_REFUSED);
    expect(await rejectionStatus(new TcpConnector("::1", port).connect(null))).toBe(Status.CONNECTION_REFUSED);
    expect(await rejectionStatus(new TcpConnector("127.0.0.1", port, { tls: clientTls() }).connect(null))).toBe(Status.CONNECTION_REFUSED);
  });

  test("a server that accepts and never speaks TLS → TIMEOUT at the deadline; a server that hangs up mid-handshake → PEER_CLOSE", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const e = await rejection(new TcpConnector("127.0.0.1", silent.port, { tls: clientTls() }).connect(Date.now() + 150));
    expect(e.status).toBe(Status.TIMEOUT);
    expect(e.message).toContain("TLS handshake");
    silent.stop(true);
    const rude = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(s) { s.end(); } } });
    expect(await rejectionStatus(new TcpConnector("127.0.0.1", rude.port, { tls: clientTls() }).connect(Date.now() + 5000))).toBe(Status.PEER_CLOSE);
    rude.stop(true);
  });

  test("server certificate from another CA, expired, or for another host → SECURITY with the reason", async () => {
    const cases: [string, RemoteTlsOptions, RemoteTlsOptions, RegExp][] = [
      ["wrong CA", serverTls(), clientTls(null, pem("other-ca.crt")), /did not verify: unable to verify the first certificate/],
      ["expired", serverTls("expired"), clientTls(null), /did not verify.*expired/i],
      ["hostname mismatch", serverTls("wrong-host"), clientTls(null), /did not verify.*(altnames|hostname|Host)/i],
    ];
    for (const [what, st, ct, why] of cases) {
      const acc = listen({ tls: st });
      const e = await rejection(new TcpConnector("localhost", acc.port, { tls: ct }).connect(Date.now() + 5000));
      expect([what, e.status]).toEqual([what, Status.SECURITY]);
      expect(e.message).toMatch(why);
      expect(acc.pending).toBe(0);
      acc.close();
    }
  });

  test("mutual TLS: a client with no certificate, or one from another CA, never reaches accept(); the client fails", async () => {
    for (const who of [null, "other-client"]) {
      const acc = listen({ tls: mutualServerTls() });
      const tc = await new TcpConnector("localhost", acc.port, { tls: clientTls(who) }).connect(Date.now() + 5000).catch((e: LwMsgError) => e);
      let status: number;
      if (tc instanceof LwMsgError) status = tc.status; // refused inside the client's handshake (TLS 1.2 peers)
      else {
        // TLS 1.3: the client's handshake ends before the server judges its certificate; the refusal comes next.
        const c = new Connection(testProtocol);
        c.setTransport(ConnectionMode.REMOTE, tc);
        status = await rejectionStatus(c.connect());
        await c.close();
        if (who === null) {
          // The server's certificate_required alert: the transport knows, the association (today) reports the hang-up.
          expect((tc as BunSocketTransport).failure?.status).toBe(Status.SECURITY);
          expect((tc as BunSocketTransport).failure?.message).toContain("requires a client certificate");
        }
      }
      // PEER_CLOSE until the association reports Transport.failure (then SECURITY for the alert case).
      expect([Status.SECURITY, Status.PEER_CLOSE] as number[]).toContain(status);
      while (acc.refused === 0) await Bun.sleep(5);
      expect(acc.accept()).toBeNull();
      acc.close();
    }
  });
});

describe("acceptor", () => {
  test("bounded backlog: beyond it new connections are closed; close() drops the queued ones", async () => {
    const acc = listen({ backlog: 2 });
    const ends: Promise<void>[] = [];
    const clients: Bun.Socket<undefined>[] = [];
    for (let i = 0; i < 4; i++) {
      let ended!: () => void;
      ends.push(new Promise<void>((r) => (ended = r)));
      clients.push(await Bun.connect({ hostname: "127.0.0.1", port: acc.port, socket: { data() {}, close: () => ended() } }));
    }
    while (acc.pending + acc.refused < 4) await Bun.sleep(5);
    expect(acc.pending).toBe(2);
    expect(acc.refused).toBe(2);
    acc.close();
    await Promise.all(ends); // every client saw its connection end
    expect(throwStatus(() => acc.accept())).toBe(Status.INVALID_STATE);
  });

  test("a TLS client that never sends its hello is dropped after handshakeTimeout", async () => {
    const acc = listen({ tls: serverTls(), handshakeTimeout: 100 });
    let closed = false;
    const s = await Bun.connect({ hostname: "127.0.0.1", port: acc.port, socket: { data() {}, close: () => void (closed = true) } });
    while (!closed) await Bun.sleep(10);
    expect(acc.refused).toBe(1);
    expect(acc.pending).toBe(0);
    s.end();
    acc.close();
  });

  test("arm() fires once per arming, when a connection is queued", async () => {
    const acc = listen();
    let fired = 0;
    acc.arm(() => fired++);
    const c = await Bun.connect({ hostname: "127.0.0.1", port: acc.port, socket: { data() {} } });
    while (fired === 0) await Bun.sleep(5);
    const t = acc.accept()!;
    expect(t).not.toBeNull();
    expect(acc.accept()).toBeNull();
    expect(fired).toBe(1);
    t.close();
    c.end();
    acc.close();
  });
});

describe("resources", () => {
  test("an idle established connection does not keep the process alive (transports are unref'd until something waits)", async () => {
    const script = `
      import { Connection, ConnectionMode } from ${JSON.stringify(new URL("../lib/connection.ts", import.meta.url).pathname)};
      import { TcpConnector } from ${JSON.stringify(new URL("../lib/transport/bun-connect.ts", import.meta.url).pathname)};
      import { TcpAcceptor } from ${JSON.stringify(new URL("../lib/transport/bun-listen.ts", import.meta.url).pathname)};
      import { testProtocol } from ${JSON.stringify(new URL("./fixtures/protocol.ts", import.meta.url).pathname)};
      const acc = TcpAcceptor.listen({ host: "127.0.0.1", port: 0 });
      const tc = await new TcpConnector("127.0.0.1", acc.port).connect(null);
      acc.ref(); await new Promise((r) => acc.arm(r)); acc.unref();
      const a = new Connection(testProtocol), b = new Connection(testProtocol);
      a.setTransport(ConnectionMode.REMOTE, tc); b.setTransport(ConnectionMode.REMOTE, acc.accept());
      await Promise.all([a.connect(), b.accept()]);
      const got = b.recv();
      await a.send({ tag: "EMPTY" });
      console.log((await got).name);
      // a, b and the listening socket stay open: nothing waits, so the process ends.
    `;
    const c = spawn([process.execPath, "-e", script]);
    expect(await c.line(10_000)).toBe("EMPTY");
    expect(await c.done()).toBe(0);
  });

  test("2,000 TCP connect/handshake/close cycles: no fd growth, RSS flat", async () => {
    const acc = listen();
    const cycle = async () => {
      const [tc, ts] = await Promise.all([new TcpConnector("127.0.0.1", acc.port).connect(null), acceptOne(acc)]);
      const a = new Connection(testProtocol);
      const b = new Connection(testProtocol);
      a.setTransport(ConnectionMode.REMOTE, tc);
      b.setTransport(ConnectionMode.REMOTE, ts);
      await Promise.all([a.connect(), b.accept()]);
      await a.send({ tag: "EMPTY" });
      await b.recv();
      await Promise.all([a.close(), b.close()]);
    };
    for (let i = 0; i < 200; i++) await cycle(); // warm up (JIT, Bun's socket pools)
    Bun.gc(true);
    const fds0 = openFdCount();
    const rss0 = process.memoryUsage.rss();
    for (let i = 0; i < 1800; i++) await cycle();
    Bun.gc(true);
    await Bun.sleep(50);
    const fds1 = openFdCount();
    const rss1 = process.memoryUsage.rss();
    expect(fds1).toBeLessThanOrEqual(fds0);
    expect(rss1 - rss0).toBeLessThan(24 * 1024 * 1024);
    acc.close();
  }, 30_000);

  test("300 mutual-TLS cycles, every third one a client without a certificate (refused): no fd growth", async () => {
    const acc = listen({ tls: mutualServerTls() });
    const good = clientTls();
    const bad = clientTls(null);
    const cycle = async (i: number) => {
      if (i % 3 === 2) {
        const before = acc.refused;
        const t = await new TcpConnector("localhost", acc.port, { tls: bad }).connect(null);
        while (acc.refused === before) await Bun.sleep(1);
        t.close();
        return;
      }
      const [tc, ts] = await Promise.all([new TcpConnector("localhost", acc.port, { tls: good }).connect(null), acceptOne(acc)]);
      const a = new Connection(testProtocol);
      const b = new Connection(testProtocol);
      a.setTransport(ConnectionMode.REMOTE, tc);
      b.setTransport(ConnectionMode.REMOTE, ts);
      await Promise.all([a.connect(), b.accept()]);
      await Promise.all([a.close(), b.close()]);
    };
    for (let i = 0; i < 30; i++) await cycle(i);
    const fds0 = openFdCount();
    for (let i = 0; i < 300; i++) await cycle(i);
    await Bun.sleep(50);
    expect(openFdCount()).toBeLessThanOrEqual(fds0);
    expect(acc.refused).toBe(110);
    acc.close();
  }, 30_000);
});
