// The GPU memory a model's weights take as from_pretrained loads them, known before any weight is read (the
// page shows it before downloading): from a config.json (a preset's, or one fetched alone) and the linears'
// format, or from a GGUF file's header (its tensor infos: types and shapes, read with ranged reads).
// The totals are the tensors' bytes; they count no activations, gradients, LoRA weights or optimizer state.
//
// What the loader (auto.ts loadWeights) holds, tensor by tensor, for weightsOf(architecture, config):
//   - a decoder linear (role "linear", what PEFT adapts): f32; f16 under dtype "float16", bf16 under "bfloat16";
//     nf4 / fp4 (36 bytes a 64-block: 36/256 of f32), nf4_dq / fp4_dq under bnb_4bit_use_double_quant (33 bytes
//     a 64-block plus 8 per group of 256 blocks: 8456 bytes per 16384 elements) or int8 (36/128) under
//     quantization_config; from a GGUF
//     file, a tensor in a packed format (the block formats, BF16) stays packed as its file bytes, an F32/F16 one
//     as the dtype;
//   - the embedding and the LM head: as the dtype stores them (f32, f16, bf16; under quantization_config too),
//     or from a GGUF file packed as stored (a Q8_0 token_embd stays Q8_0: the embedding gather and the fused
//     cross-entropy dequantize as they read), maybe in row blocks (the same bytes in several buffers) where one
//     binding cannot hold them;
//   - norms and biases: f32, whatever the file's type.
// Bytes are formatBytes(format, n) (tensor/format.ts): the tensors' storage bytes. The buffer pool rounds each
// buffer up to a size class (gpu/buffers.ts sizeClass), so memoryStats().liveBytes reads a little more:
// tests/models/memory.test.ts checks both against a loaded model.
//
// Imports nothing that touches the device (the page's main thread uses it).
import { formatBytes, type WeightFormat } from "../tensor/format.ts";
import { GGML_TYPE_FORMATS, isPackedFormat } from "../tensor/quant.ts";
import { weightsOf, type WeightSpec } from "./architecture.ts";
import { architectureOf, parseConfig } from "./config.ts";
import { GGUFWeights, ggufConfig, type GGUFFile } from "./gguf.ts";

/**
 * How the decoder linears are stored: dtype "float32" / "float16" / "bfloat16", or quantized on load (nf4, fp4;
 * nf4_dq, fp4_dq with double quantization; int8).
 */
export type LinearFormat = "f32" | "f16" | "bf16" | "nf4" | "fp4" | "nf4_dq" | "fp4_dq" | "int8";

/** How the embedding and the LM head are stored: the dtype's format (from_pretrained's dtype). */
export type VocabFormat = "f32" | "f16" | "bf16";

/** The formats from_pretrained stores a model in for these options (its dtype and quantization_config's format). */
export function loadFormats(
  options: { dtype?: "auto" | "float32" | "float16" | "bfloat16"; quantized?: "nf4" | "fp4" | "int8" | null; double_quant?: boolean } = {},
): { linears: LinearFormat; vocab: VocabFormat } {
  const vocab: VocabFormat = options.dtype === "float16" ? "f16" : options.dtype === "bfloat16" ? "bf16" : "f32";
  const q = options.quantized ?? null;
  return { linears: q === null ? vocab : options.double_quant && q !== "int8" ? `${q}_dq` : q, vocab };
}

/** One weight as the loader holds it. */
export interface WeightMemory extends WeightSpec {
  format: WeightFormat;
  bytes: number;
}

const LINEAR_FORMATS: readonly LinearFormat[] = ["f32", "f16", "bf16", "nf4", "fp4", "nf4_dq", "fp4_dq", "int8"];
const VOCAB_FORMATS: readonly VocabFormat[] = ["f32", "f16", "bf16"];

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkLinears(linears: unknown): LinearFormat {
  if (!LINEAR_FORMATS.includes(linears as LinearFormat)) {
    throw new Error(`weightBytes: linears "${String(linears)}" is not one of ${LINEAR_FORMATS.map((f) => `"${f}"`).join(", ")}`);
  }
  return linears as LinearFormat;
}

function checkVocab(vocab: unknown): VocabFormat {
  if (!VOCAB_FORMATS.includes(vocab as VocabFormat)) {
    throw new Error(`weightBytes: vocab "${String(vocab)}" is not one of ${VOCAB_FORMATS.map((f) => `"${f}"`).join(", ")}`);
  }
  return vocab as VocabFormat;
}

/**
 * Each weight a config implies with its format and bytes as from_pretrained loads it, the decoder linears in
 * `linears` (default f32), the embedding and the LM head in `vocab` (default: the linears' format where that is
 * a float one, f16 or bf16, else f32; see loadFormats for from_pretrained's options). `where` labels config
 * errors (an unsupported architecture, a bad key).
 */
export function weightMemory(
  config: Readonly<Record<string, unknown>>,
  options: { linears?: LinearFormat; vocab?: VocabFormat } = {},
  where = "config.json",
): WeightMemory[] {
  const linears = checkLinears(options.linears ?? "f32");
  const vocab = checkVocab(options.vocab ?? (linears === "f16" || linears === "bf16" ? linears : "f32"));
  const cfg = parseConfig({ ...config }, where);
  return weightsOf(architectureOf(cfg), cfg).map((w) => {
    const format: WeightFormat = w.role === "linear" ? linears : w.role === "embedding" || w.role === "lm_head" ? vocab : "f32";
    return { ...w, format, bytes: formatBytes(format, numel(w.shape)) };
  });
}

/**
 * The bytes of a model's weights on the GPU as from_pretrained loads them from this config.json:
 * `weightBytes(config, { linears: "nf4" })` for `quantization_config: { load_in_4bit: true }`.
 */
export function weightBytes(config: Readonly<Record<string, unknown>>, options: { linears?: LinearFormat; vocab?: VocabFormat } = {}): number {
  return weightMemory(config, options).reduce((s, w) => s + w.bytes, 0);
}

/**
 * Each weight of a GGUF file (its header: GGUFFile.open reads only that) with its format and bytes as
 * from_pretrained loads it: packed linears, embedding and LM head as they are in the file, F32/F16 ones in
 * the dtype's format (f32; f16 under `dtype: "float16"`, bf16 under "bfloat16"), norms f32. An architecture
 * webtune lacks is ggufConfig's error.
 */
export function ggufWeightMemory(g: GGUFFile, options: { dtype?: "auto" | "float32" | "float16" | "bfloat16" } = {}): WeightMemory[] {
  const { vocab: store } = loadFormats({ dtype: options.dtype });
  const raw = ggufConfig(g);
  const cfg = parseConfig(raw, `the metadata of ${g.name}`);
  const weights = GGUFWeights.of(g, raw);
  return weightsOf(architectureOf(cfg), cfg).map((w) => {
    let format: WeightFormat = "f32";
    if (w.role === "linear" || w.role === "embedding" || w.role === "lm_head") {
      const stored = weights.has(w.name) ? GGML_TYPE_FORMATS[g.info(weights.ggufName(w.name)).type] : undefined;
      if (stored !== undefined && isPackedFormat(stored)) format = stored;
      else format = store;
    }
    return { ...w, format, bytes: formatBytes(format, numel(w.shape)) };
  });
}

/** The bytes of a GGUF file's weights on the GPU as from_pretrained loads them (see ggufWeightMemory). */
export function ggufWeightBytes(g: GGUFFile, options: { dtype?: "auto" | "float32" | "float16" | "bfloat16" } = {}): number {
  return ggufWeightMemory(g, options).reduce((s, w) => s + w.bytes, 0);
}

/**
 * What a breakdown's linears are stored as, for a label: "4-bit linears" (nf4, fp4), "f16 linears", "q4_k/q6_k linears",
 * "f32" when everything is.
 */
export function linearsLabel(weights: readonly WeightMemory[]): string {
  const formats = [...new Set(weights.filter((w) => w.role === "linear").map((w) => w.format))];
  if (formats.every((f) => f === "f32")) return "f32";
  const bits = (f: WeightFormat) => (f === "nf4" || f === "fp4" || f === "nf4_dq" || f === "fp4_dq" ? "4-bit" : f === "int8" ? "8-bit" : f);
  return `${[...new Set(formats.map(bits))].join("/")} linears`;
}
