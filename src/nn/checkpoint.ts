// Gradient checkpointing (torch.utils.checkpoint): a block's forward keeps only its inputs; its
// activations are recomputed during the backward pass, trading one more forward for their memory.
import { enable_grad, is_grad_enabled, no_grad } from "../tensor/autograd.ts";
import { keep, tidy } from "../tensor/scope.ts";
import { backward, record, Tensor } from "../tensor/tensor.ts";

/**
 * y = fn(inputs) without saving what fn computes inside. `params` are the leaves fn reads that may need
 * gradients (LoRA weights, trainable base weights): their gradients are accumulated into `.grad` when the
 * backward pass reaches this block. fn must be deterministic given its inputs (dropout replays its mask
 * from a seed and step, so it is).
 *
 * Backward: recompute y' = fn(x') on leaves x' that share x's buffers, backpropagate dy through that
 * graph (which fills the params' .grad and x'.grad), and hand x'.grad on as dx.
 */
export function checkpoint(fn: (inputs: Tensor[]) => Tensor, inputs: Tensor[], params: Tensor[]): Tensor {
  const all = [...inputs, ...params];
  if (!is_grad_enabled() || !all.some((t) => t.requires_grad)) return fn(inputs);
  // Inside tidy: what fn makes besides y is freed now, not when the caller's scope ends.
  const y = tidy(() => no_grad(() => fn(inputs)));
  return record(
    y,
    "checkpoint",
    all,
    (dy) => {
      const grads = tidy(() =>
        enable_grad(() => {
          const detached = inputs.map((x) => new Tensor(x.storage.retain(), x.shape, x.dtype, x.requires_grad));
          const out = fn(detached);
          backward(out, dy);
          return detached.map((d) => {
            const g = d.grad;
            d.grad = null;
            return g;
          });
        }),
      );
      return [...grads.map((g) => (g ? keep(g) : null)), ...params.map(() => null)];
    },
    inputs,
  );
}
