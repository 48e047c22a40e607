import assert from "node:assert/strict";
import { before, test } from "node:test";
import { add, exp, memoryStats, mul, no_grad, scale, sync, Tensor, tidy } from "../../src/index.ts";
import { gpu } from "../../src/gpu/device.ts";
import { expectAllClose, setup } from "../helpers.ts";

before(setup);

const TOL = { atol: 1e-6, rtol: 1e-5 };
const f32 = (xs: number[]) => Float32Array.from(xs);

test("backward fills .grad of leaves; a tensor used twice gets both contributions", async () => {
  const x = Tensor.fromArray([0.5, -1, 2], [3], { requires_grad: true });
  const w = Tensor.fromArray([3, 4, -2], [3], { requires_grad: true });
  // y = x*x*w + x  ->  dy/dx = 2xw + 1, dy/dw = x^2
  const y = add(mul(mul(x, x), w), x);
  y.backward(Tensor.fromArray([1, 1, 1]));
  expectAllClose(await x.grad!.toArray(), [2 * 0.5 * 3 + 1, 2 * -1 * 4 + 1, 2 * 2 * -2 + 1], TOL, "dx");
  expectAllClose(await w.grad!.toArray(), [0.25, 1, 4], TOL, "dw");
});

test("gradients accumulate across backward calls until zero_grad", async () => {
  const x = Tensor.fromArray([1, 2], [2], { requires_grad: true });
  const run = () => scale(x, 3).backward(Tensor.fromArray([1, 1]));
  run();
  run();
  expectAllClose(await x.grad!.toArray(), f32([6, 6]), TOL, "two calls");
  x.zero_grad();
  assert.equal(x.grad, null);
  run();
  expectAllClose(await x.grad!.toArray(), f32([3, 3]), TOL, "after zero_grad");
});

test("backward without a gradient needs a one-element tensor, and the seed is 1", async () => {
  const x = Tensor.fromArray([2], [1], { requires_grad: true });
  exp(x).backward();
  expectAllClose(await x.grad!.toArray(), [Math.exp(2)], { atol: 1e-5, rtol: 1e-6 }, "d exp");
  const v = Tensor.fromArray([1, 2], [2], { requires_grad: true });
  assert.throws(() => exp(v).backward(), /needs a one-element tensor; got shape \[2\]/);
  assert.throws(() => exp(v).backward(Tensor.fromArray([1, 2, 3])), /gradient shape \[3\] does not match tensor shape \[2\]/);
});

test("backward on a tensor without grad history is an error that says why", () => {
  const a = Tensor.fromArray([1, 2]);
  assert.throws(() => exp(a).backward(Tensor.fromArray([1, 1])), /does not require grad and has no grad history/);
  const x = Tensor.fromArray([1, 2], [2], { requires_grad: true });
  const y = no_grad(() => exp(x));
  assert.equal(y.requires_grad, false);
  assert.equal(y.node, null);
  assert.throws(() => y.backward(Tensor.fromArray([1, 1])), /does not require grad and has no grad history/);
});

test("a second backward through a freed graph is an error", () => {
  const x = Tensor.fromArray([1, 2], [2], { requires_grad: true });
  const y = exp(x);
  const z = scale(y, 2);
  z.backward(Tensor.fromArray([1, 1]));
  assert.throws(() => z.backward(Tensor.fromArray([1, 1])), /already freed/);
  assert.throws(() => y.backward(Tensor.fromArray([1, 1])), /already freed/);
});

test("only leaves that require grad get a gradient (frozen inputs get none)", async () => {
  const x = Tensor.fromArray([1, 2], [2], { requires_grad: true });
  const frozen = Tensor.fromArray([5, 6], [2]);
  mul(x, frozen).backward(Tensor.fromArray([1, 1]));
  assert.equal(frozen.grad, null);
  expectAllClose(await x.grad!.toArray(), f32([5, 6]), TOL, "dx");
});

test("backward releases intermediates as it goes: afterwards only leaves and their grads are live", async () => {
  await sync();
  const base = memoryStats().liveBytes;
  const x = Tensor.fromArray(new Float32Array(4096).fill(0.5), [4096], { requires_grad: true });
  const leafBytes = memoryStats().liveBytes - base;
  tidy(() => {
    let h = x;
    for (let i = 0; i < 6; i++) h = exp(mul(h, h)); // saved tensors at every step
    h.backward(Tensor.fromArray(new Float32Array(4096).fill(1)));
  });
  assert.ok(x.grad);
  assert.equal(memoryStats().liveBytes - base, 2 * leafBytes, "x and x.grad only");
  x.grad!.dispose();
  x.dispose();
  assert.equal(memoryStats().liveBytes, base);
});

test("tidy frees the graph of a forward pass that nothing returned (no backward ran)", async () => {
  await sync();
  const x = Tensor.fromArray(new Float32Array(1000).fill(0.5), [1000], { requires_grad: true });
  const base = memoryStats().liveBytes;
  tidy(() => {
    exp(mul(x, x)); // saves x, x and exp's output
  });
  assert.equal(memoryStats().liveBytes, base, "saved buffers released");
  // A returned tensor keeps its graph: backward still works after tidy.
  const y = tidy(() => exp(mul(x, x)));
  y.backward(Tensor.fromArray(new Float32Array(1000).fill(1)));
  expectAllClose(await x.grad!.toArray(), new Float32Array(1000).fill(2 * 0.5 * Math.exp(0.25)), TOL, "dx");
  x.grad!.dispose();
  x.dispose();
  y.dispose();
});

test("an empty tensor is fine on every host", async () => {
  const e = Tensor.fromArray([], [0, 3]);
  assert.equal(e.size, 0);
  assert.deepEqual([...(await e.toArray())], []);
  e.dispose();
});

test("tidy disposes what the function made and keeps what it returns", async () => {
  await sync();
  const base = memoryStats().liveBytes;
  const a = Tensor.fromArray([1, 2, 3]);
  const kept = tidy(() => {
    const t = exp(a);
    const u = scale(t, 2);
    return { u };
  });
  assert.equal(memoryStats().liveBytes - base, 2 * 256, "a and u (one 256-byte class each)");
  expectAllClose(await kept.u.toArray(), [2 * Math.E, 2 * Math.exp(2), 2 * Math.exp(3)], { atol: 1e-5, rtol: 1e-5 }, "u");
  kept.u.dispose();
  a.dispose();
  assert.equal(memoryStats().liveBytes, base);
});

test("no intermediate is read back inside a step: backward issues no readback", async () => {
  const g = gpu();
  await sync();
  const reads = g.batch.counters.readbacks;
  const x = Tensor.fromArray([1, 2, 3], [3], { requires_grad: true });
  tidy(() => mul(exp(x), x).backward(Tensor.fromArray([1, 1, 1])));
  assert.equal(g.batch.counters.readbacks, reads);
  await x.grad!.toArray();
  assert.equal(g.batch.counters.readbacks, reads + 1);
});
