// Typed launchers for shaders/adamw.wgsl: the global gradient norm with its clip factor, and the fused
// AdamW update. No autograd, no readback.
import { grid, launch } from "../gpu/launch.ts";
import type { Params } from "../gpu/encoder.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;
/** Gradients per grad_sumsq dispatch: the shader's g0..g6. */
const K = 7;
/** Elements a grad_sumsq workgroup aims to cover, and the most workgroups one gradient gets. */
const PER_GROUP = WG * 8;
const MAX_GROUPS = 256;

/**
 * norm = ||concat(grads)||_2 and clip = min(1, maxNorm / (norm + 1e-6)), as 0-d tensors. Every workgroup
 * writes its own slot of a partials buffer, summed by one last workgroup: the result depends only on the
 * gradients' sizes and values. ceil(grads / 7) + 1 dispatches.
 */
export function gradNorm(grads: readonly Tensor[], maxNorm: number): { norm: Tensor; clip: Tensor } {
  // Gradients of similar size share a dispatch, whose workgroup count the largest one sets.
  const sorted = [...grads].sort((a, b) => a.size - b.size);
  const chunks: { grads: Tensor[]; groups: number; slot: number }[] = [];
  let total = 0;
  for (let i = 0; i < sorted.length; i += K) {
    const c = sorted.slice(i, i + K);
    const groups = Math.min(MAX_GROUPS, Math.max(1, Math.ceil(c[c.length - 1]!.size / PER_GROUP)));
    chunks.push({ grads: c, groups, slot: total });
    total += c.length * groups;
  }
  const partials = Tensor.empty([total]);
  for (const c of chunks) {
    const buffers: Record<string, GPUBuffer> = { partials: partials.buffer };
    const params: Params = { slot: c.slot };
    for (let k = 0; k < K; k++) {
      buffers[`g${k}`] = (c.grads[k] ?? c.grads[0]!).buffer; // unused slots: any buffer, length 0
      params[`n${k}`] = c.grads[k]?.size ?? 0;
    }
    launch("adamw", "grad_sumsq", { buffers, params, workgroups: [c.groups, c.grads.length] });
  }
  const norm = Tensor.empty([]);
  const clip = Tensor.empty([]);
  launch("adamw", "grad_norm", {
    buffers: { partials: partials.buffer, norm_out: norm.buffer, clip_out: clip.buffer },
    params: { total, max_norm: maxNorm },
    workgroups: [1],
  });
  partials.dispose();
  return { norm, clip };
}

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
 * clip[0] (a 0-d tensor: clip_grad_norm_'s factor, or 1). Bias corrections are computed here in f64.
 */
export function adamwUpdate(param: Tensor, grad: Tensor, expAvg: Tensor, expAvgSq: Tensor, clip: Tensor, h: AdamWHyper): void {
  const n = param.size;
  launch("adamw", "adamw_update", {
    buffers: { param: param.buffer, grad: grad.buffer, exp_avg: expAvg.buffer, exp_avg_sq: expAvgSq.buffer, clip: clip.buffer },
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
