// Typed launchers for shaders/reduce.wgsl: reductions over the last dim, x viewed as (rows, n). No autograd.
import { grid, launch, rowWorkgroupSize } from "../gpu/launch.ts";
import { Tensor } from "../tensor/tensor.ts";

/** Threads per workgroup of the elementwise (backward) kernels. */
const WG = 256;

/** (rows, n) of a tensor reduced over its last dim. */
function rowsOf(x: Tensor): { rows: number; n: number } {
  const n = x.shape[x.shape.length - 1]!;
  return { rows: x.size / n, n };
}

function launchRows(entry: string, x: Tensor, buffers: Record<string, GPUBuffer>, scale = 1): void {
  const { rows, n } = rowsOf(x);
  launch("reduce", entry, {
    consts: { WG: rowWorkgroupSize(n) },
    buffers,
    params: { rows, n, scale },
    workgroups: grid(rows, 1),
  });
}

function launchElements(entry: string, dx: Tensor, buffers: Record<string, GPUBuffer>, scale = 1): void {
  const { rows, n } = rowsOf(dx);
  launch("reduce", entry, { buffers, params: { rows, n, scale }, workgroups: grid(dx.size, WG) });
}

/** (rows, n) -> `shape` (rows elements): scale * the sum of each row. */
export function sum(x: Tensor, shape: readonly number[], scale = 1): Tensor {
  const out = Tensor.empty(shape);
  launchRows("sum_forward", x, { x: x.buffer, out: out.buffer }, scale);
  return out;
}

/** (rows, n) -> values `shape` (rows elements) and the first index of each row's max, i32 (rows). */
export function max(x: Tensor, shape: readonly number[]): { values: Tensor; indices: Tensor } {
  const values = Tensor.empty(shape);
  const indices = Tensor.empty([values.size], "i32");
  launchRows("max_forward", x, { x: x.buffer, out: values.buffer, arg_out: indices.buffer });
  return { values, indices };
}

/** (rows, n) -> `shape` (rows elements): log sum_j exp(x[r, j]). */
export function logsumexp(x: Tensor, shape: readonly number[]): Tensor {
  const out = Tensor.empty(shape);
  launchRows("logsumexp_forward", x, { x: x.buffer, out: out.buffer });
  return out;
}

/** Softmax of each row, x's shape. */
export function softmax(x: Tensor): Tensor {
  const out = Tensor.empty(x.shape);
  launchRows("softmax_forward", x, { x: x.buffer, out: out.buffer });
  return out;
}

/** dx (xShape) = scale * dy[r] broadcast over each row. */
export function sumBackward(dy: Tensor, xShape: readonly number[], scale = 1): Tensor {
  const dx = Tensor.empty(xShape);
  launchElements("sum_backward", dx, { dy: dy.buffer, dx: dx.buffer }, scale);
  return dx;
}

/** dx (xShape) = dy[r] at each row's index `indices[r]`, 0 elsewhere. */
export function maxBackward(dy: Tensor, indices: Tensor, xShape: readonly number[]): Tensor {
  const dx = Tensor.empty(xShape);
  launchElements("max_backward", dx, { dy: dy.buffer, arg: indices.buffer, dx: dx.buffer });
  return dx;
}

/** dx = dy[r] * exp(x - y[r]), y = logsumexp(x). */
export function logsumexpBackward(dy: Tensor, x: Tensor, y: Tensor): Tensor {
  const dx = Tensor.empty(x.shape);
  launchElements("logsumexp_backward", dx, { dy: dy.buffer, x: x.buffer, y: y.buffer, dx: dx.buffer });
  return dx;
}

/** dx = y * (dy - sum_row(dy * y)), y = softmax(x). */
export function softmaxBackward(dy: Tensor, y: Tensor): Tensor {
  const dx = Tensor.empty(y.shape);
  launchRows("softmax_backward", y, { dy: dy.buffer, y: y.buffer, dx: dx.buffer });
  return dx;
}
