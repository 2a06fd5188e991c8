// Builds native/build/liblwmsg_shim.so with the system C compiler.
// Runs at `npm install` (postinstall) under Node or Bun. A failure here is not
// fatal: lib/native/load.ts retries at first import and, failing that, falls
// back to bun:ffi's built-in TinyCC, and only then reports what is missing.
import { spawnSync } from "node:child_process";
import { mkdirSync, existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "shim.c");
const outDir = join(here, "build");
const out = join(outDir, process.platform === "darwin" ? "liblwmsg_shim.dylib" : "liblwmsg_shim.so");

export function buildShim({ quiet = false } = {}) {
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return { ok: true, out };
  mkdirSync(outDir, { recursive: true });
  const compilers = [process.env.CC, "cc", "gcc", "clang"].filter(Boolean);
  const errors = [];
  for (const cc of compilers) {
    const r = spawnSync(cc, ["-O2", "-fPIC", "-shared", "-Wall", "-o", out, src, "-lpthread"], { encoding: "utf8" });
    if (r.status === 0) {
      if (!quiet) console.log(`bun-lwmsg: built ${out} with ${cc}`);
      return { ok: true, out };
    }
    errors.push(`${cc}: ${r.error ? r.error.message : (r.stderr || "").trim()}`);
  }
  if (!quiet) console.warn(`bun-lwmsg: could not build the native shim now (${errors.join("; ")}); it will be retried at first import.`);
  return { ok: false, out, errors };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) buildShim();
