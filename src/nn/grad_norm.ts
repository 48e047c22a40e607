// torch.nn.utils.clip_grad_norm_ without readback: the norm and the clip factor stay in GPU buffers
// (kernels/grad_norm.ts, ceil(grads / 7) + 1 dispatches), and the factor is handed to the next optimizer
// step, which multiplies it into its update (src/nn/optimizer.ts: gradient scales).
import { gradNorm } from "../kernels/grad_norm.ts";
import { Tensor } from "../tensor/tensor.ts";
import { hasGradScale, setGradScale } from "./optimizer.ts";

/**
 * Computes the 2-norm of all gradients of `parameters` together (params without a gradient are skipped)
 * and arranges for the next optimizer step to scale them by min(1, max_norm / (norm + 1e-6)). Returns the
 * norm as a 0-d tensor, to read when logging; NaN or Inf when a gradient holds one.
 */
export function clip_grad_norm_(parameters: Tensor | Iterable<Tensor>, max_norm: number): Tensor {
  const params = parameters instanceof Tensor ? [parameters] : [...parameters];
  const grads = params.flatMap((p) => (p.grad ? [p.grad] : []));
  if (grads.some(hasGradScale)) {
    throw new Error("clip_grad_norm_: these gradients are already clipped; call optimizer.step() or zero_grad() first");
  }
  const { norm, clip } = gradNorm(grads, max_norm);
  setGradScale(grads, clip);
  clip.dispose();
  return norm;
}
