export interface CloseOptions {
  /** Absolute tolerance. */
  readonly atol?: number;
  /** Relative tolerance, against |expected|. */
  readonly rtol?: number;
  /** Shown in the failure message. */
  readonly label?: string;
}

type Numeric = number | ArrayLike<number> | ReadonlyArray<ReadonlyArray<number>>;

const flatten = (x: Numeric): Array<number> => {
  if (typeof x === "number") return [x];
  const out: Array<number> = [];
  for (let i = 0; i < x.length; i++) {
    const v = (x as ArrayLike<unknown>)[i];
    if (typeof v === "number") out.push(v);
    else out.push(...flatten(v as Numeric));
  }
  return out;
};

export interface CloseReport {
  readonly maxAbsDiff: number;
  readonly worstIndex: number;
}

/** Max absolute difference and where it is. NaN in either input counts as an infinite difference. */
export const compareClose = (actual: Numeric, expected: Numeric): CloseReport => {
  const a = flatten(actual);
  const e = flatten(expected);
  if (a.length !== e.length) throw new Error(`length mismatch: actual ${a.length}, expected ${e.length}`);
  let maxAbsDiff = 0;
  let worstIndex = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Number.isNaN(a[i]) || Number.isNaN(e[i]) ? Infinity : a[i] === e[i] ? 0 : Math.abs(a[i] - e[i]);
    if (d > maxAbsDiff || worstIndex < 0) {
      maxAbsDiff = Math.max(maxAbsDiff, d);
      if (d >= maxAbsDiff) worstIndex = i;
    }
  }
  return { maxAbsDiff, worstIndex };
};

/**
 * Assert elementwise closeness: |a - e| <= atol + rtol·|e| for every element. The failure message
 * prints the max difference and the worst element, so a near miss is diagnosable from CI logs.
 */
export const expectClose = (actual: Numeric, expected: Numeric, opts: CloseOptions = {}): CloseReport => {
  const atol = opts.atol ?? 1e-6;
  const rtol = opts.rtol ?? 0;
  const a = flatten(actual);
  const e = flatten(expected);
  if (a.length !== e.length) {
    throw new Error(`${opts.label ?? "expectClose"}: length mismatch: actual ${a.length}, expected ${e.length}`);
  }
  const report = compareClose(a, e);
  for (let i = 0; i < a.length; i++) {
    const ok = a[i] === e[i] || Math.abs(a[i] - e[i]) <= atol + rtol * Math.abs(e[i]);
    if (!ok) {
      throw new Error(
        `${opts.label ?? "expectClose"}: element ${i} actual ${a[i]} expected ${e[i]} ` +
          `(max |diff| ${report.maxAbsDiff.toExponential(3)} at ${report.worstIndex}; atol ${atol}, rtol ${rtol})`,
      );
    }
  }
  return report;
};
