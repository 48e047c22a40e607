// float64 reference for the embedding gather and the gradient of sum(out · dy) w.r.t. weight (V, C).

export function embedding(weight: Float64Array, C: number, ids: ArrayLike<number>): Float64Array {
  const out = new Float64Array(ids.length * C);
  for (let n = 0; n < ids.length; n++) out.set(weight.subarray(ids[n]! * C, (ids[n]! + 1) * C), n * C);
  return out;
}

/** dweight[v, c] = sum over n with ids[n] == v (and v != pad) of dy[n, c]. */
export function embeddingGrad(V: number, C: number, ids: ArrayLike<number>, dy: Float64Array, pad: number | null = null): Float64Array {
  const dw = new Float64Array(V * C);
  for (let n = 0; n < ids.length; n++) {
    if (ids[n] === pad) continue;
    for (let c = 0; c < C; c++) dw[ids[n]! * C + c] += dy[n * C + c]!;
  }
  return dw;
}
