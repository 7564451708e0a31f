import * as tf from "@tensorflow/tfjs-core";
import { Data, Either } from "effect";
import type { ParamSpec } from "@patchlm/core";
import { Fused } from "@patchlm/fused";
import type { Grads, Variables } from "./Gradients";

/**
 * AdamW as torch.optim.AdamW (the paper's optimizer, docs/method.md §4): decoupled weight decay
 * p ← p·(1 − lr·wd) on parameters whose spec says `decay` (2-D weights: embeddings and lm_head
 * included, norms not; Hugging Face Trainer groups), then
 *   m ← β1·m + (1−β1)·g,  v ← β2·v + (1−β2)·g²,
 *   p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε).
 * The learning rate arrives with each step (schedules live in @patchlm/schedulers); the step
 * count t is a host number, so bias corrections are computed on the host and no step waits for
 * the device.
 */

export interface Options {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/** The paper's settings: β = (0.9, 0.95), ε = 1e-8, weight decay 0.1. */
export const defaults: Options = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

/** A tensor as plain data, for checkpoints. */
export interface TensorData {
  readonly shape: ReadonlyArray<number>;
  readonly data: Float32Array;
}

/**
 * The optimizer state as named arrays: for each parameter p, `p.exp_avg` (m) and `p.exp_avg_sq`
 * (v), torch's names; `step` is the number of updates applied.
 */
export interface State {
  readonly step: number;
  readonly tensors: Readonly<Record<string, TensorData>>;
}

/** A saved optimizer state that does not fit this optimizer's parameters. */
export class StateError extends Data.TaggedError("OptimizerStateError")<{
  readonly reason: "MissingTensor" | "UnexpectedTensor" | "ShapeMismatch" | "BadStep";
  readonly detail: string;
}> {
  override get message(): string {
    return `optimizer state: ${this.reason}: ${this.detail}`;
  }
}

export interface ApplyOptions {
  /**
   * Multiply every gradient by this scalar first, e.g. `Gradients.clipCoefficient(norm, 1)`:
   * clipping folded into the update, without a scaled copy of each gradient.
   */
  readonly gradScale?: tf.Scalar;
}

export interface Optimizer {
  readonly options: Options;
  /** Updates applied so far. */
  readonly step: number;
  /** One update with learning rate lr. Every parameter needs a gradient, and only those. */
  readonly apply: (grads: Grads, lr: number, opts?: ApplyOptions) => void;
  /** Copy the state to host arrays (one host sync per tensor: call at checkpoint time only). */
  readonly exportState: () => State;
  /** Replace the state with a saved one; on any mismatch nothing changes and the error says what. */
  readonly importState: (state: State) => Either.Either<void, StateError>;
  /** Zero m and v and the step count: the paper's optimizer reset at the patch → token switch. */
  readonly reset: () => void;
  /** Free m and v. The parameters stay with their owner. */
  readonly dispose: () => void;
}

interface Slot {
  readonly param: tf.Variable;
  readonly decay: boolean;
  readonly m: tf.Variable;
  readonly v: tf.Variable;
}

// tf.variable shares the initial tensor's data; disposing the tensor drops only its reference.
const zeroVariable = (like: tf.Tensor): tf.Variable => {
  const zeros = tf.zerosLike(like);
  const v = tf.variable(zeros, false);
  zeros.dispose();
  return v;
};

const momentName = (name: string) => `${name}.exp_avg`;
const velocityName = (name: string) => `${name}.exp_avg_sq`;

/**
 * An AdamW over `params`; `specs` (the model's table plus any extra parameters' specs) says which
 * parameters decay. Every parameter needs a spec; specs without a parameter are ignored.
 */
export const make = (params: Variables, specs: ReadonlyArray<ParamSpec>, options: Partial<Options> = {}): Optimizer => {
  const o: Options = { ...defaults, ...options };
  const decayOf = new Map(specs.map((s) => [s.name, s.decay]));
  const slots = new Map<string, Slot>();
  for (const [name, param] of Object.entries(params)) {
    const decay = decayOf.get(name);
    if (decay === undefined) throw new Error(`AdamW: parameter ${name} has no ParamSpec`);
    slots.set(name, {
      param,
      decay,
      m: zeroVariable(param),
      v: zeroVariable(param),
    });
  }
  let t = 0;

  const checkNames = (grads: Grads) => {
    const missing = [...slots.keys()].filter((n) => grads[n] === undefined);
    const extra = Object.keys(grads).filter((n) => !slots.has(n));
    if (missing.length > 0 || extra.length > 0) {
      throw new Error(`AdamW.apply: gradients missing for [${missing.join(", ")}], unknown [${extra.join(", ")}]`);
    }
  };

  const apply = (grads: Grads, lr: number, opts: ApplyOptions = {}): void => {
    checkNames(grads);
    t += 1;
    const bc1 = 1 - Math.pow(o.beta1, t);
    const bc2 = 1 - Math.pow(o.beta2, t);
    const shared = { beta1: o.beta1, beta2: o.beta2, eps: o.eps, invSqrtBc2: 1 / Math.sqrt(bc2), stepSize: lr / bc1 };
    const decayed: Fused.AdamWAttrs = { ...shared, shrink: 1 - lr * o.weightDecay };
    const plain: Fused.AdamWAttrs = { ...shared, shrink: 1 };
    tf.tidy(() => {
      for (const [name, slot] of slots) {
        // one fused update where the backend has it; the gradient scale s folds into the moment
        // coefficients (1−β1)·s·g and (1−β2)·s²·g², so no scaled copy of g is made
        const next = Fused.adamw(slot.param, slot.m, slot.v, grads[name], slot.decay ? decayed : plain, opts.gradScale);
        slot.m.assign(next.m);
        slot.v.assign(next.v);
        slot.param.assign(next.param);
      }
    });
  };

  const exportState = (): State => {
    const tensors: Record<string, TensorData> = {};
    for (const [name, slot] of slots) {
      // copies: the cpu backend's dataSync returns its live buffer
      tensors[momentName(name)] = { shape: [...slot.m.shape], data: new Float32Array(slot.m.dataSync()) };
      tensors[velocityName(name)] = { shape: [...slot.v.shape], data: new Float32Array(slot.v.dataSync()) };
    }
    return { step: t, tensors };
  };

  const validate = (state: State): StateError | undefined => {
    if (!Number.isInteger(state.step) || state.step < 0) {
      return new StateError({ reason: "BadStep", detail: `step must be a non-negative integer, got ${state.step}` });
    }
    const expected = new Set<string>();
    for (const [name, slot] of slots) {
      for (const key of [momentName(name), velocityName(name)]) {
        expected.add(key);
        const saved = state.tensors[key];
        if (saved === undefined) return new StateError({ reason: "MissingTensor", detail: `no tensor ${key}` });
        const size = saved.shape.reduce((a, b) => a * b, 1);
        if (saved.shape.join(",") !== slot.param.shape.join(",") || saved.data.length !== size) {
          return new StateError({
            reason: "ShapeMismatch",
            detail: `${key}: saved shape [${saved.shape}] with ${saved.data.length} values, parameter shape [${slot.param.shape}]`,
          });
        }
      }
    }
    const unexpected = Object.keys(state.tensors).filter((k) => !expected.has(k));
    if (unexpected.length > 0) return new StateError({ reason: "UnexpectedTensor", detail: `no parameter for ${unexpected.join(", ")}` });
    return undefined;
  };

  const importState = (state: State): Either.Either<void, StateError> => {
    const error = validate(state);
    if (error !== undefined) return Either.left(error);
    tf.tidy(() => {
      for (const [name, slot] of slots) {
        slot.m.assign(tf.tensor(state.tensors[momentName(name)].data, slot.m.shape));
        slot.v.assign(tf.tensor(state.tensors[velocityName(name)].data, slot.v.shape));
      }
    });
    t = state.step;
    return Either.right(undefined);
  };

  const reset = (): void => {
    tf.tidy(() => {
      for (const slot of slots.values()) {
        slot.m.assign(tf.zerosLike(slot.m));
        slot.v.assign(tf.zerosLike(slot.v));
      }
    });
    t = 0;
  };

  const dispose = (): void => {
    for (const slot of slots.values()) {
      slot.m.dispose();
      slot.v.dispose();
    }
    slots.clear();
  };

  return {
    options: o,
    get step() {
      return t;
    },
    apply,
    exportState,
    importState,
    reset,
    dispose,
  };
};
