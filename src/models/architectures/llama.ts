// LlamaForCausalLM (transformers' modeling_llama): the base of the family. LlamaAttention gives q, k, v and
// o_proj a bias when attention_bias; LlamaMLP gives gate, up and down_proj one when mlp_bias.
import type { Architecture, LlamaFamilyConfig, ModuleSpec } from "../architecture.ts";

/** The linears of a Llama decoder layer, by module name. */
export type LinearName = "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj";

/** The attention block's linears (the rest are the MLP's). */
const ATTENTION_LINEARS: readonly LinearName[] = ["q_proj", "k_proj", "v_proj", "o_proj"];

/** LlamaDecoderLayer's modules in its state-dict order (self_attn, mlp, then the two norms); `bias` picks the biased linears. */
export function llamaLayer(c: LlamaFamilyConfig, bias: (name: LinearName) => boolean): ModuleSpec[] {
  const { hidden_size: C, intermediate_size: I, num_attention_heads: H, num_key_value_heads: KVH, head_dim: D } = c;
  const linear = (block: string, name: LinearName, out: number, inF: number): ModuleSpec => ({ kind: "linear", path: `${block}.${name}`, out, in: inF, bias: bias(name) });
  return [
    linear("self_attn", "q_proj", H * D, C),
    linear("self_attn", "k_proj", KVH * D, C),
    linear("self_attn", "v_proj", KVH * D, C),
    linear("self_attn", "o_proj", C, H * D),
    linear("mlp", "gate_proj", I, C),
    linear("mlp", "up_proj", I, C),
    linear("mlp", "down_proj", C, I),
    { kind: "norm", path: "input_layernorm", size: C },
    { kind: "norm", path: "post_attention_layernorm", size: C },
  ];
}

export const Llama: Architecture = {
  name: "LlamaForCausalLM",
  defaults: { max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 10000, head_dim: null },
  norm: "rmsnorm",
  activations: ["silu"],
  keys: (read) => ({ attention_bias: read.bool("attention_bias", false), mlp_bias: read.bool("mlp_bias", false), sliding_window: null }),
  layer: (c) => llamaLayer(c, (name) => (ATTENTION_LINEARS.includes(name) ? c.attention_bias : c.mlp_bias)),
};
