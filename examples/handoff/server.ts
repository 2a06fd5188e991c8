/**
 * A server that restarts without failing a call: on SIGHUP it starts its
 * successor (this same program) with its listening socket as fd 3 (systemd's
 * LISTEN_FDS rules), waits for the successor's "ready" line, then drains —
 * the calls it is running finish and reply, the requests it has not started
 * go back to their clients with SHUTDOWN(AGAIN), and the clients send them to
 * the successor. SIGTERM/SIGINT drain without a successor.
 *
 *   bun examples/handoff/server.ts --socket PATH [--log DIR] [--pidfile FILE]
 *
 * With --log, each server writes the ids it ran to DIR/<pid>.ids (JSON) as it
 * exits; with --pidfile, a server that is ready writes its pid there (the
 * running one is the one to send SIGHUP to).
 * @module
 */
import { renameSync, writeFileSync } from "node:fs";
import { ConnectionMode } from "../../lib/connection.ts";
import { closeFd } from "../../lib/native/socket.ts";
import { Peer } from "../../lib/peer.ts";
import { listenFds } from "../../lib/transport/systemd.ts";
import { handoffProtocol } from "./protocol.ts";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const socketPath = arg("--socket");
const logDir = arg("--log");
const pidFile = arg("--pidfile");
if (!socketPath) {
  console.error("usage: bun examples/handoff/server.ts --socket PATH [--log DIR] [--pidfile FILE]");
  process.exit(2);
}

const ran: number[] = [];
const server = new Peer(handoffProtocol, { timeouts: { establish: 5000 } });
server.addDispatch({
  RUN_REQ: async ({ id, delayMs }) => {
    ran.push(id); // recorded when it starts to run: a call run twice would show twice
    if (delayMs > 0) await Bun.sleep(delayMs);
    return { tag: "RUN_RES", data: { id, pid: process.pid, count: ran.length } };
  },
});

const inherited = listenFds(); // our predecessor's socket, or [] on a first start
if (inherited.length > 0) server.addListenFd(ConnectionMode.LOCAL, inherited[0]!.fd);
else server.addListenEndpoint(ConnectionMode.LOCAL, socketPath, 0o600);
await server.startListen();

if (pidFile) {
  writeFileSync(`${pidFile}.tmp`, String(process.pid));
  renameSync(`${pidFile}.tmp`, pidFile);
}
console.log("ready"); // the predecessor (if any) waits for this line; nothing more goes to stdout

let leaving = false;

/** Start the successor on our listening socket; resolves once it is ready to serve. */
async function startSuccessor(): Promise<void> {
  const [listening] = server.handOffListenFds(); // from here on, our exit leaves the socket file alone
  try {
    // LISTEN_PID must be the successor's pid: the shell sets it to its own ($$) and execs bun in place.
    const child = Bun.spawn(["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, import.meta.path, ...process.argv.slice(2)], {
      stdio: ["ignore", "pipe", "inherit", listening!.fd],
      env: { ...process.env, LISTEN_FDS: "1", LISTEN_FDNAMES: "handoff" },
    });
    const reader = child.stdout.getReader();
    let text = "";
    while (!text.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`successor exited before it was ready (${await child.exited})`);
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    child.unref();
  } finally {
    closeFd(listening!.fd); // the successor has its own copy
  }
}

async function leave(successor: boolean): Promise<void> {
  if (leaving) return;
  leaving = true;
  try {
    if (successor) await startSuccessor();
  } catch (e) {
    console.error(`handoff: ${(e as Error).message}; staying`);
    leaving = false;
    return;
  }
  const clean = await server.drain();
  if (!clean) console.error("handoff: drain timed out; the calls left were cancelled");
  await server.close();
  if (logDir) writeFileSync(`${logDir}/${process.pid}.ids`, JSON.stringify(ran));
  process.exit(0);
}

process.on("SIGHUP", () => void leave(true));
process.on("SIGTERM", () => void leave(false));
process.on("SIGINT", () => void leave(false));
