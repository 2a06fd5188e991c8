/** What every bench result file records about the machine, and how it is written. */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release, type } from "node:os";
import { dirname } from "node:path";

export interface Machine {
  cpus: number;
  model: string;
  kernel: string;
}

/** CPU count and model, and the kernel (`uname -sr`, e.g. "Linux 6.8.0"). */
export function machineInfo(): Machine {
  const cpu = cpus();
  return { cpus: cpu.length, model: cpu[0]?.model ?? "?", kernel: `${type()} ${release()}` };
}

/** Write `obj` as indented JSON to `path`, creating its directory. */
export function writeResults(path: string, obj: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(obj, null, 2) + "\n");
}
