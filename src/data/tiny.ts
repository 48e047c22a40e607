// The embedded default model: a tiny Llama with seeded random weights (src/models/tiny.ts) and the tiny
// byte-level BPE tokenizer with a ChatML template (tiny_tokenizer.ts), made in memory on any host, so a page,
// Deno or Node can train it with no download and no files:
//
//   const model = await AutoModelForCausalLM.from_pretrained(tinyModelSource());
//   const tokenizer = await AutoTokenizer.from_pretrained(tinyModelSource());
//
// Its files are byte for byte those of `makeModel(dir, DEFAULT_TINY_CONFIG)` (tools/make-model.ts).
import { MemorySource, type ModelSource } from "../io/source.ts";
import { tinyModelWeights, type TinyModelOptions } from "../models/tiny.ts";
import { TINY_TOKENIZER_FILES } from "./tiny_tokenizer.ts";

/**
 * The files of the tiny model (name → bytes): config.json, generation_config.json, model.safetensors and the
 * tokenizer's tokenizer.json, tokenizer_config.json and special_tokens_map.json.
 */
export function tinyModelFiles(options: TinyModelOptions = {}): Record<string, Uint8Array> {
  const files = tinyModelWeights(options);
  if (options.tokenizer ?? true) {
    for (const [name, text] of Object.entries(TINY_TOKENIZER_FILES)) files[name] = new TextEncoder().encode(text);
  }
  return files;
}

let cached: Record<string, Uint8Array> | null = null;

/** The tiny model as a ModelSource, for AutoModelForCausalLM / AutoTokenizer.from_pretrained (the files are made once). */
export function tinyModelSource(): ModelSource {
  return new MemorySource((cached ??= tinyModelFiles()), "the embedded tiny model");
}
