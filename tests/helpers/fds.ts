/**
 * File-descriptor accounting for tests: how many fds this process has open,
 * and a leak check that compares before/after with a short settle for closes
 * that happen asynchronously (Bun sockets ending, child-process pipes, ...).
 *
 *   test("x", () => expectNoFdLeak(async () => { ... }));
 *
 *   const leak = fdLeakCheck();          // registers beforeAll/afterAll
 *   // or by hand: const snap = fdSnapshot(); ...; await snap.assertNoLeak();
 * @module
 */
import { afterAll, beforeAll } from "bun:test";
import { readdirSync, readlinkSync } from "node:fs";
import { native } from "../../lib/native/ffi.ts";

/**
 * Numbers of the fds open right now. The directory fd used to list
 * /proc/self/fd is closed again by the time we check, so `fcntl(F_GETFD)`
 * filters it out (and any other fd closed meanwhile by another thread).
 */
export function openFds(): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc/self/fd")) {
    const fd = Number(name);
    if (Number.isInteger(fd) && native.lw_fd_is_open(fd) === 1) out.push(fd);
  }
  return out.sort((a, b) => a - b);
}

/** Count of open fds (entries of /proc/self/fd minus the one used to read it). */
export function openFdCount(): number {
  return openFds().length;
}

/** What an fd points at (`socket:[123]`, a path, `pipe:[9]`), for diagnostics. */
export function describeFd(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return "(closed)";
  }
}

export interface FdSnapshot {
  readonly fds: readonly number[];
  /** fds open now that were not open at the snapshot. */
  newFds(): number[];
  /**
   * Waits up to `settleMs` (polling every few ms) for the count to come back
   * to the snapshot's, then throws naming every extra fd and its target.
   */
  assertNoLeak(opts?: { settleMs?: number; slack?: number }): Promise<void>;
}

export function fdSnapshot(): FdSnapshot {
  const fds = openFds();
  const before = new Set(fds);
  const snap: FdSnapshot = {
    fds,
    newFds: () => openFds().filter((fd) => !before.has(fd)),
    async assertNoLeak({ settleMs = 500, slack = 0 } = {}) {
      const deadline = performance.now() + settleMs;
      for (;;) {
        const now = openFds();
        if (now.length <= fds.length + slack) return;
        if (performance.now() >= deadline) {
          const extra = now.filter((fd) => !before.has(fd));
          throw new Error(
            `fd leak: ${fds.length} open before, ${now.length} after (slack ${slack}); new: ` +
              extra.map((fd) => `${fd} -> ${describeFd(fd)}`).join(", "),
          );
        }
        Bun.gc(true);
        await Bun.sleep(5);
      }
    },
  };
  return snap;
}

/** Runs `fn` and fails if it left more fds open than there were before (after a short settle). */
export async function expectNoFdLeak<T>(fn: () => T | Promise<T>, opts?: { settleMs?: number; slack?: number }): Promise<T> {
  const snap = fdSnapshot();
  const r = await fn();
  await snap.assertNoLeak(opts);
  return r;
}

/**
 * For a whole test file: snapshot in beforeAll, assert in afterAll. Runtime
 * fds that Bun opens lazily on first use (e.g. for its first child process)
 * can be warmed up in `warmup` before the snapshot is taken.
 */
export function fdLeakCheck(opts: { settleMs?: number; slack?: number; warmup?: () => unknown } = {}): { snapshot(): FdSnapshot } {
  let snap: FdSnapshot | null = null;
  beforeAll(async () => {
    if (opts.warmup) await opts.warmup();
    snap = fdSnapshot();
  });
  afterAll(async () => {
    if (snap) await snap.assertNoLeak({ settleMs: opts.settleMs ?? 1000, slack: opts.slack ?? 0 });
  });
  return {
    snapshot() {
      if (!snap) throw new Error("fdLeakCheck: no snapshot yet (beforeAll has not run)");
      return snap;
    },
  };
}
