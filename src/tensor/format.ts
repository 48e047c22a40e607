// Weight formats: how a tensor's elements are stored, one table that Tensor, the kernels, the loaders and the
// optimizer read (like ggml's type traits). A kernel reads a per-format operand through a WGSL alias
// (`alias A_TYPE = f32; // format of a`): tools/gen-shaders.mjs writes one variant of the shader per
// combination of formats from this table, and kernels pick theirs by formatVariant(). f32 and f16 are the
// first entries; then the packed formats of quant.ts, all frozen (a quantized base: LoRA on top trains in f32):
// bf16, GGUF's q8_0, q4_0, q4_1, q5_0, q5_1 (blocks of 32), q4_k, q5_k, q6_k (super-blocks of 256),
// bitsandbytes' nf4 and fp4 (blocks of 64 with an f32 absmax), their double-quantized nf4_dq and fp4_dq (the
// absmax an 8-bit code, in groups of 256 blocks behind an f32 absmax2 and offset) and LLM.int8's int8 (row-wise
// absmax). A packed operand's storage is its bytes as array<u32>; a shader reads it through its load function
// (`alias B_TYPE = f32; // format of b; packed formats through load_b`), which gen-shaders replaces by the
// format's `load` WGSL: the kernel dequantizes as it loads, never a full-precision copy of the weight.
// Imports nothing that touches the device: tools/gen-shaders.mjs loads this file before
// src/gpu/shaders.generated.ts exists.
import type { DeviceInfo } from "../gpu/device.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";
import { article, blockShapeError, dequantize, LAYOUTS, PACKED_WGSL, quantize, type PackedFormat } from "./quant.ts";

export interface FormatTraits {
  /** Elements per block: 1 for element formats; a block format stores blockSize elements together. */
  blockSize: number;
  /** Bytes per block (grouped formats: not counting the groups' headers). */
  bytesPerBlock: number;
  /**
   * Formats whose blocks come in groups, each behind a header of its own (nf4_dq, fp4_dq: 256 blocks after 8
   * bytes, the last group maybe partial): blocks per group and the header's bytes. Absent for the others.
   */
  group?: { blocks: number; headerBytes: number };
  /**
   * The WGSL type of the storage array's elements, which the shader's per-format alias becomes. Kernels
   * load an element widened to f32 (`f32(a[i])`, `vec4<f32>(a4[i])`: no-ops for f32) and compute in f32.
   * Packed formats: u32 (the bytes as words), read through `load`.
   */
  wgsl: string;
  /**
   * Packed formats: the WGSL that replaces a shader's `fn $load(base: u32, j: u32, len: u32) -> vec4<f32>`
   * (elements j..j+3 of the stored row at element base, dequantized) for the operand array `$w` (quant.ts).
   * Absent for element formats (f32, f16), which the alias alone serves.
   */
  load?: string;
  /** The WGSL extension its variants enable (`enable f16;`), or null. */
  enable: string | null;
  /** The adapter feature its variants need (a key of DeviceInfo.features), or null. */
  feature: keyof DeviceInfo["features"] | null;
  /** Whether a tensor stored so may require grad and be updated by an optimizer; the others are frozen weights. */
  trainable: boolean;
  /**
   * The stored words of f32 values (to upload), and f32 values of stored bytes (read back): ggml's from_float /
   * to_float. `rowLength`: the last dim, for packed formats (rows are whole blocks; int8 scales each row).
   */
  fromFloat32(values: Float32Array, rowLength?: number): Float32Array | Uint16Array | Uint8Array;
  toFloat32(bytes: ArrayBuffer): Float32Array;
}

export const WEIGHT_FORMATS = {
  f32: {
    blockSize: 1, bytesPerBlock: 4, wgsl: "f32", enable: null, feature: null, trainable: true,
    fromFloat32: (values) => values,
    toFloat32: (bytes) => new Float32Array(bytes),
  },
  /** Half the memory of f32 for frozen weights (LoRA's base layer, dtype "float16"); rounded to nearest even. */
  f16: {
    blockSize: 1, bytesPerBlock: 2, wgsl: "f16", enable: "f16", feature: "shader_f16", trainable: false,
    fromFloat32: f32ToF16,
    toFloat32: (bytes) => f16ToF32(new Uint16Array(bytes)),
  },
  /** bfloat16 (torch.bfloat16): the top half of an f32, rounded to nearest even. */
  bf16: packed("bf16"),
  /** GGUF Q8_0: 32 int8 and an f16 scale (34 bytes). */
  q8_0: packed("q8_0"),
  /** GGUF Q4_0: 32 4-bit values and an f16 scale (18 bytes). */
  q4_0: packed("q4_0"),
  /** GGUF Q4_1: 32 4-bit values, an f16 scale and min (20 bytes). */
  q4_1: packed("q4_1"),
  /** GGUF Q5_0: 32 5-bit values and an f16 scale (22 bytes). */
  q5_0: packed("q5_0"),
  /** GGUF Q5_1: 32 5-bit values, an f16 scale and min (24 bytes). */
  q5_1: packed("q5_1"),
  /** GGUF Q4_K: 256 4-bit values in 8 sub-blocks with 6-bit scales and mins (144 bytes, 4.5 bits each). */
  q4_k: packed("q4_k"),
  /** GGUF Q5_K: as Q4_K with a 5th bit (176 bytes). */
  q5_k: packed("q5_k"),
  /** GGUF Q6_K: 256 6-bit values in 16 sub-blocks with int8 scales (210 bytes). */
  q6_k: packed("q6_k"),
  /** bitsandbytes NF4 (bnb_4bit_quant_type "nf4", blocksize 64): 4-bit NormalFloat codes and an f32 absmax (36 bytes). */
  nf4: packed("nf4"),
  /** bitsandbytes FP4 (bnb_4bit_quant_type "fp4", blocksize 64): 4-bit floats and an f32 absmax (36 bytes). */
  fp4: packed("fp4"),
  /**
   * bitsandbytes NF4 with double quantization (bnb_4bit_use_double_quant, compress_statistics): per 64-block an
   * 8-bit code of its absmax in the dynamic map and 32 code bytes (33 bytes), per 256 blocks an f32 absmax2 and the
   * tensor's f32 offset (8 bytes): 8456 bytes a group of 16384 elements, 4.129 bits a weight (quant.ts's header).
   */
  nf4_dq: packed("nf4_dq"),
  /** bitsandbytes FP4 with double quantization: fp4's codes in nf4_dq's layout. */
  fp4_dq: packed("fp4_dq"),
  /** LLM.int8 weights (load_in_8bit): int8 against the row's absmax, blocks of 32 with the row's f32 absmax (36 bytes). */
  int8: packed("int8"),
} as const satisfies Record<string, FormatTraits>;

/** The table entry of a packed format of quant.ts: frozen, no feature, its bytes as u32 words. */
function packed(format: PackedFormat) {
  const l = LAYOUTS[format];
  return {
    blockSize: l.blockSize, bytesPerBlock: l.bytesPerBlock, ...(l.group ? { group: l.group } : {}), wgsl: "u32", load: PACKED_WGSL[format],
    enable: null, feature: null, trainable: false,
    fromFloat32: (values: Float32Array, rowLength?: number) => quantize(format, values, rowLength ?? values.length),
    toFloat32: (bytes: ArrayBuffer) => dequantize(format, bytes),
  } as const;
}

export type WeightFormat = keyof typeof WEIGHT_FORMATS;

/** The format every shader is written in, and the one of computed values (activations, gradients, outputs). */
export const BASE_FORMAT: WeightFormat = "f32";

export function isWeightFormat(dtype: string): dtype is WeightFormat {
  return Object.hasOwn(WEIGHT_FORMATS, dtype);
}

/** Whether `format` is stored packed (read through a shader's load function), not as a WGSL element type. */
export function isPacked(format: WeightFormat): boolean {
  const t: FormatTraits = WEIGHT_FORMATS[format];
  return t.load !== undefined;
}

/**
 * Why a tensor of `shape` cannot be stored in `format`, or null: a packed format's rows (the last dim) must be
 * whole blocks ("weight [3, 40]: a q4_0 row of 40 elements is not whole blocks of 32; …").
 */
export function formatShapeError(format: WeightFormat, shape: readonly number[], what = "tensor"): string | null {
  return WEIGHT_FORMATS[format].blockSize > 1 ? blockShapeError(format as PackedFormat, shape, what) : null;
}

/**
 * Bytes that n elements take in `format` (whole blocks; grouped formats plus a header per group, the last maybe
 * partial: nf4_dq's n elements take 33·ceil(n/64) + 8·ceil(n/16384)).
 */
export function formatBytes(format: WeightFormat, n: number): number {
  const t: FormatTraits = WEIGHT_FORMATS[format];
  const blocks = Math.ceil(n / t.blockSize);
  return blocks * t.bytesPerBlock + (t.group ? Math.ceil(blocks / t.group.blocks) * t.group.headerBytes : 0);
}

/** Whether a tensor of this dtype may require grad (f32; not f16, which is for frozen weights, nor i32 ids). */
export function isTrainable(dtype: string): boolean {
  return isWeightFormat(dtype) && WEIGHT_FORMATS[dtype].trainable;
}

/**
 * Why a tensor of a weight format may not require grad, or null when it may:
 * "an f16 weight cannot require grad; f16 storage is for frozen weights" (`what` = "weight").
 */
export function untrainableReason(format: WeightFormat, what: string): string | null {
  return WEIGHT_FORMATS[format].trainable ? null : `${article(format)} ${format} ${what} cannot require grad; ${format} storage is for frozen weights`;
}

/** The adapter feature, in WebGPU's spelling ("shader-f16"), that `format` needs and the device lacks; null if none. */
export function missingFeature(format: WeightFormat, info: Pick<DeviceInfo, "features">): string | null {
  const f: FormatTraits["feature"] = WEIGHT_FORMATS[format].feature;
  return f && !info.features[f] ? f.replace(/_/g, "-") : null;
}

/**
 * Why a kernel cannot read `format` on this device, or null when it can:
 * "an f16 operand needs the adapter's shader-f16 feature, which this device does not have".
 */
export function unsupportedReason(format: WeightFormat, info: Pick<DeviceInfo, "features">, what = "operand"): string | null {
  const feature = missingFeature(format, info);
  return feature ? `${article(format)} ${format} ${what} needs the adapter's ${feature} feature, which this device does not have` : null;
}

/**
 * The name of a shader's variant for its per-format operands' formats (operand name → format), as
 * tools/gen-shaders.mjs registers it: the family itself when all are f32, else `_<format><operands>` per
 * other format in table order: matmul with a f16 → "matmul_f16a", a and b f16 → "matmul_f16ab".
 */
export function formatVariant(family: string, operands: Readonly<Record<string, WeightFormat>>): string {
  let name = family;
  for (const format of Object.keys(WEIGHT_FORMATS) as WeightFormat[]) {
    if (format === BASE_FORMAT) continue;
    const names = Object.keys(operands).filter((o) => operands[o] === format);
    if (names.length) name += `_${format}${names.join("")}`;
  }
  return name;
}
