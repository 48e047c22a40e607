// Reductions over the last dim and softmax, and their gradients. x: (..., n) -> (...), or (..., 1) with keepdim.
import * as K from "../kernels/reduce.ts";
import { record, type Tensor } from "../tensor/tensor.ts";

export interface ReduceOptions {
  /** Keep the reduced last dim as size 1 (like torch's keepdim). Default false. */
  keepdim?: boolean;
}

/** The output shape of reducing x's last dim; throws unless x is f32 with a non-empty last dim. */
function reducedShape(op: string, x: Tensor, keepdim = false): readonly number[] {
  if (x.dtype !== "f32") throw new Error(`${op}: needs an f32 tensor, got ${x.dtype}`);
  if (x.ndim === 0) throw new Error(`${op}: reduces the last dim, but the tensor is 0-d (shape [])`);
  const n = x.shape[x.ndim - 1]!;
  if (n === 0) throw new Error(`${op}: the last dim is empty (shape [${x.shape.join(", ")}])`);
  const lead = x.shape.slice(0, -1);
  return keepdim ? [...lead, 1] : lead;
}

/** Sum over the last dim. d/dx = dy broadcast over the row. */
export function sum(x: Tensor, options: ReduceOptions = {}): Tensor {
  const y = K.sum(x, reducedShape("sum", x, options.keepdim));
  return record(y, "sum", [x], (dy) => [K.sumBackward(dy, x.shape)]);
}

/** Mean over the last dim. d/dx = dy / n. */
export function mean(x: Tensor, options: ReduceOptions = {}): Tensor {
  const shape = reducedShape("mean", x, options.keepdim);
  const n = x.shape[x.ndim - 1]!;
  const y = K.sum(x, shape, 1 / n);
  return record(y, "mean", [x], (dy) => [K.sumBackward(dy, x.shape, 1 / n)]);
}

/**
 * Max over the last dim (the values of torch's `x.max(dim=-1)`). The gradient goes to the first index
 * attaining the max in each row, as with torch's max(dim): d/dx = dy at argmax, 0 elsewhere.
 */
export function max(x: Tensor, options: ReduceOptions = {}): Tensor {
  const { values, indices } = K.max(x, reducedShape("max", x, options.keepdim));
  const y = record(values, "max", [x], (dy) => [K.maxBackward(dy, indices, x.shape)], [indices]);
  indices.dispose(); // the node holds its own reference when it recorded one
  return y;
}

/** log sum exp over the last dim, stable (max subtracted). d/dx = dy * exp(x - y) = dy * softmax(x). */
export function logsumexp(x: Tensor, options: ReduceOptions = {}): Tensor {
  const y = K.logsumexp(x, reducedShape("logsumexp", x, options.keepdim));
  return record(y, "logsumexp", [x], (dy) => [K.logsumexpBackward(dy, x, y)], [x, y]);
}

/** Softmax over the last dim, stable (max subtracted). d/dx = y * (dy - sum_row(dy * y)). */
export function softmax(x: Tensor): Tensor {
  reducedShape("softmax", x);
  const y = K.softmax(x);
  return record(y, "softmax", [x], (dy) => [K.softmaxBackward(dy, y)], [y]);
}
