// What an architecture is, as data: the config.json keys it reads and their defaults, the modules of its decoder
// layer (names, shapes, which linears have biases), its norm and activation. One description per architecture
// (src/models/architectures/), written as a delta of another where transformers' modular files do so, as
// llama.cpp keeps one tensor table per architecture. The config parser (config.ts), the loader (auto.ts), the
// model (llama.ts), PEFT's target matching and dtype "float16" (through the model's linears) and the fixture
// factory (tools/random-model.ts) all read it; nothing else names a weight.
//
// The Llama family shares one skeleton: model.embed_tokens [V, C] → model.layers.{i}.<layer modules> →
// model.norm [C] → lm_head [V, C], the head being the embedding itself when tie_word_embeddings
// (transformers' _tied_weights_keys: a stored lm_head.weight of a tied model is not read). Weights load and save
// under transformers' names as they are stored: no architecture here renames or permutes one (a description's
// `transforms` may map values, as Gemma's norms stored as w and computed with 1 + w).
//
// What varies between the members is data here, not code keyed on names: which modules a layer has (fused
// qkv_proj / gate_up_proj as Phi-3 stores them; Gemma's pre/post feed-forward norms, whose presence makes the
// layer a "sandwich"), the activation and the config key it is read from, whether embeddings are scaled by
// sqrt(hidden_size), and, parsed by `keys()` from the architecture's own config.json keys, each layer's
// attention type (sliding or full), RoPE (none, global, local) and the attention scale and soft-caps.
import type { RopeScaling } from "../ops/rope.ts";

/** config.json of a Llama-family model, parsed: the keys keep their Hugging Face names (others stay in `raw`). */
export interface LlamaFamilyConfig {
  /** config.json's `architectures` entry: the name of its description. */
  architecture: string;
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** The config's head_dim, else the architecture's default (hidden_size / num_attention_heads unless it has one). */
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  /** Whether q/k/v have biases (Qwen2 always; Llama and Qwen3 with attention_bias, which gives o_proj one too). */
  attention_bias: boolean;
  /** Llama's mlp_bias: biases on gate_proj, up_proj and down_proj. */
  mlp_bias: boolean;
  hidden_act: Activation;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  /** The sliding window, null when absent or off (attention is then full causal). */
  sliding_window: number | null;
  /**
   * Each layer's attention: "sliding_attention" layers see the last sliding_window tokens (when sliding_window is
   * set), "full_attention" ones everything before them. config.json's layer_types (transformers v5), else the
   * family's rule (Mistral, Phi-3: all sliding; Qwen2/3: sliding from max_window_layers on; Gemma 2: every other;
   * Gemma 3: sliding_window_pattern).
   */
  layer_types: LayerType[];
  /** Whether layer i applies RoPE (SmolLM3's no_rope_layers, 1 = rope); true for every layer elsewhere. */
  use_rope: boolean[];
  /**
   * The RoPE of sliding_attention layers where it differs from the others' (Gemma 3: rope_local_base_freq with
   * default rope, or v5's rope_parameters.sliding_attention); null: every layer uses rope_theta / rope_scaling.
   */
  sliding_rope: RopeSpec | null;
  /** Phi-3: RoPE on the first int(head_dim · factor) dims of each head only; 1 elsewhere. */
  partial_rotary_factor: number;
  /** longrope's pretraining length (Phi-3's top-level key): long factors once max(position)+1 exceeds it. */
  original_max_position_embeddings: number | null;
  /** The attention scale is query_pre_attn_scalar^-0.5 (Gemma); null: head_dim^-0.5. */
  query_pre_attn_scalar: number | null;
  /** Gemma 2: attention scores s become c·tanh(s / c); null: none. */
  attn_logit_softcapping: number | null;
  /** Gemma: the logits z become c·tanh(z / c) (in the loss too); null: none. */
  final_logit_softcapping: number | null;
  /** The whole config.json as read. */
  raw: Record<string, unknown>;
}

/** The gate activations of the gated MLP webtune implements (silu: SwiGLU; gelu_pytorch_tanh: GeGLU). */
export type Activation = "silu" | "gelu_pytorch_tanh";
/** One RoPE: its base and scaling (null: default rope). */
export interface RopeSpec {
  rope_theta: number;
  rope_scaling: RopeScaling | null;
}

/** transformers' layer_types values. */
export type LayerType = "full_attention" | "sliding_attention";
export const LAYER_TYPES: readonly LayerType[] = ["full_attention", "sliding_attention"];
/** The norms webtune implements. */
export type Norm = "rmsnorm";

/** A module of a decoder layer, by its path under model.layers.{i} (self_attn.q_proj, input_layernorm, …). */
export type ModuleSpec =
  /**
   * nn.Linear: weight [out, in], bias [out] when `bias`. A fused one (Phi-3's self_attn.qkv_proj, mlp.gate_up_proj)
   * is one linear (LoRA adapts it whole, as PEFT does) whose output the layer splits along the last dim.
   */
  | { kind: "linear"; path: string; out: number; in: number; bias: boolean }
  /** The architecture's norm over the last dim: weight [size]. */
  | { kind: "norm"; path: string; size: number };

/** Reads one config.json key with its default (errors name the key). */
export interface ConfigReader {
  /** The whole config.json. */
  readonly raw: Record<string, unknown>;
  /** num_hidden_layers, read. */
  readonly layers: number;
  /** max_position_embeddings, read (with the architecture's default). */
  readonly max_position_embeddings: number;
  bool(key: string, fallback: boolean): boolean;
  /** A positive integer, or null. */
  optInt(key: string, fallback: number | null): number | null;
  /** A positive number, or null (Gemma's soft-caps may be null). */
  optNum(key: string, fallback: number | null): number | null;
  /** config.json's layer_types when present (checked: one "full_attention"/"sliding_attention" per layer), else null. */
  layerTypes(): LayerType[] | null;
  /** Fails with a message naming config.json. */
  fail(why: string): never;
}

/** The settings an architecture reads from its own config.json keys (absent optional ones: the Llama defaults). */
export interface ArchitectureKeys {
  attention_bias: boolean;
  mlp_bias: boolean;
  sliding_window: number | null;
  /** Default: every layer "full_attention". */
  layer_types?: LayerType[];
  /** Default: every layer uses RoPE. */
  use_rope?: boolean[];
  sliding_rope?: RopeSpec | null;
  /** The (full-attention layers') RoPE, where the architecture reads it itself (Gemma 3); default: the family's parse. */
  rope?: RopeSpec;
  partial_rotary_factor?: number;
  original_max_position_embeddings?: number | null;
  query_pre_attn_scalar?: number | null;
  attn_logit_softcapping?: number | null;
  final_logit_softcapping?: number | null;
}

/** Every layer `type`. */
export function uniformLayers(n: number, type: LayerType): LayerType[] {
  return Array.from({ length: n }, () => type);
}

export interface Architecture {
  /** config.json's `architectures` entry (the transformers class). */
  readonly name: string;
  /** Defaults of the optional config.json keys, as its transformers config class has them. */
  readonly defaults: {
    max_position_embeddings: number;
    rms_norm_eps: number;
    rope_theta: number;
    /** null: hidden_size / num_attention_heads. */
    head_dim: number | null;
    /** Its config class's tie_word_embeddings default (false unless given). */
    tie_word_embeddings?: boolean;
    /** Its config class's token ids when config.json has none (null unless given). */
    bos_token_id?: number | null;
    eos_token_id?: number | null;
    pad_token_id?: number | null;
  };
  readonly norm: Norm;
  /** The activation values it accepts. */
  readonly activations: readonly Activation[];
  /**
   * The config.json key the activation is read from and its default (default: hidden_act, "silu"; Gemma reads
   * hidden_activation, and ignores hidden_act).
   */
  readonly activation?: { key: string; default: Activation };
  /**
   * Whether the embedding output is multiplied by sqrt(hidden_size), rounded to the embedding's dtype (Gemma's
   * ScaledWordEmbedding: torch.tensor(hidden_size**0.5).to(weight.dtype)).
   */
  readonly scaleEmbeddings?: boolean;
  /** Its own config.json keys (biases, sliding window, layer types, RoPE per layer, soft-caps), with its defaults. */
  readonly keys: (read: ConfigReader) => ArchitectureKeys;
  /** The modules of one decoder layer in transformers' state-dict order, sized for `cfg`. */
  readonly layer: (cfg: LlamaFamilyConfig) => readonly ModuleSpec[];
  /** How stored weights become the ones the model computes with, and back; absent: as stored. */
  readonly transforms?: WeightTransforms;
}

/**
 * A pair of inverse maps over a weight's f32 values: `load` from the file's tensor (transformers' state dict)
 * to what the model holds, `save` back, so that saved files and checkpoints hold transformers' tensors.
 * (Gemma's norms are stored as w and compute with 1 + w.) LoRA adapts linears as stored: a description keeps
 * its linear weights as they are.
 */
export interface WeightTransforms {
  load(w: WeightSpec, data: Float32Array): Float32Array;
  save(w: WeightSpec, data: Float32Array): Float32Array;
}

/** A stored tensor's values as the model holds them. */
export function fromStored(arch: Architecture, w: WeightSpec, data: Float32Array): Float32Array {
  return arch.transforms ? arch.transforms.load(w, data) : data;
}

/** A held weight's values as files store them. */
export function toStored(arch: Architecture, w: WeightSpec, data: Float32Array): Float32Array {
  return arch.transforms ? arch.transforms.save(w, data) : data;
}

/** One weight of the state dict. */
export interface WeightSpec {
  /** transformers' name (model.layers.0.self_attn.q_proj.weight). */
  name: string;
  shape: number[];
  /**
   * What it is: "linear" is a decoder linear's weight (what PEFT adapts and dtype "float16" stores as f16;
   * the LM head is not one, as for PEFT's all-linear), "bias" a linear's bias, "norm" a norm's weight.
   */
  role: "embedding" | "linear" | "bias" | "norm" | "lm_head";
}

export const EMBED_TOKENS = "model.embed_tokens.weight";
export const LM_HEAD = "lm_head.weight";
export const FINAL_NORM = "model.norm.weight";

/** The prefix of decoder layer `i`'s modules. */
export function layerPrefix(i: number): string {
  return `model.layers.${i}`;
}

/** The state dict a config implies, in transformers' order: embedding, each layer's modules, norm, head (unless tied). */
export function weightsOf(arch: Architecture, cfg: LlamaFamilyConfig): WeightSpec[] {
  const { vocab_size: V, hidden_size: C } = cfg;
  const out: WeightSpec[] = [{ name: EMBED_TOKENS, shape: [V, C], role: "embedding" }];
  const modules = arch.layer(cfg);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    for (const m of modules) {
      const p = `${layerPrefix(i)}.${m.path}`;
      if (m.kind === "norm") {
        out.push({ name: `${p}.weight`, shape: [m.size], role: "norm" });
        continue;
      }
      out.push({ name: `${p}.weight`, shape: [m.out, m.in], role: "linear" });
      if (m.bias) out.push({ name: `${p}.bias`, shape: [m.out], role: "bias" });
    }
  }
  out.push({ name: FINAL_NORM, shape: [C], role: "norm" });
  if (!cfg.tie_word_embeddings) out.push({ name: LM_HEAD, shape: [V, C], role: "lm_head" });
  return out;
}

/**
 * Whether a stored tensor that the description does not have is one transformers reads past: a tied model's
 * lm_head.weight, and the rotary_emb.inv_freq buffers that checkpoints before transformers 4.31 kept per layer
 * (modeling_utils' _adjust_missing_and_unexpected_keys).
 */
export function ignoredOnLoad(cfg: LlamaFamilyConfig, name: string): boolean {
  return (cfg.tie_word_embeddings && name === LM_HEAD) || /rotary_emb\.inv_freq$/.test(name);
}
