// Qwen2ForCausalLM = Llama with biases on q, k and v_proj always (its configs have no attention_bias key), none
// on o_proj or the MLP; the sliding window only with use_sliding_window.
import type { Architecture, ConfigReader } from "../architecture.ts";
import { Llama, llamaLayer } from "./llama.ts";

/** Qwen2Config / Qwen3Config: sliding_window counts only when use_sliding_window. */
export function qwenSlidingWindow(read: ConfigReader): number | null {
  return read.bool("use_sliding_window", false) ? read.optInt("sliding_window", 4096) : null;
}

export const Qwen2: Architecture = {
  ...Llama,
  name: "Qwen2ForCausalLM",
  defaults: { ...Llama.defaults, max_position_embeddings: 32768 },
  keys: (read) => ({ attention_bias: true, mlp_bias: false, sliding_window: qwenSlidingWindow(read) }),
  layer: (c) => llamaLayer(c, (name) => name === "q_proj" || name === "k_proj" || name === "v_proj"),
};
