// The hand-off example (issue 15 item 6), with real processes: a server
// restarted 20 times in a row by SIGHUP — each time it starts its successor
// on its listening socket and drains — while a client calls in a loop. No
// call may fail, every id must run exactly once, and the client's fds and
// memory must not grow across the restarts.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { callLoop } from "../examples/handoff/client.ts";
import { openFdCount } from "./helpers/fds.ts";
import { tempDir } from "./helpers/tmp.ts";

const RESTARTS = 20;
const serverScript = join(import.meta.dir, "..", "examples", "handoff", "server.ts");
const tmp = tempDir("handoff-");
const pidFile = tmp.join("server.pid");
let lastPid = 0;
afterAll(() => {
  if (lastPid > 0 && alive(lastPid)) process.kill(lastPid, "SIGKILL");
  tmp.remove();
});

/** Running (not exited): a server whose parent (its predecessor) has gone is reaped by init, maybe late, so a zombie counts as exited. */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0] !== "Z";
  } catch {
    return false;
  }
}

function currentPid(): number {
  return existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : 0;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const limit = Date.now() + 15_000; // a hang fails with a message, not a test timeout
  while (!cond()) {
    if (Date.now() > limit) throw new Error(`gave up waiting for ${what}`);
    await Bun.sleep(5);
  }
}

function heapMiB(): number {
  Bun.gc(true);
  return process.memoryUsage().heapUsed / 2 ** 20;
}

test(`${RESTARTS} restarts by socket hand-off under a calling client: 0 failed, each id run once, no fd or memory growth`, async () => {
  const path = tmp.join("s.sock");
  const v1 = Bun.spawn([process.execPath, serverScript, "--socket", path, "--log", tmp.path, "--pidfile", pidFile], { stdio: ["ignore", "ignore", "inherit"] });
  v1.unref();
  await until(() => currentPid() === v1.pid, "the first server");
  lastPid = v1.pid;

  const stop = new AbortController();
  let answered = 0;
  const loop = callLoop(path, { stop: stop.signal, concurrency: 4, maxDelayMs: 3, onReply: () => answered++ });
  const fds: number[] = [];
  const heap: number[] = [];
  const pids = [v1.pid];
  for (let i = 0; i < RESTARTS; i++) {
    const old = currentPid();
    const before = answered;
    await until(() => answered >= before + 50, "calls on the current server");
    process.kill(old, "SIGHUP");
    await until(() => currentPid() !== old, `the successor of ${old}`);
    lastPid = currentPid();
    pids.push(lastPid);
    await until(() => existsSync(join(tmp.path, `${old}.ids`)), `server ${old} to drain`);
    await until(() => !alive(old), `server ${old} to exit`);
    const after = answered;
    await until(() => answered >= after + 50, "calls on the successor");
    fds.push(openFdCount());
    if (i === 4 || i === RESTARTS - 1) heap.push(heapMiB());
  }
  stop.abort();
  const { ok, failed } = await loop;
  process.kill(lastPid, "SIGTERM");
  await until(() => existsSync(join(tmp.path, `${lastPid}.ids`)), "the last server to exit");

  const ran = readdirSync(tmp.path)
    .filter((f) => f.endsWith(".ids"))
    .flatMap((f) => JSON.parse(readFileSync(join(tmp.path, f), "utf8")) as number[]);
  const runs = new Map<number, number>();
  for (const id of ran) runs.set(id, (runs.get(id) ?? 0) + 1);
  const twice = [...runs].filter(([, n]) => n > 1).map(([id]) => id);
  console.log(`hand-off: ${RESTARTS} restarts, ${ok.length} calls answered, ${failed.length} failed, ${ran.length} runs, ${twice.length} run twice; client fds per restart ${fds.join(",")}; heap ${heap.map((h) => h.toFixed(1)).join(" → ")} MiB`);

  expect(failed).toEqual([]);
  expect(twice).toEqual([]);
  expect(new Set(pids).size).toBe(RESTARTS + 1);
  expect(ok.length).toBeGreaterThan(RESTARTS * 100);
  // Every answered call ran exactly once, and nothing ran that was not answered.
  expect([...runs.keys()].sort((a, b) => a - b)).toEqual([...ok].sort((a, b) => a - b));
  expect(Math.max(...fds.slice(1))).toBeLessThanOrEqual(fds[0]!);
  expect(heap[1]! - heap[0]!).toBeLessThan(4);
}, 60_000);
