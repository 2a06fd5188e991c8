// Sealed memfds (lib/transport/shm.ts): made, sealed, sent as an Lw.Fd field over a real
// socket, checked and mapped by the receiver; refusals of unsealed, partly
// sealed, wrong-size and non-memfd fds; the examples/shm demo as a program.
import { describe, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Connection } from "../lib/connection.ts";
import { Lw } from "../lib/lw.ts";
import { native } from "../lib/native/ffi.ts";
import { Poller } from "../lib/native/poller.ts";
import { LwMsgError, Status } from "../lib/status.ts";
import { checkSealedMemfd, createSealedMemfd, mapSealedMemfd, memfdSeals, REQUIRED_SEALS, Seal, sealedMemfdFrom, unmapNow } from "../lib/transport/shm.ts";
import { expectNoFdLeak, fdLeakCheck } from "./helpers/fds.ts";

fdLeakCheck({ settleMs: 3000, warmup: () => (Bun.spawnSync(["true"]), Poller.shared()) });

const mappings = (name: string) => readFileSync("/proc/self/maps", "utf8").split("\n").filter((l) => l.includes(`memfd:${name}`)).length;

function refused(fn: () => unknown, status: Status, text: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LwMsgError);
    expect((e as LwMsgError).status).toBe(status);
    expect((e as LwMsgError).message).toContain(text);
    return;
  }
  throw new Error(`not refused (expected ${text})`);
}

/** A memfd with sealing allowed and `seals` added, `size` bytes of zeros. */
function rawMemfd(size: number, seals: number): number {
  const fd = native.lw_memfd_create(new TextEncoder().encode("raw\0"), 0x1 | 0x2);
  expect(fd).toBeGreaterThan(2);
  expect(native.lw_ftruncate(fd, size)).toBe(0);
  if (seals !== 0) expect(native.lw_add_seals(fd, seals)).toBe(0);
  return fd;
}

describe("making a sealed memfd", () => {
  test("createSealedMemfd: filled through a mapping that is gone afterwards, sealed four ways, the contents readable by a private mapping", () =>
    expectNoFdLeak(() => {
      let kept: Uint8Array | null = null;
      const fd = createSealedMemfd(
        1 << 20,
        (bytes) => {
          expect(bytes.length).toBe(1 << 20);
          for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i >> 12) & 0xff;
          kept = bytes;
        },
        { name: "fill-test" },
      );
      try {
        expect(kept!.length).toBe(0); // detached: the writable mapping is gone (the kernel would refuse F_SEAL_WRITE otherwise)
        expect(memfdSeals(fd)).toBe(Seal.SEAL | Seal.SHRINK | Seal.GROW | Seal.WRITE);
        expect(native.lw_fd_cloexec(fd)).toBe(1);
        const view = mapSealedMemfd(fd, 1 << 20);
        expect(mappings("fill-test")).toBe(1);
        expect([view[0], view[4096], view[4097], view[255 * 4096]]).toEqual([0, 1, 0, 255]);
        // The receiver's mapping is private: a write changes only its own copy.
        view[4096] = 77;
        const again = mapSealedMemfd(fd, 1 << 20);
        expect(again[4096]).toBe(1);
        // Nobody can map it shared-writable any more, nor resize it.
        expect(() => Bun.mmap(`/proc/self/fd/${fd}`, { shared: true })).toThrow(/EPERM|not permitted/);
        expect(native.lw_ftruncate(fd, 10)).toBeLessThan(0);
        unmapNow(view);
        unmapNow(again);
        expect(view.length).toBe(0);
        expect(mappings("fill-test")).toBe(0);
      } finally {
        closeSync(fd);
      }
    }));

  test("sealedMemfdFrom copies the bytes in; a fill that throws leaves no fd behind", () =>
    expectNoFdLeak(() => {
      const fd = sealedMemfdFrom(new Uint8Array([1, 2, 3, 4, 5]));
      try {
        expect([...mapSealedMemfd(fd, 5)]).toEqual([1, 2, 3, 4, 5]);
      } finally {
        closeSync(fd);
      }
      expect(() =>
        createSealedMemfd(4096, () => {
          throw new Error("producer failed");
        }),
      ).toThrow("producer failed");
      refused(() => createSealedMemfd(4096, (async () => {}) as never), Status.INVALID_PARAMETER, "fill must write synchronously");
      refused(() => createSealedMemfd(0, () => {}), Status.INVALID_PARAMETER, "size must be a positive integer");
      refused(() => sealedMemfdFrom(new Uint8Array(0)), Status.INVALID_PARAMETER, "size must be a positive integer");
    }));

  test("unmapNow refuses a part of a mapping", () => {
    const fd = sealedMemfdFrom(new Uint8Array(8192));
    try {
      const m = mapSealedMemfd(fd, 8192);
      refused(() => unmapNow(m.subarray(4096)), Status.INVALID_PARAMETER, "not a part of it");
      unmapNow(m);
      unmapNow(m); // idempotent
    } finally {
      closeSync(fd);
    }
  });
});

describe("the receiver's checks", () => {
  test("unsealed, partly sealed, wrong size and not-a-memfd are refused by name", () =>
    expectNoFdLeak(() => {
      const unsealed = rawMemfd(4096, 0);
      const noWrite = rawMemfd(4096, Seal.SHRINK | Seal.GROW);
      const futureOnly = rawMemfd(4096, Seal.SHRINK | Seal.GROW | Seal.FUTURE_WRITE);
      const sealed = rawMemfd(4096, REQUIRED_SEALS);
      const file = openSync(import.meta.path, "r");
      try {
        refused(() => mapSealedMemfd(unsealed, 4096), Status.SECURITY, `memfd ${unsealed} is not sealed against SHRINK|GROW|WRITE (has none)`);
        refused(() => mapSealedMemfd(noWrite, 4096), Status.SECURITY, "is not sealed against WRITE (has SHRINK|GROW)");
        refused(() => mapSealedMemfd(futureOnly, 4096), Status.SECURITY, "is not sealed against WRITE");
        refused(() => mapSealedMemfd(sealed, 8192), Status.INVALID_PARAMETER, `memfd ${sealed} is 4096 bytes, expected 8192`);
        refused(() => mapSealedMemfd(file, 4096), Status.INVALID_PARAMETER, `fd ${file} is not a memfd`);
        refused(() => checkSealedMemfd(-1, 4096), Status.INVALID_PARAMETER, "non-negative integer");
        checkSealedMemfd(sealed, 4096); // without SEAL: no one can remove seals anyway
      } finally {
        for (const fd of [unsealed, noWrite, futureOnly, sealed, file]) closeSync(fd);
      }
    }));
});

test("sent as an Lw.Fd field over a socket: the receiver maps the sender's bytes; every fd closed afterwards", () =>
  expectNoFdLeak(async () => {
    const protocol = Lw.Protocol({ BLOB: [0, Lw.Struct({ size: Lw.UInt32(), mem: Lw.Fd() })] });
    const [a, b] = await Connection.pair(protocol);
    try {
      const data = new Uint8Array(3 << 20).map((_, i) => (i * 31) & 0xff);
      const mem = sealedMemfdFrom(data);
      await a.send({ tag: "BLOB", data: { size: data.length, mem } });
      closeSync(mem); // send() duplicated it
      {
        using msg = await b.recv(); // closes the received fd at scope exit
        const view = mapSealedMemfd(msg.data.mem, msg.data.size);
        expect(Bun.hash.crc32(view)).toBe(Bun.hash.crc32(data));
        unmapNow(view);
      }
    } finally {
      await a.close();
      await b.close();
    }
  }));

test("examples/shm/demo.ts: 64 MiB by memfd and as a message field, the server's checksum matches on every path", async () => {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "..", "examples", "shm", "demo.ts"), "--rounds", "1"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);
  expect(out).toMatch(/^checksum crc32 [0-9a-f]{8}: ok on every path$/m);
  expect(out).toMatch(/^64 MiB as a sealed memfd \(sealedMemfdFrom\): +median [0-9.]+ ms/m);
  expect(out).toMatch(/^64 MiB as a message field: +median [0-9.]+ ms/m);
});
