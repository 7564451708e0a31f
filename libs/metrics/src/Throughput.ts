import type { MetricRecord } from "./MetricRecord";

/**
 * Throughput and model FLOPs utilisation (nanoGPT `estimate_mfu`: achieved model FLOP/s over
 * the hardware's peak). FLOPs are model FLOPs from the parameter table (counting patch positions
 * in the patch phase), not hardware counters.
 */

/** Raw tokens per second; NaN for a zero-length interval. */
export const tokensPerSecond = (tokens: number, seconds: number): number => (seconds > 0 ? tokens / seconds : Number.NaN);

/** Achieved FLOP/s; NaN for a zero-length interval. */
export const flopsPerSecond = (flops: number, seconds: number): number => (seconds > 0 ? flops / seconds : Number.NaN);

/** Model FLOPs utilisation in [0, 1] given the peak FLOP/s of the hardware (e.g. 537.6e9 for 2 Zen 5 cores, fp32). */
export const mfu = (achievedFlopsPerSecond: number, peakFlopsPerSecond: number): number => achievedFlopsPerSecond / peakFlopsPerSecond;

export interface Rates {
  readonly tokensPerSecond: number;
  readonly flopsPerSecond: number;
  /** Present when the peak is known. */
  readonly mfu: number | undefined;
}

/** The rates over the steps a record covers. */
export const ratesOf = (r: MetricRecord, peakFlopsPerSecond?: number): Rates => {
  const fps = flopsPerSecond(r.flops, r.wallSeconds);
  return {
    tokensPerSecond: tokensPerSecond(r.tokens, r.wallSeconds),
    flopsPerSecond: fps,
    mfu: peakFlopsPerSecond === undefined ? undefined : mfu(fps, peakFlopsPerSecond),
  };
};
