/**
 * A parameter's declaration: the single source for init, parameter counts, weight-decay groups
 * and checkpoint tensor names. The model's table and a patch strategy's extra parameters both use it.
 */
export interface ParamSpec {
  /** Checkpoint name, Hugging Face LLaMA style, e.g. "model.layers.0.self_attn.q_proj.weight". */
  readonly name: string;
  /** Shape as stored (row-major). */
  readonly shape: ReadonlyArray<number>;
  /** How to initialise: normal(0, std), or constant ones/zeros (norm gains). */
  readonly init: { readonly kind: "normal"; readonly std: number } | { readonly kind: "ones" } | { readonly kind: "zeros" };
  /** AdamW weight decay applies (2-D weights yes; norms no). */
  readonly decay: boolean;
}

/** Number of scalars in a parameter. */
export const paramSize = (p: ParamSpec): number => p.shape.reduce((a, b) => a * b, 1);

/** Total scalars over a table. */
export const paramCount = (table: ReadonlyArray<ParamSpec>): number => table.reduce((n, p) => n + paramSize(p), 0);
