// MistralForCausalLM = Llama without biases (MistralAttention and MistralMLP have none: no attention_bias or
// mlp_bias keys), with a sliding window.
import type { Architecture } from "../architecture.ts";
import { Llama } from "./llama.ts";

export const Mistral: Architecture = {
  ...Llama,
  name: "MistralForCausalLM",
  defaults: { ...Llama.defaults, max_position_embeddings: 4096 * 32 },
  keys: (read) => ({ attention_bias: false, mlp_bias: false, sliding_window: read.optInt("sliding_window", 4096) }),
};
