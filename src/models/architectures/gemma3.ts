// Gemma3ForCausalLM (model_type gemma3_text; transformers' modeling_gemma3 text model) = Gemma 2 +
//   - q_norm and k_norm: Gemma RMSNorm (1 + w) over head_dim of each query and key head, before RoPE;
//   - layer_types: v5's list, else v4's sliding_window_pattern (default 6): layer i sliding iff (i + 1) % pattern != 0;
//   - two RoPEs: full_attention layers rope_theta (default 1e6) with rope_scaling (e.g. linear), sliding ones
//     rope_local_base_freq (default 1e4) with default rope; v5 nests both in rope_parameters by layer type;
//   - soft-capping off by default (final_logit_softcapping null). transformers 5.18's Gemma3Attention does not pass
//     attn_logit_softcapping to attention at all, so it is not applied here either, whatever the config says.
import type { Architecture, RopeSpec } from "../architecture.ts";
import type { RopeScaling } from "../../ops/rope.ts";
import { Gemma2, gemmaCausal, patternLayers } from "./gemma2.ts";

/** Gemma 3's rope: { full_attention, sliding_attention } each { rope_theta, rope_scaling | null }. */
function gemma3Rope(raw: Record<string, unknown>, fail: (why: string) => never): { global: RopeSpec; local: RopeSpec } {
  const params = (raw.rope_parameters ?? null) as Record<string, unknown> | null;
  const nested = params && typeof params === "object" && ("full_attention" in params || "sliding_attention" in params);
  const entry = (p: unknown, theta: number, scaling: unknown): RopeSpec => {
    const d = (p ?? {}) as RopeScaling & { rope_theta?: unknown };
    const t = d.rope_theta ?? theta;
    if (typeof t !== "number" || !(t > 0)) fail(`rope_theta must be a positive number, got ${JSON.stringify(t)}`);
    const s = (scaling ?? (p && ((d.rope_type ?? d.type ?? "default") !== "default") ? p : null)) as RopeScaling | null;
    return { rope_theta: t as number, rope_scaling: s && (s.rope_type ?? s.type ?? "default") !== "default" ? s : null };
  };
  const theta = (raw.rope_theta ?? 1e6) as number;
  const localTheta = (raw.rope_local_base_freq ?? 1e4) as number;
  if (nested) {
    // v5: rope_parameters by layer type; a v4 rope_scaling on top updates full_attention's (convert_rope_params_to_dict).
    return {
      global: entry(params!.full_attention, theta, raw.rope_scaling),
      local: entry(params!.sliding_attention, localTheta, null),
    };
  }
  return { global: entry(params, theta, raw.rope_scaling), local: { rope_theta: localTheta, rope_scaling: null } };
}

export const Gemma3: Architecture = {
  ...Gemma2,
  name: "Gemma3ForCausalLM",
  defaults: { ...Gemma2.defaults, max_position_embeddings: 131072, rope_theta: 1e6 },
  keys: (read) => {
    gemmaCausal(read);
    const pattern = read.optInt("sliding_window_pattern", 6) ?? 6;
    const rope = gemma3Rope(read.raw, read.fail);
    return {
      attention_bias: read.bool("attention_bias", false),
      mlp_bias: false,
      sliding_window: read.optInt("sliding_window", 4096),
      layer_types: read.layerTypes() ?? patternLayers(read.layers, pattern),
      sliding_rope: rope.local,
      rope: rope.global,
      query_pre_attn_scalar: read.optNum("query_pre_attn_scalar", 256),
      attn_logit_softcapping: null,
      final_logit_softcapping: read.optNum("final_logit_softcapping", null),
    };
  },
  layer: (c) => {
    const modules = [...Gemma2.layer(c)];
    const o = modules.findIndex((m) => m.path === "self_attn.o_proj");
    modules.splice(o + 1, 0, { kind: "norm", path: "self_attn.q_norm", size: c.head_dim }, { kind: "norm", path: "self_attn.k_norm", size: c.head_dim });
    return modules;
  },
};
