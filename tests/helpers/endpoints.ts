/**
 * The kinds of Peer endpoint a test can run over, so one test body checks
 * LOCAL (a UNIX socket), DIRECT (same process) and REMOTE (TCP, TLS on
 * loopback) alike. `server(peer)` adds a fresh listen endpoint; the next
 * `client(peer)` connects to it.
 * @module
 */
import { readFileSync } from "node:fs";
import { Peer, type PeerOptions } from "../../lib/peer.ts";
import { ConnectionMode } from "../../lib/connection.ts";

const pem = (name: string) => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url), "utf8");

/** Mutual TLS with the test CA: the server requires a client certificate; both sides verify against the CA. */
export function mutualTls(): NonNullable<PeerOptions["tls"]> {
  return { ca: pem("ca.crt"), cert: pem("server.crt"), key: pem("server.key"), requestCert: true, rejectUnauthorized: true };
}
export function clientTls(): NonNullable<PeerOptions["tls"]> {
  return { ca: pem("ca.crt"), cert: pem("client.crt"), key: pem("client.key"), serverName: "localhost" };
}

export interface EndpointKind {
  readonly name: string;
  /** The token type a server's session constructor sees. */
  readonly tokenType: "local" | "x509" | "address";
  /** fd fields can travel. */
  readonly fds: boolean;
  /** Options the server peer needs (TLS settings). */
  readonly serverOptions: PeerOptions;
  /** Options the client peer needs. */
  readonly clientOptions: PeerOptions;
  server<P extends Peer<any>>(peer: P): P;
  client<P extends Peer<any>>(peer: P): P;
}

let n = 0;

export function endpointKinds(tmp: { join(...p: string[]): string }): EndpointKind[] {
  let path = "";
  let name = "";
  const local: EndpointKind = {
    name: "LOCAL",
    tokenType: "local",
    fds: true,
    serverOptions: {},
    clientOptions: {},
    server(peer) {
      path = tmp.join(`ep${++n}.sock`);
      peer.addListenEndpoint(ConnectionMode.LOCAL, path);
      return peer;
    },
    client(peer) {
      peer.addConnectEndpoint(ConnectionMode.LOCAL, path);
      return peer;
    },
  };
  const direct: EndpointKind = {
    name: "DIRECT",
    tokenType: "local",
    fds: true,
    serverOptions: {},
    clientOptions: {},
    server(peer) {
      name = `direct-${process.pid}-${++n}`;
      peer.addListenEndpoint(ConnectionMode.DIRECT, name);
      return peer;
    },
    client(peer) {
      peer.addConnectEndpoint(ConnectionMode.DIRECT, name);
      return peer;
    },
  };
  let address = "";
  let listening: Peer<any> | null = null;
  const remote = (kindName: string, tokenType: EndpointKind["tokenType"], serverOptions: PeerOptions, clientOptions: PeerOptions): EndpointKind => ({
    name: kindName,
    tokenType,
    fds: false,
    serverOptions,
    clientOptions,
    server(peer) {
      peer.addListenEndpoint(ConnectionMode.REMOTE, "127.0.0.1:0");
      listening = peer;
      address = "";
      return peer;
    },
    client(peer) {
      // The port is known once the server listens (port 0 picks one).
      address ||= listening!.listenAddresses[0]!;
      peer.addConnectEndpoint(ConnectionMode.REMOTE, address);
      return peer;
    },
  });
  return [local, direct, remote("REMOTE TCP", "address", {}, {}), remote("REMOTE TLS", "x509", { tls: mutualTls() }, { tls: clientTls() })];
}

