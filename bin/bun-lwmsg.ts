#!/usr/bin/env bun
/**
 * `bun-lwmsg`: look at and talk to lwmsg services from a shell.
 *
 *   bun-lwmsg dump FILE [--protocol MODULE] [--json]
 *   bun-lwmsg call SOCKET TAG JSON --protocol MODULE [--fd FILE] [--json] [--timeout MS]
 *   bun-lwmsg record --listen SOCKET --connect SOCKET --out FILE [--protocol MODULE] [--mode OCTAL] [--quiet]
 *
 * Exit codes: 0 success; 1 an lwmsg error (its status is printed) or a call
 * whose reply has a non-SUCCESS status; 2 a usage error.
 * @module
 */
import { LwMsgError, type Protocol } from "../lib/index.ts";
import { parseArgs, UsageError } from "./cli/args.ts";
import { loadProtocol } from "./cli/protocol-module.ts";
import { dump } from "./cli/dump.ts";
import { call } from "./cli/call.ts";
import { startRecorder } from "./cli/record.ts";

export const HELP = `bun-lwmsg — look at and talk to lwmsg services

Usage:
  bun-lwmsg dump FILE [--protocol MODULE] [--json]
      Print an lwmsg archive (LWMA file): its schema, then every message in
      lwmsg's data-print format. The file's own schema is used when it has
      one; --protocol supplies (or is checked against) the message types.
      --json prints one JSON object per line, lossless: 64-bit integers as
      {"$bigint":"…"}, bytes as {"$bytes":"<base64>"}.

  bun-lwmsg call SOCKET TAG JSON --protocol MODULE [--fd FILE] [--json] [--timeout MS]
      Connect to SOCKET, send one TAG message (a name or number) with JSON as
      its payload, print the reply. --fd FILE sends FILE's descriptor in the
      request's fd fields ("$fd" or left out). Fds in the reply are listed.
      64-bit fields take numbers or strings, enums their names ("READ | WRITE");
      --timeout defaults to 10000 ms.

  bun-lwmsg record --listen SOCKET --connect SOCKET --out FILE [--protocol MODULE] [--mode OCTAL] [--quiet]
      A recording man in the middle: accept clients on --listen, connect each
      to the real server at --connect, forward every message both ways
      unchanged (fds included), print each one (decoded with --protocol,
      else a header and hex), and append them to the archive --out. Runs
      until SIGINT/SIGTERM, then removes its socket and closes the archive.

  --protocol MODULE   a .ts/.js module whose default export (or only exported
                      Lw.Protocol) is the protocol; MODULE#NAME picks an export
  -h, --help          this text

Exit codes: 0 success; 1 an lwmsg error (status printed) or a reply with a
non-SUCCESS status; 2 usage error.
`;

const out = (s: string): void => void process.stdout.write(s);
/** Write, waiting for the pipe to drain when it is full (so dumping a huge archive into `less` stays in bounded memory). */
const outPaced = (s: string): void | Promise<void> => {
  if (process.stdout.write(s)) return;
  return new Promise((resolve) => process.stdout.once("drain", () => resolve()));
};
const err = (s: string) => process.stderr.write(s);

async function protocolOpt(spec: string | undefined): Promise<Protocol<any> | null> {
  return spec === undefined ? null : loadProtocol(spec);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    out(HELP);
    return cmd === undefined ? 2 : 0;
  }
  switch (cmd) {
    case "dump": {
      const a = parseArgs(rest, ["protocol"], ["json", "help"]);
      if (a.flags.has("help")) return out(HELP), 0;
      if (a.positionals.length !== 1) throw new UsageError("dump needs exactly one FILE");
      await dump(a.positionals[0]!, await protocolOpt(a.options.get("protocol")), a.flags.has("json"), outPaced);
      return 0;
    }
    case "call": {
      const a = parseArgs(rest, ["protocol", "fd", "timeout"], ["json", "help"]);
      if (a.flags.has("help")) return out(HELP), 0;
      if (a.positionals.length !== 3) throw new UsageError("call needs SOCKET TAG JSON");
      const spec = a.options.get("protocol");
      if (spec === undefined) throw new UsageError("call needs --protocol MODULE");
      const timeoutMs = Number(a.options.get("timeout") ?? 10_000);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError("--timeout must be a positive number of milliseconds");
      const [path, tag, json] = a.positionals as [string, string, string];
      return call({ path, tag, json, protocol: (await loadProtocol(spec))!, fdFile: a.options.get("fd") ?? null, jsonOut: a.flags.has("json"), timeoutMs }, out);
    }
    case "record": {
      const a = parseArgs(rest, ["listen", "connect", "out", "protocol", "mode"], ["quiet", "help"]);
      if (a.flags.has("help")) return out(HELP), 0;
      const listen = a.options.get("listen");
      const connect = a.options.get("connect");
      const file = a.options.get("out");
      if (!listen || !connect || !file) throw new UsageError("record needs --listen SOCKET --connect SOCKET --out FILE");
      if (a.positionals.length) throw new UsageError(`record takes no positional arguments (got ${a.positionals.join(" ")})`);
      const mode = a.options.has("mode") ? parseInt(a.options.get("mode")!, 8) : 0o600;
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new UsageError("--mode must be an octal permission like 600");
      const rec = await startRecorder({ listen, connect, out: file, protocol: await protocolOpt(a.options.get("protocol")), mode, quiet: a.flags.has("quiet") }, out, err);
      err(`bun-lwmsg record: listening on ${listen}, forwarding to ${connect}, recording to ${file} (Ctrl-C to stop)\n`);
      const stop = () => void rec.stop();
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      await rec.done;
      return 0;
    }
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

if (import.meta.main) {
  // `bun-lwmsg dump big.lwma | head`: a closed pipe ends the program quietly
  process.stdout.on("error", (e: NodeJS.ErrnoException) => process.exit(e.code === "EPIPE" ? 0 : 1));
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      if (e instanceof UsageError) {
        err(`bun-lwmsg: ${e.message}\n\n${HELP}`);
        process.exit(2);
      }
      if (e instanceof LwMsgError) err(`bun-lwmsg: ${e.message}\n`);
      else err(`bun-lwmsg: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
