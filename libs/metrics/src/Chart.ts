import { existsSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import { formatSI } from "./ConsoleLine";

/**
 * A small line-chart renderer: SVG text out (axes, nice ticks, grid, labels, legend, several
 * series, dashed series, vertical markers, optional log axes), and SVG → PNG through resvg.
 * No browser, no canvas. Text needs a system font at rasterisation time (see `svgToPng`).
 */

export interface Series {
  readonly name: string;
  /** [x, y] pairs, drawn in the given order; non-finite points (and ≤ 0 on a log axis) break the line. */
  readonly points: ReadonlyArray<readonly [number, number]>;
  readonly dashed?: boolean;
  /** CSS colour; default from a 10-colour palette by series index. */
  readonly color?: string;
  /** Draw a dot at each point (default: when the series has at most 40 points). */
  readonly dots?: boolean;
}

/** A vertical dashed line at `x` with a label, e.g. the patch → token switch. */
export interface Marker {
  readonly x: number;
  readonly label: string;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: ReadonlyArray<Series>;
  readonly markers?: ReadonlyArray<Marker>;
  readonly logX?: boolean;
  readonly logY?: boolean;
  /** Pixels (default 800 × 480). */
  readonly width?: number;
  readonly height?: number;
  /** Fix the y range instead of fitting the data. */
  readonly yDomain?: readonly [number, number];
}

export const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
const MARGIN = { top: 40, right: 18, bottom: 50, left: 70 };

const escape = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

const fmt = (n: number): string => String(Math.round(n * 100) / 100);

interface Axis {
  readonly ticks: ReadonlyArray<number>;
  readonly label: (v: number) => string;
  /** Data value to pixel; NaN for values the axis cannot show. */
  readonly px: (v: number) => number;
}

/** 1, 2 or 5 times a power of ten, giving about `target` intervals over `range`. */
export const niceStep = (range: number, target = 6): number => {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
};

/** Tick labels with just enough decimals for the step; SI prefixes from 10,000 up. */
const tickLabel = (step: number, maxAbs: number) => (v: number): string => {
  if (v === 0) return "0";
  if (maxAbs < 1e4) return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  const e = Math.min(6, Math.floor(Math.log10(maxAbs) / 3));
  const decimals = Math.max(0, -Math.floor(Math.log10(step / 10 ** (3 * e)) + 1e-9));
  return `${(v / 10 ** (3 * e)).toFixed(decimals)}${["", "k", "M", "G", "T", "P", "E"][e]}`;
};

const linearAxis = (values: ReadonlyArray<number>, [p0, p1]: readonly [number, number], fixed?: readonly [number, number]): Axis => {
  let lo = fixed ? fixed[0] : Math.min(...values);
  let hi = fixed ? fixed[1] : Math.max(...values);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi === lo) [lo, hi] = lo === 0 ? [-1, 1] : [lo - Math.abs(lo) * 0.1, hi + Math.abs(hi) * 0.1];
  const step = niceStep(hi - lo);
  if (!fixed) [lo, hi] = [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
  const ticks: Array<number> = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) ticks.push(Number((i * step).toPrecision(12)));
  return {
    ticks,
    label: tickLabel(step, Math.max(Math.abs(lo), Math.abs(hi))),
    px: (v) => p0 + ((v - lo) / (hi - lo)) * (p1 - p0),
  };
};

const logAxis = (values: ReadonlyArray<number>, [p0, p1]: readonly [number, number], fixed?: readonly [number, number]): Axis => {
  const positive = values.filter((v) => v > 0);
  const lo = Math.floor(Math.log10(fixed ? fixed[0] : positive.length ? Math.min(...positive) : 1));
  let hi = Math.ceil(Math.log10(fixed ? fixed[1] : positive.length ? Math.max(...positive) : 10));
  if (hi <= lo) hi = lo + 1;
  const ticks: Array<number> = [];
  for (let e = lo; e <= hi; e++) {
    ticks.push(10 ** e);
    if (hi - lo <= 2 && e < hi) ticks.push(2 * 10 ** e, 5 * 10 ** e);
  }
  return {
    ticks: ticks.sort((a, b) => a - b),
    label: (v) => formatSI(v),
    px: (v) => (v > 0 ? p0 + ((Math.log10(v) - lo) / (hi - lo)) * (p1 - p0) : Number.NaN),
  };
};

const seriesPath = (s: Series, x: Axis, y: Axis): { d: string; dots: Array<[number, number]> } => {
  let d = "";
  let pen = false;
  const dots: Array<[number, number]> = [];
  for (const [vx, vy] of s.points) {
    const px = x.px(vx);
    const py = y.px(vy);
    if (!Number.isFinite(px) || !Number.isFinite(py)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${fmt(px)} ${fmt(py)}`;
    pen = true;
    dots.push([px, py]);
  }
  return { d, dots };
};

/** The chart as an SVG group of the spec's size, positioned at the origin. `id` keeps clip ids unique. */
const chartGroup = (spec: ChartSpec, id: string): string => {
  const W = spec.width ?? 800;
  const H = spec.height ?? 480;
  const left = MARGIN.left;
  const right = W - MARGIN.right;
  const top = MARGIN.top;
  const bottom = H - MARGIN.bottom;
  const xs = [...spec.series.flatMap((s) => s.points.map((p) => p[0])), ...(spec.markers ?? []).map((m) => m.x)].filter(Number.isFinite);
  const ys = spec.series.flatMap((s) => s.points.map((p) => p[1])).filter(Number.isFinite);
  const x = (spec.logX ? logAxis : linearAxis)(xs, [left, right]);
  const y = (spec.logY ? logAxis : linearAxis)(ys, [bottom, top], spec.yDomain);
  const out: Array<string> = [];
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escape(spec.title)}</text>`);
  out.push(`<defs><clipPath id="${id}-plot"><rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}"/></clipPath></defs>`);
  for (const t of x.ticks) {
    const px = fmt(x.px(t));
    out.push(`<line x1="${px}" y1="${top}" x2="${px}" y2="${bottom}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${px}" y1="${bottom}" x2="${px}" y2="${bottom + 5}" stroke="#333"/>`);
    out.push(`<text x="${px}" y="${bottom + 19}" text-anchor="middle" font-size="12">${escape(x.label(t))}</text>`);
  }
  for (const t of y.ticks) {
    const py = fmt(y.px(t));
    out.push(`<line x1="${left}" y1="${py}" x2="${right}" y2="${py}" stroke="#e6e6e6"/>`);
    out.push(`<line x1="${left - 5}" y1="${py}" x2="${left}" y2="${py}" stroke="#333"/>`);
    out.push(`<text x="${left - 8}" y="${py}" dy="4" text-anchor="end" font-size="12">${escape(y.label(t))}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(left + right) / 2}" y="${H - 10}" text-anchor="middle" font-size="13">${escape(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="13">${escape(spec.yLabel)}</text>`);

  const plot: Array<string> = [];
  spec.series.forEach((s, i) => {
    const color = s.color ?? palette[i % palette.length];
    const { d, dots } = seriesPath(s, x, y);
    const dash = s.dashed ? ` stroke-dasharray="7 4"` : "";
    if (d !== "") plot.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"${dash}/>`);
    if (s.dots ?? s.points.length <= 40) for (const [px, py] of dots) plot.push(`<circle cx="${fmt(px)}" cy="${fmt(py)}" r="3" fill="${color}"/>`);
  });
  for (const m of spec.markers ?? []) {
    const px = x.px(m.x);
    if (!Number.isFinite(px)) continue;
    const nearRight = px > right - 160;
    plot.push(`<line x1="${fmt(px)}" y1="${top}" x2="${fmt(px)}" y2="${bottom}" stroke="#444" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    plot.push(
      `<text x="${fmt(nearRight ? px - 5 : px + 5)}" y="${top + 14}" text-anchor="${nearRight ? "end" : "start"}" font-size="11" fill="#222">${escape(m.label)}</text>`,
    );
  }
  out.push(`<g clip-path="url(#${id}-plot)">${plot.join("")}</g>`);

  if (spec.series.length > 0) {
    // Text is not measured (no font metrics here); 7 px per character at 12 px is generous for DejaVu Sans.
    const boxW = 44 + 7 * Math.max(...spec.series.map((s) => s.name.length));
    const boxH = 8 + 18 * spec.series.length;
    const bx = right - boxW - 8;
    const by = top + (spec.markers?.length ? 24 : 8);
    out.push(`<rect x="${fmt(bx)}" y="${by}" width="${fmt(boxW)}" height="${boxH}" fill="white" fill-opacity="0.88" stroke="#bbb"/>`);
    spec.series.forEach((s, i) => {
      const ly = by + 13 + 18 * i;
      const color = s.color ?? palette[i % palette.length];
      const dash = s.dashed ? ` stroke-dasharray="7 4"` : "";
      out.push(`<line x1="${fmt(bx + 8)}" y1="${ly}" x2="${fmt(bx + 34)}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`);
      out.push(`<text x="${fmt(bx + 40)}" y="${ly}" dy="4" font-size="12">${escape(s.name)}</text>`);
    });
  }
  return out.join("\n");
};

const svgDocument = (width: number, height: number, body: string): string =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" fill="#111">\n` +
  `<rect width="100%" height="100%" fill="white"/>\n${body}\n</svg>\n`;

/** One chart as a standalone SVG document. */
export const renderLineChart = (spec: ChartSpec): string => svgDocument(spec.width ?? 800, spec.height ?? 480, chartGroup(spec, "c0"));

export interface PanelOptions {
  /** Charts per row (default: all in one row up to 2, then 2). */
  readonly columns?: number;
  /** A heading above the grid. */
  readonly title?: string;
}

/** Several charts in a grid, one SVG document (e.g. loss against tokens beside loss against FLOPs). */
export const renderPanels = (charts: ReadonlyArray<ChartSpec>, options: PanelOptions = {}): string => {
  const columns = options.columns ?? Math.min(2, Math.max(1, charts.length));
  const cellW = Math.max(...charts.map((c) => c.width ?? 800));
  const cellH = Math.max(...charts.map((c) => c.height ?? 480));
  const head = options.title === undefined ? 0 : 34;
  const rows = Math.ceil(charts.length / columns);
  const body = charts.map((c, i) => `<g transform="translate(${(i % columns) * cellW} ${head + Math.floor(i / columns) * cellH})">\n${chartGroup(c, `c${i}`)}\n</g>`);
  if (options.title !== undefined) {
    body.unshift(`<text x="${(columns * cellW) / 2}" y="24" text-anchor="middle" font-size="18" font-weight="bold">${escape(options.title)}</text>`);
  }
  return svgDocument(columns * cellW, head + rows * cellH, body.join("\n"));
};

const FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", join(homedir(), ".fonts"), join(homedir(), ".local/share/fonts")];

/**
 * TrueType/OpenType files in the usual font directories. resvg finds the same ones by itself; this
 * is for telling a user why a PNG has no text (Debian: `apt-get install fonts-dejavu-core`).
 */
export const systemFontFiles = (): Array<string> => {
  const found: Array<string> = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name), depth + 1);
      else if (/\.(ttf|otf|ttc)$/i.test(e.name)) found.push(join(dir, e.name));
    }
  };
  FONT_DIRS.forEach((d) => walk(d, 0));
  return found;
};

export interface RasterOptions {
  /** Pixels per SVG unit (default 2, for a crisp image). */
  readonly scale?: number;
  /** Extra font files to load besides the system's. */
  readonly fontFiles?: ReadonlyArray<string>;
}

const rasterize = (svg: string, options: RasterOptions) =>
  new Resvg(svg, {
    fitTo: { mode: "zoom", value: options.scale ?? 2 },
    background: "white",
    font: { loadSystemFonts: true, fontFiles: [...(options.fontFiles ?? [])], defaultFontFamily: "DejaVu Sans" },
  }).render();

/**
 * SVG → PNG bytes. Text is drawn with system fonts; without any installed font resvg silently
 * leaves text out (lines still render).
 */
export const svgToPng = (svg: string, options: RasterOptions = {}): Uint8Array => new Uint8Array(rasterize(svg, options).asPng());

/** SVG → RGBA pixels (row-major, 4 bytes per pixel), for checking what a chart shows. */
export const svgToRgba = (svg: string, options: RasterOptions = {}): { width: number; height: number; data: Uint8Array } => {
  const img = rasterize(svg, options);
  return { width: img.width, height: img.height, data: new Uint8Array(img.pixels) };
};
