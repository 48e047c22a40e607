// Products on packed weights (src/tensor/quant.ts): linear's y = x·Wᵀ and its input gradient dx = dy·W, and
// lora_linear's base product, with W [N, K] stored in each packed format and dequantized inside the matmul
// kernel (and the embedding gather from a packed table, which must equal the dequantized rows exactly), equal float64 products with the host's dequantized W (the kernel's f32 accumulation, and a multiply
// and add a compiler may fuse, are the only differences). Odd M; rows of several blocks, so rows of the
// byte-packed GGUF layouts start off word boundaries; every kernel of shaders/matmul.wgsl (register tile,
// workgroup tile, both small-M kernels) on some format. The double-quantized nf4_dq / fp4_dq (blocks in groups of
// 256 behind a header) also on a weight of two groups, the last partial, whose rows straddle the group boundary.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  configFits,
  configName,
  forceMatmulConfig,
  forceMatvecConfig,
  MATMUL_CONFIGS,
  matvecConfigFits,
  type MatmulConfig,
  type MatvecConfig,
} from "../../src/kernels/matmul.ts";
import { deviceInfo, embedding, fused_linear_cross_entropy, linear, lora_linear, matmul, reshape, Tensor } from "../../src/index.ts";
import { WEIGHT_FORMATS, type WeightFormat } from "../../src/tensor/format.ts";
import { quantize, type PackedFormat } from "../../src/tensor/quant.ts";
import { expectAllClose, rand, rejects, setup } from "../helpers.ts";

before(setup);
after(() => {
  forceMatmulConfig(null);
  forceMatvecConfig(null);
});

const TOL = { atol: 2e-5, rtol: 2e-5 };
const PACKED: PackedFormat[] = ["bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "nf4", "fp4", "nf4_dq", "fp4_dq", "int8"];

/** Rows of several blocks: 3 blocks of 32 (q4_0's 54-byte rows start at 2 mod 4), 2 super-blocks of 256, 2 of 64. */
const rowLength = (f: PackedFormat) => ({ 1: 36, 32: 96, 64: 128, 256: 512 })[WEIGHT_FORMATS[f].blockSize]!;

/** y [M, N] = a [M, K] · bᵀ (b [N, K]) in float64. */
function mmT(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += a[m * K + k]! * b[n * K + k]!;
    y[m * N + n] = s;
  }
  return y;
}
/** y [M, K] = a [M, N] · b (b [N, K]) in float64. */
function mm(a: ArrayLike<number>, b: ArrayLike<number>, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * K);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    const v = a[m * N + n]!;
    for (let k = 0; k < K; k++) y[m * K + k] += v * b[n * K + k]!;
  }
  return y;
}

/** The weight's values: spread and signed, with a zero row and a row of one repeated value (edge blocks). */
function weightValues(N: number, K: number, seed: number): Float32Array {
  const w = Float32Array.from(rand(N * K, seed), (v) => v * 0.5);
  w.fill(0, 0, K);
  if (N > 2) w.fill(-0.25, 2 * K, 3 * K);
  return w;
}

/** linear(x, W) and dx with W in `format`, against float64 with the host's dequantized W. */
async function checkLinear(format: PackedFormat, M: number, N: number, label: string, K = rowLength(format)): Promise<void> {
  const wVals = weightValues(N, K, 7);
  const bytes = quantize(format, wVals, K);
  const wd = WEIGHT_FORMATS[format].toFloat32(bytes.buffer as ArrayBuffer);
  const xVals = Float32Array.from(rand(M * K, 8));
  const dyVals = Float32Array.from(rand(M * N, 9));
  const w = Tensor.fromArray(wVals, [N, K], { dtype: format });
  assert.equal(w.dtype, format);
  // The buffer holds the host's bytes: reading it back dequantizes to the same values.
  assert.deepEqual(await w.toArray(), wd, `${format}: read back`);
  const x = Tensor.fromArray(xVals, [M, K], { requires_grad: true });
  const y = linear(x, w);
  y.backward(Tensor.fromArray(dyVals, [M, N]));
  const what = `${format} W [${N}, ${K}], M ${M}, ${label}`;
  expectAllClose(await y.toArray(), mmT(xVals, wd, M, N, K), TOL, `${what}: y`);
  expectAllClose(await x.grad!.toArray(), mm(dyVals, wd, M, N, K), TOL, `${what}: dx`);
  assert.equal(w.grad, null);
  for (const t of [x, w, y, x.grad!]) t.dispose();
}

for (const format of PACKED) {
  test(`linear on a ${format} weight (y and dx) equals float64 with the dequantized weight, register tile and small M`, async () => {
    const reg = MATMUL_CONFIGS.cpu[0]!;
    forceMatmulConfig(reg);
    try {
      await checkLinear(format, 17, 5, configName(reg)); // M > 8: the tile kernel
      await checkLinear(format, 3, 6, "default small-M kernel"); // M <= 8: the adapter's small-M choice
    } finally {
      forceMatmulConfig(null);
    }
  });
}

test("the workgroup-tile and both small-M kernels read packed weights too", async () => {
  const tiled = MATMUL_CONFIGS.gpu.filter((c) => configFits(c, deviceInfo()));
  const small: MatvecConfig[] = [{ kernel: "vec", WG: 16, C: 16 }, { kernel: "vec_wg", WG: 64 }];
  try {
    for (const format of ["q4_0", "q6_k", "nf4"] as const) {
      for (const c of tiled.slice(0, 1) as MatmulConfig[]) {
        forceMatmulConfig(c);
        await checkLinear(format, 17, 5, configName(c));
      }
      for (const c of small.filter((s) => matvecConfigFits(s, deviceInfo()))) {
        forceMatvecConfig(c);
        await checkLinear(format, 1, 7, configName(c));
      }
      forceMatvecConfig(null);
    }
  } finally {
    forceMatmulConfig(null);
    forceMatvecConfig(null);
  }
});

test("nf4_dq / fp4_dq weights of two nested groups (325 blocks: 256 and a partial 69, rows of 5 across the boundary): y and dx", async () => {
  const reg = MATMUL_CONFIGS.cpu[0]!;
  try {
    for (const format of ["nf4_dq", "fp4_dq"] as const) {
      forceMatmulConfig(reg);
      await checkLinear(format, 17, 65, configName(reg), 320);
      forceMatmulConfig(null);
      await checkLinear(format, 3, 65, "default small-M kernel", 320);
    }
  } finally {
    forceMatmulConfig(null);
  }
});

for (const [f, N, K] of [["q4_k", 3, 256], ["nf4_dq", 65, 320]] as const) {
  test(`lora_linear on a ${f} base [${N}, ${K}]: y and dx equal float64 with the dequantized base`, async () => {
    await checkLora(f, N, K);
  });
}

async function checkLora(f: PackedFormat, N: number, K: number): Promise<void> {
  const [M, R] = [5, 2];
  const wVals = weightValues(N, K, 11);
  const wd = WEIGHT_FORMATS[f].toFloat32(quantize(f, wVals, K).buffer as ArrayBuffer);
  const xVals = Float32Array.from(rand(M * K, 12));
  const aVals = Float32Array.from(rand(R * K, 13));
  const bVals = Float32Array.from(rand(N * R, 14));
  const dyVals = Float32Array.from(rand(M * N, 15));
  const scaling = 2;
  const x = Tensor.fromArray(xVals, [M, K], { requires_grad: true });
  const w = Tensor.fromArray(wVals, [N, K], { dtype: f });
  const A = Tensor.fromArray(aVals, [R, K], { requires_grad: true });
  const B = Tensor.fromArray(bVals, [N, R], { requires_grad: true });
  const y = lora_linear(x, w, null, A, B, { scaling });
  y.backward(Tensor.fromArray(dyVals, [M, N]));
  // y = x Wᵀ + s (x Aᵀ) Bᵀ; dx = dy W + s (dy B) A.
  const u = mmT(xVals, aVals, M, R, K);
  const wantY = mmT(xVals, wd, M, N, K).map((v, i) => v + scaling * mmT(u, bVals, M, N, R)[i]!);
  const g = mm(dyVals, bVals, M, N, R);
  const wantDx = mm(dyVals, wd, M, N, K).map((v, i) => v + scaling * mm(g, aVals, M, R, K)[i]!);
  expectAllClose(await y.toArray(), wantY, TOL, `${f} y`);
  expectAllClose(await x.grad!.toArray(), wantDx, TOL, `${f} dx`);
  assert.equal(w.grad, null);
  for (const t of [x, w, A, B, y]) t.dispose();
}

// nf4_dq / fp4_dq: absmax' = map[q]·absmax2 + offset, then times the code value.
const TWO_ROUNDINGS = new Set<PackedFormat>(["q4_1", "q5_1", "q4_k", "q5_k", "q6_k", "nf4_dq", "fp4_dq", "int8"]);

test("embedding from a packed table equals the host's dequantized rows (bit for bit where no multiply-add fuses)", async () => {
  const V = 5;
  const ids = [4, 0, 2, 2, 1, 3, 4];
  for (const format of PACKED) {
    const C = format === "bf16" ? 37 : rowLength(format); // bf16: a row that is not a multiple of 4
    const vals = weightValues(V, C, 21);
    const wd = WEIGHT_FORMATS[format].toFloat32(quantize(format, vals, C).buffer as ArrayBuffer);
    const w = Tensor.fromArray(vals, [V, C], { dtype: format });
    // The table whole, and as row blocks (a vocabulary larger than one binding: rows 0-1 and 2-4), each block
    // quantized on its own (nf4_dq / fp4_dq: with its own nested statistics).
    const parts = [vals.subarray(0, 2 * C), vals.subarray(2 * C)];
    const blocks = parts.map((v) => Tensor.fromArray(v, [v.length / C, C], { dtype: format }));
    const wdBlocks = Float32Array.from(parts.flatMap((v) => [...WEIGHT_FORMATS[format].toFloat32(quantize(format, v, C).buffer as ArrayBuffer)]));
    const gather = (table: Float32Array) => {
      const out = new Float32Array(ids.length * C);
      ids.forEach((id, n) => out.set(table.subarray(id * C, (id + 1) * C), n * C));
      return out;
    };
    const cases = [["whole", embedding(w, ids, [1, ids.length]), gather(wd)], ["row blocks", embedding(blocks, ids, [1, ids.length]), gather(wdBlocks)]] as const;
    for (const [how, y, want] of cases) {
      assert.deepEqual(y.shape, [1, ids.length, C]);
      // Two roundings ((d·sc)·q, d·q + m, (q·absmax)·(1/127)): a GPU compiler may fuse or reassociate them
      // (llvmpipe reassociates int8's product; SwiftShader keeps every order): an ulp or so apart. One rounding
      // (d·q, code·absmax) or none (bf16): bit for bit.
      if (TWO_ROUNDINGS.has(format)) expectAllClose(await y.toArray(), want, { atol: 1e-7, rtol: 2 ** -21 }, `${format} ${how}`);
      else assert.deepEqual(await y.toArray(), want, `${format} ${how}`);
      y.dispose();
    }
    for (const t of [w, ...blocks]) t.dispose();
  }
  const frozen = Tensor.fromArray(new Float32Array(2 * 64), [2, 64], { dtype: "nf4" });
  frozen.requires_grad = true;
  assert.throws(() => embedding(frozen, [0]), /embedding: weight \[2, 64\]: an nf4 weight cannot require grad/);
});

test("embedding from an f16 table (shader-f16 adapters) gathers the f16 values; without shader-f16 it is refused", async (t) => {
  const vals = Float32Array.from(rand(3 * 5, 31));
  if (!deviceInfo().features.shader_f16) {
    const w = Tensor.fromArray(vals, [3, 5]);
    const w16 = new Tensor(w.storage, [3, 5], "f16"); // the refusal comes before any read
    assert.throws(() => embedding(w16, [0]), /embedding: weight \[3, 5\]: an f16 weight needs the adapter's shader-f16 feature/);
    w.dispose();
    return t.skip("adapter has no shader-f16");
  }
  const w = Tensor.fromArray(vals, [3, 5], { dtype: "f16" });
  const y = embedding(w, [2, 0, 2]);
  const wd = await w.toArray();
  assert.deepEqual(await y.toArray(), Float32Array.from([...wd.subarray(10, 15), ...wd.subarray(0, 5), ...wd.subarray(10, 15)]));
  for (const x of [w, y]) x.dispose();
});

test("packed weights: rows must be whole blocks, the weight frozen, and in the b slot; errors say so", async () => {
  assert.throws(
    () => Tensor.fromArray(new Float32Array(3 * 40), [3, 40], { dtype: "q4_0" }),
    /\[3, 40\]: a q4_0 row of 40 elements is not whole blocks of 32/,
  );
  assert.throws(
    () => Tensor.fromQuantized(new Uint8Array(18), [1, 40], "q4_0", "model.layers.0.mlp.up_proj.weight"),
    /model\.layers\.0\.mlp\.up_proj\.weight \[1, 40\]: a q4_0 row of 40 elements is not whole blocks of 32/,
  );
  assert.throws(() => Tensor.fromQuantized(new Uint8Array(17), [1, 32], "q4_0", "w"), /w \[1, 32\] in q4_0 takes 18 bytes, got 17/);
  // A view keeps rows whole: a reshape that splits a block throws, one that joins rows is fine.
  const rows = Tensor.fromArray(new Float32Array(2 * 64), [2, 64], { dtype: "q4_0" });
  assert.throws(() => reshape(rows, [8, 16]), /tensor \[8, 16\]: a q4_0 row of 16 elements is not whole blocks of 32/);
  assert.deepEqual(reshape(rows, [128]).shape, [128]);
  rows.dispose();
  const w = Tensor.fromArray(new Float32Array(2 * 64), [2, 64], { dtype: "nf4" });
  const x = Tensor.fromArray(new Float32Array(3 * 64), [3, 64]);
  assert.throws(() => matmul(w, x, { transpose_b: true }), /only b is read packed/);
  w.requires_grad = true;
  await rejects(async () => linear(x, w), /an nf4 weight cannot require grad|an nf4 operand cannot require grad/);
  // A GGUF tensor's bytes as the file holds them (q8_0 holds integers up to 127 exactly when one is 127).
  const ints = Float32Array.from({ length: 64 }, (_, i) => (i % 32 === 0 ? 127 : i - 32));
  const q = Tensor.fromQuantized(quantize("q8_0", ints, 64), [2, 32], "q8_0", "w");
  assert.deepEqual(await q.toArray(), ints);
  for (const t of [w, x, q]) t.dispose();
});

// Types only: a packed format is a WeightFormat.
const _typed: WeightFormat = "q4_k";
void _typed;

test("the fused cross-entropy's LM head packed (q8_0, q4_k, nf4_dq; row blocks too): loss, metrics and dh equal those of the dequantized f32 head", async () => {
  const [R, V, C] = [7, 33, 256];
  const labels = Int32Array.from({ length: R }, (_, i) => (i === 3 ? -100 : (i * 11) % V));
  for (const f of ["q8_0", "q4_k", "nf4_dq"] as const) {
    const wVals = weightValues(V, C, 31);
    const hVals = Float32Array.from(rand(R * C, 32));
    const run = async (w: Tensor | Tensor[]) => {
      const h = Tensor.fromArray(hVals, [R, C], { requires_grad: true });
      const out = fused_linear_cross_entropy(h, w, labels, { chunk_size: 4 });
      out.loss.backward();
      return { loss: await out.loss.item(), dh: (await h.grad!.toArray()) as Float32Array, correct: await out.metrics.correct.item() };
    };
    // The head whole and as row blocks, each block quantized on its own (nf4_dq: with its own nested statistics).
    for (const parts of [[wVals], [wVals.subarray(0, 17 * C), wVals.subarray(17 * C)]]) {
      const wd = Float32Array.from(parts.flatMap((p) => [...WEIGHT_FORMATS[f].toFloat32(quantize(f, p, C).buffer as ArrayBuffer)]));
      const want = await run(Tensor.fromArray(wd, [V, C]));
      const blocks = parts.map((p) => Tensor.fromArray(p, [p.length / C, C], { dtype: f }));
      const got = await run(blocks.length === 1 ? blocks[0]! : blocks);
      expectAllClose([got.loss], [want.loss], TOL, `${f} loss`);
      expectAllClose(got.dh, want.dh, TOL, `${f} dh`);
      assert.equal(got.correct, want.correct, `${f} accuracy`);
    }
  }
  const frozen = Tensor.fromArray(weightValues(V, C, 31), [V, C], { dtype: "q8_0" });
  frozen.requires_grad = true;
  assert.throws(() => fused_linear_cross_entropy(Tensor.fromArray(rand(R * C, 32), [R, C]), frozen, labels), /q8_0 weight is frozen storage and cannot require grad/);
});
