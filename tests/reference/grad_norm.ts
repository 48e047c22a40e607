// Float64 reference for torch.nn.utils.clip_grad_norm_: the global norm and the clip factor.

/** ||concat(grads)||_2. */
export function gradNorm(grads: ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/** clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)). */
export function clipCoef(norm: number, maxNorm: number): number {
  return Math.min(1, maxNorm / (norm + 1e-6));
}
