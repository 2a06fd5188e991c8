// examples/remote: a TLS server and client with mutual authentication, run as real processes.
import { expect, test } from "bun:test";

const dir = new URL("../examples/remote/", import.meta.url).pathname;

test("examples/remote: the client (CN=client) is admitted over mutual TLS, sees its own subject, adds, and verified the server", async () => {
  const server = Bun.spawn([process.execPath, dir + "server.ts", "127.0.0.1:0"], { stdout: "pipe", stderr: "inherit" });
  try {
    const reader = server.stdout.getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("server ended before listening");
      text += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const m = /listening on (\S+)/.exec(text);
    expect(m).not.toBeNull();
    const client = Bun.spawn([process.execPath, dir + "client.ts", m![1]!], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(client.stdout).text(), new Response(client.stderr).text(), client.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toBe("server sees me as CN=client\n40 + 2 = 42\nserver certificate: CN=localhost (verified: true)\n");
  } finally {
    server.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  }
});
