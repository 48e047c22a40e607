// Typed launcher for shaders/adamw.wgsl: the fused AdamW update and the largest values it wrote. No autograd,
// no readback.
import { grid, launch } from "../gpu/launch.ts";
import type { Tensor } from "../tensor/tensor.ts";

const WG = 256;

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  /** The param's step count t, this step included (1 on its first update). */
  step: number;
}

/**
 * One torch.optim.AdamW update of `param` and its moments, in place, with the gradient scaled by
 * scale[0] (a 0-d tensor: clip_grad_norm_'s factor, or 1). Bias corrections are computed here in f64.
 * `stats` (2) gathers the largest |param| and the largest |exp_avg|, |exp_avg_sq| written, over this and
 * every other update that shares it (start it at 0): read as f32, each is that largest |value|, Inf or NaN
 * when a written value is non-finite.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, scale: Tensor, stats: Tensor, h: AdamWHyper): void {
  const n = param.size;
  launch("adamw", "adamw_update", {
    buffers: { param: param.buffer, grad: grad.buffer, exp_avg: expAvg.buffer, exp_avg_sq: expAvgSq.buffer, scale: scale.buffer, stats: stats.buffer },
    params: {
      n,
      decay: 1 - h.lr * h.weight_decay,
      beta1: h.beta1,
      beta2: h.beta2,
      one_minus_beta1: 1 - h.beta1,
      one_minus_beta2: 1 - h.beta2,
      eps: h.eps,
      step_size: h.lr / (1 - h.beta1 ** h.step),
      bc2_sqrt: Math.sqrt(1 - h.beta2 ** h.step),
    },
    workgroups: grid(n, WG),
  });
}
