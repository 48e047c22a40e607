// AutoModelForCausalLM.from_pretrained: config.json + safetensors weights, or one GGUF file (its metadata's
// config, its tensors under transformers' names: models/gguf.ts) → a model on the GPU, streaming one tensor at
// a time from the files to the device.
import { deviceInfo, getDevice } from "../gpu/device.ts";
import { missingFeature } from "../tensor/format.ts";
import { sync } from "../tensor/memory.ts";
import { keep } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";
import { EMBED_TOKENS, fromStored, ignoredOnLoad, LM_HEAD, weightsOf, type LlamaFamilyConfig, type WeightSpec } from "./architecture.ts";
import { architectureOf, parseConfig } from "./config.ts";
import type { SourceOptions } from "../io/http.ts";
import { openGGUFLocation, openSource, type ModelLocation } from "../io/open.ts";
import type { ByteFile, ModelSource } from "../io/source.ts";
import { GGUFFile, GGUFWeights, ggufConfig } from "./gguf.ts";
import { quantize, rowBytes, type PackedFormat } from "../tensor/quant.ts";
import { splitRows } from "../ops/row_blocks.ts";
import { checkQuantizable, parseQuantizationConfig, quantizedFormat, quantizeWeight, type BitsAndBytesConfig } from "./quantization.ts";
import { LlamaForCausalLM, type VocabWeight } from "./llama.ts";
import { openWeights } from "./safetensors.ts";

export interface PretrainedOptions extends SourceOptions {
  /** The GPUDevice to use (default: webtune's shared device, requested on first use), or "webgpu". */
  device?: GPUDevice | "webgpu";
  /**
   * How the frozen weights are stored on the GPU; compute is always f32. "auto" and "float32": f32 (F16/BF16
   * files are widened as they load). "float16": the decoder's linear weights (the bulk of a model), the
   * embedding and the LM head are stored as f16, halving their memory, which suits LoRA (they stay frozen);
   * needs the adapter's shader-f16 feature. "bfloat16": the same weights as bf16 (read by bit operations, so on
   * every adapter), as transformers' dtype=torch.bfloat16 holds them. Norms and biases stay f32. Under
   * quantization_config the linears are quantized and the dtype stores the embedding and the LM head, as
   * transformers holds the weights bitsandbytes leaves unquantized in the model's dtype (QLoRA: bfloat16).
   * Full fine-tuning needs "float32" (or "auto").
   */
  dtype?: "auto" | "float32" | "float16" | "bfloat16";
  /**
   * Store a weight larger than this many bytes as row blocks (vocabulary-sized weights) or refuse it
   * (others); default and maximum: the adapter's maxStorageBufferBindingSize.
   */
  max_tensor_bytes?: number;
  /**
   * transformers' gguf_file: load this GGUF file of the location (a directory, URL base or Hub repo) instead of
   * config.json + safetensors. A location that is itself a .gguf path or URL, or a File / Blob, needs none.
   */
  gguf_file?: string;
  /**
   * Quantize on load, as transformers + bitsandbytes (BitsAndBytesConfig keys): `{ load_in_4bit: true,
   * bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true }` stores each decoder linear weight as nf4 (or
   * fp4; nf4_dq / fp4_dq with bnb_4bit_use_double_quant: the absmax double-quantized, stored packed as
   * bitsandbytes does), `{ load_in_8bit: true }` as LLM.int8's int8, quantized as it streams in; embeddings, norms
   * and the LM head stay float (in the dtype's format: see dtype). The model is then frozen (LoRA on top trains
   * in f32). See models/quantization.ts.
   */
  quantization_config?: BitsAndBytesConfig | null;
}

/** The weights the loader reads: safetensors (ModelWeights) or a GGUF file's (GGUFWeights). */
interface LoadableWeights {
  readonly names: string[];
  has(name: string): boolean;
  info(name: string): { shape: number[]; file: string };
  readF32(name: string): Promise<Float32Array>;
  /** A tensor stored in a packed format (GGUF's block formats), as its bytes; null where it is not. */
  readPacked?(name: string): Promise<{ format: PackedFormat; bytes: Uint8Array } | null>;
}

/** Bytes for a message: 8.0 KiB, 544.5 MiB, 1.20 GiB. */
function MiB(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

/** Reads config.json and the weights of `source` onto the GPU (the device must be initialised). */
export async function loadCausalLM(
  source: ModelSource,
  options: { max_tensor_bytes?: number; dtype?: PretrainedOptions["dtype"] } = {},
): Promise<LlamaForCausalLM> {
  const cfg = parseConfig(await source.json<Record<string, unknown>>("config.json"), `config.json in ${source.name}`);
  const model = await loadWeights(cfg, await openWeights(source), source.name, "config.json", options);
  model.name_or_path = source.name;
  model.source = source;
  if (await source.exists("generation_config.json")) model.generation_config = await source.json("generation_config.json");
  return model;
}

/**
 * Reads a GGUF file onto the GPU (the device must be initialised): the config transformers makes of its metadata,
 * its tensors under transformers' names (models/gguf.ts). `name` labels the file in messages.
 */
export async function loadGGUF(
  file: ByteFile | GGUFFile,
  name: string,
  options: { max_tensor_bytes?: number; dtype?: PretrainedOptions["dtype"] } = {},
): Promise<LlamaForCausalLM> {
  const g = file instanceof GGUFFile ? file : await GGUFFile.open(file, name);
  const raw = ggufConfig(g);
  const cfg = parseConfig(raw, `the metadata of ${g.name}`);
  const model = await loadWeights(cfg, GGUFWeights.of(g, raw), g.name, "GGUF metadata", options);
  model.name_or_path = g.name;
  return model;
}

/** The weights of `weights` for `cfg`, checked and uploaded one tensor at a time. */
async function loadWeights(
  cfg: LlamaFamilyConfig,
  weights: LoadableWeights,
  where: string,
  configName: string,
  options: { max_tensor_bytes?: number; dtype?: PretrainedOptions["dtype"]; quantization_config?: BitsAndBytesConfig | null },
): Promise<LlamaForCausalLM> {
  const store = storeFormat(options.dtype);
  const quant = parseQuantizationConfig(options.quantization_config);
  if (!cfg.tie_word_embeddings && !weights.has(LM_HEAD) && weights.has(EMBED_TOKENS)) {
    throw new Error(`${where}: ${configName} has tie_word_embeddings false but the weights have no ${LM_HEAD}`);
  }
  const arch = architectureOf(cfg);
  const expected = weightsOf(arch, cfg);
  const limit = bindingLimit(options.max_tensor_bytes);
  checkFits(cfg, expected, where, limit);
  checkQuantizable(quant, expected, where);
  const missing = expected.filter((w) => !weights.has(w.name)).map((w) => w.name);
  if (missing.length) {
    throw new Error(
      `${where}: the weights lack ${missing.length} tensor(s) a ${cfg.architecture} with this ${configName} needs: ${few(missing)}`,
    );
  }
  const known = new Set(expected.map((w) => w.name));
  const unexpected = weights.names.filter((n) => !known.has(n) && !ignoredOnLoad(cfg, n));
  if (unexpected.length) {
    throw new Error(
      `${where}: the weights have ${unexpected.length} tensor(s) a ${cfg.architecture} with this ${configName} does not have: ${few(unexpected)} ` +
        `(does ${configName} match the checkpoint? e.g. attention_bias, mlp_bias, tie_word_embeddings)`,
    );
  }
  const params = new Map<string, Tensor>();
  const vocab = new Map<string, VocabWeight>();
  const all: Tensor[] = [];
  try {
    for (const w of expected) {
      const { name, shape } = w;
      const info = weights.info(name);
      if (info.shape.join() !== shape.join()) {
        throw new Error(`${info.file} in ${where}: tensor "${name}" is [${info.shape.join(", ")}] but ${configName} implies [${shape.join(", ")}]`);
      }
      // A linear, embedding or LM head stored packed (a GGUF Q4_K, Q8_0, …) stays packed: the kernels dequantize it
      // as they read (matmul, embedding gather, the fused cross-entropy), in row blocks where it exceeds a binding.
      const packed = (w.role === "linear" || isVocabSized(w)) && weights.readPacked ? await weights.readPacked(name) : null;
      if (packed) {
        if (quant && w.role === "linear") throw new Error(`${where}: ${name} is already quantized (${packed.format}); drop quantization_config`);
        const [V, C] = shape as [number, number];
        const rb = rowBytes(packed.format, C);
        const split = isVocabSized(w) && packed.bytes.length > limit ? splitRows(V, Math.ceil(rb / 4), limit) : [V];
        const blocks: Tensor[] = [];
        let row = 0;
        for (const rows of split) {
          blocks.push(keep(Tensor.fromQuantized(packed.bytes.subarray(row * rb, (row + rows) * rb), [rows, C], packed.format, name)));
          row += rows;
        }
        all.push(...blocks);
        if (isVocabSized(w)) vocab.set(name, blocks.length === 1 ? blocks[0]! : blocks);
        else params.set(name, blocks[0]!);
        continue;
      }
      const data = fromStored(arch, w, await weights.readF32(name));
      // Frozen float weights (the linears and the vocabulary-sized ones; not norms and biases) in the dtype's
      // storage format; a quantized linear in its block format.
      const q = w.role === "linear" ? quantizedFormat(quant, w) : null;
      const format: StoreFormat = w.role === "linear" || isVocabSized(w) ? store : "f32";
      const [V, C] = shape as [number, number];
      if (isVocabSized(w) && storedBytes(format, data.length) > limit) {
        // Larger than one binding: row blocks, each its own buffer (embedding and cross-entropy take them).
        const blocks: Tensor[] = [];
        let row = 0;
        for (const rows of splitRows(V, Math.ceil(storedBytes(format, C) / 4), limit)) {
          blocks.push(keep(storeTensor(data.subarray(row * C, (row + rows) * C), [rows, C], format, name)));
          row += rows;
        }
        all.push(...blocks);
        vocab.set(name, blocks);
      } else {
        const t = keep(q ? quantizeWeight(quant!, q, data, shape, name) : storeTensor(data, shape, format, name));
        all.push(t);
        if (isVocabSized(w)) vocab.set(name, t);
        else params.set(name, t);
      }
    }
    // Surface an out-of-memory from the uploads here, with the sizes, rather than at the first step.
    await sync();
  } catch (e) {
    for (const t of all) t.dispose();
    if (e instanceof Error && /out of memory|OutOfMemory|allocation/i.test(e.message)) {
      throw new Error(`${where}: ${oomMessage(expected)} (${e.message})`, { cause: e });
    }
    throw e;
  }
  const model = new LlamaForCausalLM(cfg, params, { embed_tokens: vocab.get(EMBED_TOKENS)!, lm_head: vocab.get(LM_HEAD) });
  // transformers keeps the BitsAndBytesConfig on model.config (not in config.raw: save_pretrained writes f32 weights).
  if (quant) Object.assign(model.config, { quantization_config: quant.config });
  return model;
}

/** The first few names of a list, for a message. */
function few(names: string[]): string {
  return `${names.slice(0, 5).join(", ")}${names.length > 5 ? ", …" : ""}`;
}

/** How a dtype stores the frozen float weights: f32, f16 (shader-f16) or bf16 (a packed format: every adapter). */
type StoreFormat = "f32" | "f16" | "bf16";

function storeFormat(dtype: PretrainedOptions["dtype"]): StoreFormat {
  return dtype === "float16" ? "f16" : dtype === "bfloat16" ? "bf16" : "f32";
}

function storedBytes(format: StoreFormat, n: number): number {
  return format === "f32" ? 4 * n : format === "f16" ? 2 * n : rowBytes("bf16", n);
}

function storeTensor(data: Float32Array, shape: number[], format: StoreFormat, name: string): Tensor {
  if (format === "bf16") return Tensor.fromQuantized(quantize("bf16", data, shape[shape.length - 1], name), shape, "bf16", name);
  return Tensor.fromArray(data, shape, format === "f16" ? { dtype: "f16" } : {});
}

/** The [V, C] weights, stored as row blocks when one buffer binding cannot hold them. */
function isVocabSized(w: WeightSpec): boolean {
  return w.role === "embedding" || w.role === "lm_head";
}

function bytesOf(w: WeightSpec): number {
  return 4 * w.shape.reduce((a, b) => a * b, 1);
}

function totalBytes(expected: WeightSpec[]): number {
  return expected.reduce((s, w) => s + bytesOf(w), 0);
}

function oomMessage(expected: WeightSpec[]): string {
  const l = deviceInfo().limits;
  return `the weights need ${MiB(totalBytes(expected))} of GPU memory in f32, more than this adapter could allocate (maxBufferSize ${MiB(l.maxBufferSize)}); use a smaller model`;
}

/** The most bytes one tensor may have: the adapter's binding limit (or a smaller one asked for). */
function bindingLimit(asked?: number): number {
  const l = deviceInfo().limits;
  const limit = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
  return asked ? Math.min(asked, limit) : limit;
}

/** Every tensor but the vocabulary-sized ones (which are split) must fit one buffer binding. */
function checkFits(cfg: LlamaFamilyConfig, expected: WeightSpec[], where: string, limit: number): void {
  const l = deviceInfo().limits;
  const big = expected.filter((w) => !isVocabSized(w) && bytesOf(w) > limit);
  if (big.length) {
    const { name, shape } = big[0]!;
    const bytes = bytesOf(big[0]!);
    throw new Error(
      `${where}: ${cfg.architecture} tensor "${name}" [${shape.join(", ")}] needs ${MiB(bytes)} in f32, but this adapter binds at most ${MiB(limit)} ` +
        `(maxStorageBufferBindingSize ${MiB(l.maxStorageBufferBindingSize)}, maxBufferSize ${MiB(l.maxBufferSize)}); the whole model needs ${MiB(totalBytes(expected))}. ` +
        `Use a smaller model, or an adapter with higher limits.`,
    );
  }
}

/** Like transformers' AutoModelForCausalLM: picks the class from config.json's `architectures`. */
export const AutoModelForCausalLM = {
  /**
   * Loads a Llama-family model from a local directory, a URL, a Hub id, or browser files (see openSource); or
   * from one GGUF file: a path or URL ending in .gguf, a File / Blob, or `{ gguf_file }` in a directory or repo.
   * `AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M", { progress_callback })`
   */
  async from_pretrained(location: ModelLocation | URL | Blob, options: PretrainedOptions = {}): Promise<LlamaForCausalLM> {
    const dtype = options.dtype ?? "auto";
    parseQuantizationConfig(options.quantization_config); // bad keys fail before the device or any download
    if (dtype !== "auto" && dtype !== "float32" && dtype !== "float16" && dtype !== "bfloat16") {
      throw new Error(`from_pretrained: dtype "${String(dtype)}" is not supported; use "float32", "float16" or "bfloat16" (f16 / bf16 storage of the frozen weights) or "auto"`);
    }
    await getDevice(options.device && options.device !== "webgpu" ? { device: options.device } : {});
    const missing = dtype === "float16" ? missingFeature("f16", deviceInfo()) : null;
    if (missing) {
      throw new Error(`from_pretrained: dtype "float16" needs the adapter's ${missing} feature, which ${deviceInfo().adapter.description || "this adapter"} lacks; use dtype "float32"`);
    }
    const gguf = await openGGUFLocation(location, options);
    if (gguf) {
      const model = await loadGGUF(gguf.bytes, gguf.name, options);
      if (gguf.source) model.source = gguf.source;
      return model;
    }
    return loadCausalLM(await openSource(location as ModelLocation, options), options);
  },
};

