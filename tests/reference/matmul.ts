// float64 reference for matmul: C = A'·B' per batch, with A' = A [M, K] or Aᵀ (A stored [K, M]) and
// B' = B [K, N] or Bᵀ (B stored [N, K]). An operand of one matrix's size (while batch > 1) is shared by the
// batch. Gradients: dA' = dC·B'ᵀ, dB' = A'ᵀ·dC, summed over the batch for a shared operand.

/** Element (i, k) of A' in batch z, as a flat index into a. */
function indexA(z: number, i: number, k: number, M: number, K: number, transA: boolean, shared: boolean): number {
  return (shared ? 0 : z * M * K) + (transA ? k * M + i : i * K + k);
}

/** Element (k, j) of B' in batch z, as a flat index into b. */
function indexB(z: number, k: number, j: number, K: number, N: number, transB: boolean, shared: boolean): number {
  return (shared ? 0 : z * K * N) + (transB ? j * K + k : k * N + j);
}

export function matmul(
  a: Float64Array,
  b: Float64Array,
  batch: number,
  M: number,
  K: number,
  N: number,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const sa = batch > 1 && a.length === M * K;
  const sb = batch > 1 && b.length === K * N;
  const c = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[indexA(z, i, k, M, K, transA, sa)]! * b[indexB(z, k, j, K, N, transB, sb)]!;
        c[(z * M + i) * N + j] = s;
      }
    }
  }
  return c;
}

/** Gradients of sum(C · dy) with respect to a and b, in their stored layouts. */
export function matmulGrad(
  a: Float64Array,
  b: Float64Array,
  dy: Float64Array,
  batch: number,
  M: number,
  K: number,
  N: number,
  transA: boolean,
  transB: boolean,
): [Float64Array, Float64Array] {
  const sa = batch > 1 && a.length === M * K;
  const sb = batch > 1 && b.length === K * N;
  const da = new Float64Array(a.length);
  const db = new Float64Array(b.length);
  for (let z = 0; z < batch; z++) {
    for (let i = 0; i < M; i++) {
      for (let k = 0; k < K; k++) {
        const ia = indexA(z, i, k, M, K, transA, sa);
        let s = 0;
        for (let j = 0; j < N; j++) {
          const g = dy[(z * M + i) * N + j]!;
          s += g * b[indexB(z, k, j, K, N, transB, sb)]!;
          db[indexB(z, k, j, K, N, transB, sb)]! += a[ia]! * g;
        }
        da[ia]! += s;
      }
    }
  }
  return [da, db];
}

/** nn.Linear: y [T, O] = x [T, I] · wᵀ (w [O, I]) + b (b [O]). */
export function linear(x: Float64Array, w: Float64Array, b: Float64Array, T: number, I: number, O: number): Float64Array {
  const y = matmul(x, w, 1, T, I, O, false, true);
  for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) y[t * O + o]! += b[o]!;
  return y;
}

/** Gradients of sum(y · dy) for linear: dx = dy·w, dw = dyᵀ·x, db = Σ_t dy. */
export function linearGrad(x: Float64Array, w: Float64Array, dy: Float64Array, T: number, I: number, O: number): [Float64Array, Float64Array, Float64Array] {
  const [dx, dw] = matmulGrad(x, w, dy, 1, T, I, O, false, true);
  const db = new Float64Array(O);
  for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) db[o]! += dy[t * O + o]!;
  return [dx, dw, db];
}
