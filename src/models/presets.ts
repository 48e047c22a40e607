// The Hugging Face models webtune is built and measured against, by Hub id: their config.json as published on
// the Hub (transformers 4.x spelling: rope_theta / rope_scaling / torch_dtype at the top level, Gemma 3's
// rope_local_base_freq and sliding_window_pattern, Phi-3's partial_rotary_factor and longrope factors), and
// their parameter counts and weight bytes computed from the config alone.
//
// One source for every place that needs a real model's shape: tools/random-model.ts (random weights of a real
// config), bench/model.ts (load time, peak memory and LoRA speed per preset) and the page's model list
// (demo/: "Gemma 3 270M · 268M params · 536 MB bf16"). The configs are the Hub files' keys and values, not a
// digest of them: a preset's config goes through parseConfig like any downloaded config.json, so what works
// on a preset works on the real checkpoint. Where a value could not be checked against a copy of the
// published file it says so next to it.
//
// parameterCount(config) counts what transformers' *ForCausalLM holds for the config: the embedding, each
// decoder layer (attention with its biases and q/k norms, the gated MLP, the layer's norms), the final norm
// and the LM head unless tied (tie_word_embeddings, whose default differs by model type as in transformers).
// It reads the config directly (no architecture description needed), so it is right for architectures the
// loader does not describe yet; tests/models/presets.test.ts checks it against weightsOf where one exists and
// against the published counts (SmolLM2-135M 134,515,008; Qwen3-0.6B 596,049,920; Gemma 3 270M 268,098,176;
// Llama-3.2-1B 1,235,814,400; Phi-4-mini 3,836,021,760; ...).
//
// Nothing here imports above src/models (the page and the tools import it).

/** A real model: its Hub id, a short key, a display name and its published config.json. */
export interface ModelPreset {
  /** The Hub id, e.g. "HuggingFaceTB/SmolLM2-135M". */
  id: string;
  /** A short key, e.g. "smollm2-135m" (bench file names, make-model --arch). */
  name: string;
  /** A display name, e.g. "SmolLM2 135M". */
  label: string;
  /** config.json as published on the Hub. */
  config: Readonly<Record<string, unknown>>;
  /** The Hub gates the files behind accepting the license: downloading needs an access token. */
  gated?: boolean;
}

// ---------------------------------------------------------------------------------------------------------
// The configs. Key order is the Hub files' (alphabetical, as transformers' to_json_string writes them).

const SMOLLM2_135M = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: "silu",
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.42.3",
  use_cache: true,
  vocab_size: 49152,
};

// The same layout as SmolLM2-135M; the sizes and the 361,821,120 parameters are confirmed by third-party
// copies. initializer_range (0.02) and transformers_version could not be checked against the Hub file
// (they do not change the model).
const SMOLLM2_360M = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: "silu",
  hidden_size: 960,
  initializer_range: 0.02, // unconfirmed
  intermediate_size: 2560,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 15,
  num_hidden_layers: 32,
  num_key_value_heads: 5,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.42.3", // unconfirmed
  use_cache: true,
  vocab_size: 49152,
};

// Qwen2's q/k/v always carry biases (no attention_bias key, as in the Hub file).
const QWEN2_5_0_5B = {
  architectures: ["Qwen2ForCausalLM"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: "silu",
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: "qwen2",
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.40.1",
  use_cache: true,
  use_mrope: false,
  use_sliding_window: false,
  vocab_size: 151936,
};

const QWEN3_0_6B = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: "qwen3",
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

/** Gemma 3's layer pattern: every `pattern`-th layer global, the rest sliding (transformers' default layer_types). */
function gemmaLayerTypes(layers: number, pattern: number): string[] {
  return Array.from({ length: layers }, (_, i) => ((i + 1) % pattern === 0 ? "full_attention" : "sliding_attention"));
}

// The 270M file (transformers 4.55) spells the pattern out as layer_types and keeps `_sliding_window_pattern`;
// tie_word_embeddings is absent (Gemma3TextConfig defaults it to true).
const GEMMA3_270M = {
  _sliding_window_pattern: 6,
  architectures: ["Gemma3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  eos_token_id: 1,
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  hidden_size: 640,
  initializer_range: 0.02,
  intermediate_size: 2048,
  layer_types: gemmaLayerTypes(18, 6),
  max_position_embeddings: 32768,
  model_type: "gemma3_text",
  num_attention_heads: 4,
  num_hidden_layers: 18,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000.0,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: 512,
  torch_dtype: "bfloat16",
  transformers_version: "4.55.0.dev0",
  use_bidirectional_attention: false,
  use_cache: true,
  vocab_size: 262144,
};

// The 1B file (March 2025) predates layer_types: sliding_window_pattern 6 gives the same pattern.
// transformers_version: "4.50.0.dev0" as recalled; a re-saved third-party copy says "4.52.4" (no effect).
const GEMMA3_1B_IT = {
  architectures: ["Gemma3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  cache_implementation: "hybrid",
  eos_token_id: [1, 106],
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  hidden_size: 1152,
  initializer_range: 0.02,
  intermediate_size: 6912,
  max_position_embeddings: 32768,
  model_type: "gemma3_text",
  num_attention_heads: 4,
  num_hidden_layers: 26,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: 512,
  sliding_window_pattern: 6,
  torch_dtype: "bfloat16",
  transformers_version: "4.50.0.dev0",
  use_cache: true,
  vocab_size: 262144,
};

const LLAMA_3_2_1B = {
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "llama",
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: "llama3" },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.45.0.dev0",
  use_cache: true,
  vocab_size: 128256,
};

// SmolLM3-3B (the instruct/reasoning model): every 4th layer is NoPE (no_rope_layers 0 = no rotary).
// The sizes, ids, rope_theta, no_rope_layers, pretraining_tp and pad id are confirmed by third-party copies;
// layer_types / max_window_layers / use_cache false / transformers_version are as recalled and unconfirmed
// (none changes the weights). Whether the Hub file spells tie_word_embeddings is unconfirmed: it is written
// here because SmolLM3Config defaults it to true and the 3.08B published count needs it tied.
const SMOLLM3_3B = {
  architectures: ["SmolLM3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: null,
  eos_token_id: 128012,
  hidden_act: "silu",
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 11008,
  layer_types: Array.from({ length: 36 }, () => "full_attention"), // unconfirmed
  max_position_embeddings: 65536,
  max_window_layers: 28, // unconfirmed
  mlp_bias: false,
  model_type: "smollm3",
  no_rope_layer_interval: 4,
  no_rope_layers: Array.from({ length: 36 }, (_, i) => ((i + 1) % 4 === 0 ? 0 : 1)),
  num_attention_heads: 16,
  num_hidden_layers: 36,
  num_key_value_heads: 4,
  pad_token_id: 128004,
  pretraining_tp: 2,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 5000000.0,
  sliding_window: null,
  tie_word_embeddings: true, // see above
  torch_dtype: "bfloat16",
  transformers_version: "4.54.0.dev0", // unconfirmed
  use_cache: false, // unconfirmed
  use_sliding_window: false,
  vocab_size: 128256,
};

// Phi-4-mini-instruct: Phi3ForCausalLM with partial rotary (0.75 of head_dim 128 = 96 dims, 48 frequencies)
// and longrope. The 48 long factors and 48 short factors (all 1.0) agree across several independent copies of
// the Hub file (mlx-community conversions, keras-hub presets, a model-shapes dump); eos_token_id 199999 is the
// original file's (an mlx conversion has 200020, <|end|>, which generation_config.json adds).
const PHI4_MINI_LONG_FACTOR = [
  1, 1.118320672, 1.250641126, 1.398617824, 1.564103225, 1.74916897, 1.956131817, 2.187582649, 2.446418898, 2.735880826, 3.059592084,
  3.421605075, 3.826451687, 4.279200023, 4.785517845, 5.351743533, 5.984965424, 6.693110555, 7.485043894, 8.370679318, 9.36110372,
  10.4687158, 11.70738129, 13.09260651, 14.64173252, 16.37415215, 18.31155283, 20.47818807, 22.90118105, 25.61086418, 28.64115884,
  32.03, 32.1, 32.13, 32.23, 32.6, 32.61, 32.64, 32.66, 32.7, 32.71, 32.93, 32.97, 33.28, 33.49, 33.5, 44.16, 47.77,
];
const PHI4_MINI = {
  _name_or_path: "Phi-4-mini-instruct",
  architectures: ["Phi3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  auto_map: {
    AutoConfig: "configuration_phi3.Phi3Config",
    AutoModelForCausalLM: "modeling_phi3.Phi3ForCausalLM",
    AutoTokenizer: "Xenova/gpt-4o",
  },
  bos_token_id: 199999,
  embd_pdrop: 0.0,
  eos_token_id: 199999,
  full_attn_mod: 1,
  hidden_act: "silu",
  hidden_size: 3072,
  initializer_range: 0.02,
  intermediate_size: 8192,
  interpolate_factor: 1,
  lm_head_bias: false,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: "phi3",
  num_attention_heads: 24,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  original_max_position_embeddings: 4096,
  pad_token_id: 199999,
  partial_rotary_factor: 0.75,
  resid_pdrop: 0.0,
  rms_norm_eps: 1e-5,
  rope_scaling: { long_factor: PHI4_MINI_LONG_FACTOR, short_factor: Array.from({ length: 48 }, () => 1.0), type: "longrope" },
  rope_theta: 10000.0,
  sliding_window: 262144,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.45.0",
  use_cache: true,
  vocab_size: 200064,
};

function deepFreeze<T>(v: T): T {
  if (v && typeof v === "object") {
    for (const x of Object.values(v as object)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** The presets, smallest first. */
export const MODEL_PRESETS: readonly ModelPreset[] = deepFreeze([
  { id: "HuggingFaceTB/SmolLM2-135M", name: "smollm2-135m", label: "SmolLM2 135M", config: SMOLLM2_135M },
  { id: "google/gemma-3-270m", name: "gemma-3-270m", label: "Gemma 3 270M", config: GEMMA3_270M, gated: true },
  { id: "HuggingFaceTB/SmolLM2-360M", name: "smollm2-360m", label: "SmolLM2 360M", config: SMOLLM2_360M },
  { id: "Qwen/Qwen2.5-0.5B", name: "qwen2.5-0.5b", label: "Qwen2.5 0.5B", config: QWEN2_5_0_5B },
  { id: "Qwen/Qwen3-0.6B", name: "qwen3-0.6b", label: "Qwen3 0.6B", config: QWEN3_0_6B },
  { id: "google/gemma-3-1b-it", name: "gemma-3-1b-it", label: "Gemma 3 1B IT", config: GEMMA3_1B_IT, gated: true },
  { id: "meta-llama/Llama-3.2-1B", name: "llama-3.2-1b", label: "Llama 3.2 1B", config: LLAMA_3_2_1B, gated: true },
  { id: "HuggingFaceTB/SmolLM3-3B", name: "smollm3-3b", label: "SmolLM3 3B", config: SMOLLM3_3B },
  { id: "microsoft/Phi-4-mini-instruct", name: "phi-4-mini-instruct", label: "Phi-4 mini instruct", config: PHI4_MINI },
] satisfies ModelPreset[]);

/** The preset with this Hub id or short name (case-insensitive), or undefined. */
export function findPreset(idOrName: string): ModelPreset | undefined {
  const key = idOrName.trim().toLowerCase();
  return MODEL_PRESETS.find((p) => p.id.toLowerCase() === key || p.name === key);
}

/** The preset with this Hub id or short name; an error naming the known ones otherwise. */
export function presetOf(idOrName: string): ModelPreset {
  const preset = findPreset(idOrName);
  if (!preset) {
    throw new Error(`no model preset "${idOrName}"; the presets are ${MODEL_PRESETS.map((p) => `${p.name} (${p.id})`).join(", ")}`);
  }
  return preset;
}

/** A deep, mutable copy of a preset's published config.json, by Hub id or short name. */
export function presetConfig(idOrName: string): Record<string, unknown> {
  return structuredClone(presetOf(idOrName).config) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------
// Sizes.

/** Parameter counts of a config's *ForCausalLM, by part, and the bytes of its weights stored once. */
export interface ModelSize {
  /** Every parameter stored (a tied LM head counted once). */
  parameters: number;
  /** model.embed_tokens: vocab_size x hidden_size. */
  embedding: number;
  /** All decoder layers together. */
  layers: number;
  /** One decoder layer. */
  per_layer: number;
  /** The final norm. */
  norm: number;
  /** lm_head (0 when tied to the embedding). */
  head: number;
  tied: boolean;
  /** Bytes of the weights in float32 and in bfloat16 (= float16). */
  bytes: { float32: number; bfloat16: number };
}

/** transformers' tie_word_embeddings default for a model type (PretrainedConfig's true unless the config class says false). */
function tiedByDefault(modelType: string): boolean {
  return /^(gemma|gemma2|gemma3|gemma3_text|smollm3)$/.test(modelType);
}

/**
 * The parameter count of a config.json (transformers 4.x or 5 keys) as transformers' *ForCausalLM holds it:
 * embedding, decoder layers (q/k/v/o with biases where the architecture has them, Qwen3 / Gemma 3 q/k norms,
 * the gated MLP, two norms a layer or four for Gemma 2/3), the final norm and an untied LM head.
 */
export function parameterCount(config: Readonly<Record<string, unknown>>): ModelSize {
  const int = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(`parameterCount: config \`${key}\` must be a positive integer, got ${JSON.stringify(config[key])}`);
    }
    return v;
  };
  const modelType = String(config.model_type ?? "");
  const H = int("hidden_size");
  const V = int("vocab_size");
  const L = int("num_hidden_layers");
  const I = int("intermediate_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  const hd = config.head_dim == null ? H / heads : int("head_dim");
  if (!Number.isInteger(hd)) throw new Error(`parameterCount: hidden_size ${H} is not a multiple of num_attention_heads ${heads}; give head_dim`);
  const q = heads * hd;
  const kv = kvHeads * hd;

  let attention = H * q + 2 * H * kv + q * H;
  if (modelType === "qwen2") attention += q + 2 * kv; // q/k/v biases, always
  else if (config.attention_bias === true && modelType !== "phi3") attention += q + 2 * kv + H; // q/k/v/o biases
  if (/^(qwen3|gemma3|gemma3_text)$/.test(modelType)) attention += 2 * hd; // q_norm, k_norm over head_dim

  let mlp = 3 * H * I;
  if (config.mlp_bias === true && modelType !== "phi3") mlp += 2 * I + H;
  const norms = (/^(gemma2|gemma3|gemma3_text)$/.test(modelType) ? 4 : 2) * H;

  const tied = typeof config.tie_word_embeddings === "boolean" ? config.tie_word_embeddings : tiedByDefault(modelType);
  const per_layer = attention + mlp + norms;
  const embedding = V * H;
  const layers = L * per_layer;
  const head = tied ? 0 : V * H;
  const parameters = embedding + layers + H + head;
  return { parameters, embedding, layers, per_layer, norm: H, head, tied, bytes: { float32: 4 * parameters, bfloat16: 2 * parameters } };
}

/** The size of a preset, by Hub id or short name. */
export function presetSize(idOrName: string): ModelSize {
  return parameterCount(presetOf(idOrName).config);
}

/** "268M" / "1.24B": a parameter count as model names give it (3 significant digits). */
export function formatParameters(n: number): string {
  const r = n >= 1000 ? Number(n.toPrecision(3)) : n; // rounded first: 999,885,952 is "1B", not "1000M"
  if (r >= 1e9) return `${+(r / 1e9).toPrecision(3)}B`;
  if (r >= 1e6) return `${+(r / 1e6).toPrecision(3)}M`;
  if (r >= 1e3) return `${+(r / 1e3).toPrecision(3)}K`;
  return String(r);
}

/** "536 MB" / "2.47 GB": decimal units, as the Hub lists file sizes. */
export function formatBytes(n: number): string {
  if (n >= 0.9995e9) return `${+(n / 1e9).toPrecision(3)} GB`;
  if (n >= 1e6) return `${Math.round(n / 1e6)} MB`;
  if (n >= 1e3) return `${Math.round(n / 1e3)} kB`;
  return `${n} B`;
}

/** "Gemma 3 270M · 268M params · 536 MB bf16": a preset as the page lists it. */
export function presetLabel(preset: ModelPreset): string {
  const size = parameterCount(preset.config);
  return `${preset.label} · ${formatParameters(size.parameters)} params · ${formatBytes(size.bytes.bfloat16)} bf16`;
}
