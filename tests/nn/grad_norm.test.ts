// clip_grad_norm_ (src/nn/grad_norm.ts, shaders/grad_norm.wgsl) against the float64 norm: many tensors in few
// dispatches, deterministic bits, NaN/Inf, no gradients, and a clipped AdamW step in one submission.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { AdamW, clip_grad_norm_, flush, sync, Tensor } from "../../src/index.ts";
import { gpu, initGpu } from "../../src/gpu/device.ts";
import { expectAllClose, rand, setup } from "../helpers.ts";
import * as R from "../reference/grad_norm.ts";

before(setup);

/** 200 LoRA-like gradients (A: r×in, B: out×r) of a few sizes, plus one large enough for many workgroups. */
function manyGrads(): Float64Array[] {
  const sizes = Array.from({ length: 199 }, (_, i) => [8 * 64, 64 * 8, 8 * 96, 17, 1][i % 5]!);
  sizes.push(300_001);
  return sizes.map((n, i) => rand(n, 1000 + i, -2, 2));
}

test("the grad norm over 200 tensors matches float64 in 30 dispatches and is deterministic", async () => {
  const data = manyGrads();
  const params = data.map((d) => {
    const p = Tensor.fromArray(new Float32Array(d.length));
    p.grad = Tensor.fromArray(Float32Array.from(d));
    return p;
  });
  const opt = new AdamW(params); // its zero_grad() drops the pending clip factors
  await sync();
  const before = gpu().batch.counters.dispatches;
  const a = clip_grad_norm_(params, 1);
  assert.equal(gpu().batch.counters.dispatches - before, Math.ceil(200 / 7) + 1);
  const want = R.gradNorm(data);
  const got = await a.item();
  expectAllClose([got], [want], { atol: 0, rtol: 2e-6 }, "norm");
  opt.zero_grad();
  params.forEach((p, i) => (p.grad = Tensor.fromArray(Float32Array.from(data[i]!))));
  const b = clip_grad_norm_(params, 1);
  assert.equal(await b.item(), got, "a second run gives the same bits");
  opt.zero_grad();
});

test("a training step (clip + AdamW over 200 params) reads nothing back and is one submission", async () => {
  const data = manyGrads();
  const params = data.map((d, i) => Tensor.fromArray(Float32Array.from(rand(d.length, 7 + i))));
  const opt = new AdamW(params, { lr: 1e-2 });
  const setGrads = () => params.forEach((p, i) => (p.grad = Tensor.fromArray(Float32Array.from(data[i]!))));
  setGrads();
  opt.step(); // creates the state
  opt.zero_grad();
  const g = await initGpu({ validate: false });
  try {
    setGrads();
    await sync();
    const c0 = { ...g.batch.counters };
    const norm = clip_grad_norm_(params, 1);
    opt.step();
    flush();
    const c1 = { ...g.batch.counters };
    assert.equal(c1.readbacks - c0.readbacks, 0, "readbacks");
    assert.equal(c1.submissions - c0.submissions, 1, "submissions");
    // The norm's partial sums, their reduction, one fused AdamW update a param, and the fill that zeroes the
    // update's statistics (the largest value written, which the trainer's divergence check reads with the loss).
    assert.equal(c1.dispatches - c0.dispatches, Math.ceil(200 / 7) + 1 + 200 + 1, "dispatches");
    expectAllClose([await norm.item()], [R.gradNorm(data)], { atol: 0, rtol: 2e-6 }, "norm");
  } finally {
    await initGpu({ validate: true });
    opt.zero_grad();
  }
});

test("a NaN or Inf gradient makes the norm NaN or Inf", async () => {
  const p = Tensor.fromArray([1, 2, 3]);
  const q = Tensor.fromArray([4, 5]);
  const opt = new AdamW([p, q]);
  for (const [bad, isBad] of [
    [NaN, Number.isNaN],
    [Infinity, (x: number) => x === Infinity],
    [-Infinity, (x: number) => x === Infinity],
  ] as const) {
    p.grad = Tensor.fromArray([0.5, bad, 1]);
    q.grad = Tensor.fromArray([1, 1]);
    const norm = clip_grad_norm_([p, q], 1);
    const v = await norm.item();
    assert.ok(isBad(v), `norm with a ${bad} gradient is ${v}`);
    opt.zero_grad();
  }
});

test("clip_grad_norm_ with no gradients gives 0; clipping twice before step() is an error", async () => {
  const p = Tensor.fromArray([1, 2]);
  assert.equal(await clip_grad_norm_([p], 1).item(), 0);
  p.grad = Tensor.fromArray([3, 4]);
  assert.equal(await clip_grad_norm_(p, 1).item(), 5);
  assert.throws(() => clip_grad_norm_([p], 1), /already clipped/);
  const opt = new AdamW([p]);
  opt.zero_grad();
  assert.equal(p.grad, null);
  p.grad = Tensor.fromArray([3, 4]);
  assert.equal(await clip_grad_norm_([p], 1).item(), 5);
  opt.step();
  opt.zero_grad();
});
