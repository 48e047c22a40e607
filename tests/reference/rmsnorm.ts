// float64 reference for RMSNorm over rows of C: forward and the analytic gradient of sum(y · dy).

function rstdOf(x: Float64Array, C: number, eps: number): Float64Array {
  const N = x.length / C;
  const rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[n * C + c]! ** 2;
    rstd[n] = 1 / Math.sqrt(ss / C + eps);
  }
  return rstd;
}

/** y[n, c] = x[n, c] * rstd[n] * w[c]. */
export function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  const C = w.length;
  const rstd = rstdOf(x, C, eps);
  return x.map((v, i) => v * rstd[Math.floor(i / C)]! * w[i % C]!);
}

/** [dx, dw]: dx = rstd (dy w - x rstd^2 mean(dy w x)), dw = sum_n dy x rstd. */
export function rmsnormGrad(x: Float64Array, w: Float64Array, eps: number, dy: Float64Array): [Float64Array, Float64Array] {
  const C = w.length;
  const N = x.length / C;
  const rstd = rstdOf(x, C, eps);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const r = rstd[n]!;
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[n * C + c]! * w[c]! * x[n * C + c]!;
    const k = (r * r * dot) / C;
    for (let c = 0; c < C; c++) {
      const i = n * C + c;
      dx[i] = r * (dy[i]! * w[c]! - x[i]! * k);
      dw[c] += dy[i]! * x[i]! * r;
    }
  }
  return [dx, dw];
}
