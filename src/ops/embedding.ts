// Token embedding (torch.nn.functional.embedding) and its deterministic gradient.
import { gpu } from "../gpu/device.ts";
import * as K from "../kernels/embedding.ts";
import { is_grad_enabled } from "../tensor/autograd.ts";
import { BASE_FORMAT, isWeightFormat, unsupportedReason, untrainableReason } from "../tensor/format.ts";
import { full, record, Tensor } from "../tensor/tensor.ts";
import { describeBlocks, rowBlocks } from "./row_blocks.ts";

export interface EmbeddingOptions {
  /** An id whose rows get no gradient (as torch's padding_idx; negative counts from V). */
  padding_idx?: number | null;
}

/**
 * Rows of weight (V, C) at token ids (CPU ids from the tokenizer, `shape` default [ids.length]):
 * out has shape [...shape, C]. An id outside [0, V) is an error.
 * The weight may be an array of row blocks [V_j, C] (see ops/row_blocks.ts) whose row-concatenation is the
 * weight: each block gathers its own rows (one dispatch per block that some id falls in) and each block
 * that requires grad gets its own gradient [V_j, C], the same deterministic sums as for one tensor.
 * d/dweight[v] = the sum of dy over the positions of id v, added in position order: the grouping by id
 * is built on the CPU here, so the gradient has the same bits on every run, whatever the repeats.
 */
export function embedding(
  weight: Tensor | readonly Tensor[],
  ids: Int32Array | readonly number[],
  shape: readonly number[] = [ids.length],
  options: EmbeddingOptions = {},
): Tensor {
  if (!(weight instanceof Tensor)) return weight.length === 1 ? embedding(weight[0]!, ids, shape, options) : embeddingBlocks(weight, ids, shape, options);
  checkWeightFormat(weight);
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be (V, C), got shape [${weight.shape.join(", ")}]`);
  const [V, C] = weight.shape as [number, number];
  const N = ids.length;
  if (shape.reduce((a, b) => a * b, 1) !== N) throw new Error(`embedding: ${N} ids do not fill shape [${shape.join(", ")}]`);
  for (let n = 0; n < N; n++) {
    const id = ids[n]!;
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new Error(`embedding: token id ${id} at position ${n} is out of range for a vocabulary of V=${V} (weight [${V}, ${C}])`);
    }
  }
  let pad = options.padding_idx ?? null;
  if (pad !== null) {
    if (!Number.isInteger(pad) || pad < -V || pad >= V) throw new Error(`embedding: padding_idx ${pad} is out of range for V=${V}`);
    if (pad < 0) pad += V;
  }
  const idTensor = Tensor.fromArray(Int32Array.from(ids), [N]);
  const out = K.forward(weight, idTensor, [...shape, C]);
  idTensor.dispose();
  if (!is_grad_enabled() || !weight.requires_grad) return out;
  const { csr, U } = groupById(ids, pad);
  const y = record(out, "embedding", [weight], (dy) => [K.backward(dy, csr, U, V, C)], [csr]);
  csr.dispose(); // the node holds its own reference
  return y;
}

/** The weight is f32, or frozen in a format this device's kernels read. */
function checkWeightFormat(weight: Tensor): void {
  const f = weight.dtype;
  if (!isWeightFormat(f)) throw new Error(`embedding: needs a float weight (f32, f16 or a packed format), got ${f}`);
  if (f === BASE_FORMAT) return;
  const why = (weight.requires_grad ? untrainableReason(f, "weight") : null) ?? unsupportedReason(f, gpu().info, "weight");
  if (why) throw new Error(`embedding: weight [${weight.shape.join(", ")}]: ${why}`);
}

/**
 * The positions of each distinct id (except `pad`), for the backward kernel, as one i32 tensor:
 * [distinct ids, increasing (U) | offsets (U + 1) | positions grouped by id, increasing within each].
 * With [lo, hi): only the ids in that range (one row block), as rows of the block (id - lo).
 */
function groupById(ids: Int32Array | readonly number[], pad: number | null, lo = 0, hi = Infinity): { csr: Tensor; U: number } {
  const count = new Map<number, number>();
  for (const id of ids) if (id !== pad && id >= lo && id < hi) count.set(id - lo, (count.get(id - lo) ?? 0) + 1);
  const distinct = Int32Array.from(count.keys()).sort();
  const U = distinct.length;
  let M = 0;
  for (const c of count.values()) M += c;
  const csr = new Int32Array(2 * U + 1 + M);
  csr.set(distinct);
  const next = new Map<number, number>(); // where the next position of each id goes in csr
  let k = 0;
  distinct.forEach((id, u) => {
    csr[U + u] = k;
    next.set(id, 2 * U + 1 + k);
    k += count.get(id)!;
  });
  csr[2 * U] = k;
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n]!;
    if (id === pad || id < lo || id >= hi) continue;
    const at = next.get(id - lo)!;
    csr[at] = n;
    next.set(id - lo, at + 1);
  }
  return { csr: Tensor.fromArray(csr, [csr.length]), U };
}

/** The embedding over a weight stored as row blocks (see `embedding`). */
function embeddingBlocks(
  weights: readonly Tensor[],
  ids: Int32Array | readonly number[],
  shape: readonly number[],
  options: EmbeddingOptions,
): Tensor {
  const { offsets, V, C } = rowBlocks("embedding", weights, true);
  weights.forEach(checkWeightFormat);
  const B = weights.length;
  const N = ids.length;
  if (shape.reduce((a, b) => a * b, 1) !== N) throw new Error(`embedding: ${N} ids do not fill shape [${shape.join(", ")}]`);
  // The block of each id (blocks are few: a linear scan of the offsets).
  const blockOf = new Int32Array(N);
  const count = new Int32Array(B);
  for (let n = 0; n < N; n++) {
    const id = ids[n]!;
    if (!Number.isInteger(id) || id < 0 || id >= V) {
      throw new Error(`embedding: token id ${id} at position ${n} is out of range for a vocabulary of V=${V} (weight ${describeBlocks(weights)})`);
    }
    let j = 0;
    while (id >= offsets[j + 1]!) j++;
    blockOf[n] = j;
    count[j]!++;
  }
  let pad = options.padding_idx ?? null;
  if (pad !== null) {
    if (!Number.isInteger(pad) || pad < -V || pad >= V) throw new Error(`embedding: padding_idx ${pad} is out of range for V=${V}`);
    if (pad < 0) pad += V;
  }
  // Per block, (position, row of the block) for the positions whose id lies in it.
  const pairs = Array.from(count, (k) => new Int32Array(2 * k));
  const filled = new Int32Array(B);
  for (let n = 0; n < N; n++) {
    const j = blockOf[n]!;
    const k = filled[j]!++;
    pairs[j]![2 * k] = n;
    pairs[j]![2 * k + 1] = ids[n]! - offsets[j]!;
  }
  const out = Tensor.empty([...shape, C]);
  for (let j = 0; j < B; j++) {
    if (count[j] === 0) continue;
    const p = Tensor.fromArray(pairs[j]!, [pairs[j]!.length]);
    K.forwardRows(weights[j]!, p, out);
    p.dispose();
  }
  if (!is_grad_enabled() || !weights.some((w) => w.requires_grad)) return out;
  const groups = weights.map((w, j) => (w.requires_grad && count[j]! > 0 ? groupById(ids, pad, offsets[j]!, offsets[j + 1]!) : null));
  const csrs = groups.flatMap((g) => (g ? [g.csr] : []));
  const y = record(
    out,
    "embedding",
    [...weights],
    (dy, needs) =>
      weights.map((w, j) => {
        if (!needs[j]) return null;
        const g = groups[j];
        return g ? K.backward(dy, g.csr, g.U, w.shape[0]!, C) : full([w.shape[0]!, C], 0);
      }),
    csrs,
  );
  for (const t of csrs) t.dispose(); // the node holds its own references
  return y;
}
