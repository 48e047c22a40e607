// Quantize on load, as transformers + bitsandbytes do it: from_pretrained(dir, { quantization_config }) with
// transformers' BitsAndBytesConfig keys. parseQuantizationConfig() validates the mapping (unknown keys, wrong
// types, both 4 and 8 bit, settings webtune cannot honour: clear errors naming the key); quantizedFormat() says
// which weight becomes which packed format; quantizeWeight() makes the frozen tensor from one weight's f32
// values as the loader streams it in (one tensor at a time: the model never exists in f32 as a whole).
//
// Which weights: bitsandbytes replaces nn.Linear modules (transformers' replace_with_bnb_linear), so the decoder's
// linear weights (role "linear" in architecture.ts's description: q/k/v/o, gate/up/down, fused qkv/gate_up) are
// quantized; embeddings, norms and biases stay in their float format, and so does the LM head (transformers'
// llm_int8_skip_modules default, get_keys_to_not_convert: the output embedding, lm_head). llm_int8_skip_modules
// replaces that default, as in transformers, matched by should_convert_module's rule (the pattern is a regex
// prefix of the module name, or its suffix); the LM head stays float here in any case (it is not a linear of the
// description; the fused cross-entropy would read a packed one, but bitsandbytes users never ask for it).
//
// Formats (src/tensor/quant.ts, blocks along each row; the row length must be whole blocks, which every real
// model's hidden and intermediate sizes are):
//   load_in_4bit, bnb_4bit_quant_type "nf4" / "fp4" (transformers' default "fp4"; TRL's ModelConfig "nf4")
//                 → "nf4" / "fp4": bitsandbytes' quantize_4bit, blocksize 64, f32 absmax per block.
//   load_in_8bit  → "int8": LLM.int8's int8_vectorwise_quant of the f16-cast weight (row absmax, SCB).
//                 Weight-only: activations stay f32 and the product uses the dequantized weight, which is what
//                 bitsandbytes' outlier path (llm_int8_threshold) does for the outlier columns; webtune does it for
//                 all of them, so llm_int8_threshold changes nothing here and is accepted as a number.
//   bnb_4bit_use_double_quant (TRL: use_bnb_nested_quant): bitsandbytes' compress_statistics. What we rely on
//                 (bitsandbytes functional.quantize_4bit with compress_statistics=True, and dequantize_4bit): the
//                 4-bit codes are computed with the block's own f32 absmax first; then the tensor's absmax vector
//                 (one per 64-block, in row-major block order) is stored as offset = absmax.mean() plus
//                 quantize_blockwise(absmax − offset, blocksize 256) with the signed dynamic map
//                 (create_dynamic_map(signed=True): 256 float32 values), i.e. per 256 absmax values an f32
//                 absmax2 = max|a − offset| and an 8-bit index, the nearest map value to (a − offset)·(1/absmax2)
//                 clamped to [−1, 1] (the "default" CPU kernel's argmin; ties to the lower index); dequantization
//                 uses absmax' = code[q]·absmax2 + offset (float32 ops). webtune does exactly that on the host and
//                 stores absmax' in each block's absmax word: the values the kernels compute with are
//                 bitsandbytes' (the offset's mean is summed in float64 and rounded to f32: torch's float32 mean
//                 may differ from it by an ulp), but the memory is that of plain nf4 (4.5 bits per weight, not
//                 bitsandbytes' ≈ 4.127). The honest, simple option: no packed format for a 0.4-bit saving.
//   bnb_4bit_compute_dtype, bnb_4bit_quant_storage: accepted (TRL passes its dtype to both); webtune computes in f32
//                 and stores the codes as bytes whatever they say, so neither changes a value.
import { formatShapeError } from "../tensor/format.ts";
import { quantize } from "../tensor/quant.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { WeightSpec } from "./architecture.ts";

/** transformers' BitsAndBytesConfig (its to_dict() keys; torch dtypes as strings). */
export interface BitsAndBytesConfig {
  quant_method?: "bitsandbytes";
  load_in_4bit?: boolean;
  load_in_8bit?: boolean;
  /** "nf4" or "fp4" (transformers' default "fp4"). */
  bnb_4bit_quant_type?: "nf4" | "fp4";
  /** Double quantization of the 4-bit absmax statistics (default false). */
  bnb_4bit_use_double_quant?: boolean;
  /** Accepted: compute is always f32 here. */
  bnb_4bit_compute_dtype?: string | null;
  /** Accepted: the codes are stored as bytes. */
  bnb_4bit_quant_storage?: string | null;
  /** Modules left unquantized (default: the LM head); replaces the default, as in transformers. */
  llm_int8_skip_modules?: string[] | null;
  /** Accepted (a number): webtune's int8 products never quantize activations. */
  llm_int8_threshold?: number;
  /** Must be false: fp16 weights kept for training are not quantization. */
  llm_int8_has_fp16_weight?: boolean;
  /** Must be false: there is no CPU offload. */
  llm_int8_enable_fp32_cpu_offload?: boolean;
}

export type QuantFormat = "nf4" | "fp4" | "int8";

/** A validated quantization_config. */
export interface Quantization {
  format: QuantFormat;
  double_quant: boolean;
  /** Module-name patterns left unquantized (should_convert_module's rule). */
  skip_modules: string[];
  /** The config as transformers' BitsAndBytesConfig.to_dict() writes it (model.config.quantization_config). */
  config: Record<string, unknown>;
}

const FLOAT_DTYPES = ["float32", "float16", "bfloat16", "float64", "auto"];
const STORAGE_DTYPES = ["float16", "float32", "int8", "uint8", "float64", "bfloat16"];

const KEYS = [
  "quant_method", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
  "bnb_4bit_quant_storage", "llm_int8_skip_modules", "llm_int8_threshold", "llm_int8_has_fp16_weight", "llm_int8_enable_fp32_cpu_offload",
];

/**
 * Validates a from_pretrained quantization_config (BitsAndBytesConfig keys), or null when there is none or it
 * quantizes nothing (both load_in_4bit and load_in_8bit false, as transformers then loads the float model).
 */
export function parseQuantizationConfig(raw: unknown): Quantization | null {
  if (raw === undefined || raw === null) return null;
  const where = "from_pretrained: quantization_config";
  if (typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${where} must be a mapping of BitsAndBytesConfig keys (e.g. { load_in_4bit: true, bnb_4bit_quant_type: "nf4" })`);
  const c = raw as Record<string, unknown>;
  const unknown = Object.keys(c).filter((k) => !KEYS.includes(k) && c[k] !== undefined);
  if (unknown.length) {
    throw new Error(`${where}: unknown key(s) ${unknown.join(", ")}; webtune quantizes with bitsandbytes' keys: ${KEYS.join(", ")}`);
  }
  const bool = (k: string): boolean => {
    const v = c[k] ?? false;
    if (typeof v !== "boolean") throw new Error(`${where}: ${k} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  const dtype = (k: string, allowed: string[], dflt: string): string => {
    const v = c[k] ?? null;
    if (v === null) return dflt;
    const s = typeof v === "string" ? v.replace(/^torch\./, "") : v;
    if (typeof s !== "string" || !allowed.includes(s)) throw new Error(`${where}: ${k} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
    return s === "auto" ? dflt : s;
  };
  if (c.quant_method !== undefined && c.quant_method !== "bitsandbytes") {
    throw new Error(`${where}: quant_method ${JSON.stringify(c.quant_method)} is not supported; webtune quantizes on load as bitsandbytes does (quant_method "bitsandbytes"); GGUF files load with gguf_file`);
  }
  const four = bool("load_in_4bit");
  const eight = bool("load_in_8bit");
  const doubleQuant = bool("bnb_4bit_use_double_quant");
  if (four && eight) throw new Error(`${where}: load_in_4bit and load_in_8bit are both true, but only one can be used at the same time`);
  const type = c.bnb_4bit_quant_type ?? "fp4";
  if (type !== "nf4" && type !== "fp4") throw new Error(`${where}: bnb_4bit_quant_type must be "nf4" or "fp4", got ${JSON.stringify(type)}`);
  if (eight && doubleQuant) throw new Error(`${where}: bnb_4bit_use_double_quant applies to load_in_4bit; with load_in_8bit the int8 weights have one absmax per row and nothing to quantize again`);
  const threshold = c.llm_int8_threshold ?? 6.0;
  if (typeof threshold !== "number" || !Number.isFinite(threshold)) throw new Error(`${where}: llm_int8_threshold must be a number, got ${JSON.stringify(threshold)}`);
  if (bool("llm_int8_has_fp16_weight")) {
    throw new Error(`${where}: llm_int8_has_fp16_weight true keeps trainable fp16 weights, which is not quantization; load with dtype "float32" (full fine-tuning) or set it to false`);
  }
  if (bool("llm_int8_enable_fp32_cpu_offload")) throw new Error(`${where}: llm_int8_enable_fp32_cpu_offload is not supported: webtune keeps every weight on the GPU`);
  const skip = c.llm_int8_skip_modules ?? null;
  if (skip !== null && !(Array.isArray(skip) && skip.every((s) => typeof s === "string" && s.length > 0))) {
    throw new Error(`${where}: llm_int8_skip_modules must be a list of module names (e.g. ["lm_head", "mlp.down_proj"]) or null`);
  }
  const compute = dtype("bnb_4bit_compute_dtype", FLOAT_DTYPES, "float32");
  const storage = dtype("bnb_4bit_quant_storage", STORAGE_DTYPES, "uint8");
  if (!four && !eight) {
    const set = ["bnb_4bit_use_double_quant", "llm_int8_skip_modules"].filter((k) => c[k] !== undefined && c[k] !== null && c[k] !== false);
    if (set.length) throw new Error(`${where}: ${set.join(", ")} given but neither load_in_4bit nor load_in_8bit is true: nothing would be quantized`);
    return null;
  }
  return {
    format: eight ? "int8" : type,
    double_quant: four && doubleQuant,
    skip_modules: (skip as string[] | null) ?? ["lm_head"],
    config: {
      quant_method: "bitsandbytes", load_in_4bit: four, load_in_8bit: eight, llm_int8_threshold: threshold, llm_int8_skip_modules: skip,
      llm_int8_enable_fp32_cpu_offload: false, llm_int8_has_fp16_weight: false, bnb_4bit_quant_type: type, bnb_4bit_use_double_quant: doubleQuant,
      bnb_4bit_compute_dtype: compute, bnb_4bit_quant_storage: storage,
    },
  };
}

/** transformers' should_convert_module: false when a pattern is a regex prefix of the module's name or its suffix. */
function skipped(module: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    let re: RegExp | null = null;
    try {
      re = new RegExp(`^(?:${p})`);
    } catch {
      re = null;
    }
    return (re !== null && re.test(module)) || module.endsWith(p);
  });
}

/** The packed format `w` is stored in under `q`, or null (it stays float): linear weights not skipped. */
export function quantizedFormat(q: Quantization | null, w: WeightSpec): QuantFormat | null {
  if (!q || w.role !== "linear") return null;
  return skipped(w.name.replace(/\.weight$/, ""), q.skip_modules) ? null : q.format;
}

/** A clear error before any tensor is read when a linear weight's rows are not whole blocks of its format. */
export function checkQuantizable(q: Quantization | null, expected: readonly WeightSpec[], where: string): void {
  for (const w of expected) {
    const f = quantizedFormat(q, w);
    const problem = f && formatShapeError(f, w.shape, `${where}: weight "${w.name}"`);
    if (problem) throw new Error(`${problem}; quantization_config cannot quantize it (add its module to llm_int8_skip_modules to keep it float)`);
  }
}

/** The frozen packed tensor of one linear weight's f32 values (row-major [out, in]); `name` labels errors. */
export function quantizeWeight(q: Quantization, format: QuantFormat, values: Float32Array, shape: readonly number[], name: string): Tensor {
  if (!q.double_quant || format === "int8") return Tensor.fromArray(values, [...shape], { dtype: format });
  const bytes = doubleQuantizeAbsmax(quantize(format, values, shape[shape.length - 1]!, name));
  return Tensor.fromQuantized(bytes, [...shape], format, name);
}

const fr = Math.fround;

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: step in f32, the two halves from either end, each
 * value one fused multiply-add (start + step·i rounded once: its vectorised kernel's fmadd; the product is exact
 * in float64 here, so one fround is that rounding).
 */
function linspace32(start: number, end: number, steps: number): number[] {
  const s = fr(start);
  const e = fr(end);
  const step = fr((e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? fr(s + step * i) : fr(e - step * (steps - i - 1))));
}

/**
 * bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), float32: for i in 0..6,
 * ±10^(i−6) times the midpoints of linspace(0.1, 1, 2^i + 1); then 0 and 1; sorted (256 values).
 */
export const DYNAMIC_MAP: readonly number[] = (() => {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspace32(0.1, 1, 2 ** i + 1);
    const means = b.slice(0, -1).map((v, k) => fr(fr(v + b[k + 1]!) / 2));
    const scale = fr(10 ** (i - 6));
    data.push(...means.map((m) => fr(scale * m)));
    data.push(...means.map((m) => fr(fr(-(10 ** (i - 6))) * m)));
  }
  data.push(0, 1);
  return data.sort((a, b) => a - b);
})();

/**
 * Double quantization of the absmax words of nf4/fp4 bytes (36-byte blocks: absmax f32 then 32 code bytes), in
 * place: each absmax becomes bitsandbytes' dequantized nested value (see the header). Returns `bytes`.
 */
export function doubleQuantizeAbsmax(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / 36;
  const a = Float64Array.from({ length: n }, (_, i) => view.getFloat32(36 * i, true));
  let sum = 0;
  for (const v of a) sum += v;
  const offset = fr(sum / n);
  const code = DYNAMIC_MAP;
  for (let s = 0; s < n; s += 256) {
    const e = Math.min(n, s + 256);
    const x = Array.from({ length: e - s }, (_, j) => fr(a[s + j]! - offset));
    const absmax2 = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const inv = fr(1 / absmax2);
    for (let j = 0; j < x.length; j++) {
      let y = offset;
      if (absmax2 > 0) {
        const v = Math.min(1, Math.max(-1, fr(x[j]! * inv)));
        let best = 0;
        let bestDiff = Infinity;
        for (let k = 0; k < 256; k++) {
          const d = Math.abs(fr(v - code[k]!));
          if (d < bestDiff) [best, bestDiff] = [k, d];
        }
        y = fr(fr(code[best]! * absmax2) + offset);
      }
      view.setFloat32(36 * (s + j), y, true);
    }
  }
  return bytes;
}
