/** The optimizer's tests, run once per backend (optim.cpu.test.ts, optim.wasm.test.ts). */
import * as tf from "@tensorflow/tfjs";
import { Either } from "effect";
import type { ParamSpec } from "@patchlm/core";
import { expectClose, expectNoTensorLeak, randomFloats } from "@patchlm/testing";
import { AdamW, Gradients } from "../src";

const specs: ReadonlyArray<ParamSpec> = [
  { name: "layer.weight", shape: [3, 4], init: { kind: "normal", std: 0.02 }, decay: true },
  { name: "norm.weight", shape: [4], init: { kind: "ones" }, decay: false },
];

const initial: Record<string, Float32Array> = {
  "layer.weight": randomFloats(12, 1),
  "norm.weight": randomFloats(4, 2, 0.5, 1.5),
};

const makeParams = (): Gradients.Variables =>
  Object.fromEntries(specs.map((s) => [s.name, tf.variable(tf.tensor(initial[s.name], [...s.shape]))]));

const disposeAll = (p: Gradients.Variables) => Object.values(p).forEach((v) => v.dispose());

/** Per-step gradients: arrays of host values, seeded. */
const gradientsAt = (step: number): Record<string, Float32Array> => ({
  "layer.weight": randomFloats(12, 10 + step, -2, 2),
  "norm.weight": randomFloats(4, 20 + step, -2, 2),
});

const toTensors = (g: Record<string, Float32Array>): Gradients.Grads =>
  Object.fromEntries(specs.map((s) => [s.name, tf.tensor(g[s.name], [...s.shape])]));

/** torch.optim.AdamW's update in float64, straight from its documented algorithm. */
const adamwReference = (
  lrs: ReadonlyArray<number>,
  o: AdamW.Options,
): Record<string, { p: Float64Array; m: Float64Array; v: Float64Array }> => {
  const out: Record<string, { p: Float64Array; m: Float64Array; v: Float64Array }> = {};
  for (const s of specs) {
    const p = Float64Array.from(initial[s.name]);
    const m = new Float64Array(p.length);
    const v = new Float64Array(p.length);
    lrs.forEach((lr, i) => {
      const t = i + 1;
      const g = gradientsAt(i)[s.name];
      for (let j = 0; j < p.length; j++) {
        if (s.decay) p[j] *= 1 - lr * o.weightDecay;
        m[j] = o.beta1 * m[j] + (1 - o.beta1) * g[j];
        v[j] = o.beta2 * v[j] + (1 - o.beta2) * g[j] * g[j];
        const denom = Math.sqrt(v[j]) / Math.sqrt(1 - o.beta2 ** t) + o.eps;
        p[j] -= (lr / (1 - o.beta1 ** t)) * (m[j] / denom);
      }
    });
    out[s.name] = { p, m, v };
  }
  return out;
};

const runSteps = (opt: AdamW.Optimizer, lrs: ReadonlyArray<number>, from = 0) =>
  lrs.forEach((lr, i) => {
    const g = toTensors(gradientsAt(from + i));
    opt.apply(g, lr);
    tf.dispose(g);
  });

export const optimSuite = (backend: string): void => {
  describe(`optim on ${backend}`, () => {
    beforeAll(async () => {
      await tf.setBackend(backend);
      await tf.ready();
      expect(tf.getBackend()).toBe(backend);
    });

    describe("AdamW", () => {
      const lrs = [0.1, 0.05, 0.2];

      it.each([
        ["decay 0.1 (default)", {}],
        ["decay off", { weightDecay: 0 }],
        ["large decay, other betas and eps", { weightDecay: 0.5, beta1: 0.8, beta2: 0.99, eps: 1e-3 }],
      ] as const)("matches torch's AdamW in float64 over 3 steps (%s)", (label, options) => {
        const params = makeParams();
        const opt = AdamW.make(params, specs, options);
        expect(opt.options).toEqual({ ...AdamW.defaults, ...options });
        runSteps(opt, lrs);
        const want = adamwReference(lrs, opt.options);
        const state = opt.exportState();
        expect(state.step).toBe(3);
        for (const s of specs) {
          const r = expectClose(params[s.name].dataSync(), want[s.name].p, { atol: 1e-6, rtol: 1e-6, label: `${label} ${s.name}` });
          console.log(`${backend} AdamW ${label} ${s.name}: max |diff| ${r.maxAbsDiff.toExponential(2)}`);
          expectClose(state.tensors[`${s.name}.exp_avg`].data, want[s.name].m, { atol: 1e-6, rtol: 1e-6 });
          expectClose(state.tensors[`${s.name}.exp_avg_sq`].data, want[s.name].v, { atol: 1e-6, rtol: 1e-6 });
        }
        opt.dispose();
        disposeAll(params);
      });

      it("decays only parameters whose spec says so", () => {
        // zero gradients: the Adam term is 0/(0+ε) = 0, so only decay moves a parameter
        const params = makeParams();
        const opt = AdamW.make(params, specs, { weightDecay: 0.5 });
        const zeros = Object.fromEntries(specs.map((s) => [s.name, tf.zeros([...s.shape])]));
        opt.apply(zeros, 0.1);
        expectClose(params["layer.weight"].dataSync(), Array.from(initial["layer.weight"], (x) => x * 0.95), { atol: 1e-7 });
        expectClose(params["norm.weight"].dataSync(), initial["norm.weight"], { atol: 0 });
        tf.dispose(zeros);
        opt.dispose();
        disposeAll(params);
      });

      it("folds a gradient scale into the update exactly like pre-scaled gradients", () => {
        const [a, b] = [makeParams(), makeParams()];
        const [optA, optB] = [AdamW.make(a, specs), AdamW.make(b, specs)];
        const scale = tf.scalar(0.37);
        for (let i = 0; i < 3; i++) {
          const g = toTensors(gradientsAt(i));
          optA.apply(g, 0.1, { gradScale: scale });
          const scaled = Object.fromEntries(Object.entries(g).map(([k, t]) => [k, tf.mul(t, scale)]));
          optB.apply(scaled, 0.1);
          tf.dispose([g, scaled]);
        }
        for (const s of specs) expectClose(a[s.name].dataSync(), b[s.name].dataSync(), { atol: 1e-6, rtol: 1e-6 });
        scale.dispose();
        [optA, optB].forEach((o) => o.dispose());
        [a, b].forEach(disposeAll);
      });

      it("requires exactly one gradient per parameter", () => {
        const params = makeParams();
        const opt = AdamW.make(params, specs);
        const g = toTensors(gradientsAt(0));
        expect(() => opt.apply({ "layer.weight": g["layer.weight"] }, 0.1)).toThrow(/missing for \[norm.weight\]/);
        expect(() => opt.apply({ ...g, stray: g["norm.weight"] }, 0.1)).toThrow(/unknown \[stray\]/);
        expect(opt.step).toBe(0);
        expect(() => AdamW.make({ ...params, extra: params["norm.weight"] }, specs)).toThrow(/extra has no ParamSpec/);
        tf.dispose(g);
        opt.dispose();
        disposeAll(params);
      });

      it("round-trips its state: a restored optimizer continues exactly like the original", () => {
        const [a, b] = [makeParams(), makeParams()];
        const optA = AdamW.make(a, specs);
        runSteps(optA, [0.1, 0.05]);
        // b gets a's parameters and optimizer state, as when resuming from a checkpoint
        for (const s of specs) b[s.name].assign(a[s.name]);
        const optB = AdamW.make(b, specs);
        const saved = optA.exportState();
        expect(Object.keys(saved.tensors).sort()).toEqual([
          "layer.weight.exp_avg",
          "layer.weight.exp_avg_sq",
          "norm.weight.exp_avg",
          "norm.weight.exp_avg_sq",
        ]);
        expect(Either.isRight(optB.importState(saved))).toBe(true);
        expect(optB.step).toBe(2);
        runSteps(optA, [0.2], 2);
        runSteps(optB, [0.2], 2);
        for (const s of specs) expectClose(b[s.name].dataSync(), a[s.name].dataSync(), { atol: 0 });
        // the exported arrays are copies, not views of live buffers
        expect(Array.from(saved.tensors["layer.weight.exp_avg"].data)).not.toEqual(
          Array.from(optA.exportState().tensors["layer.weight.exp_avg"].data),
        );
        [optA, optB].forEach((o) => o.dispose());
        [a, b].forEach(disposeAll);
      });

      it("rejects a state that does not fit, changing nothing", () => {
        const params = makeParams();
        const opt = AdamW.make(params, specs);
        runSteps(opt, [0.1]);
        const good = opt.exportState();
        const { ["norm.weight.exp_avg"]: _dropped, ...rest } = good.tensors;
        const cases: ReadonlyArray<readonly [AdamW.State, string]> = [
          [{ step: 1, tensors: rest }, "MissingTensor"],
          [{ step: 1, tensors: { ...good.tensors, "other.exp_avg": good.tensors["norm.weight.exp_avg"] } }, "UnexpectedTensor"],
          [{ step: 1, tensors: { ...good.tensors, "norm.weight.exp_avg": { shape: [2, 2], data: new Float32Array(4) } } }, "ShapeMismatch"],
          [{ step: -1, tensors: good.tensors }, "BadStep"],
        ];
        for (const [state, reason] of cases) {
          const r = opt.importState(state);
          expect(Either.isLeft(r) && r.left.reason).toBe(reason);
        }
        expect(opt.exportState()).toEqual(good);
        opt.dispose();
        disposeAll(params);
      });

      it("resets to a fresh optimizer's behaviour (the patch -> token switch)", () => {
        const [a, b] = [makeParams(), makeParams()];
        const optA = AdamW.make(a, specs);
        runSteps(optA, [0.1, 0.1]);
        optA.reset();
        expect(optA.step).toBe(0);
        for (const d of Object.values(optA.exportState().tensors)) expect(d.data.every((x) => x === 0)).toBe(true);
        for (const s of specs) b[s.name].assign(a[s.name]);
        const optB = AdamW.make(b, specs);
        runSteps(optA, [0.05]);
        runSteps(optB, [0.05]);
        for (const s of specs) expectClose(a[s.name].dataSync(), b[s.name].dataSync(), { atol: 0 });
        [optA, optB].forEach((o) => o.dispose());
        [a, b].forEach(disposeAll);
      });

      it("leaves no tensors behind across steps, and dispose frees its state", async () => {
        const params = makeParams();
        await expectNoTensorLeak(() => {
          const opt = AdamW.make(params, specs);
          const g = toTensors(gradientsAt(0));
          const before = tf.memory().numTensors;
          for (let i = 0; i < 5; i++) {
            const norm = Gradients.globalNorm(g);
            const coef = Gradients.clipCoefficient(norm, 1);
            opt.apply(g, 0.01, { gradScale: coef });
            tf.dispose([norm, coef]);
          }
          expect(tf.memory().numTensors).toBe(before);
          tf.dispose(g);
          opt.dispose();
        });
        disposeAll(params);
      });
    });

    describe("Gradients", () => {
      const host = gradientsAt(5);
      const hostNorm = Math.sqrt(Object.values(host).reduce((s, a) => s + a.reduce((t, x) => t + x * x, 0), 0));

      it("computes the global norm over all gradients", () => {
        const g = toTensors(host);
        const norm = Gradients.globalNorm(g);
        expectClose(norm.dataSync()[0], hostNorm, { rtol: 1e-6 });
        tf.dispose([g, norm]);
      });

      it("clips to maxNorm when above it, like torch clip_grad_norm_: min(1, maxNorm / (norm + 1e-6))", () => {
        const g = toTensors(host);
        const norm = Gradients.globalNorm(g);
        const maxNorm = hostNorm / 4;
        const coef = Gradients.clipCoefficient(norm, maxNorm);
        expectClose(coef.dataSync()[0], maxNorm / (hostNorm + 1e-6), { rtol: 1e-6 });
        const clipped = tf.tidy(() => Gradients.globalNorm(Object.fromEntries(Object.entries(g).map(([n, t]) => [n, tf.mul(t, coef)]))));
        expectClose(clipped.dataSync()[0], maxNorm, { rtol: 1e-5 });
        tf.dispose([g, norm, coef, clipped]);
      });

      it("leaves gradients below maxNorm unchanged (a coefficient of exactly 1)", () => {
        const g = toTensors(host);
        const norm = Gradients.globalNorm(g);
        const coef = Gradients.clipCoefficient(norm, hostNorm * 2);
        expect(coef.dataSync()[0]).toBe(1);
        tf.dispose([g, norm, coef]);
      });

      it("returns loss gradients keyed by parameter name", () => {
        const params = makeParams();
        const { value, grads } = Gradients.valueAndGrads(params, () =>
          tf.add(tf.sum(tf.square(params["layer.weight"])), tf.sum(params["norm.weight"])) as tf.Scalar,
        );
        expect(Object.keys(grads).sort()).toEqual(["layer.weight", "norm.weight"]);
        expectClose(grads["layer.weight"].dataSync(), Array.from(initial["layer.weight"], (x) => 2 * x), { atol: 1e-6 });
        expectClose(grads["norm.weight"].dataSync(), [1, 1, 1, 1], { atol: 0 });
        const sq = initial["layer.weight"].reduce((s, x) => s + x * x, 0) + initial["norm.weight"].reduce((s, x) => s + x, 0);
        expectClose(value.dataSync()[0], sq, { rtol: 1e-6 });
        tf.dispose([value, grads]);
        disposeAll(params);
      });
    });
  });
};
