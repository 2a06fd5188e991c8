/** Spawning bench children: optional CPU pinning with taskset, JSON-line results, time limits. */
import type { Subprocess } from "bun";

let tasksetOk: boolean | null = null;
/** Whether `taskset` exists and works here. */
export function hasTaskset(): boolean {
  if (tasksetOk === null) {
    try {
      tasksetOk = Bun.spawnSync(["taskset", "-c", "0", "true"]).exitCode === 0;
    } catch {
      tasksetOk = false;
    }
  }
  return tasksetOk;
}

/** Prefix a command with `taskset -c <cpus>` when `cpus` is given. */
export function pinned(cmd: string[], cpus: string | null | undefined): string[] {
  if (cpus == null) return cmd;
  if (!hasTaskset()) throw new Error("taskset is not available: cannot run the pinned pass");
  return ["taskset", "-c", cpus, ...cmd];
}

export interface SpawnOpts {
  cpus?: string | null;
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
}

/** Spawn a child (stdout piped, stderr inherited). */
export function spawnChild(cmd: string[], opts: SpawnOpts = {}): Subprocess<"ignore", "pipe", "inherit"> {
  return Bun.spawn(pinned(cmd, opts.cpus), {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    cwd: opts.cwd,
  });
}

/** Run a command to completion and parse the last JSON line it printed. */
export async function runJson<T = any>(cmd: string[], opts: SpawnOpts = {}): Promise<T> {
  const p = spawnChild(cmd, opts);
  const timeout = opts.timeoutMs ?? 120_000;
  const timer = setTimeout(() => p.kill("SIGKILL"), timeout);
  const text = await new Response(p.stdout).text();
  const code = await p.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited with ${code}${p.signalCode ? ` (${p.signalCode}, limit ${timeout} ms)` : ""}`);
  const line = text.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (!line) throw new Error(`${cmd[0]} printed no JSON result:\n${text}`);
  return JSON.parse(line) as T;
}

/** Wait for a child to exit within `ms`, killing it after. Returns the exit code (null if killed). */
export async function reap(p: Subprocess<any, any, any>, ms = 10_000): Promise<number | null> {
  const timer = setTimeout(() => p.kill("SIGKILL"), ms);
  const code = await p.exited;
  clearTimeout(timer);
  return p.signalCode ? null : code;
}

/** Reject after `ms` with a message (for bounding a case). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer!));
}
