/** What every bench result file records about the machine, and how it is written. */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
  return { cpus: cpu.length, model: cpuModel(cpu[0]?.model ?? "?"), kernel: `${type()} ${release()}` };
}

/** The model name, with family/model from /proc/cpuinfo when a VM hides the number (e.g. "AMD EPYC"). */
function cpuModel(name: string): string {
  if (/\d{3,}/.test(name)) return name.trim();
  try {
    const info = readFileSync("/proc/cpuinfo", "utf8");
    const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
    const model = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    if (family && model) return `${name.trim()} (family ${family}, model ${model})`;
  } catch {
    // not Linux: the name is all there is
  }
  return name.trim();
}

/** Write `obj` as indented JSON to `path`, creating its directory. */
export function writeResults(path: string, obj: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(obj, null, 2) + "\n");
}
