import assert from "node:assert/strict";
import { before, test } from "node:test";
import { rope, RotaryEmbedding, Tensor, tidy, type RopeScaling } from "../../src/index.ts";
import { fixtures, tensorOf } from "../fixtures.ts";
import { checkOp, expectAllClose, rand, setup, type Tol } from "../helpers.ts";
import * as R from "../reference/rope.ts";

before(setup);

// Each output is x1 cos ∓ x2 sin with cos/sin rounded once to f32 from float64 tables: |error| ~2e-7.
const tol: Tol = { atol: 1e-6, rtol: 1e-5 };

const llama32: RopeScaling & R.Scaling = {
  rope_type: "llama3",
  factor: 32,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 8192,
};

/** T positions: packed sequences of lengths 1, 2, 3, ... (each restarting at 0), or spread up to `far`. */
function positions(T: number, far = 0): Int32Array {
  if (far) return Int32Array.from(rand(T, 77, 0, far), Math.floor);
  const out = new Int32Array(T);
  for (let t = 0, len = 1, k = 0; t < T; t++) {
    out[t] = k++;
    if (k === len) [k, len] = [0, len + 1];
  }
  return out;
}

const cases: { T: number; H: number; D: number; far?: number; theta?: number; scaling?: RopeScaling & R.Scaling }[] = [
  { T: 1, H: 1, D: 64 },
  { T: 3, H: 2, D: 2 },
  { T: 17, H: 3, D: 6 },
  { T: 33, H: 2, D: 128, theta: 500000 },
  { T: 65, H: 4, D: 64 },
  { T: 17, H: 2, D: 64, far: 4096, theta: 500000, scaling: llama32 },
  { T: 33, H: 1, D: 128, far: 20000, theta: 10000, scaling: { rope_type: "linear", factor: 4 } },
];

for (const { T, H, D, far, theta = 10000, scaling } of cases) {
  const pos = positions(T, far);
  test(`rope [${T}, ${H}, ${D}] ${scaling?.rope_type ?? "default"} theta ${theta}${far ? ` positions < ${far}` : ""}`, () => {
    const rotary = new RotaryEmbedding({ head_dim: D, rope_theta: theta, rope_scaling: scaling });
    const inv = R.invFreq(D, theta, scaling);
    expectAllClose(rotary.inv_freq, inv, { atol: 0, rtol: 1e-15 }, "inv_freq");
    return checkOp({
      name: "rope",
      shapes: [[T, H, D]],
      gpu: ([x]) => rope(x!, pos, rotary),
      ref: ([x]) => R.rope(x!, pos, H, inv),
      refGrad: (_, dy) => [R.ropeGrad(dy, pos, H, inv)],
      fwd: tol,
    }).finally(() => rotary.dispose());
  });
}

test("rope takes a leading batch dim, and an i32 tensor of position ids", async () => {
  const [B, T, H, D] = [2, 5, 3, 64];
  const rotary = new RotaryEmbedding({ head_dim: D, max_position_embeddings: 64 });
  const pos = Int32Array.from({ length: B * T }, (_, i) => i % T);
  const xs = rand(B * T * H * D, 3);
  const x = Tensor.fromArray(Float32Array.from(xs), [B, T, H, D]);
  const want = R.rope(xs, pos, H, rotary.inv_freq);
  const fromArray = rope(x, pos, rotary);
  assert.deepEqual(fromArray.shape, [B, T, H, D]);
  expectAllClose(await fromArray.toArray(), want, tol, "position ids from an Int32Array");
  const fromTensor = rope(x, Tensor.fromArray(pos, [B * T]), rotary);
  assert.equal(rotary.size, 64, "an i32 tensor of positions gets tables for max_position_embeddings");
  expectAllClose(await fromTensor.toArray(), want, tol, "position ids from an i32 tensor");
  expectAllClose(await rope(x, [...pos], rotary).toArray(), want, tol, "position ids from number[]");
  rotary.dispose();
});

test("rope tables grow on demand; an earlier forward keeps its own tables for backward", async () => {
  const [T, H, D] = [4, 2, 64];
  const rotary = new RotaryEmbedding({ head_dim: D, rope_theta: 500000, rope_scaling: llama32, max_position_embeddings: 131072 });
  const near = Int32Array.from([0, 1, 2, 3]);
  const farPos = Int32Array.from([0, 5000, 9000, 3]);
  const xs = rand(T * H * D, 4);
  const dys = rand(T * H * D, 5);
  const x = Tensor.fromArray(Float32Array.from(xs), [T, H, D], { requires_grad: true });
  const y1 = rope(x, near, rotary);
  assert.equal(rotary.size, 4);
  const y2 = tidy(() => rope(x, farPos, rotary)); // tables made inside tidy() outlive it
  assert.equal(rotary.size, 9001);
  expectAllClose(await y2.toArray(), R.rope(xs, farPos, H, rotary.inv_freq), tol, "far positions");
  y1.backward(Tensor.fromArray(Float32Array.from(dys), [T, H, D]));
  expectAllClose(await x.grad!.toArray(), R.ropeGrad(dys, near, H, rotary.inv_freq), tol, "dx through the first tables");
  expectAllClose(await rope(x, near, rotary).toArray(), R.rope(xs, near, H, rotary.inv_freq), tol, "near positions again");
  assert.equal(rotary.size, 9001);
  rotary.dispose();
});

test("rope rejects odd head_dim, mismatched shapes, bad position ids and unknown scaling", () => {
  assert.throws(() => new RotaryEmbedding({ head_dim: 7 }), /head_dim must be a positive even integer, got 7/);
  assert.throws(
    () => new RotaryEmbedding({ head_dim: 8, rope_scaling: { rope_type: "yarn", factor: 4 } }),
    /rope_scaling type "yarn" is not supported \(supported: default, linear, llama3, longrope\)/,
  );
  assert.throws(() => new RotaryEmbedding({ head_dim: 8, rope_scaling: { type: "linear" } }), /"linear" needs a number `factor`/);
  const rotary = new RotaryEmbedding({ head_dim: 8 });
  const x = Tensor.fromArray(new Float32Array(3 * 2 * 8), [3, 2, 8]);
  assert.throws(() => rope(x, [0, 1], rotary), /rope: 2 position ids for 3 tokens/);
  assert.throws(() => rope(x, [0, -1, 2], rotary), /rope: position_ids\[1\] = -1 is not a non-negative 32-bit integer/);
  assert.throws(() => rope(x, [0, 1.5, 2], rotary), /position_ids\[1\] = 1.5/);
  assert.throws(() => rope(x, Tensor.fromArray([0, 1, 2], [3]), rotary), /position_ids must be an i32 tensor, got f32/);
  const x4 = Tensor.fromArray(new Float32Array(3 * 4), [3, 1, 4]);
  assert.throws(() => rope(x4, [0, 1, 2], rotary), /rope: x's last dim 4 is not the rotary head_dim 8/);
  rotary.dispose();
});

// Partial rotary (Phi-3's rotary_ndims = int(head_dim * partial_rotary_factor)): the first rotary dims
// rotate with frequencies over that many dims, the rest pass through, in both directions.
for (const [D, factor, theta] of [[8, 0.75, 10000], [8, 0.5, 10000], [12, 0.5, 500000], [16, 0.75, 10000], [16, 0.5, 10000]] as const) {
  const [T, H] = [17, 3];
  const pos = positions(T);
  test(`rope partial_rotary_factor ${factor} of head_dim ${D}`, () => {
    const rotary = new RotaryEmbedding({ head_dim: D, rope_theta: theta, partial_rotary_factor: factor });
    const dim = Math.trunc(D * factor);
    const inv = R.invFreq(dim, theta);
    assert.equal(rotary.rotary_dim, dim);
    expectAllClose(rotary.inv_freq, inv, { atol: 0, rtol: 1e-15 }, "inv_freq");
    return checkOp({
      name: "rope",
      shapes: [[T, H, D]],
      gpu: ([x]) => rope(x!, pos, rotary),
      ref: ([x]) => R.rope(x!, pos, H, inv, D),
      refGrad: (_, dy) => [R.ropeGrad(dy, pos, H, inv, D)],
      fwd: tol,
    }).finally(() => rotary.dispose());
  });
}

// longrope (Phi-3): frequencies / short_factor while max(position_ids) + 1 <= original_max_position_embeddings,
// / long_factor past it, chosen per call; cos and sin times the attention factor.
const longrope = (half: number): RopeScaling => ({
  rope_type: "longrope",
  short_factor: Array.from({ length: half }, (_, i) => 1 + 0.1 * i),
  long_factor: Array.from({ length: half }, (_, i) => 1 + 2.5 * i),
});

test("longrope: short factors up to original_max_position_embeddings, long past it, the attention factor on both", async () => {
  const [T, H, D, L, M] = [5, 2, 16, 32, 128];
  const scaling = longrope(D / 4);
  const rotary = new RotaryEmbedding({ head_dim: D, rope_theta: 10000, rope_scaling: scaling, max_position_embeddings: M, original_max_position_embeddings: L, partial_rotary_factor: 0.5 });
  const attn = Math.sqrt(1 + Math.log(M / L) / Math.log(L));
  assert.equal(rotary.attention_factor, attn);
  const short = R.invFreq(D / 2, 10000, undefined, scaling.short_factor);
  const long = R.invFreq(D / 2, 10000, undefined, scaling.long_factor);
  expectAllClose(rotary.inv_freq, short, { atol: 0, rtol: 1e-15 }, "short inv_freq");
  expectAllClose(rotary.long_inv_freq!, long, { atol: 0, rtol: 1e-15 }, "long inv_freq");
  for (const [pos, inv, what] of [
    [[0, 1, 2, 30, 31], short, "max position 31 = L - 1: short"],
    [[0, 1, 2, 3, 32], long, "max position 32 = L: long"],
    [[0, 40, 2, 100, 7], long, "far positions: long"],
    [[3, 2, 1, 0, 4], short, "short again"],
  ] as const) {
    await checkOp({
      name: `rope longrope (${what})`,
      shapes: [[T, H, D]],
      gpu: ([x]) => rope(x!, pos, rotary),
      ref: ([x]) => R.rope(x!, pos, H, inv, D, attn),
      refGrad: (_, dy) => [R.ropeGrad(dy, pos, H, inv, D, attn)],
      fwd: tol,
    });
  }
  assert.ok(rotary.size <= L, `short tables stop at original_max_position_embeddings (${rotary.size})`);
  assert.ok(rotary.longSize > 100);
  rotary.dispose();
});

test("longrope: attention_factor and factor as given; original_max_position_embeddings from rope_scaling, else max_position_embeddings", () => {
  const s = longrope(4);
  const given = new RotaryEmbedding({ head_dim: 8, rope_scaling: { ...s, attention_factor: 1.25 }, original_max_position_embeddings: 16 });
  assert.equal(given.attention_factor, 1.25);
  const withFactor = new RotaryEmbedding({ head_dim: 8, rope_scaling: { ...s, factor: 4 }, original_max_position_embeddings: 16, max_position_embeddings: 1000 });
  assert.equal(withFactor.attention_factor, Math.sqrt(1 + Math.log(4) / Math.log(16)));
  const inner = new RotaryEmbedding({ head_dim: 8, rope_scaling: { ...s, original_max_position_embeddings: 64 }, max_position_embeddings: 256 });
  assert.equal(inner.original_max_position_embeddings, 64);
  assert.equal(inner.attention_factor, Math.sqrt(1 + Math.log(4) / Math.log(64)));
  const outerWins = new RotaryEmbedding({ head_dim: 8, rope_scaling: { ...s, original_max_position_embeddings: 64 }, original_max_position_embeddings: 128, max_position_embeddings: 256 });
  assert.equal(outerWins.original_max_position_embeddings, 128);
  const none = new RotaryEmbedding({ head_dim: 8, rope_scaling: s, max_position_embeddings: 256 });
  assert.equal(none.original_max_position_embeddings, 256);
  assert.equal(none.attention_factor, 1, "factor 1: no attention scaling");
});

test("rope rejects bad partial_rotary_factor and longrope factors, and GPU position ids with longrope", () => {
  assert.throws(() => new RotaryEmbedding({ head_dim: 8, partial_rotary_factor: 0 }), /partial_rotary_factor must be in \(0, 1\], got 0/);
  assert.throws(() => new RotaryEmbedding({ head_dim: 8, partial_rotary_factor: 0.1 }), /gives 0 rotary dims/);
  assert.throws(
    () => new RotaryEmbedding({ head_dim: 16, partial_rotary_factor: 0.5, rope_scaling: { ...longrope(8) } }),
    /"longrope" needs `short_factor`: a list of 4 positive numbers \(one per rotary pair: 8 rotary dims of head_dim 16\), got 8 entries/,
  );
  assert.throws(() => new RotaryEmbedding({ head_dim: 8, rope_scaling: { rope_type: "longrope", short_factor: [1, 1, 1, 1] } }), /needs `long_factor`/);
  const rotary = new RotaryEmbedding({ head_dim: 8, rope_scaling: longrope(4), original_max_position_embeddings: 16 });
  const x = Tensor.fromArray(new Float32Array(2 * 8), [2, 1, 8]);
  assert.throws(() => rope(x, Tensor.fromArray(Int32Array.from([0, 1]), [2]), rotary), /longrope picks its short or long factors from max\(position_ids\)/);
  rotary.dispose();
});

// PyTorch float64 (transformers' formulas) on f32-rounded inputs: the same tolerance as the float64
// reference. transformers itself runs RoPE in float32, and its f32 angle position * inv_freq is off by up
// to half an ulp of the angle (1.2e-4 rad at 4000): y_hf_float32 is within 3e-4 of ours there, no closer.
for (const [name, c] of Object.entries(fixtures("rope"))) {
  test(`rope matches PyTorch: ${name}`, async () => {
    const scaling = c.rope_scaling as unknown as RopeScaling;
    const rotary = new RotaryEmbedding({ head_dim: c.head_dim as number, rope_theta: c.rope_theta as number, rope_scaling: scaling });
    expectAllClose(rotary.inv_freq, tensorOf(c, "inv_freq").data, { atol: 0, rtol: 1e-15 }, `${name} inv_freq`);
    const xf = tensorOf(c, "x");
    const x = Tensor.fromArray(xf.data, xf.shape, { requires_grad: true });
    const y = rope(x, tensorOf(c, "position_ids").data, rotary);
    const got = await y.toArray();
    expectAllClose(got, tensorOf(c, "y").data, tol, `${name} y`);
    if ("y_hf_float32" in c) expectAllClose(got, tensorOf(c, "y_hf_float32").data, { atol: 3e-4, rtol: 0 }, `${name} y vs float32 transformers`);
    const dy = tensorOf(c, "dy");
    y.backward(Tensor.fromArray(dy.data, dy.shape));
    expectAllClose(await x.grad!.toArray(), tensorOf(c, "dx").data, tol, `${name} dx`);
    rotary.dispose();
  });
}

// Phi-3's rotary embedding (tools/fixtures/rope_phi3.py): partial rotary and longrope, PyTorch float64 on the
// formulas of transformers 5.18, which the script checks against transformers' own Phi3RotaryEmbedding
// (inv_freq, the dynamic short/long switch, attention_scaling); y_hf_float32 is transformers' output in f32.
for (const [name, c] of Object.entries(fixtures("rope_phi3"))) {
  test(`rope matches PyTorch (Phi-3): ${name}`, async () => {
    const rotary = new RotaryEmbedding({
      head_dim: c.head_dim as number,
      rope_theta: c.rope_theta as number,
      rope_scaling: c.rope_scaling as unknown as RopeScaling,
      partial_rotary_factor: c.partial_rotary_factor as number,
      max_position_embeddings: c.max_position_embeddings as number,
      // Phi3Config's default when the config has none.
      original_max_position_embeddings: (c.original_max_position_embeddings as number | undefined) ?? 4096,
    });
    const pos = tensorOf(c, "position_ids").data;
    let maxPos = 0;
    for (const p of pos) maxPos = Math.max(maxPos, p);
    assert.equal(rotary.usesLong(maxPos), c.long as boolean, "the long/short switch");
    const inv = rotary.usesLong(maxPos) ? rotary.long_inv_freq! : rotary.inv_freq;
    expectAllClose(inv, tensorOf(c, "inv_freq").data, { atol: 0, rtol: 1e-15 }, `${name} inv_freq`);
    assert.equal(rotary.attention_factor, c.attention_factor as number, "attention_factor");
    const xf = tensorOf(c, "x");
    const x = Tensor.fromArray(xf.data, xf.shape, { requires_grad: true });
    const y = rope(x, pos, rotary);
    const got = await y.toArray();
    expectAllClose(got, tensorOf(c, "y").data, tol, `${name} y`);
    expectAllClose(got, tensorOf(c, "y_hf_float32").data, { atol: 3e-4, rtol: 0 }, `${name} y vs float32 transformers`);
    const dy = tensorOf(c, "dy");
    y.backward(Tensor.fromArray(dy.data, dy.shape));
    expectAllClose(await x.grad!.toArray(), tensorOf(c, "dx").data, tol, `${name} dx`);
    rotary.dispose();
  });
}
