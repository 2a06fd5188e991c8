/** Runs examples/demo-fdpass.ts as a real program and checks what it prints. */
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";

const demo = join(import.meta.dir, "..", "examples", "demo-fdpass.ts");

test("demo-fdpass: the child reads the parent's file through a passed fd; both see each other's credentials", async () => {
  const p = Bun.spawn([process.execPath, demo], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  expect(err).toBe("");
  expect(code).toBe(0);

  const uid = process.getuid!();
  const gid = process.getgid!();
  const parentPid = Number(out.match(/^\[parent\] pid=(\d+), listening on (\S+)/m)?.[1]);
  const sockPath = out.match(/^\[parent\] pid=\d+, listening on (\S+)/m)?.[1];
  expect(parentPid).toBe(p.pid);

  // the child's view of its peer is the parent, as the kernel recorded it
  const childLine = out.match(/^\[child\]  pid=(\d+), connected; peer \(SO_PEERCRED\): pid=(\d+) uid=(\d+) gid=(\d+)$/m);
  expect(childLine).not.toBeNull();
  const childPid = Number(childLine![1]);
  expect(Number(childLine![2])).toBe(parentPid);
  expect([Number(childLine![3]), Number(childLine![4])]).toEqual([uid, gid]);

  // the parent's view of its peer is the child, and matches the pid Bun.spawn returned
  const parentLine = out.match(/^\[parent\] peer \(SO_PEERCRED\): pid=(\d+) uid=(\d+) gid=(\d+)  \(Bun\.spawn says the child is pid (\d+)\)$/m);
  expect(parentLine).not.toBeNull();
  expect(Number(parentLine![1])).toBe(childPid);
  expect(Number(parentLine![4])).toBe(childPid);
  expect([Number(parentLine![2]), Number(parentLine![3])]).toEqual([uid, gid]);

  // the content arrived through the descriptor, which was close-on-exec on arrival
  expect(out).toMatch(/^\[child\]  received fd \d+ \(close-on-exec: true\), read 21 bytes: "hello from the parent"$/m);
  expect(out).toContain(`[parent] child acknowledged: "got it"`);
  expect(out).toContain("[parent] child exited with 0");

  // cleaned up: the temp dir holding the socket and the file is gone
  expect(sockPath).toBeDefined();
  expect(existsSync(sockPath!)).toBe(false);
  expect(existsSync(join(sockPath!, ".."))).toBe(false);
});
