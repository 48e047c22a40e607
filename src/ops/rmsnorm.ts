// RMSNorm over the last dim (Hugging Face LlamaRMSNorm) and its gradient. x: (..., C), w: (C).
import * as K from "../kernels/rmsnorm.ts";
import { record, type Tensor } from "../tensor/tensor.ts";

/**
 * y = x * rsqrt(mean(x^2, -1) + eps) * w, computed in f32 (LlamaRMSNorm; `eps` is the config's
 * `rms_norm_eps`, default 1e-6 as in transformers).
 * d/dx = rstd * (dy*w - x * rstd^2 * mean(dy*w*x)), d/dw = sum over rows of dy * x * rstd.
 */
export function rmsnorm(x: Tensor, w: Tensor, eps = 1e-6): Tensor {
  if (x.dtype !== "f32" || w.dtype !== "f32") throw new Error(`rmsnorm: needs f32 tensors, got x ${x.dtype} and w ${w.dtype}`);
  if (x.ndim === 0) throw new Error("rmsnorm: x must have a last dim (got a 0-d tensor)");
  const C = x.shape[x.ndim - 1]!;
  if (w.ndim !== 1 || w.shape[0] !== C) {
    throw new Error(`rmsnorm: weight of shape [${w.shape.join(", ")}] does not match x's last dim ${C} (x: [${x.shape.join(", ")}])`);
  }
  if (C === 0) throw new Error(`rmsnorm: the last dim is empty (x: [${x.shape.join(", ")}])`);
  const N = x.size / C;
  const { y, rstd } = K.forward(x, w, N, C, eps);
  const out = record(
    y,
    "rmsnorm",
    [x, w],
    (dy, needs) => [
      needs[0] ? K.backwardDx(dy, x, w, rstd, N, C) : null,
      needs[1] ? K.backwardDw(dy, x, rstd, N, C) : null,
    ],
    [x, w, rstd],
  );
  rstd.dispose(); // the node holds its own reference when it recorded one
  return out;
}
