// Hugging Face model files with seeded random weights, and PEFT LoRA adapters for them, made in memory on any
// host: the models the loader, trainer and benchmark tests run on (tools/make-model.ts writes them to disk),
// which tools/fixtures/models.py loads with transformers + peft to write the reference outputs.
//
// randomModel(options) lays out config.json, generation_config.json, model.safetensors (or, with `shards: n`,
// model-0000i-of-0000n.safetensors + model.safetensors.index.json, as transformers writes them) and the tiny
// tokenizer's files (tools/bpe.ts); each file's bytes come chunk by chunk, so a real-size model (smollm2-135m)
// can be streamed without a big buffer. randomAdapter(options) makes adapter_config.json +
// adapter_model.safetensors of a PEFT LoRA adapter for such a model, with a nonzero random B (PEFT initialises
// B to 0; here gradients of A are then non-trivial).
//
// The weights and their shapes come from the architecture's description (src/models/architectures/) and
// their values from src/models/init.ts: a pure function of (seed, tensor name, element index), the same
// bytes on every host whatever the dtype rounding, sharding or tensor order. The embedded tiny model
// (src/models/tiny.ts) is the "llama" preset resized: the same files for the same seed.
import { weightsOf, type WeightSpec } from "../src/models/architecture.ts";
import { architectureOf, parseConfig } from "../src/models/config.ts";
import { fillWeight, symmetric, weightStream } from "../src/models/init.ts";
import { f32ToBF16, SAFETENSORS_DTYPE_BYTES, writeSafetensors, type SafetensorsDType } from "../src/models/safetensors.ts";
import { presetConfig } from "../src/models/presets.ts";
import { generationConfig, jsonText, mergeConfig, sortKeys, TINY_LLAMA_CONFIG, TINY_SIZES } from "../src/models/tiny.ts";
import { f32ToF16 } from "../src/tensor/half.ts";
import { makeTokenizerFiles } from "./bpe.ts";

export { tensorValues } from "../src/models/init.ts";

export type Arch = "llama" | "llama3" | "qwen2" | "qwen3" | "mistral" | "gemma2" | "gemma3" | "smollm3" | "phi3" | "phi4" | "smollm2-135m";
export const ARCHS: readonly Arch[] = ["llama", "llama3", "qwen2", "qwen3", "mistral", "gemma2", "gemma3", "smollm3", "phi3", "phi4", "smollm2-135m"];

/** Storage dtype of the weights (config.json's torch_dtype). */
export type StorageDType = "float32" | "float16" | "bfloat16";
const SAFETENSORS_DTYPE: Record<StorageDType, SafetensorsDType> = { float32: "F32", float16: "F16", bfloat16: "BF16" };

export type ModelConfig = Record<string, unknown>;

export interface RandomModelOptions {
  /** The preset (default "llama"). */
  arch?: Arch;
  /** Keys merged into the preset's config.json (a key set to undefined is removed). */
  config?: ModelConfig;
  /** u32 seed of the weights (default 0). */
  seed?: number;
  /** Storage dtype (default "float32"). */
  dtype?: StorageDType;
  /** Number of safetensors shards (default 1: a single model.safetensors). */
  shards?: number;
  /** Include the tiny tokenizer's files (default true). */
  tokenizer?: boolean;
}

/** One file of a random model: its size and a fresh iterator over its bytes (the chunks are only valid until the next one). */
export interface RandomModelFile {
  /** The path relative to the model directory. */
  name: string;
  size: number;
  chunks(): Iterable<Uint8Array>;
}

export interface RandomModel {
  config: ModelConfig;
  /** Every file, in the order written (config.json, generation_config.json, weights, index, tokenizer). */
  files: RandomModelFile[];
  /** The tensors, in file order (sorted by name). */
  tensors: WeightSpec[];
}

// ---------------------------------------------------------------------------------------------------------
// Presets: the keys of the real Hub configs (legacy rope_theta / rope_scaling / torch_dtype spelling, which
// is what most Hub checkpoints have and transformers 5 still reads). The tiny ones share TINY_SIZES and the
// tiny tokenizer's token ids.

const TOKENS = {
  bos_token_id: TINY_LLAMA_CONFIG.bos_token_id,
  eos_token_id: TINY_LLAMA_CONFIG.eos_token_id,
  pad_token_id: TINY_LLAMA_CONFIG.pad_token_id,
};

const PRESETS: Record<Arch, Readonly<ModelConfig>> = {
  llama: TINY_LLAMA_CONFIG,
  llama3: {
    ...TINY_LLAMA_CONFIG,
    head_dim: 8,
    rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 64, rope_type: "llama3" },
    rope_theta: 500000.0,
    tie_word_embeddings: false,
  },
  // No attention_bias key: Qwen2's q/k/v always have biases (as in the real Qwen2 / Qwen2.5 configs).
  qwen2: {
    architectures: ["Qwen2ForCausalLM"],
    attention_dropout: 0.0,
    ...TOKENS,
    hidden_act: "silu",
    initializer_range: 0.02,
    max_window_layers: 2,
    model_type: "qwen2",
    rope_theta: 1000000.0,
    sliding_window: 256,
    tie_word_embeddings: true,
    transformers_version: "4.46.0",
    use_cache: true,
    use_sliding_window: false,
    ...TINY_SIZES,
  },
  qwen3: {
    architectures: ["Qwen3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    ...TOKENS,
    head_dim: 16,
    hidden_act: "silu",
    initializer_range: 0.02,
    max_window_layers: 2,
    model_type: "qwen3",
    rope_scaling: null,
    rope_theta: 1000000,
    sliding_window: null,
    tie_word_embeddings: true,
    transformers_version: "4.51.0",
    use_cache: true,
    use_sliding_window: false,
    ...TINY_SIZES,
  },
  mistral: {
    architectures: ["MistralForCausalLM"],
    attention_dropout: 0.0,
    ...TOKENS,
    hidden_act: "silu",
    initializer_range: 0.02,
    model_type: "mistral",
    rope_theta: 1000000.0,
    sliding_window: null,
    tie_word_embeddings: false,
    transformers_version: "4.46.0",
    use_cache: true,
    ...TINY_SIZES,
  },
  // The tiny presets of issue 11 exercise every feature against transformers: windows shorter than the test
  // sequences (T = 11 and 16), soft-caps small enough for tanh to bend, NoPE layers, partial rotary, longrope
  // whose original_max_position_embeddings (8) lies between the packed test's positions (≤ 7: short factors) and
  // the padded batch's (≤ 10: long factors), q/k norms. head_dim 8.
  // Gemma 2 (v4 keys, as google/gemma-2-2b): layer 0 sliding (window 4), layer 1 full; both caps on.
  gemma2: {
    architectures: ["Gemma2ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    attn_logit_softcapping: 3.5,
    ...TOKENS,
    cache_implementation: "hybrid",
    final_logit_softcapping: 5.5,
    head_dim: 8,
    hidden_act: "gelu_pytorch_tanh",
    hidden_activation: "gelu_pytorch_tanh",
    initializer_range: 0.02,
    model_type: "gemma2",
    query_pre_attn_scalar: 16,
    rope_theta: 10000.0,
    sliding_window: 4,
    tie_word_embeddings: true,
    transformers_version: "4.42.4",
    use_cache: true,
    ...TINY_SIZES,
  },
  // Gemma 3 text (v4 keys, as google/gemma-3-1b-it): sliding_window_pattern 2 (layer 0 local, layer 1 global),
  // local RoPE rope_local_base_freq, global rope_theta with linear scaling, q/k norms, the final cap only.
  gemma3: {
    architectures: ["Gemma3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    attn_logit_softcapping: null,
    ...TOKENS,
    cache_implementation: "hybrid",
    final_logit_softcapping: 9.5,
    head_dim: 8,
    hidden_activation: "gelu_pytorch_tanh",
    initializer_range: 0.02,
    model_type: "gemma3_text",
    query_pre_attn_scalar: 8,
    rope_local_base_freq: 10000.0,
    rope_scaling: { factor: 2.0, rope_type: "linear" },
    rope_theta: 1000000.0,
    sliding_window: 4,
    sliding_window_pattern: 2,
    transformers_version: "4.50.0.dev0",
    use_cache: true,
    ...TINY_SIZES,
  },
  // SmolLM3 (as HuggingFaceTB/SmolLM3-3B, with the window on): layer 1 has no RoPE and, with use_sliding_window,
  // a window of 4.
  smollm3: {
    architectures: ["SmolLM3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    ...TOKENS,
    hidden_act: "silu",
    initializer_range: 0.02,
    max_window_layers: 2,
    mlp_bias: false,
    model_type: "smollm3",
    no_rope_layer_interval: 4,
    no_rope_layers: [1, 0],
    rope_scaling: null,
    rope_theta: 5000000.0,
    sliding_window: 4,
    tie_word_embeddings: true,
    transformers_version: "4.53.0.dev0",
    use_cache: true,
    use_sliding_window: true,
    ...TINY_SIZES,
  },
  // Phi-3 (as microsoft/Phi-3-mini-128k-instruct): fused qkv_proj / gate_up_proj, partial rotary 0.5 (4 of 8 dims),
  // longrope switching at 8 positions, a window of 6 on every layer, untied.
  phi3: {
    architectures: ["Phi3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    ...TOKENS,
    embd_pdrop: 0.0,
    hidden_act: "silu",
    initializer_range: 0.02,
    model_type: "phi3",
    original_max_position_embeddings: 8,
    partial_rotary_factor: 0.5,
    resid_pdrop: 0.0,
    rope_scaling: { long_factor: [1.5, 3.0], short_factor: [1.0, 1.25], type: "longrope" },
    rope_theta: 10000.0,
    sliding_window: 6,
    tie_word_embeddings: false,
    transformers_version: "4.40.2",
    use_cache: true,
    ...TINY_SIZES,
    max_position_embeddings: 32,
  },
  // Phi-4-mini's shape: partial rotary 0.75 (6 of 8 dims), tied embeddings, no window, default rope.
  phi4: {
    architectures: ["Phi3ForCausalLM"],
    attention_bias: false,
    attention_dropout: 0.0,
    ...TOKENS,
    embd_pdrop: 0.0,
    hidden_act: "silu",
    initializer_range: 0.02,
    model_type: "phi3",
    original_max_position_embeddings: 256,
    partial_rotary_factor: 0.75,
    resid_pdrop: 0.0,
    rope_scaling: null,
    rope_theta: 10000.0,
    sliding_window: null,
    tie_word_embeddings: true,
    transformers_version: "4.45.0",
    use_cache: true,
    ...TINY_SIZES,
  },
  // The published SmolLM2-135M config.json (src/models/presets.ts); torch_dtype is set from options.dtype.
  "smollm2-135m": presetConfig("smollm2-135m"),
};

/** The resolved config.json of randomModel(options) (and makeModel). */
function modelConfig(options: RandomModelOptions = {}): ModelConfig {
  const dtype = options.dtype ?? "float32";
  if (!(dtype in SAFETENSORS_DTYPE)) throw new Error(`makeModel: dtype must be float32, float16 or bfloat16 (got ${dtype})`);
  const preset = PRESETS[options.arch ?? "llama"];
  if (!preset) throw new Error(`makeModel: unknown arch "${String(options.arch)}" (one of ${ARCHS.join(", ")})`);
  return mergeConfig(preset, { torch_dtype: dtype, ...(options.config ?? {}) });
}

/** The tensors of the model's state dict (transformers' names and order), from its architecture's description. */
export function modelTensors(config: ModelConfig): WeightSpec[] {
  const cfg = parseConfig(config, "makeModel: config");
  return weightsOf(architectureOf(cfg), cfg);
}

// ---------------------------------------------------------------------------------------------------------
// Files.

function encode(values: Float32Array, dtype: SafetensorsDType): Uint8Array {
  const words = dtype === "F32" ? values : dtype === "F16" ? f32ToF16(values) : f32ToBF16(values);
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}

/** Elements generated at a time (4 MiB of float32). */
const CHUNK = 1 << 20;

function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A safetensors header (8-byte length + JSON padded with spaces to a multiple of 8), as writeSafetensors lays it out. */
function safetensorsHeader(specs: WeightSpec[], dtype: SafetensorsDType, metadata: Record<string, string>): { head: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const s of specs) {
    const bytes = elements(s.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
    header[s.name] = { dtype, shape: s.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const padded = raw.length + ((8 - (raw.length % 8)) % 8);
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(raw, 8);
  return { head, dataBytes: offset };
}

/** One safetensors file of `specs` (in that order) and its bytes: the header, then each tensor chunk by chunk. */
function safetensorsFile(name: string, specs: WeightSpec[], seed: number, dtype: SafetensorsDType): RandomModelFile {
  const { head, dataBytes } = safetensorsHeader(specs, dtype, { format: "pt" });
  return {
    name,
    size: head.length + dataBytes,
    *chunks() {
      yield head;
      for (const s of specs) {
        const rng = weightStream(seed, s.name);
        const n = elements(s.shape);
        const buf = new Float32Array(Math.min(n, CHUNK));
        for (let at = 0; at < n; at += CHUNK) {
          const chunk = buf.subarray(0, Math.min(CHUNK, n - at));
          fillWeight(rng, s, chunk);
          yield encode(chunk, dtype);
        }
      }
    },
  };
}

function textFile(name: string, text: string): RandomModelFile {
  const bytes = new TextEncoder().encode(text);
  return { name, size: bytes.length, chunks: () => [bytes] };
}

/** Splits the tensors (state-dict order) into `n` non-empty contiguous groups of about equal bytes. */
function splitShards(specs: WeightSpec[], n: number): WeightSpec[][] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`makeModel: shards must be a positive integer (got ${n})`);
  if (n > specs.length) throw new Error(`makeModel: ${n} shards for ${specs.length} tensors`);
  const sizes = specs.map((s) => elements(s.shape));
  const total = sizes.reduce((a, b) => a + b, 0);
  const groups: WeightSpec[][] = Array.from({ length: n }, () => []);
  let cum = 0;
  let prev = 0;
  specs.forEach((s, i) => {
    const want = Math.floor(((cum + sizes[i]! / 2) * n) / total);
    const shard = Math.min(n - 1, Math.max(prev, n - (specs.length - i), Math.min(want, i === 0 ? 0 : prev + 1)));
    groups[shard]!.push(s);
    prev = shard;
    cum += sizes[i]!;
  });
  return groups;
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The files of a Hugging Face model directory with seeded random weights (see the header); nothing is generated until read. */
export function randomModel(options: RandomModelOptions = {}): RandomModel {
  const seed = options.seed ?? 0;
  const config = modelConfig(options);
  const dtype = SAFETENSORS_DTYPE[config.torch_dtype as StorageDType] ?? SAFETENSORS_DTYPE[options.dtype ?? "float32"];
  const specs = modelTensors(config);
  weightStream(seed, ""); // validates the seed before anything is made
  const files: RandomModelFile[] = [textFile("config.json", jsonText(config)), textFile("generation_config.json", jsonText(generationConfig(config)))];

  const shards = options.shards ?? 1;
  if (shards === 1) {
    files.push(safetensorsFile("model.safetensors", [...specs].sort(byName), seed, dtype));
  } else {
    const groups = splitShards(specs, shards);
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    let totalParams = 0;
    for (let i = 0; i < groups.length; i++) {
      const file = `model-${String(i + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      files.push(safetensorsFile(file, [...groups[i]!].sort(byName), seed, dtype));
      for (const s of groups[i]!) {
        weightMap[s.name] = file;
        totalParams += elements(s.shape);
        totalSize += elements(s.shape) * SAFETENSORS_DTYPE_BYTES[dtype];
      }
    }
    files.push(textFile("model.safetensors.index.json", jsonText({ metadata: { total_parameters: totalParams, total_size: totalSize }, weight_map: weightMap })));
  }

  if (options.tokenizer ?? true) {
    for (const [name, text] of Object.entries(makeTokenizerFiles())) files.push(textFile(name, text));
  }
  return { config, files, tensors: [...specs].sort(byName) };
}

// ---------------------------------------------------------------------------------------------------------
// LoRA adapters.

export interface RandomAdapterOptions {
  /** The model's config.json. */
  model: ModelConfig;
  /** u32 seed of A and B (default 1). */
  seed?: number;
  /** LoRA rank (default 4). */
  r?: number;
  /** lora_alpha (default 2·r). */
  alpha?: number;
  /** "all-linear" (every linear of the decoder; default) or module names. */
  targets?: "all-linear" | readonly string[];
  /** lora_dropout (default 0). */
  dropout?: number;
  /** use_rslora (default false). */
  rslora?: boolean;
  /** base_model_name_or_path (default null). */
  base_model_name_or_path?: string | null;
}

export interface RandomAdapter {
  /** adapter_config.json, as an object. */
  config: Record<string, unknown>;
  /** The adapter's tensors (file names), sorted. */
  tensors: { name: string; shape: number[] }[];
  /** adapter_config.json and adapter_model.safetensors. */
  files: Record<string, Uint8Array>;
}

/** adapter_config.json as PEFT 0.21 saves a LoraConfig (inference_mode true, as save_pretrained writes it). */
function adapterConfig(options: RandomAdapterOptions, target_modules: string[]): Record<string, unknown> {
  const r = options.r ?? 4;
  return sortKeys({
    alora_invocation_tokens: null,
    alpha_pattern: {},
    arrow_config: null,
    auto_mapping: null,
    base_model_name_or_path: options.base_model_name_or_path ?? null,
    bias: "none",
    corda_config: null,
    ensure_weight_tying: false,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    kasa_config: null,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: options.alpha ?? 2 * r,
    lora_bias: false,
    lora_dropout: options.dropout ?? 0.0,
    lora_ga_config: null,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    monteclora_config: null,
    peft_type: "LORA",
    peft_version: "0.21.0",
    qalora_group_size: 16,
    r,
    rank_pattern: {},
    revision: null,
    target_modules,
    target_parameters: null,
    task_type: "CAUSAL_LM",
    trainable_token_indices: null,
    use_bdlora: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: options.rslora ?? false,
    velora_config: null,
  }) as Record<string, unknown>;
}

/** The module name of a linear weight (model.layers.0.self_attn.q_proj.weight → q_proj). */
function moduleOf(w: WeightSpec): string {
  return w.name.split(".").at(-2)!;
}

/**
 * A PEFT LoRA adapter for a model of config `options.model`: adapter_config.json and
 * adapter_model.safetensors ({"format": "pt"}, F32) with base_model.model.<module>.lora_A.weight [r, in]
 * ~ uniform(±1/sqrt(in)) (PEFT's kaiming-uniform bound) and lora_B.weight [out, r] ~ uniform(±0.5/sqrt(r)).
 */
export function randomAdapter(options: RandomAdapterOptions): RandomAdapter {
  const seed = options.seed ?? 1;
  weightStream(seed, "");
  const r = options.r ?? 4;
  if (!Number.isInteger(r) || r < 1) throw new Error(`makeAdapter: r must be a positive integer (got ${r})`);
  const linears = modelTensors(options.model).filter((w) => w.role === "linear");
  const names = [...new Set(linears.map(moduleOf))];
  const asked = options.targets === undefined || options.targets === "all-linear" ? names : [...options.targets];
  for (const t of asked) if (!names.includes(t)) throw new Error(`makeAdapter: unknown target module "${t}" (one of ${names.join(", ")})`);
  const targets = [...new Set(asked)].sort();
  const config = adapterConfig(options, targets);
  const entries: { name: string; shape: number[]; bound: number }[] = [];
  for (const w of linears) {
    if (!targets.includes(moduleOf(w))) continue;
    const [outF, inF] = w.shape as [number, number];
    const p = `base_model.model.${w.name.slice(0, -".weight".length)}`;
    entries.push({ name: `${p}.lora_A.weight`, shape: [r, inF], bound: 1 / Math.sqrt(inF) });
    entries.push({ name: `${p}.lora_B.weight`, shape: [outF, r], bound: 0.5 / Math.sqrt(r) });
  }
  entries.sort(byName);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const e of entries) {
    const rng = weightStream(seed, e.name);
    const data = new Float32Array(elements(e.shape));
    for (let k = 0; k < data.length; k++) data[k] = symmetric(rng) * e.bound;
    tensors[e.name] = { dtype: "F32", shape: e.shape, data };
  }
  return {
    config,
    tensors: entries.map(({ name, shape }) => ({ name, shape })),
    files: {
      "adapter_config.json": new TextEncoder().encode(jsonText(config)),
      "adapter_model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    },
  };
}
