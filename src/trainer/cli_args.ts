// The keys of `trl sft` (its command line and --config files) that are not SFTConfig's: TRL's ModelConfig
// (the model and its LoRA keys), ScriptArguments and DatasetMixtureConfig (the dataset). splitConfig()
// returns them apart; sftConfig() names them when they are given to it.
import { bool, int, isDict, isNum, nonEmptyStr, nullable, num, oneOf, str, unitInterval, type Check } from "./config_checks.ts";
import { NO_DISTRIBUTED } from "./config_keys.ts";
import type { BitsAndBytesConfig } from "../models/quantization.ts";
import { DATASET_CONFIG_KEYS } from "../data/hub_datasets.ts";

/** The model to load, from TRL's ModelConfig. */
export interface ModelArgs {
  model_name_or_path: string | null;
  model_revision: string;
  /** "auto", "float32", "float16" or "bfloat16" (TRL's torch_dtype is read here too); see notes for bfloat16. */
  dtype: string | null;
  trust_remote_code: boolean;
  attn_implementation: string | null;
  /** TRL's quantization keys (get_quantization_config → BitsAndBytesConfig; see quantizationConfigOf). */
  load_in_4bit: boolean;
  load_in_8bit: boolean;
  bnb_4bit_quant_type: "nf4" | "fp4";
  use_bnb_nested_quant: boolean;
  bnb_4bit_quant_storage: string | null;
}

/** The dataset to load, from TRL's ScriptArguments and DatasetMixtureConfig. */
export interface DatasetArgs {
  dataset_name: string | null;
  dataset_config: string | null;
  dataset_train_split: string;
  dataset_test_split: string;
  dataset_streaming: boolean;
  /** TRL's dataset mixture (DatasetMixtureConfig.datasets): a list of {path, name, data_dir, data_files, split, columns, fraction}. */
  datasets: Record<string, unknown>[] | null;
  /** DatasetMixtureConfig.test_split_size: split the mixture into train and test (a fraction < 1, or a row count). */
  test_split_size: number | null;
}

export const MODEL_DEFAULTS: ModelArgs = {
  model_name_or_path: null, model_revision: "main", dtype: null, trust_remote_code: false, attn_implementation: null,
  load_in_4bit: false, load_in_8bit: false, bnb_4bit_quant_type: "nf4", use_bnb_nested_quant: false, bnb_4bit_quant_storage: null,
};
export const MODEL_CHECKS: Record<keyof ModelArgs | "torch_dtype", Check> = {
  model_name_or_path: nullable(nonEmptyStr),
  model_revision: nonEmptyStr,
  dtype: nullable(oneOf(["auto", "float32", "float16", "bfloat16"])),
  torch_dtype: nullable(oneOf(["auto", "float32", "float16", "bfloat16"])),
  trust_remote_code: bool,
  attn_implementation: nullable(str),
  load_in_4bit: bool,
  load_in_8bit: bool,
  bnb_4bit_quant_type: oneOf(["nf4", "fp4"]),
  use_bnb_nested_quant: bool,
  bnb_4bit_quant_storage: nullable(oneOf(["float16", "float32", "int8", "uint8", "float64", "bfloat16"])),
};

/**
 * TRL's get_quantization_config(model_args): the BitsAndBytesConfig from_pretrained gets (load_in_4bit: the quant
 * type, nested quant, dtype as compute dtype and quant_storage; load_in_8bit: only that), or null.
 */
export function quantizationConfigOf(m: ModelArgs): BitsAndBytesConfig | null {
  if (m.load_in_4bit) {
    return {
      load_in_4bit: true, bnb_4bit_compute_dtype: m.dtype, bnb_4bit_quant_type: m.bnb_4bit_quant_type,
      bnb_4bit_use_double_quant: m.use_bnb_nested_quant, bnb_4bit_quant_storage: m.bnb_4bit_quant_storage,
    };
  }
  return m.load_in_8bit ? { load_in_8bit: true } : null;
}

export const DATASET_DEFAULTS: DatasetArgs = {
  dataset_name: null, dataset_config: null, dataset_train_split: "train", dataset_test_split: "test", dataset_streaming: false, datasets: null, test_split_size: null,
};
export const DATASET_CHECKS: Record<keyof DatasetArgs | "streaming", Check> = {
  dataset_name: nullable(nonEmptyStr),
  dataset_config: nullable(str),
  dataset_train_split: nonEmptyStr,
  dataset_test_split: nonEmptyStr,
  dataset_streaming: bool,
  streaming: bool,
  datasets: (v) => {
    if (v === null) return null;
    if (!Array.isArray(v) || !v.every(isDict)) return `a list of mappings ({${DATASET_CONFIG_KEYS.join(", ")}}) or null`;
    for (const [i, e] of v.entries()) {
      const bad = Object.keys(e).filter((k) => !DATASET_CONFIG_KEYS.includes(k));
      if (bad.length) return `a list of TRL DatasetConfig mappings; entry ${i} has ${bad.map((k) => `"${k}"`).join(", ")}, not one of ${DATASET_CONFIG_KEYS.join(", ")}${bad.includes("columns_to_keep") ? ' (TRL spells it "columns")' : ""}`;
      if (typeof e.path !== "string" || !e.path) return `a list of TRL DatasetConfig mappings; entry ${i} has no path (a Hub dataset id, a builder json/csv/parquet/text, or a local path)`;
    }
    return null;
  },
  test_split_size: nullable((v) => (isNum(v) && v > 0 ? null : "a positive number (a fraction < 1 or a row count)")),
};

/** TRL's ModelConfig LoRA keys, with ModelConfig's defaults (not PEFT's: r 16, alpha 32, dropout 0.05). */
export const PEFT_DEFAULTS = { use_peft: false, lora_r: 16, lora_alpha: 32, lora_dropout: 0.05, lora_target_modules: null, lora_modules_to_save: null, lora_task_type: "CAUSAL_LM", use_rslora: false, use_dora: false };
const strList: Check = (v) => (typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string")) ? null : "a module name, a list of names, a regular expression or \"all-linear\"");
export const PEFT_CHECKS: Record<keyof typeof PEFT_DEFAULTS | "lora_target_parameters", Check> = {
  use_peft: bool,
  lora_r: int(1),
  lora_alpha: num(0, Infinity, true),
  lora_dropout: unitInterval,
  lora_target_modules: nullable(strList),
  lora_modules_to_save: (v) => (v === null || (Array.isArray(v) && v.length === 0) ? null : "null (modules_to_save is not supported; use full fine-tuning for those modules)"),
  lora_task_type: (v) => (v === "CAUSAL_LM" ? null : '"CAUSAL_LM" (webtune trains causal language models only)'),
  use_rslora: bool,
  use_dora: (v) => (v === false ? null : "false (DoRA is not supported; train a plain LoRA adapter)"),
  lora_target_parameters: (v) => (v === null || (Array.isArray(v) && v.length === 0) ? null : "null (LoRA on bare parameters, for MoE experts, is not supported)"),
};

/** Model-loading keys with no meaning here: accepted, each with its note unless inactive (see MODEL_INACTIVE). */
export const MODEL_IGNORED: Record<string, string> = {
  use_flash_attention_2: "ignored: webtune's own flash attention is always used",
  base_model_revision: "ignored: use model_revision",
  model_code_revision: "ignored: webtune runs no model code from the Hub",
  gradient_checkpointing_use_reentrant: "ignored: webtune checkpoints whole decoder layers; reentrancy is a PyTorch notion",
  ignore_bias_buffers: NO_DISTRIBUTED,
};

/** TRL's defaults of ignored model keys that are neither null, false, 0, "", [] nor {}. */
export const MODEL_INACTIVE: Record<string, unknown> = {};

/** Every key of these tables (TRL's `env:` mapping aside). */
export const CLI_KEYS = [...Object.keys(MODEL_CHECKS), ...Object.keys(DATASET_CHECKS), ...Object.keys(PEFT_CHECKS), ...Object.keys(MODEL_IGNORED)];
