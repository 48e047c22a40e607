// Gemma2ForCausalLM (transformers' modeling_gemma2): Llama's skeleton with
//   - Gemma's RMSNorm x·rsqrt(mean x² + eps)·(1 + w): weights are stored as w and held as 1 + w (the load/save
//     transforms below, for every norm: the four of each layer and model.norm), so the model runs webtune's rmsnorm;
//   - "sandwich" norms: input_layernorm → attention → post_attention_layernorm → residual, then
//     pre_feedforward_layernorm → MLP → post_feedforward_layernorm → residual (the layer's extra modules);
//   - GeGLU: gelu_pytorch_tanh(gate) · up, read from hidden_activation (default gelu_pytorch_tanh; hidden_act, which
//     Hub configs also carry, is not what the model uses);
//   - embeddings × sqrt(hidden_size) (Gemma2TextScaledWordEmbedding), attention scale query_pre_attn_scalar^-0.5,
//     attention scores soft-capped by attn_logit_softcapping (default 50), logits by final_logit_softcapping
//     (default 30);
//   - layer_types: v5's list, else sliding on even layers ((i + 1) % 2 != 0), full on odd ones, with sliding_window
//     (default 4096); q, k, v and o_proj biased with attention_bias; tied embeddings by default; head_dim 256.
import type { Architecture, ConfigReader, LayerType, WeightSpec, WeightTransforms } from "../architecture.ts";
import { Llama, llamaLayer } from "./llama.ts";

/** Gemma's norms: stored w, computed with 1 + w (f32, as Gemma2RMSNorm's 1.0 + weight.float()). */
export const GEMMA_NORM_OFFSET: WeightTransforms = {
  load: (w: WeightSpec, data: Float32Array) => (w.role === "norm" ? data.map((x) => 1 + x) : data),
  save: (w: WeightSpec, data: Float32Array) => (w.role === "norm" ? data.map((x) => x - 1) : data),
};

/** Gemma2/3: use_bidirectional_attention (an encoder use) is not what a causal LM runs. */
export function gemmaCausal(read: ConfigReader): void {
  if (read.bool("use_bidirectional_attention", false)) {
    read.fail("use_bidirectional_attention true is not supported (webtune trains causal LMs); set it to false or remove it");
  }
}

/** Sliding iff (i + 1) % pattern != 0 (Gemma 2: pattern 2; Gemma 3's sliding_window_pattern, default 6). */
export function patternLayers(n: number, pattern: number): LayerType[] {
  return Array.from({ length: n }, (_, i) => ((i + 1) % pattern !== 0 ? "sliding_attention" : "full_attention"));
}

export const Gemma2: Architecture = {
  ...Llama,
  name: "Gemma2ForCausalLM",
  defaults: {
    max_position_embeddings: 8192, rms_norm_eps: 1e-6, rope_theta: 10000, head_dim: 256, tie_word_embeddings: true,
    bos_token_id: 2, eos_token_id: 1, pad_token_id: 0,
  },
  activations: ["gelu_pytorch_tanh"],
  activation: { key: "hidden_activation", default: "gelu_pytorch_tanh" },
  scaleEmbeddings: true,
  transforms: GEMMA_NORM_OFFSET,
  keys: (read) => {
    gemmaCausal(read);
    return {
      attention_bias: read.bool("attention_bias", false),
      mlp_bias: false,
      sliding_window: read.optInt("sliding_window", 4096),
      layer_types: read.layerTypes() ?? patternLayers(read.layers, 2),
      query_pre_attn_scalar: read.optNum("query_pre_attn_scalar", 256),
      attn_logit_softcapping: read.optNum("attn_logit_softcapping", 50),
      final_logit_softcapping: read.optNum("final_logit_softcapping", 30),
    };
  },
  layer: (c) => [
    ...llamaLayer(c, (name) => ["q_proj", "k_proj", "v_proj", "o_proj"].includes(name) && c.attention_bias),
    { kind: "norm", path: "pre_feedforward_layernorm", size: c.hidden_size },
    { kind: "norm", path: "post_feedforward_layernorm", size: c.hidden_size },
  ],
};
