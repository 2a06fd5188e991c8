/**
 * The codec and connection benches' raw results as comparisons
 * (bench/lib/compare.ts); the peer bench makes its own.
 * @module
 */
import type { CodecBenchResult } from "../codec.bench.ts";
import type { ConnectionBenchResult } from "../connection.bench.ts";
import { compare, type Comparison } from "./compare.ts";

const CODEC_BASELINES = ["JSON", "msgpackr", "avsc"] as const;
const CODEC_TARGETS: Record<(typeof CODEC_BASELINES)[number], number> = { JSON: 3, msgpackr: 5, avsc: 2 };

/** Codec round trips: lwmsg against JSON, msgpackr and avsc, per case. Headline: the fastest competitor of each case. */
export function codecComparisons(results: CodecBenchResult[]): Comparison[] {
  const out: Comparison[] = [];
  for (const r of results) {
    const ops = r.opsPerSec as Record<string, number[]>;
    if (!ops.lwmsg) continue;
    const present = CODEC_BASELINES.filter((b) => ops[b]?.length);
    const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1] ?? 0;
    const strongest = present.slice().sort((a, b) => median(ops[b]!) - median(ops[a]!))[0];
    for (const b of present) {
      out.push(
        compare(
          {
            bench: "codec",
            case: `codec ${r.case}, round trip`,
            metric: "ops/s",
            higherIsBetter: true,
            baseline: b,
            target: { op: ">=", value: CODEC_TARGETS[b] },
            headline: b === strongest,
            chart: true,
          },
          ops.lwmsg,
          ops[b]!,
        ),
      );
    }
  }
  return out;
}

type Rated = { rate?: number } | undefined | null;
type Lat = { p50: number; p90: number; p99: number } | undefined | null;

/** Connection cases (a)–(d) against C, Bun's sockets and node:net, from the bench's raw per-run results. */
export function connectionComparisons(res: ConnectionBenchResult): Comparison[] {
  const raw = ((res.results as { raw?: Record<string, any> }).raw ?? {}) as Record<string, any>;
  const out: Comparison[] = [];
  const rates = (xs: Rated[] | undefined) => (xs ?? []).map((x) => x?.rate);
  const tp = (kase: string, metric: string, ours: Rated[], base: Rated[], baseline: string, extra: Partial<Comparison>) =>
    out.push(compare({ bench: "connection", case: kase, metric, higherIsBetter: true, baseline, chart: true, ...extra }, rates(ours), rates(base)));
  if (raw.stream) {
    const a = raw.stream;
    const k = "connection (a) stream of 60-byte messages";
    tp(k, "msg/s", a.ours, a.c, "C write() per message", { target: { op: ">=", value: 1 }, headline: true });
    tp(k, "msg/s", a.ours, a.bun, "Bun.listen/connect", { target: { op: ">=", value: 1.5 }, headline: true });
    tp(k, "msg/s", a.ours, a.net, "node:net + JSON lines", {});
  }
  if (raw.blob) {
    const k = raw.blob.plainLoopError ? "connection (b) 16 MiB messages (acked)" : "connection (b) 16 MiB messages";
    tp(`${k}, received with \`using\``, "MB/s", raw.blob.ours, raw.blob.c, "C read/write", { target: { op: ">=", value: 0.5 }, headline: true });
    if (raw.blob.kept?.length) tp(`${k}, kept (freed by the GC)`, "MB/s", raw.blob.kept, raw.blob.c, "C read/write", {});
    if (raw.blob.small?.length) tp(`${k}, in 8 KiB packets (as to an lwmsg C peer)`, "MB/s", raw.blob.small, raw.blob.c, "C read/write", {});
  }
  if (raw.fd) tp("connection (c) fd passing, 1 fd per message", "fds/s", raw.fd.ours, raw.fd.c, "C sendmsg loop", { target: { op: ">=", value: 1 }, headline: true });
  for (const pass of ["pinned", "unpinned"] as const) {
    const r = raw.rtt?.[pass] as { ours: Lat[]; c: Lat[] } | undefined;
    if (!r) continue;
    // The round-trip pass records successful runs only; pair them by index when both sides have every run.
    const aligned = r.ours.length === r.c.length;
    for (const p of ["p50", "p99"] as const) {
      const ours = r.ours.map((x) => x?.[p]);
      const c = r.c.map((x) => x?.[p]);
      const kase = `connection (d) request/reply, ${pass === "pinned" ? "both on one core (taskset -c 0)" : "unpinned"}`;
      const target = pass === "pinned" ? { target: { op: "<=" as const, value: p === "p50" ? 1.5 : 2 } } : {};
      const cmp = compare({ bench: "connection", case: kase, metric: `${p} µs`, higherIsBetter: false, baseline: "C ping-pong", headline: pass === "pinned", ...target }, ours, c);
      if (!aligned) cmp.ratio = { median: cmp.ours.median / cmp.base.median, min: NaN, max: NaN, runs: [] };
      out.push(cmp);
    }
  }
  return out;
}
