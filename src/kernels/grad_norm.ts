// Typed launchers for shaders/grad_norm.wgsl: the global gradient norm and its clip factor. No autograd,
// no readback.
import { launch } from "../gpu/launch.ts";
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
    launch("grad_norm", "grad_sumsq", { buffers, params, workgroups: [c.groups, c.grads.length] });
  }
  const norm = Tensor.empty([]);
  const clip = Tensor.empty([]);
  launch("grad_norm", "grad_norm", {
    buffers: { partials: partials.buffer, norm_out: norm.buffer, clip_out: clip.buffer },
    params: { total, max_norm: maxNorm },
    workgroups: [1],
  });
  partials.dispose();
  return { norm, clip };
}
