/** Compile a C baseline with the system compiler (`cc -O2`) into a temp dir, cached by source hash. */
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

export function compileC(source: string, extraFlags: string[] = []): string {
  const text = readFileSync(source);
  const hash = Bun.hash(Buffer.concat([text, Buffer.from(extraFlags.join(" "))])).toString(16);
  const dir = join(tmpdir(), "bun-lwmsg-bench");
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${basename(source, ".c")}-${hash}`);
  if (existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  const cc = process.env.CC || "cc";
  const r = Bun.spawnSync([cc, "-O2", "-o", tmp, source, ...extraFlags], { stderr: "pipe", stdout: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cc} -O2 ${source} failed:\n${r.stderr.toString()}`);
  renameSync(tmp, out);
  return out;
}
