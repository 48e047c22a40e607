// Weight formats: how a tensor's elements are stored, one table that Tensor, the kernels, the loaders and the
// optimizer read (like ggml's type traits). A kernel reads a per-format operand through a WGSL alias
// (`alias A_TYPE = f32; // format of a`): tools/gen-shaders.mjs writes one variant of the shader per
// combination of formats from this table, and kernels pick theirs by formatVariant(). f32 and f16 are the
// first entries; block formats (Q4_0: 32 elements in 18 bytes) come with the quantized bases.
// Imports nothing that touches the device: tools/gen-shaders.mjs loads this file before
// src/gpu/shaders.generated.ts exists.
import type { DeviceInfo } from "../gpu/device.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";

export interface FormatTraits {
  /** Elements per block: 1 for element formats; a block format stores blockSize elements together. */
  blockSize: number;
  /** Bytes per block. */
  bytesPerBlock: number;
  /**
   * The WGSL type of the storage array's elements, which the shader's per-format alias becomes. Kernels
   * load an element widened to f32 (`f32(a[i])`, `vec4<f32>(a4[i])`: no-ops for f32) and compute in f32.
   */
  wgsl: string;
  /** The WGSL extension its variants enable (`enable f16;`), or null. */
  enable: string | null;
  /** The adapter feature its variants need (a key of DeviceInfo.features), or null. */
  feature: keyof DeviceInfo["features"] | null;
  /** Whether a tensor stored so may require grad and be updated by an optimizer; the others are frozen weights. */
  trainable: boolean;
  /** The stored words of f32 values (to upload), and f32 values of stored bytes (read back): ggml's from_float / to_float. */
  fromFloat32(values: Float32Array): Float32Array | Uint16Array;
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
} as const satisfies Record<string, FormatTraits>;

export type WeightFormat = keyof typeof WEIGHT_FORMATS;

/** The format every shader is written in, and the one of computed values (activations, gradients, outputs). */
export const BASE_FORMAT: WeightFormat = "f32";

export function isWeightFormat(dtype: string): dtype is WeightFormat {
  return Object.hasOwn(WEIGHT_FORMATS, dtype);
}

/** Bytes that n elements take in `format` (whole blocks). */
export function formatBytes(format: WeightFormat, n: number): number {
  const t: FormatTraits = WEIGHT_FORMATS[format];
  return Math.ceil(n / t.blockSize) * t.bytesPerBlock;
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
  return WEIGHT_FORMATS[format].trainable ? null : `an ${format} ${what} cannot require grad; ${format} storage is for frozen weights`;
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
  return feature ? `an ${format} ${what} needs the adapter's ${feature} feature, which this device does not have` : null;
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
