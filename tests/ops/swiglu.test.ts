import assert from "node:assert/strict";
import { before, test } from "node:test";
import { swiglu, Tensor } from "../../src/index.ts";
import { geglu } from "../../src/ops/swiglu.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/swiglu.ts";

before(setup);

// f32 exp is good to (3 + 2|x|) ulp in WGSL: for |gate| <= 6 that is ~1e-6 relative on sigmoid, and a
// product of three f32 factors adds a few ulp more.
const tol: Tol = { atol: 1e-6, rtol: 1e-5 };

const shapes = [[1], [3, 33], [17, 64], [33, 576], [65, 64], [2, 3, 17]];

for (const shape of shapes) {
  test(`swiglu [${shape}]`, () =>
    checkOp({
      name: "swiglu",
      shapes: [shape, shape],
      ranges: [[-6, 6], [-2, 2]],
      gpu: ([gate, up]) => swiglu(gate!, up!),
      ref: ([gate, up]) => R.swiglu(gate!, up!),
      refGrad: ([gate, up], dy) => R.swigluGrad(gate!, up!, dy),
      fwd: tol,
    }));
}

test("swiglu saturates without NaN for gates in [-100, 100]", () =>
  checkOp({
    name: "swiglu",
    shapes: [[4, 129], [4, 129]],
    ranges: [[-100, 100], [-2, 2]],
    gpu: ([gate, up]) => swiglu(gate!, up!),
    ref: ([gate, up]) => R.swiglu(gate!, up!),
    refGrad: ([gate, up], dy) => R.swigluGrad(gate!, up!, dy),
    // exp(-gate) for |gate| near 88 is good to ~180 ulp (2e-5 relative); silu there is ~gate or ~0.
    fwd: { atol: 1e-6, rtol: 3e-5 },
  }));

// GeGLU: the same kernel with ACT = gelu_tanh. tanh from exp(-2|u|) is within a few ulp; the cubic in u
// adds a few more at |gate| = 6.
for (const shape of [[1], [3, 33], [17, 65], [2, 3, 17]]) {
  test(`geglu [${shape}]`, () =>
    checkOp({
      name: "geglu",
      shapes: [shape, shape],
      ranges: [[-6, 6], [-2, 2]],
      gpu: ([gate, up]) => geglu(gate!, up!),
      ref: ([gate, up]) => R.geglu(gate!, up!),
      refGrad: ([gate, up], dy) => R.gegluGrad(gate!, up!, dy),
      fwd: tol,
    }));
}

test("geglu saturates without NaN for gates in [-100, 100]", () =>
  checkOp({
    name: "geglu",
    shapes: [[3, 65], [3, 65]],
    ranges: [[-100, 100], [-2, 2]],
    gpu: ([gate, up]) => geglu(gate!, up!),
    ref: ([gate, up]) => R.geglu(gate!, up!),
    refGrad: ([gate, up], dy) => R.gegluGrad(gate!, up!, dy),
    fwd: { atol: 1e-6, rtol: 3e-5 },
  }));

test("geglu computes only the gradients that are needed", async () => {
  const n = 33;
  const gs = rand(n, 4, -6, 6);
  const us = rand(n, 5, -2, 2);
  const dys = rand(n, 6);
  const [dgateRef, dupRef] = R.gegluGrad(gs, us, dys);
  const dy = Tensor.fromArray(Float32Array.from(dys), [n]);
  for (const [gateGrad, upGrad] of [[true, false], [false, true]]) {
    const gate = Tensor.fromArray(Float32Array.from(gs), [n], { requires_grad: gateGrad });
    const up = Tensor.fromArray(Float32Array.from(us), [n], { requires_grad: upGrad });
    geglu(gate, up).backward(dy);
    if (gateGrad) expectAllClose(await gate.grad!.toArray(), dgateRef, tol, "dgate alone");
    else assert.equal(gate.grad, null);
    if (upGrad) expectAllClose(await up.grad!.toArray(), dupRef, tol, "dup alone");
    else assert.equal(up.grad, null);
  }
  assert.throws(() => geglu(gate3(), Tensor.fromArray(new Float32Array(3), [1, 3])), /geglu: gate \[3\] and up \[1, 3\] must have the same shape/);
});

const gate3 = () => Tensor.fromArray(new Float32Array(3), [3]);

test("swiglu computes only the gradients that are needed", async () => {
  const n = 300;
  const gs = rand(n, 1, -6, 6);
  const us = rand(n, 2, -2, 2);
  const dys = rand(n, 3);
  const [dgateRef, dupRef] = R.swigluGrad(gs, us, dys);
  const dy = Tensor.fromArray(Float32Array.from(dys), [n]);
  for (const [gateGrad, upGrad] of [[true, false], [false, true]]) {
    const gate = Tensor.fromArray(Float32Array.from(gs), [n], { requires_grad: gateGrad });
    const up = Tensor.fromArray(Float32Array.from(us), [n], { requires_grad: upGrad });
    swiglu(gate, up).backward(dy);
    if (gateGrad) expectAllClose(await gate.grad!.toArray(), dgateRef, tol, "dgate alone");
    else assert.equal(gate.grad, null);
    if (upGrad) expectAllClose(await up.grad!.toArray(), dupRef, tol, "dup alone");
    else assert.equal(up.grad, null);
  }
});

test("swiglu rejects mismatched shapes and non-f32 inputs", () => {
  const a = Tensor.fromArray(new Float32Array(6), [2, 3]);
  assert.throws(() => swiglu(a, Tensor.fromArray(new Float32Array(6), [3, 2])), /swiglu: gate \[2, 3\] and up \[3, 2\] must have the same shape/);
  assert.throws(() => swiglu(a, Tensor.fromArray(new Int32Array(6), [2, 3])), /swiglu: needs f32 tensors, got gate f32 and up i32/);
});

// PyTorch F.silu(gate) * up (and, for geglu_* cases, transformers' GELUTanh(gate) * up) in float64 on f32-rounded inputs: the float64 reference's tolerances.
for (const [name, c] of Object.entries({ ...fixtures("swiglu"), ...fixtures("swiglu_geglu") })) {
  test(`swiglu matches PyTorch: ${name}`, async () => {
    const g = tensorOf(c, "gate");
    const u = tensorOf(c, "up");
    const gate = Tensor.fromArray(g.data, g.shape, { requires_grad: true });
    const up = Tensor.fromArray(u.data, u.shape, { requires_grad: true });
    const out = (name.startsWith("geglu") ? geglu : swiglu)(gate, up);
    const t = name.endsWith("large_gates") ? { atol: 1e-6, rtol: 3e-5 } : tol;
    expectAllClose(await out.toArray(), tensorOf(c, "out").data, t, `${name} out`);
    const dy = tensorOf(c, "dy");
    out.backward(Tensor.fromArray(dy.data, dy.shape));
    expectAllClose(await gate.grad!.toArray(), tensorOf(c, "dgate").data, t, `${name} dgate`);
    expectAllClose(await up.grad!.toArray(), tensorOf(c, "dup").data, t, `${name} dup`);
  });
}
