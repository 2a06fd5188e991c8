/**
 * Fixture child processes for tests, read line by line, and never left
 * behind: a child still running when its test ends (a failed assertion, a
 * timeout) is SIGKILLed and reaped in afterEach.
 *
 *   const spawn = useChildren();                 // at the top of a test file
 *   const c = spawn([process.execPath, script, "mode", path]);
 *   expect(await c.line()).toBe("ready");
 *   await c.kill();                              // or: expect(await c.done()).toBe(0)
 * @module
 */
import { afterEach } from "bun:test";
import { basename } from "node:path";

export interface Child {
  readonly proc: ReturnType<typeof Bun.spawn>;
  readonly pid: number;
  /** The next line the child prints (rejects after `ms`, or if its output ends first). */
  line(ms?: number): Promise<string>;
  /** The next line, parsed as JSON. */
  json<T = any>(ms?: number): Promise<T>;
  /** Write a line to the child's stdin. */
  tell(line: string): void;
  /** Close the child's stdin (its signal to finish, for fixtures that wait on it). */
  endInput(): void;
  /** SIGKILL and reap. */
  kill(): Promise<void>;
  /** Reap (after it exits by itself) and release the pipes; the exit code. */
  done(): Promise<number>;
}

export interface ChildOpts {
  /** Run the command under `ulimit -n <nofile>` (soft and hard). */
  nofile?: number;
  /** Put before the command, e.g. `setpriv --reuid ...`. */
  prefix?: string[];
  /** The child's stderr: shown in the test output (default), or piped to `proc.stderr`. */
  stderr?: "inherit" | "pipe";
}

/** Registers the afterEach that kills leftovers; returns the function that spawns children. */
export function useChildren(): (cmd: string[], opts?: ChildOpts) => Child {
  const live = new Set<Child>();
  afterEach(async () => {
    for (const c of [...live]) await c.kill();
  });
  return (cmd, opts = {}) => {
    const child = spawnChild(cmd, opts, () => live.delete(child));
    live.add(child);
    return child;
  };
}

function spawnChild(cmd: string[], opts: ChildOpts, forget: () => void): Child {
  const name = cmd.slice(1, 3).map((a) => basename(a)).join(" ") || cmd[0]!;
  const limited = opts.nofile ? ["sh", "-c", `ulimit -n ${opts.nofile} && exec "$0" "$@"`, ...cmd] : cmd;
  const proc = Bun.spawn([...(opts.prefix ?? []), ...limited], { stdin: "pipe", stdout: "pipe", stderr: opts.stderr ?? "inherit" });
  const stdin = proc.stdin as { write(s: string): void; flush(): void; end(): void };
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  // A read that lost a race against a line() timeout is kept for the next line(), so no output is dropped.
  let reading: ReturnType<typeof reader.read> | null = null;
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await reader.cancel().catch(() => {});
    reader.releaseLock();
    try {
      stdin.end();
    } catch {}
  };
  const line = async (ms = 15_000): Promise<string> => {
    const end = performance.now() + ms;
    for (;;) {
      const i = buf.indexOf("\n");
      if (i >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        return l;
      }
      const left = end - performance.now();
      if (left <= 0) throw new Error(`child ${name}: no output line within ${ms} ms`);
      reading ??= reader.read();
      let timer: ReturnType<typeof setTimeout>;
      const r = await Promise.race([reading, new Promise<null>((res) => (timer = setTimeout(() => res(null), left)))]).finally(() => clearTimeout(timer));
      if (r === null) continue;
      reading = null;
      if (r.done) throw new Error(`child ${name} ended its output (exit ${await proc.exited}); got ${JSON.stringify(buf)}`);
      buf += dec.decode(r.value, { stream: true });
    }
  };
  const child: Child = {
    proc,
    pid: proc.pid,
    line,
    json: async (ms) => JSON.parse(await line(ms)),
    tell(l: string) {
      stdin.write(l + "\n");
      stdin.flush();
    },
    endInput() {
      try {
        stdin.end();
      } catch {}
    },
    async kill() {
      forget();
      proc.kill("SIGKILL");
      await proc.exited;
      await release();
    },
    async done() {
      forget();
      const code = await proc.exited;
      await release();
      return code;
    },
  };
  return child;
}
