// Typed launchers for shaders/cross_entropy.wgsl: the fused cross-entropy row kernel over a chunk of
// logits, the in-place scale of the gradients, and the totals. No autograd here.
import { grid, launch, rowWorkgroupSize } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

/** Threads per workgroup of the elementwise scale and of the totals. */
const WG = 256;

export interface RowsArgs {
  /** Global index of the chunk's first row in labels and tok. */
  row0: number;
  /** 1 / normaliser: the weight of each row's gradient. */
  scale: number;
  /** Write the gradient of the logits over them. */
  grad: boolean;
  /** DFT loss (-p_y log p_y, p_y constant) instead of nll. */
  dft: boolean;
  /** Soft-cap c > 0 of the logits (c tanh(z / c) before everything), or null for none. */
  softcap: number | null;
}

/**
 * Per row of logits (rows, V) with label labels[row0 + r] (i32, -100 ignored): loss, correct and entropy
 * into tok (3, N) at column row0 + r; with `grad`, logits are overwritten by scale * (softmax - onehot)
 * (times p_y for DFT; times 1 - tanh²(z / c) with a soft-cap c, softmax then being of the capped logits).
 */
export function rows(logits: Tensor, labels: Tensor, tok: Tensor, a: RowsArgs): void {
  const [R, V] = logits.shape as [number, number];
  launch("cross_entropy", "rows", {
    consts: { WG: rowWorkgroupSize(V), GRAD: a.grad, DFT: a.dft, SOFTCAP: a.softcap !== null },
    buffers: { x: logits.buffer, labels: labels.buffer, tok: tok.buffer },
    params: { rows: R, V, N: labels.size, row0: a.row0, scale: a.scale, cap: a.softcap ?? 0 },
    workgroups: grid(R, 1),
  });
}

/** x *= g (a one-element tensor), in place, on the GPU: no readback of g. */
export function scaleBy(x: Tensor, g: Tensor): void {
  launch("cross_entropy", "scale_by", {
    buffers: { x: x.buffer, g: g.buffer },
    params: { rows: 1, V: x.size, N: 0, row0: 0, scale: 0, cap: 0 },
    workgroups: grid(x.size, WG),
  });
}

/** Sums of tok (3, N): scale * total loss, correct count, entropy sum, each a scalar tensor. */
export function totals(tok: Tensor, scale: number): { loss: Tensor; correct: Tensor; entropy: Tensor } {
  const loss = Tensor.empty([]);
  const correct = Tensor.empty([]);
  const entropy = Tensor.empty([]);
  launch("cross_entropy", "totals", {
    buffers: { tok: tok.buffer, loss: loss.buffer, correct: correct.buffer, entropy: entropy.buffer },
    params: { rows: 0, V: 0, N: tok.size / 3, row0: 0, scale, cap: 0 },
    workgroups: [1],
  });
  return { loss, correct, entropy };
}
