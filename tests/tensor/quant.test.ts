// The packed weight formats' host code (src/tensor/quant.ts), no device: dequantization bit for bit against
// llama.cpp's reference (the gguf Python package, tests/fixtures/quant.json from tools/fixtures/quant.py) on
// random blocks and edge scales (0, f16 subnormals, the largest f16, negatives), gguf's quantizers byte for
// byte where it has them, and bitsandbytes' nf4 / fp4 / int8 quantize-then-dequantize against a float64
// reference of its algorithm, and their double-quantized nf4_dq / fp4_dq (bitsandbytes' compress_statistics: nested
// 8-bit absmax codes in groups of 256 blocks) against a float64 reference of bitsandbytes' nested quantization. Plus
// the table entries and their WGSL variants.
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
  type FormatTraits,
} from "../../src/tensor/format.ts";
import {
  dequantize,
  DYNAMIC_MAP,
  FP4_CODE,
  GGML_TYPE_FORMATS,
  LAYOUTS,
  NF4_CODE,
  quantize,
  rowBytes,
  type PackedFormat,
} from "../../src/tensor/quant.ts";

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

/**
 * bitsandbytes' double quantization as a float64 reference (functional.quantize_4bit with compress_statistics=True,
 * then dequantize_4bit), from the plain 4-bit bytes (their codes and absmax: checked above): a = the blocks' absmax
 * vector, offset = mean(a) rounded to f32; per 256 of a: absmax2 = max|a − offset| and q = the argmin over all 256
 * map values of |v − map[k]| (v = (a − offset)·(1/absmax2), f32, clamped to [−1, 1]; the first of ties), as the
 * CPU kernel quantize_blockwise scans; absmax' = map[q]·absmax2 + offset in f32 (bitsandbytes' float32 tensors);
 * y = code value · absmax' in float64, rounded once.
 */
function nestedReference(format: "nf4" | "fp4", x: Float32Array, K: number): { y: Float32Array; absmax: number[]; q: number[] } {
  const fr = Math.fround;
  const plain = new DataView(quantize(format, x, K).buffer);
  const nb = x.length / 64;
  const a = Array.from({ length: nb }, (_, i) => plain.getFloat32(36 * i, true));
  const offset = fr(a.reduce((s, v) => s + v, 0) / nb);
  const absmax: number[] = [];
  const q: number[] = [];
  for (let s = 0; s < nb; s += 256) {
    const d = a.slice(s, s + 256).map((v) => fr(v - offset));
    const absmax2 = Math.max(...d.map(Math.abs));
    for (const v of d) {
      let best = DYNAMIC_MAP.indexOf(0);
      if (absmax2 > 0) {
        const t = Math.min(1, Math.max(-1, fr(v * fr(1 / absmax2))));
        const dist = DYNAMIC_MAP.map((m) => Math.abs(fr(t - m)));
        best = dist.indexOf(Math.min(...dist));
      }
      q.push(best);
      absmax.push(fr(fr(DYNAMIC_MAP[best]! * absmax2) + offset));
    }
  }
  const table = format === "nf4" ? NF4_CODE : FP4_CODE;
  const y = new Float32Array(x.length);
  for (let i = 0; i < nb; i++) {
    for (let j = 0; j < 32; j++) {
      const byte = plain.getUint8(36 * i + 4 + j);
      y[64 * i + 2 * j] = table[byte >> 4]! * absmax[i]!;
      y[64 * i + 2 * j + 1] = table[byte & 15]! * absmax[i]!;
    }
  }
  return { y, absmax, q };
}

/** Test tensors [rows, K] for the nested formats: groups full, partial and several; edge absmax vectors. */
function nestedCases(): { name: string; x: Float32Array; K: number }[] {
  const wave = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + 0.2) * f(i));
  return [
    // 325 blocks: a full group of 256 and a partial one of 69 (rows of 5 blocks straddle the group boundary).
    { name: "[65, 320]: 2 groups, the last partial", x: wave(65 * 320, (i) => 0.05 + ((i >> 6) % 13) * 0.01), K: 320 },
    // 512 blocks: exactly 2 full groups; absmax over 4 decades (the dynamic map's small values).
    { name: "[256, 128]: 2 full groups, absmax over 4 decades", x: wave(256 * 128, (i) => 10 ** -((i >> 6) % 5)), K: 128 },
    // One block: absmax − offset = 0, absmax2 = 0, absmax' = offset = absmax.
    { name: "[1, 64]: one block", x: wave(64, () => 0.3), K: 64 },
    // Every block the same absmax (a constant row repeated): absmax2 = 0 in every group.
    { name: "[300, 64]: equal absmax", x: Float32Array.from({ length: 300 * 64 }, (_, i) => (i % 64 === 5 ? -2 : (i % 7) * 0.1)), K: 64 },
    { name: "[3, 128]: zeros", x: new Float32Array(3 * 128), K: 128 },
    // One outlier block: its (absmax − offset) is absmax2, the others crowd near −1 of the map.
    { name: "[40, 64]: an outlier block", x: wave(40 * 64, (i) => (i >> 6 === 17 ? 1e3 : 0.02 + (i >> 6) * 1e-3)), K: 64 },
  ];
}

for (const format of ["nf4", "fp4"] as const) {
  const dq = `${format}_dq` as const;
  test(`${dq}: dequantization equals the float64 reference of bitsandbytes' double quantization bit for bit`, () => {
    for (const c of nestedCases()) {
      const bytes = quantize(dq, c.x, c.K);
      const ref = nestedReference(format, c.x, c.K);
      assertBitEqual(dequantize(dq, bytes), ref.y, `${dq} ${c.name}`);
      assertBitEqual(WEIGHT_FORMATS[dq].toFloat32(bytes.slice().buffer), ref.y, `${dq} ${c.name} (table)`);
      // A read-back buffer padded to 4 bytes decodes the same elements.
      const padded = new Uint8Array((bytes.length + 3) & ~3);
      padded.set(bytes);
      assertBitEqual(dequantize(dq, padded), ref.y, `${dq} ${c.name} (padded)`);
      // The layout: per group absmax2 and offset, then per block q and the plain format's 32 code bytes.
      const nb = c.x.length / 64;
      assert.equal(bytes.length, 33 * nb + 8 * Math.ceil(nb / 256), `${dq} ${c.name}: bytes`);
      assert.equal(bytes.length, formatBytes(dq, c.x.length));
      const plain = quantize(format, c.x, c.K);
      const view = new DataView(bytes.buffer);
      for (let i = 0; i < nb; i++) {
        const o = 8456 * Math.floor(i / 256) + 8 + 33 * (i % 256);
        assert.equal(bytes[o], ref.q[i], `${dq} ${c.name}: block ${i}'s nested code`);
        assert.equal(hexOf(bytes.subarray(o + 1, o + 33)), hexOf(plain.subarray(36 * i + 4, 36 * i + 36)), `${dq} ${c.name}: block ${i}'s codes`);
      }
      const offsets = Array.from({ length: Math.ceil(nb / 256) }, (_, g) => view.getFloat32(8456 * g + 4, true));
      assert.ok(offsets.every((v) => v === offsets[0]), `${dq} ${c.name}: one offset (the tensor's mean absmax)`);
    }
    // One block: its absmax is kept exactly (absmax' = offset = absmax), so the values are plain nf4's / fp4's.
    const one = nestedCases()[2]!;
    assertBitEqual(dequantize(dq, quantize(dq, one.x, 64)), dequantize(format, quantize(format, one.x, 64)), `${dq}: one block`);
  });
}

test("nf4_dq / fp4_dq sizes: 33 bytes a block and 8 a group of 256 (4.129 bits a weight); rows are not byte runs", () => {
  // A full group: (8 + 256·33) / 16384 bytes an element, 8456 / 9216 of nf4's.
  assert.equal(formatBytes("nf4_dq", 16384), 8 + 256 * 33);
  assert.equal(formatBytes("nf4_dq", 16384) / 16384, 8456 / 16384);
  assert.equal((8 * formatBytes("nf4_dq", 16384)) / 16384, 4.12890625);
  assert.equal(formatBytes("nf4", 16384), 9216);
  // [65, 320]: 325 blocks, a full group and one of 69.
  assert.equal(formatBytes("fp4_dq", 65 * 320), 8456 + 8 + 69 * 33);
  assert.equal(formatBytes("nf4_dq", 64), 41);
  assert.equal(formatBytes("nf4_dq", 0), 0);
  // Rows of whole 64-blocks, as nf4; groups run across rows, so a row's bytes are not a slice of the tensor's.
  assert.equal(formatShapeError("nf4_dq", [65, 320]), null);
  assert.match(formatShapeError("nf4_dq", [2, 96], "w")!, /^w \[2, 96\]: an nf4_dq row of 96 elements is not whole blocks of 64/);
  assert.throws(() => rowBytes("nf4_dq", 128), /rowBytes: an nf4_dq tensor's rows are not runs of bytes of their own .*quantize each row block separately/);
  assert.throws(() => dequantize("fp4_dq", new Uint8Array(40), 64), /dequantize: 64 fp4_dq elements need 41 bytes, got 40/);
  assert.equal(untrainableReason("fp4_dq", "weight"), "an fp4_dq weight cannot require grad; fp4_dq storage is for frozen weights");
});

test("the nested formats' WGSL tables are DYNAMIC_MAP and the 4-bit code values, bit for bit", () => {
  const f32 = (list: string) => Float32Array.from(list.split(", "), Number);
  for (const [f, code] of [["nf4_dq", NF4_CODE], ["fp4_dq", FP4_CODE]] as const) {
    const wgsl = WGSL[formatVariant("matmul", { a: "f32", b: f })]!;
    const map = wgsl.match(/^var<private> b_dmap: array<f32, 256> = array<f32, 256>\((.*)\);$/m);
    assert.ok(map, `${f}: the dynamic map table`);
    assertBitEqual(f32(map[1]!), Float32Array.from(DYNAMIC_MAP), `${f} map`);
    const table = wgsl.match(/^var<private> b_code: array<f32, 16> = array<f32, 16>\((.*)\);$/m);
    assertBitEqual(f32(table![1]!), Float32Array.from(code), `${f} codes`);
  }
  // The map as bitsandbytes builds it (tests/models/quantization.test.ts checks all 256 against its float32 values).
  assert.deepEqual([DYNAMIC_MAP.length, DYNAMIC_MAP[0], DYNAMIC_MAP[127], DYNAMIC_MAP[255]], [256, -0.992968738079071, 0, 1]);
});

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
    // Plus the nested absmax's 8-bit rounding (half a step of the dynamic map times absmax2, against absmax).
    nf4_dq: 0.17, fp4_dq: 0.18,
  };
  for (const format of Object.keys(LAYOUTS) as PackedFormat[]) {
    const y = dequantize(format, quantize(format, x, K));
    const bs = Math.max(LAYOUTS[format].blockSize, format === "int8" ? K : 1);
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
    nf4_dq: [64, 33], fp4_dq: [64, 33],
  };
  for (const [f, [bs, bytes]] of Object.entries(sizes) as [PackedFormat, [number, number]][]) {
    const t: FormatTraits = WEIGHT_FORMATS[f];
    assert.deepEqual([t.blockSize, t.bytesPerBlock, t.wgsl, t.enable, t.feature, t.trainable], [bs, bytes, "u32", null, null, false], f);
    assert.ok(isPacked(f) && !isTrainable(f));
    assert.match(untrainableReason(f, "weight")!, new RegExp(`^an? ${f} weight cannot require grad; ${f} storage is for frozen weights$`));
    // The nested formats: 3 blocks in one group, behind its 8-byte header.
    assert.deepEqual(t.group, f.endsWith("_dq") ? { blocks: 256, headerBytes: 8 } : undefined, f);
    assert.equal(formatBytes(f, 3 * bs), 3 * bytes + (t.group ? 8 : 0), f);
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
  assert.equal(names.length, element.length ** 2 + Object.keys(LAYOUTS).length, names.join(", "));
  assert.ok(!WGSL[formatVariant("matmul", { a: "f16", b: "q4_0" })], "no f16 × packed variant");
  for (const f of Object.keys(LAYOUTS) as PackedFormat[]) {
    const code = WGSL[formatVariant("matmul", { a: "f32", b: f })]!;
    assert.ok(code, f);
    assert.match(code, /^alias B_TYPE = u32;/m);
    assert.match(code, /^fn load_b\(base: u32, j: u32, len: u32\) -> vec4<f32> \{/m);
    assert.doesNotMatch(code, /\$w|\$load|b4\[/, `${f}: placeholders replaced, no vec4 view of b`);
    assert.ok(!code.startsWith("enable"), `${f} needs no extension`);
  }
});
