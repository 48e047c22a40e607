// Phi3ForCausalLM (transformers' modeling_phi3; Phi-3, Phi-3.5-mini, Phi-4-mini): Llama's computation with fused
// linears, stored as transformers has them (self_attn.o_proj, self_attn.qkv_proj, mlp.gate_up_proj, mlp.down_proj,
// in that state-dict order):
//   - qkv_proj [(H + 2·KVH)·D, C]: q, k, v are its output's first H·D, next KVH·D and last KVH·D columns;
//   - gate_up_proj [2I, C]: gate its first I outputs, up the last I; the MLP is down(up · act(gate));
// LoRA adapts each fused linear whole, as PEFT does (target names qkv_proj, gate_up_proj; all-linear has them).
// RoPE: partial_rotary_factor (top level in v4, in rope_parameters in v5; Phi-4-mini 0.75) and longrope
// (rope_scaling type "longrope", or "su"/"yarn" as older configs spell it) with the top-level
// original_max_position_embeddings (default 4096). No biases; sliding_window (default none; Phi-3-mini 2047) on
// every layer; untied by default (Phi-4-mini ties).
import type { Architecture } from "../architecture.ts";
import type { RopeScaling } from "../../ops/rope.ts";
import { Llama } from "./llama.ts";

export const Phi3: Architecture = {
  ...Llama,
  name: "Phi3ForCausalLM",
  defaults: {
    max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, head_dim: null, tie_word_embeddings: false,
    bos_token_id: 1, eos_token_id: 32000, pad_token_id: 32000,
  },
  keys: (read) => {
    const window = read.optInt("sliding_window", null);
    const params = read.raw.rope_parameters as Record<string, unknown> | null | undefined;
    const factor = read.raw.partial_rotary_factor ?? params?.partial_rotary_factor ?? 1;
    if (typeof factor !== "number" || !(factor > 0 && factor <= 1)) read.fail(`\`partial_rotary_factor\` must be a number in (0, 1], got ${JSON.stringify(factor)}`);
    // v4 rope_scaling wins over rope_parameters (convert_rope_params_to_dict); "su" and "yarn" are longrope.
    const given = (read.raw.rope_scaling ?? params ?? null) as RopeScaling | null;
    const type = given ? (given.rope_type ?? given.type ?? "default") : "default";
    const scaling = type === "default" ? null : type === "su" || type === "yarn" ? { ...given, rope_type: "longrope" } : given;
    const theta = params?.rope_theta ?? read.raw.rope_theta ?? 10000;
    if (typeof theta !== "number" || !(theta > 0)) read.fail(`\`rope_theta\` must be a positive number, got ${JSON.stringify(theta)}`);
    return {
      rope: { rope_theta: theta as number, rope_scaling: scaling },
      attention_bias: false,
      mlp_bias: false,
      sliding_window: window,
      layer_types: Array.from({ length: read.layers }, () => (window !== null ? "sliding_attention" : "full_attention")),
      partial_rotary_factor: factor as number,
      original_max_position_embeddings: read.optInt("original_max_position_embeddings", 4096),
    };
  },
  layer: (c) => {
    const { hidden_size: C, intermediate_size: I, num_attention_heads: H, num_key_value_heads: KVH, head_dim: D } = c;
    return [
      { kind: "linear", path: "self_attn.o_proj", out: C, in: H * D, bias: false },
      { kind: "linear", path: "self_attn.qkv_proj", out: (H + 2 * KVH) * D, in: C, bias: false },
      { kind: "linear", path: "mlp.gate_up_proj", out: 2 * I, in: C, bias: false },
      { kind: "linear", path: "mlp.down_proj", out: C, in: I, bias: false },
      { kind: "norm", path: "input_layernorm", size: C },
      { kind: "norm", path: "post_attention_layernorm", size: C },
    ];
  },
};
