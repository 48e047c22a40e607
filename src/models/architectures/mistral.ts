// MistralForCausalLM = Llama without biases (MistralAttention and MistralMLP have none: no attention_bias or
// mlp_bias keys), with a sliding window (default 4096) on every layer: MistralAttention passes config.sliding_window
// whatever layer_types says (transformers warns that Mistral ignores layer_types).
import { uniformLayers, type Architecture } from "../architecture.ts";
import { Llama } from "./llama.ts";

export const Mistral: Architecture = {
  ...Llama,
  name: "MistralForCausalLM",
  defaults: { ...Llama.defaults, max_position_embeddings: 4096 * 32 },
  keys: (read) => {
    const window = read.optInt("sliding_window", 4096);
    return { attention_bias: false, mlp_bias: false, sliding_window: window, layer_types: uniformLayers(read.layers, window === null ? "full_attention" : "sliding_attention") };
  },
};
