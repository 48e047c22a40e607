// float64 reference for the fused LM-head cross-entropy: logits = hidden (N, C) · weightᵀ (V, C) + bias,
// the loss over valid labels (-100 ignored) / D, argmax accuracy, entropy, and the analytic gradients of
// the loss w.r.t. hidden, weight and bias. With a soft-cap c the logits are c·tanh(z / c) first (everything
// on those), and dL/dz gains the factor 1 - tanh²(z / c).

export interface CrossEntropyRef {
  loss: number;
  numTokens: number;
  correct: number;
  entropySum: number;
  dhidden: Float64Array; // (N, C)
  dweight: Float64Array; // (V, C)
  dbias: Float64Array; // (V)
}

export interface RefOptions {
  /** The divisor D; default the count of valid labels. */
  numItems?: number;
  dft?: boolean;
  bias?: Float64Array | null;
  /** Final-logit soft-cap c (none when absent or 0). */
  softcap?: number;
}

export function crossEntropy(
  hidden: ArrayLike<number>,
  weight: ArrayLike<number>,
  labels: ArrayLike<number>,
  C: number,
  options: RefOptions = {},
): CrossEntropyRef {
  const N = labels.length;
  const V = weight.length / C;
  let numTokens = 0;
  for (let n = 0; n < N; n++) if (labels[n] !== -100) numTokens++;
  const D = options.numItems ?? numTokens;
  const out: CrossEntropyRef = {
    loss: 0,
    numTokens,
    correct: 0,
    entropySum: 0,
    dhidden: new Float64Array(N * C),
    dweight: new Float64Array(V * C),
    dbias: new Float64Array(V),
  };
  const z = new Float64Array(V);
  const dcap = new Float64Array(V).fill(1);
  const cap = options.softcap ?? 0;
  for (let n = 0; n < N; n++) {
    const y = labels[n]!;
    if (y === -100) continue;
    for (let v = 0; v < V; v++) {
      let s = options.bias ? options.bias[v]! : 0;
      for (let c = 0; c < C; c++) s += hidden[n * C + c]! * weight[v * C + c]!;
      if (cap > 0) {
        const t = Math.tanh(s / cap);
        z[v] = cap * t;
        dcap[v] = 1 - t * t;
      } else z[v] = s;
    }
    let m = -Infinity;
    let arg = 0;
    for (let v = 0; v < V; v++) {
      if (z[v]! > m) {
        m = z[v]!;
        arg = v;
      }
    }
    let se = 0;
    for (let v = 0; v < V; v++) se += Math.exp(z[v]! - m);
    const lse = m + Math.log(se);
    const py = Math.exp(z[y]! - lse);
    const ce = lse - z[y]!;
    out.loss += options.dft ? py * ce : ce;
    if (arg === y) out.correct++;
    for (let v = 0; v < V; v++) {
      const logp = z[v]! - lse;
      const p = Math.exp(logp);
      out.entropySum -= p * logp;
      // dL/dz_v = w (p_v - [v == y]),  w = 1/D (nll) or p_y/D (dft)
      // times dz'/dz = 1 - tanh²(z / c) with a soft-cap
      const dz = (((options.dft ? py : 1) * (p - (v === y ? 1 : 0))) / D) * dcap[v]!;
      out.dbias[v] += dz;
      for (let c = 0; c < C; c++) {
        out.dhidden[n * C + c] += dz * weight[v * C + c]!;
        out.dweight[v * C + c] += dz * hidden[n * C + c]!;
      }
    }
  }
  out.loss = D > 0 ? out.loss / D : 0;
  return out;
}
