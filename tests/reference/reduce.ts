// float64 references for reductions over the last dim (x flat, rows of n) and softmax: forward and the
// analytic gradient of sum(f(x) · dy).

/** f applied to each row of n: (rows) outputs. */
function perRow(x: Float64Array, n: number, f: (row: Float64Array) => number): Float64Array {
  const rows = x.length / n;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) out[r] = f(x.subarray(r * n, (r + 1) * n));
  return out;
}

const rowMax = (row: Float64Array) => row.reduce((m, v) => Math.max(m, v), -Infinity);
const rowLse = (row: Float64Array) => {
  const m = rowMax(row);
  return m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
};
/** First index of the max, as torch's max(dim). */
const argmax = (row: Float64Array) => row.reduce((best, v, j) => (v > row[best]! ? j : best), 0);

export const sum = (x: Float64Array, n: number) => perRow(x, n, (row) => row.reduce((s, v) => s + v, 0));
export const mean = (x: Float64Array, n: number) => sum(x, n).map((s) => s / n);
export const max = (x: Float64Array, n: number) => perRow(x, n, rowMax);
export const logsumexp = (x: Float64Array, n: number) => perRow(x, n, rowLse);

export function softmax(x: Float64Array, n: number): Float64Array {
  const lse = logsumexp(x, n);
  return x.map((v, i) => Math.exp(v - lse[Math.floor(i / n)]!));
}

/** dx[r, j] = w(r, j) * dy[r]. */
function rowGrad(x: Float64Array, n: number, dy: Float64Array, w: (r: number, j: number) => number): Float64Array {
  return x.map((_, i) => w(Math.floor(i / n), i % n) * dy[Math.floor(i / n)]!);
}

export const sumGrad = (x: Float64Array, n: number, dy: Float64Array) => rowGrad(x, n, dy, () => 1);
export const meanGrad = (x: Float64Array, n: number, dy: Float64Array) => rowGrad(x, n, dy, () => 1 / n);

export function maxGrad(x: Float64Array, n: number, dy: Float64Array): Float64Array {
  const arg = perRow(x, n, argmax);
  return rowGrad(x, n, dy, (r, j) => (j === arg[r] ? 1 : 0));
}

/** d lse / dx = softmax(x). */
export function logsumexpGrad(x: Float64Array, n: number, dy: Float64Array): Float64Array {
  const p = softmax(x, n);
  return rowGrad(x, n, dy, (r, j) => p[r * n + j]!);
}

/** dx = y * (dy - sum_row(dy * y)), y = softmax(x). */
export function softmaxGrad(x: Float64Array, n: number, dy: Float64Array): Float64Array {
  const y = softmax(x, n);
  const dot = perRow(
    y.map((v, i) => v * dy[i]!),
    n,
    (row) => row.reduce((s, v) => s + v, 0),
  );
  return y.map((v, i) => v * (dy[i]! - dot[Math.floor(i / n)]!));
}
