export {};
// `bun run bench [codec|poller|connection|peer ...] [--quick]`: every figure is a ratio
// against a baseline measured in the same run (see each bench file).
const all = ["codec", "poller", "connection", "peer"] as const;
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const picked = args.filter((a) => !a.startsWith("--"));
const which = picked.length ? picked : [...all];

for (const name of which) {
  if (!(all as readonly string[]).includes(name)) {
    console.error(`unknown bench "${name}"; choose from ${all.join(", ")}`);
    process.exit(2);
  }
  console.log(`\n=== ${name} ===`);
  const mod = await import(`./${name}.bench.ts`);
  const fn = mod[`run${name[0]!.toUpperCase()}${name.slice(1)}Bench`];
  if (typeof fn !== "function") {
    console.log(`(bench/${name}.bench.ts has no run function yet)`);
    continue;
  }
  await fn({ quick });
}
