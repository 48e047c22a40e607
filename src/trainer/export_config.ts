// A webtune run as a `trl sft --config` file: the YAML Python TRL (1.13, transformers 5) runs unchanged, so a
// run that outgrows one machine moves to a cluster (`trl sft --config sft.yaml`, with accelerate/DeepSpeed).
//
// What changes on the way out, and why (`trl sft` hands every key its dataclasses do not know to `accelerate
// launch`, which fails on it, so only TRL's keys may appear):
// - local data files become a `datasets:` mixture entry ({path: json|csv|parquet|text, data_files}), since TRL
//   sends a `dataset_name` to the Hub; a Hub id stays `dataset_name`;
// - the model is `model_name_or_path`, LoRA is ModelConfig's use_peft/lora_* keys, quantization its
//   load_in_4bit/bnb_4bit_* keys (model_init_kwargs is rebuilt by TRL's sft.py, so its dtype, revision and
//   quantization_config move to those keys);
// - keys transformers 5 removed (logging_dir, warmup_ratio → warmup_steps as a fraction, torch_dtype → dtype, …)
//   and webtune's own keys (save_gguf_adapter, …) are left out; tokens (hub_token, HF_TOKEN in env) never go out;
// - bf16 is written false unless asked for: webtune computes in f32, and TRL's default (bf16 on) fails on a
//   machine without bf16 support;
// - values are in TRL's types as PyYAML (YAML 1.1) reads them: floats with a decimal point ("2.0e-05", not
//   "2e-5", which PyYAML reads as a string), and strings such as "no" quoted (else PyYAML reads false).
import { stringify } from "yaml";
import { isDict, show } from "./config_checks.ts";
import { splitConfig } from "./config_file.ts";
import { isSecretKey, SFT_DEFAULTS, type ResolvedSFTConfig } from "./config.ts";
import { IGNORED, UNSUPPORTED } from "./config_keys.ts";

export interface ExportTRLConfigOptions {
  /** model_name_or_path when the mapping has none (webtune's embedded tiny model has no path TRL could load). */
  model_name_or_path?: string;
  /** dataset_name when the mapping has none (a local data file or a Hub id). */
  dataset_name?: string;
  /** How a local data file is written in the mixture (default: as given; the page passes its upload's name). */
  dataFile?: (path: string) => string;
  /** Comment lines at the top (without "# "); default: how to run the file; false: none. */
  header?: string[] | false;
  /** Told about every key that is set but left out (a webtune-only key, one transformers 5 removed, a token). */
  warn?: (note: string) => void;
}

/** datasets' packaged builders for local files, by extension. */
const BUILDERS: [RegExp, string][] = [
  [/\.jsonl?$/i, "json"],
  [/\.csv$/i, "csv"],
  [/\.parquet$/i, "parquet"],
  [/\.(txt|text)$/i, "text"],
];

/** Keys that belong to webtune's command line or trainer only: left out, with why. */
export const WEBTUNE_ONLY: Record<string, string> = {
  save_gguf_adapter: "webtune's GGUF adapter export (convert the PEFT adapter with llama.cpp's convert_lora_to_gguf.py)",
  export_config: "webtune's own flag",
  config: "the file itself",
  storage: "webtune's checkpoint storage",
  logging_dir: "transformers 5 has no logging_dir (TRL would reject it); set TENSORBOARD_LOGGING_DIR to move TensorBoard's files",
};

/**
 * Keys webtune reads that transformers 5 / TRL 1.13 do not have (older TrainingArguments, TRL's old ModelConfig):
 * left out (warmup_ratio and torch_dtype live on as warmup_steps and dtype).
 */
export const NOT_IN_TRL = [
  "warmup_ratio", "save_safetensors", "torchdynamo", "no_cuda", "use_mps_device", "use_ipex", "jit_mode_eval", "fsdp_min_num_params",
  "fsdp_transformer_layer_cls_to_wrap", "tpu_num_cores", "tpu_metrics_debug", "mp_parameters", "ray_scope", "push_to_hub_model_id",
  "push_to_hub_organization", "push_to_hub_token", "fp16_opt_level", "half_precision_backend", "fp16_backend", "use_legacy_prediction_loop",
  "past_index", "overwrite_output_dir", "include_inputs_for_metrics", "group_by_length", "adafactor", "torch_dtype", "use_flash_attention_2",
  "base_model_revision", "model_code_revision", "gradient_checkpointing_use_reentrant",
];

/** TrainingArguments keys typed float: written with a decimal point, so that PyYAML gives Python a float. */
const FLOAT_KEYS = new Set([
  "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "num_train_epochs", "lora_dropout", "test_split_size",
  "fraction", "router_aux_loss_coef", "label_smoothing_factor",
]);

/** TrainingArguments keys that hold a token (hub_token, push_to_hub_token; not eos_token or pad_token, which are in SFTConfig). */
const isTokenKey = (key: string) => /(^|_)token$/.test(key);
/** Environment variables that hold a secret (HF_TOKEN, WANDB_API_KEY, …). */
const isSecretEnv = (name: string) => /TOKEN|SECRET|PASSWORD|API_KEY/i.test(name);

/** `o` without the keys isSecretKey() names, in it and in the mappings and lists inside it (a copy); `warn` hears each path. */
function withoutSecretKeys(o: unknown, path: string, warn: (note: string) => void): unknown {
  if (Array.isArray(o)) return o.map((v, i) => withoutSecretKeys(v, `${path.replace(/\.$/, "")}[${i}].`, warn));
  if (!isDict(o)) return o;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (isSecretKey(k) && v != null && v !== "" && typeof v !== "boolean") {
      warn(`${path}${k} left out: tokens are never written to a config (set HF_TOKEN in the environment of the run)`);
    } else out[k] = withoutSecretKeys(v, `${path}${k}.`, warn);
  }
  return out;
}

/** The datasets builder of a local data file or URL, or null for a Hub id. Throws for a local path it cannot read. */
function builderOf(name: string): string | null {
  for (const [re, builder] of BUILDERS) if (re.test(name)) return builder;
  const local = /^(\.{0,2}[\\/]|~|[A-Za-z]:[\\/]|[a-z][a-z0-9+.-]*:\/\/)/i.test(name);
  if (!local) return null;
  throw new Error(`exportTRLConfig: cannot tell which datasets builder reads "${name}": give a .jsonl/.json, .csv, .parquet or .txt file, or a Hub dataset id`);
}

/** TRL's DatasetConfig keys after path, in its order. */
const MIXTURE_KEYS = ["name", "data_dir", "data_files", "split", "columns", "fraction"];

/** A DatasetMixtureConfig entry in TRL's keys ({path, name, data_dir, data_files, split, columns, fraction}). */
function mixtureEntry(entry: Record<string, unknown>, dataFile: (p: string) => string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const path = entry.path;
  if (typeof path !== "string" || !path) throw new Error(`exportTRLConfig: a datasets entry needs a path (a Hub id or a builder), got ${show(entry)}`);
  const builder = builderOf(path);
  const files = (f: unknown): unknown => (typeof f === "string" ? dataFile(f) : Array.isArray(f) ? f.map(files) : isDict(f) ? Object.fromEntries(Object.entries(f).map(([k, v]) => [k, files(v)])) : f);
  if (builder && entry.data_files == null) Object.assign(o, { path: builder, data_files: dataFile(path) });
  else o.path = path;
  for (const k of MIXTURE_KEYS) {
    const v = k === "columns" ? (entry.columns ?? entry.columns_to_keep) : entry[k];
    if (v != null && o[k] === undefined) o[k] = k === "data_files" ? files(v) : v;
  }
  o.split ??= "train";
  return Object.fromEntries(["path", ...MIXTURE_KEYS].filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}

/** A number as PyYAML reads it back with the same type: float keys always with a decimal point. */
function yamlNumber(v: number, float: boolean): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? ".nan" : v > 0 ? ".inf" : "-.inf";
  if (Number.isInteger(v) && !float && Math.abs(v) < 1e21) return String(v);
  const s = String(v);
  const [mantissa, exponent] = s.split("e");
  const m = mantissa!.includes(".") ? mantissa! : `${mantissa}.0`;
  return exponent === undefined ? m : `${m}e${exponent.startsWith("-") || exponent.startsWith("+") ? exponent : `+${exponent}`}`;
}

/** One value in block YAML, indented by `indent`; `key` picks the number type. */
function yamlValue(v: unknown, key: string, indent: string): string {
  if (v === null || v === undefined) return " null";
  if (typeof v === "boolean") return ` ${v}`;
  if (typeof v === "number") return ` ${yamlNumber(v, FLOAT_KEYS.has(key))}`;
  // YAML 1.1's quoting: "no", "on", "2024-01-01" and the like stay strings for PyYAML.
  if (typeof v === "string") return ` ${stringify(v, { version: "1.1", lineWidth: 0 }).trimEnd()}`;
  if (Array.isArray(v)) {
    if (!v.length) return " []";
    return v.map((x) => (isDict(x) ? `\n${indent}- ${yamlMapping(x, `${indent}  `).trimStart()}` : `\n${indent}-${yamlValue(x, key, `${indent}  `)}`)).join("");
  }
  if (isDict(v)) return Object.keys(v).length ? `\n${yamlMapping(v, `${indent}  `)}` : " {}";
  throw new Error(`exportTRLConfig: ${key}=${String(v)} has no YAML form`);
}

function yamlMapping(o: Record<string, unknown>, indent = ""): string {
  return Object.entries(o)
    .map(([k, v]) => `${indent}${/^[A-Za-z_][\w.-]*$/.test(k) ? k : JSON.stringify(k)}:${yamlValue(v, k, indent)}`)
    .join("\n");
}

/** TRL's one-element-list collapse (ModelConfig.__post_init__) makes ["q_proj"] a regex PEFT full-matches: write the regex that means the list. */
function targetModules(t: unknown): unknown {
  if (Array.isArray(t) && t.length === 1 && t[0] !== "all-linear") return `.*\\.${String(t[0]).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`;
  return Array.isArray(t) && t.length === 1 ? t[0] : t;
}

/**
 * The YAML `trl sft --config` runs unchanged, from a flat `trl sft` mapping (SFTConfig, model, dataset and LoRA
 * keys together: what splitConfig takes, e.g. a config file merged with command-line flags, or the page's
 * settings). The mapping is validated first (an SFTConfigError names every problem). Written: the model and
 * dataset (a local file as a `datasets:` mixture), LoRA and quantization as ModelConfig keys, every SFTConfig
 * key the mapping sets (resolved: in TRL's spelling and type), bf16, and TrainingArguments keys webtune ignores
 * but that mean something on a cluster (push_to_hub, hub_model_id, …). See the top of this file for what is
 * left out.
 */
export function exportTRLConfig(merged: Record<string, unknown>, options: ExportTRLConfigOptions = {}): string {
  const warn = options.warn ?? (() => {});
  const dataFile = options.dataFile ?? ((p: string) => p);
  const input: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(merged)) {
    if (v === undefined) continue;
    if (k in WEBTUNE_ONLY) {
      if (v !== null && v !== false) warn(`${k} left out: ${WEBTUNE_ONLY[k]}`);
    } else input[k] = v;
  }
  if (input.model_name_or_path == null && options.model_name_or_path) input.model_name_or_path = options.model_name_or_path;
  if (input.dataset_name == null && input.datasets == null && options.dataset_name) input.dataset_name = options.dataset_name;
  const cfg = splitConfig(input, "exportTRLConfig", { coerce: true });
  const { args, model, dataset } = cfg;
  const out: Record<string, unknown> = {};

  // ---- ModelConfig: the model, its dtype and quantization (sft.py rebuilds model_init_kwargs from these) ----
  if (!model.model_name_or_path) {
    throw new Error(
      "exportTRLConfig: no model_name_or_path: TRL loads the model from a directory or a Hub id (webtune's embedded tiny model has neither: " +
        "write its files with tinyModelFiles() or tools/make-model.ts and give that directory)",
    );
  }
  out.model_name_or_path = model.model_name_or_path;
  const init = (args.model_init_kwargs ?? {}) as Record<string, unknown>;
  const revision = input.model_revision ?? init.revision;
  if (revision != null && revision !== "main") out.model_revision = revision;
  const dtype = input.dtype ?? input.torch_dtype ?? init.dtype ?? init.torch_dtype;
  if (dtype != null) out.dtype = dtype;
  if (model.trust_remote_code || init.trust_remote_code === true) out.trust_remote_code = true;
  if (model.attn_implementation != null) out.attn_implementation = model.attn_implementation;
  const q = cfg.quantization_config ?? (isDict(init.quantization_config) ? (init.quantization_config as Record<string, unknown>) : null);
  if (q?.load_in_4bit === true) {
    out.load_in_4bit = true;
    out.bnb_4bit_quant_type = q.bnb_4bit_quant_type ?? "nf4";
    if (q.bnb_4bit_use_double_quant === true) out.use_bnb_nested_quant = true;
    if (q.bnb_4bit_quant_storage != null) out.bnb_4bit_quant_storage = q.bnb_4bit_quant_storage;
    if (q.bnb_4bit_compute_dtype != null && out.dtype === undefined) out.dtype = q.bnb_4bit_compute_dtype;
  } else if (q?.load_in_8bit === true) out.load_in_8bit = true;

  // ---- ScriptArguments / DatasetMixtureConfig ----
  const mixture = dataset.datasets;
  if (mixture && mixture.length) {
    out.datasets = mixture.map((e) => mixtureEntry(e, dataFile));
    if (dataset.dataset_name) warn(`dataset_name "${dataset.dataset_name}" left out: TRL ignores it when datasets is given (as webtune does)`);
  } else if (dataset.dataset_name) {
    const builder = builderOf(dataset.dataset_name);
    if (builder) out.datasets = [{ path: builder, data_files: dataFile(dataset.dataset_name), split: "train" }];
    else {
      out.dataset_name = dataset.dataset_name;
      if (dataset.dataset_config != null) out.dataset_config = dataset.dataset_config;
      if (dataset.dataset_train_split !== "train") out.dataset_train_split = dataset.dataset_train_split;
      if (dataset.dataset_test_split !== "test") out.dataset_test_split = dataset.dataset_test_split;
      if (dataset.dataset_streaming) out.dataset_streaming = true;
    }
  } else throw new Error("exportTRLConfig: no dataset: set dataset_name (a local data file or a Hub id) or a datasets mixture");
  if (out.datasets) {
    // A mixture is one "train" split (plus "test" with test_split_size), which sft.py indexes by these names.
    if (dataset.dataset_streaming) out.streaming = true;
    if (dataset.test_split_size != null) out.test_split_size = dataset.test_split_size;
    if (dataset.dataset_train_split !== "train") warn(`dataset_train_split "${dataset.dataset_train_split}" left out: a datasets mixture is the "train" split`);
    if (args.eval_strategy !== "no" && dataset.test_split_size == null) {
      warn(`eval_strategy "${args.eval_strategy}": TRL's sft.py evaluates on the mixture's "test" split, which exists only with test_split_size: set it (e.g. 0.1), or TRL stops with a KeyError`);
    }
  }

  // ---- ModelConfig: LoRA ----
  if (cfg.peft) {
    Object.assign(out, { use_peft: true, lora_r: cfg.peft.r, lora_alpha: cfg.peft.lora_alpha, lora_dropout: cfg.peft.lora_dropout });
    if (cfg.peft.target_modules != null) out.lora_target_modules = targetModules(cfg.peft.target_modules);
    if (cfg.peft.use_rslora) out.use_rslora = true;
  }

  // ---- SFTConfig / TrainingArguments ----
  const a = args as unknown as Record<string, unknown>;
  const sftKeys = Object.keys(SFT_DEFAULTS).filter((k) => k !== "model_init_kwargs" && k !== "warmup_ratio" && k !== "bf16" && k !== "fp16");
  out.output_dir = args.output_dir;
  for (const k of sftKeys) {
    if (k === "output_dir") continue;
    if (k === "warmup_steps" ? "warmup_steps" in input || "warmup_ratio" in input : k in input) out[k] = a[k];
  }
  // webtune's bf16/fp16 store the frozen base in f16 and compute in f32; TRL's are autocast mixed precision.
  out.bf16 = (args as ResolvedSFTConfig).bf16 === true;
  if (args.fp16) out.fp16 = true;
  for (const [k, v] of Object.entries(input)) {
    if (!(k in IGNORED) && !(k in UNSUPPORTED)) continue;
    if (isTokenKey(k)) {
      if (v != null && v !== "") warn(`${k} left out: tokens are never written to a config (set HF_TOKEN in the environment of the run)`);
    } else if (NOT_IN_TRL.includes(k)) {
      if (v != null && v !== false) warn(`${k}=${show(v)} left out: transformers 5 has no such TrainingArguments key`);
    } else out[k] = v;
  }
  if (Object.keys(cfg.env).length) {
    const env = Object.fromEntries(Object.entries(cfg.env).filter(([k]) => !isSecretEnv(k)));
    for (const k of Object.keys(cfg.env)) if (isSecretEnv(k)) warn(`env ${k} left out: tokens are never written to a config (set it in the environment of the run)`);
    if (Object.keys(env).length) out.env = env;
  }

  // Any other secret (a token inside model_init_kwargs, a dataset entry, a *_kwargs mapping) is left out too.
  const written = withoutSecretKeys(out, "", warn) as Record<string, unknown>;

  const header =
    options.header === false
      ? []
      : (options.header ?? [
          "A webtune run as a `trl sft` config (Python TRL 1.13, transformers 5):",
          "  trl sft --config sft.yaml         (accelerate/DeepSpeed: trl sft --config sft.yaml --num_processes 8 …)",
          "  webtune sft --config sft.yaml     (the same run on WebGPU)",
        ]);
  return `${header.map((l) => `# ${l}`.trimEnd()).join("\n")}${header.length ? "\n" : ""}${yamlMapping(written)}\n`;
}
