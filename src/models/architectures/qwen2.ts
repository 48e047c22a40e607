// Qwen2ForCausalLM = Llama with biases on q, k and v_proj always (its configs have no attention_bias key), none
// on o_proj or the MLP; the sliding window only with use_sliding_window, on layers i >= max_window_layers.
import type { ArchitectureKeys, Architecture, ConfigReader } from "../architecture.ts";
import { Llama, llamaLayer } from "./llama.ts";

/**
 * Qwen2Config / Qwen3Config: sliding_window counts only when use_sliding_window (else it is None), and layer i is
 * sliding iff the window is set and i >= max_window_layers (default 28), unless v5's layer_types says.
 */
export function qwenWindow(read: ConfigReader): Pick<ArchitectureKeys, "sliding_window" | "layer_types"> {
  const window = read.bool("use_sliding_window", false) ? read.optInt("sliding_window", 4096) : null;
  const from = read.optInt("max_window_layers", 28) ?? 28;
  const layer_types = read.layerTypes() ?? Array.from({ length: read.layers }, (_, i) => (window !== null && i >= from ? "sliding_attention" : "full_attention"));
  return { sliding_window: window, layer_types };
}

export const Qwen2: Architecture = {
  ...Llama,
  name: "Qwen2ForCausalLM",
  defaults: { ...Llama.defaults, max_position_embeddings: 32768 },
  keys: (read) => ({ attention_bias: true, mlp_bias: false, ...qwenWindow(read) }),
  layer: (c) => llamaLayer(c, (name) => name === "q_proj" || name === "k_proj" || name === "v_proj"),
};
