import assert from "node:assert/strict";
import { before, test } from "node:test";
import { concat, mul, reshape, slice, Tensor, transpose } from "../../src/index.ts";
import { checkOp, expectAllClose, setup } from "../helpers.ts";
import * as R from "../reference/layout.ts";

before(setup);

// Copies are exact; the gradient tolerance is for the finite differences (float64, h = 1e-6).
const EXACT = { atol: 0, rtol: 0 };
const FD = { atol: 1e-8, rtol: 1e-7 };
const copyTol = { fwd: EXACT, grad: FD };

for (const [from, to, want] of [
  [[2, 3, 4], [6, -1], [6, 4]],
  [[4, 6], [24], [24]],
  [[3, 17], [-1], [51]],
  [[1], [], []],
  [[65, 33], [5, 13, 33], [5, 13, 33]],
] as const) {
  test(`reshape [${from}] -> [${to}]`, () =>
    checkOp({
      name: "reshape",
      shapes: [[...from]],
      gpu: ([x]) => {
        const y = reshape(x!, to);
        assert.deepEqual(y.shape, want);
        return y;
      },
      ref: ([x]) => Float64Array.from(x!),
      refGrad: (_, dy) => [Float64Array.from(dy)],
      ...copyTol,
    }));
}

test("reshape is a view: it shares the buffer and outlives its source", async () => {
  const x = Tensor.fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = reshape(x, [3, 2]);
  assert.equal(y.buffer, x.buffer);
  x.dispose();
  expectAllClose(await y.toArray(), [1, 2, 3, 4, 5, 6], EXACT);
  y.dispose();
});

// [shape, dim0, dim1]: 2-d, every pair of a 3-d and some of a 4-d tensor, negative dims, dims of size 1,
// and rows longer than a workgroup.
const transposes: [number[], number, number][] = [
  [[3, 17], 0, 1],
  [[33, 65], 1, 0],
  [[1, 129], 0, 1],
  [[2, 3, 5], 0, 1],
  [[2, 3, 5], 0, 2],
  [[2, 3, 5], 1, 2],
  [[2, 3, 5], -1, -2],
  [[2, 3, 4, 5], 1, 2],
  [[2, 3, 4, 5], 0, 3],
  [[3, 1, 17, 2], 1, 3],
  [[17, 1000], 0, 1],
  [[2, 3], 1, 1],
];

for (const [shape, d0, d1] of transposes) {
  const a = d0 < 0 ? d0 + shape.length : d0;
  const b = d1 < 0 ? d1 + shape.length : d1;
  const outShape = [...shape];
  [outShape[a], outShape[b]] = [shape[b]!, shape[a]!];
  test(`transpose [${shape}] ${d0} ${d1}`, () =>
    checkOp({
      name: "transpose",
      shapes: [shape],
      gpu: ([x]) => {
        const y = transpose(x!, d0, d1);
        assert.deepEqual(y.shape, outShape);
        return y;
      },
      ref: ([x]) => R.transpose(x!, shape, a, b),
      refGrad: (_, dy) => [R.transpose(dy, outShape, a, b)],
      ...copyTol,
    }));
}

// [shape, dim, start, end]: either end of a dim, negative bounds, a default end, an empty slice, and
// a long last dim.
const slices: [number[], number, number, number | undefined][] = [
  [[5, 17], 1, 3, 10],
  [[5, 17], 0, 1, 4],
  [[5, 17], -1, -3, undefined],
  [[2, 3, 129], 2, 64, 129],
  [[2, 3, 129], 1, 0, 1],
  [[33, 3, 2], 0, 0, 33],
  [[4, 65], 1, 7, 7],
  [[4099], 0, 1000, -1],
];

for (const [shape, dim, start, end] of slices) {
  const d = dim < 0 ? dim + shape.length : dim;
  const D = shape[d]!;
  const s = start < 0 ? start + D : start;
  const e = end === undefined ? D : end < 0 ? end + D : end;
  test(`slice [${shape}] dim ${dim} [${start}, ${end})`, () =>
    checkOp({
      name: "slice",
      shapes: [shape],
      gpu: ([x]) => slice(x!, dim, start, end),
      ref: ([x]) => R.slice(x!, shape, d, s, e),
      refGrad: (_, dy) => [R.sliceGrad(dy, shape, d, s, e)],
      ...copyTol,
    }));
}

const concats: [number[][], number][] = [
  [[[2, 3], [2, 5]], 1],
  [[[1, 4], [3, 4], [2, 4]], 0],
  [[[2, 3, 17], [2, 1, 17], [2, 0, 17]], -2],
  [[[3, 2, 33], [3, 2, 65]], 2],
  [[[7, 129]], 0],
];

for (const [shapes, dim] of concats) {
  const d = dim < 0 ? dim + shapes[0]!.length : dim;
  test(`concat ${shapes.map((s) => `[${s}]`).join(" ")} dim ${dim}`, () =>
    checkOp({
      name: "concat",
      shapes,
      gpu: (xs) => concat(xs, dim),
      ref: (xs) => R.concat(xs, shapes, d),
      refGrad: (_, dy) => R.concatGrad(dy, shapes, d),
      ...copyTol,
    }));
}

test("concat of a tensor with itself accumulates both gradients", async () => {
  const x = Tensor.fromArray([1, 2, 3], [1, 3], { requires_grad: true });
  const y = concat([x, x], 0);
  y.backward(Tensor.fromArray([1, 2, 3, 10, 20, 30], [2, 3]));
  expectAllClose(await x.grad!.toArray(), [11, 22, 33], EXACT);
});

test("a chain of shape ops backpropagates through each", async () => {
  // y = slice(transpose(reshape(x, [2, 3, 2]), 0, 2), 1, 1, 3) * 2; dx = 2 where x reaches y, else 0.
  const x = Tensor.fromArray([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3, 4], { requires_grad: true });
  const t = transpose(reshape(x, [2, 3, 2]), 0, 2); // [2, 3, 2]: t[k, j, i] = x[6i + 2j + k]
  const y = mul(slice(t, 1, 1, 3), Tensor.fromArray([2], [1]));
  expectAllClose(await y.toArray(), [4, 16, 8, 20, 6, 18, 10, 22], EXACT);
  y.backward(Tensor.fromArray(new Float32Array(8).fill(1), [2, 2, 2]));
  expectAllClose(await x.grad!.toArray(), [0, 0, 2, 2, 2, 2, 0, 0, 2, 2, 2, 2], EXACT);
});

test("transpose, slice and concat copy i32 tensors (token ids) exactly", async () => {
  const ids = Tensor.fromArray(Int32Array.from([1, 2, 3, 4, 5, 2147483647, -7, 0]), [2, 4]);
  assert.deepEqual([...(await transpose(ids, 0, 1).toArray())], [1, 5, 2, 2147483647, 3, -7, 4, 0]);
  const shifted = slice(ids, 1, 1);
  assert.equal(shifted.dtype, "i32");
  assert.deepEqual([...(await shifted.toArray())], [2, 3, 4, 2147483647, -7, 0]);
  const joined = [1, 2, 3, 4, 2, 3, 4, 5, 2147483647, -7, 0, 2147483647, -7, 0];
  assert.deepEqual([...(await concat([ids, shifted], 1).toArray())], joined);
});

test("shape ops reject bad shapes, dims and ranges", () => {
  const x = Tensor.fromArray(new Float32Array(6), [2, 3]);
  assert.throws(
    () => reshape(x, [4, -1]),
    /reshape: shape \[4, -1\] is invalid for a tensor of shape \[2, 3\] \(6 elements\)/,
  );
  assert.throws(() => reshape(x, [-1, -1]), /reshape: shape \[-1, -1\] is invalid/);
  assert.throws(() => reshape(x, [7]), /reshape: shape \[7\] is invalid/);
  assert.throws(() => reshape(x, [2, -3]), /reshape: shape \[2, -3\] is invalid/);
  assert.throws(() => transpose(x, 0, 2), /transpose: dim 2 is out of range for a 2-d tensor of shape \[2, 3\]/);
  assert.throws(() => transpose(x, -3, 0), /transpose: dim -3 is out of range/);
  assert.throws(() => slice(x, 1, 2, 4), /slice: \[2, 4\) is out of range for dim 1 of size 3 \(shape \[2, 3\]\)/);
  assert.throws(() => slice(x, 1, 2, 1), /slice: \[2, 1\) is out of range/);
  assert.throws(() => slice(x, 0, -3), /slice: \[-3, 2\) is out of range for dim 0 of size 2/);
  assert.throws(() => concat([], 0), /concat: needs at least one tensor/);
  const y = Tensor.fromArray(new Float32Array(6), [3, 2]);
  assert.throws(() => concat([x, y], 0), /concat: shapes \[2, 3\] and \[3, 2\] differ outside dim 0/);
  assert.throws(() => concat([x, Tensor.fromArray([1, 2, 3])], 0), /concat: shapes \[2, 3\] and \[3\] differ/);
  const ids = Tensor.fromArray(new Int32Array(6), [2, 3]);
  assert.throws(() => concat([x, ids], 0), /concat: dtypes differ \(f32 and i32\)/);
  const half = Tensor.fromArray([1, 2], [1, 2], { dtype: "f16" });
  assert.throws(() => transpose(half, 0, 1), /transpose: copies 4-byte elements/);
});
