// bun-lwmsg as a subprocess: help and exit codes, --protocol loading, `call`
// against a real server (fds both ways, --json), and `record` of an fserv
// session (fcat by handle and by fd) that `dump` then prints.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Poller } from "../lib/native/poller.ts";
import { Archive, ArchiveDisposition } from "../lib/archive/index.ts";
import { Lw } from "../lib/lw.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { useTempDir } from "./helpers/tmp.ts";
import { useChildren } from "./helpers/child.ts";

fdLeakCheck({ settleMs: 2000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });
const tmp = useTempDir("cli-");
const spawnChild = useChildren();
const root = join(import.meta.dir, "..");
const CLI = join(root, "bin/bun-lwmsg.ts");
const FSERV = join(root, "examples/fserv");
const CLI_PROTOCOL = join(import.meta.dir, "fixtures/cli-protocol.ts");
let n = 0;
const path = (ext: string) => tmp.join(`c${++n}.${ext}`);

function run(args: string[], opts: { cmd?: string[] } = {}) {
  const proc = Bun.spawn([...(opts.cmd ?? [process.execPath, CLI]), ...args], { stdout: "pipe", stderr: "pipe", cwd: tmp.path });
  return Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).then(([out, err, code]) => ({ out, err, code }));
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await Bun.sleep(25);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

/**
 * A plain connection to `sock` once something listens there. The socket file
 * appears a moment before listen() (the shim binds, renames into place, then
 * listens), so a refused connect right after it shows up is retried.
 */
async function connectWhenListening(sock: string): Promise<Awaited<ReturnType<typeof Bun.connect>>> {
  await waitFor(() => existsSync(sock), sock);
  for (let i = 0; ; i++) {
    const s = await Bun.connect({ unix: sock, socket: { data() {} } }).catch((e) => {
      if (i >= 200 || (e as { code?: string }).code !== "ECONNREFUSED") throw e;
      return null;
    });
    if (s) return s;
    await Bun.sleep(10);
  }
}

/** Wait until `sock` accepts connections (a probe connection, closed at once: the lwmsg server drops it). */
async function waitListening(sock: string): Promise<void> {
  (await connectWhenListening(sock)).end();
}

describe("help and exit codes", () => {
  test("--help prints usage and exits 0; no command exits 2; unknown command and options exit 2", async () => {
    const h = await run(["--help"]);
    expect(h.code).toBe(0);
    expect(h.out).toContain("bun-lwmsg dump FILE");
    expect(h.out).toContain("Exit codes");
    expect((await run([])).code).toBe(2);
    const u = await run(["frobnicate"]);
    expect(u.code).toBe(2);
    expect(u.err).toContain("unknown command frobnicate");
    expect((await run(["dump", "x", "--bogus"])).err).toContain("unknown option --bogus");
    expect((await run(["call", "a", "b"])).code).toBe(2);
    expect((await run(["record", "--listen", "x"])).code).toBe(2);
  });

  test("lwmsg errors exit 1 with the status: a missing file, a file that is no archive", async () => {
    const missing = await run(["dump", path("lwma")]);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain("FILE_NOT_FOUND");
    const junk = path("lwma");
    writeFileSync(junk, "this is not an archive at all, no");
    const bad = await run(["dump", junk]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/MALFORMED: not an lwmsg archive: magic is "this"/);
  });

  test("--protocol: default export, MODULE#NAME, and a clear usage error for several or none", async () => {
    const two = join(import.meta.dir, "fixtures/cli-two-protocols.ts");
    const file = path("lwma");
    const a = new Archive(Lw.Protocol({ B: [0, Lw.String()] }));
    a.setFile(file);
    await a.open(ArchiveDisposition.WRITE);
    await a.writeMessage({ tag: "B", data: "hi" });
    await a.close();
    const several = await run(["dump", file, "--protocol", two]);
    expect(several.code).toBe(2);
    expect(several.err).toContain("exports several protocols (first, second)");
    const named = await run(["dump", file, "--protocol", `${two}#second`]);
    expect(named.code).toBe(0);
    expect(named.out).toContain('[0] B: "hi"');
    const none = await run(["dump", file, "--protocol", join(import.meta.dir, "fixtures/codec-schemas.ts")]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("exports no Lw.Protocol");
  });
});

describe("call", () => {
  test("one request with a file's fd attached; the reply printed, its fd listed; --json is lossless", async () => {
    const sock = path("sock");
    const server = spawnChild([process.execPath, join(import.meta.dir, "fixtures/cli-server.ts"), sock]);
    expect(await server.line()).toBe("ready");
    const file = path("txt");
    writeFileSync(file, "ABCDEFGHIJ-and-more");
    const r = await run(["call", sock, "INSPECT", '{"note":"look"}', "--protocol", CLI_PROTOCOL, "--fd", file]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toContain("[flags=REPLY] INSPECTED: {");
    expect(r.out).toContain("size = 19");
    expect(r.out).toContain('note = "look"');
    expect(r.out).toContain("|ABCDEFGH|");
    expect(r.out).toMatch(new RegExp(`fd \\d+ → ${file.replace(/[.]/g, "\\.")} \\(file, 19 bytes\\)`));
    const j = await run(["call", sock, "1", '{"note":"json","fd":"$fd"}', "--protocol", CLI_PROTOCOL, "--fd", file, "--json"]);
    expect(j.code).toBe(0);
    const reply = JSON.parse(j.out);
    expect(reply.name).toBe("INSPECTED");
    expect(reply.data.size).toEqual({ $bigint: "19" });
    expect(Buffer.from(reply.data.head.$bytes, "base64").toString()).toBe("ABCDEFGH");
    expect(reply.fds).toHaveLength(1);
    // no --fd: the fd field is sent as "none"
    const nofd = await run(["call", sock, "INSPECT", '{"note":null}', "--protocol", CLI_PROTOCOL]);
    expect(nofd.code).toBe(0);
    expect(nofd.out).toContain("size = 0");
    const badTag = await run(["call", sock, "NOPE", "{}", "--protocol", CLI_PROTOCOL]);
    expect(badTag.code).toBe(2);
    expect(badTag.err).toContain("NOPE is not in the protocol (it has INSPECT, INSPECTED, BYE)");
    await server.kill();
  });
});

describe("call against the fserv demo", () => {
  test("open by handle (enum by name; the handle prints from the caller's view), open for the fd itself, and a refusal", async () => {
    const sock = path("sock");
    const file = path("txt");
    writeFileSync(file, "twelve bytes");
    const server = spawnChild([process.execPath, join(FSERV, "server.ts"), "--socket", sock], { stderr: "pipe" });
    await waitListening(sock);
    const P = join(FSERV, "protocol.ts");
    const open = await run(["call", sock, "FSERV_OPEN_REQ", JSON.stringify({ path: file, mode: "READ" }), "--protocol", P]);
    expect(open.code).toBe(0);
    expect(open.out).toMatch(/^\[flags=REPLY\] FSERV_OPEN_RES: <FileHandle:remote\[\d+\]>\n$/);
    const fd = await run(["call", sock, "FSERV_OPEN_FD_REQ", JSON.stringify({ path: file, mode: 1 }), "--protocol", P]);
    expect(fd.out).toMatch(new RegExp(`FSERV_OPEN_FD_RES: \\{\\n    fd = \\d+\\n\\}\\nfd \\d+ → ${file.replace(/[.]/g, "\\.")} \\(file, 12 bytes\\)`));
    const refused = await run(["call", sock, "FSERV_OPEN_REQ", JSON.stringify({ path: path("missing"), mode: "READ" }), "--protocol", P]);
    expect(refused.code).toBe(0); // the reply is a message of its own (status SUCCESS)
    expect(refused.out).toContain("FSERV_ERROR_RES: {\n    err = 2\n}");
    const badEnum = await run(["call", sock, "FSERV_OPEN_REQ", JSON.stringify({ path: file, mode: "READ | FLY" }), "--protocol", P]);
    expect(badEnum.code).toBe(1);
    expect(badEnum.err).toContain("MALFORMED");
    await server.kill();
  }, 30_000);
});

describe("exact-bytes strings on the command line (the fserv path)", () => {
  test("a path as JSON text is its UTF-8 bytes, as $bytes or numbers its exact bytes (a Latin-1 name); a lone surrogate or a number over 255 is refused", async () => {
    const sock = path("sock");
    const latin1 = Buffer.concat([Buffer.from(tmp.join("caf")), Buffer.from([0xe9])]);
    writeFileSync(latin1, "latin-1 name");
    const server = spawnChild([process.execPath, join(FSERV, "server.ts"), "--socket", sock], { stderr: "pipe" });
    await waitListening(sock);
    const P = join(FSERV, "protocol.ts");
    const open = (p: unknown) => run(["call", sock, "FSERV_OPEN_FD_REQ", JSON.stringify({ path: p, mode: "READ" }), "--protocol", P]);
    const byB64 = await open({ $bytes: latin1.toString("base64") });
    expect(byB64.code).toBe(0);
    expect(byB64.out).toMatch(/FSERV_OPEN_FD_RES: \{\n    fd = \d+\n\}\nfd \d+ → .*caf.* \(file, 12 bytes\)/);
    const byNumbers = await open([...latin1]);
    expect(byNumbers.out).toContain("(file, 12 bytes)");
    // the same name as text is "café" in UTF-8 (c3 a9): another file, which does not exist
    const asText = await open(tmp.join("café"));
    expect(asText.out).toContain("FSERV_ERROR_RES: {\n    err = 2\n}");
    const lone = await open("\ud800");
    expect(lone.code).toBe(1);
    expect(lone.err).toContain("MALFORMED");
    expect(lone.err).toContain("lone surrogate");
    const big = await open([47, 256]);
    expect(big.code).toBe(1);
    expect(big.err).toContain("256 in the numbers for a bytes string is not a byte");
    await server.kill();
  }, 30_000);

  test("dump prints an archived exact-bytes path as a string with \\x escapes, and --json gives it as $bytes", async () => {
    const out = path("lwma");
    const { fservProtocol } = await import("../examples/fserv/protocol.ts");
    const a = new Archive(fservProtocol);
    a.setFile(out);
    await a.open(ArchiveDisposition.WRITE | ArchiveDisposition.SCHEMA);
    await a.writeMessage({ tag: "FSERV_OPEN_REQ", data: { path: new Uint8Array([0x2f, 0x63, 0xe9]), mode: 1 } });
    await a.close();
    for (const args of [["dump", out], ["dump", out, "--protocol", join(FSERV, "protocol.ts")]]) {
      const d = await run(args);
      expect(d.code).toBe(0);
      expect(d.out).toContain('[0] FSERV_OPEN_REQ: {\n    path = "/c\\xe9"\n    mode = READ\n}');
    }
    const j = await run(["dump", out, "--json"]);
    expect(j.code).toBe(0);
    const rec = JSON.parse(j.out.trim().split("\n")[1]!);
    expect(rec.data).toEqual({ path: { $bytes: Buffer.from([0x2f, 0x63, 0xe9]).toString("base64") }, mode: 1 });
  });
});

describe("record an fserv session, then dump it", () => {
  test("fcat by handle and by fd through the recorder; SIGINT finishes the archive and removes the socket; dump prints it", async () => {
    const srvSock = path("sock");
    const recSock = path("sock");
    const out = path("lwma");
    const file = path("txt");
    const content = "Hello through the recorder!\n";
    writeFileSync(file, content);
    const server = spawnChild([process.execPath, join(FSERV, "server.ts"), "--socket", srvSock], { stderr: "pipe" });
    await waitListening(srvSock);
    const rec = Bun.spawn([process.execPath, CLI, "record", "--listen", recSock, "--connect", srvSock, "--out", out, "--protocol", join(FSERV, "protocol.ts")], { stdout: "pipe", stderr: "pipe" });
    const recOut = new Response(rec.stdout).text();
    const recErr = new Response(rec.stderr).text();
    try {
      await waitFor(() => existsSync(recSock), "the recorder socket");
      expect(statSync(recSock).mode & 0o777).toBe(0o600);
      // a client that connects and never greets does not hold up the others
      const silent = await connectWhenListening(recSock);
      const byHandle = await run([join(FSERV, "fcat.ts"), "--socket", recSock, file], { cmd: [process.execPath] });
      expect(byHandle.err).toBe("");
      expect(byHandle.out).toBe(content);
      const byFd = await run([join(FSERV, "fcat.ts"), "--socket", recSock, "--fd", file], { cmd: [process.execPath] });
      expect(byFd.out).toBe(content);
      const refused = await run([join(FSERV, "fcat.ts"), "--socket", recSock, path("missing")], { cmd: [process.execPath] });
      expect(refused.code).not.toBe(0);
      silent.end();
    } finally {
      rec.kill("SIGINT");
    }
    expect(await rec.exited).toBe(0);
    const printed = await recOut;
    expect(await recErr).toMatch(/stopped; \d+ messages from 3 clients/);
    expect(existsSync(recSock)).toBe(false);
    // what it printed as the messages passed
    expect(printed).toContain(`[1 >>] FSERV_OPEN_REQ: {\n    path = "${file}"\n    mode = READ\n}`);
    expect(printed).toMatch(/\[1 << flags=REPLY\] FSERV_OPEN_RES: <FileHandle:local\[\d+\]>/);
    expect(printed).toContain("|Hello through th|");
    expect(printed).toMatch(/\[2 << flags=REPLY fds=1\] FSERV_OPEN_FD_RES: \{\n    fd = \d+\n\}/);
    expect(printed).toMatch(/\[3 << flags=REPLY\] FSERV_ERROR_RES: \{\n    err = 2\n\}/);

    const d = await run(["dump", out]);
    expect(d.code).toBe(0);
    expect(d.out).toStartWith("------\nSchema\n------\n\nFSERV_OPEN_REQ (0): struct OpenRequest");
    expect(d.out).toContain("FSERV_VOID_RES (6)\n");
    expect(d.out).toContain(`[0] FSERV_OPEN_REQ: {\n    path = "${file}"\n    mode = READ\n}`);
    // from the file's schema alone a handle is lwmsg's transmitted form
    expect(d.out).toMatch(/\[1 flags=REPLY\] FSERV_OPEN_RES: \{\n    type = LWMSG_HANDLE_LOCAL\n    data = <arm:local_id>\s?\d+\n\}/);
    expect(d.out).toMatch(/FSERV_READ_RES: \{\n    size = 28\n/);
    expect(d.out).toContain("|Hello through th|");
    // the fd itself is not in the file: the schema makes its indicator a uint8 (lwmsg's quirk)
    expect(d.out).toMatch(/FSERV_OPEN_FD_RES: \{\n    fd = 255\n\}/);
    const withProtocol = await run(["dump", out, "--protocol", join(FSERV, "protocol.ts")]);
    expect(withProtocol.out).toMatch(/FSERV_OPEN_RES: <FileHandle:local\[\d+\]>/);
    expect(withProtocol.out).toMatch(/FSERV_OPEN_FD_RES: \{\n    fd = -1\n\}/);

    const j = await run(["dump", out, "--json"]);
    expect(j.code).toBe(0);
    const lines = j.out.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines[0].archive).toEqual({ version: "1.1.0", byteOrder: "big-endian", schema: true });
    expect(lines[0].schema.map((m: any) => m.name)).toContain("FSERV_OPEN_FD_RES");
    const read = lines.find((l: any) => l.name === "FSERV_READ_RES" && l.data.size.$bigint !== "0");
    expect(read.data.size).toEqual({ $bigint: String(content.length) });
    expect(Buffer.from(read.data.data.$bytes, "base64").toString()).toBe(content);
    expect(lines.slice(1).every((l: any, i: number) => l.index === i)).toBe(true);
    await server.kill();
  }, 60_000);

  test("without --protocol: forwarded all the same, printed as header and hex, archived without a schema", async () => {
    const srvSock = path("sock");
    const recSock = path("sock");
    const out = path("lwma");
    const file = path("txt");
    writeFileSync(file, "raw bytes\n");
    const server = spawnChild([process.execPath, join(FSERV, "server.ts"), "--socket", srvSock], { stderr: "pipe" });
    await waitListening(srvSock);
    const rec = Bun.spawn([process.execPath, CLI, "record", "--listen", recSock, "--connect", srvSock, "--out", out], { stdout: "pipe", stderr: "pipe" });
    const recOut = new Response(rec.stdout).text();
    try {
      await waitListening(recSock);
      expect((await run([join(FSERV, "fcat.ts"), "--socket", recSock, "--fd", file], { cmd: [process.execPath] })).out).toBe("raw bytes\n");
      expect((await run([join(FSERV, "fcat.ts"), "--socket", recSock, file], { cmd: [process.execPath] })).out).toBe("raw bytes\n");
    } finally {
      rec.kill("SIGTERM");
    }
    expect(await rec.exited).toBe(0);
    const printed = await recOut;
    expect(printed).toMatch(/\[1 >>\] tag 8: tag 8, \d+ bytes \(no protocol\)\n    00000000   ff/);
    expect(printed).toMatch(/\[1 << flags=REPLY fds=1\] tag 9/);
    const d = await run(["dump", out]);
    expect(d.code).toBe(0);
    expect(d.out).toContain("(none in the file)");
    expect(d.out).toMatch(/\[0\] tag 8: <undecoded, \d+ bytes: NOT_FOUND/);
    const typed = await run(["dump", out, "--protocol", join(FSERV, "protocol.ts")]);
    expect(typed.out).toContain(`[0] FSERV_OPEN_FD_REQ: {\n    path = "${file}"`);
    await server.kill();
  }, 60_000);
});

describe("dump streams", () => {
  test("a 64 MiB archive is read one record at a time", async () => {
    const file = path("lwma");
    const P = Lw.Protocol({ BLOB: [0, Lw.Struct({ n: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "n" }), { notNull: true }) })] });
    const a = new Archive(P);
    a.setFile(file);
    await a.open(ArchiveDisposition.WRITE | ArchiveDisposition.SCHEMA);
    const chunk = new Uint8Array(1 << 20).fill(0x41);
    for (let i = 0; i < 64; i++) await a.writeMessage({ tag: "BLOB", data: { n: chunk.length, data: chunk } });
    await a.close();
    expect(statSync(file).size).toBeGreaterThan(64 << 20);
    const r = new Archive(P);
    r.setFile(file);
    await r.open(ArchiveDisposition.READ | ArchiveDisposition.SCHEMA);
    Bun.gc(true);
    const before = process.memoryUsage();
    let peak = 0;
    let count = 0;
    for (;;) {
      const rec = await r.readRecord().catch(() => null);
      if (!rec) break;
      count++;
      const m = process.memoryUsage();
      peak = Math.max(peak, m.arrayBuffers - before.arrayBuffers);
      if (count % 8 === 0) Bun.gc(true);
    }
    await r.close();
    expect(count).toBe(64);
    // live buffers stay a few records' worth, never the file
    expect(peak).toBeLessThan(24 << 20);
  }, 60_000);
});
