// float64 reference for SwiGLU, out = silu(gate) * up: forward and the analytic gradient of sum(out · dy).

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
