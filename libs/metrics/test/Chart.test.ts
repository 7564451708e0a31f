import { Chart, LossCurve, MetricRecord } from "../src";

const pngSize = (png: Uint8Array): [number, number] => {
  expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return [v.getUint32(16), v.getUint32(20)];
};

const base: Chart.ChartSpec = { title: "T", xLabel: "x", yLabel: "y", series: [], yDomain: [0, 2] };
const flat = (dashed: boolean): Chart.Series => ({ name: "s", points: [[0, 1], [10, 1]], color: "#ff0000", dashed, dots: false });

/** Pixels that are mostly the given colour along one row or column of an RGBA image. */
const countColour = (img: { width: number; data: Uint8Array }, pick: (i: number) => [number, number], n: number, rgb: [number, number, number]) => {
  let count = 0;
  for (let i = 0; i < n; i++) {
    const [x, y] = pick(i);
    const o = 4 * (y * img.width + x);
    if ([0, 1, 2].every((c) => Math.abs(img.data[o + c] - rgb[c]) < 48)) count++;
  }
  return count;
};

describe("Chart axes", () => {
  it("picks 1-2-5 tick steps", () => {
    expect([10, 1, 0.07, 1e9, 7].map((r) => Chart.niceStep(r))).toEqual([2, 0.2, 0.01, 2e8, 1]);
  });

  it("labels ticks with SI prefixes for large values and enough decimals for small steps", () => {
    const svg = Chart.renderLineChart({ ...base, yDomain: undefined, series: [{ name: "a", points: [[0, 2.31], [1.4e6, 2.47]] }] });
    for (const label of ["0", "0.2M", "1.4M", "2.30", "2.32", "2.48"]) expect(svg).toContain(`>${label}</text>`);
  });

  it("draws log axes with a tick per decade", () => {
    const svg = Chart.renderLineChart({ ...base, logX: true, series: [{ name: "a", points: [[1, 1], [1e6, 1]] }] });
    for (const label of ["1", "10", "100", "1k", "10k", "100k", "1M"]) expect(svg).toContain(`>${label}</text>`);
  });
});

describe("Chart.renderLineChart", () => {
  it("writes title, axis labels, an escaped legend, dashed series and labelled markers", () => {
    const svg = Chart.renderLineChart({
      title: "Loss <run & co>",
      xLabel: "tokens",
      yLabel: "loss",
      series: [
        { name: "a <b> & c", points: [[0, 3], [1, 2], [2, Number.NaN], [3, 1], [4, 0.5]] },
        { name: "patch", points: [[0, 2], [4, 1.5]], dashed: true },
      ],
      markers: [{ x: 2, label: "switch" }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="800" height="480"')).toBe(true);
    expect(svg).toContain(">Loss &lt;run &amp; co&gt;</text>");
    expect(svg).toContain(">a &lt;b&gt; &amp; c</text>");
    expect(svg).toContain(">tokens</text>");
    expect(svg).toContain(">switch</text>");
    const paths = [...svg.matchAll(/<path d="([^"]+)"[^>]*>/g)];
    expect(paths).toHaveLength(2);
    expect(paths[0][1].match(/M/g)).toHaveLength(2); // the NaN point breaks the line
    expect(paths[1][0]).toContain('stroke-dasharray="7 4"');
  });

  it("renders to a PNG at the requested scale, with lines where the data is", () => {
    expect(pngSize(Chart.svgToPng(Chart.renderLineChart(base)))).toEqual([1600, 960]);
    const solid = Chart.svgToRgba(Chart.renderLineChart({ ...base, series: [flat(false)] }), { scale: 1 });
    const dashed = Chart.svgToRgba(Chart.renderLineChart({ ...base, series: [flat(true)] }), { scale: 1 });
    expect([solid.width, solid.height]).toEqual([800, 480]);
    // y = 1 of [0, 2] is row 235 (plot from 40 to 430), x from 70 to 782
    const row = (img: typeof solid) => countColour(img, (i) => [100 + i, 235], 600, [255, 0, 0]);
    expect(row(solid)).toBeGreaterThan(590);
    expect(row(dashed)).toBeGreaterThan(300);
    expect(row(dashed)).toBeLessThan(500);
    const marked = Chart.svgToRgba(Chart.renderLineChart({ ...base, markers: [{ x: 5, label: "" }], series: [flat(false)] }), { scale: 1 });
    // marker at x = 5 of [0, 10]: column 426, dashed and anti-aliased, so count grey-or-darker pixels
    const column = countColour(marked, (i) => [426, 250 + i], 150, [0x60, 0x60, 0x60]);
    expect(column).toBeGreaterThan(50);
    expect(column).toBeLessThan(140);
  });

  const fonts = Chart.systemFontFiles();
  (fonts.length > 0 ? it : it.skip)("draws text with a system font (needs e.g. Debian fonts-dejavu-core)", () => {
    const ink = (title: string) => {
      const img = Chart.svgToRgba(Chart.renderLineChart({ ...base, title }), { scale: 1 });
      return countColour(img, (i) => [300 + (i % 200), 8 + Math.floor(i / 200)], 200 * 24, [17, 17, 17]);
    };
    expect(ink("")).toBe(0);
    expect(ink("Validation loss")).toBeGreaterThan(100);
  });
});

describe("Chart.renderPanels", () => {
  it("lays charts out in a grid under a heading", () => {
    const svg = Chart.renderPanels([base, base, base], { title: "Runs" });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="994"')).toBe(true);
    expect(svg).toContain('<g transform="translate(800 34)">');
    expect(svg).toContain('<g transform="translate(0 514)">');
    expect(new Set([...svg.matchAll(/clipPath id="([^"]+)"/g)].map((m) => m[1])).size).toBe(3);
  });
});

describe("LossCurve", () => {
  const { Keys } = MetricRecord;
  const records: Array<MetricRecord.MetricRecord> = [];
  for (let step = 10; step <= 60; step += 10) {
    const phase = step <= 40 ? "patch" : "token";
    const common = { step, phase, tokens: 0, flops: 0, wallSeconds: 1, totalTokens: step * 100, totalFlops: step * (phase === "patch" ? 25 : 100), elapsedSeconds: step } as const;
    records.push({ ...common, values: { [Keys.loss]: 5 - step / 20, [Keys.lr]: 1e-3 } });
    if (step % 20 === 0) records.push({ ...common, values: { [Keys.valLoss]: 6 - step / 20 } });
  }

  it("plots token-level validation loss as one line, patch-phase training loss apart and dashed, and marks the switch", () => {
    const [byTokens, byFlops] = LossCurve.charts(records, { patchSize: 4 });
    expect(byTokens.series.map((s) => [s.name, s.dashed ?? false, s.points.length])).toEqual([
      ["validation loss (token-level)", false, 3],
      ["train loss, patch phase (bag loss, floor ln 4 = 1.386)", true, 4],
      ["train loss, token phase", false, 2],
    ]);
    expect(byTokens.series[0].points).toEqual([[2000, 5], [4000, 4], [6000, 3]]);
    expect(byTokens.markers).toEqual([{ x: 4000, label: "switch to token level" }]);
    expect(byFlops.markers).toEqual([{ x: 1000, label: "switch to token level" }]);
    expect(byFlops.xLabel).toBe("training FLOPs");
    expect(LossCurve.charts(records, { switchAt: { totalTokens: 4100, totalFlops: 1010 } })[1].markers).toEqual([{ x: 1010, label: "switch to token level" }]);
  });

  it("renders both panels into one PNG", () => {
    expect(pngSize(LossCurve.png(records, { patchSize: 4 }))).toEqual([3200, 960]);
  });
});
