// Float64 reference for torch.optim.AdamW's _single_tensor_adamw (clip_grad_norm_'s: tests/reference/grad_norm.ts).

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
}

/**
 * One AdamW update in place at step t (1 on the first), the gradient scaled by `clip`:
 *   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 */
export function adamwStep(
  p: Float64Array,
  grad: ArrayLike<number>,
  m: Float64Array,
  v: Float64Array,
  t: number,
  h: AdamWHyper,
  clip = 1,
): void {
  const stepSize = h.lr / (1 - h.beta1 ** t);
  const bc2Sqrt = Math.sqrt(1 - h.beta2 ** t);
  for (let i = 0; i < p.length; i++) {
    const g = grad[i]! * clip;
    m[i] = h.beta1 * m[i]! + (1 - h.beta1) * g;
    v[i] = h.beta2 * v[i]! + (1 - h.beta2) * g * g;
    p[i] = p[i]! * (1 - h.lr * h.weight_decay) - stepSize * (m[i]! / (Math.sqrt(v[i]!) / bc2Sqrt + h.eps));
  }
}
