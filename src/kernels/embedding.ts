// Typed launchers for shaders/embedding.wgsl: the embedding gather and its deterministic scatter-add. No autograd.
import { grid, launch } from "../gpu/launch.ts";
import { full } from "./elementwise.ts";
import { Tensor } from "../tensor/tensor.ts";

const WG = 256;

/** out (shape = [...ids, C]) = weight (V, C) rows at ids (N) i32. */
export function forward(weight: Tensor, ids: Tensor, shape: readonly number[]): Tensor {
  const C = weight.shape[1]!;
  const out = Tensor.empty(shape);
  launch("embedding", "forward", {
    buffers: { weight: weight.buffer, ids: ids.buffer, out: out.buffer },
    params: { N: ids.size, C, U: 0 },
    workgroups: grid(out.size, WG),
  });
  return out;
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
