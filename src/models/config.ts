// Hugging Face config.json, read and checked against the architectures webtune has a description of: the keys
// keep their Hugging Face names; the family's keys are read here, each architecture's own by its description.
import type { Activation, Architecture, ConfigReader, LlamaFamilyConfig } from "./architecture.ts";
import { Llama } from "./architectures/llama.ts";
import { Mistral } from "./architectures/mistral.ts";
import { Qwen2 } from "./architectures/qwen2.ts";
import { Qwen3 } from "./architectures/qwen3.ts";
import type { RopeScaling } from "../ops/rope.ts";

/** Every architecture webtune runs: adding one means writing its description and listing it here. */
const ARCHITECTURES: Architecture[] = [Llama, Mistral, Qwen2, Qwen3];

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
  const read: ConfigReader = {
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
  };
  const { defaults } = arch!;
  const hidden = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  if (heads % kvHeads !== 0) fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  const headDim = raw.head_dim == null ? (defaults.head_dim ?? hidden / heads) : int("head_dim");
  if (!Number.isInteger(headDim)) fail(`hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}; give head_dim`);
  const act = String(raw.hidden_act ?? "silu") as Activation;
  if (!arch!.activations.includes(act)) fail(`hidden_act "${act}" is not supported (${arch!.name} runs with ${arch!.activations.map((a) => `"${a}"`).join(", ")})`);
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
  return {
    architecture: arch!.name,
    model_type: String(raw.model_type ?? ""),
    vocab_size: int("vocab_size"),
    hidden_size: hidden,
    intermediate_size: int("intermediate_size"),
    num_hidden_layers: int("num_hidden_layers"),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: num("rms_norm_eps", defaults.rms_norm_eps),
    rope_theta: ropeParams?.rope_theta ?? num("rope_theta", defaults.rope_theta),
    rope_scaling: type === "default" ? null : scaling,
    max_position_embeddings: int("max_position_embeddings", defaults.max_position_embeddings),
    // Every one of these four configs defaults to untied in transformers.
    tie_word_embeddings: raw.tie_word_embeddings === true,
    ...arch!.keys(read),
    hidden_act: act,
    bos_token_id: optId("bos_token_id"),
    eos_token_id: (eos ?? null) as number | number[] | null,
    pad_token_id: optId("pad_token_id"),
    raw,
  };
}
