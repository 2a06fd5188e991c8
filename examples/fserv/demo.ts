/**
 * `npm start`: the file server end to end.
 *
 * 1. starts the fserv server in this process on a socket in a fresh temp dir
 *    (or `FSERV_SOCKET`);
 * 2. writes a sample file;
 * 3. runs `fcat` on it as a child process — a real other process, so the
 *    server authorises it by the credentials the kernel reports for it;
 * 4. prints the file and the credentials the server saw (uid, gid, pid);
 * 5. fetches the file once more through the added fd-passing message
 *    (`fcat --fd`: the server opens it and hands over the descriptor);
 * 6. shows a refused open (a file that does not exist → ENOENT reply);
 * 7. stops the server (the socket file is removed) and exits 0.
 * @module
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFileServer, type OpenEvent } from "./server.ts";

const dir = mkdtempSync(join(tmpdir(), "fserv-demo-"));
const socketPath = process.env.FSERV_SOCKET || join(dir, "fserv.sock");
const sample = join(dir, "hello.txt");
writeFileSync(sample, "Hello from the lwmsg file server!\nThis text travelled as FSERV_READ_RES messages.\n", { mode: 0o644 });

const opens: OpenEvent[] = [];
const server = createFileServer({ socketPath, onOpen: (e) => opens.push(e) });

const fcat = join(import.meta.dir, "fcat.ts");
async function runFcat(...args: string[]): Promise<{ pid: number; code: number; out: string; err: string }> {
  const proc = Bun.spawn([process.execPath, fcat, "--socket", socketPath, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { pid: proc.pid, code, out, err };
}

let failed = false;
function show(title: string, r: { pid: number; code: number; out: string; err: string }, e: OpenEvent | undefined): void {
  console.log(`── ${title} (child pid ${r.pid}, exit ${r.code})`);
  const indent = (text: string, mark: string) => text.replace(/\n$/, "").replace(/^/gm, mark) + "\n";
  if (r.out) process.stdout.write(indent(r.out, "  │ "));
  if (r.err) process.stdout.write(indent(r.err, "  ! "));
  if (e) {
    const t = e.token;
    console.log(`  server saw: uid ${t?.euid} gid ${t?.egid} pid ${t?.pid} → ${e.err === 0 ? "granted" : `refused (errno ${e.err})`} (${e.via}) ${e.path}`);
    if (t?.pid !== r.pid) {
      console.log(`  !! the server saw pid ${t?.pid}, expected the child's ${r.pid}`);
      failed = true;
    }
  }
  console.log();
}

// Whatever fails on the way, the server stops (its socket file goes) and the temp dir is removed.
try {
  await server.start();
  console.log(`fserv listening on ${socketPath} (server pid ${process.pid})\n`);

  const byHandle = await runFcat(sample);
  show("fcat hello.txt (read by handle, 2048-byte FSERV_READ_REQ)", byHandle, opens.at(-1));
  const byFd = await runFcat("--fd", sample);
  show("fcat --fd hello.txt (FSERV_OPEN_FD_REQ: the descriptor itself comes back)", byFd, opens.at(-1));
  const missing = await runFcat(join(dir, "missing.txt"));
  show("fcat missing.txt (refused: the server replies FSERV_ERROR_RES)", missing, opens.at(-1));

  if (byHandle.code !== 0 || byFd.code !== 0 || missing.code === 0 || byHandle.out !== byFd.out) failed = true;
} finally {
  await server.stop();
  const removed = !existsSync(socketPath);
  console.log(`server stopped; socket file ${removed ? "removed" : "STILL THERE"}`);
  rmSync(dir, { recursive: true, force: true });
  if (!removed) failed = true;
}
process.exitCode = failed ? 1 : 0;
