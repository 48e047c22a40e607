// The LM head's loss: logits = hidden · weightᵀ (+ bias) and cross-entropy against labels, fused and
// chunked over tokens, with the gradients computed during the forward pass.
import * as K from "../kernels/cross_entropy.ts";
import { sumLeading } from "../kernels/elementwise.ts";
import { copyBlock, type Block } from "../kernels/layout.ts";
import { productInto } from "../kernels/matmul.ts";
import { isWeightFormat, WEIGHT_FORMATS } from "../tensor/format.ts";
import { is_grad_enabled } from "../tensor/autograd.ts";
import { axpy, record, Tensor } from "../tensor/tensor.ts";
import { describeBlocks, rowBlocks } from "./row_blocks.ts";

/** Label of a token that is not trained on (padding, prompt, a document boundary). */
export const IGNORE_INDEX = -100;

/** Bytes of logits one chunk may hold by default. */
const CHUNK_BYTES = 32 * 1024 * 1024;

/** The default tokens per chunk: the most whose logits (chunk × V f32) fit in 32 MiB, at least 1. */
export function defaultChunkSize(V: number): number {
  return Math.max(1, Math.floor(CHUNK_BYTES / (V * 4)));
}

export interface FusedCrossEntropyOptions {
  /** Tokens per chunk; default the most whose logits fit in 32 MiB (chunk × V × 4 bytes). */
  chunk_size?: number;
  /**
   * The divisor of the summed token losses and of the gradients: the count of valid labels over the whole
   * accumulated batch (as TRL passes it). Default: the count of valid labels here.
   */
  num_items_in_batch?: number;
  /** TRL's loss_type "dft": per-token loss -p_y · log p_y with p_y = softmax(logits)[label] held constant. */
  dft?: boolean;
  /** The LM head's bias (V), when it has one. */
  bias?: Tensor | null;
  /**
   * Final-logit soft-capping c (Gemma 2/3's final_logit_softcapping): the logits z = h·Wᵀ (+ bias) become
   * c·tanh(z / c) before everything (loss, gradient, accuracy, entropy). null, undefined or 0: none.
   */
  softcap?: number | null;
}

export interface CrossEntropyMetrics {
  /** Valid (not -100) labels here; known on the CPU. */
  num_tokens: number;
  /** Valid tokens whose argmax logit (the first on ties) is the label: a scalar tensor. */
  correct: Tensor;
  /** Sum over valid tokens of the entropy -Σ_v p_v log p_v of the predicted distribution, in nats: a scalar tensor. */
  entropy_sum: Tensor;
}

export interface CrossEntropyOutput {
  /** Σ over valid tokens of the token loss, / num_items_in_batch: a scalar tensor (0 with no valid label). */
  loss: Tensor;
  metrics: CrossEntropyMetrics;
}

/**
 * Cross-entropy of the LM head without a [tokens × V] logits matrix: for each chunk of tokens,
 * logits = h_chunk · Wᵀ (+ bias), one kernel pass per row (loss, argmax, entropy, and the logits gradient
 * written over the logits), then dh_chunk = dlogits · W and dW += dlogitsᵀ · h_chunk, and the chunk is freed.
 *
 * hidden [..., C] (N rows), weight [V, C], labels N token ids already shifted (label n is the target of
 * hidden row n), -100 ignored. Nothing is read back: loss and metrics stay on the GPU.
 *
 * With L = Σ_n ℓ_n / D (D = num_items_in_batch) and z = logits:
 *   nll: ℓ = lse(z) - z_y,          dL/dz = (softmax(z) - onehot(y)) / D
 *   dft: ℓ = -p_y log p_y (p_y const), dL/dz = p_y (softmax(z) - onehot(y)) / D
 *   dL/dh = dL/dz · W,  dL/dW = (dL/dz)ᵀ · h,  dL/dbias = Σ_n dL/dz.
 * With softcap c, the loss and metrics are of z' = c·tanh(z / c) and dL/dz = dL/dz' · (1 - tanh²(z / c)),
 * applied by the row kernel (the raw logits are what it reads; nothing more is stored).
 * These are computed here, when grad is enabled and an input requires grad (an input that does not — a
 * frozen LM head — gets nothing computed or allocated); the recorded backward multiplies them by the
 * upstream gradient of the loss.
 *
 * The weight may be an array of row blocks W_j [V_j, C] (see ops/row_blocks.ts), the weight being their
 * row-concatenation (a vocabulary too large for one binding). Per chunk, h · W_jᵀ goes into a [rows, V_j]
 * slab and is copied into columns off_j.. of the chunk's logits; the row kernel runs on whole rows as
 * above; then each block's columns of dlogits are copied back out to the slab for dh_chunk += slab · W_j
 * and dW_j += slabᵀ · h_chunk. Each block that requires grad gets its own gradient [V_j, C]. The slab, at
 * most the chunk's logits, is the only extra memory. The bias stays one tensor (V).
 */
export function fused_linear_cross_entropy(
  hidden: Tensor,
  weight: Tensor | readonly Tensor[],
  labels: Int32Array | readonly number[],
  options: FusedCrossEntropyOptions = {},
): CrossEntropyOutput {
  if (!(weight instanceof Tensor) && weight.length === 1) return fused_linear_cross_entropy(hidden, weight[0]!, labels, options);
  const blocks = weight instanceof Tensor ? null : rowBlocks("fused_linear_cross_entropy", weight, true);
  const ws: readonly Tensor[] = weight instanceof Tensor ? [weight] : weight;
  const fail = (why: string): never => {
    const w = weight instanceof Tensor ? `[${weight.shape.join(", ")}]` : describeBlocks(weight);
    throw new Error(`fused_linear_cross_entropy: hidden [${hidden.shape.join(", ")}], weight ${w}: ${why}`);
  };
  const bias = options.bias ?? null;
  if (hidden.dtype !== "f32" || (bias && bias.dtype !== "f32")) fail("needs f32 hidden states and bias");
  // A frozen head may be stored in any weight format (f16, packed): the products read it as the matmul's b.
  const odd = ws.find((w) => !isWeightFormat(w.dtype));
  if (odd) fail(`the weight is ${odd.dtype}, not a weight format (${Object.keys(WEIGHT_FORMATS).join(", ")})`);
  const trained = ws.find((w) => w.dtype !== "f32" && w.requires_grad);
  if (trained) fail(`a ${trained.dtype} weight is frozen storage and cannot require grad; train an f32 head`);
  if (!blocks && ws[0]!.ndim !== 2) fail("weight must be (V, C)");
  if (hidden.ndim < 1) fail("hidden must be (..., C)");
  const [V, C] = blocks ? [blocks.V, blocks.C] : (ws[0]!.shape as [number, number]);
  if (hidden.shape[hidden.ndim - 1] !== C) fail(`the last dim of hidden must be C=${C}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== V)) fail(`bias must be (V=${V}), got [${bias.shape.join(", ")}]`);
  const N = hidden.size / C;
  if (labels.length !== N) fail(`${labels.length} labels for ${N} tokens`);
  let numTokens = 0;
  for (let n = 0; n < N; n++) {
    const y = labels[n]!;
    if (y === IGNORE_INDEX) continue;
    if (!Number.isInteger(y) || y < 0 || y >= V) fail(`label ${y} at position ${n} is out of range for V=${V} (use -100 to ignore a token)`);
    numTokens++;
  }
  const D = options.num_items_in_batch ?? numTokens;
  if (!(D >= 0 && Number.isFinite(D)) || (D === 0 && numTokens > 0)) {
    fail(`num_items_in_batch must be positive (got ${D}, with ${numTokens} valid labels here)`);
  }
  const scale = D > 0 ? 1 / D : 0;
  const cap = options.softcap ?? 0;
  if (!(typeof cap === "number" && cap >= 0 && Number.isFinite(cap))) {
    fail(`softcap must be a positive number (or 0/null for none), got ${cap}`);
  }
  const softcap = cap > 0 ? cap : null;
  const chunk = options.chunk_size ?? defaultChunkSize(V);
  if (!Number.isInteger(chunk) || chunk < 1) fail(`chunk_size must be a positive integer, got ${chunk}`);

  const grad = is_grad_enabled();
  const needH = grad && hidden.requires_grad;
  const needWs = ws.map((w) => grad && w.requires_grad);
  const needB = grad && !!bias?.requires_grad;
  const anyGrad = needH || needWs.some((x) => x) || needB;

  const labelsGpu = Tensor.fromArray(Int32Array.from(labels), [N]);
  const tok = Tensor.empty([3, N]); // per token: loss, correct, entropy
  const dh = needH ? Tensor.empty(hidden.shape) : null;
  // The only [V, C] buffers (one per block): the first chunk writes them, the others accumulate into them
  // (none without tokens).
  const dWs = ws.map((w, j) => (needWs[j] && N > 0 ? Tensor.empty(w.shape) : null));
  let dB: Tensor | null = null;
  // Blocks: one [rows, V_j] slab (the largest block's, at most the chunk's logits) that each block's
  // logits pass through on their way into, and their gradient on its way out of, the chunk's columns.
  const slab = blocks && N > 0 ? Tensor.empty([Math.min(chunk, N), ws.reduce((m, w) => Math.max(m, w.shape[0]!), 0)]) : null;
  for (let n0 = 0; n0 < N; n0 += chunk) {
    const R = Math.min(chunk, N - n0);
    const h = R === N ? hidden : Tensor.empty([R, C]);
    if (h !== hidden) copyBlock(hidden, h, { A: 1, Din: N, Dout: R, d: R, srcOff: n0, dstOff: 0, C });
    const logits = Tensor.empty([R, V]);
    if (!blocks) {
      const weight = ws[0]!;
      const dW = dWs[0]!;
      productInto(h, false, weight, true, logits, R, V, C); // [R, C] · [V, C]ᵀ
      if (bias) axpy(logits, bias);
      K.rows(logits, labelsGpu, tok, { row0: n0, scale, grad: anyGrad, dft: options.dft ?? false, softcap });
      if (dh) {
        const dhc = R === N ? dh : Tensor.empty([R, C]);
        productInto(logits, false, weight, false, dhc, R, C, V); // [R, V] · [V, C]
        if (dhc !== dh) {
          copyBlock(dhc, dh, { A: 1, Din: R, Dout: N, d: R, srcOff: 0, dstOff: n0, C });
          dhc.dispose();
        }
      }
      if (dW) productInto(logits, true, h, false, dW, V, C, R, { accumulate: n0 > 0 }); // [R, V]ᵀ · [R, C]
    } else {
      const { offsets } = blocks;
      // Columns off_j .. off_j + V_j of the chunk's logits (as one [R, V_j] matrix in the slab) and back.
      const toLogits = (j: number): Block => ({ A: R, Din: ws[j]!.shape[0]!, Dout: V, d: ws[j]!.shape[0]!, srcOff: 0, dstOff: offsets[j]!, C: 1 });
      const fromLogits = (j: number): Block => ({ A: R, Din: V, Dout: ws[j]!.shape[0]!, d: ws[j]!.shape[0]!, srcOff: offsets[j]!, dstOff: 0, C: 1 });
      ws.forEach((w, j) => {
        productInto(h, false, w, true, slab!, R, w.shape[0]!, C); // [R, C] · [V_j, C]ᵀ
        copyBlock(slab!, logits, toLogits(j));
      });
      if (bias) axpy(logits, bias);
      K.rows(logits, labelsGpu, tok, { row0: n0, scale, grad: anyGrad, dft: options.dft ?? false, softcap });
      const dhc = !dh ? null : R === N ? dh : Tensor.empty([R, C]);
      let first = true;
      ws.forEach((w, j) => {
        const dW = dWs[j];
        if (!dhc && !dW) return;
        const Vj = w.shape[0]!;
        copyBlock(logits, slab!, fromLogits(j));
        if (dhc) productInto(slab!, false, w, false, dhc, R, C, Vj, { accumulate: !first }); // dh_chunk (+)= [R, V_j] · [V_j, C]
        if (dW) productInto(slab!, true, h, false, dW, Vj, C, R, { accumulate: n0 > 0 }); // dW_j (+)= [R, V_j]ᵀ · [R, C]
        first = false;
      });
      if (dhc && dhc !== dh) {
        copyBlock(dhc, dh!, { A: 1, Din: R, Dout: N, d: R, srcOff: 0, dstOff: n0, C });
        dhc.dispose();
      }
    }
    if (needB) {
      const dBc = sumLeading(logits, [V]);
      if (dB) {
        axpy(dB, dBc);
        dBc.dispose();
      } else dB = dBc;
    }
    logits.dispose();
    if (h !== hidden) h.dispose();
  }
  slab?.dispose();
  labelsGpu.dispose();
  const { loss, correct, entropy } = K.totals(tok, scale);
  tok.dispose();

  const grads = [dh, ...dWs, dB];
  const inputs = bias ? [hidden, ...ws, bias] : [hidden, ...ws];
  // The upstream gradient g of the loss (a scalar) scales each precomputed gradient in place (no readback,
  // no second buffer of V·C); each is handed on as its own tensor before the node releases its hold.
  const out = record(
    loss,
    "fused_linear_cross_entropy",
    inputs,
    (g, needs) =>
      inputs.map((x, i) => {
        const d = grads[i];
        if (!needs[i] || !d) return null;
        K.scaleBy(d, g);
        return new Tensor(d.storage.retain(), x.shape);
      }),
    grads.filter((t): t is Tensor => t !== null),
  );
  for (const t of grads) t?.dispose(); // the node holds its own references
  return { loss: out, metrics: { num_tokens: numTokens, correct, entropy_sum: entropy } };
}
