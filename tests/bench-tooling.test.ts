// The bench's tooling, not its figures (no timing here): the peer bench's
// baseline servers really echo (a gRPC server and Bun IPC children, as real
// child processes), comparisons pair runs by index, the chart and the README
// table render what the results file holds, and README.md's generated part
// points at a chart that exists.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { ECHO_PROTO_PACKAGE } from "../bench/fixtures/grpc-echo.ts";
import { compare, runRatios, targetMet } from "../bench/lib/compare.ts";
import { readmeMarkdown, spliceReadme, README_BEGIN, README_END, type BenchRun } from "../bench/lib/report.ts";
import { renderChart } from "../bench/chart.ts";
import { expectNoFdLeak } from "./helpers/fds.ts";
import { tempDir } from "./helpers/tmp.ts";

const root = join(import.meta.dir, "..");
const FOO = { a: 1, b: 4294967295, s: "abcdefghijklmnopqrstuvwxyz012345" };

describe("peer bench baselines echo the FOO record", () => {
  test("gRPC: @grpc/grpc-js server in a child, unary call over a unix socket", async () => {
    using dir = tempDir("grpc-");
    const path = dir.join("g.sock");
    const child = Bun.spawn([process.execPath, join(root, "bench/fixtures/grpc-server.ts"), path], { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = child.stdout.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toContain("ready");
      reader.releaseLock();
      const client = new ECHO_PROTO_PACKAGE.Echo(`unix://${path}`, grpc.credentials.createInsecure());
      try {
        const reply = await new Promise((resolve, reject) =>
          client.Foo(FOO, (err: grpc.ServiceError | null, r: unknown) => (err ? reject(err) : resolve(r))),
        );
        expect(reply).toEqual(FOO);
      } finally {
        client.close();
      }
    } finally {
      child.kill();
      await child.exited;
    }
  });

  for (const serialization of ["json", "advanced"] as const) {
    test(`Bun IPC (${serialization}): the child sends back what it receives and exits on disconnect`, () =>
      expectNoFdLeak(async () => {
        const got: unknown[] = [];
        let wake!: () => void;
        let waiting = new Promise<void>((r) => (wake = r));
        const child = Bun.spawn([process.execPath, join(root, "bench/fixtures/ipc-echo.ts")], {
          stdio: ["ignore", "inherit", "inherit"],
          serialization,
          ipc(m) {
            got.push(m);
            wake();
          },
        });
        await waiting;
        expect(got).toEqual(["ready"]);
        waiting = new Promise<void>((r) => (wake = r));
        child.send({ id: 7, ...FOO });
        await waiting;
        expect(got[1]).toEqual({ id: 7, ...FOO });
        child.disconnect();
        expect(await child.exited).toBe(0);
      }));
  }
});

describe("comparisons", () => {
  test("ratios pair run i with run i and skip runs where either side failed", () => {
    const r = runRatios([10, null, 30, 40], [5, 10, undefined, 20]);
    expect(r.runs).toEqual([2, 2]);
    expect(r.median).toBe(2);
    const c = compare({ bench: "t", case: "c", metric: "calls/s", higherIsBetter: true, baseline: "b", target: { op: ">=", value: 3 } }, [9, 30, 12], [3, 10, 2]);
    expect(c.ratio.runs).toEqual([3, 3, 6]);
    expect(c.ratio).toMatchObject({ median: 3, min: 3, max: 6 });
    expect(c.ours.median).toBe(12);
    expect(targetMet(c)).toBe("yes");
    expect(targetMet({ ...c, target: { op: "<=", value: 1 } })).toBe("NO");
  });
});

function sampleRun(): BenchRun {
  const mk = (baseline: string, ours: number[], base: number[]) =>
    compare({ bench: "peer", case: "peer, 64 calls in flight", metric: "calls/s", higherIsBetter: true, baseline, headline: true, chart: true }, ours, base);
  return {
    date: "2026-12-05T17:00:00.000Z",
    durationSec: 60,
    commit: "abc1234",
    bun: "1.4.4",
    machine: { cpus: 2, model: "Test CPU", kernel: "Linux 6.0", host: "h" },
    options: { quick: false, benches: ["peer"] },
    comparisons: [
      mk("gRPC <unix>", [120_000, 130_000, 125_000], [1_000, 1_040, 1_000]),
      mk('Bun IPC (process.send, "json")', [120_000, 130_000, 125_000], [60_000, 65_000, 50_000]),
      compare({ bench: "peer", case: "peer, 1 call in flight", metric: "p50 µs", higherIsBetter: false, baseline: "gRPC", headline: true }, [30, 31, 32], [200, 210, 190]),
    ],
    errors: [],
    raw: {},
  };
}

describe("chart and README table", () => {
  test("the chart has a bar per figure, each baseline's ratio, escaped labels, and no NaN", () => {
    const svg = renderChart(sampleRun());
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).toContain("gRPC &lt;unix&gt;");
    expect(svg).toContain("Bun IPC (process.send, &quot;json&quot;)");
    expect(svg).toContain("ours 125×"); // median of 120, 125, 130
    expect(svg).toContain("ours 2.00×"); // median of 2, 2, 2.5
    expect(svg.match(/<rect /g)!.length).toBe(1 + 3); // background + ours + two baselines (latency rows are not charted)
    expect(svg).not.toContain("NaN");
    expect(svg).toContain("Test CPU");
  });

  test("the table gives date, CPU, kernel and Bun above it, and every row a ratio with its spread", () => {
    const md = readmeMarkdown(sampleRun());
    const lines = md.split("\n");
    const at = lines.findIndex((l) => l.startsWith("Measured with"));
    const line = lines[at]!;
    const rest = lines.slice(at + 1);
    // the peer cases in words above it
    expect(lines.slice(0, at).join("\n")).toContain("**64 calls in flight** (calls/s, higher is better): 125k calls/s; ours ÷ theirs: 125× gRPC &lt;unix&gt;, 2.00× Bun IPC \"json\".");
    expect(lines.slice(0, at).join("\n")).toContain("**1 call in flight** (p50 latency, lower is better): 31.0 µs; ours ÷ theirs: 0.15× gRPC.");
    for (const s of ["2026-12-05", "Test CPU", "Linux 6.0", "Bun 1.4.4", "abc1234", "2-core"]) expect(line).toContain(s);
    const rows = rest.filter((l) => l.startsWith("| ") && !l.startsWith("| case"));
    expect(rows.length).toBe(3);
    expect(rows.join("\n")).toContain("**125× (120–125)**"); // 120, 125, 125
    expect(rows.join("\n")).toContain("gRPC &lt;unix&gt; 1000 calls/s (1000–1040)");
    expect(rows.join("\n")).toContain("p50 31.0 µs (30.0–32.0)");
    expect(md).toContain("![");
  });

  test("--write-readme replaces only what is between the markers", () => {
    using dir = tempDir("readme-");
    const file = join(dir.path, "README.md");
    writeFileSync(file, `# x\n\nbefore\n${README_BEGIN}\nold table\n${README_END}\nafter\n`);
    expect(spliceReadme(file, "NEW")).toBe(true);
    expect(readFileSync(file, "utf8")).toBe(`# x\n\nbefore\n${README_BEGIN}\nNEW\n${README_END}\nafter\n`);
    writeFileSync(file, "no markers\n");
    expect(spliceReadme(file, "NEW")).toBe(false);
  });

  test("README.md has the generated part, and the chart it shows is committed", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const part = readme.slice(readme.indexOf(README_BEGIN), readme.indexOf(README_END));
    expect(readme.indexOf(README_BEGIN)).toBeGreaterThan(0);
    expect(readme.indexOf(README_END)).toBeGreaterThan(readme.indexOf(README_BEGIN));
    for (const m of part.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)) expect(existsSync(join(root, m[1]!))).toBe(true);
  });
});
