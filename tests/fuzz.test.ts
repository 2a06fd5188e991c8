// The receive-path fuzzer as a regression suite: every saved corpus input
// (tests/fuzz/corpus/*.json) is replayed, and a small seeded batch of fresh
// cases runs each time. `npm run fuzz` (tests/fuzz/run.ts) is the full run.
import { afterAll, describe, expect, test } from "bun:test";
import { CORPUS_DIR, loadBytes, loadCorpus } from "./fuzz/corpus.ts";
import { DecoderFuzzer, Tally, replayDecoder, runDecoderBatch, sweepCounts, type DecoderFailure } from "./fuzz/decoder.ts";
import { LiveFuzzer, replayLive } from "./fuzz/live.ts";
import { schemas } from "./fuzz/schemas.ts";
import { fdLeakCheck } from "./helpers/fds.ts";
import { Poller } from "../lib/native/poller.ts";

// The poller (epoll thread, doorbell) lives for the whole process: start it before the snapshot.
fdLeakCheck({ settleMs: 2000, warmup: () => Poller.shared() });

// anything thrown outside a test's own promise chain (a callback, a timer) fails the suite
const stray: string[] = [];
const onStray = (e: unknown) => stray.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
process.on("uncaughtException", onStray);
process.on("unhandledRejection", onStray);
afterAll(() => {
  process.off("uncaughtException", onStray);
  process.off("unhandledRejection", onStray);
  expect(stray).toEqual([]);
});

const SEED = 0x5eed2026;
const corpus = loadCorpus();

const live = new LiveFuzzer();
afterAll(() => live.dispose());

describe("fuzz corpus replay", () => {
  const decoder = new DecoderFuzzer();
  test("the corpus has entries of both kinds", () => {
    expect(corpus.filter((c) => c.entry.kind === "decoder").length).toBeGreaterThan(10);
    expect(corpus.filter((c) => c.entry.kind === "live").length).toBeGreaterThan(10);
  });
  for (const { file, entry } of corpus) {
    if (entry.kind !== "decoder") continue;
    test(`${file} (${entry.schema}${entry.pin ? ` → ${entry.pin}` : ""})`, () => {
      const failure = replayDecoder(decoder, entry, loadBytes(entry));
      if (failure) throw new Error(`${CORPUS_DIR}${file}: ${failure}${entry.note ? ` — ${entry.note}` : ""}`);
    });
  }
  for (const { file, entry } of corpus) {
    if (entry.kind !== "live") continue;
    test(`${file} (${entry.protocol}${entry.pin ? ` → ${entry.pin.join(" | ")}` : ""})`, async () => {
      const failure = await replayLive(live, entry, loadBytes(entry));
      if (failure) throw new Error(`${CORPUS_DIR}${file}: ${failure}${entry.note ? ` — ${entry.note}` : ""}`);
    }, 30_000);
  }
});

describe("seeded batch", () => {
  test(`decoder: 20,000 cases over ${schemas.length} schemas, seed ${SEED.toString(16)}`, () => {
    const f = new DecoderFuzzer();
    const tally = new Tally();
    const failures = new Map<string, DecoderFailure>();
    runDecoderBatch(f, SEED, 0, 20_000, tally, failures);
    const report = [...failures.values()].map((x) => `#${x.index} ${x.input.schema} (${x.kind} ${x.ops.join("+")}): ${x.failure}`);
    expect(report).toEqual([]);
    expect(tally.cases).toBe(20_000);
    // every kind of case ran, and both outcomes happened
    expect(tally.byKind.get("mutant")).toBeGreaterThan(10_000);
    expect(tally.byKind.get("random")).toBeGreaterThan(1_000);
    expect(tally.byKind.get("valid")).toBeGreaterThan(100);
    expect(tally.byOutcome.get("ok")).toBeGreaterThan(1_000);
    expect(tally.byOutcome.get("MALFORMED")).toBeGreaterThan(1_000);
    expect(tally.byOutcome.get("EOF")).toBeGreaterThan(1_000);
  }, 60_000);

  test("huge counts: every count, length member and id of valid encodings set to 2^32-1 & co. never allocates beyond what the input backs", () => {
    const f = new DecoderFuzzer();
    const r = sweepCounts(f, SEED, 2, Array.from({ length: 30 }, (_, k) => `random.${SEED}.${k}`));
    expect(r.failures).toEqual([]);
    expect(r.cases).toBeGreaterThan(500);
    expect(r.worstRatio).toBeLessThanOrEqual(1);
  }, 60_000);
  test(`live: 2,000 cases into a real receiving Connection, seed ${SEED.toString(16)}`, async () => {
    const kinds = new Map<string, number>();
    const events = new Map<string, number>();
    const failures: string[] = [];
    for (let i = 0; i < 2_000; i++) {
      const c = live.gen.make(SEED, i);
      const r = await live.run(c);
      kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
      for (const o of r.outcomes) events.set(o, (events.get(o) ?? 0) + 1);
      if (r.failure && failures.length < 10) failures.push(`#${i} ${c.kind} ${c.protocol} (${c.ops.join("+")}): ${r.failure} [${r.events.join(" | ")}]`);
    }
    await live.finish();
    expect(failures).toEqual([]);
    for (const k of ["valid", "payload", "header", "truncated", "random", "fds", "shutdown", "greeting"]) expect(kinds.get(k) ?? 0).toBeGreaterThan(20);
    // the interesting outcomes all happened
    for (const e of ["msg", "synthetic MALFORMED", "MALFORMED", "PEER_CLOSE", "PEER_ABORT"]) expect(events.get(e) ?? 0).toBeGreaterThan(0);
  }, 120_000);
});
