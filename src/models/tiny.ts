// The embedded default model: a tiny Llama (hidden 64, 2 layers, vocab 320, about 0.1 M parameters) with
// seeded random weights and the fixture tokenizer (ChatML), made in memory on any host, so a page, Deno or
// Node can train it with no download and no files:
//
//   const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
//   const tokenizer = await AutoTokenizer.from_pretrained(tinyModelSource());
//
// Its files are byte for byte those of `makeModel(dir, DEFAULT_TINY_CONFIG)` (tools/make-model.ts).
import { MemorySource, type ModelSource } from "./files.ts";
import { randomModelFiles, type RandomModelOptions } from "./random.ts";

/** What the embedded tiny model is made from: the llama preset resized, and its seed. */
export const DEFAULT_TINY_CONFIG = Object.freeze({
  arch: "llama",
  seed: 2026,
  config: Object.freeze({ hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: 2, vocab_size: 320 }),
}) satisfies RandomModelOptions;

/** Options of tinyModelFiles: DEFAULT_TINY_CONFIG with some keys changed (`config` keys merge into its config). */
export type TinyModelOptions = RandomModelOptions;

/**
 * The files of the tiny model (name → bytes): config.json, generation_config.json, model.safetensors and the
 * tokenizer's tokenizer.json, tokenizer_config.json and special_tokens_map.json.
 */
export function tinyModelFiles(options: TinyModelOptions = {}): Record<string, Uint8Array> {
  return randomModelFiles({ ...DEFAULT_TINY_CONFIG, ...options, config: { ...DEFAULT_TINY_CONFIG.config, ...options.config } });
}

let cached: Record<string, Uint8Array> | null = null;

/** The tiny model as a ModelSource, for AutoModelForCausalLM / AutoTokenizer.from_pretrained (the files are made once). */
export function tinyModelSource(): ModelSource {
  return new MemorySource((cached ??= tinyModelFiles()), "the embedded tiny model");
}
