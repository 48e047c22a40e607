// Hugging Face config.json of the Llama family, read and checked: the keys keep their Hugging Face names.
import type { RopeScaling } from "../ops/rope.ts";

/** The architectures webtune runs, by their `architectures` name in config.json. */
export const SUPPORTED_ARCHITECTURES = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
] as const;
export type Architecture = (typeof SUPPORTED_ARCHITECTURES)[number];

/** config.json of a Llama-family model: the keys webtune reads (others are kept in `raw`). */
export interface LlamaFamilyConfig {
  architecture: Architecture;
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  /** hidden_size / num_attention_heads unless the config gives it (Qwen3 does). */
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  /**
   * Whether q/k/v have biases: Qwen2 always (its configs have no attention_bias key), else attention_bias.
   * The loader settles it from the weights themselves.
   */
  attention_bias: boolean;
  /** Qwen3: RMSNorm over head_dim of each query and key head, before RoPE. */
  qk_norm: boolean;
  hidden_act: string;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  /** Mistral's sliding window, null when absent (attention is then full causal). */
  sliding_window: number | null;
  /** The whole config.json as read. */
  raw: Record<string, unknown>;
}

/** Parses config.json (`where` names the file in messages). */
export function parseConfig(raw: Record<string, unknown>, where = "config.json"): LlamaFamilyConfig {
  const fail = (why: string): never => {
    throw new Error(`${where}: ${why}`);
  };
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) fail("is not a JSON object");
  const archs = raw.architectures;
  const names = Array.isArray(archs) ? archs.map(String) : [];
  const arch = names.find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a));
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
  const hidden = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = raw.head_dim == null ? hidden / heads : int("head_dim");
  if (!Number.isInteger(headDim)) fail(`hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}; give head_dim`);
  const act = String(raw.hidden_act ?? "silu");
  if (act !== "silu") fail(`hidden_act "${act}" is not supported (the Llama family uses "silu")`);
  // transformers v5 nests rope_theta/rope_scaling in `rope_parameters`; v4 has them at the top level.
  const ropeParams = (raw.rope_parameters ?? null) as (RopeScaling & { rope_theta?: number }) | null;
  const scaling = (raw.rope_scaling ?? (ropeParams && (ropeParams.rope_type ?? "default") !== "default" ? ropeParams : null)) as RopeScaling | null;
  const type = scaling ? (scaling.rope_type ?? scaling.type ?? "default") : "default";
  if (!["default", "linear", "llama3"].includes(type)) {
    fail(`rope_scaling type "${type}" is not supported (supported: default, linear, llama3)`);
  }
  const eos = raw.eos_token_id;
  if (!(eos == null || Number.isInteger(eos) || (Array.isArray(eos) && eos.every(Number.isInteger)))) {
    fail(`\`eos_token_id\` must be an integer, a list of integers or null, got ${JSON.stringify(eos)}`);
  }
  const sliding = raw.use_sliding_window === false ? null : optId("sliding_window");
  return {
    architecture: arch!,
    model_type: String(raw.model_type ?? ""),
    vocab_size: int("vocab_size"),
    hidden_size: hidden,
    intermediate_size: int("intermediate_size"),
    num_hidden_layers: int("num_hidden_layers"),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: num("rms_norm_eps", 1e-6),
    rope_theta: ropeParams?.rope_theta ?? num("rope_theta", 10000),
    rope_scaling: type === "default" ? null : scaling,
    max_position_embeddings: int("max_position_embeddings", 2048),
    // Every one of these four configs defaults to untied in transformers.
    tie_word_embeddings: raw.tie_word_embeddings === true,
    attention_bias: arch === "Qwen2ForCausalLM" ? true : raw.attention_bias === true,
    qk_norm: arch === "Qwen3ForCausalLM",
    hidden_act: act,
    bos_token_id: optId("bos_token_id"),
    eos_token_id: (eos ?? null) as number | number[] | null,
    pad_token_id: optId("pad_token_id"),
    sliding_window: sliding,
    raw,
  };
}
