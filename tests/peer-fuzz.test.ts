// A hostile client against a Peer server (issue 6): well-framed messages with
// random header fields (flags REPLY/CONTROL/SYNTHETIC and junk, statuses,
// colliding cookies, tags in and out of the protocol) and valid or mutated
// payloads, some carrying fds, sent as fast as the socket takes them while
// the attacker reads replies only now and then. The server must not crash or
// throw anything but LwMsgError, must keep serving a healthy client, must
// answer the attacker only with well-formed replies, and must leak no fd.
// The server hangs up on the attacker for association-level violations (a
// tag not in the protocol, a request cookie already in use, a truncated
// payload: MALFORMED / PEER_CLOSE, by design); the attacker reconnects and
// goes on, which also churns accept and handshake.
import { expect, test } from "bun:test";
import { Peer } from "../lib/peer.ts";
import { Connection, ConnectionMode } from "../lib/connection.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { MessageFlags } from "../lib/wire.ts";
import { native } from "../lib/native/ffi.ts";
import { socketPair, closeFd } from "../lib/native/socket.ts";
import { Poller } from "../lib/native/poller.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { multicallProtocol } from "./fixtures/peer-protocol.ts";
import { Rng } from "./fuzz/rng.ts";
import { validEncoding } from "./fuzz/gen.ts";
import { messageHeader } from "./fuzz/live.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => Poller.shared() });
const tmp = useTempDir("peer-fuzz-");

const SEED = 0x0badc0de;
const MESSAGES = 20_000;

test(`a hostile client: ${MESSAGES} random well-framed messages (seed ${SEED.toString(16)}) — the server keeps serving, answers sanely, leaks nothing`, async () => {
  const path = tmp.join("s.sock");
  const exceptions: unknown[] = [];
  let handled = 0;
  const server = new Peer(multicallProtocol, { maxCallsPerSession: 16, sendQueueLimit: 64 * 1024, timeouts: { message: 2000 } });
  server.onException((e) => exceptions.push(e));
  server.addDispatch({
    PING_REQUEST: () => ({ tag: "PING_REPLY" }),
    ECHO_REQUEST: async (d) => (handled++, { tag: "ECHO_REPLY", data: d }),
    SLOW_REQUEST: async (_d, call) => {
      handled++;
      await new Promise<void>((r) => {
        const t = setTimeout(r, 5);
        call.onCancel(() => (clearTimeout(t), r()));
      });
      return { tag: "PING_REPLY" };
    },
    FD_REQUEST: (d) => (handled++, { tag: "FD_REPLY", data: { fd: d.fd } }), // send() duplicates it; the request's copy closes with the request
    MULTICALL_REQUEST: (d) => (handled++, { tag: "MULTICALL_REPLY", data: { num_values: d.num_values, values: d.values } }),
    NULLFN_REQUEST: null,
  });
  server.addListenEndpoint(ConnectionMode.LOCAL, path);
  await server.startListen();

  const healthy = new Peer(multicallProtocol);
  healthy.addConnectEndpoint(ConnectionMode.LOCAL, path);
  const hs = await healthy.connect();
  let healthyCalls = 0;
  let healthyStop = false;
  const healthyLoop = (async () => {
    while (!healthyStop) {
      expect((await hs.call({ tag: "PING_REQUEST" })).name).toBe("PING_REPLY");
      healthyCalls++;
      await Bun.sleep(1);
    }
  })();

  // The attacker: one connection at a time; when the server hangs up on it
  // (a violation that ends the association), it connects again and goes on.
  const replies: number[] = []; // flags of every message the server sent the attacker
  const drops: number[] = [];
  let attacker: Connection | null = null;
  let readLoop: Promise<void> = Promise.resolve();
  let dead = false;
  const connectAttacker = async () => {
    const c = new Connection(multicallProtocol);
    c.setEndpoint(ConnectionMode.LOCAL, path);
    await c.connect();
    attacker = c;
    dead = false;
    readLoop = (async () => {
      for (;;) {
        try {
          const m = await c.recv();
          replies.push(m.flags);
          m.dispose();
        } catch (e) {
          if (!(e instanceof LwMsgError)) throw e;
          if (e.status !== Status.CANCELLED) drops.push(e.status);
          dead = true;
          return;
        }
      }
    })();
  };
  await connectAttacker();

  const rng = new Rng(SEED);
  const entries = multicallProtocol.entries();
  const flagChoices = [0, 0, 0, MessageFlags.REPLY, MessageFlags.CONTROL, MessageFlags.SYNTHETIC, MessageFlags.REPLY | MessageFlags.CONTROL, -1];
  const statusChoices = [0, 0, Status.CANCELLED, Status.ERROR, Status.TIMEOUT, -1];
  const [px, py] = socketPair(); // fds to attach
  let sent = 0;
  for (let i = 0; i < MESSAGES; i++) {
    if (dead) {
      attacker!.destroy();
      await readLoop;
      await connectAttacker();
    }
    const entry = rng.pick(entries);
    let tag = entry.tag;
    let fds: number[] = [];
    const enc = entry.type === null ? null : validEncoding(entry.type, rng, { handles: null, maxCount: 8 });
    if (entry.type !== null && enc === null) continue; // needs a non-null handle: forged handles have their own tests
    let payload = enc?.bytes ?? new Uint8Array(0);
    if (enc && enc.fds.length > 0) fds = enc.fds.map(() => (rng.chance(0.5) ? px : py));
    if (rng.chance(0.1) && payload.length > 0) {
      payload = payload.slice();
      payload[rng.below(payload.length)] = rng.below(256); // a mutated payload: decodes, or becomes synthetic, or ends the connection
    }
    if (rng.chance(0.02)) tag = rng.pick([-1, 40, 100, 0x7fff]);
    if (rng.chance(0.05)) fds = []; // an fd indicator without its fd
    let flags = rng.pick(flagChoices);
    if (flags < 0) flags = rng.below(256);
    let status = rng.pick(statusChoices);
    if (status < 0) status = rng.int(0, 0xffffffff);
    const cookie = rng.below(32); // collide with calls in flight
    const header = messageHeader(15 + payload.length, 0x03, flags, status, cookie, tag);
    const bytes = new Uint8Array(header.length + payload.length);
    bytes.set(header);
    bytes.set(payload, header.length);
    // Non-blocking writes: on EAGAIN let the server catch up (it reads only while its replies drain).
    const sock = attacker!.socketFd;
    for (let off = 0; off < bytes.length && !dead; ) {
      const part = bytes.subarray(off);
      const nfds = off === 0 ? fds.length : 0;
      const r = native.lw_send(sock, part, part.length, nfds ? new Int32Array(fds) : null, nfds);
      if (r > 0) off += r;
      else if (r === -11) await Bun.sleep(1);
      else break; // the server hung up: the read loop reports it
    }
    sent++;
    if (i % 8 === 7) await Bun.sleep(0);
  }
  closeFd(px);
  closeFd(py);
  await Bun.sleep(100);
  healthyStop = true;
  await healthyLoop;
  attacker!.destroy();
  await readLoop;

  expect(sent).toBeGreaterThan(0);
  expect(healthyCalls).toBeGreaterThan(0);
  // Everything the server says is a REPLY (maybe SYNTHETIC).
  expect(replies.filter((f) => (f & MessageFlags.REPLY) === 0)).toEqual([]);
  // It hangs up only with the statuses a connection-level violation gives.
  expect(drops.filter((st) => !([Status.PEER_CLOSE, Status.PEER_RESET, Status.PEER_ABORT, Status.MALFORMED] as number[]).includes(st))).toEqual([]);
  expect(exceptions.filter((e) => !(e instanceof LwMsgError))).toEqual([]);
  // A session that ended is gone completely.
  const end = Date.now() + 5000;
  while (server.clientCount > 1 && Date.now() < end) await Bun.sleep(10);
  expect(server.clientCount).toBe(1); // the healthy client
  console.log(`peer fuzz: sent ${sent}, handled ${handled}, replies ${replies.length}, hang-ups ${drops.length}, healthy calls ${healthyCalls}`);
  await healthy.close();
  await server.close();
}, 60_000);
