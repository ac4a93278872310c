/**
 * A log-linear latency histogram in the manner of HdrHistogram: values in microseconds, exact below 128 µs,
 * then 64 buckets per power of two (every bucket within 1/64 ≈ 1.6 % of its values). Its buckets travel
 * between processes as [index, count] pairs, so histograms from several load generators merge exactly.
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // buckets per power of two
const LINEAR = SUB * 2; // values below this get a bucket each

function indexOf(us: number): number {
  const v = Math.max(0, Math.floor(us));
  if (v < LINEAR) return v;
  const exponent = Math.floor(Math.log2(v)) - SUB_BITS; // >= 1
  return LINEAR + (exponent - 1) * SUB + (Math.floor(v / 2 ** exponent) - SUB);
}

/** The highest value (µs) that falls in bucket `index`. */
function upperOf(index: number): number {
  if (index < LINEAR) return index;
  const exponent = Math.floor((index - LINEAR) / SUB) + 1;
  const mantissa = ((index - LINEAR) % SUB) + SUB;
  return (mantissa + 1) * 2 ** exponent - 1;
}

export type HistogramData = [index: number, count: number][];

export class Histogram {
  readonly #counts = new Map<number, number>();
  count = 0;
  #sumUs = 0;
  #maxUs = 0;

  /** Records one latency in milliseconds. */
  recordMs(ms: number): void {
    const us = ms * 1000;
    const index = indexOf(us);
    this.#counts.set(index, (this.#counts.get(index) ?? 0) + 1);
    this.count += 1;
    this.#sumUs += us;
    if (us > this.#maxUs) this.#maxUs = us;
  }

  /** The value (ms) at quantile q (0..1): the upper edge of the bucket holding it, capped by the max. */
  quantileMs(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const index of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(index) as number;
      if (seen >= rank) return Math.min(upperOf(index), this.#maxUs) / 1000;
    }
    return this.#maxUs / 1000;
  }

  meanMs(): number {
    return this.count === 0 ? NaN : this.#sumUs / this.count / 1000;
  }

  maxMs(): number {
    return this.#maxUs / 1000;
  }

  toJSON(): { buckets: HistogramData; count: number; sumUs: number; maxUs: number } {
    return { buckets: [...this.#counts], count: this.count, sumUs: this.#sumUs, maxUs: this.#maxUs };
  }

  /** Adds another histogram's data (from toJSON) to this one. */
  merge(data: ReturnType<Histogram['toJSON']>): this {
    for (const [index, count] of data.buckets)
      this.#counts.set(index, (this.#counts.get(index) ?? 0) + count);
    this.count += data.count;
    this.#sumUs += data.sumUs;
    this.#maxUs = Math.max(this.#maxUs, data.maxUs);
    return this;
  }
}
