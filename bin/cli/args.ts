/**
 * A small argv parser for `bun-lwmsg`: positionals, `--flag`, `--opt value`
 * and `--opt=value`. Unknown options are a usage error (exit code 2).
 * @module
 */

/** A command-line mistake: printed with the usage text, exit code 2. */
export class UsageError extends Error {}

export interface Parsed {
  positionals: string[];
  options: Map<string, string>;
  flags: Set<string>;
}

/** Parse `argv` given which options take a value and which are bare flags. */
export function parseArgs(argv: string[], valued: readonly string[], bare: readonly string[]): Parsed {
  const positionals: string[] = [];
  const options = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("--") || a === "-") {
      if (a === "-h") flags.add("help");
      else positionals.push(a);
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (bare.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      flags.add(name);
    } else if (valued.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      options.set(name, v);
    } else throw new UsageError(`unknown option --${name}`);
  }
  return { positionals, options, flags };
}
