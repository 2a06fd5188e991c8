/**
 * Running a test child as another uid (nobody, 65534) wherever the checkout
 * lives. A clone in a private directory (`mktemp -d`, `/root`: 0700) is
 * unreadable to that uid, and so are Bun (node_modules/bun) and the library:
 * the child would die before it runs ("CouldntReadCurrentDirectory").
 *
 * So the parts a child needs — Bun's binary (hard-linked where the file
 * system allows, else copied), lib/, native/ (with the built shim, timestamps
 * kept so it counts as fresh), examples/, tests/fixtures/ and TypeBox — are
 * put once per test process into a fresh world-readable temp dir, and the
 * child runs from there with that dir as its cwd. Before any test uses it,
 * one probe runs Bun there as the other uid; if that is impossible (not
 * root, no setpriv, the copy unreadable) `ready` is false and `reason` says
 * why, so the test is skipped with the reason printed — never red on a fresh
 * clone, never passing without checking.
 *
 *   const nobody = otherUser();
 *   test.skipIf(!nobody.ready)("…", () => { Bun.spawn(nobody.command("tests/fixtures/x.ts", "arg"), { cwd: nobody.cwd }) });
 * @module
 */
import { chmodSync, copyFileSync, cpSync, linkSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const NOBODY = 65534;
const repo = join(dirname(new URL(import.meta.url).pathname), "..", "..");
/** Repository parts a child needs, relative to the checkout. */
const PARTS = ["package.json", "lib", "native", "examples", "tests/fixtures", "node_modules/@sinclair/typebox"];

export interface OtherUser {
  /** True once a probe ran Bun as `uid` from the readable copy. */
  readonly ready: boolean;
  /** Why it is not ready (printed when a test is skipped). */
  readonly reason: string;
  readonly uid: number;
  /** The readable copy of the checkout: use it as the child's cwd. */
  readonly cwd: string;
  /** `setpriv … <bun> <copy>/<script> args…`: a command that runs `script` (relative to the checkout) as `uid`. */
  command(script: string, ...args: string[]): string[];
  /** The setpriv prefix alone (for a command whose program is given separately). */
  readonly prefix: string[];
  /** The copied Bun binary. */
  readonly bun: string;
}

let cached: OtherUser | null = null;

/** The other-uid runner for this test process (made on first use, removed at exit). */
export function otherUser(): OtherUser {
  return (cached ??= make(NOBODY));
}

function make(uid: number): OtherUser {
  const prefix = ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"];
  const base = { uid, prefix, command: () => [] as string[], cwd: "", bun: "" };
  if (process.geteuid?.() !== 0) return { ...base, ready: false, reason: "not root: cannot start a child as another uid" };
  if (Bun.which("setpriv") === null) return { ...base, ready: false, reason: "setpriv (util-linux) is not installed" };
  let root = "";
  try {
    root = mkdtempSync(join(tmpdir(), "lwmsg-asuser-"));
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
    chmodSync(root, 0o755);
    const bun = join(root, "bun");
    try {
      linkSync(process.execPath, bun);
    } catch {
      copyFileSync(process.execPath, bun);
    }
    chmodSync(bun, 0o755);
    for (const part of PARTS) {
      mkdirSync(dirname(join(root, part)), { recursive: true });
      cpSync(join(repo, part), join(root, part), { recursive: true, preserveTimestamps: true, dereference: true });
    }
    const user: OtherUser = {
      ready: true,
      reason: "",
      uid,
      prefix,
      cwd: root,
      bun,
      command: (script, ...args) => [...prefix, bun, join(root, script), ...args],
    };
    // The probe loads the copied library as the other uid, from the copy as its cwd, as the tests' children do.
    const probe = Bun.spawnSync([...prefix, bun, "-e", 'await import("./lib/status.ts"); console.log(process.geteuid())'], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const out = probe.stdout.toString().trim();
    if (probe.exitCode !== 0 || out !== String(uid)) {
      throw new Error(`probe as uid ${uid} failed (exit ${probe.exitCode}): ${probe.stderr.toString().trim() || out}`);
    }
    return user;
  } catch (e) {
    return { ...base, cwd: root, ready: false, reason: `cannot run a child as uid ${uid}: ${(e as Error).message}` };
  }
}

/** For `test.skipIf(!u.ready)`: prints the reason once, so a skip is never silent. */
export function skipUnlessOtherUser(u: OtherUser = otherUser()): boolean {
  // CI sets this where the machine can do it (root + setpriv): a skip there would hide a broken runner.
  if (!u.ready && process.env.LWMSG_REQUIRE_CROSS_USER === "1") throw new Error(`cross-user tests required but ${u.reason}`);
  if (!u.ready) console.warn(`[skipped: cross-user tests] ${u.reason}`);
  return !u.ready;
}
