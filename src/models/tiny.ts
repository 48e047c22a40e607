// The embedded default model's weights: a tiny Llama (hidden 64, 2 layers, vocab 320, about 0.1 M parameters)
// with seeded random weights (init.ts), made in memory on any host from the Llama description. Its tokenizer
// is src/data/tiny_tokenizer.ts; src/data/tiny.ts joins the two into a model directory.
import { architectureOf, parseConfig } from "./config.ts";
import { weightsOf } from "./architecture.ts";
import { tensorValues } from "./init.ts";
import { writeSafetensors, type SafetensorsEntry } from "./safetensors.ts";

/** The sizes of the tiny presets (tools/random-model.ts), whose token ids match the tiny tokenizer. */
export const TINY_SIZES = Object.freeze({
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 400,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-6,
});

/**
 * config.json of the tiny Llama presets, sizes apart: the keys of a real Hub Llama config (legacy rope_theta /
 * rope_scaling / torch_dtype spelling, which most Hub checkpoints have and transformers 5 still reads), with the
 * tiny tokenizer's <|endoftext|> (bos, pad) and <|im_end|> (eos).
 */
export const TINY_LLAMA_CONFIG: Readonly<Record<string, unknown>> = Object.freeze({
  architectures: ["LlamaForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 2,
  pad_token_id: 0,
  hidden_act: "silu",
  initializer_range: 0.02,
  mlp_bias: false,
  model_type: "llama",
  pretraining_tp: 1,
  rope_scaling: null,
  rope_theta: 10000.0,
  tie_word_embeddings: true,
  transformers_version: "4.46.0",
  use_cache: true,
  ...TINY_SIZES,
});

/**
 * What the embedded tiny model is made from: TINY_LLAMA_CONFIG (the "llama" preset of tools/random-model.ts)
 * resized, and its seed. makeModel(dir, DEFAULT_TINY_CONFIG) writes the same files.
 */
export const DEFAULT_TINY_CONFIG = Object.freeze({
  arch: "llama",
  seed: 2026,
  config: Object.freeze({ hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 320 }),
});

/** Options of tinyModelFiles: the seed, and config.json keys merged into DEFAULT_TINY_CONFIG's (undefined removes one). */
export interface TinyModelOptions {
  seed?: number;
  config?: Record<string, unknown>;
  /** Include the tokenizer's files (default true). */
  tokenizer?: boolean;
}

/** Keys sorted at every depth, as transformers and PEFT write JSON. */
export function sortKeys(o: unknown): unknown {
  if (Array.isArray(o)) return o.map(sortKeys);
  if (o && typeof o === "object") {
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeys((o as Record<string, unknown>)[k])]),
    );
  }
  return o;
}

/** JSON as transformers and PEFT write it: sorted keys, indent 2, float-typed keys as floats (floatKeys), a final newline. */
export function jsonText(o: unknown): string {
  return floatKeys(JSON.stringify(sortKeys(o), null, 2)) + "\n";
}

/**
 * transformers 5's strict config classes refuse an int where a field is typed float (Gemma 2's
 * final_logit_softcapping 30.0, which JSON.stringify writes as 30): integral values of these keys are written
 * with ".0", as Python's json does.
 */
const FLOAT_KEYS = ["attn_logit_softcapping", "final_logit_softcapping", "rms_norm_eps", "initializer_range"];

export function floatKeys(text: string): string {
  return text.replace(new RegExp(`^(\\s*"(?:${FLOAT_KEYS.join("|")})": )(-?\\d+)(,?)$`, "gm"), "$1$2.0$3");
}


/** generation_config.json of a model with `config`: transformers' _from_model_config copy of the token ids. */
export function generationConfig(config: Record<string, unknown>): Record<string, unknown> {
  const gen: Record<string, unknown> = { _from_model_config: true, transformers_version: config.transformers_version };
  for (const k of ["bos_token_id", "eos_token_id", "pad_token_id"]) if (config[k] != null) gen[k] = config[k];
  return gen;
}

/** config.json with `overrides` merged (an undefined value removes the key), in key order. */
export function mergeConfig(base: Readonly<Record<string, unknown>>, overrides: Record<string, unknown>): Record<string, unknown> {
  const config: Record<string, unknown> = { ...base, ...overrides };
  for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
  return sortKeys(config) as Record<string, unknown>;
}

/** The tiny model's config.json, generation_config.json and model.safetensors (f32, tensors in name order). */
export function tinyModelWeights(options: Omit<TinyModelOptions, "tokenizer"> = {}): Record<string, Uint8Array> {
  const seed = options.seed ?? DEFAULT_TINY_CONFIG.seed;
  const config = mergeConfig(TINY_LLAMA_CONFIG, { torch_dtype: "float32", ...DEFAULT_TINY_CONFIG.config, ...options.config });
  const cfg = parseConfig(config, "the tiny model's config");
  const tensors: Record<string, SafetensorsEntry> = {};
  for (const w of weightsOf(architectureOf(cfg), cfg).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    tensors[w.name] = { dtype: "F32", shape: w.shape, data: tensorValues(seed, w) };
  }
  const text = (o: unknown) => new TextEncoder().encode(jsonText(o));
  return {
    "config.json": text(config),
    "generation_config.json": text(generationConfig(config)),
    "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
  };
}
