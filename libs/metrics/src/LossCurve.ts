import { Effect } from "effect";
import { AtomicFile } from "@patchlm/core";
import { type ChartSpec, type Marker, type RasterOptions, renderPanels, type Series, svgToPng } from "./Chart";
import { Keys, type MetricRecord } from "./MetricRecord";

/**
 * The end-of-run loss figure: validation loss against tokens and against FLOPs, side by side,
 * with the patch → token switch marked. Validation loss is token-level in both phases, so it is
 * one comparable line. Training loss is drawn per phase: in the patch phase it is the bag loss,
 * whose floor is ln K, not comparable with token loss (docs/method.md §2.3), so it is dashed and
 * labelled with its floor.
 */

export interface LossCurveOptions {
  readonly title?: string;
  /** K of the patch phase, for the legend's floor ln K. */
  readonly patchSize?: number;
  /** Include the training loss series (default true). */
  readonly trainLoss?: boolean;
  /** Logarithmic x axes. */
  readonly logX?: boolean;
  /** Where the switch happened (from the phase plan); default: the end of the last patch-phase record. */
  readonly switchAt?: { readonly totalTokens: number; readonly totalFlops: number };
}

type XAxis = "totalTokens" | "totalFlops";

/** The first record of the token phase after a patch-phase record: where the switch happened. */
const switchRecord = (records: ReadonlyArray<MetricRecord>): MetricRecord | undefined => {
  const i = records.findIndex((r, k) => k > 0 && r.phase === "token" && records[k - 1].phase === "patch");
  return i < 0 ? undefined : records[i - 1];
};

const points = (records: ReadonlyArray<MetricRecord>, key: string, x: XAxis, phase?: MetricRecord["phase"]) =>
  records.filter((r) => r.values[key] !== undefined && (phase === undefined || r.phase === phase)).map((r) => [r[x], r.values[key]] as const);

/** The two chart specs (against tokens, against FLOPs), for callers that compose their own figure. */
export const charts = (records: ReadonlyArray<MetricRecord>, options: LossCurveOptions = {}): [ChartSpec, ChartSpec] => {
  const K = options.patchSize;
  const floor = K === undefined ? "" : `, floor ln ${K} = ${Math.log(K).toFixed(3)}`;
  const atSwitch = options.switchAt ?? switchRecord(records);
  const make = (x: XAxis, xLabel: string): ChartSpec => {
    const series: Array<Series> = [{ name: "validation loss (token-level)", points: points(records, Keys.valLoss, x), color: "#1f77b4" }];
    if (options.trainLoss !== false) {
      const patch = points(records, Keys.loss, x, "patch");
      const token = points(records, Keys.loss, x, "token");
      if (patch.length > 0) series.push({ name: `train loss, patch phase (bag loss${floor})`, points: patch, dashed: true, color: "#ff7f0e", dots: false });
      if (token.length > 0) series.push({ name: "train loss, token phase", points: token, color: "#2ca02c", dots: false });
    }
    const markers: Array<Marker> = atSwitch === undefined ? [] : [{ x: atSwitch[x], label: "switch to token level" }];
    return { title: `${options.title ?? "Loss"} vs ${x === "totalTokens" ? "tokens" : "FLOPs"}`, xLabel, yLabel: "loss (nats)", series, markers, logX: options.logX };
  };
  return [make("totalTokens", "tokens seen"), make("totalFlops", "training FLOPs")];
};

/** The figure as SVG. */
export const svg = (records: ReadonlyArray<MetricRecord>, options: LossCurveOptions = {}): string => renderPanels(charts(records, options));

/** The figure as PNG bytes. */
export const png = (records: ReadonlyArray<MetricRecord>, options: LossCurveOptions & RasterOptions = {}): Uint8Array =>
  svgToPng(svg(records, options), options);

/** Write the figure to `path` (conventionally `<runDir>/loss.png`), whole or not at all. */
export const write = Effect.fn("LossCurve.write")(function* (
  path: string,
  records: ReadonlyArray<MetricRecord>,
  options: LossCurveOptions & RasterOptions = {},
) {
  yield* AtomicFile.write(path, png(records, options));
});
