/**
 * Calls the hand-off server in a loop, each call with a new id, and counts
 * what failed. Restart the server (SIGHUP) while it runs: nothing should.
 *
 *   bun examples/handoff/client.ts PATH [CONCURRENCY]     (Ctrl-C prints the totals)
 * @module
 */
import { ConnectionMode } from "../../lib/connection.ts";
import { Peer } from "../../lib/peer.ts";
import { handoffProtocol } from "./protocol.ts";

export interface LoopResult {
  /** Ids answered, in the order the replies came. */
  readonly ok: number[];
  readonly failed: { id: number; error: string }[];
}

/** Run `concurrency` callers, ids 1, 2, …, until `stop` aborts; each call asks the server to take up to `maxDelayMs`. */
export async function callLoop(path: string, options: { stop: AbortSignal; concurrency?: number; maxDelayMs?: number; onReply?: (id: number) => void }): Promise<LoopResult> {
  const client = new Peer(handoffProtocol);
  client.addConnectEndpoint(ConnectionMode.LOCAL, path);
  const session = await client.connect();
  const ok: number[] = [];
  const failed: { id: number; error: string }[] = [];
  let next = 1;
  const worker = async () => {
    while (!options.stop.aborted) {
      const id = next++;
      try {
        const r = await session.call({ tag: "RUN_REQ", data: { id, delayMs: id % ((options.maxDelayMs ?? 3) + 1) } }, { timeout: 10_000 });
        ok.push(r.data.id);
        options.onReply?.(r.data.id);
      } catch (e) {
        failed.push({ id, error: (e as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 4 }, worker));
  await client.close();
  return { ok, failed };
}

if (import.meta.main) {
  const path = process.argv[2];
  if (!path) {
    console.error("usage: bun examples/handoff/client.ts SOCKET_PATH [CONCURRENCY]");
    process.exit(2);
  }
  const stop = new AbortController();
  process.on("SIGINT", () => stop.abort());
  const { ok, failed } = await callLoop(path, { stop: stop.signal, concurrency: Number(process.argv[3] ?? 4) });
  console.log(`${ok.length} calls answered, ${failed.length} failed`);
  for (const f of failed.slice(0, 10)) console.log(`  id ${f.id}: ${f.error}`);
}
