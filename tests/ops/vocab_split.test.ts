// A vocabulary-sized weight stored as row blocks (ops/row_blocks.ts): splitRows, and the embedding and the
// fused LM-head cross-entropy over the blocks against the same ops on the whole weight and the float64
// references.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { embedding, fused_linear_cross_entropy, memoryStats, Tensor, type FusedCrossEntropyOptions } from "../../src/index.ts";
import { sizeClass } from "../../src/gpu/buffers.ts";
import { gpu } from "../../src/gpu/device.ts";
import { splitRows } from "../../src/ops/row_blocks.ts";
import { expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as RC from "../reference/cross_entropy.ts";
import * as RE from "../reference/embedding.ts";

before(setup);

const exact: Tol = { atol: 0, rtol: 0 };
// f32 sums of a few dy values (embedding), of C and V products (cross-entropy; softmax values in [0, 1]).
const sums: Tol = { atol: 1e-6, rtol: 1e-6 };
const grad: Tol = { atol: 5e-7, rtol: 1e-5 };
// dh adds the blocks' products one after another instead of in one K loop: a few ulp of its sums.
const reordered: Tol = { atol: 1e-7, rtol: 1e-5 };

const [V, C, N] = [65, 17, 33];
const SPLITS = [
  [22, 22, 21],
  [64, 1],
];

/** The rows [off, off + rows) of a [V, C] array. */
function rowsOf(w: ArrayLike<number>, off: number, rows: number): Float32Array {
  return Float32Array.from(Array.prototype.slice.call(w, off * C, (off + rows) * C) as number[]);
}

/** Blocks of `w` [V, C] by row counts, as leaf tensors. */
function blocksOf(w: ArrayLike<number>, split: readonly number[], requiresGrad: (j: number) => boolean = () => true): Tensor[] {
  let off = 0;
  return split.map((rows, j) => {
    const t = Tensor.fromArray(rowsOf(w, off, rows), [rows, C], { requires_grad: requiresGrad(j) });
    off += rows;
    return t;
  });
}

/** The concatenation of the blocks' gradients (zeros for a block with none). */
async function gradsOf(blocks: Tensor[]): Promise<{ all: Float32Array; missing: number[] }> {
  const all = new Float32Array(blocks.reduce((s, b) => s + b.size, 0));
  const missing: number[] = [];
  let off = 0;
  for (const [j, b] of blocks.entries()) {
    if (b.grad) {
      const g = (await b.grad.toArray()) as Float32Array;
      assert.deepEqual(b.grad.shape, b.shape, `block ${j} grad shape`);
      all.set(g, off);
    } else missing.push(j);
    off += b.size;
  }
  return { all, missing };
}

function free(...ts: (Tensor | null | undefined)[]): void {
  for (const t of ts) {
    t?.grad?.dispose();
    t?.dispose();
  }
}

/** N ids in [0, V), every block hit: the first and last rows of each split and V - 1 included. */
function idsOf(seed: number): Int32Array {
  const ids = Int32Array.from(rand(N, seed, 0, V), Math.floor);
  [0, 21, 22, 43, 44, 63, 64, 64, 22].forEach((id, k) => (ids[3 * k + 1] = id));
  return ids;
}

test("splitRows: as few blocks as the byte limit allows, near-equal, covering V exactly", () => {
  assert.deepEqual(splitRows(65, 16, 1536), [22, 22, 21]); // at most 24 rows of 64 bytes
  assert.deepEqual(splitRows(65, 16, 5120), [65]);
  // 4160 bytes hold the 65 rows, but their pooled buffer is rounded up to a 5120-byte size class.
  assert.deepEqual(splitRows(65, 16, 65 * 64), [33, 32]);
  assert.deepEqual(splitRows(1, 4096, 16384), [1]);
  // Qwen2.5-0.5B's embedding under a 128 MiB binding: 5 blocks of about 109 MB.
  const qwen = splitRows(151936, 896, 128 * 2 ** 20);
  assert.deepEqual(qwen, [30388, 30387, 30387, 30387, 30387]);
  assert.throws(() => splitRows(10, 1024, 4000), /one row of C=1024/);
  assert.throws(() => splitRows(0, 4, 1024), /positive integers/);
  for (let k = 0; k < 300; k++) {
    const [u1, u2, u3] = rand(3, 7 + k, 0, 1);
    const Vk = 1 + Math.floor(u1! ** 2 * 200000);
    const Ck = 1 + Math.floor(u2! * 2000);
    const maxBytes = sizeClass(Ck * 4) + Math.floor(u3! ** 3 * Vk * Ck * 4 * 1.2);
    const rows = splitRows(Vk, Ck, maxBytes);
    const what = `V=${Vk} C=${Ck} maxBytes=${maxBytes}: ${rows.length} blocks [${rows.slice(0, 4).join(", ")}, …]`;
    assert.equal(rows.reduce((a, b) => a + b, 0), Vk, `${what} covers V`);
    assert.ok(rows.every((r) => Number.isInteger(r) && r >= 1), `${what} positive rows`);
    assert.ok(rows.every((r) => r === rows[0] || r === rows[0]! - 1) && rows.every((r, j) => j === 0 || r <= rows[j - 1]!), `${what} near-equal`);
    // Every block's bytes, and its pooled buffer (rounded up to a size class), fit in the limit ...
    assert.ok(rows.every((r) => r * Ck * 4 <= maxBytes && sizeClass(r * Ck * 4) <= maxBytes), `${what} fits`);
    // ... and one block fewer would not.
    if (rows.length > 1) assert.ok(sizeClass(Math.ceil(Vk / (rows.length - 1)) * Ck * 4) > maxBytes, `${what} is not the fewest`);
  }
});

for (const split of SPLITS) {
  test(`embedding over blocks [${split.join(", ")}] equals the whole weight's: output and per-block gradients`, async () => {
    const ws = rand(V * C, 1);
    const ids = idsOf(2);
    const dys = rand(N * C, 3);
    for (const padding_idx of [null, 22, -1]) {
      const whole = Tensor.fromArray(Float32Array.from(ws), [V, C], { requires_grad: true });
      const blocks = blocksOf(ws, split);
      const a = embedding(whole, ids, [3, 11], { padding_idx });
      const b = embedding(blocks, ids, [3, 11], { padding_idx });
      assert.deepEqual(b.shape, [3, 11, C]);
      const outA = (await a.toArray()) as Float32Array;
      const outB = (await b.toArray()) as Float32Array;
      expectAllClose(outB, outA, exact, "out vs whole");
      expectAllClose(outB, RE.embedding(ws, C, ids), exact, "out vs reference");
      const dy = Tensor.fromArray(Float32Array.from(dys), [3, 11, C]);
      a.backward(dy);
      b.backward(dy);
      const { all, missing } = await gradsOf(blocks);
      assert.deepEqual(missing, []);
      // The same position-order f32 sums per row: the same bits.
      expectAllClose(all, (await whole.grad!.toArray()) as Float32Array, exact, `padding_idx ${padding_idx}: dweight vs whole`);
      const pad = padding_idx === null ? null : padding_idx < 0 ? padding_idx + V : padding_idx;
      expectAllClose(all, RE.embeddingGrad(V, C, ids, dys, pad), sums, `padding_idx ${padding_idx}: dweight vs reference`);
      free(whole, ...blocks, a, b, dy);
    }
  });
}

test("embedding over blocks: a frozen block gets no gradient, a block no id falls in gets zeros, no_grad records nothing", async () => {
  const ws = rand(V * C, 11);
  const ids = Int32Array.from(idsOf(12), (id) => (id >= 22 && id < 44 ? id - 22 : id)); // nothing in block 1
  const dys = rand(N * C, 13);
  const blocks = blocksOf(ws, [22, 22, 21], (j) => j !== 2);
  const out = embedding(blocks, ids);
  expectAllClose(await out.toArray(), RE.embedding(ws, C, ids), exact, "out");
  out.backward(Tensor.fromArray(Float32Array.from(dys), [N, C]));
  const want = RE.embeddingGrad(V, C, ids, dys);
  expectAllClose((await blocks[0]!.grad!.toArray()) as Float32Array, want.subarray(0, 22 * C), sums, "block 0");
  assert.ok(((await blocks[1]!.grad!.toArray()) as Float32Array).every((v) => v === 0), "block 1: zeros");
  assert.equal(blocks[2]!.grad, null);
  const frozen = blocksOf(ws, [22, 22, 21], () => false);
  const y = embedding(frozen, ids);
  assert.equal(y.requires_grad, false);
  assert.equal(y.node, null);
  free(...blocks, out, ...frozen, y);
});

test("embedding over blocks rejects ids outside the whole vocabulary and blocks of another C", () => {
  const blocks = [Tensor.fromArray(new Float32Array(6 * 4), [6, 4]), Tensor.fromArray(new Float32Array(4 * 4), [4, 4])];
  assert.throws(() => embedding(blocks, [1, 10]), /token id 10 at position 1 is out of range for a vocabulary of V=10 \(weight \[6, 4\] \+ \[4, 4\]\)/);
  assert.throws(() => embedding(blocks, [1], [1], { padding_idx: 10 }), /padding_idx 10 is out of range for V=10/);
  const odd = [blocks[0]!, Tensor.fromArray(new Float32Array(4 * 5), [4, 5])];
  assert.throws(() => embedding(odd, [1]), /block 1 has shape \[4, 5\]/);
  assert.throws(() => embedding([], [1]), /no row blocks/);
  free(...blocks, odd[1]);
});

interface CeRun {
  loss: number;
  correct: number;
  entropySum: number;
  numTokens: number;
  dh: Float32Array | null;
  dw: Float32Array;
  missing: number[];
  db: Float32Array | null;
}

interface CeCase {
  hidden: Float64Array;
  weight: Float64Array;
  labels: Int32Array;
  bias: Float64Array | null;
}

/** Random inputs: a quarter of the labels -100, and labels in every block. */
function ceCase(seed: number, withBias: boolean): CeCase {
  const hidden = rand(N * C, seed, -2, 2);
  const weight = rand(V * C, seed + 1);
  const bias = withBias ? rand(V, seed + 4, -1, 1) : null;
  const labels = idsOf(seed + 2);
  const u = rand(N, seed + 3, 0, 1);
  for (let n = 0; n < N; n++) {
    if (n % 3 === 1) continue; // the ids that hit every block
    if (u[n]! < 0.25) labels[n] = -100;
    else if (u[n]! < 0.6) labels[n] = argmaxRow(hidden, weight, bias, n); // so accuracy is not ~1/V
  }
  return { hidden, weight, labels, bias };
}

function argmaxRow(hidden: Float64Array, weight: Float64Array, bias: Float64Array | null, n: number): number {
  let best = 0;
  let m = -Infinity;
  for (let v = 0; v < V; v++) {
    let s = bias ? bias[v]! : 0;
    for (let c = 0; c < C; c++) s += hidden[n * C + c]! * weight[v * C + c]!;
    if (s > m) [m, best] = [s, v];
  }
  return best;
}

/** The op over the whole weight (split null) or its blocks, with backward; everything read back and freed. */
async function runCe(
  c: CeCase,
  split: readonly number[] | null,
  options: FusedCrossEntropyOptions & { frozen?: (j: number) => boolean } = {},
): Promise<CeRun> {
  const h = Tensor.fromArray(Float32Array.from(c.hidden), [3, 11, C], { requires_grad: true });
  const ws = split ? blocksOf(c.weight, split, (j) => !options.frozen?.(j)) : [Tensor.fromArray(Float32Array.from(c.weight), [V, C], { requires_grad: true })];
  const b = c.bias ? Tensor.fromArray(Float32Array.from(c.bias), [V], { requires_grad: true }) : null;
  const out = fused_linear_cross_entropy(h, split ? ws : ws[0]!, c.labels, { ...options, bias: b });
  out.loss.backward();
  const { all, missing } = await gradsOf(ws);
  const r: CeRun = {
    loss: await out.loss.item(),
    correct: await out.metrics.correct.item(),
    entropySum: await out.metrics.entropy_sum.item(),
    numTokens: out.metrics.num_tokens,
    dh: (await h.grad?.toArray()) as Float32Array,
    dw: all,
    missing,
    db: b ? ((await b.grad!.toArray()) as Float32Array) : null,
  };
  free(h, ...ws, b, out.loss, out.metrics.correct, out.metrics.entropy_sum);
  return r;
}

for (const split of SPLITS) {
  for (const withBias of [false, true]) {
    for (const dft of [false, true]) {
      const name = `${withBias ? "with" : "without"} bias${dft ? ", dft" : ""}`;
      test(`fused cross-entropy over blocks [${split.join(", ")}] ${name}, chunks of 7, equals the whole weight's`, async () => {
        const c = ceCase(split.length * 100 + (withBias ? 10 : 0) + (dft ? 1 : 0), withBias);
        const opts = { chunk_size: 7, dft };
        const whole = await runCe(c, null, opts);
        const got = await runCe(c, split, opts);
        // The logits are the same products: the same loss and metrics, bit for bit.
        assert.equal(got.loss, whole.loss, "loss");
        assert.equal(got.correct, whole.correct, "correct");
        assert.equal(got.entropySum, whole.entropySum, "entropy_sum");
        assert.equal(got.numTokens, whole.numTokens, "num_tokens");
        assert.deepEqual(got.missing, []);
        expectAllClose(got.dw, whole.dw, exact, "per-block dW vs whole (the same products)");
        expectAllClose(got.dh!, whole.dh!, reordered, "dh vs whole");
        if (withBias) expectAllClose(got.db!, whole.db!, exact, "dbias vs whole");
        const ref = RC.crossEntropy(c.hidden, c.weight, c.labels, C, { bias: c.bias, dft });
        expectAllClose([got.loss], [ref.loss], { atol: 1e-6, rtol: 1e-6 }, "loss vs reference");
        assert.equal(got.correct, ref.correct, "correct vs reference");
        assert.ok(got.correct > 0, "some tokens are correct (the test can see a wrong argmax)");
        expectAllClose([got.entropySum], [ref.entropySum], { atol: 1e-6, rtol: 1e-6 }, "entropy_sum vs reference");
        expectAllClose(got.dh!, ref.dhidden, grad, "dh vs reference");
        expectAllClose(got.dw, ref.dweight, grad, "dW vs reference");
        if (withBias) expectAllClose(got.db!, ref.dbias, grad, "dbias vs reference");
      });
    }
  }
}

test("fused cross-entropy over blocks: a frozen block gets nothing, the others and dh are unchanged; one chunk; num_items_in_batch", async () => {
  const c = ceCase(501, false);
  const ref = RC.crossEntropy(c.hidden, c.weight, c.labels, C, { numItems: 40 });
  for (const chunk_size of [7, N]) {
    const got = await runCe(c, [22, 22, 21], { chunk_size, num_items_in_batch: 40, frozen: (j) => j === 1 });
    assert.deepEqual(got.missing, [1]);
    expectAllClose([got.loss], [ref.loss], { atol: 1e-6, rtol: 1e-6 }, `chunk ${chunk_size} loss`);
    expectAllClose(got.dh!, ref.dhidden, grad, `chunk ${chunk_size} dh`);
    for (const [lo, hi] of [[0, 22], [44, 65]]) {
      expectAllClose(got.dw.subarray(lo * C, hi * C), ref.dweight.subarray(lo * C, hi * C), grad, `chunk ${chunk_size} dW rows ${lo}..${hi}`);
    }
    assert.ok(got.dw.subarray(22 * C, 44 * C).every((v) => v === 0));
  }
});

test("fused cross-entropy over blocks rejects labels outside the whole vocabulary, naming the blocks", () => {
  const h = Tensor.fromArray(new Float32Array(3 * 4), [3, 4]);
  const blocks = [Tensor.fromArray(new Float32Array(6 * 4), [6, 4]), Tensor.fromArray(new Float32Array(4 * 4), [4, 4])];
  assert.throws(() => fused_linear_cross_entropy(h, blocks, [1, 10, 2]), /weight \[6, 4\] \+ \[4, 4\]: label 10 at position 1 is out of range for V=10/);
  const odd = [blocks[0]!, Tensor.fromArray(new Float32Array(4 * 5), [4, 5])];
  assert.throws(() => fused_linear_cross_entropy(h, odd, [1, 2, 3]), /block 1 has shape \[4, 5\]/);
  const bias = Tensor.fromArray(new Float32Array(6), [6]);
  assert.throws(() => fused_linear_cross_entropy(h, blocks, [1, 2, 3], { bias }), /bias must be \(V=10\)/);
  free(h, ...blocks, odd[1], bias);
});

test("tied embedding and LM head as one block array: each block's .grad holds both gradients", async () => {
  const c = ceCase(601, false);
  const ids = idsOf(602);
  // hidden = embedding(W, ids); loss = CE(hidden · Wᵀ, labels): W gets the CE's dW plus the embedding's
  // scatter of dh.
  const run = async (split: readonly number[] | null) => {
    const ws = split ? blocksOf(c.weight, split) : [Tensor.fromArray(Float32Array.from(c.weight), [V, C], { requires_grad: true })];
    const w = split ? ws : ws[0]!;
    const h = embedding(w, ids, [3, 11]);
    const out = fused_linear_cross_entropy(h, w, c.labels, { chunk_size: 7 });
    out.loss.backward();
    const r = { loss: await out.loss.item(), ...(await gradsOf(ws)) };
    free(...ws, h, out.loss, out.metrics.correct, out.metrics.entropy_sum);
    return r;
  };
  const hidden = RE.embedding(c.weight, C, ids);
  const ref = RC.crossEntropy(hidden, c.weight, c.labels, C);
  const want = ref.dweight.map((v, i) => v + RE.embeddingGrad(V, C, ids, ref.dhidden)[i]!);
  const whole = await run(null);
  for (const split of SPLITS) {
    const got = await run(split);
    assert.deepEqual(got.missing, []);
    assert.equal(got.loss, whole.loss, `[${split}] loss`);
    expectAllClose(got.all, whole.all, reordered, `[${split}] dW vs whole`);
    expectAllClose(got.all, want, grad, `[${split}] dW vs reference`);
  }
});

test("fused cross-entropy over blocks holds the blocks' dW, one chunk of logits and one slab, no [V, C] temporary", async () => {
  const [Nm, Cm, Vm, chunk] = [12, 128, 1024, 4];
  const split = [342, 341, 341];
  const hidden = rand(Nm * Cm, 701);
  const weight = rand(Vm * Cm, 702);
  const labels = Int32Array.from(rand(Nm, 703, 0, Vm), Math.floor);
  const h = Tensor.fromArray(Float32Array.from(hidden), [Nm, Cm], { requires_grad: true });
  let off = 0;
  const ws = split.map((r) => {
    const t = Tensor.fromArray(Float32Array.from(weight.subarray(off * Cm, (off += r) * Cm)), [r, Cm], { requires_grad: true });
    return t;
  });
  const { liveBytes } = memoryStats();
  gpu().pool.resetPeak();
  const out = fused_linear_cross_entropy(h, ws, labels, { chunk_size: chunk });
  out.loss.backward();
  const peak = memoryStats().peakBytes - liveBytes;
  const dWs = split.reduce((s, r) => s + sizeClass(r * Cm * 4), 0);
  // dW blocks, one chunk of logits, the slab, dh and its chunk, the hidden chunk, labels, tok and the totals.
  const small = sizeClass(Nm * Cm * 4) + 2 * sizeClass(chunk * Cm * 4) + 5 * 256;
  const bound = dWs + sizeClass(chunk * Vm * 4) + sizeClass(chunk * 342 * 4) + small;
  assert.ok(peak <= bound, `peak ${peak} bytes, bound ${bound}`);
  assert.ok(bound < dWs + Vm * Cm * 4, "a [V, C] temporary would pass the bound");
  const ref = RC.crossEntropy(hidden, weight, labels, Cm);
  const { all } = await gradsOf(ws);
  expectAllClose(all, ref.dweight, grad, "dW");
  expectAllClose((await h.grad!.toArray()) as Float32Array, ref.dhidden, grad, "dh");
  free(h, ...ws, out.loss, out.metrics.correct, out.metrics.entropy_sum);
});

test("a one-block array is the single-tensor op on that tensor", async () => {
  const c = ceCase(801, true);
  const w = Tensor.fromArray(Float32Array.from(c.weight), [V, C], { requires_grad: true });
  const ids = idsOf(802);
  const e = embedding([w], ids);
  expectAllClose(await e.toArray(), RE.embedding(c.weight, C, ids), exact, "embedding");
  const h = Tensor.fromArray(Float32Array.from(c.hidden), [N, C]);
  const out = fused_linear_cross_entropy(h, [w], c.labels, { chunk_size: 7 });
  out.loss.backward();
  const ref = RC.crossEntropy(c.hidden, c.weight, c.labels, C);
  expectAllClose([await out.loss.item()], [ref.loss], { atol: 1e-6, rtol: 1e-6 }, "loss");
  expectAllClose((await w.grad!.toArray()) as Float32Array, ref.dweight, grad, "dW");
  free(w, e, h, out.loss, out.metrics.correct, out.metrics.entropy_sum);
});
