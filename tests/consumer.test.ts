// bun-lwmsg as a dependency: the packed tarball (what `npm publish` would
// ship) installed into a new app with install scripts skipped, as npm 11 may
// do. The shim is then built at first import with the system compiler, or by
// bun:ffi's TinyCC when there is none; and the library's own .ts files pass
// a consumer's strict type-check (they are compiled with the app's settings).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./helpers/tmp.ts";

const root = join(import.meta.dir, "..");
const tmp = tempDir("consumer-");
const app = tmp.join("app");
const installed = join(app, "node_modules", "bun-lwmsg");
let tarball = "";

async function run(cmd: string[], opts: { cwd: string; env?: Record<string, string | undefined> }): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, { cwd: opts.cwd, env: opts.env ?? process.env, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

beforeAll(async () => {
  const pack = await run(["npm", "pack", "--pack-destination", tmp.path], { cwd: root });
  if (pack.code !== 0) throw new Error(`npm pack failed: ${pack.err}`);
  tarball = join(tmp.path, pack.out.trim().split("\n").pop()!);
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "lwmsg-consumer", private: true, type: "module" }));
  // --prefer-offline: the peer dependency (@sinclair/typebox) comes from npm's cache when the project's own install put it there.
  const inst = await run(["npm", "install", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--no-package-lock", tarball], { cwd: app });
  if (inst.code !== 0) throw new Error(`npm install of the tarball failed: ${inst.err}`);
  // What `npm i -D @types/bun` would bring, taken from this project's own install.
  for (const dep of ["bun-types", "@types/node", "undici-types"]) {
    const to = join(app, "node_modules", dep);
    if (!existsSync(to)) {
      mkdirSync(join(to, ".."), { recursive: true });
      symlinkSync(join(root, "node_modules", dep), to);
    }
  }
}, 60_000);
afterAll(() => tmp.remove());

test("the tarball carries the sources, SECURITY.md and no shim built on the packer's machine", async () => {
  const list = await run(["tar", "tzf", tarball], { cwd: tmp.path });
  const files = list.out.split("\n").filter(Boolean);
  expect(files).toContain("package/native/shim.c");
  expect(files).toContain("package/native/build.mjs");
  expect(files).toContain("package/lib/index.ts");
  expect(files).toContain("package/SECURITY.md");
  expect(files.filter((f) => f.includes("native/build/"))).toEqual([]);
  expect(files.filter((f) => f.startsWith("package/tests/"))).toEqual([]);
  expect(existsSync(join(installed, "native", "build", "liblwmsg_shim.so"))).toBe(false); // postinstall was skipped
});

// An app's first program: a socketpair, a message with an fd, the fd read back.
const program = `
import { openSync, readFileSync, writeFileSync } from "node:fs";
import { Lw, Connection } from "bun-lwmsg";
import { nativeLoadedBy } from "./node_modules/bun-lwmsg/lib/native/ffi.ts";
const protocol = Lw.Protocol({ FILE: [0, Lw.Struct({ fd: Lw.Fd() })] });
writeFileSync("note.txt", "passed by fd");
const [a, b] = await Connection.pair(protocol);
await a.send({ tag: "FILE", data: { fd: openSync("note.txt", "r") } });
using m = await b.recv();
console.log(JSON.stringify({ loadedBy: nativeLoadedBy, text: readFileSync(m.data.fd, "utf8") }));
await a.close();
await b.close();
`;

describe("first import from the installed tarball (postinstall skipped)", () => {
  test("no C compiler on PATH: TinyCC compiles the shim in-process and it serves", async () => {
    writeFileSync(join(app, "first.ts"), program);
    const { CC: _cc, ...env } = process.env;
    const r = await run([process.execPath, "first.ts"], { cwd: app, env: { ...env, PATH: "/nonexistent" } });
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ loadedBy: "tcc", text: "passed by fd" });
    expect(existsSync(join(installed, "native", "build", "liblwmsg_shim.so"))).toBe(false);
  });

  test("with a C compiler: the first import builds native/build/liblwmsg_shim.so and loads it", async () => {
    const r = await run([process.execPath, "first.ts"], { cwd: app });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ loadedBy: "dlopen", text: "passed by fd" });
    expect(existsSync(join(installed, "native", "build", "liblwmsg_shim.so"))).toBe(true);
  });
});

/**
 * A consumer's tsconfig: `bun init`'s strict settings plus the two that
 * catch most libraries out. The library ships .ts sources, so they are
 * checked with these settings (skipLibCheck only skips .d.ts files).
 */
function consumerConfig(moduleResolution: "bundler" | "nodenext") {
  return {
    compilerOptions: {
      lib: ["ESNext"],
      target: "ESNext",
      module: moduleResolution === "bundler" ? "Preserve" : "NodeNext",
      moduleResolution,
      types: ["bun-types"],
      allowImportingTsExtensions: true,
      verbatimModuleSyntax: true,
      noEmit: true,
      strict: true,
      skipLibCheck: true,
      noFallthroughCasesInSwitch: true,
      noUncheckedIndexedAccess: true,
      noImplicitOverride: true,
      exactOptionalPropertyTypes: true,
      noPropertyAccessFromIndexSignature: true,
    },
    files: ["check.ts"],
  };
}

test("the library type-checks inside an app with exactOptionalPropertyTypes and noPropertyAccessFromIndexSignature (bundler and nodenext)", async () => {
  writeFileSync(
    join(app, "check.ts"),
    `import { Lw, Peer, ConnectionMode, LwMsgError, Status, authorize, sameUser, listenFds, mapSealedMemfd } from "bun-lwmsg";
const protocol = Lw.Protocol({ REQ: [0, Lw.Struct({ a: Lw.Int32() })], RES: [1, Lw.Int32()] });
const server = new Peer(protocol, { maxClients: 4 });
server.onSession(authorize(sameUser()));
server.addDispatch({ REQ: ({ a }) => ({ tag: "RES", data: a + 1 }) });
for (const s of listenFds()) server.addListenFd(ConnectionMode.LOCAL, s.fd);
export const refused = new LwMsgError(Status.SECURITY, "no");
export const map: (fd: number, size: number) => Uint8Array = mapSealedMemfd;
`,
  );
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  const results = await Promise.all(
    (["bundler", "nodenext"] as const).map(async (mode) => {
      writeFileSync(join(app, `tsconfig.${mode}.json`), JSON.stringify(consumerConfig(mode)));
      const r = await run(["node", tsc, "-p", `tsconfig.${mode}.json`], { cwd: app });
      return `${mode}: exit ${r.code}\n${r.out}${r.err}`;
    }),
  );
  expect(results).toEqual(["bundler: exit 0\n", "nodenext: exit 0\n"]);
}, 60_000);
