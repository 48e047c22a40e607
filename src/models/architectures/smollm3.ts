// SmolLM3ForCausalLM (transformers' modeling_smollm3) = Llama (attention_bias on q, k, v and o_proj; mlp_bias) +
// NoPE layers: no_rope_layers[i] = 1 applies RoPE in layer i, 0 skips it (default: every no_rope_layer_interval-th
// layer, default 4, skips it: use iff (i + 1) % interval != 0). A sliding window only with use_sliding_window and
// sliding_window, on the layers without RoPE (v5: layer_types). Tied embeddings by default; rope_theta 2e6.
import type { Architecture } from "../architecture.ts";
import { Llama } from "./llama.ts";

export const SmolLM3: Architecture = {
  ...Llama,
  name: "SmolLM3ForCausalLM",
  defaults: {
    max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 2000000, head_dim: null, tie_word_embeddings: true,
    bos_token_id: 128000, eos_token_id: 128001, pad_token_id: 128004,
  },
  keys: (read) => {
    const n = read.layers;
    const raw = read.raw.no_rope_layers;
    let useRope: boolean[];
    if (raw === undefined || raw === null) {
      const interval = read.optInt("no_rope_layer_interval", 4) ?? 4;
      useRope = Array.from({ length: n }, (_, i) => (i + 1) % interval !== 0);
    } else {
      if (!Array.isArray(raw) || raw.length !== n || !raw.every((x) => x === 0 || x === 1 || typeof x === "boolean")) {
        read.fail(`\`no_rope_layers\` must list 0 or 1 for each of the ${n} layers (1: the layer uses RoPE), got ${JSON.stringify(raw)}`);
      }
      useRope = (raw as unknown[]).map((x) => Boolean(x));
    }
    const window = read.bool("use_sliding_window", false) ? read.optInt("sliding_window", null) : null;
    return {
      attention_bias: read.bool("attention_bias", false),
      mlp_bias: read.bool("mlp_bias", false),
      sliding_window: window,
      use_rope: useRope,
      layer_types: read.layerTypes() ?? useRope.map((r) => (window !== null && !r ? "sliding_attention" : "full_attention")),
    };
  },
};
