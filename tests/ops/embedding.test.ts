import assert from "node:assert/strict";
import { before, test } from "node:test";
import { embedding, Tensor } from "../../src/index.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/embedding.ts";

before(setup);

// The gather copies f32 values: exact. The gradient adds the dy rows of each id in f32: exact for one
// occurrence, a few ulp of the sum for repeats (values in [-1, 1]).
const exact: Tol = { atol: 0, rtol: 0 };
const sums: Tol = { atol: 1e-6, rtol: 1e-6 };

/** N ids in [0, V) from a seed. */
function idsOf(N: number, V: number, seed: number): Int32Array {
  return Int32Array.from(rand(N, seed, 0, V), Math.floor);
}

for (const [N, V, C] of [
  [1, 50, 33],
  [3, 50, 64],
  [17, 50, 576],
  [33, 10, 33],
  [65, 5, 64],
]) {
  const ids = idsOf(N, V, N);
  test(`embedding of ${N} ids, weight [${V}, ${C}]`, () =>
    checkOp({
      name: "embedding",
      shapes: [[V, C]],
      gpu: ([w]) => embedding(w!, ids),
      ref: ([w]) => R.embedding(w!, C, ids),
      refGrad: (_, dy) => [R.embeddingGrad(V, C, ids, dy)],
      fwd: exact,
      grad: sums,
    }));
}

test("embedding gradient with many repeats: position-order f32 sums, bit-identical across runs", async () => {
  const [N, V, C] = [3000, 40, 64];
  // 3000 ids over 7 of the 40 rows (about 430 repeats each); the other rows get exact zeros.
  const ids = Int32Array.from(idsOf(N, 7, 11), (k) => [3, 0, 39, 17, 8, 25, 12][k]!);
  const ws = rand(V * C, 12);
  const dys = rand(N * C, 13);
  const dy = Tensor.fromArray(Float32Array.from(dys), [3, N / 3, C]);
  const runs: Float32Array[] = [];
  for (let k = 0; k < 2; k++) {
    const w = Tensor.fromArray(Float32Array.from(ws), [V, C], { requires_grad: true });
    const out = embedding(w, ids, [3, N / 3]);
    assert.deepEqual(out.shape, [3, N / 3, C]);
    if (k === 0) expectAllClose(await out.toArray(), R.embedding(ws, C, ids), exact, "gather");
    out.backward(dy);
    runs.push((await w.grad!.toArray()) as Float32Array);
  }
  expectAllClose(runs[0]!, R.embeddingGrad(V, C, ids, dys), { atol: 1e-5, rtol: 1e-5 }, "dweight");
  assert.deepEqual(new Uint32Array(runs[0]!.buffer), new Uint32Array(runs[1]!.buffer), "two runs differ in some bit");
  // Each entry is the f32 sum of its dy rows taken in increasing position.
  const sequential = new Float32Array(V * C);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) sequential[ids[n]! * C + c] = Math.fround(sequential[ids[n]! * C + c]! + Math.fround(dys[n * C + c]!));
  }
  expectAllClose(runs[0]!, sequential, exact, "dweight vs the sequential f32 sum");
});

test("embedding with padding_idx gives its row no gradient", async () => {
  const [V, C] = [6, 33];
  const ids = [0, 2, 0, 5, 2, 2, 5, 1];
  const dys = rand(ids.length * C, 3);
  for (const pad of [2, -1]) {
    const w = Tensor.fromArray(Float32Array.from(rand(V * C, 4)), [V, C], { requires_grad: true });
    embedding(w, ids, [2, 4], { padding_idx: pad }).backward(Tensor.fromArray(Float32Array.from(dys), [2, 4, C]));
    expectAllClose(await w.grad!.toArray(), R.embeddingGrad(V, C, ids, dys, pad < 0 ? pad + V : pad), sums, `padding_idx ${pad}`);
  }
});

test("embedding of a frozen weight records no graph", () => {
  const w = Tensor.fromArray(new Float32Array(4 * 3), [4, 3]);
  const out = embedding(w, [1, 3]);
  assert.equal(out.requires_grad, false);
  assert.equal(out.node, null);
});

test("embedding rejects out-of-range ids naming the id and V, and ids that do not fill the shape", () => {
  const w = Tensor.fromArray(new Float32Array(10 * 4), [10, 4]);
  assert.throws(() => embedding(w, [1, 10, 2]), /embedding: token id 10 at position 1 is out of range for a vocabulary of V=10/);
  assert.throws(() => embedding(w, Int32Array.from([-3])), /token id -3 at position 0 is out of range for a vocabulary of V=10/);
  assert.throws(() => embedding(w, [1.5]), /token id 1.5 at position 0/);
  assert.throws(() => embedding(w, [1, 2, 3], [2, 2]), /embedding: 3 ids do not fill shape \[2, 2\]/);
  assert.throws(() => embedding(w, [1], [1], { padding_idx: 10 }), /padding_idx 10 is out of range for V=10/);
  assert.throws(() => embedding(Tensor.fromArray(new Float32Array(4), [4]), [1]), /weight must be \(V, C\), got shape \[4\]/);
});

// PyTorch F.embedding (float64 autograd): the gather is exact, the gradient sums a few f32 dy values.
for (const [name, c] of Object.entries(fixtures("embedding"))) {
  test(`embedding matches PyTorch: ${name}`, async () => {
    const wf = tensorOf(c, "weight");
    const idsf = tensorOf(c, "ids");
    const w = Tensor.fromArray(wf.data, wf.shape, { requires_grad: true });
    const out = embedding(w, idsf.data, idsf.shape, { padding_idx: c.padding_idx as number | null });
    expectAllClose(await out.toArray(), tensorOf(c, "out").data, exact, `${name} out`);
    const dy = tensorOf(c, "dy");
    out.backward(Tensor.fromArray(dy.data, dy.shape));
    expectAllClose(await w.grad!.toArray(), tensorOf(c, "dweight").data, sums, `${name} dweight`);
  });
}
