// Hugging Face config.json, read and checked against the architectures webtune has a description of: the keys
// keep their Hugging Face names; the family's keys are read here, each architecture's own by its description.
import { LAYER_TYPES, type Activation, type Architecture, type ConfigReader, type LayerType, type LlamaFamilyConfig } from "./architecture.ts";
import { Gemma2 } from "./architectures/gemma2.ts";
import { Gemma3 } from "./architectures/gemma3.ts";
import { Llama } from "./architectures/llama.ts";
import { Mistral } from "./architectures/mistral.ts";
import { Phi3 } from "./architectures/phi3.ts";
import { Qwen2 } from "./architectures/qwen2.ts";
import { Qwen3 } from "./architectures/qwen3.ts";
import { SmolLM3 } from "./architectures/smollm3.ts";
import { ropeScalingTypes, type RopeScaling } from "../ops/rope.ts";

/** Every architecture webtune runs: adding one means writing its description and listing it here. */
const ARCHITECTURES: Architecture[] = [Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, SmolLM3, Phi3];

/** The architectures webtune runs, by their `architectures` name in config.json. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = ARCHITECTURES.map((a) => a.name);

/**
 * Adds the description of an architecture of one's own (often a delta of a built-in one:
 * `{ ...Llama, name: "MyForCausalLM", … }`), as transformers' AutoModelForCausalLM.register does; from_pretrained
 * then loads checkpoints whose config.json names it.
 */
export function registerArchitecture(arch: Architecture): void {
  if (ARCHITECTURES.some((a) => a.name === arch.name)) throw new Error(`registerArchitecture: "${arch.name}" already has a description`);
  ARCHITECTURES.push(arch);
  (SUPPORTED_ARCHITECTURES as string[]).push(arch.name);
}

/** The description of a parsed config's architecture. */
export function architectureOf(cfg: Pick<LlamaFamilyConfig, "architecture">): Architecture {
  const arch = ARCHITECTURES.find((a) => a.name === cfg.architecture);
  if (!arch) throw new Error(`no description of architecture "${cfg.architecture}"; webtune supports ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  return arch;
}

/** Parses config.json (`where` names the file in messages). */
export function parseConfig(raw: Record<string, unknown>, where = "config.json"): LlamaFamilyConfig {
  const fail = (why: string): never => {
    throw new Error(`${where}: ${why}`);
  };
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) fail("is not a JSON object");
  const archs = raw.architectures;
  const names = Array.isArray(archs) ? archs.map(String) : [];
  const arch = names.map((n) => ARCHITECTURES.find((a) => a.name === n)).find((a) => a !== undefined);
  if (!arch) {
    fail(
      `unsupported architecture ${names.length ? names.map((a) => `"${a}"`).join(", ") : "(no `architectures` key)"}; ` +
        `webtune supports ${SUPPORTED_ARCHITECTURES.join(", ")}`,
    );
  }
  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) fail(`\`${key}\` must be a positive integer, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) fail(`\`${key}\` must be a positive number, got ${JSON.stringify(raw[key])}`);
    return v as number;
  };
  const optId = (key: string): number | null => {
    const v = raw[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "number" || !Number.isInteger(v)) fail(`\`${key}\` must be an integer or null, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const { defaults } = arch!;
  const layers = int("num_hidden_layers");
  const read: ConfigReader = {
    raw,
    layers,
    max_position_embeddings: int("max_position_embeddings", defaults.max_position_embeddings),
    fail,
    bool(key, fallback) {
      const v = raw[key];
      if (v === undefined || v === null) return fallback;
      if (typeof v !== "boolean") fail(`\`${key}\` must be true or false, got ${JSON.stringify(v)}`);
      return v as boolean;
    },
    optInt(key, fallback) {
      if (!(key in raw)) return fallback;
      return raw[key] === null ? null : int(key);
    },
    optNum(key, fallback) {
      if (!(key in raw)) return fallback;
      return raw[key] === null ? null : num(key, 0);
    },
    layerTypes() {
      const v = raw.layer_types;
      if (v === undefined || v === null) return null;
      if (!Array.isArray(v) || v.length !== layers || !v.every((t) => LAYER_TYPES.includes(t as LayerType))) {
        fail(`\`layer_types\` must list "full_attention" or "sliding_attention" for each of the ${layers} layers, got ${JSON.stringify(v)}`);
      }
      return [...(v as LayerType[])];
    },
  };
  const hidden = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = raw.head_dim == null ? (defaults.head_dim ?? hidden / heads) : int("head_dim");
  if (!Number.isInteger(headDim)) fail(`hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}; give head_dim`);
  const actKey = arch!.activation?.key ?? "hidden_act";
  const act = String(raw[actKey] ?? arch!.activation?.default ?? "silu") as Activation;
  if (!arch!.activations.includes(act)) fail(`${actKey} "${act}" is not supported (${arch!.name} runs with ${arch!.activations.map((a) => `"${a}"`).join(", ")})`);
  const keys = arch!.keys(read);
  // transformers v5 nests rope_theta/rope_scaling in `rope_parameters`; v4 has them at the top level.
  const ropeParams = (raw.rope_parameters ?? null) as (RopeScaling & { rope_theta?: number }) | null;
  const scaling = keys.rope
    ? keys.rope.rope_scaling
    : ((raw.rope_scaling ?? (ropeParams && (ropeParams.rope_type ?? ropeParams.type ?? "default") !== "default" ? ropeParams : null)) as RopeScaling | null);
  for (const s of [scaling, keys.sliding_rope?.rope_scaling ?? null]) {
    const type = s ? (s.rope_type ?? s.type ?? "default") : "default";
    if (!ropeScalingTypes.includes(type)) fail(`rope_scaling type "${type}" is not supported (supported: ${ropeScalingTypes.join(", ")})`);
  }
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? "default") : "default";
  const tokenId = (key: "bos_token_id" | "eos_token_id" | "pad_token_id") => (key in raw ? optId(key) : (defaults[key] ?? null));
  const eos = raw.eos_token_id;
  if (!(eos == null || Number.isInteger(eos) || (Array.isArray(eos) && eos.every(Number.isInteger)))) {
    fail(`\`eos_token_id\` must be an integer, a list of integers or null, got ${JSON.stringify(eos)}`);
  }
  return {
    architecture: arch!.name,
    model_type: String(raw.model_type ?? ""),
    vocab_size: int("vocab_size"),
    hidden_size: hidden,
    intermediate_size: int("intermediate_size"),
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: num("rms_norm_eps", defaults.rms_norm_eps),
    rope_theta: keys.rope?.rope_theta ?? ropeParams?.rope_theta ?? num("rope_theta", defaults.rope_theta),
    rope_scaling: type === "default" ? null : scaling,
    max_position_embeddings: read.max_position_embeddings,
    // Llama, Mistral, Qwen2/3 and Phi-3 default to untied, Gemma and SmolLM3 to tied (their config classes).
    tie_word_embeddings: read.bool("tie_word_embeddings", defaults.tie_word_embeddings ?? false),
    attention_bias: keys.attention_bias,
    mlp_bias: keys.mlp_bias,
    sliding_window: keys.sliding_window,
    layer_types: keys.layer_types ?? Array.from({ length: layers }, (): LayerType => "full_attention"),
    use_rope: keys.use_rope ?? Array.from({ length: layers }, () => true),
    sliding_rope: keys.sliding_rope ?? null,
    partial_rotary_factor: keys.partial_rotary_factor ?? 1,
    original_max_position_embeddings: keys.original_max_position_embeddings ?? null,
    query_pre_attn_scalar: keys.query_pre_attn_scalar ?? null,
    attn_logit_softcapping: keys.attn_logit_softcapping ?? null,
    final_logit_softcapping: keys.final_logit_softcapping ?? null,
    hidden_act: act,
    bos_token_id: tokenId("bos_token_id"),
    eos_token_id: (("eos_token_id" in raw ? eos : defaults.eos_token_id) ?? null) as number | number[] | null,
    pad_token_id: tokenId("pad_token_id"),
    raw,
  };
}
