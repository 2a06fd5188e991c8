// Codec benchmark: encode+decode round trips of four message shapes with the
// generated lwmsg codec, against JSON.stringify+JSON.parse, msgpackr
// pack+unpack and avsc (schema-compiled `avro.Type.forSchema`) on equivalent
// data, all in the same run. Ours encodes into a reused ByteWriter
// (`w.pos = 0`) and decodes from a reused ByteReader, as the connection does.
//
//   npx bun bench/codec.bench.ts [--quick] [--runs N]
//
// Notes on fairness: JSON carries the 4 KiB of case (b) as a number array (it
// has no bytes type); msgpackr and avsc decode bytes as views into their input,
// while ours must copy (the connection reuses its receive buffer), so (b) pays
// one 4 KiB allocation per message that they do not.
//
// Two lwmsg rows: "lwmsg" is the internal path (a reused writer and reader, as
// the connection uses them), "Lw.*" the public functions users call per
// message: `Lw.decode(T, Lw.encode(T, v))`, a fresh byte array per encode,
// like `JSON.stringify`, msgpackr's `pack` and avsc's `toBuffer`.
//
// Each run measures every (case, codec) pair once with mitata's `measure`,
// interleaved so machine noise hits all codecs alike; the table shows the
// median ops/s over the runs with the min–max spread, and the ratio of ours to
// each competitor (median of the per-run ratios).
import { measure, do_not_optimize } from "mitata";
import { pack, unpack } from "msgpackr";
import avro from "avsc";
import { Lw } from "../lib/lw.ts";
import { ByteReader, ByteWriter, CodecContext } from "../lib/codec/io.ts";
import { fmtNum, fmtSpread, spread } from "./lib/stats.ts";
import { printTable } from "./lib/table.ts";

// ---------------------------------------------------------------------------
// the four cases

/** (a) 10 fields: ints and short strings. */
const FileInfo = Lw.Struct({
  id: Lw.UInt32(),
  seq: Lw.UInt32(),
  flags: Lw.UInt16(),
  mode: Lw.UInt16(),
  uid: Lw.Int32(),
  gid: Lw.Int32(),
  size: Lw.Int32(),
  name: Lw.String({ notNull: true }),
  owner: Lw.String({ notNull: true }),
  group: Lw.String({ notNull: true }),
});
const fileInfo = { id: 123456, seq: 7, flags: 0x1234, mode: 0o644, uid: 1000, gid: 100, size: 4096, name: "report.txt", owner: "alice", group: "staff" };
const fileInfoAvro = avro.Type.forSchema({
  type: "record",
  name: "FileInfo",
  fields: [
    { name: "id", type: "int" },
    { name: "seq", type: "int" },
    { name: "flags", type: "int" },
    { name: "mode", type: "int" },
    { name: "uid", type: "int" },
    { name: "gid", type: "int" },
    { name: "size", type: "int" },
    { name: "name", type: "string" },
    { name: "owner", type: "string" },
    { name: "group", type: "string" },
  ],
});

/** (b) a struct with a 4 KiB byte array. */
const Blob = Lw.Struct({ id: Lw.UInt32(), size: Lw.UInt32(), data: Lw.Pointer(Lw.Array(Lw.UInt8(), { length: "size" }), { notNull: true }) });
const bytes4k = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31 + 7) & 255);
const blob = { id: 9, size: 4096, data: bytes4k };
const blobJson = { id: 9, size: 4096, data: Array.from(bytes4k) }; // JSON has no bytes type: a number array
const blobAvroValue = { id: 9, size: 4096, data: Buffer.from(bytes4k) };
const blobAvro = avro.Type.forSchema({
  type: "record",
  name: "Blob",
  fields: [
    { name: "id", type: "int" },
    { name: "size", type: "int" },
    { name: "data", type: "bytes" },
  ],
});

/** (c) 1,000 int32s. */
const Ints = Lw.Struct({ count: Lw.UInt32(), values: Lw.Pointer(Lw.Array(Lw.Int32(), { length: "count" }), { notNull: true }) });
const values1k = Array.from({ length: 1000 }, (_, i) => ((i * 2654435761) | 0) >> 8);
const ints = { count: 1000, values: values1k };
const intsAvro = avro.Type.forSchema({
  type: "record",
  name: "Ints",
  fields: [
    { name: "count", type: "int" },
    { name: "values", type: { type: "array", items: "int" } },
  ],
});

/** (d) nested structs with a union and an enum. */
const Kind = Lw.Enum({ FILE: 1, DIR: 2, LINK: 3 }, { width: 1 });
const Stat = Lw.Struct({ ino: Lw.UInt32(), mode: Lw.UInt16(), nlink: Lw.UInt16() });
const Nested = Lw.Struct({
  hdr: Lw.Struct({ version: Lw.UInt8(), kind: Kind, cookie: Lw.UInt16() }),
  type: Lw.UInt8(),
  body: Lw.Union("type", { 1: Stat, 2: Lw.String({ notNull: true }), 3: Lw.Struct({ a: Lw.Int32(), b: Lw.Int32() }) }),
  trailer: Lw.Struct({ crc: Lw.UInt32(), kind: Kind }),
});
const nested = { hdr: { version: 1, kind: 2, cookie: 77 }, type: 1, body: { ino: 123456, mode: 0o644, nlink: 1 }, trailer: { crc: 0xdeadbeef, kind: 1 } };
const KindAvro = { type: "enum", name: "Kind", symbols: ["FILE", "DIR", "LINK"] } as const;
const nestedAvro = avro.Type.forSchema(<avro.Schema>{
  type: "record",
  name: "Nested",
  fields: [
    { name: "hdr", type: { type: "record", name: "Hdr", fields: [{ name: "version", type: "int" }, { name: "kind", type: KindAvro }, { name: "cookie", type: "int" }] } },
    { name: "type", type: "int" },
    {
      name: "body",
      type: [
        { type: "record", name: "Stat", fields: [{ name: "ino", type: "long" }, { name: "mode", type: "int" }, { name: "nlink", type: "int" }] },
        "string",
        { type: "record", name: "AB", fields: [{ name: "a", type: "int" }, { name: "b", type: "int" }] },
      ],
    },
    { name: "trailer", type: { type: "record", name: "Trailer", fields: [{ name: "crc", type: "long" }, { name: "kind", type: "Kind" }] } },
  ],
}, { wrapUnions: true });
const nestedAvroValue = { hdr: { version: 1, kind: "DIR", cookie: 77 }, type: 1, body: { Stat: { ino: 123456, mode: 0o644, nlink: 1 } }, trailer: { crc: 0xdeadbeef, kind: "FILE" } };

interface Case {
  name: string;
  schema: any;
  value: unknown;
  json: unknown;
  avro: avro.Type;
  avroValue: unknown;
  /** Rotate through this many distinct messages instead of one (defeats any per-value caching). */
  pool?: unknown[];
}

// (a') the same shape over 64 messages whose strings all differ, so no codec can
// lean on "same as last time" (our decoder memoizes each field's last short string)
const names = ["report.txt", "notes.md", "a.out", "photo-2024-01-01.jpg", "x", "README", "Makefile", "data.bin"];
const users = ["alice", "bob", "carol", "dave", "eve", "mallory", "trent", "root"];
const filePool = Array.from({ length: 64 }, (_, i) => ({
  ...fileInfo,
  id: 100000 + i * 7919,
  seq: i,
  size: i * 512,
  name: `${names[i % 8]}.${i}`,
  owner: `${users[(i * 3) % 8]}${i}`,
  group: `g${users[(i * 5 + 1) % 8]}${i}`,
}));

const cases: Case[] = [
  { name: "(a) 10 ints+strings", schema: FileInfo, value: fileInfo, json: fileInfo, avro: fileInfoAvro, avroValue: fileInfo },
  { name: "(a') same, 64 distinct", schema: FileInfo, value: fileInfo, json: fileInfo, avro: fileInfoAvro, avroValue: fileInfo, pool: filePool },
  { name: "(b) 4 KiB bytes", schema: Blob, value: blob, json: blobJson, avro: blobAvro, avroValue: blobAvroValue },
  { name: "(c) 1000 int32", schema: Ints, value: ints, json: ints, avro: intsAvro, avroValue: ints },
  { name: "(d) nested+union+enum", schema: Nested, value: nested, json: nested, avro: nestedAvro, avroValue: nestedAvroValue },
];

const CODECS = ["lwmsg", "Lw.*", "JSON", "msgpackr", "avsc"] as const;
const OTHERS = ["JSON", "msgpackr", "avsc"] as const;
type Other = (typeof OTHERS)[number];
type Codec = (typeof CODECS)[number];

/** A round-trip function per (case, codec); each is checked once for correctness. */
function roundTrips(c: Case): Record<Codec, () => unknown> {
  const { encode, decode } = Lw.compile(c.schema);
  const w = new ByteWriter(64 * 1024);
  const ctx = new CodecContext();
  const r = new ByteReader(w.buf);
  const at = c.avro;
  const eq = (a: unknown, b: unknown) => Bun.deepEquals(a, b);
  // msgpackr gives Buffers for bin data: compare byte arrays as plain arrays
  const norm = (x: unknown): unknown =>
    x instanceof Uint8Array ? Array.from(x) : Array.isArray(x) ? x.map(norm) : x && typeof x === "object" ? Object.fromEntries(Object.entries(x).map(([k, y]) => [k, norm(y)])) : x;
  if (c.pool) {
    // every codec walks the same pool in the same order
    const pool = c.pool;
    const mask = pool.length - 1;
    let i = 0,
      j = 0,
      k = 0,
      l = 0;
    const lw = () => {
      w.pos = 0;
      encode(pool[i++ & mask], w, ctx);
      r.pos = 0;
      r.end = w.pos;
      return decode(r, ctx);
    };
    const json = () => JSON.parse(JSON.stringify(pool[j++ & mask]));
    const mp = () => unpack(pack(pool[k++ & mask]));
    const avsc = () => at.fromBuffer(at.toBuffer(pool[l++ & mask]));
    let m = 0;
    const pub = () => Lw.decode(c.schema, Lw.encode(c.schema, pool[m++ & mask]));
    for (const x of pool) {
      if (!eq(lw(), x) || !eq(pub(), x) || !eq(json(), x) || !eq(norm(mp()), norm(x)) || at.compare(avsc(), x) !== 0) throw new Error(`${c.name}: a round trip differs`);
    }
    return { lwmsg: lw, "Lw.*": pub, JSON: json, msgpackr: mp, avsc };
  }
  const v = c.value;
  const lw = () => {
    w.pos = 0;
    encode(v, w, ctx);
    if (r.buf !== w.buf) r.reset(w.buf);
    r.pos = 0;
    r.end = w.pos;
    return decode(r, ctx);
  };
  const js = c.json;
  const json = () => JSON.parse(JSON.stringify(js));
  const mp = () => unpack(pack(v));
  const av = c.avroValue;
  const avsc = () => at.fromBuffer(at.toBuffer(av));
  const T = c.schema;
  const pub = () => Lw.decode(T, Lw.encode(T, v));
  // sanity: everything really round-trips the data
  if (!eq(lw(), v)) throw new Error(`${c.name}: lwmsg round trip differs`);
  if (!eq(pub(), v)) throw new Error(`${c.name}: Lw.encode/Lw.decode round trip differs`);
  if (!eq(json(), js)) throw new Error(`${c.name}: JSON round trip differs`);
  if (!eq(norm(mp()), norm(v))) throw new Error(`${c.name}: msgpackr round trip differs`);
  if (at.compare(avsc(), av) !== 0) throw new Error(`${c.name}: avsc round trip differs`);
  return { lwmsg: lw, "Lw.*": pub, JSON: json, msgpackr: mp, avsc };
}

/** ops/s of `fn` (1e9 / mean ns per call). */
async function opsPerSec(fn: () => unknown, quick: boolean): Promise<number> {
  const stats = await measure(() => do_not_optimize(fn()), { min_cpu_time: quick ? 40e6 : 120e6, max_samples: 1e9 });
  return 1e9 / stats.avg;
}

/** Encoding into a reused writer must not allocate per message (checked with a big loop and the heap size). */
function encodeAllocates(c: Case): number {
  if (c.pool) return NaN;
  const { encode } = Lw.compile(c.schema);
  const w = new ByteWriter(64 * 1024);
  const ctx = new CodecContext();
  const v = c.value;
  for (let i = 0; i < 10_000; i++) {
    w.pos = 0;
    encode(v, w, ctx);
  }
  Bun.gc(true);
  const before = process.memoryUsage().heapUsed;
  const n = 200_000;
  for (let i = 0; i < n; i++) {
    w.pos = 0;
    encode(v, w, ctx);
  }
  const after = process.memoryUsage().heapUsed;
  return Math.max(0, (after - before) / n);
}

export interface CodecBenchResult {
  case: string;
  opsPerSec: Record<Codec, number[]>;
  /** Internal path (reused writer and reader) ÷ each competitor, per run. */
  ratio: Record<Other, number[]>;
  /** Public functions (`Lw.encode` + `Lw.decode`) ÷ each competitor, per run. */
  publicRatio: Record<Other, number[]>;
}

/** Heap growth per `Lw.decode(T, Lw.encode(T, v))` beyond its two results (the encoded bytes and the decoded value). */
function publicAllocates(c: Case): number {
  if (c.pool) return NaN;
  const T = c.schema;
  const v = c.value;
  const n = 100_000;
  const keep: unknown[] = new Array(n);
  const run = () => {
    for (let i = 0; i < n; i++) keep[i] = Lw.decode(T, Lw.encode(T, v as never));
  };
  // the results alone, built the same way through the internal path, are the baseline
  const { encode, decode } = Lw.compile(T);
  const w = new ByteWriter(64 * 1024);
  const r = new ByteReader(w.buf);
  const ctx = new CodecContext();
  const bytes: unknown[] = new Array(n);
  const base = () => {
    for (let i = 0; i < n; i++) {
      w.pos = 0;
      encode(v, w, ctx);
      bytes[i] = w.buf.slice(0, w.pos);
      r.pos = 0;
      r.end = w.pos;
      keep[i] = decode(r, ctx);
    }
  };
  const grow = (f: () => void) => {
    f();
    keep.fill(undefined);
    bytes.fill(undefined);
    Bun.gc(true);
    const before = process.memoryUsage().heapUsed;
    f();
    const after = process.memoryUsage().heapUsed;
    keep.fill(undefined);
    bytes.fill(undefined);
    return (after - before) / n;
  };
  return Math.max(0, grow(run) - grow(base));
}

/** Run the codec comparison and print the table; returns the raw per-run numbers. */
export async function runCodecBench(opts: { quick?: boolean; runs?: number } = {}): Promise<CodecBenchResult[]> {
  const quick = !!opts.quick;
  const runs = opts.runs ?? (quick ? 1 : 5);
  const fns = cases.map(roundTrips);
  const results: CodecBenchResult[] = cases.map((c) => ({
    case: c.name,
    opsPerSec: { lwmsg: [], "Lw.*": [], JSON: [], msgpackr: [], avsc: [] },
    ratio: { JSON: [], msgpackr: [], avsc: [] },
    publicRatio: { JSON: [], msgpackr: [], avsc: [] },
  }));
  for (let run = 0; run < runs; run++) {
    for (let i = 0; i < cases.length; i++) {
      const res = results[i]!;
      const once: Partial<Record<Codec, number>> = {};
      for (const codec of CODECS) {
        once[codec] = await opsPerSec(fns[i]![codec], quick);
        res.opsPerSec[codec].push(once[codec]!);
      }
      for (const other of OTHERS) {
        res.ratio[other].push(once.lwmsg! / once[other]!);
        res.publicRatio[other].push(once["Lw.*"]! / once[other]!);
      }
    }
  }
  const target = { JSON: 3, msgpackr: 5, avsc: 2 };
  const rows = results.map((r) => {
    const cell = (c: Codec) => fmtSpread(spread(r.opsPerSec[c]));
    const ratio = (per: number[], t: number) => {
      const s = spread(per);
      return `${fmtSpread(s)}× ${s.median >= t ? "✓" : "✗"}`;
    };
    return [
      r.case,
      cell("lwmsg"),
      cell("Lw.*"),
      cell("JSON"),
      cell("msgpackr"),
      cell("avsc"),
      ratio(r.ratio.JSON, target.JSON),
      ratio(r.ratio.msgpackr, target.msgpackr),
      ratio(r.ratio.avsc, target.avsc),
      ratio(r.publicRatio.JSON, target.JSON),
      // the public functions: ≥ 3× JSON, ≥ 2× avsc on (a), and never slower than avsc
      ratio(r.publicRatio.avsc, r.case.startsWith("(a)") ? target.avsc : 1),
    ];
  });
  console.log(`codec round trip (encode+decode), ops/s: median (min–max) of ${runs} run${runs > 1 ? "s" : ""}; "lwmsg" reuses a writer and reader, "Lw.*" is Lw.decode(T, Lw.encode(T, v)); targets ≥3× JSON, ≥5× msgpackr, ≥2× avsc (Lw.*: ≥3× JSON, ≥2× avsc on (a), ≥1× avsc elsewhere)`);
  printTable(["case", "lwmsg", "Lw.*", "JSON", "msgpackr", "avsc", "vs JSON", "vs msgpackr", "vs avsc", "Lw.* vs JSON", "Lw.* vs avsc"], rows);
  const alloc = cases.filter((c) => !c.pool).map((c) => `${c.name.split(" ")[0]} ${fmtNum(encodeAllocates(c))} B`);
  console.log(`encode into a reused writer, heap growth per message: ${alloc.join(", ")}`);
  const pubAlloc = cases.filter((c) => !c.pool).map((c) => `${c.name.split(" ")[0]} ${fmtNum(publicAllocates(c))} B`);
  console.log(`Lw.decode(T, Lw.encode(T, v)), heap growth per call beyond its two results: ${pubAlloc.join(", ")}`);
  return results;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const ri = args.indexOf("--runs");
  await runCodecBench({ quick: args.includes("--quick"), runs: ri >= 0 ? Number(args[ri + 1]) : undefined });
}
