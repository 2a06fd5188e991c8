/**
 * fsink: write stdin to a file through the file server
 * (`example/fserv/src/fsink.c`). As in the C example the file must exist and
 * the caller needs write permission on it; it is written from the start
 * (`--append` opens it with OPEN_MODE_APPEND instead).
 *
 *   bun examples/fserv/fsink.ts [--socket PATH] [--append] FILE < data
 * @module
 */
import { FservClient, FservError } from "./client.ts";
import { OPEN_MODE, parseSocketArg } from "./protocol.ts";

export async function fsink(client: FservClient, path: string, input: AsyncIterable<Uint8Array>, append = false): Promise<number> {
  const file = await client.open(path, OPEN_MODE.WRITE | (append ? OPEN_MODE.APPEND : 0));
  let total = 0;
  try {
    for await (const chunk of input) {
      // 2048-byte writes, like the C program.
      for (let off = 0; off < chunk.length; off += 2048) {
        const part = chunk.subarray(off, Math.min(chunk.length, off + 2048));
        await client.write(file, part);
        total += part.length;
      }
    }
  } finally {
    await client.close(file);
  }
  return total;
}

if (import.meta.main) {
  const { socketPath, rest, flags } = parseSocketArg(process.argv.slice(2));
  if (rest.length !== 1) {
    console.error("usage: fsink [--socket PATH] [--append] FILE < data");
    process.exit(2);
  }
  const client = new FservClient(socketPath);
  let code = 0;
  try {
    await fsink(client, rest[0]!, Bun.stdin.stream() as unknown as AsyncIterable<Uint8Array>, flags.has("append"));
  } catch (e) {
    console.error(`fsink: ${e instanceof FservError ? e.message : (e as Error).message}`);
    code = 1;
  }
  await client.disconnect();
  process.exit(code);
}
