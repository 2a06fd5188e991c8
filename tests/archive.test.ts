// Archives (lib/archive): header, schema block and record bytes derived from
// lwmsg's archive-format.c, round trips of every type kind in both byte
// orders, payload-less messages, schema checks and protocol update, bad
// files, and fds.
import { describe, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import type { TSchema } from "@sinclair/typebox";
import { Lw } from "../lib/lw.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { Handle } from "../lib/handle.ts";
import { Archive, ArchiveDisposition, ByteOrder } from "../lib/archive/index.ts";
import { encodeProtocolRep, protocolToRep } from "../lib/typerep/index.ts";
import { schemas } from "./fuzz/schemas.ts";
import { Rng } from "./fuzz/rng.ts";
import { validEncoding } from "./fuzz/gen.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { fservProtocol } from "../examples/fserv/protocol.ts";

fdLeakCheck();
const dir = useTempDir("archive-");
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s.replace(/[\s|]/g, ""), "hex"));
const { READ, WRITE, SCHEMA } = ArchiveDisposition;
let n = 0;
const file = () => dir.join(`a${n++}.lwma`);

async function statusOf(p: Promise<unknown> | (() => unknown)): Promise<number | string> {
  try {
    await (typeof p === "function" ? p() : p);
    return "ok";
  } catch (e) {
    if (e instanceof LwMsgError) return e.status;
    throw e;
  }
}

const Small = Lw.Protocol({ PING: [0, null], NUM: [1, Lw.Int32()], TEXT: [2, Lw.String()] });

async function writeArchive(path: string, protocol: any, disp: number, msgs: any[], order: ByteOrder = ByteOrder.BIG_ENDIAN): Promise<Uint8Array> {
  const a = new Archive(protocol);
  a.setFile(path);
  a.setByteOrder(order);
  await a.open(WRITE | disp);
  try {
    for (const m of msgs) await a.writeMessage(m);
  } finally {
    await a.close();
  }
  return new Uint8Array(readFileSync(path));
}

async function readAll(path: string, protocol: any, disp: number = SCHEMA, update = false): Promise<{ archive: Archive; msgs: any[] }> {
  const a = new Archive(protocol);
  a.setFile(path);
  a.setProtocolUpdate(update);
  await a.open(READ | disp);
  const msgs = [];
  try {
    for await (const m of a) msgs.push(m);
  } finally {
    await a.close();
  }
  return { archive: a, msgs };
}

describe("bytes (archive-format.c)", () => {
  const zeros16 = "00".repeat(16);
  test("header: magic, version flags (bit 0 big-endian), 1.1.0, format flags in file order (bit 0 schema), 16-byte protocol id", async () => {
    expect(hex(await writeArchive(file(), Small, 0, []))).toBe(`4c574d41 01 01 01 00 00000000 ${zeros16}`.replace(/ /g, ""));
    expect(hex(await writeArchive(file(), Small, 0, [], ByteOrder.LITTLE_ENDIAN))).toBe(`4c574d41 00 01 01 00 00000000 ${zeros16}`.replace(/ /g, ""));
    const be = await writeArchive(file(), Small, SCHEMA, []);
    expect(hex(be.subarray(0, 28))).toBe(`4c574d41 01 01 01 00 00000001 ${zeros16}`.replace(/ /g, ""));
    const le = await writeArchive(file(), Small, SCHEMA, [], ByteOrder.LITTLE_ENDIAN);
    expect(hex(le.subarray(0, 28))).toBe(`4c574d41 00 01 01 00 01000000 ${zeros16}`.replace(/ /g, ""));
  });

  test("schema block: u32 length, then the marshalled protocol rep", async () => {
    const b = await writeArchive(file(), Small, SCHEMA, []);
    const rep = encodeProtocolRep(protocolToRep(Small));
    expect(hex(b.subarray(28))).toBe(hex(new Uint8Array([...unhex((rep.length >>> 0).toString(16).padStart(8, "0")), ...rep])));
    // spelled out: 3 messages; PING has no payload (type id 0); NUM an int32; TEXT a pstr
    const int32 = "00000001 02 00000000 00000002 04 00 0000000000000000 0000000000000000";
    const pstr = "00000003 07 00000000 00000004 02 00000000 00000005 01 01 0000000000000000 0000000000000000 01 00000000 ffff ff00000000";
    expect(hex(rep)).toBe(hex(unhex(`0003 0000 00000000 ff00000004 50494e47 0001 ${int32} ff00000003 4e554d 0002 ${pstr} ff00000004 54455854`)));
  });

  test("records: status u32, flags u16, cookie u16, tag i16, size u32, payload — in the file's byte order", async () => {
    const msgs = [{ tag: "NUM", data: 42, status: 5, flags: 4, cookie: 0x1234 }, { tag: "PING" }, { tag: "TEXT", data: "hi" }];
    const be = await writeArchive(file(), Small, 0, msgs);
    expect(hex(be.subarray(28))).toBe(hex(unhex("00000005 0004 1234 0001 00000004 0000002a | 00000000 0000 0000 0000 00000000 | 00000000 0000 0000 0002 00000007 ff 00000002 6869")));
    const le = await writeArchive(file(), Small, 0, msgs, ByteOrder.LITTLE_ENDIAN);
    expect(hex(le.subarray(28))).toBe(hex(unhex("05000000 0400 3412 0100 04000000 2a000000 | 00000000 0000 0000 0000 00000000 | 00000000 0000 0000 0200 07000000 ff 02000000 6869")));
  });

  test("a version 0 file (16-byte records: status, cookie u32, tag i32, size, no flags) reads", async () => {
    const path = file();
    writeFileSync(path, unhex(`4c574d41 01 00 00 00 00000000 ${zeros16} 00000007 00001234 00000001 00000004 0000002a`));
    const { msgs } = await readAll(path, Small);
    expect(msgs.map((m) => [m.name, m.data, m.status, m.cookie, m.flags])).toEqual([["NUM", 42, 7, 0x1234, 0]]);
  });
});

describe("header flags", () => {
  const zeros16 = "00".repeat(16);
  const rec = "00000000 0000 0000 0001 00000004 0000002a";
  const schemaBlock = () => {
    const rep = encodeProtocolRep(protocolToRep(Small));
    return hex(new Uint8Array([...unhex(rep.length.toString(16).padStart(8, "0")), ...rep]));
  };
  test("bits lwmsg does not define are ignored, as lwmsg does; the protocol id is not checked", async () => {
    const path = file();
    writeFileSync(path, unhex(`4c574d41 03 01 01 07 00000003 ${"ab".repeat(16)} ${schemaBlock()} ${rec}`));
    const { archive, msgs } = await readAll(path, Small);
    expect(archive.header).toMatchObject({ byteOrder: ByteOrder.BIG_ENDIAN, major: 1, minor: 1, micro: 7, schema: true, formatFlags: 3 });
    expect(archive.schema?.message_count).toBe(3);
    expect(msgs.map((m) => m.data)).toEqual([42]);
  });
  test("version 0 with a schema block; an older minor; a file without the schema flag read with SCHEMA", async () => {
    const v0 = file();
    writeFileSync(v0, unhex(`4c574d41 01 00 00 00 00000001 ${zeros16} ${schemaBlock()} 00000000 00000000 00000001 00000004 0000002a`));
    expect((await readAll(v0, Small)).msgs.map((m) => m.data)).toEqual([42]);
    const minor0 = file();
    writeFileSync(minor0, unhex(`4c574d41 01 01 00 00 00000000 ${zeros16} ${rec}`));
    const r = await readAll(minor0, Small);
    expect(r.archive.schema).toBeNull();
    expect(r.msgs.map((m) => m.data)).toEqual([42]);
  });
});

describe("round trips", () => {
  // every suite schema without fds (archives hold none), as one protocol
  const usable = schemas.filter((s) => !Lw.compile(s.T as never).hasFds);
  const spec: Record<string, [number, TSchema | null]> = {};
  usable.forEach((s, i) => (spec[`M${i}`] = [i, s.T]));
  spec.EMPTY = [usable.length, null];
  const P = Lw.Protocol(spec);

  for (const order of [ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN]) {
    test(`every type kind, ${order === ByteOrder.BIG_ENDIAN ? "big" : "little"}-endian, read with the writer's protocol and with the file's schema alone`, async () => {
      const rng = new Rng(0xa7c ^ order);
      const written: { tag: string; bytes: string }[] = [];
      const msgs: any[] = [];
      usable.forEach((s, i) => {
        for (let k = 0; k < 3; k++) {
          try {
            const enc = validEncoding(s.T, rng, { handles: null, maxDepth: 3, maxCount: 4 });
            Lw.decode(s.T as never, enc.bytes); // (values over a maxAlloc encode but do not decode)
            msgs.push({ tag: `M${i}`, data: enc.value, cookie: k, status: i, flags: k });
            written.push({ tag: `M${i}`, bytes: hex(enc.bytes) });
          } catch {}
        }
      });
      msgs.push({ tag: "EMPTY" });
      expect(msgs.length).toBeGreaterThan(usable.length);
      const path = file();
      await writeArchive(path, P, SCHEMA, msgs, order);
      for (const [protocol, update] of [[P, false], [Lw.Protocol({}), true]] as const) {
        const { archive, msgs: back } = await readAll(path, protocol, SCHEMA, update);
        expect(back.length).toBe(msgs.length);
        back.forEach((m, i) => {
          expect([m.name, m.cookie, m.status, m.flags]).toEqual([msgs[i].tag, msgs[i].cookie ?? 0, msgs[i].status ?? 0, msgs[i].flags ?? 0]);
          const type = archive.protocol.byTag(m.tag)!.type;
          if (type === null) expect(m.data).toBeNull();
          else expect(hex(Lw.encode(type as never, m.data as never))).toBe(written[i]!.bytes);
        });
      }
    });
  }

  test("string forms read with the file's schema alone keep their values: exact bytes (not UTF-8), latin1, and ucs-2 (swapped per code unit in little-endian)", async () => {
    const Forms = schemas.find((s) => s.name === "strings.Forms")!.T;
    const P2 = Lw.Protocol({ FORMS: [1, Forms] });
    const value = { raw: new Uint8Array([0x2f, 0xe9, 0xff, 0x80]), l1: "café", a: "ok", w: "日😀" };
    for (const order of [ByteOrder.BIG_ENDIAN, ByteOrder.LITTLE_ENDIAN]) {
      const path = file();
      const b = await writeArchive(path, P2, SCHEMA, [{ tag: "FORMS", data: value }], order);
      // the ucs-2 field as the file holds it: count 3, units 65e5 d83d de00; little-endian swaps the count and each unit
      expect(hex(b)).toEndWith(order === ByteOrder.BIG_ENDIAN ? "ff0000000365e5d83dde00" : "ff03000000e5653dd800de");
      for (const [protocol, update] of [[P2, false], [Lw.Protocol({}), true]] as const) {
        const { msgs } = await readAll(path, protocol, SCHEMA, update);
        expect(msgs.map((m) => m.data)).toEqual([value]);
        expect(msgs[0].data.raw).toBeInstanceOf(Uint8Array);
      }
    }
  });

  test("handles are archived as their wire locality and id (lwmsg cannot archive them)", async () => {
    const path = file();
    await writeArchive(path, fservProtocol, SCHEMA, [{ tag: "FSERV_OPEN_RES", data: new Handle("FileHandle", 1, 7) }, { tag: "FSERV_CLOSE_REQ", data: new Handle("FileHandle", 2, 9) }]);
    const { msgs } = await readAll(path, fservProtocol);
    expect(msgs.map((m) => String(m.data))).toEqual(["<FileHandle:local[7]>", "<FileHandle:remote[9]>"]);
  });

  test("a payload-less message is a 0-byte record; with the schema, its type id is 0 (lwmsg crashes on both)", async () => {
    const path = file();
    const b = await writeArchive(path, Small, SCHEMA, [{ tag: "PING", cookie: 9 }, { tag: -1, status: Status.MALFORMED, flags: 2 }]);
    expect(hex(b.subarray(b.length - 28))).toBe(hex(unhex(`00000000 0000 0009 0000 00000000 | ${Status.MALFORMED.toString(16).padStart(8, "0")} 0002 0000 ffff 00000000`)));
    const { msgs } = await readAll(path, Small);
    expect(msgs.map((m) => [m.tag, m.name, m.data, m.cookie, m.status])).toEqual([
      [0, "PING", null, 9, 0],
      [-1, undefined, null, 0, Status.MALFORMED],
    ]);
  });

  test("a file descriptor given with setFd (the archive owns it), and a pipe", async () => {
    const path = file();
    const w = new Archive(Small);
    w.setFd(openSync(path, "w"));
    await w.open(WRITE);
    await w.send({ tag: "NUM", data: 1 });
    await w.close();
    const r = new Archive(Small);
    r.setFd(openSync(path, "r"));
    await r.open(READ);
    expect((await r.recv()).data).toBe(1);
    expect(await statusOf(r.recv())).toBe(Status.EOF);
    await r.close();
  });
});

describe("schema check and protocol update (test-archive.c)", () => {
  const Extra = Lw.Protocol({ PING: [0, null], NUM: [1, Lw.Int32()], TEXT: [2, Lw.String()], MORE: [3, Lw.UInt8()] });
  test("a matching reader, and one with extra tags, pass the schema check", async () => {
    const path = file();
    await writeArchive(path, Small, SCHEMA, [{ tag: "NUM", data: 1 }]);
    expect((await readAll(path, Small)).msgs.length).toBe(1);
    expect((await readAll(path, Extra)).msgs.length).toBe(1);
  });
  test("extra tags in the file: MALFORMED without update, the protocol extended with it", async () => {
    const path = file();
    await writeArchive(path, Extra, SCHEMA, [{ tag: "MORE", data: 7 }]);
    expect(await statusOf(readAll(path, Small))).toBe(Status.MALFORMED);
    const { archive, msgs } = await readAll(path, Small, SCHEMA, true);
    expect(archive.protocol.nameOf(3)).toBe("MORE");
    expect(msgs[0].data).toBe(7);
  });
  test("a type the reader cannot take (int32 written, uint8 read) is MALFORMED", async () => {
    const path = file();
    await writeArchive(path, Small, SCHEMA, [{ tag: "NUM", data: 1 }]);
    expect(await statusOf(readAll(path, Lw.Protocol({ NUM: [1, Lw.UInt8()] }), SCHEMA, true))).toBe(Status.MALFORMED);
  });
  test("without SCHEMA in the disposition the block is skipped", async () => {
    const path = file();
    await writeArchive(path, Extra, SCHEMA, [{ tag: "NUM", data: 5 }]);
    const { archive, msgs } = await readAll(path, Small, 0);
    expect(archive.schema).toBeNull();
    expect(msgs[0].data).toBe(5);
  });
});

describe("bad files", () => {
  const zeros16 = "00".repeat(16);
  const header = (flags = "01", major = "01", minor = "01", fmt = "00000000") => `4c574d41 ${flags} ${major} ${minor} 00 ${fmt} ${zeros16}`;
  const open = async (bytes: Uint8Array, protocol: any = Small, update = false) => {
    const path = file();
    writeFileSync(path, bytes);
    return statusOf(readAll(path, protocol, SCHEMA, update));
  };
  test("empty, short, wrong magic, newer major or minor: MALFORMED", async () => {
    expect(await open(new Uint8Array(0))).toBe(Status.MALFORMED);
    expect(await open(unhex(header()).subarray(0, 27))).toBe(Status.MALFORMED);
    expect(await open(unhex(header().replace("4c574d41", "4c574d42")))).toBe(Status.MALFORMED);
    expect(await open(unhex(header("01", "02")))).toBe(Status.MALFORMED);
    expect(await open(unhex(header("01", "01", "02")))).toBe(Status.MALFORMED);
  });
  test("schema length truncated, huge, or longer than the file; schema bytes bad: MALFORMED, nothing huge allocated", async () => {
    const before = process.memoryUsage().rss;
    expect(await open(unhex(header("01", "01", "01", "00000001") + "0000"))).toBe(Status.MALFORMED);
    expect(await open(unhex(header("01", "01", "01", "00000001") + "ffffffff"))).toBe(Status.MALFORMED);
    expect(await open(unhex(header("01", "01", "01", "00000001") + "00100000 0001"))).toBe(Status.MALFORMED);
    expect(await open(unhex(header("01", "01", "01", "00000001") + "00000003 ffff00"), Small, true)).toBe(Status.MALFORMED);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });
  test("records: truncated header, huge size, truncated payload, bytes beyond the type: MALFORMED; unknown tag NOT_FOUND; end EOF", async () => {
    const h = header();
    expect(await open(unhex(`${h} 00000000 0000`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0001 ffffffff 00`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0001 00000004 0000`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0001 00000005 0000002a 00`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0001 00000003 000000`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0000 00000001 00`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${h} 00000000 0000 0000 0063 00000000`))).toBe(Status.NOT_FOUND);
    // little-endian: a payload shorter than its type is MALFORMED too (never EOF, which means "no more records")
    const le = header("00");
    expect(await open(unhex(`${le} 00000000 0000 0000 0100 02000000 2a00`))).toBe(Status.MALFORMED);
    expect(await open(unhex(`${le} 00000000 0000 0000 0100 04000000 2a000000`))).toBe("ok");
    const path = file();
    writeFileSync(path, unhex(`${h} 00000000 0000 0000 0001 00000004 0000002a`));
    const a = new Archive(Small);
    a.setFile(path);
    await a.open(READ);
    expect((await a.readMessage()).data).toBe(42);
    const e = await a.readMessage().catch((x) => x);
    expect(e).toBeInstanceOf(LwMsgError);
    expect(e.status).toBe(Status.EOF);
    await a.close();
  });
  test("every truncation of a valid archive is MALFORMED (or EOF exactly at a record boundary), never a hang or another error", async () => {
    const path = file();
    const good = await writeArchive(path, Small, SCHEMA, [{ tag: "NUM", data: 1 }, { tag: "TEXT", data: "hello" }, { tag: "PING" }]);
    for (let cut = 0; cut < good.length; cut++) {
      const p = file();
      writeFileSync(p, good.subarray(0, cut));
      const s = await statusOf(readAll(p, Small));
      expect([Status.MALFORMED as number | string, "ok"]).toContain(s);
    }
  });
});

describe("mutated archives (seeded batch)", () => {
  test("2,000 mutated files: every outcome is a message list or an LwMsgError with a status the reference gives", async () => {
    const P = Lw.Protocol({ PING: [0, null], NUM: [1, Lw.Int32()], TEXT: [2, Lw.String()], BLOB: [3, Lw.Struct({ n: Lw.UInt16(), b: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" })) })] });
    const msgs = [{ tag: "NUM", data: 5 }, { tag: "TEXT", data: "hello" }, { tag: "PING" }, { tag: "BLOB", data: { n: 3, b: new Uint8Array([1, 2, 3]) } }];
    const seeds = [await writeArchive(file(), P, SCHEMA, msgs), await writeArchive(file(), P, SCHEMA, msgs, ByteOrder.LITTLE_ENDIAN), await writeArchive(file(), P, 0, msgs)];
    const rng = new Rng(0xa5c41);
    const allowed = new Set<number | string>(["ok", Status.MALFORMED, Status.NOT_FOUND, Status.OVERFLOW, Status.MEMORY]); // never EOF: that would end a reader early
    const tally: Record<string, number> = {};
    const p = file();
    for (let i = 0; i < 2000; i++) {
      const b = Uint8Array.from(rng.pick(seeds));
      for (let k = 1 + rng.below(3); k > 0; k--) b[rng.below(b.length)] = rng.chance(0.5) ? rng.below(256) : rng.pick([0, 1, 0xff, 0x7f, 0x80]);
      writeFileSync(p, rng.chance(0.1) ? b.subarray(0, rng.below(b.length)) : b);
      // the full protocol half the time; an empty one that learns from the file the other half
      const s = await statusOf(rng.chance(0.5) ? readAll(p, P) : readAll(p, Lw.Protocol({}), SCHEMA, true));
      if (!allowed.has(s)) throw new Error(`case ${i}: status ${s}`);
      tally[s] = (tally[s] ?? 0) + 1;
    }
    expect(tally[Status.MALFORMED]).toBeGreaterThan(100);
    expect(tally.ok).toBeGreaterThan(100);
  }, 60_000);
});

describe("what an archive does not do", () => {
  test("fds are refused (UNSUPPORTED); an fd field without an fd (-1) is fine", async () => {
    const P = Lw.Protocol({ F: [0, Lw.Struct({ fd: Lw.Fd() })] });
    const a = new Archive(P);
    a.setFile(file());
    await a.open(WRITE);
    const fd = openSync("/dev/null", "r");
    try {
      expect(await statusOf(a.writeMessage({ tag: "F", data: { fd } }))).toBe(Status.UNSUPPORTED);
    } finally {
      closeSync(fd);
    }
    await a.writeMessage({ tag: "F", data: { fd: -1 } });
    await a.close();
  });
  test("association operations lwmsg does not support give UNSUPPORTED; misuse INVALID_STATE / INVALID_PARAMETER / NOT_FOUND", async () => {
    const a = new Archive(Small);
    expect(await statusOf(a.reset())).toBe(Status.UNSUPPORTED);
    expect(await statusOf(a.accept())).toBe(Status.UNSUPPORTED);
    expect(await statusOf(() => a.setTimeout("message", 5))).toBe(Status.UNSUPPORTED);
    expect(await statusOf(() => a.getSession())).toBe(Status.UNSUPPORTED);
    expect(await statusOf(() => a.setNonblock(true))).toBe(Status.UNSUPPORTED);
    expect(await statusOf(a.open(READ))).toBe(Status.INVALID_STATE);
    a.setFile(file());
    expect(await statusOf(a.open(READ | WRITE))).toBe(Status.INVALID_PARAMETER);
    expect(await statusOf(a.writeMessage({ tag: "NUM", data: 1 }))).toBe(Status.INVALID_STATE);
    await a.connect();
    expect(await statusOf(a.open(WRITE))).toBe(Status.INVALID_STATE);
    expect(await statusOf(a.readMessage())).toBe(Status.INVALID_STATE);
    expect(await statusOf(a.writeMessage({ tag: "NOPE", data: 1 }))).toBe(Status.NOT_FOUND);
    await a.close();
    await a.close();
  });
});

describe("archived messages are shaped like received ones", () => {
  test("release() and keepBytes() exist and change nothing: an archive's byte arrays are the reader's copies", async () => {
    const Blob = Lw.Protocol({ BLOB: [1, Lw.Struct({ size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) })] });
    const path = file();
    const w = new Archive(Blob);
    w.setFile(path);
    await w.open(WRITE);
    const data = new Uint8Array(2 * 1024 * 1024).map((_, i) => i * 7);
    await w.writeMessage({ tag: "BLOB", data: { size: data.length, data } });
    await w.close();
    const r = new Archive(Blob);
    r.setFile(path);
    await r.open(READ);
    const m = await r.readMessage();
    const kept: Uint8Array = m.data.data;
    expect(m.keepBytes()).toBe(m);
    m.release();
    m[Symbol.dispose]();
    const eof = await r.readMessage().catch((e) => e);
    expect(eof.status).toBe(Status.EOF);
    await r.close();
    expect(kept.length).toBe(data.length); // release() left it alone
    expect(Buffer.compare(kept, data)).toBe(0);
  });
});
