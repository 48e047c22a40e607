// The weight-format table (src/tensor/format.ts) and the per-format shader variants tools/gen-shaders.mjs
// writes from it. No device needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  formatBytes,
  formatVariant,
  isPacked,
  isTrainable,
  isWeightFormat,
  missingFeature,
  unsupportedReason,
  untrainableReason,
  WEIGHT_FORMATS,
} from "../../src/tensor/format.ts";
import { WGSL } from "../../src/gpu/shaders.generated.ts";

const noF16 = { features: { shader_f16: false, subgroups: false, timestamp_query: false } };
const withF16 = { features: { ...noF16.features, shader_f16: true } };

test("f32 and f16 are the table's first two entries, with their storage, size, trainability and feature", () => {
  assert.deepEqual(Object.keys(WEIGHT_FORMATS).slice(0, 2), ["f32", "f16"]);
  const { fromFloat32: _f, toFloat32: _t, ...f32 } = WEIGHT_FORMATS.f32;
  const { fromFloat32: _g, toFloat32: _u, ...f16 } = WEIGHT_FORMATS.f16;
  assert.deepEqual(f32, { blockSize: 1, bytesPerBlock: 4, wgsl: "f32", enable: null, feature: null, trainable: true });
  assert.deepEqual(f16, { blockSize: 1, bytesPerBlock: 2, wgsl: "f16", enable: "f16", feature: "shader_f16", trainable: false });
  // Host conversions (ggml's from_float / to_float): f16 rounds to nearest even, f32 is the identity.
  const xs = Float32Array.from([1, -2.5, 1 / 3, 65504]);
  assert.deepEqual([...WEIGHT_FORMATS.f32.toFloat32(WEIGHT_FORMATS.f32.fromFloat32(xs).buffer as ArrayBuffer)], [...xs]);
  const half = WEIGHT_FORMATS.f16.fromFloat32(xs);
  assert.ok(half instanceof Uint16Array && half.length === 4);
  assert.deepEqual([...WEIGHT_FORMATS.f16.toFloat32(half.buffer as ArrayBuffer)], [1, -2.5, 0.333251953125, 65504]);
  assert.equal(formatBytes("f32", 7), 28);
  assert.equal(formatBytes("f16", 7), 14);
  assert.ok(isWeightFormat("f16") && isWeightFormat("bf16") && isWeightFormat("q4_k") && !isWeightFormat("i32") && !isWeightFormat("f8"));
});

test("only f32 may be trained; the check for f16 says why", () => {
  assert.equal(isTrainable("f32"), true);
  assert.equal(isTrainable("f16"), false);
  assert.equal(isTrainable("i32"), false);
  assert.equal(untrainableReason("f32", "weight"), null);
  assert.equal(untrainableReason("f16", "weight"), "an f16 weight cannot require grad; f16 storage is for frozen weights");
});

test("f16 needs shader-f16, f32 nothing", () => {
  assert.equal(missingFeature("f32", noF16), null);
  assert.equal(missingFeature("f16", withF16), null);
  assert.equal(missingFeature("f16", noF16), "shader-f16");
  assert.equal(unsupportedReason("f16", noF16), "an f16 operand needs the adapter's shader-f16 feature, which this device does not have");
  assert.equal(unsupportedReason("f16", withF16), null);
});

test("variant names: the family itself for f32, else a suffix per other format naming its operands", () => {
  assert.equal(formatVariant("matmul", { a: "f32", b: "f32" }), "matmul");
  assert.equal(formatVariant("matmul", { a: "f16", b: "f32" }), "matmul_f16a");
  assert.equal(formatVariant("matmul", { a: "f32", b: "f16" }), "matmul_f16b");
  assert.equal(formatVariant("matmul", { a: "f16", b: "f16" }), "matmul_f16ab");
});

test("the shader build writes one matmul variant per combination of element formats (packed ones: tests/tensor/quant.test.ts), aliases set and extension enabled", () => {
  const all = Object.keys(WEIGHT_FORMATS) as (keyof typeof WEIGHT_FORMATS)[];
  // Element formats are read as WGSL types; packed ones through their load function, as the weight operand only.
  const formats = all.filter((f) => !isPacked(f));
  const packed = all.length - formats.length;
  const names = Object.keys(WGSL).filter((n) => n === "matmul" || n.startsWith("matmul_"));
  assert.equal(names.length, formats.length ** 2 + packed, `variants: ${names.join(", ")}`);
  for (const a of formats) {
    for (const b of formats) {
      const code = WGSL[formatVariant("matmul", { a, b })];
      assert.ok(code, `matmul variant for a ${a}, b ${b}`);
      assert.match(code, new RegExp(`^alias A_TYPE = ${WEIGHT_FORMATS[a].wgsl};`, "m"));
      assert.match(code, new RegExp(`^alias B_TYPE = ${WEIGHT_FORMATS[b].wgsl};`, "m"));
      assert.equal(code.startsWith("enable f16;\n"), a === "f16" || b === "f16", `enable f16 for a ${a}, b ${b}`);
    }
  }
  // Shaders without per-format operands get no variants.
  assert.deepEqual(Object.keys(WGSL).filter((n) => n.startsWith("lora_") || n.startsWith("tensor_")), []);
});
