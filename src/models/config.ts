// Hugging Face config.json, read and checked against the architectures webtune has a description of: the keys
// keep their Hugging Face names; the family's keys are read here, each architecture's own by its description.
// A config (or a GGUF file's metadata, which ggufConfig turns into one) is untrusted input: every size is bounded
// (CONFIG_LIMITS) before anything is allocated and every value checked (rope thetas and scalings, eps, soft-caps
// positive and finite, heads dividing, an even rotary head_dim), the error naming the key.
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

/**
 * The largest value parseConfig accepts for each size, checked before anything is allocated (a config.json or a
 * GGUF header is untrusted input: `num_hidden_layers: 1e9` must fail at once, naming the key, not exhaust memory).
 * Each is far past any released model (Llama 3.1 405B: 126 layers, hidden 16384, intermediate 53248; Gemma 3:
 * vocabulary 262144, head_dim 256; Llama 4: a 10M-token context). Any other integer key: at most 2^31 - 1.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  num_hidden_layers: 1024,
  hidden_size: 131072,
  intermediate_size: 1048576,
  vocab_size: 16777216,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 2048,
  max_position_embeddings: 1 << 26,
  original_max_position_embeddings: 1 << 26,
  sliding_window: 1 << 26,
};

/** Elements of one layer tensor at most (WGSL indexes a binding with u32, and none binds more than 4 GiB). */
export const MAX_TENSOR_ELEMENTS = 2 ** 32 - 1;

/** Where a config key came from when it is not config.json's own (GGUF metadata keys: gguf.ts' ggufConfig sets it). */
export const CONFIG_KEY_ORIGIN: unique symbol = Symbol.for("webtune.config_key_origin") as never;

/** Parses config.json (`where` names the file in messages). */
export function parseConfig(raw: Record<string, unknown>, where = "config.json"): LlamaFamilyConfig {
  const origin = (raw && typeof raw === "object" ? (raw as { [CONFIG_KEY_ORIGIN]?: Record<string, string> })[CONFIG_KEY_ORIGIN] : undefined) ?? {};
  const fail = (why: string): never => {
    // A GGUF file's message names its metadata key beside the config.json name it maps to.
    const m = /^`([a-z_]+)`/.exec(why);
    const from = m && origin[m[1]!] ? ` (the GGUF metadata key ${origin[m[1]!]})` : "";
    throw new Error(`${where}: ${why}${from}`);
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
    const max = CONFIG_LIMITS[key] ?? 2 ** 31 - 1;
    if ((v as number) > max) fail(`\`${key}\` is ${v}, past the ${max} webtune accepts (no model has one that large: a corrupt or hostile config)`);
    return v as number;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) fail(`\`${key}\` must be a positive finite number, got ${JSON.stringify(raw[key])}`);
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
  for (const key of ["rope_parameters", "rope_scaling"]) {
    const v = raw[key];
    if (v !== undefined && v !== null && (typeof v !== "object" || Array.isArray(v))) fail(`\`${key}\` must be an object or null, got ${JSON.stringify(v)}`);
  }
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
  const cfg: LlamaFamilyConfig = {
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
  checkValues(cfg, fail);
  return cfg;
}

/** A positive finite number, or a failure naming `key`. */
function positive(v: unknown, key: string, fail: (why: string) => never): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) fail(`\`${key}\` must be a positive finite number, got ${JSON.stringify(v)}`);
  return v as number;
}

/** The rope_scaling / rope_parameters numbers each scaling type reads, checked (the tables are built from them). */
function checkRopeScaling(s: RopeScaling | null, key: string, fail: (why: string) => never): void {
  if (s === null) return;
  if (typeof s !== "object" || Array.isArray(s)) fail(`\`${key}\` must be an object, got ${JSON.stringify(s)}`);
  for (const k of ["factor", "low_freq_factor", "high_freq_factor", "attention_factor"] as const) {
    if (s[k] !== undefined && s[k] !== null) positive(s[k], `${key}.${k}`, fail);
  }
  const L = s.original_max_position_embeddings;
  if (L !== undefined && L !== null && !(Number.isInteger(L) && L > 0 && L <= CONFIG_LIMITS.original_max_position_embeddings!)) {
    fail(`\`${key}.original_max_position_embeddings\` must be a positive integer of at most ${CONFIG_LIMITS.original_max_position_embeddings}, got ${JSON.stringify(L)}`);
  }
  const type = s.rope_type ?? s.type ?? "default";
  if (type === "linear" && s.factor == null) fail(`\`${key}.factor\` is needed by rope_type "linear"`);
  if (type === "llama3") {
    for (const k of ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"] as const) {
      if (s[k] == null) fail(`\`${key}.${k}\` is needed by rope_type "llama3"`);
    }
    if (!(s.high_freq_factor! > s.low_freq_factor!)) fail(`\`${key}.high_freq_factor\` (${s.high_freq_factor}) must be greater than low_freq_factor (${s.low_freq_factor})`);
  }
  for (const k of ["short_factor", "long_factor"] as const) {
    const v = s[k];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v) || v.length > CONFIG_LIMITS.head_dim! || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
      fail(`\`${key}.${k}\` must be a list of positive finite numbers (one per rotary pair), got ${Array.isArray(v) ? `${v.length} entries` : JSON.stringify(v)}`);
    }
  }
}

/**
 * The parsed values checked together, before anything is allocated: finite positive rope thetas and scalings, eps,
 * soft-caps and scalars; partial_rotary_factor in (0, 1]; an even rotary head_dim; windows and layer tensors
 * within bounds.
 */
function checkValues(c: LlamaFamilyConfig, fail: (why: string) => never): void {
  const scalingKey = c.raw.rope_scaling != null ? "rope_scaling" : "rope_parameters";
  positive(c.rope_theta, c.raw.rope_parameters != null && typeof c.raw.rope_parameters === "object" && "rope_theta" in (c.raw.rope_parameters as object) ? "rope_parameters.rope_theta" : "rope_theta", fail);
  checkRopeScaling(c.rope_scaling, scalingKey, fail);
  if (c.sliding_rope) {
    positive(c.sliding_rope.rope_theta, "rope_parameters.sliding_attention.rope_theta", fail);
    checkRopeScaling(c.sliding_rope.rope_scaling, "rope_parameters.sliding_attention", fail);
  }
  if (c.rms_norm_eps >= 1) fail(`\`rms_norm_eps\` must be a small positive number (below 1), got ${c.rms_norm_eps}`);
  for (const key of ["query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping"] as const) {
    if (c[key] !== null) positive(c[key], key, fail);
  }
  const prf = c.partial_rotary_factor;
  if (typeof prf !== "number" || !(prf > 0 && prf <= 1)) fail(`\`partial_rotary_factor\` must be a number in (0, 1], got ${JSON.stringify(prf)}`);
  const rotary = Math.trunc(c.head_dim * prf);
  if (c.use_rope.some(Boolean) && (rotary < 2 || (prf === 1 && c.head_dim % 2 !== 0))) {
    fail(`\`head_dim\` ${c.head_dim} (with partial_rotary_factor ${prf}) gives ${rotary} rotary dims; RoPE needs an even head_dim of at least 2`);
  }
  if (c.sliding_window !== null && !(Number.isInteger(c.sliding_window) && c.sliding_window > 0 && c.sliding_window <= CONFIG_LIMITS.sliding_window!)) {
    fail(`\`sliding_window\` must be a positive integer of at most ${CONFIG_LIMITS.sliding_window} or null, got ${JSON.stringify(c.sliding_window)}`);
  }
  if (c.original_max_position_embeddings !== null && c.original_max_position_embeddings > CONFIG_LIMITS.original_max_position_embeddings!) {
    fail(`\`original_max_position_embeddings\` is ${c.original_max_position_embeddings}, past the ${CONFIG_LIMITS.original_max_position_embeddings} webtune accepts`);
  }
  // The largest layer tensor: q/o_proj [H·D, C], the MLP's [I, C] (fused: [2I, C], [(H + 2KVH)·D, C]).
  const C = c.hidden_size;
  const widest = Math.max(2 * c.intermediate_size, (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim);
  if (widest * C > MAX_TENSOR_ELEMENTS) {
    fail(
      `\`hidden_size\` ${C} with intermediate_size ${c.intermediate_size} / ${c.num_attention_heads} heads of head_dim ${c.head_dim} makes a layer tensor of ` +
        `${widest * C} elements, past the ${MAX_TENSOR_ELEMENTS} one GPU buffer binding can index`,
    );
  }
}
