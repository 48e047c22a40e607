// Qwen3ForCausalLM = Llama (attention_bias on q, k, v and o_proj; no MLP bias) + q_norm and k_norm: RMSNorm over
// head_dim of each query and key head, before RoPE. head_dim defaults to 128, not hidden_size / heads.
import type { Architecture } from "../architecture.ts";
import { Llama } from "./llama.ts";
import { Qwen2, qwenWindow } from "./qwen2.ts";

export const Qwen3: Architecture = {
  ...Llama,
  name: "Qwen3ForCausalLM",
  defaults: { ...Qwen2.defaults, head_dim: 128 },
  keys: (read) => ({ attention_bias: read.bool("attention_bias", false), mlp_bias: false, ...qwenWindow(read) }),
  layer: (c) => {
    const modules = [...Llama.layer(c)];
    const o = modules.findIndex((m) => m.path === "self_attn.o_proj");
    modules.splice(o + 1, 0, { kind: "norm", path: "self_attn.q_norm", size: c.head_dim }, { kind: "norm", path: "self_attn.k_norm", size: c.head_dim });
    return modules;
  },
};
