import assert from "node:assert/strict";
import { before, test } from "node:test";
import { logsumexp, max, mean, softmax, sum, Tensor } from "../../src/index.ts";
import { checkOp, expectAllClose, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/reduce.ts";

before(setup);

type Reduce = "sum" | "mean" | "max" | "logsumexp";
const ops = { sum, mean, max, logsumexp } as const;
const refs = { sum: R.sum, mean: R.mean, max: R.max, logsumexp: R.logsumexp } as const;
const grads = { sum: R.sumGrad, mean: R.meanGrad, max: R.maxGrad, logsumexp: R.logsumexpGrad } as const;

// Rows of one element, odd lengths around the workgroup widths (32..256), and rows longer than one
// workgroup's stride (1000, 4099), under zero, one or two leading dims.
const shapes = [[1], [3], [17], [7, 1], [2, 33], [3, 65], [4, 129], [2, 3, 17], [2, 1000], [2, 4099]];

// Sums of up to 4099 f32 values in [-1, 1] (per-thread partials, then a tree): ~1e-6 absolute.
// logsumexp and softmax go through f32 exp and log (a few ulp, more for large arguments).
const tol: Record<Reduce | "softmax", { fwd: Tol; grad: Tol }> = {
  sum: { fwd: { atol: 2e-5, rtol: 1e-5 }, grad: { atol: 1e-6, rtol: 1e-6 } },
  mean: { fwd: { atol: 1e-6, rtol: 1e-5 }, grad: { atol: 1e-7, rtol: 1e-6 } },
  max: { fwd: { atol: 0, rtol: 0 }, grad: { atol: 1e-6, rtol: 1e-6 } },
  logsumexp: { fwd: { atol: 1e-5, rtol: 1e-5 }, grad: { atol: 1e-6, rtol: 1e-4 } },
  softmax: { fwd: { atol: 1e-7, rtol: 1e-4 }, grad: { atol: 1e-6, rtol: 1e-4 } },
};

for (const op of Object.keys(ops) as Reduce[]) {
  for (const shape of shapes) {
    for (const keepdim of shape.length === 2 && shape[1] === 33 ? [false, true] : [false]) {
      const n = shape[shape.length - 1]!;
      test(`${op} [${shape}]${keepdim ? " keepdim" : ""}`, () =>
        checkOp({
          name: op,
          shapes: [shape],
          ranges: [op === "logsumexp" ? [-4, 4] : [-1, 1]],
          gpu: ([x]) => {
            const y = ops[op](x!, { keepdim });
            assert.deepEqual(y.shape, keepdim ? [...shape.slice(0, -1), 1] : shape.slice(0, -1));
            return y;
          },
          ref: ([x]) => refs[op](x!, n),
          refGrad: ([x], dy) => [grads[op](x!, n, dy)],
          ...tol[op],
        }));
    }
  }
}

for (const shape of shapes) {
  const n = shape[shape.length - 1]!;
  test(`softmax [${shape}]`, () =>
    checkOp({
      name: "softmax",
      shapes: [shape],
      ranges: [[-4, 4]],
      gpu: ([x]) => softmax(x!),
      ref: ([x]) => R.softmax(x!, n),
      refGrad: ([x], dy) => [R.softmaxGrad(x!, n, dy)],
      ...tol.softmax,
    }));
}

// exp(x) overflows f32 past 88.7: only the max subtraction keeps these finite.
for (const [name, gpu, ref, refGrad] of [
  ["logsumexp", (x: Tensor) => logsumexp(x), R.logsumexp, R.logsumexpGrad],
  ["softmax", softmax, R.softmax, R.softmaxGrad],
] as const) {
  test(`${name} is stable for inputs in [80, 100]`, () =>
    checkOp({
      name,
      shapes: [[3, 129]],
      ranges: [[80, 100]],
      gpu: ([x]) => gpu(x!),
      ref: ([x]) => ref(x!, 129),
      refGrad: ([x], dy) => [refGrad(x!, 129, dy)],
      ...tol[name],
    }));
}

test("softmax and logsumexp of rows with -inf (masked) entries", async () => {
  const x = Tensor.fromArray([0, -Infinity, 0, Math.log(3), -Infinity, -Infinity, -Infinity, 2], [2, 4]);
  expectAllClose(await softmax(x).toArray(), [0.2, 0, 0.2, 0.6, 0, 0, 0, 1], { atol: 1e-7, rtol: 1e-6 });
  expectAllClose(await logsumexp(x).toArray(), [Math.log(5), 2], { atol: 1e-6, rtol: 1e-6 });
});

test("max sends the gradient to the first maximum, within and across threads", async () => {
  // Row 0: ties at 1 and 2. Row 1: all equal. Row 2 (1000 long, 256 threads): equal maxima at 556
  // (thread 44's second element), 300 (thread 44's first) and 700 (thread 188): the first is 300.
  const n = 1000;
  const data = new Float32Array(3 * n).fill(-1);
  data.set([1, 3, 3, 2], 0);
  data.fill(5, n, 2 * n);
  for (const j of [556, 300, 700]) data[2 * n + j] = 7;
  const x = Tensor.fromArray(data, [3, n], { requires_grad: true });
  const y = max(x);
  expectAllClose(await y.toArray(), [3, 5, 7], { atol: 0, rtol: 0 });
  y.backward(Tensor.fromArray([1, 2, 3], [3]));
  const want = new Float32Array(3 * n);
  want[1] = 1;
  want[n] = 2;
  want[2 * n + 300] = 3;
  expectAllClose(await x.grad!.toArray(), want, { atol: 0, rtol: 0 });
});

test("sum over more rows than one grid dimension holds (70000 rows)", () =>
  checkOp({
    name: "sum",
    shapes: [[70000, 2]],
    gpu: ([x]) => sum(x!),
    ref: ([x]) => R.sum(x!, 2),
    refGrad: ([x], dy) => [R.sumGrad(x!, 2, dy)],
    ...tol.sum,
  }));

test("reductions reject 0-d tensors, empty last dims and non-f32 tensors", () => {
  assert.throws(() => sum(Tensor.fromArray(2)), /sum: reduces the last dim, but the tensor is 0-d/);
  assert.throws(() => max(Tensor.fromArray([], [3, 0])), /max: the last dim is empty \(shape \[3, 0\]\)/);
  const ids = Tensor.fromArray([1, 2], [2], { dtype: "i32" });
  assert.throws(() => softmax(ids), /softmax: needs an f32 tensor, got i32/);
});
