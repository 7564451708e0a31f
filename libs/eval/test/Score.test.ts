import * as tf from "@tensorflow/tfjs";
import { Config } from "@patchlm/core";
import { Loss } from "@patchlm/losses";
import { Model, Presets } from "@patchlm/model";
import { expectClose, expectNoTensorLeak, randomInts, useBackend } from "@patchlm/testing";
import { Score } from "../src";

const cfg: Config.ModelConfig = { ...Presets.tiny, vocabSize: 50, contextLength: 16 };

describe("Score", () => {
  beforeAll(() => useBackend("cpu"));

  it("next-token log-probs agree with a direct log-softmax of the full forward", () => {
    const params = Model.init(cfg, 3);
    const ids = tf.tensor2d(randomInts(2 * 9, cfg.vocabSize, 5), [2, 9], "int32");
    const got = Score.nextTokenLogProbs(params, cfg, ids).arraySync() as number[][];
    const logits = Model.forward(params, cfg, ids);
    const logp = tf.logSoftmax(logits).arraySync() as number[][][];
    const idsArr = ids.arraySync() as number[][];
    const want = idsArr.map((row, b) => row.slice(1).map((t, i) => logp[b][i][t]));
    expectClose(got, want, { atol: 1e-5, label: "logprobs" });
    tf.dispose([ids, logits]);
    Model.dispose(params);
  });

  it("windowNll equals the token cross-entropy times the count, without leaking", async () => {
    const params = Model.init(cfg, 4);
    const tokens = randomInts(3 * 12, cfg.vocabSize, 6);
    const s = await expectNoTensorLeak(() => Score.windowNll(params, cfg, tokens, 3, 12));
    expect(s.tokens).toBe(3 * 11);
    const ce = tf.tidy(() => {
      const ids = tf.tensor2d(tokens, [3, 12], "int32");
      const z = tf.slice(Model.forward(params, cfg, ids), [0, 0, 0], [3, 11, cfg.vocabSize]);
      return Loss.tokenCrossEntropy(z, tf.slice(ids, [0, 1], [3, 11])).dataSync()[0];
    });
    expectClose(s.nll / s.tokens, ce, { atol: 1e-5 });
    const sum = Score.summarize(Score.addNll(Score.emptyNll, s));
    expectClose(sum.ppl, Math.exp(ce), { rtol: 1e-5 });
    Model.dispose(params);
  });
});
