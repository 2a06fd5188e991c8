/**
 * `--protocol MODULE`: load a protocol from a TypeScript/JavaScript module —
 * its default export if that is a protocol, else its only exported
 * protocol. `MODULE#name` picks a named export.
 * @module
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Protocol } from "../../lib/index.ts";
import { UsageError } from "./args.ts";

function isProtocol(v: unknown): v is Protocol<any> {
  return !!v && typeof v === "object" && typeof (v as Protocol).byTag === "function" && typeof (v as Protocol).entries === "function";
}

/** Import `spec` (`path` or `path#export`) and return its protocol; a UsageError says what the module exports otherwise. */
export async function loadProtocol(spec: string): Promise<Protocol<any>> {
  const hash = spec.lastIndexOf("#");
  const file = hash > 0 ? spec.slice(0, hash) : spec;
  const name = hash > 0 ? spec.slice(hash + 1) : null;
  let mod: Record<string, unknown>;
  try {
    mod = await import(pathToFileURL(resolve(file)).href);
  } catch (e) {
    throw new UsageError(`cannot load protocol module ${file}: ${(e as Error).message}`);
  }
  if (name !== null) {
    if (!isProtocol(mod[name])) throw new UsageError(`${file} has no exported protocol named ${name}`);
    return mod[name];
  }
  if (isProtocol(mod.default)) return mod.default;
  const found = Object.entries(mod).filter(([, v]) => isProtocol(v));
  if (found.length === 1) return found[0]![1] as Protocol<any>;
  if (found.length === 0) throw new UsageError(`${file} exports no Lw.Protocol (export one, as default or by name)`);
  throw new UsageError(`${file} exports several protocols (${found.map(([k]) => k).join(", ")}): pick one with ${file}#NAME`);
}
