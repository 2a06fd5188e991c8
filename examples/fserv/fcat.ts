/**
 * fcat: print files through the file server (`example/fserv/src/fcat.c`).
 *
 *   bun examples/fserv/fcat.ts [--socket PATH] [--fd] FILE...
 *
 * Reads in 2048-byte requests by handle, like the C program; with `--fd` the
 * server hands over the opened descriptor instead and fcat reads it itself.
 * @module
 */
import { closeSync, readSync, writeSync } from "node:fs";
import { FservClient, FservError } from "./client.ts";
import { OPEN_MODE, parseSocketArg } from "./protocol.ts";

/** write(2) all of `b` to fd 1, riding out a non-blocking pipe. */
function writeOut(b: Uint8Array): void {
  let off = 0;
  while (off < b.length) {
    try {
      off += writeSync(1, b, off, b.length - off);
    } catch (e) {
      if ((e as { code?: string }).code !== "EAGAIN") throw e;
      Bun.sleepSync(1);
    }
  }
}

export async function fcat(client: FservClient, paths: string[], useFd: boolean): Promise<void> {
  for (const path of paths) {
    if (useFd) {
      const fd = await client.openFd(path, OPEN_MODE.READ);
      try {
        const buf = new Uint8Array(65536);
        for (;;) {
          const n = readSync(fd, buf, 0, buf.length, null);
          if (n === 0) break;
          writeOut(buf.subarray(0, n));
        }
      } finally {
        closeSync(fd);
      }
    } else {
      const file = await client.open(path, OPEN_MODE.READ);
      try {
        for (;;) {
          const chunk = await client.read(file, 2048);
          if (chunk.length === 0) break;
          writeOut(chunk);
        }
      } finally {
        await client.close(file);
      }
    }
  }
}

if (import.meta.main) {
  const { socketPath, rest, flags } = parseSocketArg(process.argv.slice(2));
  if (rest.length === 0) {
    console.error("usage: fcat [--socket PATH] [--fd] FILE...");
    process.exit(2);
  }
  const client = new FservClient(socketPath);
  let code = 0;
  try {
    await fcat(client, rest, flags.has("fd"));
  } catch (e) {
    console.error(`fcat: ${e instanceof FservError ? e.message : (e as Error).message}`);
    code = 1;
  }
  await client.disconnect();
  process.exit(code);
}
