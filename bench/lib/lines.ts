/**
 * Line-based control of bench children: the parent writes commands to a
 * child's stdin and reads JSON lines from its stdout; the child reads its
 * commands with {@link stdinLines} and answers with {@link emit}.
 * @module
 */
import type { Subprocess } from "bun";
import { pinned } from "./proc.ts";

/** Child side: the lines of stdin, until it closes (the parent went away). */
export async function* stdinLines(): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of Bun.stdin.stream()) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) yield line;
    }
  }
}

/** Child side: print one JSON line. */
export function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n");
}

/** Parent side: a child spoken to by lines. Every JSON line it prints is kept in order and can be awaited. */
export class ChildLink {
  readonly proc: Subprocess<"pipe", "pipe", "inherit">;
  private readonly msgs: any[] = [];
  private waiters: { pred: (m: any) => boolean; from: number; resolve: (m: any) => void }[] = [];
  private listeners: ((m: any) => void)[] = [];
  private ended = false;
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    cmd: string[],
    opts: { cpus?: string | null; env?: Record<string, string | undefined> } = {},
  ) {
    this.proc = Bun.spawn(pinned(cmd, opts.cpus), {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    this.done = this.read();
  }

  get pid(): number {
    return this.proc.pid;
  }

  private async read(): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of this.proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line.startsWith("{")) {
          if (line) console.error(`[${this.name}] ${line}`);
          continue;
        }
        let m: any;
        try {
          m = JSON.parse(line);
        } catch {
          console.error(`[${this.name}] ${line}`);
          continue;
        }
        this.msgs.push(m);
        for (const l of this.listeners) l(m);
        const idx = this.msgs.length - 1;
        this.waiters = this.waiters.filter((w) => {
          if (idx >= w.from && w.pred(m)) {
            w.resolve(m);
            return false;
          }
          return true;
        });
      }
    }
    this.ended = true;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.resolve(undefined);
  }

  /** Call `fn` with every message from now on. */
  on(fn: (m: any) => void): void {
    this.listeners.push(fn);
  }

  /** Write one command line. */
  send(cmd: string | object): void {
    if (this.ended) return;
    try {
      this.proc.stdin.write((typeof cmd === "string" ? cmd : JSON.stringify(cmd)) + "\n");
      this.proc.stdin.flush();
    } catch {
      // the child is gone; read() reports it
    }
  }

  /** The first message (printed after `mark()` if given) that has key `key`; rejects if the child exits first or after `ms`. */
  async wait(key: string, ms = 60_000, from = 0): Promise<any> {
    const pred = (m: any) => m && typeof m === "object" && key in m;
    for (let i = from; i < this.msgs.length; i++) if (pred(this.msgs[i])) return this.msgs[i];
    if (this.ended) throw new Error(`${this.name} exited before printing "${key}"`);
    let timer: ReturnType<typeof setTimeout>;
    const got = await Promise.race([
      new Promise<any>((resolve) => this.waiters.push({ pred, from, resolve })),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${this.name}: no "${key}" within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer));
    if (got === undefined) throw new Error(`${this.name} exited before printing "${key}" (exit ${this.proc.exitCode}${this.proc.signalCode ? ", " + this.proc.signalCode : ""})`);
    return got;
  }

  /** Index to pass to `wait` so only messages printed after now count. */
  mark(): number {
    return this.msgs.length;
  }

  /** Send a command and wait for the reply carrying `key`. */
  async request(cmd: string | object, key: string, ms = 60_000): Promise<any> {
    const from = this.mark();
    this.send(cmd);
    return this.wait(key, ms, from);
  }

  /** Close stdin (the child's signal to finish), wait up to `ms`, then SIGKILL. Exit code, null if killed. */
  async finish(ms = 10_000): Promise<number | null> {
    try {
      this.proc.stdin.end();
    } catch {
      // already closed
    }
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), ms);
    const code = await this.proc.exited;
    clearTimeout(timer);
    await this.done;
    return this.proc.signalCode ? null : code;
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}
