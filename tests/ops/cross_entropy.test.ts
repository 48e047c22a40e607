import assert from "node:assert/strict";
import { before, test } from "node:test";
import { fused_linear_cross_entropy, memoryStats, no_grad, scale, Tensor, type FusedCrossEntropyOptions } from "../../src/index.ts";
import { sizeClass } from "../../src/gpu/buffers.ts";
import { gpu } from "../../src/gpu/device.ts";
import { defaultChunkSize } from "../../src/ops/cross_entropy.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/cross_entropy.ts";

before(setup);

// The loss and the entropy sum a few dozen f32 token values, each from f32 exp/log (a few ulp) over up to
// 1000 logits: seen within 2e-7 relative. Gradients: f32 sums of C and V products (softmax values in
// [0, 1], inputs in [-1, 1]): seen within 2e-7 absolute. Large logits (hundreds) carry their f32 rounding
// (ulp 3e-5 at 300) into the loss and the softmax.
const tol = {
  loss: { atol: 1e-6, rtol: 1e-6 },
  entropy: { atol: 1e-6, rtol: 1e-6 },
  grad: { atol: 5e-7, rtol: 1e-5 },
  large: { atol: 1e-5, rtol: 1e-6 },
  largeGrad: { atol: 1e-6, rtol: 1e-4 },
} satisfies Record<string, Tol>;

interface Case {
  N: number;
  C: number;
  V: number;
  hidden: Float64Array;
  weight: Float64Array;
  labels: Int32Array;
  bias?: Float64Array;
}

/** Random inputs; about a quarter of the labels ignored, a quarter the argmax (so accuracy is not ~1/V). */
function makeCase(N: number, C: number, V: number, seed: number, spread = 1): Case {
  const hidden = rand(N * C, seed, -spread, spread);
  const weight = rand(V * C, seed + 1);
  const u = rand(2 * N, seed + 2, 0, 1);
  const labels = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    if (u[n]! < 0.25) labels[n] = -100;
    else if (u[n]! < 0.5) labels[n] = argmaxRow(hidden, weight, n, C, V);
    else labels[n] = Math.floor(u[N + n]! * V);
  }
  return { N, C, V, hidden, weight, labels };
}

function argmaxRow(hidden: Float64Array, weight: Float64Array, n: number, C: number, V: number): number {
  let best = 0;
  let m = -Infinity;
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += hidden[n * C + c]! * weight[v * C + c]!;
    if (s > m) [m, best] = [s, v];
  }
  return best;
}

interface GpuResult {
  loss: number;
  numTokens: number;
  correct: number;
  entropySum: number;
  dhidden: Float32Array | null;
  dweight: Float32Array | null;
  dbias: Float32Array | null;
  lossRequiresGrad: boolean;
}

/** Runs the op (and backward when anything requires grad), reads back everything, frees it all. */
async function runGpu(
  c: Case,
  options: FusedCrossEntropyOptions & { frozenWeight?: boolean; frozenHidden?: boolean; upstream?: number } = {},
  run: (f: () => ReturnType<typeof fused_linear_cross_entropy>) => ReturnType<typeof fused_linear_cross_entropy> = (f) => f(),
): Promise<GpuResult> {
  const h = Tensor.fromArray(Float32Array.from(c.hidden), [c.N, c.C], { requires_grad: !options.frozenHidden });
  const w = Tensor.fromArray(Float32Array.from(c.weight), [c.V, c.C], { requires_grad: !options.frozenWeight });
  const b = c.bias ? Tensor.fromArray(Float32Array.from(c.bias), [c.V], { requires_grad: true }) : null;
  const out = run(() => fused_linear_cross_entropy(h, w, c.labels, { ...options, bias: b }));
  const lossRequiresGrad = out.loss.requires_grad;
  if (lossRequiresGrad) {
    if (options.upstream === undefined) out.loss.backward();
    else {
      const g = Tensor.fromArray([options.upstream], []);
      out.loss.backward(g);
      g.dispose();
    }
  }
  const read = async (t: Tensor | null) => (t ? ((await t.toArray()) as Float32Array) : null);
  const r: GpuResult = {
    loss: await out.loss.item(),
    numTokens: out.metrics.num_tokens,
    correct: await out.metrics.correct.item(),
    entropySum: await out.metrics.entropy_sum.item(),
    dhidden: await read(h.grad),
    dweight: await read(w.grad),
    dbias: await read(b?.grad ?? null),
    lossRequiresGrad,
  };
  for (const t of [h, w, b, out.loss, out.metrics.correct, out.metrics.entropy_sum]) {
    t?.grad?.dispose();
    t?.dispose();
  }
  return r;
}

function expectMatches(got: GpuResult, want: R.CrossEntropyRef, what: string, t: { loss: Tol; grad: Tol } = tol): void {
  expectAllClose([got.loss], [want.loss], t.loss, `${what} loss`);
  assert.equal(got.numTokens, want.numTokens, `${what} num_tokens`);
  assert.equal(got.correct, want.correct, `${what} correct`);
  expectAllClose([got.entropySum], [want.entropySum], tol.entropy, `${what} entropy_sum`);
  if (got.dhidden) expectAllClose(got.dhidden, want.dhidden, t.grad, `${what} dhidden`);
  if (got.dweight) expectAllClose(got.dweight, want.dweight, t.grad, `${what} dweight`);
  if (got.dbias) expectAllClose(got.dbias, want.dbias, t.grad, `${what} dbias`);
}

// Odd sizes around the row workgroup widths (32..256) and a vocabulary longer than one stride.
for (const [N, C, V] of [
  [1, 33, 65],
  [17, 33, 129],
  [33, 33, 1000],
  [17, 8, 65],
]) {
  for (const dft of [false, true]) {
    test(`fused cross-entropy (${dft ? "dft" : "nll"}) N=${N} C=${C} V=${V} matches the float64 reference`, async () => {
      const c = makeCase(N, C, V, N * 7 + V);
      if (c.labels.every((y) => y === -100)) c.labels[0] = 3;
      expectMatches(await runGpu(c, { dft }), R.crossEntropy(c.hidden, c.weight, c.labels, C, { dft }), "fused");
    });
  }
}

test("chunked results equal the unchunked ones (chunk sizes 1, 3, 17, N and more)", async () => {
  const c = makeCase(33, 33, 129, 5);
  const whole = await runGpu(c, { chunk_size: 33 });
  expectMatches(whole, R.crossEntropy(c.hidden, c.weight, c.labels, 33), "chunk 33");
  for (const chunk_size of [1, 3, 17, 1000]) {
    const got = await runGpu(c, { chunk_size });
    // Same per-row arithmetic and the same totals order: loss, metrics and dhidden are bit-identical;
    // dweight adds the chunks' products in another order.
    assert.equal(got.loss, whole.loss, `chunk ${chunk_size} loss`);
    assert.equal(got.correct, whole.correct, `chunk ${chunk_size} correct`);
    assert.equal(got.entropySum, whole.entropySum, `chunk ${chunk_size} entropy`);
    expectAllClose(got.dhidden!, whole.dhidden!, { atol: 0, rtol: 0 }, `chunk ${chunk_size} dhidden`);
    expectAllClose(got.dweight!, whole.dweight!, { atol: 1e-7, rtol: 1e-5 }, `chunk ${chunk_size} dweight`);
  }
});

test("an all-ignored batch gives loss 0, num_tokens 0 and zero gradients, no NaN", async () => {
  const c = makeCase(7, 16, 65, 9);
  c.labels.fill(-100);
  for (const chunk_size of [3, 7]) {
    const got = await runGpu(c, { chunk_size });
    assert.deepEqual([got.loss, got.numTokens, got.correct, got.entropySum], [0, 0, 0, 0]);
    assert.ok(got.dhidden!.every((v) => v === 0) && got.dweight!.every((v) => v === 0), "gradients are exact zeros");
  }
  const dft = await runGpu(c, { dft: true, num_items_in_batch: 5 });
  assert.deepEqual([dft.loss, dft.numTokens], [0, 0]);
});

test("num_items_in_batch divides the loss and the gradients", async () => {
  const c = makeCase(17, 33, 129, 21);
  expectMatches(await runGpu(c, { num_items_in_batch: 40, chunk_size: 5 }), R.crossEntropy(c.hidden, c.weight, c.labels, 33, { numItems: 40 }), "D=40");
});

test("the upstream gradient of the loss scales the precomputed gradients (backward(g), and through scale())", async () => {
  const c = makeCase(9, 16, 65, 31);
  const ref = R.crossEntropy(c.hidden, c.weight, c.labels, 16);
  const got = await runGpu(c, { upstream: 2.5 });
  expectAllClose(got.dhidden!, ref.dhidden.map((v) => 2.5 * v), tol.grad, "dhidden x 2.5");
  expectAllClose(got.dweight!, ref.dweight.map((v) => 2.5 * v), tol.grad, "dweight x 2.5");
  // Gradient accumulation's 1/steps scaling, recorded after the op.
  const h = Tensor.fromArray(Float32Array.from(c.hidden), [9, 16], { requires_grad: true });
  const w = Tensor.fromArray(Float32Array.from(c.weight), [65, 16]);
  const out = fused_linear_cross_entropy(h, w, c.labels);
  const scaled = scale(out.loss, -0.5);
  scaled.backward();
  expectAllClose((await h.grad!.toArray()) as Float32Array, ref.dhidden.map((v) => -0.5 * v), tol.grad, "dhidden x -0.5");
  for (const t of [h.grad!, h, w, out.loss, scaled, out.metrics.correct, out.metrics.entropy_sum]) t.dispose();
});

test("a frozen weight gets no gradient and no dW is ever allocated", async () => {
  const [N, C, V] = [4, 64, 1000];
  const c = makeCase(N, C, V, 41);
  const peakOf = async (frozenWeight: boolean) => {
    const { liveBytes } = memoryStats();
    gpu().pool.resetPeak();
    const r = await runGpu(c, { frozenWeight });
    return { r, extra: memoryStats().peakBytes - liveBytes };
  };
  const frozen = await peakOf(true);
  const trained = await peakOf(false);
  assert.equal(frozen.r.dweight, null);
  expectAllClose(frozen.r.dhidden!, R.crossEntropy(c.hidden, c.weight, c.labels, C).dhidden, tol.grad, "dhidden");
  // dW is V·C·4 = 256 KB, far more than the rest (logits 16 KB): the frozen run never holds one.
  assert.ok(trained.extra - frozen.extra >= V * C * 4, `peak with dW ${trained.extra}, frozen ${frozen.extra}`);
  assert.ok(frozen.extra < 2 * V * C * 4, `frozen peak ${frozen.extra} bytes holds only the inputs and small buffers`);
});

test("no_grad computes the loss and metrics only", async () => {
  const c = makeCase(17, 33, 129, 51);
  const got = await runGpu(c, {}, (f) => no_grad(f));
  assert.equal(got.lossRequiresGrad, false);
  assert.equal(got.dhidden, null);
  expectMatches(got, R.crossEntropy(c.hidden, c.weight, c.labels, 33), "no_grad");
});

test("the bias of an LM head gets its gradient", async () => {
  const c = { ...makeCase(13, 16, 129, 61), bias: rand(129, 62, -2, 2) };
  expectMatches(await runGpu(c, { chunk_size: 4 }), R.crossEntropy(c.hidden, c.weight, c.labels, 16, { bias: c.bias }), "bias");
});

test("argmax ties count the first index, like torch.argmax", async () => {
  // Rows 5 and 9 of the weight are equal and the largest logit of every token (hidden all positive).
  const [N, C, V] = [4, 8, 65];
  const weight = rand(V * C, 71, -0.1, 0.1);
  for (const v of [5, 9]) weight.fill(1, v * C, (v + 1) * C);
  const hidden = rand(N * C, 72, 0.5, 1);
  const labels = Int32Array.from([5, 9, 5, 9]);
  const got = await runGpu({ N, C, V, hidden, weight, labels });
  assert.equal(got.correct, 2);
});

test("stable with large logits (hundreds: exp overflows f32 without the max subtracted)", async () => {
  const c = makeCase(9, 33, 129, 81, 30);
  for (const dft of [false, true]) {
    const got = await runGpu(c, { dft, chunk_size: 4 });
    expectMatches(got, R.crossEntropy(c.hidden, c.weight, c.labels, 33, { dft }), `large logits ${dft ? "dft" : "nll"}`, {
      loss: tol.large,
      grad: tol.largeGrad,
    });
    assert.ok(Number.isFinite(got.loss) && got.dweight!.every(Number.isFinite));
  }
});

// Final-logit soft-capping (Gemma 2/3): z -> c tanh(z / c) before the loss; gradients through 1 - tanh².
// Spread logits (tens to hundreds) so the cap bites; several chunks, ignored labels, odd vocabularies.
for (const [N, C, V, spread, cap] of [
  [17, 8, 33, 30, 30],
  [9, 16, 65, 10, 5],
  [5, 33, 129, 1, 0.5],
] as const) {
  for (const dft of [false, true]) {
    test(`fused cross-entropy softcap ${cap} (${dft ? "dft" : "nll"}) N=${N} C=${C} V=${V} matches the float64 reference`, async () => {
      const c = makeCase(N, C, V, N * 11 + V, spread);
      if (c.labels.every((y) => y === -100)) c.labels[0] = 3;
      const want = R.crossEntropy(c.hidden, c.weight, c.labels, C, { dft, softcap: cap });
      const got = await runGpu(c, { dft, softcap: cap, chunk_size: 4 });
      // Capped logits stay within ±c: the f32 rounding of logits of ~100 before the cap is what remains.
      expectMatches(got, want, `softcap ${cap}`, spread > 1 ? { loss: tol.large, grad: tol.largeGrad } : tol);
    });
  }
}

test("softcap 0 and null are off; the soft-capped loss differs from the plain one", async () => {
  const c = makeCase(9, 8, 33, 3, 20);
  const plain = await runGpu(c);
  for (const softcap of [0, null]) {
    const got = await runGpu(c, { softcap });
    assert.equal(got.loss, plain.loss);
    expectAllClose(got.dhidden!, plain.dhidden!, { atol: 0, rtol: 0 }, `softcap ${softcap} dhidden`);
  }
  const capped = await runGpu(c, { softcap: 3 });
  assert.notEqual(capped.loss, plain.loss);
  const h = Tensor.fromArray(new Float32Array(3 * 4), [3, 4]);
  const w = Tensor.fromArray(new Float32Array(10 * 4), [10, 4]);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, 2, 3], { softcap: -1 }), /softcap must be a positive number \(or 0\/null for none\), got -1/);
  h.dispose();
  w.dispose();
});

test("rejects out-of-range labels, a label count that does not fit, and a zero normaliser with valid labels", () => {
  const h = Tensor.fromArray(new Float32Array(3 * 4), [3, 4]);
  const w = Tensor.fromArray(new Float32Array(10 * 4), [10, 4]);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, 10, 2]), /label 10 at position 1 is out of range for V=10/);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, -1, 2]), /label -1 at position 1/);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, 2]), /2 labels for 3 tokens/);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, 2, 3], { num_items_in_batch: 0 }), /num_items_in_batch must be positive/);
  assert.throws(() => fused_linear_cross_entropy(h, w, [1, 2, 3], { chunk_size: 0 }), /chunk_size must be a positive integer/);
  assert.throws(() => fused_linear_cross_entropy(h, Tensor.fromArray(new Float32Array(10 * 5), [10, 5]), [1, 2, 3]), /last dim of hidden must be C=5/);
});

// Qwen2's vocabulary at 2,048 tokens: whole, the logits would take 2048 × 151936 × 4 bytes = 1.2 GB. The
// op holds one chunk of logits at a time, plus buffers of N·C (hidden chunk, dh) and dW, into which every
// chunk's product accumulates. Running the default 55-token chunks takes minutes on a CPU adapter, so the default's
// arithmetic is checked here, and the peak on 2 chunks of 4 tokens at the same vocabulary (a trained LM
// head; dh, of N·C floats, is left out: its K=V product costs seconds per chunk on a CPU adapter).
test("the default chunk of vocab 151,936 holds at most 32 MiB of logits", () => {
  assert.equal(defaultChunkSize(151936), 55);
  assert.ok(55 * 151936 * 4 <= 32 * 2 ** 20 && 56 * 151936 * 4 > 32 * 2 ** 20);
  assert.equal(defaultChunkSize(49152), 170);
  assert.equal(defaultChunkSize(2 ** 24), 1);
});

test("vocab 151,936: the peak holds one chunk of logits, not all of them", async () => {
  const [N, C, V, chunk] = [8, 1, 151936, 4];
  const h = Tensor.fromArray(Float32Array.from(rand(N * C, 91)), [N, C]);
  const w = Tensor.fromArray(Float32Array.from(rand(V * C, 92, -0.1, 0.1)), [V, C], { requires_grad: true });
  const labels = Int32Array.from(rand(N, 93, 0, V), Math.floor);
  const { liveBytes } = memoryStats();
  gpu().pool.resetPeak();
  const out = fused_linear_cross_entropy(h, w, labels, { chunk_size: chunk });
  const peak = memoryStats().peakBytes - liveBytes;
  out.loss.backward();
  const loss = await out.loss.item();
  assert.ok(Math.abs(loss - Math.log(V)) < 0.05, `loss ${loss} vs log V ${Math.log(V)} (logits near 0)`);
  // One chunk of logits, dW, and buffers of N·C and N floats: no second buffer of V·C.
  const bound = sizeClass(chunk * V * 4) + sizeClass(V * C * 4) + 16 * 1024;
  assert.ok(bound < sizeClass(chunk * V * 4) + 2 * V * C * 4);
  assert.ok(peak <= bound, `peak ${peak} bytes, bound ${bound}`);
  assert.ok(peak < N * V * 4, `peak ${peak} bytes is not below the whole logits' ${N * V * 4}`);
  for (const t of [h, w, out.loss, out.metrics.correct, out.metrics.entropy_sum]) {
    t.grad?.dispose();
    t.dispose();
  }
});

test("a trained LM head over several chunks holds dW and no other [V, C] buffer", async () => {
  // dW (512 KiB) outweighs everything else the op holds, so a per-chunk product of V·C would double the peak.
  const [N, C, V, chunk] = [12, 128, 1024, 4];
  const c = makeCase(N, C, V, 101);
  const h = Tensor.fromArray(Float32Array.from(c.hidden), [N, C], { requires_grad: true });
  const w = Tensor.fromArray(Float32Array.from(c.weight), [V, C], { requires_grad: true });
  const { liveBytes } = memoryStats();
  gpu().pool.resetPeak();
  const out = fused_linear_cross_entropy(h, w, c.labels, { chunk_size: chunk });
  out.loss.backward();
  const peak = memoryStats().peakBytes - liveBytes;
  // dW, one chunk of logits, dh and its chunk, the hidden chunk, then labels, tok and the three totals.
  const small = sizeClass(N * C * 4) + 2 * sizeClass(chunk * C * 4) + 5 * 256;
  const bound = sizeClass(V * C * 4) + sizeClass(chunk * V * 4) + small;
  assert.ok(peak <= bound, `peak ${peak} bytes, bound ${bound}`);
  assert.ok(bound < 2 * V * C * 4, "a second [V, C] buffer would pass the bound");
  const ref = R.crossEntropy(c.hidden, c.weight, c.labels, C);
  expectAllClose((await w.grad!.toArray()) as Float32Array, ref.dweight, tol.grad, "dweight");
  expectAllClose((await h.grad!.toArray()) as Float32Array, ref.dhidden, tol.grad, "dhidden");
  for (const t of [h, w, out.loss, out.metrics.correct, out.metrics.entropy_sum]) {
    t.grad?.dispose();
    t.dispose();
  }
});

// PyTorch (float64 autograd on f32-rounded inputs): F.cross_entropy(reduction='sum') / normaliser and
// TRL's dft_loss, argmax accuracy, entropy via log_softmax; cross_entropy_softcap.json's cases on Gemma's
// soft-capped logits (tanh(z / c) · c).
for (const [name, f] of Object.entries({ ...fixtures("cross_entropy"), ...fixtures("cross_entropy_softcap") })) {
  test(`fused cross-entropy matches PyTorch: ${name}`, async () => {
    const [N, C, V] = [f.N as number, f.C as number, f.V as number];
    const c: Case = {
      N,
      C,
      V,
      hidden: Float64Array.from(tensorOf(f, "hidden").data),
      weight: Float64Array.from(tensorOf(f, "weight").data),
      labels: Int32Array.from(tensorOf(f, "labels").data),
      ...(f.bias ? { bias: Float64Array.from(tensorOf(f, "bias").data) } : {}),
    };
    const softcap = (f.softcap as number | undefined) ?? null;
    const got = await runGpu(c, { dft: f.dft as boolean, num_items_in_batch: (f.num_items_in_batch as number | null) ?? undefined, chunk_size: 4, softcap });
    const large = name.includes("large") || (f.spread as number | undefined ?? 1) > 1;
    const t = large ? { loss: tol.large, grad: tol.largeGrad } : tol;
    expectMatches(
      got,
      {
        loss: f.loss as number,
        numTokens: f.num_tokens as number,
        correct: f.correct as number,
        entropySum: f.entropy_sum as number,
        dhidden: Float64Array.from(tensorOf(f, "dhidden").data),
        dweight: Float64Array.from(tensorOf(f, "dweight").data),
        dbias: f.bias ? Float64Array.from(tensorOf(f, "dbias").data) : new Float64Array(V),
      },
      name,
      t,
    );
  });
}
