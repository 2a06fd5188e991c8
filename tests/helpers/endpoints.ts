/**
 * The kinds of Peer endpoint a test can run over, so one test body checks
 * LOCAL (a UNIX socket), DIRECT (same process) and REMOTE (TCP, TLS on
 * loopback) alike. `server(peer)` adds a fresh listen endpoint; the next
 * `client(peer)` connects to it.
 * @module
 */
import { Peer, type PeerOptions } from "../../lib/peer.ts";
import { ConnectionMode } from "../../lib/connection.ts";

export interface EndpointKind {
  readonly name: string;
  /** The token type a server's session constructor sees. */
  readonly tokenType: "local" | "x509" | "address";
  /** fd fields can travel. */
  readonly fds: boolean;
  /** Options both peers need (TLS settings). */
  readonly peerOptions: PeerOptions;
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
    peerOptions: {},
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
    peerOptions: {},
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
  return [local, direct];
}
