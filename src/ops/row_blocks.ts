// Vocabulary-sized weights stored as row blocks. A WebGPU binding holds at most
// `maxStorageBufferBindingSize` bytes (128 MiB on many adapters), less than a large vocabulary's
// embedding ([151,936, 896] f32 is 544 MB), so such a weight [V, C] is kept as several tensors [V_j, C]
// whose row-concatenation is the weight; `embedding` and `fused_linear_cross_entropy` take the array.
import { sizeClass } from "../gpu/buffers.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Row counts of the blocks a [V, C] f32 weight is stored as, each block of at most `maxBytes`
 * (V_j · C · 4 <= maxBytes, typically the adapter's `maxStorageBufferBindingSize`): as few blocks as
 * possible, of near-equal sizes (the first V mod B blocks one row longer), summing to V. One block when
 * the whole weight fits. A tensor binds its whole pooled buffer, whose size is rounded up to a size class
 * (gpu/buffers.ts), so the blocks are also kept small enough that the rounded buffer fits in `maxBytes`
 * (this matters only for a limit that is not itself a size class, such as 2³² - 4).
 */
export function splitRows(V: number, C: number, maxBytes: number): number[] {
  if (!Number.isInteger(V) || V < 1 || !Number.isInteger(C) || C < 1) {
    throw new Error(`splitRows: V and C must be positive integers, got V=${V}, C=${C}`);
  }
  // The most rows whose buffer, rounded up to its size class, fits (sizeClass does not decrease).
  let lo = 0;
  let hi = Math.min(V, Math.floor(maxBytes / (C * 4)));
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (sizeClass(mid * C * 4) <= maxBytes) lo = mid;
    else hi = mid - 1;
  }
  const maxRows = lo;
  if (!(maxRows >= 1)) throw new Error(`splitRows: one row of C=${C} f32 (a ${sizeClass(C * 4)}-byte buffer) does not fit in ${maxBytes} bytes`);
  const B = Math.ceil(V / maxRows);
  const base = Math.floor(V / B);
  const extra = V - base * B;
  return Array.from({ length: B }, (_, j) => base + (j < extra ? 1 : 0));
}

/** A weight as row blocks: the blocks, each block's first row, and the whole shape. */
export interface RowBlocks {
  blocks: readonly Tensor[];
  /** offsets[j] = first row of block j in the whole weight; offsets[B] = V. */
  offsets: number[];
  V: number;
  C: number;
}

/**
 * Checks that `blocks` are [V_j, C] tensors of one C (at least one block), f32 unless `anyFormat` (a caller
 * whose kernels read every weight format, as the fused cross-entropy's products do), and returns their layout.
 * `op` names the caller in errors.
 */
export function rowBlocks(op: string, blocks: readonly Tensor[], anyFormat = false): RowBlocks {
  if (blocks.length === 0) throw new Error(`${op}: the weight has no row blocks`);
  const C = blocks[0]!.shape[1];
  const offsets = [0];
  blocks.forEach((b, j) => {
    if (!anyFormat && b.dtype !== "f32") throw new Error(`${op}: needs f32 weight blocks, block ${j} is ${b.dtype}`);
    if (b.ndim !== 2 || b.shape[1] !== C) {
      throw new Error(`${op}: weight blocks must be (V_j, C) with one C; block ${j} has shape [${b.shape.join(", ")}], block 0 [${blocks[0]!.shape.join(", ")}]`);
    }
    offsets.push(offsets[j]! + b.shape[0]!);
  });
  return { blocks, offsets, V: offsets[blocks.length]!, C: C! };
}

/** "[V_0, C] + [V_1, C] + …" for error messages. */
export function describeBlocks(blocks: readonly Tensor[]): string {
  return blocks.map((b) => `[${b.shape.join(", ")}]`).join(" + ");
}
