/**
 * What the fused ops of @patchlm/native buy in a full training step, before the model, loss and
 * optimizer libs adopt them: the reference-config step (B=8, T=256, AdamW, clip 1.0, fp32) as
 * libs/train runs it, next to the same step written with Fused.rmsNorm, Fused.swiglu,
 * Fused.causalAttention, Fused.weightedCrossEntropy and Fused.adamw. JSON on stdout.
 *
 *   npx tsx tools/bench-native-fused.ts [--backend native] [--modes token,patch] [--steps 3]
 *
 * The fused step is a benchmark prototype of the adoption, not a second model: it follows
 * libs/model's forward (pre-norm RMSNorm, RoPE rotate-half, causal MHA, SwiGLU, untied head) and
 * libs/train's objective (mean patch embedding, bag loss with weights 1/(K·R)); its first losses
 * are printed next to the library step's so the two can be compared.
 */
import * as tf from "@tensorflow/tfjs";
import { ComputeBackend } from "@patchlm/backend";
import { Config } from "@patchlm/core";
import { Model, ParameterTable, Presets } from "@patchlm/model";
import { Fused } from "@patchlm/native";
import { AdamW, Gradients } from "@patchlm/optim";
import { Patches } from "@patchlm/patching";
import { randomInts } from "@patchlm/testing";
import { Step } from "@patchlm/train";
import { Effect } from "effect";
import { loadavg } from "node:os";
import { openblasReport, printReport } from "./bench-native-env";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const backend = flag("backend", "native") as ComputeBackend.BackendName;
const modes = flag("modes", "token,patch").split(",") as Array<"token" | "patch">;
const steps = Number(flag("steps", "3"));
const cfg = Presets.reference;
const B = 8;
const T = cfg.contextLength;
const C = cfg.dModel;
const H = cfg.nHeads;
const D = Config.headDim(cfg);
const Names = ParameterTable.Names;

/** RoPE tables (T,1,D) for positions 0..T−1 and the rotate-half matrix, as libs/model builds them. */
const rope = () => {
  const half = D / 2;
  const cos = new Float32Array(T * D);
  const sin = new Float32Array(T * D);
  for (let p = 0; p < T; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(cfg.ropeBase, (-2 * i) / D);
      cos[p * D + i] = cos[p * D + half + i] = Math.cos(angle);
      sin[p * D + i] = sin[p * D + half + i] = Math.sin(angle);
    }
  }
  const r = new Float32Array(D * D);
  for (let d = 0; d < half; d++) {
    r[(d + half) * D + d] = -1;
    r[d * D + d + half] = 1;
  }
  return { cos: tf.tensor3d(cos, [T, 1, D]), sin: tf.tensor3d(sin, [T, 1, D]), rotate: tf.tensor2d(r, [D, D]) };
};

type Rope = ReturnType<typeof rope>;

const linear = (x: tf.Tensor2D, w: tf.Tensor): tf.Tensor2D => tf.matMul(x, w as tf.Tensor2D, false, true);

// (B,H,T,D) <- rope of (B·T,C) projections viewed as (B,T,H,D)
const heads = (x: tf.Tensor2D, r: Rope | undefined): tf.Tensor4D => {
  let t = tf.reshape(x, [B, T, H, D]) as tf.Tensor4D;
  if (r !== undefined) {
    const rotated = tf.reshape(tf.matMul(tf.reshape(t, [B * T * H, D]), r.rotate), [B, T, H, D]);
    t = tf.add(tf.mul(t, r.cos), tf.mul(rotated, r.sin)) as tf.Tensor4D;
  }
  return tf.transpose(t, [0, 2, 1, 3]);
};

/** The fused step's loss: ids (B, K·T) -> the bag loss with K targets per scored position. */
const fusedLoss = (params: Model.Params, ids: tf.Tensor2D, K: number, r: Rope): tf.Scalar => {
  const tokens = Model.embed(params, cfg, ids); // (B,K·T,C)
  const x = K === 1 ? tokens : tf.mean(tf.reshape(tokens, [B, T, K, C]), 2); // (B,T,C)
  let h = tf.reshape(x, [B * T, C]) as tf.Tensor2D;
  for (let l = 0; l < cfg.nLayers; l++) {
    const n = Names.layer(l);
    const a = Fused.rmsNorm(h, params[n.inputNorm], cfg.normEps);
    const o = Fused.causalAttention(heads(linear(a, params[n.q]), r), heads(linear(a, params[n.k]), r), heads(linear(a, params[n.v]), undefined), 1 / Math.sqrt(D));
    h = tf.add(h, linear(tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * T, C]) as tf.Tensor2D, params[n.o]));
    const m = Fused.rmsNorm(h, params[n.postNorm], cfg.normEps);
    h = tf.add(h, linear(Fused.swiglu(linear(m, params[n.gate]), linear(m, params[n.up])), params[n.down]));
  }
  const final = tf.reshape(Fused.rmsNorm(h, params[Names.finalNorm], cfg.normEps), [B, T, C]);
  const scored = tf.reshape(tf.slice(final, [0, 0, 0], [B, T - 1, C]), [B * (T - 1), C]) as tf.Tensor2D;
  const logits = linear(scored, params[Names.lmHead]); // (R,V)
  const targets = tf.reshape(Patches.nextPatchTargets(ids, K), [B * (T - 1), K]) as tf.Tensor2D;
  return Fused.weightedCrossEntropy(logits, targets, tf.fill([B * (T - 1), K], 1 / (B * (T - 1) * K)) as tf.Tensor2D);
};

const fusedStep = (params: Model.Params, K: number, r: Rope) => {
  const decay = new Map(ParameterTable.make(cfg).map((s) => [s.name, s.decay]));
  const moments = Object.fromEntries(Object.entries(params).map(([name, p]) => [name, { m: tf.variable(tf.zerosLike(p), false), v: tf.variable(tf.zerosLike(p), false) }]));
  let t = 0;
  const step = (ids: tf.Tensor2D, lr: number) =>
    tf.tidy(() => {
      const { value, grads } = Gradients.valueAndGrads(params, () => fusedLoss(params, ids, K, r));
      const scale = Gradients.clipCoefficient(Gradients.globalNorm(grads), 1.0);
      t += 1;
      for (const [name, p] of Object.entries(params)) {
        const s = moments[name];
        const out = Fused.adamw(p, s.m, s.v, grads[name], {
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          invSqrtBc2: 1 / Math.sqrt(1 - 0.95 ** t),
          shrink: decay.get(name) ? 1 - lr * 0.1 : 1,
          stepSize: lr / (1 - 0.9 ** t),
        }, scale);
        p.assign(out.param);
        s.m.assign(out.m);
        s.v.assign(out.v);
      }
      return value;
    });
  return { step, dispose: () => Object.values(moments).forEach((s) => tf.dispose([s.m, s.v])) };
};

const measure = (once: () => number) => {
  const losses = [once()];
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) losses.push(once());
  return { secondsPerStep: (performance.now() - t0) / 1000 / steps, losses };
};

const run = (mode: "token" | "patch", variant: "library" | "fused") => {
  const K = mode === "patch" ? 4 : 1;
  const params = Model.init(cfg, 1);
  const ids = tf.tensor2d(randomInts(B * T * K, cfg.vocabSize, 7), [B, T * K], "int32");
  const r = rope();
  let result: { secondsPerStep: number; losses: Array<number> };
  if (variant === "library") {
    const optimizer = AdamW.make(params, ParameterTable.make(cfg));
    const step = Step.makeTrainStep({ cfg, K, params, optimizer });
    result = measure(() => {
      const out = step(ids, 1e-3);
      const loss = out.loss.dataSync()[0];
      tf.dispose([out.loss, out.gradNorm]);
      return loss;
    });
    optimizer.dispose();
  } else {
    const fused = fusedStep(params, K, r);
    result = measure(() => {
      const loss = fused.step(ids, 1e-3);
      const value = loss.dataSync()[0];
      loss.dispose();
      return value;
    });
    fused.dispose();
  }
  tf.dispose([ids, r.cos, r.sin, r.rotate]);
  Model.dispose(params);
  const tokens = B * T * K;
  const gflops = (ParameterTable.flopsPerToken(cfg, T, K) * tokens) / result.secondsPerStep / 1e9;
  return { mode, variant, tokensPerSecond: Math.round(tokens / result.secondsPerStep), secondsPerStep: result.secondsPerStep, gflops, losses: result.losses };
};

const main = Effect.gen(function* () {
  const service = yield* ComputeBackend.make({ backend });
  const results = modes.flatMap((mode) =>
    (["library", "fused"] as const).map((variant) => {
      const r = run(mode, variant);
      return { ...r, gflops: Math.round(r.gflops * 10) / 10, mfu: service.peakGflops === undefined ? null : Math.round((r.gflops / service.peakGflops) * 1000) / 1000 };
    }),
  );
  return { benchmark: "training step, library ops vs Fused ops", backend, threads: service.threads, config: { B, T, preset: "reference", steps }, openblas: openblasReport(), loadAverage: loadavg(), results };
});

printReport(main);
