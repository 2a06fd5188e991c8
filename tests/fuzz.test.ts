// The receive-path fuzzer as a regression suite: every saved corpus input
// (tests/fuzz/corpus/*.json) is replayed, and a small seeded batch of fresh
// cases runs each time. `npm run fuzz` (tests/fuzz/run.ts) is the full run.
import { describe, expect, test } from "bun:test";
import { CORPUS_DIR, loadBytes, loadCorpus } from "./fuzz/corpus.ts";
import { DecoderFuzzer, Tally, replayDecoder, runDecoderBatch, type DecoderFailure } from "./fuzz/decoder.ts";
import { schemas } from "./fuzz/schemas.ts";

const SEED = 0x5eed2026;
const corpus = loadCorpus();

describe("fuzz corpus replay", () => {
  const decoder = new DecoderFuzzer();
  test("the corpus has entries of both kinds", () => {
    expect(corpus.filter((c) => c.entry.kind === "decoder").length).toBeGreaterThan(10);
  });
  for (const { file, entry } of corpus) {
    if (entry.kind !== "decoder") continue;
    test(`${file} (${entry.schema}${entry.pin ? ` → ${entry.pin}` : ""})`, () => {
      const failure = replayDecoder(decoder, entry, loadBytes(entry));
      if (failure) throw new Error(`${CORPUS_DIR}${file}: ${failure}${entry.note ? ` — ${entry.note}` : ""}`);
    });
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
});
