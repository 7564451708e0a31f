import type { Tensor, TensorMap } from "../Safetensors";

/** The first non-finite element of a tensor map, or undefined. Integer dtypes are always finite. */
export const findNonFinite = (tensors: TensorMap): { name: string; index: number; value: string } | undefined => {
  for (const [name, t] of Object.entries(tensors)) {
    const index = firstNonFinite(t);
    if (index >= 0) return { name, index, value: describe(t, index) };
  }
  return undefined;
};

// 16-bit floats are stored as bit patterns: all-ones exponent means Inf or NaN.
const HALF_EXPONENT: Partial<Record<Tensor["dtype"], number>> = { F16: 0x7c00, BF16: 0x7f80 };

const firstNonFinite = (t: Tensor): number => {
  if (t.dtype === "F32" || t.dtype === "F64") {
    const d = t.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return i;
    return -1;
  }
  const mask = HALF_EXPONENT[t.dtype];
  if (mask === undefined) return -1;
  const d = t.data as Uint16Array;
  for (let i = 0; i < d.length; i++) if ((d[i] & mask) === mask) return i;
  return -1;
};

const describe = (t: Tensor, i: number): string => {
  const v = t.data[i];
  return typeof v === "number" && (t.dtype === "F32" || t.dtype === "F64") ? String(v) : `a non-finite ${t.dtype} (0x${v.toString(16)})`;
};
