import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { attention, no_grad, Tensor, type AttentionOptions } from "../../src/index.ts";
import { forceAttentionConfig, type AttentionConfig } from "../../src/kernels/attention.ts";
import { tokenBounds } from "../../src/ops/attention.ts";
import { fixtures, tensorOf, type FixtureCase } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/attention.ts";

before(setup);
after(() => forceAttentionConfig(null));

// f32 dots of D terms, f32 exp, sums over up to T keys (inputs in [-1, 1]): measured against float64 at
// T 65 D 20 and 64, T 20 D 128, T 33 D 64, in both tilings: |error| <= 1.3e-7 on o (|o| <= 1) and
// <= 4.1e-7 on the gradients (|dv| <= 3.2).
const FWD: Tol = { atol: 1e-6, rtol: 1e-5 };
const GRAD: Tol = { atol: 5e-6, rtol: 1e-5 };

/**
 * Two tilings: the CPU adapters' (no workgroup memory, 8 rows per thread, two score steps of 4 blocks per
 * tile) and a GPU-style one with staged tiles: 3 threads per 4 rows split 8 key blocks (4 query blocks)
 * and the D/4 columns unevenly, so every guard in the kernels is taken. Tile edges fall mid-sequence.
 */
const REGISTERS: AttentionConfig = { BQ: 32, BK: 32, RB: 2, G: 1, stage: false };
const STAGED: AttentionConfig = { BQ: 16, BK: 32, RB: 1, G: 3, stage: true };
const configName = (c: AttentionConfig) => `${c.stage ? "staged" : "registers"} BQ${c.BQ} BK${c.BK} RB${c.RB} G${c.G}`;

interface Case extends R.AttentionCase {
  name: string;
  fdSamples?: number;
}

/** Lengths of packed sequences -> position ids restarting at 0. */
function packed(...lengths: number[]): Int32Array {
  return Int32Array.from(lengths.flatMap((n) => [...Array(n).keys()]));
}

function optionsOf(c: R.AttentionCase): AttentionOptions {
  return {
    position_ids: c.positionIds && Int32Array.from(c.positionIds),
    attention_mask: c.mask && Int32Array.from(c.mask),
    scale: c.scale,
    sliding_window: c.slidingWindow,
    softcap: c.softcap,
  };
}

function checkCase(c: Case): Promise<void> {
  const { B, T, H, KVH, D } = c;
  return checkOp({
    name: c.name,
    shapes: [[B, T, H, D], [B, T, KVH, D], [B, T, KVH, D]],
    gpu: ([q, k, v]) => attention(q!, k!, v!, optionsOf(c)),
    ref: ([q, k, v]) => R.attention(q!, k!, v!, c),
    refGrad: ([q, k, v], dy) => R.attentionGrad(q!, k!, v!, dy, c),
    fwd: FWD,
    grad: GRAD,
    fdSamples: c.fdSamples ?? 6,
  });
}

// On SwiftShader each (head_dim, tiling) compiles its four pipelines in ~8 s, so the file uses three: the
// CPU tiling at head_dim 20 (most cases) and 128, the staged tiling at head_dim 64.
const PADDING = [...[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], ...[1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], ...Array(11).fill(1)];
const CASES: [AttentionConfig, Case][] = [
  // Central differences on 48 elements of each input of a tiny packed row (lengths 4 and 2).
  [REGISTERS, { name: "tiny packed [1, 6, 2, 20] on 1 kv head", B: 1, T: 6, H: 2, KVH: 1, D: 20, positionIds: packed(4, 2), fdSamples: 48 }],
  [STAGED, { name: "tiny packed [1, 6, 2, 64] on 1 kv head", B: 1, T: 6, H: 2, KVH: 1, D: 64, positionIds: packed(4, 2), fdSamples: 48 }],
  [REGISTERS, { name: "GQA 4 on 2, D 20, packed 13 + 20", B: 1, T: 33, H: 4, KVH: 2, D: 20, positionIds: packed(13, 20) }],
  [STAGED, { name: "GQA 4 on 2, D 64, packed 13 + 20 (3 query tiles)", B: 1, T: 33, H: 4, KVH: 2, D: 64, positionIds: packed(13, 20) }],
  // 3 query tiles, the last of 1 row; 3 key tiles.
  [REGISTERS, { name: "T 65, D 20, 3 heads on 1", B: 1, T: 65, H: 3, KVH: 1, D: 20 }],
  [REGISTERS, { name: "padded batch: left 3, right 5, none; D 20", B: 3, T: 11, H: 2, KVH: 2, D: 20, mask: PADDING }],
  [STAGED, { name: "padded batch: left 3, right 5, none; D 64", B: 3, T: 11, H: 2, KVH: 2, D: 64, mask: PADDING }],
  [REGISTERS, { name: "D 128, explicit scale", B: 1, T: 20, H: 2, KVH: 1, D: 128, scale: 0.1, positionIds: packed(9, 11) }],
  // Sliding windows smaller than the sequence: tiles whose key range starts mid-window (T 33: 2 query tiles,
  // the second's keys from 28 on; backward_dkv's query range ends at the window), windows restarting at each
  // packed sequence, and windows against left and right padding (the window reaches into the left padding).
  // Central differences on a tiny windowed, capped row.
  [REGISTERS, { name: "tiny window 2 + softcap [1, 7, 3, 20] on 1 kv head", B: 1, T: 7, H: 3, KVH: 1, D: 20, scale: 0.9, slidingWindow: 2, softcap: 1.3, fdSamples: 48 }],
  [REGISTERS, { name: "window 5, T 17, GQA 3 on 1", B: 1, T: 17, H: 3, KVH: 1, D: 20, slidingWindow: 5 }],
  [REGISTERS, { name: "window 5, T 33, GQA 6 on 2, packed 13 + 20", B: 1, T: 33, H: 6, KVH: 2, D: 20, slidingWindow: 5, positionIds: packed(13, 20) }],
  [STAGED, { name: "window 5, T 33, GQA 6 on 2, packed 3 + 30", B: 1, T: 33, H: 6, KVH: 2, D: 64, slidingWindow: 5, positionIds: packed(3, 30) }],
  [REGISTERS, { name: "window 1 (each token itself), T 33, 3 heads on 1", B: 1, T: 33, H: 3, KVH: 1, D: 20, slidingWindow: 1 }],
  [REGISTERS, { name: "window 40 > T 33 (no effect)", B: 1, T: 33, H: 3, KVH: 1, D: 20, slidingWindow: 40 }],
  [REGISTERS, { name: "window 4, padded batch: left 3, right 5, none", B: 3, T: 11, H: 3, KVH: 1, D: 20, mask: PADDING, slidingWindow: 4 }],
  [STAGED, { name: "window 4 + softcap 2, padded batch: left 3, right 5, none", B: 3, T: 11, H: 3, KVH: 1, D: 64, mask: PADDING, slidingWindow: 4, scale: 0.4, softcap: 2 }],
  // Soft-capping with scores well into tanh's curve (|scale·q·k| up to ~4 against caps of 1.5 and 3).
  [REGISTERS, { name: "softcap 1.5, T 17, GQA 3 on 1", B: 1, T: 17, H: 3, KVH: 1, D: 20, scale: 0.6, softcap: 1.5 }],
  [STAGED, { name: "softcap 3, T 33, GQA 6 on 2", B: 1, T: 33, H: 6, KVH: 2, D: 64, scale: 0.3, softcap: 3 }],
  [REGISTERS, { name: "softcap 1.5 + window 5, T 33, GQA 3 on 1, packed 13 + 20", B: 1, T: 33, H: 3, KVH: 1, D: 20, scale: 0.6, softcap: 1.5, slidingWindow: 5, positionIds: packed(13, 20) }],
];

for (const [config, c] of CASES) {
  test(`attention ${c.name} (${configName(config)})`, async () => {
    forceAttentionConfig(config);
    await checkCase(c);
  });
}

/** Tensors of a fixture case, and the per-row options. */
function fromFixture(c: FixtureCase) {
  const t = (key: string, grad = false) => {
    const f = tensorOf(c, key);
    return Tensor.fromArray(f.data, f.shape, { requires_grad: grad });
  };
  const options: AttentionOptions = {
    position_ids: Int32Array.from(tensorOf(c, "position_ids").data),
    attention_mask: Int32Array.from(tensorOf(c, "attention_mask").data),
    scale: c.scale as number,
    sliding_window: (c.sliding_window as number | null | undefined) ?? null,
    softcap: (c.softcap as number | null | undefined) ?? null,
  };
  return { q: t("q", true), k: t("k", true), v: t("v", true), dy: t("dy"), options };
}

// PyTorch float64 autograd of the written-out masked softmax (torch 1.13 has no scaled_dot_product_attention);
// the window_* and softcap_* cases add transformers' sliding-window overlay and Gemma 2's soft-capping.
for (const [name, c] of Object.entries(fixtures("attention"))) {
  test(`attention matches PyTorch: ${name}`, async () => {
    forceAttentionConfig(null);
    const { q, k, v, dy, options } = fromFixture(c);
    const o = attention(q, k, v, options);
    expectAllClose(await o.toArray(), tensorOf(c, "o").data, FWD, `${name} o`);
    o.backward(dy);
    expectAllClose(await q.grad!.toArray(), tensorOf(c, "dq").data, GRAD, `${name} dq`);
    expectAllClose(await k.grad!.toArray(), tensorOf(c, "dk").data, GRAD, `${name} dk`);
    expectAllClose(await v.grad!.toArray(), tensorOf(c, "dv").data, GRAD, `${name} dv`);
  });
}

/** Rows [t0, t1) of a flat (T, ...) array with `width` values per token. */
const rows = (a: ArrayLike<number>, t0: number, t1: number, width: number) =>
  Float32Array.from({ length: (t1 - t0) * width }, (_, i) => a[t0 * width + i]!);

test("attention of a packed row (7, 5, 12) = each sequence alone, per token", async () => {
  forceAttentionConfig(null);
  const c = fixtures("attention")["packed_7_5_12"]!;
  const [, , H, D] = tensorOf(c, "q").shape as number[];
  const KVH = tensorOf(c, "k").shape[2]!;
  const { q, k, v, dy, options } = fromFixture(c);
  const o = attention(q, k, v, options);
  o.backward(dy);
  const got = { o: await o.toArray(), dq: await q.grad!.toArray(), dk: await k.grad!.toArray(), dv: await v.grad!.toArray() };
  const data = (key: string) => tensorOf(c, key).data;
  let t0 = 0;
  for (const n of [7, 5, 12]) {
    const t1 = t0 + n;
    const part = (key: string, heads: number, grad = false) =>
      Tensor.fromArray(rows(data(key), t0, t1, heads * D!), [1, n, heads, D!], { requires_grad: grad });
    const [qs, ks, vs] = [part("q", H!, true), part("k", KVH, true), part("v", KVH, true)];
    const os = attention(qs, ks, vs);
    os.backward(part("dy", H!));
    const what = `sequence [${t0}, ${t1})`;
    const tight = { atol: 1e-6, rtol: 0 };
    expectAllClose(rows(got.o, t0, t1, H! * D!), await os.toArray(), tight, `${what} o`);
    expectAllClose(rows(got.dq, t0, t1, H! * D!), await qs.grad!.toArray(), tight, `${what} dq`);
    expectAllClose(rows(got.dk, t0, t1, KVH * D!), await ks.grad!.toArray(), tight, `${what} dk`);
    expectAllClose(rows(got.dv, t0, t1, KVH * D!), await vs.grad!.toArray(), tight, `${what} dv`);
    t0 = t1;
  }
});

test("attention backward gives the same bits on every run", async () => {
  forceAttentionConfig(null);
  const [B, T, H, KVH, D] = [1, 50, 4, 2, 20];
  const run = async () => {
    const q = Tensor.fromArray(Float32Array.from(rand(B * T * H * D, 1)), [B, T, H, D], { requires_grad: true });
    const k = Tensor.fromArray(Float32Array.from(rand(B * T * KVH * D, 2)), [B, T, KVH, D], { requires_grad: true });
    const v = Tensor.fromArray(Float32Array.from(rand(B * T * KVH * D, 3)), [B, T, KVH, D], { requires_grad: true });
    const o = attention(q, k, v, { position_ids: packed(17, 33) });
    o.backward(Tensor.fromArray(Float32Array.from(rand(B * T * H * D, 4)), o.shape));
    return [await o.toArray(), await q.grad!.toArray(), await k.grad!.toArray(), await v.grad!.toArray()];
  };
  const first = await run();
  const second = await run();
  for (let i = 0; i < first.length; i++) {
    assert.ok(Buffer.from(first[i]!.buffer).equals(Buffer.from(second[i]!.buffer)), `output ${i} differs between runs`);
  }
});

test("attention: a query with no key (a padded row) outputs 0 and gets 0 gradients, never NaN", async () => {
  forceAttentionConfig(null);
  const [B, T, H, D] = [2, 5, 1, 20];
  const q = Tensor.fromArray(Float32Array.from(rand(B * T * H * D, 5)), [B, T, H, D], { requires_grad: true });
  const k = Tensor.fromArray(Float32Array.from(rand(B * T * H * D, 6)), [B, T, H, D], { requires_grad: true });
  const v = Tensor.fromArray(Float32Array.from(rand(B * T * H * D, 7)), [B, T, H, D], { requires_grad: true });
  const mask = [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0]];
  const o = attention(q, k, v, { attention_mask: mask });
  o.backward(Tensor.fromArray(new Float32Array(B * T * H * D).fill(1), o.shape));
  const out = await o.toArray();
  const dq = await q.grad!.toArray();
  const dk = await k.grad!.toArray();
  const dv = await v.grad!.toArray();
  assert.ok([...out, ...dq, ...dk, ...dv].every(Number.isFinite), "non-finite value");
  const padded = (t: number) => mask[Math.floor(t / T)]![t % T] === 0;
  for (let t = 0; t < B * T; t++) {
    if (!padded(t)) continue;
    for (let d = 0; d < D; d++) {
      assert.equal(out[t * D + d], 0, `o of padded token ${t}`);
      assert.equal(dq[t * D + d], 0, `dq of padded token ${t}`);
      assert.equal(dk[t * D + d], 0, `dk of padded token ${t}`);
      assert.equal(dv[t * D + d], 0, `dv of padded token ${t}`);
    }
  }
  // Token 1 of row 1 attends only itself: o = v.
  expectAllClose(out.subarray((T + 1) * D, (T + 2) * D), (await v.toArray()).subarray((T + 1) * D, (T + 2) * D), { atol: 1e-7, rtol: 0 });
});

test("attention: gradients only for the inputs that require them; no graph under no_grad", async () => {
  forceAttentionConfig(null);
  const [B, T, H, D] = [1, 9, 2, 20];
  const qs = rand(B * T * H * D, 8);
  const ks = rand(B * T * D, 9);
  const vs = rand(B * T * D, 10);
  const dys = rand(B * T * H * D, 11);
  const q = Tensor.fromArray(Float32Array.from(qs), [B, T, H, D], { requires_grad: true });
  const k = Tensor.fromArray(Float32Array.from(ks), [B, T, 1, D]);
  const v = Tensor.fromArray(Float32Array.from(vs), [B, T, 1, D], { requires_grad: true });
  const o = attention(q, k, v);
  o.backward(Tensor.fromArray(Float32Array.from(dys), o.shape));
  const c = { B, T, H, KVH: 1, D };
  const [dq, , dv] = R.attentionGrad(qs, ks, vs, dys, c);
  assert.equal(k.grad, null);
  expectAllClose(await q.grad!.toArray(), dq!, GRAD, "dq");
  expectAllClose(await v.grad!.toArray(), dv!, GRAD, "dv");
  const y = no_grad(() => attention(q, k, v));
  assert.equal(y.node, null);
  expectAllClose(await y.toArray(), R.attention(qs, ks, vs, c), FWD, "o under no_grad");
});

test("tokenBounds: (first key, one past the last query) per token for packed, left- and right-padded rows", () => {
  // Row 0: sequences [0, 5) and [5, 7), the first right-padded by one. Row 1: one sequence, right-padded by 2.
  const ids = Int32Array.from([0, 1, 2, 3, 9, 0, 1, 0, 1, 2, 3, 4, 1, 1]);
  const mask = Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
  assert.deepEqual(
    [...tokenBounds(2, 7, ids, mask)],
    [0, 4, 0, 4, 0, 4, 0, 4, 5, 4, 5, 7, 5, 7, 0, 5, 0, 5, 0, 5, 0, 5, 0, 5, 6, 5, 7, 6],
  );
});

test("tokenBounds with a sliding window: lo_t = max(first key, t - W + 1), end_t = min(end, t + W), per sequence", () => {
  // W = 2. Row 0: one sequence, left- and right-padded by one. Row 1: sequences [0, 3) and [3, 7).
  const ids = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 0, 1, 2, 3]);
  const mask = Int32Array.from([0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual(
    [...tokenBounds(2, 7, ids, mask, 2)],
    [1, 0, 1, 3, 1, 4, 2, 5, 3, 6, 4, 6, 7, 6, 0, 2, 0, 3, 1, 3, 3, 5, 3, 6, 4, 7, 5, 7],
  );
});

test("attention rejects bad shapes, options and masks with holes", () => {
  const t = (...shape: number[]) => Tensor.fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  const q = t(1, 5, 4, 8);
  const kv = t(1, 5, 2, 8);
  assert.throws(() => attention(t(1, 5, 3, 8), kv, kv), /attention: the 3 query heads must be a multiple of the 2 kv heads/);
  assert.throws(() => attention(t(1, 5, 2, 6), t(1, 5, 1, 6), t(1, 5, 1, 6)), /head_dim must be a multiple of 4 from 4 to 256, got 6/);
  assert.throws(() => attention(t(1, 2, 1, 260), t(1, 2, 1, 260), t(1, 2, 1, 260)), /head_dim must be a multiple of 4 from 4 to 256, got 260/);
  assert.throws(() => attention(q, t(1, 4, 2, 8), t(1, 4, 2, 8)), /q has B=1, T=5 but k and v have B=1, T=4/);
  assert.throws(() => attention(q, t(1, 5, 2, 4), t(1, 5, 2, 4)), /head_dim differs: 8 in q, 4 in k and v/);
  assert.throws(() => attention(q, kv, t(1, 5, 1, 8)), /k and v must have the same shape \(q \[1, 5, 4, 8\], k \[1, 5, 2, 8\], v \[1, 5, 1, 8\]\)/);
  assert.throws(() => attention(t(5, 4, 8), kv, kv), /q must be 4-D \[B, T, heads, head_dim\]/);
  assert.throws(() => attention(q, kv, kv, { position_ids: [0, 1, 2] }), /position_ids has 3 values for B·T = 1·5 tokens/);
  assert.throws(() => attention(q, kv, kv, { position_ids: [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]] }), /position_ids must be \[B, T\] = \[1, 5\], got 2 rows/);
  assert.throws(() => attention(q, kv, kv, { attention_mask: [[1, 1, 0, 1, 1]] }), /attention_mask\[0\] has padding at 2 between real tokens 1 and 3 of one sequence/);
  assert.throws(() => attention(q, kv, kv, { attention_mask: [1, 1, 2, 1, 1] }), /attention_mask\[0\]\[2\] = 2; expected 0 or 1/);
  assert.throws(() => attention(q, kv, kv, { position_ids: [0, 1, 2.5, 3, 4] }), /position_ids\[0\]\[2\] = 2.5 is not an integer/);
  for (const w of [0, -1, 1.5]) {
    assert.throws(() => attention(q, kv, kv, { sliding_window: w }), new RegExp(`attention: sliding_window must be a positive integer .* got ${w}`));
  }
  for (const c of [-2, NaN, Infinity]) {
    assert.throws(() => attention(q, kv, kv, { softcap: c }), new RegExp(`attention: softcap must be a positive finite number .* got ${c}`));
  }
  forceAttentionConfig({ BQ: 24, BK: 16, RB: 1, G: 1, stage: false });
  assert.throws(() => attention(q, kv, kv), /BQ and BK must be positive multiples of 16/);
  forceAttentionConfig({ BQ: 64, BK: 64, RB: 1, G: 4, stage: true });
  assert.throws(() => attention(t(1, 5, 4, 256), t(1, 5, 2, 256), t(1, 5, 2, 256)), /exceeds this adapter's workgroup limits/);
  forceAttentionConfig(null);
});
