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
// under transformers' names as they are stored: no architecture here renames or permutes one.
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
  /** The whole config.json as read. */
  raw: Record<string, unknown>;
}

/** The gate activations of the gated MLP webtune implements (silu: SwiGLU). */
export type Activation = "silu";
/** The norms webtune implements. */
export type Norm = "rmsnorm";

/** A module of a decoder layer, by its path under model.layers.{i} (self_attn.q_proj, input_layernorm, …). */
export type ModuleSpec =
  /** nn.Linear: weight [out, in], bias [out] when `bias`. */
  | { kind: "linear"; path: string; out: number; in: number; bias: boolean }
  /** The architecture's norm over the last dim: weight [size]. */
  | { kind: "norm"; path: string; size: number };

/** Reads one config.json key with its default (errors name the key). */
export interface ConfigReader {
  bool(key: string, fallback: boolean): boolean;
  /** A positive integer, or null. */
  optInt(key: string, fallback: number | null): number | null;
}

/** The settings an architecture reads from its own config.json keys. */
export interface ArchitectureKeys {
  attention_bias: boolean;
  mlp_bias: boolean;
  sliding_window: number | null;
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
  };
  readonly norm: Norm;
  /** The hidden_act values it accepts. */
  readonly activations: readonly Activation[];
  /** Its own config.json keys (biases, sliding window), with its defaults. */
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
