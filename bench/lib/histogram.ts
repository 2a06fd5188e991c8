/**
 * A small log-linear latency histogram (HdrHistogram-like) for long runs:
 * fixed memory whatever the number of samples, mergeable across processes.
 *
 * Values are microseconds. Below 64 µs every bucket is 1 µs wide; above,
 * each power of two is split into 32 buckets (≤ 3.2% relative width, values
 * reported at the bucket's midpoint). min, max, count and sum are exact.
 * @module
 */

const LINEAR = 64; // 0..63 µs: one bucket per µs
const SUB = 32; // buckets per octave above LINEAR
const LOG2_LINEAR = 6;
const OCTAVES = 34; // up to 2^40 µs (~12 days)
const NBUCKETS = LINEAR + OCTAVES * SUB;

function bucketOf(us: number): number {
  if (!(us >= 0)) return 0;
  if (us < LINEAR) return Math.floor(us);
  const e = Math.floor(Math.log2(us));
  const base = 2 ** e;
  let sub = Math.floor(((us - base) / base) * SUB);
  if (sub >= SUB) sub = SUB - 1;
  const i = LINEAR + (e - LOG2_LINEAR) * SUB + sub;
  return i >= NBUCKETS ? NBUCKETS - 1 : i;
}

/** The value a bucket stands for (its midpoint). */
function bucketValue(i: number): number {
  if (i < LINEAR) return i + 0.5;
  const k = i - LINEAR;
  const e = Math.floor(k / SUB) + LOG2_LINEAR;
  const sub = k % SUB;
  const base = 2 ** e;
  return base + ((sub + 0.5) / SUB) * base;
}

/** Sparse, JSON-safe form: `[bucket, count]` pairs plus the exact figures. */
export interface HistogramJSON {
  buckets: [number, number][];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export interface LatencyFigures {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export class Histogram {
  private counts = new Float64Array(NBUCKETS);
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  /** Record one value in µs. */
  record(us: number): void {
    this.counts[bucketOf(us)]!++;
    this.count++;
    this.sum += us;
    if (us < this.min) this.min = us;
    if (us > this.max) this.max = us;
  }

  /** Add another histogram's samples (a live one or its JSON form). */
  merge(other: Histogram | HistogramJSON): this {
    if (other instanceof Histogram) {
      for (let i = 0; i < NBUCKETS; i++) this.counts[i]! += other.counts[i]!;
    } else {
      for (const [i, c] of other.buckets) this.counts[i]! += c;
    }
    this.count += other.count;
    this.sum += other.sum;
    if (other.count > 0) {
      if (other.min < this.min) this.min = other.min;
      if (other.max > this.max) this.max = other.max;
    }
    return this;
  }

  /** Value at quantile q (0..1): the midpoint of the bucket holding that rank; q = 1 gives the exact max. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    if (q >= 1) return this.max;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < NBUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(Math.max(bucketValue(i), this.min), this.max);
    }
    return this.max;
  }

  figures(): LatencyFigures {
    return {
      n: this.count,
      mean: this.count ? this.sum / this.count : NaN,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.count ? this.max : NaN,
    };
  }

  toJSON(): HistogramJSON {
    const buckets: [number, number][] = [];
    for (let i = 0; i < NBUCKETS; i++) if (this.counts[i]! > 0) buckets.push([i, this.counts[i]!]);
    return { buckets, count: this.count, sum: this.sum, min: this.count ? this.min : 0, max: this.count ? this.max : 0 };
  }

  static from(json: HistogramJSON): Histogram {
    return new Histogram().merge(json);
  }
}
