/**
 * Loads the native shim (native/shim.c) through bun:ffi.
 *
 * Order of attempts, so a fresh machine with a C compiler needs no extra step:
 *  1. the library built at `npm install` (native/build/liblwmsg_shim.so);
 *  2. build it now with the system compiler (cc/gcc/clang);
 *  3. compile the same source in-process with bun:ffi's TinyCC (`cc`).
 * If all three fail, one error names what to install.
 * @module
 */
import { cc, dlopen, type FFIFunction } from "bun:ffi";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "native");
const source = join(nativeDir, "shim.c");
const libPath = join(nativeDir, "build", process.platform === "darwin" ? "liblwmsg_shim.dylib" : "liblwmsg_shim.so");

const symbols = {
  lw_socketpair: { args: ["buffer"], returns: "i32" },
  lw_connect: { args: ["buffer", "i32", "buffer"], returns: "i32" },
  lw_connect_result: { args: ["i32"], returns: "i32" },
  lw_listen: { args: ["buffer", "i32", "i32", "i32"], returns: "i32" },
  lw_listen_fd: { args: ["i32", "i32"], returns: "i32" },
  lw_adopt_fd: { args: ["i32"], returns: "i32" },
  lw_accept: { args: ["i32"], returns: "i32" },
  lw_close: { args: ["i32"], returns: "i32" },
  lw_dup: { args: ["i32"], returns: "i32" },
  lw_unlink: { args: ["buffer"], returns: "i32" },
  lw_send: { args: ["i32", "ptr", "i32", "ptr", "i32"], returns: "i32" },
  lw_grow_sndbuf: { args: ["i32", "i32"], returns: "i32" },
  lw_sendv: { args: ["i32", "ptr", "i32", "ptr", "i32"], returns: "i32" },
  lw_copy: { args: ["ptr", "ptr", "f64"], returns: "void" },
  lw_recv: { args: ["i32", "ptr", "i32", "ptr", "ptr"], returns: "i32" },
  lw_recv_fds: { args: ["i32", "ptr", "i32", "ptr", "i32", "ptr"], returns: "i32" },
  lw_peercred: { args: ["i32", "buffer"], returns: "i32" },
  lw_selfcred: { args: ["buffer"], returns: "i32" },
  lw_wait_readable: { args: ["i32", "i32"], returns: "i32" },
  lw_fd_is_open: { args: ["i32"], returns: "i32" },
  lw_fd_cloexec: { args: ["i32"], returns: "i32" },
  lw_poller_new: { args: ["i32", "ptr"], returns: "ptr" },
  lw_poller_arm: { args: ["ptr", "i32", "i32", "i32"], returns: "i32" },
  lw_poller_remove: { args: ["ptr", "i32"], returns: "i32" },
  lw_poller_take: { args: ["ptr", "buffer", "i32"], returns: "i32" },
  lw_poller_wakes: { args: ["ptr"], returns: "f64" },
  lw_poller_free: { args: ["ptr"], returns: "void" },
  // inherited listening sockets (lib/transport/systemd.ts)
  lw_sock_info: { args: ["i32", "buffer"], returns: "i32" },
  lw_fd_set_cloexec: { args: ["i32"], returns: "i32" },
  // sealed memfds (lib/transport/shm.ts)
  lw_memfd_create: { args: ["buffer", "i32"], returns: "i32" },
  lw_ftruncate: { args: ["i32", "f64"], returns: "i32" },
  lw_add_seals: { args: ["i32", "i32"], returns: "i32" },
  lw_get_seals: { args: ["i32"], returns: "i32" },
  lw_fd_size: { args: ["i32"], returns: "f64" },
  lw_pwrite_all: { args: ["i32", "buffer", "f64", "f64"], returns: "i32" },
  lw_madvise: { args: ["ptr", "f64", "i32"], returns: "i32" },
  // buffers for large messages (lib/native/big.ts)
  lw_big_alloc: { args: ["f64", "i32", "buffer"], returns: "ptr" },
  lw_big_free_fn: { args: [], returns: "ptr" },
  lw_big_mapped: { args: ["buffer"], returns: "f64" },
  lw_big_trim: { args: [], returns: "f64" },
  lw_peer_pidfd: { args: ["i32"], returns: "i32" },
  lw_pidfd_alive: { args: ["i32"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

function systemBuild(): string | null {
  // The same builder npm's postinstall ran; imported lazily (plain .mjs).
  try {
    const { spawnSync } = require("node:child_process") as typeof import("node:child_process");
    const r = spawnSync(process.execPath, [join(nativeDir, "build.mjs")], { encoding: "utf8" });
    if (r.status === 0 && existsSync(libPath)) return null;
    return (r.stderr || r.stdout || "").trim() || "build failed";
  } catch (e) {
    return String(e);
  }
}

function load() {
  const errors: string[] = [];
  const fresh = existsSync(libPath) && statSync(libPath).mtimeMs >= statSync(source).mtimeMs;
  if (!fresh) {
    const err = systemBuild();
    if (err) errors.push(`system compiler: ${err}`);
  }
  if (existsSync(libPath)) {
    try {
      return { lib: dlopen(libPath, symbols), how: "dlopen" as const };
    } catch (e) {
      errors.push(`dlopen ${libPath}: ${(e as Error).message}`);
    }
  }
  try {
    // TinyCC fallback: needs libc headers at run time, no separate compiler.
    return { lib: cc({ source, symbols, library: ["pthread"] }), how: "tcc" as const };
  } catch (e) {
    errors.push(`bun:ffi cc: ${(e as Error).message}`);
  }
  throw new Error(
    `bun-lwmsg: cannot load its native shim.\n  ${errors.join("\n  ")}\n` +
      `Install a C compiler and the libc headers (Debian/Ubuntu: apt-get install gcc libc6-dev; ` +
      `Alpine: apk add build-base), then run \`npm run build:native\`.`,
  );
}

const loaded = load();
/** The shim's functions (see native/shim.c for each contract: >= 0 ok, -errno on failure). */
export const native = loaded.lib.symbols;
/** How the shim was loaded: a prebuilt/system-built library, or TinyCC at import. */
export const nativeLoadedBy = loaded.how;
/** Source text of the shim, for diagnostics. */
export const shimSourcePath = source;
export function shimSource(): string {
  return readFileSync(source, "utf8");
}
