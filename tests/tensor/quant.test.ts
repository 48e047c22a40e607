// The packed weight formats' host code (src/tensor/quant.ts), no device: dequantization bit for bit against
// llama.cpp's reference (the gguf Python package, tests/fixtures/quant.json from tools/fixtures/quant.py) on
// random blocks and edge scales (0, f16 subnormals, the largest f16, negatives), gguf's quantizers byte for
// byte where it has them, and bitsandbytes' nf4 / fp4 / int8 quantize-then-dequantize against a float64
// reference of its algorithm. Plus the table entries and their WGSL variants.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { WGSL } from "../../src/gpu/shaders.generated.ts";
import {
  formatBytes,
  formatShapeError,
  formatVariant,
  isPacked,
  isTrainable,
  untrainableReason,
  WEIGHT_FORMATS,
} from "../../src/tensor/format.ts";
import { CODECS, dequantize, FP4_CODE, GGML_TYPE_FORMATS, NF4_CODE, quantize, rowBytes, type PackedFormat } from "../../src/tensor/quant.ts";

interface GgufCase { name: string; bytes: string; values: string }
interface Bnb4Case { name: string; values: string; bytes: string; dequantized: number[] }
interface Int8Case { name: string; shape: [number, number]; values: string; codes: number[]; absmax: number[]; dequantized: number[] }
const fixture = JSON.parse(readFileSync(new URL("../fixtures/quant.json", import.meta.url), "utf8")) as {
  ggml_types: Record<string, [number, number, number]>;
  gguf: Record<string, { dequantize: GgufCase[]; quantize?: GgufCase[] }>;
  bnb: { nf4: Bnb4Case[]; fp4: Bnb4Case[]; int8: Int8Case[] };
};

const bytesOf = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
const f32Of = (hex: string) => new Float32Array(bytesOf(hex).buffer);
const bitsOf = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
const hexOf = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** First index where two f32 arrays differ in bits, with both values, for a readable failure. */
function assertBitEqual(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = bitsOf(got);
  const w = bitsOf(want);
  const i = g.findIndex((v, k) => v !== w[k]);
  assert.ok(i < 0, `${what}: element ${i}: got ${got[i]} (0x${g[i]?.toString(16)}), want ${want[i]} (0x${w[i]?.toString(16)})`);
}

for (const [format, cases] of Object.entries(fixture.gguf)) {
  test(`${format}: dequantization equals gguf.quants bit for bit (random blocks, edge scales)`, () => {
    for (const c of cases.dequantize) {
      const bytes = bytesOf(c.bytes);
      assertBitEqual(dequantize(format as PackedFormat, bytes), f32Of(c.values), `${format} ${c.name}`);
      // The table's toFloat32 is the same decode.
      assertBitEqual(WEIGHT_FORMATS[format as PackedFormat].toFloat32(bytes.slice().buffer), f32Of(c.values), `${format} ${c.name} (table)`);
    }
  });
  if (cases.quantize) {
    test(`${format}: quantization gives gguf.quants' bytes (random, zero, constant, huge, tiny, ties)`, () => {
      for (const c of cases.quantize!) {
        const x = f32Of(c.values);
        assert.equal(hexOf(quantize(format as PackedFormat, x)), c.bytes, `${format} ${c.name}`);
      }
    });
  }
}

for (const format of ["nf4", "fp4"] as const) {
  test(`${format}: quantize-then-dequantize equals the float64 reference of bitsandbytes' algorithm`, () => {
    for (const c of fixture.bnb[format]) {
      const x = f32Of(c.values);
      const packed = quantize(format, x, 64);
      assert.equal(hexOf(packed), c.bytes, `${format} ${c.name}: absmax and codes (high nibble first)`);
      const y = dequantize(format, packed);
      // code value (f32) · absmax (f32) in float64, rounded once to f32: what the f32 product is.
      assertBitEqual(y, Float32Array.from(c.dequantized), `${format} ${c.name}`);
    }
  });
}

test("int8: LLM.int8 codes (round(127 w16 / absmax), row-wise absmax of the f16-cast weight) and values", () => {
  for (const c of fixture.bnb.int8) {
    const [rows, K] = c.shape;
    const packed = quantize("int8", f32Of(c.values), K);
    assert.equal(packed.length, (rows * K / 32) * 36);
    const view = new DataView(packed.buffer);
    const codes: number[] = [];
    for (let b = 0; b < (rows * K) / 32; b++) {
      // Each block carries its row's absmax.
      assert.equal(view.getFloat32(36 * b, true), Math.fround(c.absmax[Math.floor((b * 32) / K)]!), `${c.name}: block ${b} absmax`);
      for (let j = 0; j < 32; j++) codes.push(view.getInt8(36 * b + 4 + j));
    }
    assert.deepEqual(codes, c.codes, `${c.name}: codes`);
    const y = dequantize("int8", packed);
    // Two f32 roundings ((q·absmax)·fround(1/127)) against the exact q·absmax/127: within 2^-22 relative.
    y.forEach((v, i) => {
      const want = c.dequantized[i]!;
      assert.ok(Math.abs(v - want) <= Math.abs(want) * 2 ** -22, `${c.name}: element ${i}: ${v} vs ${want}`);
    });
  }
});

test("the K-quants' quantizers (not in gguf.quants) round-trip within their step, and every format's error is bounded", () => {
  const K = 512;
  const x = Float32Array.from({ length: 2 * K }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)) * 0.1);
  // Worst error relative to the block's absmax: about half a quantization step (q4_0 / q5_0: a whole step on
  // the side opposite the largest value, which reaches only 7/8 and 15/16 of it; the K-quants: plus their
  // 6-bit / 8-bit scale codes' rounding; nf4 / fp4: half the widest gap between code values).
  const bound: Record<PackedFormat, number> = {
    bf16: 2 ** -8, q8_0: 1 / 254 + 1e-3, q4_0: 1 / 8 + 1e-2, q4_1: 1 / 15 + 1e-2, q5_0: 1 / 16 + 1e-2, q5_1: 1 / 31 + 1e-2,
    q4_k: 0.09, q5_k: 0.045, q6_k: 0.03, nf4: 0.16, fp4: 0.17, int8: 1 / 254 + 1e-3,
  };
  for (const format of Object.keys(CODECS) as PackedFormat[]) {
    const y = dequantize(format, quantize(format, x, K));
    const bs = Math.max(CODECS[format].blockSize, format === "int8" ? K : 1);
    for (let b = 0; b < x.length / bs; b++) {
      let amax = 0;
      let err = 0;
      for (let i = b * bs; i < (b + 1) * bs; i++) {
        amax = Math.max(amax, Math.abs(x[i]!));
        err = Math.max(err, Math.abs(y[i]! - x[i]!));
      }
      assert.ok(err <= bound[format] * amax, `${format} block ${b}: error ${err} vs absmax ${amax}`);
    }
  }
});

test("GGUF type ids and block sizes are gguf's (GGMLQuantizationType, GGML_QUANT_SIZES)", () => {
  const got = Object.fromEntries(Object.entries(GGML_TYPE_FORMATS).map(([id, f]) => [f, +id]));
  assert.deepEqual(got, Object.fromEntries(Object.entries(fixture.ggml_types).map(([f, [id]]) => [f, id])));
  for (const [f, [, bs, bytes]] of Object.entries(fixture.ggml_types)) {
    const t = WEIGHT_FORMATS[f as keyof typeof WEIGHT_FORMATS];
    assert.deepEqual([t.blockSize, t.bytesPerBlock], [bs, bytes], f);
  }
});

test("the code tables are bitsandbytes': NF4 from -1 through 0 to 1, FP4's magnitudes and signs", () => {
  assert.equal(NF4_CODE.length, 16);
  assert.equal(NF4_CODE[0], -1);
  assert.equal(NF4_CODE[7], 0);
  assert.equal(NF4_CODE[15], 1);
  assert.ok(NF4_CODE.every((v, i) => i === 0 || v > NF4_CODE[i - 1]!));
  assert.deepEqual(FP4_CODE.slice(0, 8).map((v) => +v.toPrecision(6)), [0, 0.00520833, 0.666667, 1, 0.333333, 0.5, 0.166667, 0.25]);
  assert.deepEqual(FP4_CODE.slice(8), FP4_CODE.slice(0, 8).map((v) => -v));
});

test("packed formats in the table: frozen, sizes of whole blocks, rows of whole blocks, u32 storage", () => {
  const sizes: Record<PackedFormat, [number, number]> = {
    bf16: [1, 2], q8_0: [32, 34], q4_0: [32, 18], q4_1: [32, 20], q5_0: [32, 22], q5_1: [32, 24],
    q4_k: [256, 144], q5_k: [256, 176], q6_k: [256, 210], nf4: [64, 36], fp4: [64, 36], int8: [32, 36],
  };
  for (const [f, [bs, bytes]] of Object.entries(sizes) as [PackedFormat, [number, number]][]) {
    const t = WEIGHT_FORMATS[f];
    assert.deepEqual([t.blockSize, t.bytesPerBlock, t.wgsl, t.enable, t.feature, t.trainable], [bs, bytes, "u32", null, null, false], f);
    assert.ok(isPacked(f) && !isTrainable(f));
    assert.match(untrainableReason(f, "weight")!, new RegExp(`^an? ${f} weight cannot require grad; ${f} storage is for frozen weights$`));
    assert.equal(formatBytes(f, 3 * bs), 3 * bytes);
  }
  assert.ok(!isPacked("f32") && !isPacked("f16"));
  // Rows are contiguous runs of rowBytes: moving a row's bytes moves the row.
  const x = Float32Array.from({ length: 3 * 64 }, (_, i) => Math.sin(i));
  const packed = quantize("q4_0", x, 64);
  const r = rowBytes("q4_0", 64);
  assert.equal(r, 36);
  const swapped = new Uint8Array(packed.length);
  swapped.set(packed.subarray(2 * r, 3 * r), 0);
  swapped.set(packed.subarray(r, 2 * r), r);
  swapped.set(packed.subarray(0, r), 2 * r);
  const y = dequantize("q4_0", packed);
  assert.deepEqual(dequantize("q4_0", swapped), Float32Array.from([...y.subarray(128), ...y.subarray(64, 128), ...y.subarray(0, 64)]));
  assert.equal(untrainableReason("q4_0", "weight"), "a q4_0 weight cannot require grad; q4_0 storage is for frozen weights");
  assert.equal(untrainableReason("nf4", "weight"), "an nf4 weight cannot require grad; nf4 storage is for frozen weights");
  assert.equal(formatShapeError("q4_k", [4, 512]), null);
  assert.equal(formatShapeError("f16", [4, 7]), null);
  assert.match(formatShapeError("q4_k", [4, 96], "lm_head.weight")!, /^lm_head\.weight \[4, 96\]: a q4_k row of 96 elements is not whole blocks of 256/);
  assert.throws(() => quantize("nf4", new Float32Array(96), 96, "w"), /w \[1, 96\]: an nf4 row of 96 elements is not whole blocks of 64/);
});

test("gen-shaders: b of matmul takes every format (packed through load_b, with an f32 a), a the element formats only", () => {
  const element = ["f32", "f16"] as const;
  const names = Object.keys(WGSL).filter((n) => n === "matmul" || n.startsWith("matmul_"));
  // f32/f16 × f32/f16, and a packed b with an f32 a.
  assert.equal(names.length, element.length ** 2 + Object.keys(CODECS).length, names.join(", "));
  assert.ok(!WGSL[formatVariant("matmul", { a: "f16", b: "q4_0" })], "no f16 × packed variant");
  for (const f of Object.keys(CODECS) as PackedFormat[]) {
    const code = WGSL[formatVariant("matmul", { a: "f32", b: f })]!;
    assert.ok(code, f);
    assert.match(code, /^alias B_TYPE = u32;/m);
    assert.match(code, /^fn load_b\(base: u32, j: u32, len: u32\) -> vec4<f32> \{/m);
    assert.doesNotMatch(code, /\$w|\$load|b4\[/, `${f}: placeholders replaced, no vec4 view of b`);
    assert.ok(!code.startsWith("enable"), `${f} needs no extension`);
  }
});
