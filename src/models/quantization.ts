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
//   bnb_4bit_use_double_quant (TRL: use_bnb_nested_quant): bitsandbytes' compress_statistics → "nf4_dq" / "fp4_dq":
//                 the same 4-bit codes, each block's absmax an 8-bit code of bitsandbytes' dynamic map with an f32
//                 absmax2 per 256 blocks and the tensor's mean absmax as offset (quant.ts's header: the values are
//                 bitsandbytes' dequantize_4bit's, stored packed as it stores them, 4.129 bits a weight, not 4.5).
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

/** What quantization_config asks for: bnb_4bit_quant_type's nf4 / fp4 (load_in_4bit) or int8 (load_in_8bit). */
export type QuantFormat = "nf4" | "fp4" | "int8";
/** How a linear quantized to a QuantFormat is stored: nf4 / fp4 double-quantized under bnb_4bit_use_double_quant. */
export type StoredQuantFormat = QuantFormat | "nf4_dq" | "fp4_dq";

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

/**
 * The packed format `w` is quantized to under `q`, or null (it stays float): linear weights not skipped. Stored
 * as storedFormat(q, it) (double-quantized under bnb_4bit_use_double_quant; the same rows of whole 64-blocks).
 */
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

/** The format a linear quantized to `format` under `q` is stored in: nf4_dq / fp4_dq under double quantization. */
export function storedFormat(q: Quantization, format: QuantFormat): StoredQuantFormat {
  return q.double_quant && format !== "int8" ? `${format}_dq` : format;
}

/** The frozen packed tensor of one linear weight's f32 values (row-major [out, in]); `name` labels errors. */
export function quantizeWeight(q: Quantization, format: QuantFormat, values: Float32Array, shape: readonly number[], name: string): Tensor {
  const stored = storedFormat(q, format);
  return Tensor.fromQuantized(quantize(stored, values, shape[shape.length - 1]!, name), [...shape], stored, name);
}
