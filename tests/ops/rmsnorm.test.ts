import assert from "node:assert/strict";
import { before, test } from "node:test";
import { rmsnorm, Tensor } from "../../src/index.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/rmsnorm.ts";

before(setup);

// f32 sums of up to C squares (per-thread partials, then a tree) and f32 inverseSqrt (2 ulp): measured
// |y error| <= 3e-7. dx subtracts two terms of similar size (relative error up to ~2e-5 where they
// nearly cancel, absolute <= 4e-7); dw sums N rows in f32, its error growing with N (5e-6 at N = 200).
const tol: { fwd: Tol; grad: Tol } = { fwd: { atol: 1e-6, rtol: 1e-5 }, grad: { atol: 2e-6, rtol: 1e-4 } };

// Row counts 1..65 and C around the workgroup widths (32..256) and past one stride (576, 4099); 130 and
// 200 rows span several 64-row blocks of the dw pass (the last one partial).
const shapes = [
  [1, 33],
  [3, 64],
  [17, 576],
  [33, 33],
  [65, 64],
  [65, 576],
  [3, 1],
  [2, 4099],
  [2, 3, 64],
  [130, 33],
  [200, 64],
];

for (const shape of shapes) {
  const C = shape[shape.length - 1]!;
  for (const eps of shape[1] === 33 ? [1e-6, 1e-5] : [1e-6]) {
    test(`rmsnorm [${shape}] eps ${eps}`, () =>
      checkOp({
        name: "rmsnorm",
        shapes: [shape, [C]],
        gpu: ([x, w]) => rmsnorm(x!, w!, eps),
        ref: ([x, w]) => R.rmsnorm(x!, w!, eps),
        refGrad: ([x, w], dy) => R.rmsnormGrad(x!, w!, eps, dy),
        ...tol,
      }));
  }
}

test("rmsnorm over more rows than one grid dimension holds (70000 rows)", () =>
  checkOp({
    name: "rmsnorm",
    shapes: [[70000, 2], [2]],
    gpu: ([x, w]) => rmsnorm(x!, w!),
    ref: ([x, w]) => R.rmsnorm(x!, w!, 1e-6),
    refGrad: ([x, w], dy) => R.rmsnormGrad(x!, w!, 1e-6, dy),
    fwd: tol.fwd,
    // dw sums 70000 terms of size ~1 in f32.
    grad: { atol: 1e-4, rtol: 1e-4 },
  }));

test("rmsnorm with a frozen weight computes dx only, and dw is bit-identical across runs", async () => {
  const [N, C] = [97, 576];
  const xs = rand(N * C, 7);
  const ws = rand(C, 8, 0.5, 1.5);
  const dys = rand(N * C, 9);
  const [dxRef, dwRef] = R.rmsnormGrad(xs, ws, 1e-6, dys);
  const dy = Tensor.fromArray(Float32Array.from(dys), [N, C]);

  const x = Tensor.fromArray(Float32Array.from(xs), [N, C], { requires_grad: true });
  const frozen = Tensor.fromArray(Float32Array.from(ws), [C]);
  rmsnorm(x, frozen).backward(dy);
  assert.equal(frozen.grad, null);
  expectAllClose(await x.grad!.toArray(), dxRef, tol.grad, "dx");

  const runs: Float32Array[] = [];
  for (let k = 0; k < 2; k++) {
    const w = Tensor.fromArray(Float32Array.from(ws), [C], { requires_grad: true });
    rmsnorm(Tensor.fromArray(Float32Array.from(xs), [N, C]), w).backward(dy);
    runs.push((await w.grad!.toArray()) as Float32Array);
  }
  expectAllClose(runs[0]!, dwRef, tol.grad, "dw");
  assert.deepEqual(new Uint32Array(runs[0]!.buffer), new Uint32Array(runs[1]!.buffer));
});

test("rmsnorm rejects a weight of the wrong size and non-f32 inputs", () => {
  const x = Tensor.fromArray(new Float32Array(6), [2, 3]);
  assert.throws(() => rmsnorm(x, Tensor.fromArray(new Float32Array(2), [2])), /rmsnorm: weight of shape \[2\] does not match x's last dim 3/);
  const ids = Tensor.fromArray(new Int32Array(6), [2, 3]);
  assert.throws(() => rmsnorm(ids, Tensor.fromArray(new Float32Array(3), [3])), /rmsnorm: needs f32 tensors, got x i32/);
});

// PyTorch (LlamaRMSNorm's formula, float64 autograd) on f32-rounded inputs: the same 1e-6/1e-5 as the
// float64 reference, since both are exact up to the kernel's f32 arithmetic.
for (const [name, c] of Object.entries(fixtures("rmsnorm"))) {
  test(`rmsnorm matches PyTorch: ${name}`, async () => {
    const eps = c.eps as number;
    const xf = tensorOf(c, "x");
    const wf = tensorOf(c, "weight");
    const x = Tensor.fromArray(xf.data, xf.shape, { requires_grad: true });
    const w = Tensor.fromArray(wf.data, wf.shape, { requires_grad: true });
    const y = rmsnorm(x, w, eps);
    expectAllClose(await y.toArray(), tensorOf(c, "y").data, tol.fwd, `${name} y`);
    const dy = tensorOf(c, "dy");
    y.backward(Tensor.fromArray(dy.data, dy.shape));
    expectAllClose(await x.grad!.toArray(), tensorOf(c, "dx").data, tol.grad, `${name} dx`);
    expectAllClose(await w.grad!.toArray(), tensorOf(c, "dw").data, tol.grad, `${name} dw`);
  });
}
