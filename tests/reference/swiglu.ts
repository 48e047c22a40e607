// float64 references for SwiGLU, out = silu(gate) * up, and GeGLU, out = gelu_tanh(gate) * up: forward
// and the analytic gradient of sum(out · dy).

const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

export function swiglu(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => g * sigmoid(g) * up[i]!);
}

/** [dgate, dup]: dgate = dy up s (1 + g (1 - s)), dup = dy g s, s = sigmoid(g). */
export function swigluGrad(gate: Float64Array, up: Float64Array, dy: Float64Array): [Float64Array, Float64Array] {
  const dgate = gate.map((g, i) => {
    const s = sigmoid(g);
    return dy[i]! * up[i]! * s * (1 + g * (1 - s));
  });
  const dup = gate.map((g, i) => dy[i]! * g * sigmoid(g));
  return [dgate, dup];
}

const K = Math.sqrt(2 / Math.PI);
/** transformers' GELUTanh: 0.5 g (1 + tanh(√(2/π) (g + 0.044715 g³))). */
export const geluTanh = (g: number): number => 0.5 * g * (1 + Math.tanh(K * (g + 0.044715 * g ** 3)));
const dgeluTanh = (g: number): number => {
  const t = Math.tanh(K * (g + 0.044715 * g ** 3));
  return 0.5 * (1 + t) + 0.5 * g * (1 - t * t) * K * (1 + 3 * 0.044715 * g * g);
};

export function geglu(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => geluTanh(g) * up[i]!);
}

/** [dgate, dup]: dgate = dy up gelu_tanh'(g), dup = dy gelu_tanh(g). */
export function gegluGrad(gate: Float64Array, up: Float64Array, dy: Float64Array): [Float64Array, Float64Array] {
  return [gate.map((g, i) => dy[i]! * up[i]! * dgeluTanh(g)), gate.map((g, i) => dy[i]! * geluTanh(g))];
}
