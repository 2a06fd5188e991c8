// Every ```ts block in README.md runs as a real program (imports of "bun-lwmsg" point at lib/).
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./helpers/tmp.ts";

const root = join(import.meta.dir, "..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);

test("README has examples", () => {
  expect(blocks.length).toBeGreaterThan(0);
});

blocks.forEach((code, i) => {
  test(`README example ${i + 1} runs`, async () => {
    using dir = tempDir("readme-");
    const file = join(dir.path, `example-${i + 1}.ts`);
    writeFileSync(file, code.replaceAll('from "bun-lwmsg"', `from ${JSON.stringify(join(root, "lib/index.ts"))}`));
    const proc = Bun.spawn([process.execPath, file], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code_] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code_ !== 0) throw new Error(`example ${i + 1} exited ${code_}:\n${err}`);
    if (code.includes("ConnectionMode.REMOTE")) expect(out).toBe("42\n");
    else if (code.includes("ConnectionMode.DIRECT")) expect(out).toBe("3 local\n");
    else if (code.includes("ADD_REQ")) expect(out).toContain("[ 11, 12, 13 ]");
    if (code.includes("keepBytes")) expect(out).toBe("8388608 7\n8388608\n[ 1, 2, 3 ]\n");
    if (code.includes("WHOAMI_REQ")) {
      expect(out).toContain(`server saw euid ${process.geteuid!()}`);
      expect(out).toContain("refused: SECURITY");
    }
    if (code.includes("e.status === Status.PEER_CLOSE")) {
      expect(out).toMatch(/^PEER_CLOSE: /m); // the message names the status itself
      expect(out).toContain("is LWMSG_STATUS_PEER_CLOSE");
    }
    if (code.includes("dupFd(0)")) {
      expect(out).toContain("received -1 null");
      expect(out).toContain("same file as our stdin: true");
      expect(out).toContain("welcome");
      expect(out).toContain("the server kept 1 fd");
    }
    if (code.includes("mapSealedMemfd")) expect(out).toContain("8388608 true");
    if (code.includes("listenFds()")) expect(out).toContain("not socket-activated: bound our own socket");
    if (code.includes("new Archive(")) expect(out).toBe('NOTE (1): struct Note\nNOTE {\n    id = 7\n    text = "hello"\n}\nTICK\nEOF\n');
    if (i === 0) {
      expect(out).toContain("hello, fd");
      expect(out).toContain(`pid: ${proc.pid}`); // PAIR tokens carry the process's own pid
    }
  });
});
