// The browser tests' numeric checks, NaN-proof like bd3lm::tolerance (crates/bd3lm/src/tools/
// tolerance.rs): a NaN or an infinity never passes, whichever way the comparison is written.

// Whether `x` is a finite number no larger than `bound`.
export const within = (x, bound) => Number.isFinite(x) && x <= bound;

// |a - b|, or Infinity when either side is NaN or infinite.
export const absDiff = (a, b) => (Number.isFinite(a) && Number.isFinite(b) ? Math.abs(a - b) : Infinity);

// The largest absDiff over two equally long arrays (Infinity when the lengths differ).
export const maxAbsDiff = (a, b) => (a.length !== b.length ? Infinity
  : a.reduce((m, x, i) => Math.max(m, absDiff(x, b[i])), 0));
