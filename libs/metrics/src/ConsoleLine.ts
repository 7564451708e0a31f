import { Keys, type MetricRecord } from "./MetricRecord";
import { ratesOf } from "./Throughput";

/**
 * The human line for one log interval, e.g.
 *
 *   step 1200/3000 patch | loss 3.4123 | lr 3.00e-4 | 2.13k tok/s | 12.3 GFLOP/s 2.3% MFU | 1m23s
 *
 * Pure: the caller logs it.
 */

export interface LineOptions {
  /** Shown as step/total. */
  readonly totalSteps?: number;
  /** Peak FLOP/s of the backend; adds MFU when known. */
  readonly peakFlopsPerSecond?: number;
}

const SI = ["", "k", "M", "G", "T", "P", "E"];

/** 3 significant digits with an SI prefix: 2130 → "2.13k"; with a unit, 1.23e10 → "12.3 GFLOP/s". */
export const formatSI = (x: number, unit = ""): string => {
  const join = (n: string, prefix: string) => (unit === "" ? `${n}${prefix}` : `${n} ${prefix}${unit}`);
  if (!Number.isFinite(x) || x === 0) return join(String(x), "");
  const e = Math.min(SI.length - 1, Math.max(0, Math.floor(Math.log10(Math.abs(x)) / 3)));
  const scaled = x / 10 ** (3 * e);
  return join(String(Number(scaled.toPrecision(3))), SI[e]);
};

/** Wall time as "12.3s", "1m23s" or "2h05m09s". */
export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds)) return String(seconds);
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}h${pad(m)}m${pad(s % 60)}s` : `${m}m${pad(s % 60)}s`;
};

export const formatLine = (r: MetricRecord, options: LineOptions = {}): string => {
  const width = options.totalSteps === undefined ? 0 : String(options.totalSteps).length;
  const parts = [`step ${String(r.step).padStart(width)}${options.totalSteps === undefined ? "" : `/${options.totalSteps}`} ${r.phase}`];
  const v = r.values;
  if (v[Keys.loss] !== undefined) parts.push(`loss ${v[Keys.loss].toFixed(4)}`);
  if (v[Keys.valLoss] !== undefined) {
    const ppl = v[Keys.valPerplexity] ?? Math.exp(v[Keys.valLoss]);
    parts.push(`val loss ${v[Keys.valLoss].toFixed(4)} ppl ${ppl.toFixed(2)}`);
  }
  if (v[Keys.lr] !== undefined) parts.push(`lr ${v[Keys.lr].toExponential(2)}`);
  if (r.wallSeconds > 0) {
    const rates = ratesOf(r, options.peakFlopsPerSecond);
    parts.push(`${formatSI(rates.tokensPerSecond)} tok/s`);
    parts.push(`${formatSI(rates.flopsPerSecond, "FLOP/s")}${rates.mfu === undefined ? "" : ` ${(100 * rates.mfu).toFixed(1)}% MFU`}`);
  }
  parts.push(formatDuration(r.elapsedSeconds));
  return parts.join(" | ");
};
