// Typed launchers for shaders/embedding.wgsl: the embedding gather and its deterministic scatter-add. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { formatVariant, isPacked, type WeightFormat } from "../tensor/format.ts";
import { full, Tensor } from "../tensor/tensor.ts";

const WG = 256;

/**
 * out (shape = [...ids, C]) = weight (V, C) rows at ids (N) i32. The weight may be f16 (shader-f16) or packed
 * (q4_0, nf4, …: dequantized as it is gathered, 4 elements a thread, by the shader's variant for its format).
 */
export function forward(weight: Tensor, ids: Tensor, shape: readonly number[]): Tensor {
  const C = weight.shape[1]!;
  const out = Tensor.empty(shape);
  const format = weight.dtype as WeightFormat;
  const packed = isPacked(format);
  launch(formatVariant("embedding", { weight: format }), packed ? "forward_packed" : "forward", {
    buffers: { weight: weight.buffer, ids: ids.buffer, out: out.buffer },
    params: { N: ids.size, C, U: 0 },
    workgroups: grid(packed ? ids.size * Math.ceil(C / 4) : out.size, WG),
  });
  return out;
}

/**
 * out (N, C) rows at the K positions of `pairs` (2K) i32 = (position, row of `block`) from `block`
 * (V_j, C), in place: the gather from one row block; the other rows of out are left as they are.
 */
export function forwardRows(block: Tensor, pairs: Tensor, out: Tensor): void {
  const C = block.shape[1]!;
  const K = pairs.size / 2;
  const format = block.dtype as WeightFormat;
  const packed = isPacked(format);
  launch(formatVariant("embedding", { weight: format }), packed ? "forward_rows_packed" : "forward_rows", {
    buffers: { weight: block.buffer, pairs: pairs.buffer, out: out.buffer },
    params: { N: K, C, U: 0 },
    workgroups: grid(packed ? K * Math.ceil(C / 4) : K * C, WG),
  });
}

/** dweight (V, C): the dy (N, C) rows summed per id in position order, from the grouping `csr` of U distinct ids. */
export function backward(dy: Tensor, csr: Tensor, U: number, V: number, C: number): Tensor {
  const dweight = full([V, C], 0);
  launch("embedding", "backward", {
    buffers: { csr: csr.buffer, dy: dy.buffer, dweight: dweight.buffer },
    params: { N: dy.size / C, C, U },
    workgroups: grid(U * C, WG),
  });
  return dweight;
}
