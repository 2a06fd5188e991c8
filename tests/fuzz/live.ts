/**
 * Live connection fuzzing: byte streams into a real receiving `Connection`
 * over a socketpair, whose other end is raw (the greeting and the case bytes
 * go out with the shim's `sendmsg`, real fds attached with SCM_RIGHTS).
 *
 * Each case is a stream — valid messages, messages with mutated payloads,
 * mutated packet headers (length, type, FIRST/LAST, message flags, status,
 * cookie, tag), dropped/duplicated/reordered fragments, stray SHUTDOWN and
 * greeting packets, random bytes, truncated streams, mutated greetings, and
 * fd-carrying messages with more or fewer fds than indicators — plus whether
 * the raw side closes afterwards. {@link modelReceive} says what `recv()`
 * must give, event by event; the connection's answers are compared with it:
 * message fields, decoded data (fds matched by socket inode, handles by
 * location and id), synthetic messages, error statuses, and the state after
 * the last event (IDLE and reusable, or ERROR with INVALID_STATE after).
 * Pairs are reused while cases end cleanly; fd cases get their own pair and
 * must leave the process's fd count where it was.
 * @module
 */
import { ptr } from "bun:ffi";
import { readdirSync, readlinkSync } from "node:fs";
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../../lib/lw.ts";
import { native } from "../../lib/native/ffi.ts";
import { closeFd, socketPair } from "../../lib/native/socket.ts";
import { AssocState, Connection, ConnectionMode, ReceivedMessage } from "../../lib/connection.ts";
import { Errno, LwMsgError, Status, statusShortName } from "../../lib/status.ts";
import { Session } from "../../lib/session.ts";
import { Handle } from "../../lib/handle.ts";
import type { Protocol, ProtocolEntry } from "../../lib/protocol.ts";
import type { WireType } from "../../lib/types.ts";
import { protocols, schemas } from "./schemas.ts";
import { HANDLE_TYPES, HandleWorld, Skip, recsOf, validEncoding } from "./gen.ts";
import { layoutOf } from "./layout.ts";
import { mutate, randomBytes } from "./mutate.ts";
import { FAKE_FD, describeEvent, modelAccept, modelReceive, type ModelEvent, type ModelResult } from "./model.ts";
import { Rng, mixSeed } from "./rng.ts";
import { testProtocol } from "../fixtures/protocol.ts";

// ---------------------------------------------------------------------------
// fds

/** Open fds of this process (entries of /proc/self/fd that are open once the listing's own fd is closed). */
export function openFdCount(): number {
  let n = 0;
  for (const name of readdirSync("/proc/self/fd")) {
    const fd = Number(name);
    if (Number.isInteger(fd) && native.lw_fd_is_open(fd) === 1) n++;
  }
  return n;
}

function fdLabel(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `(closed ${fd})`;
  }
}

/** Distinct sockets to send as SCM_RIGHTS fds: each has its own inode, so a received fd tells which one it is. */
class FdPool {
  readonly fds: number[] = [];
  readonly labels: string[] = [];
  constructor(n: number) {
    for (let i = 0; i < n / 2; i++) {
      const [a, b] = socketPair();
      this.fds.push(a, b);
    }
    for (const fd of this.fds) this.labels.push(fdLabel(fd));
  }
  close(): void {
    for (const fd of this.fds) closeFd(fd);
    this.fds.length = 0;
  }
}

// ---------------------------------------------------------------------------
// protocols

/** Every fixed codec-suite and fuzz-only schema as one protocol, so their payloads go through a live connection too. */
function buildFuzzProtocol(): Protocol<any> {
  const spec: Record<string, [number, TSchema]> = {};
  let tag = 0;
  for (const s of schemas) {
    if (s.source.startsWith("fixtures:")) continue;
    spec[s.name.replace(/[^A-Za-z0-9_]/g, "_")] = [tag++, s.T];
  }
  return Lw.Protocol(spec as never);
}

export const liveProtocols: Record<string, Protocol<any>> = { ...protocols, fuzz: buildFuzzProtocol() };
const PROTOCOL_WEIGHTS: [number, string][] = [
  [30, "test"],
  [25, "fuzz"],
  [15, "fserv"],
  [15, "multicall"],
  [10, "counter"],
  [5, "async"],
];

const noTransport = { call: (): Promise<never> => Promise.reject(new Error("fuzz session: no calls")) };

/** A receiver's handle table as HandleWorld's receivers have it (the same local ids), for the connection and its model twin. */
function receiverSession(): Session {
  const s = new Session(testProtocol, "incoming", noTransport);
  for (const t of HANDLE_TYPES) for (let i = 0; i < 4; i++) s.registerHandle(t, { t, i });
  return s;
}

// ---------------------------------------------------------------------------
// cases

export interface LiveCase {
  kind: string;
  ops: string[];
  protocol: string;
  /** Packet size the raw side announces (the connection's own is 8192). */
  packetSize: number;
  maxMessageSize: number;
  /** Bytes after the greeting (for "greeting" cases: the whole stream, greeting included). */
  stream: Uint8Array;
  /** Real fds sent with the first byte of the stream. */
  fds: number;
  close: boolean;
  /** The stream starts with the raw side's greeting (handshake fuzzing). */
  greeting?: boolean;
}

const OWN_PACKET_SIZE = 8192;

interface Msg {
  tag: number;
  flags: number;
  status: number;
  cookie: number;
  payload: Uint8Array;
  fields: ReturnType<typeof layoutOf>;
  /** fd indicators in the payload (of a valid encoding). */
  fdCount: number;
}

interface Packet {
  bytes: Uint8Array;
}

export function messageHeader(len: number, pf: number, flags: number, status: number, cookie: number, tag: number): Uint8Array {
  const b = new Uint8Array(15);
  const v = new DataView(b.buffer);
  v.setUint32(0, len);
  b[4] = 1;
  b[5] = pf;
  b[6] = flags;
  v.setUint32(7, status >>> 0);
  v.setUint16(11, cookie & 0xffff);
  v.setInt16(13, tag);
  return b;
}

export function packetsOf(m: Msg, chunk: number): Packet[] {
  const out: Packet[] = [];
  const n = Math.max(1, Math.ceil(m.payload.length / chunk));
  for (let i = 0; i < n; i++) {
    const part = m.payload.subarray(i * chunk, Math.min(m.payload.length, (i + 1) * chunk));
    const pf = (i === 0 ? 1 : 0) | (i === n - 1 ? 2 : 0);
    const b = new Uint8Array(15 + part.length);
    b.set(messageHeader(15 + part.length, pf, m.flags, m.status, m.cookie, m.tag));
    b.set(part, 15);
    out.push({ bytes: b });
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function shutdownPacket(status: number, len = 10): Uint8Array {
  const b = new Uint8Array(Math.max(6, len));
  const v = new DataView(b.buffer);
  v.setUint32(0, len >>> 0);
  b[4] = 5;
  b[5] = 3;
  if (b.length >= 10) v.setUint32(6, status >>> 0);
  return b;
}

export function greetingPacket(type: number, packetSize: number, flags = 0, len = 19): Uint8Array {
  const b = new Uint8Array(19);
  const v = new DataView(b.buffer);
  v.setUint32(0, len >>> 0);
  b[4] = type;
  b[5] = 3;
  b[6] = flags;
  v.setUint32(7, packetSize >>> 0);
  return b;
}

export class LiveGenerator {
  readonly world = new HandleWorld();
  private layouts = new Map<TSchema, { wire: WireType; recs: Map<string, WireType> }>();

  /** Configuration shared by a block of 64 cases (so pairs can be reused within it). */
  config(seed: number, index: number): { protocol: string; packetSize: number; maxMessageSize: number } {
    const rng = new Rng(mixSeed(seed, 0xb10c, Math.floor(index / 64)));
    const protocol = rng.weighted(PROTOCOL_WEIGHTS);
    const packetSize = rng.weighted<number>([
      [40, OWN_PACKET_SIZE],
      [20, rng.int(20, 64)],
      [5, 20],
      [15, rng.int(65, 1500)],
      [10, 65536],
      [10, 0xffffffff],
    ]);
    const maxMessageSize = rng.chance(0.1) ? rng.int(1, 4096) : 16 * 1024 * 1024;
    return { protocol, packetSize, maxMessageSize };
  }

  private message(rng: Rng, p: Protocol<any>, wantFds: boolean): Msg {
    const entries = p.entries();
    let entry: ProtocolEntry | undefined;
    const withFds = entries.filter((e) => e.hasFds);
    if (wantFds && withFds.length) entry = rng.pick(withFds);
    else {
      const k = rng.float();
      if (k < 0.06) entry = undefined; // tag -1
      else entry = rng.pick(entries);
    }
    const flags = rng.chance(0.7) ? 0 : rng.chance(0.5) ? rng.pick([1, 2, 4, 6, 7]) : rng.u32() & 0xff;
    const status = rng.chance(0.8) ? 0 : rng.chance(0.5) ? rng.int(0, 28) : rng.u32();
    const cookie = rng.u32() & 0xffff;
    let tag = entry ? entry.tag : -1;
    if (rng.chance(0.03)) tag = rng.pick([-2, -32768, 32767, 0x1234, entries.length + 7]);
    let payload: Uint8Array = new Uint8Array(0);
    let fields: ReturnType<typeof layoutOf> = [];
    let fdCount = 0;
    if (entry?.type) {
      try {
        const v = validEncoding(entry.type, rng, { handles: this.world, maxCount: 12 });
        payload = v.bytes;
        fdCount = v.fds.length;
        let l = this.layouts.get(entry.type);
        if (!l) {
          const wire = Lw.wireOf(entry.type);
          l = { wire, recs: recsOf(wire) };
          this.layouts.set(entry.type, l);
        }
        fields = layoutOf(l.wire, l.recs, payload);
      } catch (e) {
        if (!(e instanceof Skip)) throw e;
      }
    }
    return { tag, flags, status, cookie, payload, fields, fdCount };
  }

  make(seed: number, index: number): LiveCase {
    const cfg = this.config(seed, index);
    const rng = new Rng(mixSeed(seed, 0x11fe, index));
    const p = liveProtocols[cfg.protocol]!;
    const effective = Math.min(OWN_PACKET_SIZE, cfg.packetSize);
    const kind = rng.weighted<string>([
      [20, "valid"],
      [25, "payload"],
      [20, "header"],
      [8, "truncated"],
      [7, "random"],
      [12, "fds"],
      [5, "shutdown"],
      [3, "greeting"],
    ]);
    const ops: string[] = [];
    const nmsg = rng.weighted<number>([
      [50, 1],
      [25, 2],
      [15, 3],
      [10, 4],
    ]);
    const msgs: Msg[] = [];
    for (let i = 0; i < nmsg; i++) msgs.push(this.message(rng, p, kind === "fds" && i === 0));
    // fragment: full packets as a real sender makes them, or any size the receiver must accept
    const maxChunk = effective - 15;
    const chunkOf = () => (rng.chance(0.6) ? maxChunk : rng.int(1, maxChunk));

    if (kind === "payload") {
      const m = rng.pick(msgs);
      const r = mutate(rng, m.payload, m.fields, () => rng.pick(msgs).payload);
      m.payload = r.bytes;
      ops.push(...r.ops);
    }
    let packets: Packet[] = msgs.flatMap((m) => packetsOf(m, chunkOf()));
    let close = rng.chance(0.15);
    let fds = 0;
    let stream: Uint8Array;

    switch (kind) {
      case "header": {
        const nops = rng.int(1, 2);
        for (let k = 0; k < nops; k++) {
          const op = rng.weighted<string>([
            [6, "length"],
            [3, "type"],
            [5, "pflags"],
            [3, "mflags"],
            [2, "status"],
            [2, "cookie"],
            [4, "tag"],
            [3, "drop"],
            [3, "dup"],
            [3, "swap"],
            [3, "bytes"],
            [2, "greeting"],
            [2, "empty"],
          ]);
          ops.push(op);
          if (packets.length === 0) break;
          const i = rng.below(packets.length);
          const pk = packets[i]!.bytes.slice();
          const v = new DataView(pk.buffer);
          // a packet cut short by an earlier byte mutation has no header fields left to set
          if (pk.length < (["length", "type", "pflags"].includes(op) ? 6 : 15) && ["length", "type", "pflags", "mflags", "status", "cookie", "tag"].includes(op)) continue;
          switch (op) {
            case "length":
              v.setUint32(0, rng.pick([0, 1, 5, 6, 7, 14, 15, 16, pk.length - 1, pk.length + 1, effective, effective + 1, 0x7fffffff, 0xffffffff, rng.u32()]) >>> 0);
              break;
            case "type":
              pk[4] = rng.pick([0, 2, 3, 4, 5, 6, 0x81, 0xff]);
              break;
            case "pflags":
              pk[5] = rng.pick([0, 1, 2, 3, pk[5]! ^ 1, pk[5]! ^ 2, pk[5]! | 4, 0xfc, 0xff]);
              break;
            case "mflags":
              pk[6] = rng.u32() & 0xff;
              break;
            case "status":
              v.setUint32(7, rng.pick([0, 1, 4, 19, 28, 29, 0xffffffff, rng.u32()]) >>> 0);
              break;
            case "cookie":
              v.setUint16(11, rng.u32() & 0xffff);
              break;
            case "tag":
              v.setInt16(13, rng.pick([-1, -2, -32768, 32767, rng.int(0, 40), rng.u32() & 0x7fff]));
              break;
            case "drop":
              packets.splice(i, 1);
              continue;
            case "dup":
              packets.splice(i, 0, { bytes: pk });
              continue;
            case "swap": {
              const j = rng.below(packets.length);
              [packets[i], packets[j]] = [packets[j]!, packets[i]!];
              continue;
            }
            case "bytes": {
              const r = mutate(rng, pk, [], () => rng.pick(packets).bytes);
              packets[i] = { bytes: r.bytes };
              continue;
            }
            case "greeting":
              packets.splice(i, 0, { bytes: greetingPacket(rng.pick([2, 3]), effective) });
              continue;
            case "empty":
              // a payload-less packet in the middle of things (FIRST, LAST, both or neither)
              packets.splice(i, 0, { bytes: messageHeader(15, rng.int(0, 3), 0, 0, 0, rng.pick([-1, 0, 1])) });
              continue;
          }
          packets[i] = { bytes: pk };
        }
        stream = concat(packets.map((x) => x.bytes));
        break;
      }
      case "shutdown": {
        const at = rng.int(0, packets.length);
        const len = rng.chance(0.8) ? 10 : rng.pick([6, 9, 11, 15]);
        const sd = shutdownPacket(rng.pick([Status.PEER_CLOSE, Status.PEER_RESET, Status.PEER_ABORT, 0, 4, rng.u32()]), len);
        packets.splice(at, 0, { bytes: sd });
        ops.push(`shutdown@${at}/len${len}`);
        stream = concat(packets.map((x) => x.bytes));
        break;
      }
      case "truncated": {
        const all = concat(packets.map((x) => x.bytes));
        const cut = rng.chance(0.5) ? rng.below(Math.max(1, all.length)) : Math.max(0, all.length - rng.int(1, 16));
        stream = all.subarray(0, cut);
        close = true;
        ops.push(`cut@${cut}/${all.length}`);
        break;
      }
      case "random": {
        stream = randomBytes(rng, 256);
        if (rng.chance(0.5) && stream.length >= 15) {
          // a plausible header so the random part reaches the payload decoder
          stream.set(messageHeader(Math.min(stream.length, effective), 3, 0, 0, 0, rng.pick(p.entries()).tag));
          ops.push("header");
        }
        close = rng.chance(0.7);
        break;
      }
      case "fds": {
        // real fds: as many as indicators, or more (orphans), or fewer (indicators without fds)
        const indicators = msgs.reduce((n, m) => n + m.fdCount, 0);
        fds = Math.max(0, Math.min(12, indicators + rng.weighted<number>([[50, 0], [15, 1], [10, 3], [15, -1], [10, -2]])));
        if (rng.chance(0.2)) {
          // flip some fd indicators in place
          const m = rng.pick(msgs);
          const f = m.fields.filter((x) => x.kind === "fd");
          if (f.length) {
            const x = rng.pick(f);
            m.payload = m.payload.slice();
            m.payload[x.off] = rng.pick([0, 0xff, 1]);
            ops.push("indicator");
          }
          packets = msgs.flatMap((mm) => packetsOf(mm, chunkOf()));
        }
        ops.push(`fds ${fds}/${indicators}`);
        stream = concat(packets.map((x) => x.bytes));
        break;
      }
      case "greeting": {
        const g = greetingPacket(2, cfg.packetSize);
        const gv = new DataView(g.buffer);
        const op = rng.pick(["type", "length", "size", "flags", "cut", "shutdown", "ok"]);
        ops.push(op);
        let gb: Uint8Array = g;
        if (op === "type") g[4] = rng.pick([0, 1, 3, 4, 5, 0xff]);
        else if (op === "length") gv.setUint32(0, rng.pick([0, 6, 10, 15, 18, 20, 0xffffffff]));
        else if (op === "size") gv.setUint32(7, rng.pick([0, 1, 19, 20, 21, 0xffffffff]));
        else if (op === "flags") g[6] = rng.u32() & 0xff;
        else if (op === "cut") {
          gb = g.subarray(0, rng.int(0, 18));
          close = true;
        } else if (op === "shutdown") gb = shutdownPacket(rng.pick([19, 18, 20, 0, 7]));
        stream = op === "cut" ? gb : concat([gb, ...packets.map((x) => x.bytes)]);
        return { kind, ops, ...cfg, stream, fds: 0, close, greeting: true };
      }
      default:
        stream = concat(packets.map((x) => x.bytes));
    }
    return { kind, ops, ...cfg, stream, fds, close };
  }
}

// ---------------------------------------------------------------------------
// comparing decoded data

/** Type-directed normal form of a decoded value: fds → "fd#k" (arrival index), handles → their location and id. */
function normalize(w: WireType, v: unknown, recs: Map<string, WireType>, dom: Record<string, unknown> | null, fd: (n: number) => string, memo: Map<object, unknown>): unknown {
  switch (w.kind) {
    case "fd":
      return v === -1 ? -1 : fd(v as number);
    case "handle":
      return v instanceof Handle ? { handle: v.typeName, location: v.location, id: v.id } : v;
    case "struct": {
      if (v === null || typeof v !== "object") return v;
      const seen = memo.get(v);
      if (seen) return seen;
      const out: Record<string, unknown> = {};
      memo.set(v, out);
      for (const m of w.members) out[m.name] = normalize(m.type, (v as Record<string, unknown>)[m.name], recs, v as Record<string, unknown>, fd, memo);
      return out;
    }
    case "union": {
      const t = dom?.[w.discrim];
      const tag = typeof t === "bigint" ? Number(t) : typeof t === "boolean" ? (t ? 1 : 0) : t;
      const arm = w.arms.find((a) => a.tag === tag);
      return arm ? normalize(arm.type, v, recs, dom, fd, memo) : v;
    }
    case "pointer":
      return v === null || v === undefined ? v : normalize(w.to, v, recs, dom, fd, memo);
    case "array": {
      if (!Array.isArray(v)) return v;
      const seen = memo.get(v);
      if (seen) return seen;
      const out: unknown[] = [];
      memo.set(v, out);
      for (const e of v) out.push(normalize(w.of, e, recs, dom, fd, memo));
      return out;
    }
    case "rec":
    case "ref":
      return normalize(recs.get(w.id)!, v, recs, dom, fd, memo);
    case "custom":
      // presented values are the callbacks' business; Dates (an Invalid Date is not equal to itself) by their time
      return v instanceof Date ? `date:${v.getTime()}` : v;
    default:
      return v;
  }
}

// ---------------------------------------------------------------------------
// running cases

interface Pair {
  c: Connection<any>;
  raw: number;
  rawClosed: boolean;
  protocol: string;
  packetSize: number;
  maxMessageSize: number;
  model: Session;
  cases: number;
  /** Streams of the cases this pair served, for a reproduction if a later case fails. */
  history: Uint8Array[];
  historyBytes: number;
}

export interface LiveResult {
  /** Last event's outcome: "msg", a status name, … */
  outcome: string;
  outcomes: string[];
  failure?: string;
  ms: number;
  /** The stream that reproduces a failure from a fresh pair (earlier cases of the pair included). */
  repro?: Uint8Array;
  /** Events as the connection reported them (for pins). */
  events: string[];
}

const WRITE_BUF = new Uint8Array(new ArrayBuffer(1 << 20));
const WRITE_FDS = new Int32Array(new ArrayBuffer(64 * 4));

type Settled = { ok: true; m: ReceivedMessage } | { ok: false; e: unknown };

function settle(p: Promise<ReceivedMessage>): Promise<Settled> {
  return p.then(
    (m) => ({ ok: true as const, m }),
    (e) => ({ ok: false as const, e }),
  );
}

function errName(e: unknown): string {
  if (e instanceof LwMsgError) return statusShortName(e.status);
  return e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e);
}

export class LiveFuzzer {
  readonly gen = new LiveGenerator();
  private pool = new FdPool(32);
  private pair: Pair | null = null;
  /** Cases a pair serves before it is replaced (bounds the proxies its handle table collects). */
  pairLife = 256;
  /** Check the fd count around every fd case (costs a /proc listing). */
  checkFds = true;
  /** Bound on one case (the connection's own message timeout is 5 s): beyond it the case is a HANG. */
  watchdogMs = 15_000;
  pairsOpened = 0;

  private async openPair(protocol: string, packetSize: number, maxMessageSize: number, greeting: Uint8Array | null): Promise<{ pair: Pair } | { error: unknown; pair: Pair }> {
    const [a, b] = socketPair();
    const session = receiverSession();
    const c = new Connection(liveProtocols[protocol]!, {
      packetSize: OWN_PACKET_SIZE,
      maxMessageSize,
      timeouts: { message: 5000, establish: 5000 },
      replyPollUs: 0,
      handles: session,
    });
    c.setFd(ConnectionMode.PAIR, a);
    this.pairsOpened++;
    const pair: Pair = { c, raw: b, rawClosed: false, protocol, packetSize, maxMessageSize, model: receiverSession(), cases: 0, history: [], historyBytes: 0 };
    if (greeting) this.writeNow(b, greeting, 0);
    else this.writeNow(b, greetingPacket(2, packetSize), 0);
    try {
      await c.accept();
    } catch (e) {
      return { error: e, pair };
    }
    return { pair };
  }

  /** One sendmsg loop; returns bytes written (stops at EAGAIN). */
  private writeNow(fd: number, bytes: Uint8Array, nfds: number, from = 0): number {
    let off = from;
    let first = true;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, WRITE_BUF.length);
      WRITE_BUF.set(bytes.subarray(off, off + n));
      const r = native.lw_send(fd, ptr(WRITE_BUF), n, first && nfds > 0 ? ptr(WRITE_FDS) : null, first ? nfds : 0);
      if (r === -Errno.EAGAIN) return off;
      if (r === -Errno.EINTR) continue;
      if (r < 0) return -1; // EPIPE etc.: the connection is gone
      first = false;
      off += r;
    }
    return off;
  }

  private teardown(p: Pair, graceful: boolean): Promise<void> | void {
    if (!p.rawClosed) {
      closeFd(p.raw);
      p.rawClosed = true;
    }
    if (graceful) return p.c.close();
    p.c.destroy();
  }

  /** Close whatever pair is open (end of a run). */
  async finish(): Promise<void> {
    if (this.pair) await this.teardown(this.pair, true);
    this.pair = null;
  }

  /** Release the fd pool too. */
  async dispose(): Promise<void> {
    await this.finish();
    this.pool.close();
  }

  async run(lc: LiveCase): Promise<LiveResult> {
    const t0 = performance.now();
    let timer: ReturnType<typeof setTimeout> | null = null;
    const watchdog = new Promise<LiveResult>((resolve) => {
      timer = setTimeout(() => resolve({ outcome: "HANG", outcomes: [], failure: `HANG: the case did not settle within ${this.watchdogMs} ms`, ms: performance.now() - t0, events: [] }), this.watchdogMs);
    });
    const r = await Promise.race([this.runInner(lc, t0), watchdog]);
    clearTimeout(timer!);
    if (r.outcome === "HANG" && this.pair) {
      this.pair.c.destroy();
      if (!this.pair.rawClosed) closeFd(this.pair.raw);
      this.pair = null;
    }
    return r;
  }

  private async runInner(lc: LiveCase, t0: number): Promise<LiveResult> {
    const fdCase = lc.fds > 0 || lc.kind === "fds";
    const fdsBefore = fdCase && this.checkFds ? (await this.finish(), openFdCount()) : -1;
    const outcomes: string[] = [];
    const events: string[] = [];
    const fail = (failure: string, repro?: Uint8Array): LiveResult => ({ outcome: outcomes[outcomes.length - 1] ?? "-", outcomes, failure, ms: performance.now() - t0, events, ...(repro ? { repro } : {}) });

    // --- the pair: reuse it if its configuration matches and it ended its last case cleanly
    let stream = lc.stream;
    let packetSize: number;
    if (lc.greeting) {
      await this.finish();
      const acc = modelAccept(lc.stream, OWN_PACKET_SIZE, lc.close);
      // an unfinished greeting or message would wait for bytes that never come: close then
      const framing = acc.ok === true ? modelReceive(acc.rest, { protocol: liveProtocols[lc.protocol]!, packetSize: acc.packetSize, maxMessageSize: lc.maxMessageSize, fds: 0, close: false, handles: null, decode: false }) : null;
      const close = lc.close || acc.ok === "pending" || framing?.end === "pending";
      // the greeting goes with everything after it in one write; the outcome of accept() is the first event
      const [a, b] = socketPair();
      const c = new Connection(liveProtocols[lc.protocol]!, { packetSize: OWN_PACKET_SIZE, maxMessageSize: lc.maxMessageSize, timeouts: { message: 5000, establish: 5000 }, replyPollUs: 0, handles: receiverSession() });
      c.setFd(ConnectionMode.PAIR, a);
      this.pairsOpened++;
      const wrote = this.writeNow(b, lc.stream, 0);
      if (close) closeFd(b);
      const pair: Pair = { c, raw: b, rawClosed: close, protocol: lc.protocol, packetSize: lc.packetSize, maxMessageSize: lc.maxMessageSize, model: receiverSession(), cases: 0, history: [], historyBytes: 0 };
      let accErr: unknown = null;
      try {
        await c.accept();
      } catch (e) {
        accErr = e;
      }
      // a valid greeting from a peer that has already closed: sending ACCEPT fails (EPIPE → PEER_CLOSE)
      const accOutcome: { ok: true } | { ok: false; status: number } = acc.ok === true ? (close ? { ok: false, status: Status.PEER_CLOSE } : { ok: true }) : { ok: false, status: acc.ok === false ? acc.status : Status.PEER_CLOSE };
      if (!accOutcome.ok) {
        const want = accOutcome.status;
        outcomes.push(accErr ? errName(accErr) : "accepted");
        events.push(`accept ${outcomes[0]}`);
        const state = c.state;
        await this.teardown(pair, false);
        if (!(accErr instanceof LwMsgError) || accErr.status !== want) return fail(`accept() gave ${accErr ? errName(accErr) : "success"}, the greeting calls for ${statusShortName(want)}`);
        if (state !== AssocState.ERROR) return fail(`state after a failed accept: ${state}, expected ERROR`);
        return { outcome: outcomes[0]!, outcomes, ms: performance.now() - t0, events };
      }
      if (accErr) {
        await this.teardown(pair, false);
        return fail(`accept() failed with ${errName(accErr)} on a valid greeting`);
      }
      if (wrote !== lc.stream.length) {
        await this.teardown(pair, false);
        return fail(`could not write the greeting case (${wrote} of ${lc.stream.length} bytes)`);
      }
      if (acc.ok !== true) return fail("harness: greeting model");
      if (c.packetSize !== acc.packetSize) return fail(`negotiated packet size ${c.packetSize}, expected ${acc.packetSize}`);
      pair.cases = this.pairLife; // its packet size came from a fuzzed greeting: not for other cases
      this.pair = pair;
      stream = acc.rest;
      packetSize = acc.packetSize;
      // the rest of the bytes are already written (and the side closed if asked): run it like any case on this pair
      return this.consume(pair, { ...lc, stream, close }, packetSize, null, t0, outcomes, events, fdsBefore, true);
    }

    let p = this.pair;
    if (p && (fdCase || p.protocol !== lc.protocol || p.packetSize !== lc.packetSize || p.c.packetSize !== Math.min(OWN_PACKET_SIZE, lc.packetSize) || p.maxMessageSize !== lc.maxMessageSize || p.cases >= this.pairLife)) {
      await this.teardown(p, p.cases % 3 === 0);
      p = this.pair = null;
    }
    if (!p) {
      const r = await this.openPair(lc.protocol, lc.packetSize, lc.maxMessageSize, null);
      if ("error" in r) {
        await this.teardown(r.pair, false);
        return fail(`accept() failed on a valid greeting: ${errName(r.error)}`);
      }
      p = this.pair = r.pair;
      const want = Math.min(OWN_PACKET_SIZE, lc.packetSize);
      if (p.c.packetSize !== want) return fail(`negotiated packet size ${p.c.packetSize}, expected ${want}`);
    }
    packetSize = Math.min(OWN_PACKET_SIZE, lc.packetSize);
    return this.consume(p, lc, packetSize, stream, t0, outcomes, events, fdsBefore, false);
  }

  /** Write `toWrite` (null: already written), then take every event the model predicts and compare. */
  private async consume(p: Pair, lc: LiveCase, packetSize: number, toWrite: Uint8Array | null, t0: number, outcomes: string[], events: string[], fdsBefore: number, written: boolean): Promise<LiveResult> {
    const stream = lc.stream;
    let close = lc.close;
    // an unfinished packet or message at the end would wait forever: the raw side closes then (framing alone decides)
    const framing = modelReceive(stream, { protocol: liveProtocols[lc.protocol]!, packetSize, maxMessageSize: lc.maxMessageSize, fds: lc.fds, close, handles: null, decode: false });
    if (framing.end === "pending" && !close) close = true;
    // the model's decodes go through a twin of the connection's handle table, in the same order
    const model: ModelResult = modelReceive(stream, { protocol: liveProtocols[lc.protocol]!, packetSize, maxMessageSize: lc.maxMessageSize, fds: lc.fds, close, handles: p.model });
    if (model.end === "pending") return { outcome: "-", outcomes, failure: "model: pending after closing (harness bug)", ms: 0, events };
    const repro = () => concat([...p.history, stream]);
    const fail = (failure: string): LiveResult => ({ outcome: outcomes[outcomes.length - 1] ?? "-", outcomes, failure, ms: performance.now() - t0, events, repro: repro() });

    // --- write (with fds) and maybe close
    const sent: string[] = [];
    let writer: Promise<void> = Promise.resolve();
    let stop = false;
    if (!written && toWrite) {
      for (let i = 0; i < lc.fds; i++) {
        WRITE_FDS[i] = this.pool.fds[i % this.pool.fds.length]!;
        sent.push(this.pool.labels[i % this.pool.fds.length]!);
      }
      const n = this.writeNow(p.raw, toWrite, lc.fds);
      if (n >= 0 && n < toWrite.length) {
        // socket full: keep writing while the connection reads (it reads only while recv() is pending)
        writer = (async () => {
          let off = n;
          while (!stop && off >= 0 && off < toWrite.length) {
            await Bun.sleep(1);
            off = this.writeNow(p.raw, toWrite, 0, off);
          }
          if (close && !p.rawClosed) {
            closeFd(p.raw);
            p.rawClosed = true;
          }
        })();
      } else if (close) {
        closeFd(p.raw);
        p.rawClosed = true;
      }
    }
    p.cases++;

    const proto = liveProtocols[lc.protocol]!;
    const taken: ReceivedMessage[] = [];
    let failure: string | undefined;
    try {
      for (let i = 0; i < model.events.length && !failure; i++) {
        const want = model.events[i]!;
        const got = await settle(p.c.recv());
        if (got.ok) {
          taken.push(got.m);
          const m = got.m;
          events.push(m.synthetic && m.tag === -1 ? `synthetic ${statusShortName(m.status)} flags=${m.flags} cookie=${m.cookie}` : `msg tag=${m.tag} flags=${m.flags} status=${m.status} cookie=${m.cookie}${m.fds ? ` fds=${m.fds.length}` : ""}`);
          outcomes.push(want.kind === "synthetic" && m.synthetic ? `synthetic ${statusShortName(m.status)}` : "msg");
        } else {
          events.push(`${errName(got.e)}`);
          outcomes.push(errName(got.e));
        }
        // (a non-fatal error keeps the connection usable: the events after it must still come, which the loop checks)
        failure = this.compare(want, got, proto, sent, i);
      }
      if (!failure) {
        if (model.end === "open") {
          if (p.c.state !== AssocState.IDLE) failure = `after the last message the connection is in state ${p.c.state}, expected IDLE (${AssocState.IDLE})`;
        } else {
          if (p.c.state !== AssocState.ERROR) failure = `after ${describeEvent(model.events[model.events.length - 1]!)} the connection is in state ${p.c.state}, expected ERROR`;
          else {
            const after = await settle(p.c.recv());
            if (after.ok) {
              taken.push(after.m);
              failure = "recv() after a fatal error gave a message";
            } else if (!(after.e instanceof LwMsgError) || after.e.status !== Status.INVALID_STATE) failure = `recv() after a fatal error: ${errName(after.e)}, expected INVALID_STATE`;
          }
        }
      }
    } finally {
      stop = true;
      for (const m of taken) m.dispose();
    }
    await writer;

    const reusable = !failure && model.end === "open" && !close && lc.fds === 0 && fdsBefore < 0;
    if (reusable) {
      p.history.push(stream);
      p.historyBytes += stream.length;
      if (p.historyBytes > 256 * 1024) p.cases = this.pairLife; // keep reproductions small: replace the pair next time
    } else {
      await this.teardown(p, (p.cases & 1) === 0);
      if (this.pair === p) this.pair = null;
    }
    if (failure) return fail(failure);
    if (fdsBefore >= 0) {
      // every fd the connection received is in a message (disposed above) or was closed by it
      let now = openFdCount();
      for (let k = 0; k < 20 && now > fdsBefore; k++) {
        await Bun.sleep(1);
        now = openFdCount();
      }
      if (now !== fdsBefore) return fail(`fd count ${fdsBefore} before the case, ${now} after (${lc.fds} fds sent)`);
    }
    return { outcome: outcomes[outcomes.length - 1] ?? "-", outcomes, ms: performance.now() - t0, events };
  }

  private compare(want: ModelEvent, got: Settled, proto: Protocol<any>, sent: string[], i: number): string | undefined {
    const at = `event ${i} (expected ${describeEvent(want)})`;
    if (!got.ok) {
      if (!(got.e instanceof LwMsgError)) return `${at}: recv() rejected with a non-LwMsgError: ${errName(got.e)}`;
      if (want.kind !== "error") return `${at}: recv() rejected with ${errName(got.e)} (${got.e.message})`;
      if (got.e.status !== want.status) return `${at}: recv() rejected with ${errName(got.e)} (${got.e.message})`;
      return undefined;
    }
    const m = got.m;
    if (want.kind === "error") return `${at}: recv() gave a message (tag ${m.tag}, flags ${m.flags}, status ${m.status})`;
    if (want.kind === "synthetic") {
      if (m.tag !== -1 || !m.synthetic || m.status !== want.status || m.flags !== want.flags || m.cookie !== want.cookie || m.data !== null || m.fds !== null) {
        return `${at}: got tag=${m.tag} flags=${m.flags} status=${statusShortName(m.status)} cookie=${m.cookie} data=${m.data === null ? "null" : "set"} fds=${m.fds?.length ?? 0}`;
      }
      return undefined;
    }
    if (m.tag !== want.tag || m.flags !== want.flags || m.status !== want.status || m.cookie !== want.cookie || m.name !== want.name) {
      return `${at}: got tag=${m.tag} name=${m.name} flags=${m.flags} status=${m.status} cookie=${m.cookie}`;
    }
    // fds: the k-th fd taken must be the socket sent k-th
    const gotFds = m.fds ?? [];
    if (gotFds.length !== want.fds.length) return `${at}: ${gotFds.length} fds in the message, expected ${want.fds.length}`;
    const labelOf = new Map<number, string>();
    for (let k = 0; k < gotFds.length; k++) {
      const label = fdLabel(gotFds[k]!);
      labelOf.set(gotFds[k]!, label);
      if (label !== sent[want.fds[k]!]) return `${at}: fd ${k} is ${label}, expected the ${want.fds[k]}th sent (${sent[want.fds[k]!]})`;
    }
    if (want.data === null) return m.data === null ? undefined : `${at}: data is set, expected none`;
    const entry = proto.byTag(m.tag)!;
    const wire = Lw.wireOf(entry.type!);
    const recs = recsOf(wire);
    const a = normalize(wire, want.data, recs, null, (n) => `fd#${n - FAKE_FD}`, new Map());
    const b = normalize(wire, m.data, recs, null, (n) => `fd#${sent.indexOf(labelOf.get(n) ?? fdLabel(n))}`, new Map());
    if (!Bun.deepEquals(a, b, true)) return `${at}: decoded data differs from the model's`;
    return undefined;
  }
}

/** Replay a saved live stream on a fresh pair; null when the model and the connection agree (and the pin, if any, matches). */
export async function replayLive(f: LiveFuzzer, e: { protocol: string; packetSize: number; maxMessageSize?: number; fds: number; close: boolean; pin?: string[]; greeting?: boolean }, stream: Uint8Array): Promise<string | null> {
  await f.finish();
  const r = await f.run({ kind: "replay", ops: [], protocol: e.protocol, packetSize: e.packetSize, maxMessageSize: e.maxMessageSize ?? 16 * 1024 * 1024, stream, fds: e.fds, close: e.close, ...(e.greeting ? { greeting: true } : {}) });
  await f.finish();
  if (r.failure) return r.failure;
  if (e.pin && JSON.stringify(r.events) !== JSON.stringify(e.pin)) return `events ${JSON.stringify(r.events)}, pinned ${JSON.stringify(e.pin)}`;
  return null;
}
