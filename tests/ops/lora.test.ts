import assert from "node:assert/strict";
import { before, test } from "node:test";
import { sizeClass } from "../../src/gpu/buffers.ts";
import { gpu } from "../../src/gpu/device.ts";
import type { BufferRef, Params } from "../../src/gpu/encoder.ts";
import * as K from "../../src/kernels/lora.ts";
import { initLoraWeights, lora_linear, memoryStats, Tensor, type LoraLinearOptions } from "../../src/index.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/lora.ts";

before(setup);

// f32 products of at most 65 terms in [-1, 1], and the adapter's sum scaled by up to 16 (alpha 16, r 1).
const tol: Tol = { atol: 2e-5, rtol: 1e-4 };

const f32 = (a: ArrayLike<number>) => Tensor.fromArray(Float32Array.from(a), [a.length]);
const bitsOf = async (t: Tensor) => new Uint32Array(((await t.toArray()) as Float32Array).buffer);

interface Case {
  lead: number[];
  I: number;
  O: number;
  R: number;
  alpha: number;
  bias: boolean;
  dropout?: number;
}

const SEED = 7;
const STEP = 3;

function optionsOf(c: Case): LoraLinearOptions {
  return { scaling: c.alpha / c.R, dropout: c.dropout ?? 0, seed: SEED, step: STEP };
}

// Every input requires grad here, the base layer too: its gradients are checked as well (dW, db).
for (const c of [
  { lead: [], I: 33, O: 65, R: 1, alpha: 16, bias: true },
  { lead: [17], I: 33, O: 65, R: 8, alpha: 16, bias: false },
  { lead: [2, 9], I: 33, O: 65, R: 8, alpha: 16, bias: true, dropout: 0.25 },
  { lead: [5], I: 33, O: 13, R: 8, alpha: 8, bias: false, dropout: 0.5 },
] satisfies Case[]) {
  const T = c.lead.reduce((a, b) => a * b, 1);
  const d: R.LoraDims = { T, I: c.I, O: c.O, R: c.R, scaling: c.alpha / c.R };
  const mask = c.dropout ? R.dropoutMask(T * c.I, c.dropout, SEED, STEP) : null;
  const shapes = [[...c.lead, c.I], [c.O, c.I], ...(c.bias ? [[c.O]] : []), [c.R, c.I], [c.O, c.R]];
  const split = <X>(xs: X[]): [X, X, X | null, X, X] => (c.bias ? (xs as [X, X, X, X, X]) : [xs[0]!, xs[1]!, null, xs[2]!, xs[3]!]);
  test(`lora_linear x [${[...c.lead, c.I]}], out ${c.O}, r ${c.R}${c.bias ? ", bias" : ""}${c.dropout ? `, dropout ${c.dropout}` : ""}`, () =>
    checkOp({
      name: "lora_linear",
      shapes,
      gpu: (ts) => {
        const [x, w, b, A, B] = split(ts);
        return lora_linear(x!, w!, b, A!, B!, optionsOf(c));
      },
      ref: (xs) => {
        const [x, w, b, A, B] = split(xs);
        return R.loraLinear(x, w, b, A, B, d, mask);
      },
      refGrad: (xs, dy) => {
        const [x, w, b, A, B] = split(xs);
        const [dx, dW, db, dA, dB] = R.loraLinearGrad(x, w, b, A, B, dy, d, mask);
        return c.bias ? [dx, dW, db!, dA, dB] : [dx, dW, dA, dB];
      },
      fwd: tol,
    }));
}

// PyTorch (PEFT's formula, dropout 0, frozen base layer) in float64 on f32-rounded inputs.
for (const [name, c] of Object.entries(fixtures("lora")).filter(([, c]) => "x" in c)) {
  test(`lora_linear matches PyTorch: ${name}`, async () => {
    const t = (key: string, requires_grad = false) => {
      const f = tensorOf(c, key);
      return Tensor.fromArray(f.data, f.shape, { requires_grad });
    };
    const [x, w, A, B] = [t("x", true), t("weight"), t("lora_A", true), t("lora_B", true)];
    const b = "bias" in c ? t("bias") : null;
    const y = lora_linear(x, w, b, A, B, { scaling: c.scaling as number });
    assert.deepEqual(y.shape, [...x.shape.slice(0, -1), w.shape[0]]);
    expectAllClose(await y.toArray(), tensorOf(c, "y").data, tol, `${name} y`);
    y.backward(t("dy"));
    expectAllClose(await x.grad!.toArray(), tensorOf(c, "dx").data, tol, `${name} dx`);
    expectAllClose(await A.grad!.toArray(), tensorOf(c, "dA").data, tol, `${name} dA`);
    expectAllClose(await B.grad!.toArray(), tensorOf(c, "dB").data, tol, `${name} dB`);
    assert.equal(w.grad, null);
    assert.equal(b?.grad ?? null, null);
  });
}

test("Philox4x32-10 reference matches Random123's known answers", () => {
  const hex = (s: string) => s.split(" ").map((w) => parseInt(w, 16));
  const kat = [
    ["00000000 00000000 00000000 00000000", "00000000 00000000", "6627e8d5 e169c58d bc57ac4c 9b00dbd8"],
    ["ffffffff ffffffff ffffffff ffffffff", "ffffffff ffffffff", "408f276d 41c83b0e a20bc7c6 6d5451fd"],
    ["243f6a88 85a308d3 13198a2e 03707344", "a4093822 299f31d0", "d16cfe09 94fdcceb 5001e420 24126ea1"],
  ];
  for (const [ctr, key, want] of kat) assert.deepEqual(R.philox(hex(ctr!), hex(key!)), hex(want!));
});

/** Dropout's multipliers (0 or 1/(1 - p)) on the GPU: the kernel alone on ones. */
async function gpuMask(n: number, m: K.DropoutMask): Promise<Float32Array> {
  const ones = f32(new Float32Array(n).fill(1));
  const h = K.dropout(ones, m);
  const out = (await h.toArray()) as Float32Array;
  ones.dispose();
  h.dispose();
  return out;
}

test("dropout mask equals the Philox reference bit for bit", async () => {
  const n = 65537; // not a multiple of 4: the last thread covers one element
  for (const m of [{ p: 0.1, seed: 0, step: 0 }, { p: 0.37, seed: 0xdeadbeef, step: 123456 }]) {
    const got = await gpuMask(n, m);
    const want = R.dropoutMask(n, m.p, m.seed, m.step);
    const bad = got.findIndex((v, i) => v !== want[i]);
    assert.equal(bad, -1, `p ${m.p} seed ${m.seed} step ${m.step}: element ${bad} is ${got[bad]}, want ${want[bad]}`);
  }
});

test("dropout drops p of the elements and scales the kept by 1/(1 - p)", async () => {
  const n = 1 << 20;
  for (const p of [0.05, 0.1, 0.5]) {
    const mask = await gpuMask(n, { p, seed: 42, step: 1 });
    const scale = Math.fround(1 / (1 - p));
    let dropped = 0;
    for (const v of mask) {
      if (v === 0) dropped++;
      else assert.equal(v, scale);
    }
    // Binomial(n, p): 5 standard deviations (about 1 in 3.5 million by chance).
    const bound = 5 * Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(dropped - n * p) < bound, `p ${p}: dropped ${dropped} of ${n}, want ${n * p} ± ${bound.toFixed(0)}`);
  }
});

test("dropout masks of different steps and seeds are independent; one (seed, step) replays exactly", async () => {
  const n = 1 << 18;
  const p = 0.3;
  const base = await gpuMask(n, { p, seed: 5, step: 10 });
  assert.deepEqual(await gpuMask(n, { p, seed: 5, step: 10 }), base);
  for (const other of [{ p, seed: 5, step: 11 }, { p, seed: 6, step: 10 }]) {
    const m = await gpuMask(n, other);
    let differ = 0;
    for (let i = 0; i < n; i++) if ((m[i] === 0) !== (base[i] === 0)) differ++;
    // Independent masks disagree with probability q = 2p(1 - p).
    const q = 2 * p * (1 - p);
    const bound = 5 * Math.sqrt(n * q * (1 - q));
    assert.ok(Math.abs(differ - n * q) < bound, `seed ${other.seed} step ${other.step}: ${differ} of ${n} differ, want ${n * q} ± ${bound.toFixed(0)}`);
  }
});

test("lora_linear with dropout: the gradients of the GPU's own mask, bit-identical on replay", async () => {
  const [T, I, O, Rk] = [17, 33, 65, 8];
  const d: R.LoraDims = { T, I, O, R: Rk, scaling: 2 };
  const xs = rand(T * I, 1);
  const ws = rand(O * I, 2);
  const bs = rand(O, 3);
  const As = rand(Rk * I, 4, -0.2, 0.2);
  const Bs = rand(O * Rk, 5, -0.5, 0.5);
  const dys = rand(T * O, 6);
  const run = async (step: number) => {
    const x = Tensor.fromArray(Float32Array.from(xs), [T, I], { requires_grad: true });
    const A = Tensor.fromArray(Float32Array.from(As), [Rk, I], { requires_grad: true });
    const B = Tensor.fromArray(Float32Array.from(Bs), [O, Rk], { requires_grad: true });
    const y = lora_linear(x, Tensor.fromArray(Float32Array.from(ws), [O, I]), f32(bs), A, B, { scaling: 2, dropout: 0.2, seed: 99, step });
    y.backward(Tensor.fromArray(Float32Array.from(dys), [T, O]));
    return { y: await bitsOf(y), dx: await bitsOf(x.grad!), dA: await bitsOf(A.grad!), dB: await bitsOf(B.grad!) };
  };
  const first = await run(4);
  assert.deepEqual(await run(4), first, "the same (seed, step) replays every bit");
  assert.notDeepEqual((await run(5)).y, first.y, "another step, another mask");

  const mask = Float64Array.from(await gpuMask(T * I, { p: 0.2, seed: 99, step: 4 }));
  const want = R.loraLinear(xs, ws, bs, As, Bs, d, mask);
  const [dx, , , dA, dB] = R.loraLinearGrad(xs, ws, bs, As, Bs, dys, d, mask);
  const vals = (b: Uint32Array) => new Float32Array(b.buffer);
  expectAllClose(vals(first.y), want, tol, "y");
  expectAllClose(vals(first.dx), dx, tol, "dx");
  expectAllClose(vals(first.dA), dA, tol, "dA");
  expectAllClose(vals(first.dB), dB, tol, "dB");
});

test("dropout 0 or training: false runs no dropout kernel and gives the no-dropout bits", async () => {
  const [T, I, O, Rk] = [9, 33, 20, 4];
  const make = () => [
    Tensor.fromArray(Float32Array.from(rand(T * I, 1)), [T, I]),
    Tensor.fromArray(Float32Array.from(rand(O * I, 2)), [O, I]),
    Tensor.fromArray(Float32Array.from(rand(Rk * I, 3)), [Rk, I]),
    Tensor.fromArray(Float32Array.from(rand(O * Rk, 4)), [O, Rk]),
  ];
  const [x, w, A, B] = make();
  const counters = gpu().batch.counters;
  const outputs: Uint32Array[] = [];
  const dispatches: number[] = [];
  for (const o of [{ dropout: 0 }, { dropout: 0.5, training: false, seed: 1, step: 1 }, { dropout: 0.5, seed: 1, step: 1 }]) {
    const before = counters.dispatches;
    const y = lora_linear(x!, w!, null, A!, B!, { scaling: 1, ...o });
    dispatches.push(counters.dispatches - before);
    outputs.push(await bitsOf(y));
  }
  assert.deepEqual(dispatches, [3, 3, 4], "three products (s·u Bᵀ accumulates into y); dropout adds one kernel");
  assert.deepEqual(outputs[1], outputs[0]);
  assert.notDeepEqual(outputs[2], outputs[0]);
});

/** The dispatches `fn` records: pipeline label, params, and the buffers bound by name. */
function spyDispatches(fn: () => void): { label: string; params: Params; buffers: Record<string, BufferRef> }[] {
  const batch = gpu().batch;
  const calls: { label: string; params: Params; buffers: Record<string, BufferRef> }[] = [];
  const dispatch = batch.dispatch;
  batch.dispatch = (p, buffers, params, workgroups) => {
    calls.push({ label: p.label, params, buffers });
    dispatch.call(batch, p, buffers, params, workgroups);
  };
  try {
    fn();
  } finally {
    batch.dispatch = dispatch;
  }
  return calls;
}

test("a frozen base layer gets no gradient: no [out, in] buffer, no weight-gradient product", async () => {
  const [T, I, O, Rk] = [4, 256, 384, 4];
  const weightBytes = O * I * 4;
  const x = Tensor.fromArray(Float32Array.from(rand(T * I, 1)), [T, I], { requires_grad: true });
  const w = Tensor.fromArray(Float32Array.from(rand(O * I, 2)), [O, I]);
  const b = Tensor.fromArray(Float32Array.from(rand(O, 3)), [O]);
  const { A, B } = initLoraWeights(I, O, Rk, 11);
  const dy = Tensor.fromArray(Float32Array.from(rand(T * O, 4)), [T, O]);
  const grads = () => [x, w, b, A, B].map((t) => t.grad);
  /** Peak bytes above the start while backward runs, and the matmuls it dispatched, as [M, N]. */
  const backwardOf = () => {
    const y = lora_linear(x, w, b, A, B, { scaling: 4, dropout: 0.1, seed: 1, step: 1 });
    gpu().pool.resetPeak();
    const start = memoryStats().liveBytes;
    const calls = spyDispatches(() => y.backward(dy));
    y.dispose();
    const products = calls.filter((c) => c.label.startsWith("matmul.")).map((c) => [c.params.M, c.params.N]);
    return { peak: memoryStats().peakBytes - start, products };
  };

  const base = memoryStats().liveBytes;
  const frozen = backwardOf();
  assert.deepEqual(frozen.products, [[O, Rk], [T, Rk], [Rk, I], [T, I], [T, I]], "dB, dy·B, dA, dy·W, du·A");
  assert.ok(frozen.peak < weightBytes / 4, `backward peaked ${frozen.peak} bytes above its start`);
  assert.equal(w.grad, null);
  assert.equal(b.grad, null);
  for (const g of grads()) g?.dispose();
  for (const t of [x, A, B]) t.grad = null;
  assert.equal(memoryStats().liveBytes, base, "the graph's saved buffers were released");

  // The same layer with a trainable weight: the check above would have seen its gradient.
  w.requires_grad = true;
  const trainable = backwardOf();
  assert.deepEqual(trainable.products.at(-1), [O, I]);
  assert.ok(trainable.peak >= weightBytes);
  assert.ok(w.grad);
  for (const g of grads()) g?.dispose();
});

test("without dropout the adapter's terms accumulate into y and dx: no [T, out] or [T, in] temporary", async () => {
  const [T, I, O, Rk] = [4, 256, 384, 4];
  const x = Tensor.fromArray(Float32Array.from(rand(T * I, 1)), [T, I], { requires_grad: true });
  const w = Tensor.fromArray(Float32Array.from(rand(O * I, 2)), [O, I]);
  const A = Tensor.fromArray(Float32Array.from(rand(Rk * I, 3)), [Rk, I], { requires_grad: true });
  const B = Tensor.fromArray(Float32Array.from(rand(O * Rk, 4)), [O, Rk], { requires_grad: true });
  const dy = Tensor.fromArray(Float32Array.from(rand(T * O, 5)), [T, O]);
  const bytes = (rows: number, cols: number) => sizeClass(rows * cols * 4);
  /** Peak bytes above the start while `fn` runs, and the [M, N] of each kernel it dispatched (null: not a matmul). */
  const measure = (fn: () => void) => {
    gpu().pool.resetPeak();
    const start = memoryStats().liveBytes;
    const calls = spyDispatches(fn);
    const kernels = calls.map((c) => (c.label.startsWith("matmul.") ? [c.params.M, c.params.N] : null));
    return { peak: memoryStats().peakBytes - start, kernels };
  };

  let y: Tensor | null = null;
  const forward = measure(() => (y = lora_linear(x, w, null, A, B, { scaling: 2 })));
  assert.deepEqual(forward.kernels, [[T, O], [T, Rk], [T, O]], "y = x·Wᵀ, u = x·Aᵀ, y += s·u·Bᵀ");
  assert.equal(forward.peak, bytes(T, O) + bytes(T, Rk), "forward holds y and u only");

  const backward = measure(() => y!.backward(dy));
  assert.deepEqual(backward.kernels, [[O, Rk], [T, Rk], [Rk, I], [T, I], [T, I]], "dB, g = dy·B, dA, dy·W, dx += s·g·A");
  // The copy of dy that backward starts from, dB, g, dA and dx.
  const bound = bytes(T, O) + bytes(O, Rk) + bytes(T, Rk) + bytes(Rk, I) + bytes(T, I);
  assert.ok(backward.peak <= bound, `backward peaked ${backward.peak} bytes, bound ${bound}`);
  for (const t of [x, A, B]) t.grad?.dispose();
  for (const t of [x, w, A, B, dy, y!]) t.dispose();
});

test("initLoraWeights: A ~ U(±1/sqrt(in)) as PEFT's kaiming_uniform_(a=sqrt(5)), B zeros, seeded", async () => {
  const cases = Object.values(fixtures("lora")).filter((c) => "bound" in c);
  for (const c of cases) {
    const I = c.in_features as number;
    const bound = c.bound as number;
    assert.ok(Math.abs(1 / Math.sqrt(I) - bound) < 1e-15, `torch's bound for in ${I} is ${bound}`);
    const { A, B } = initLoraWeights(I, 65, 8, 3);
    assert.deepEqual([A.shape, B.shape, A.requires_grad, B.requires_grad], [[8, I], [65, 8], true, true]);
    const a = (await A.toArray()) as Float32Array;
    expectAllClose(a, R.uniformInit(8 * I, bound, 3), { atol: 0, rtol: 0 }, "A vs the Philox reference");
    assert.ok(a.every((v) => Math.abs(v) <= Math.fround(bound)));
    assert.ok((await B.toArray()).every((v) => v === 0));
    if (I >= 4096) {
      // U(-b, b): mean 0 and variance b²/3, to 5 standard errors (n = 32768).
      const n = a.length;
      const mean = a.reduce((s, v) => s + v, 0) / n;
      const variance = a.reduce((s, v) => s + v * v, 0) / n;
      assert.ok(Math.abs(mean) < (5 * bound) / Math.sqrt(3 * n), `mean ${mean}`);
      assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 5 * Math.sqrt(0.8 / n), `variance ${variance}`);
    }
  }
  const a1 = await initLoraWeights(33, 4, 2, 1).A.toArray();
  assert.deepEqual(await initLoraWeights(33, 4, 2, 1).A.toArray(), a1);
  assert.notDeepEqual(await initLoraWeights(33, 4, 2, 2).A.toArray(), a1);
});

test("lora_linear at PEFT's init is the base layer", async () => {
  const [T, I, O] = [3, 33, 65];
  const x = Tensor.fromArray(Float32Array.from(rand(T * I, 1)), [T, I]);
  const w = Tensor.fromArray(Float32Array.from(rand(O * I, 2)), [O, I]);
  const b = Tensor.fromArray(Float32Array.from(rand(O, 3)), [O]);
  const { A, B } = initLoraWeights(I, O, 8, 0);
  const want = R.loraLinear(rand(T * I, 1), rand(O * I, 2), rand(O, 3), new Float64Array(8 * I), new Float64Array(O * 8), { T, I, O, R: 8, scaling: 2 }, null);
  expectAllClose(await lora_linear(x, w, b, A, B, { scaling: 2 }).toArray(), want, tol, "y");
});

test("lora_linear rejects bad shapes, dtypes and options with a message", () => {
  const x = Tensor.empty([3, 8]);
  const w = Tensor.empty([5, 8]);
  const A = Tensor.empty([2, 8]);
  const B = Tensor.empty([5, 2]);
  assert.throws(
    () => lora_linear(x, w, null, A, Tensor.empty([5, 3]), { scaling: 1 }),
    /lora_linear: shapes do not fit .*: x \[3, 8\], weight \[5, 8\], bias null, lora_A \[2, 8\], lora_B \[5, 3\]/,
  );
  assert.throws(() => lora_linear(x, w, Tensor.empty([4]), A, B, { scaling: 1 }), /bias \[4\]/);
  assert.throws(() => lora_linear(x, Tensor.empty([5, 8], "f16"), null, A, B, { scaling: 1 }), /weight must be f32, got f16/);
  assert.throws(() => lora_linear(x, w, null, A, B, { scaling: 1, dropout: 1 }), /dropout must be in \[0, 1\), got 1/);
  assert.throws(() => lora_linear(x, w, null, A, B, { scaling: 1, dropout: 0.1 }), /dropout needs \{ seed, step \}/);
  assert.throws(() => lora_linear(x, w, null, A, B, { scaling: 1, dropout: 0.1, seed: -1, step: 0 }), /seed must be an integer in \[0, 2\^32\)/);
  assert.throws(() => initLoraWeights(8, 5, 0, 1), /r must be a positive integer, got 0/);
});
