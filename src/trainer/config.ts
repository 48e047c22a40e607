// SFTConfig as TRL spells it: the SFT-specific options of trl.SFTConfig and the inherited
// transformers.TrainingArguments an SFT user sets, with TRL's names (snake_case) and defaults. A config
// pasted from Python works: every TrainingArguments key is accepted, and one that means nothing on a single
// WebGPU device says once (in `notes`) what webtune does instead. loadSFTConfig reads the YAML/JSON files
// that `trl sft --config` takes, model/dataset/LoRA keys included.
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { LoraConfig } from "../models/peft.ts";

export type IntervalStrategy = "no" | "steps" | "epoch";
export type PackingStrategy = "bfd" | "bfd_split" | "wrapped";
/** "chunked_nll" is TRL's name for "nll" computed in chunks; webtune's fused loss is always chunked. */
export type SFTLossType = "nll" | "dft" | "chunked_nll";
export type LRSchedulerType = "linear" | "cosine" | "constant" | "constant_with_warmup";

/** TRL's SFTConfig: SFT options and the TrainingArguments webtune acts on. */
export interface SFTConfig {
  // ---- SFT-specific (trl.SFTConfig) ----
  /** Column holding the text of a language-modeling dataset (default "text"). */
  dataset_text_field: string;
  /**
   * Tokens per example: longer examples are truncated (keep the start); with packing, the bin size.
   * null: no truncation (then packing is an error). Default 1024.
   */
  max_length: number | null;
  /** Only "keep_start" (TRL's "keep_end" is deprecated there and not supported here). */
  truncation_mode: "keep_start";
  /** Shuffle the prepared dataset once, with `seed` (default false). */
  shuffle_dataset: boolean;
  /** Pack examples into rows of max_length tokens (default false). */
  packing: boolean;
  /**
   * "bfd": best-fit decreasing, overlong sequences truncated; "bfd_split": overlong sequences cut into
   * max_length pieces first; "wrapped": concatenate and cut every max_length tokens — attention then
   * crosses example boundaries. Default "bfd".
   */
  packing_strategy: PackingStrategy;
  /**
   * Concatenate a batch into one row; sequences restart their position_ids, and attention stays within
   * each sequence. Forced on by packing with "bfd"/"bfd_split" (a note says so). Default false.
   */
  padding_free: boolean;
  /** Pad each batch's length to a multiple of this (default null: no extra padding). */
  pad_to_multiple_of: number | null;
  /** Pack the eval dataset; null (default) means the same as `packing`. */
  eval_packing: boolean | null;
  /**
   * Loss only on the completion of prompt-completion rows. null (default): true when the dataset has
   * prompt and completion columns. Cannot be combined with a formatting_func when true.
   */
  completion_only_loss: boolean | null;
  /** Loss only on the assistant turns, from the chat template's {% generation %} blocks (default false). */
  assistant_only_loss: boolean;
  /** "nll" (default) or "dft" (-p·log p with p held constant); "chunked_nll" is accepted as "nll". */
  loss_type: SFTLossType;
  /** Token appended to non-conversational rows; must be in the vocabulary. null: the tokenizer's eos. */
  eos_token: string | null;
  /** Padding token; null: the tokenizer's pad token, else its eos token. (Deprecated in TRL.) */
  pad_token: string | null;
  /** A tokenizer directory or a Jinja file whose chat template replaces the tokenizer's (default null). */
  chat_template_path: string | null;
  /** Options for from_pretrained when the trainer is given a model id (webtune reads `dtype`, `revision`). */
  model_init_kwargs: Record<string, unknown> | null;
  /** TRL's dataset preparation options; webtune reads `skip_prepare_dataset` (default null). */
  dataset_kwargs: Record<string, unknown> | null;

  // ---- transformers.TrainingArguments, TRL's defaults ----
  /** Where checkpoints and the final adapter go (TRL default "trainer_output"). */
  output_dir: string;
  /** Peak learning rate of AdamW (TRL default 2e-5). */
  learning_rate: number;
  /** Decoupled weight decay of AdamW (default 0). */
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  /** Clip the global gradient norm to this; 0 or null disables clipping (default 1.0). */
  max_grad_norm: number | null;
  /** Epochs over the dataset, fractional allowed (default 3); max_steps > 0 overrides it. */
  num_train_epochs: number;
  /** Optimizer steps to train; -1 (default): num_train_epochs. Required for a stream of unknown length. */
  max_steps: number;
  lr_scheduler_type: LRSchedulerType;
  /** Extra scheduler options (transformers' lr_scheduler_kwargs); none of the four schedules takes one. */
  lr_scheduler_kwargs: Record<string, unknown> | null;
  /**
   * Linear warmup: an integer is optimizer steps, a float in [0, 1) a fraction of the total steps
   * (default 0). The resolved config has warmup_ratio folded in here.
   */
  warmup_steps: number;
  /** transformers' older name for a warmup fraction in [0, 1); folded into warmup_steps. */
  warmup_ratio: number | null;
  gradient_accumulation_steps: number;
  per_device_train_batch_size: number;
  per_device_eval_batch_size: number;
  /** Recompute each decoder layer in backward (TRL default true). */
  gradient_checkpointing: boolean;
  /** Accepted for compatibility (use_reentrant has no meaning here); webtune checkpoints whole decoder layers. */
  gradient_checkpointing_kwargs: Record<string, unknown> | null;
  logging_strategy: IntervalStrategy;
  /** Optimizer steps between logs; a float in (0, 1) is a fraction of the total steps (TRL default 10). */
  logging_steps: number;
  /** Log after the first optimizer step too (default false). */
  logging_first_step: boolean;
  save_strategy: IntervalStrategy;
  /** Optimizer steps between checkpoints; a float in (0, 1) is a fraction of the total (default 500). */
  save_steps: number;
  /** Keep at most this many checkpoints in output_dir, deleting the oldest (default null: all). */
  save_total_limit: number | null;
  eval_strategy: IntervalStrategy;
  /** Optimizer steps between evaluations; null (default): logging_steps. */
  eval_steps: number | null;
  /** Seed of initialisation, dropout and shuffling (default 42). */
  seed: number;
  /** Seed of data shuffling; null (default): seed. */
  data_seed: number | null;
  /** Name of the run in logs (default null: output_dir). */
  run_name: string | null;
  /** A checkpoint directory to resume from, or true: the last checkpoint in output_dir (default null). */
  resume_from_checkpoint: string | boolean | null;
  /** Drop the last incomplete batch of each epoch (default false). */
  dataloader_drop_last: boolean;
  /**
   * Logging integrations. webtune has none: "none" (default) or anything else, which notes that logs go to
   * the trainer's callbacks and the console.
   */
  report_to: string | string[];
  /** bf16 mixed precision in PyTorch; true here means f16 storage of the frozen base weights (see notes). */
  bf16: boolean | null;
  /** As bf16. */
  fp16: boolean;
  /** A transformers optimizer name; webtune always uses its fused AdamW (default "adamw_torch"). */
  optim: string;
}

/** A config after sftConfig(): defaults filled, cross-key rules applied. */
export interface ResolvedSFTConfig extends SFTConfig {
  /** logging_steps when not given. */
  eval_steps: number;
  /** `packing` when not given. */
  eval_packing: boolean;
  /** `seed` when not given. */
  data_seed: number;
  /** warmup_ratio, when given, is folded into warmup_steps; this is then null. */
  warmup_ratio: null;
  /** What webtune does instead of the options that mean nothing on WebGPU (not enumerable: not serialised). */
  readonly notes: string[];
}

/** TRL's defaults, as trl.SFTConfig (v1.9) and transformers.TrainingArguments set them. */
export const SFT_DEFAULTS: Readonly<SFTConfig> = Object.freeze({
  dataset_text_field: "text",
  max_length: 1024,
  truncation_mode: "keep_start",
  shuffle_dataset: false,
  packing: false,
  packing_strategy: "bfd",
  padding_free: false,
  pad_to_multiple_of: null,
  eval_packing: null,
  completion_only_loss: null,
  assistant_only_loss: false,
  loss_type: "nll",
  eos_token: null,
  pad_token: null,
  chat_template_path: null,
  model_init_kwargs: null,
  dataset_kwargs: null,

  output_dir: "trainer_output",
  learning_rate: 2e-5,
  weight_decay: 0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  max_grad_norm: 1.0,
  num_train_epochs: 3,
  max_steps: -1,
  lr_scheduler_type: "linear",
  lr_scheduler_kwargs: null,
  warmup_steps: 0,
  warmup_ratio: null,
  gradient_accumulation_steps: 1,
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_checkpointing: true,
  gradient_checkpointing_kwargs: null,
  logging_strategy: "steps",
  logging_steps: 10,
  logging_first_step: false,
  save_strategy: "steps",
  save_steps: 500,
  save_total_limit: null,
  eval_strategy: "no",
  eval_steps: null,
  seed: 42,
  data_seed: null,
  run_name: null,
  resume_from_checkpoint: null,
  dataloader_drop_last: false,
  report_to: "none",
  bf16: null,
  fp16: false,
  optim: "adamw_torch",
});

// ---------------------------------------------------------------------------------------------------------
// Value checks: each returns null when the value is allowed, else what is allowed.

type Check = (v: unknown) => string | null;

const isInt = (v: unknown): v is number => Number.isInteger(v);
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isDict = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

const bool: Check = (v) => (typeof v === "boolean" ? null : "true or false");
const str: Check = (v) => (typeof v === "string" ? null : "a string");
const nonEmptyStr: Check = (v) => (typeof v === "string" && v.length > 0 ? null : "a non-empty string");
const dict: Check = (v) => (isDict(v) ? null : "a mapping (object)");
const int = (min: number): Check => (v) => (isInt(v) && v >= min ? null : `an integer ≥ ${min}`);
const num = (min: number, max = Infinity, openMin = false): Check => (v) =>
  isNum(v) && (openMin ? v > min : v >= min) && v <= max
    ? null
    : `a number ${openMin ? ">" : "≥"} ${min}${max < Infinity ? ` and ≤ ${max}` : ""}`;
const oneOf = (values: readonly string[]): Check => (v) =>
  typeof v === "string" && values.includes(v) ? null : `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`;
const nullable = (c: Check): Check => (v) => (v === null ? null : ((r) => r && `${r} or null`)(c(v)));
/** logging/eval/save steps: an integer ≥ 1, or a fraction of the total steps in (0, 1). */
const interval: Check = (v) => (isNum(v) && ((isInt(v) && v >= 1) || (v > 0 && v < 1)) ? null : "an integer ≥ 1 or a fraction in (0, 1) of the total steps");

const STRATEGIES = ["no", "steps", "epoch"] as const;
const SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup"] as const;
/** transformers' other SchedulerType values: known names, so the error says "not supported" rather than "unknown". */
const OTHER_SCHEDULERS = ["cosine_with_restarts", "polynomial", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"];
/** AdamW as torch.optim.AdamW computes it: webtune's fused AdamW is the same update. */
const ADAMW = ["adamw_torch", "adamw_torch_fused", "adamw_hf"];
/** transformers' OptimizerNames. */
const OPTIMIZERS = [
  ...ADAMW, "adamw_torch_xla", "adamw_torch_npu_fused", "adamw_apex_fused", "adafactor", "adamw_anyprecision", "adamw_torch_4bit",
  "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit",
  "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
  "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
  "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
  "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw",
];

const CHECKS: { [K in keyof SFTConfig]: Check } = {
  dataset_text_field: nonEmptyStr,
  max_length: nullable(int(1)),
  truncation_mode: (v) => (v === "keep_end" ? `"keep_start" ("keep_end" is deprecated in TRL and not supported by webtune)` : oneOf(["keep_start"])(v)),
  shuffle_dataset: bool,
  packing: bool,
  packing_strategy: oneOf(["bfd", "bfd_split", "wrapped"]),
  padding_free: bool,
  pad_to_multiple_of: nullable(int(1)),
  eval_packing: nullable(bool),
  completion_only_loss: nullable(bool),
  assistant_only_loss: bool,
  loss_type: oneOf(["nll", "dft", "chunked_nll"]),
  eos_token: nullable(nonEmptyStr),
  pad_token: nullable(nonEmptyStr),
  chat_template_path: nullable(nonEmptyStr),
  model_init_kwargs: nullable(dict),
  dataset_kwargs: nullable(dict),

  output_dir: nonEmptyStr,
  learning_rate: num(0),
  weight_decay: num(0),
  adam_beta1: (v) => (isNum(v) && v >= 0 && v < 1 ? null : "a number in [0, 1)"),
  adam_beta2: (v) => (isNum(v) && v >= 0 && v < 1 ? null : "a number in [0, 1)"),
  adam_epsilon: num(0, Infinity, true),
  max_grad_norm: nullable(num(0)),
  num_train_epochs: num(0, Infinity, true),
  max_steps: (v) => (isInt(v) && (v === -1 || v > 0) ? null : "a positive integer, or -1 (train for num_train_epochs)"),
  lr_scheduler_type: (v) =>
    typeof v === "string" && OTHER_SCHEDULERS.includes(v) ? `one of ${SCHEDULERS.map((s) => `"${s}"`).join(", ")} (webtune does not implement "${v}")` : oneOf(SCHEDULERS)(v),
  lr_scheduler_kwargs: (v) => (v === null || (isDict(v) && Object.keys(v).length === 0) ? null : "null or {} (none of webtune's schedules takes options)"),
  warmup_steps: (v) => (isNum(v) && v >= 0 && (isInt(v) || v < 1) ? null : "an integer number of steps ≥ 0, or a fraction of the total steps in [0, 1)"),
  warmup_ratio: (v) => (v === null || (isNum(v) && v >= 0 && v < 1) ? null : "a fraction in [0, 1) or null"),
  gradient_accumulation_steps: int(1),
  per_device_train_batch_size: int(1),
  per_device_eval_batch_size: int(1),
  gradient_checkpointing: bool,
  gradient_checkpointing_kwargs: nullable(dict),
  logging_strategy: oneOf(STRATEGIES),
  logging_steps: interval,
  logging_first_step: bool,
  save_strategy: (v) => (v === "best" ? `one of "no", "steps", "epoch" ("best" needs metric_for_best_model, which webtune does not track)` : oneOf(STRATEGIES)(v)),
  save_steps: interval,
  save_total_limit: nullable(int(1)),
  eval_strategy: oneOf(STRATEGIES),
  eval_steps: nullable(interval),
  seed: int(0),
  data_seed: nullable(int(0)),
  run_name: nullable(str),
  resume_from_checkpoint: (v) => (v === null || typeof v === "boolean" || (typeof v === "string" && v.length > 0) ? null : "a checkpoint directory, true (the last checkpoint in output_dir), false or null"),
  dataloader_drop_last: bool,
  report_to: (v) => (typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string")) ? null : 'a name or a list of names ("none" for no integration)'),
  bf16: nullable(bool),
  fp16: bool,
  optim: (v) => (typeof v === "string" && OPTIMIZERS.includes(v) ? null : `a transformers optimizer name such as ${ADAMW.map((s) => `"${s}"`).join(", ")}`),
};

// ---------------------------------------------------------------------------------------------------------
// TrainingArguments keys with no meaning on one WebGPU device: accepted, and when set to anything but their
// inactive value (null, false, 0, "", [], {} or transformers' default in INACTIVE) each adds its note once.

const NO_DISTRIBUTED = "ignored: webtune trains on one WebGPU device; there is no distributed or sharded training";
const NO_HUB = "ignored: webtune does not upload; push output_dir yourself (huggingface-cli upload, or the Hub's web UI)";
const NO_TORCH = "ignored: a PyTorch/CUDA switch with no WebGPU counterpart";
const NO_EVAL_EXTRAS = "ignored: evaluation computes loss, mean_token_accuracy and entropy only, as SFTTrainer logs them";
const NO_COMPILE = "ignored: there is no torch.compile on WebGPU; webtune's WGSL kernels are compiled once per shape";
const ON_DEVICE = "ignored: webtune runs on the WebGPU adapter getDevice() picks (a CPU adapter such as SwiftShader or llvmpipe where there is no GPU)";
const ONE_THREAD = "ignored: dataset preparation and batching run in this one thread, ahead of the GPU";
const LOGS = "ignored: logs go to the trainer's callbacks and the console (no logging integrations)";

const each = (keys: string[], note: string): Record<string, string> => Object.fromEntries(keys.map((k) => [k, note]));

/** One table: key → what webtune does instead. A key set to its inactive value (see INACTIVE) adds no note. */
const IGNORED: Record<string, string> = {
  activation_offloading: "ignored: webtune keeps activations on the GPU; gradient_checkpointing is how it saves memory",
  use_liger_kernel: "ignored: webtune's own fused WGSL kernels (RMSNorm, RoPE, SwiGLU, chunked fused cross-entropy) are always used",
  liger_kernel_config: "ignored: webtune's own fused WGSL kernels are always used",
  tf32: "ignored: WebGPU computes in f32 (there is no TF32)",
  torch_empty_cache_steps: "ignored: webtune pools GPU buffers itself (memoryStats() shows them)",
  logging_nan_inf_filter: "ignored: a NaN or infinite loss stops training with an error naming the step",
  include_num_input_tokens_seen: "ignored: num_tokens (input tokens seen) is always logged, as TRL logs it",
  do_train: "ignored: train() trains",
  do_eval: "ignored: evaluation follows eval_strategy",
  do_predict: "ignored: SFTTrainer has no predict step",
  remove_unused_columns: "ignored: dataset preparation keeps only the columns of the detected format",
  save_safetensors: "ignored: webtune always saves safetensors",
  adafactor: "ignored: webtune uses its fused AdamW",
  optim_args: "ignored: webtune uses its fused AdamW, set by learning_rate, adam_beta1/2, adam_epsilon and weight_decay",
  ...each(["dataset_num_proc", "dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_pin_memory", "dataloader_persistent_workers"], ONE_THREAD),
  ...each(["torch_compile", "torch_compile_backend", "torch_compile_mode", "torchdynamo"], NO_COMPILE),
  ...each(["use_cpu", "no_cuda", "use_mps_device", "use_ipex", "jit_mode_eval"], ON_DEVICE),
  ...each(["ddp_backend", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_timeout", "local_rank", "deepspeed",
    "fsdp", "fsdp_config", "fsdp_min_num_params", "fsdp_transformer_layer_cls_to_wrap", "accelerator_config", "parallelism_config",
    "average_tokens_across_devices", "save_on_each_node", "log_on_each_node", "log_level_replica", "eval_use_gather_object", "tpu_num_cores",
    "tpu_metrics_debug", "mp_parameters", "ray_scope"], NO_DISTRIBUTED),
  ...each(["push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision",
    "push_to_hub_model_id", "push_to_hub_organization", "push_to_hub_token"], NO_HUB),
  ...each(["fp16_opt_level", "half_precision_backend", "fp16_backend", "bf16_full_eval", "fp16_full_eval", "full_determinism", "debug",
    "skip_memory_metrics", "use_legacy_prediction_loop", "past_index", "overwrite_output_dir", "restore_callback_states_from_checkpoint"], NO_TORCH),
  ...each(["disable_tqdm", "log_level", "logging_dir", "project", "trackio_space_id"], LOGS),
  ...each(["prediction_loss_only", "eval_accumulation_steps", "eval_delay", "include_inputs_for_metrics", "include_for_metrics",
    "eval_do_concat_batches", "batch_eval_metrics", "label_names"], NO_EVAL_EXTRAS),
};

/** transformers' defaults of ignored keys that are neither null, false, 0, "", [] nor {}: a dumped config sets them. */
const INACTIVE: Record<string, unknown> = {
  ddp_timeout: 1800, average_tokens_across_devices: true, log_on_each_node: true, log_level_replica: "warning", ray_scope: "last",
  hub_strategy: "every_save", fp16_opt_level: "O1", half_precision_backend: "auto", fp16_backend: "auto", skip_memory_metrics: true,
  past_index: -1, logging_nan_inf_filter: true, include_num_input_tokens_seen: "no", log_level: "passive", remove_unused_columns: true,
  project: "huggingface", trackio_space_id: "trackio", eval_do_concat_batches: true, save_safetensors: true, dataloader_pin_memory: true,
  bnb_4bit_quant_type: "nf4",
};

/** TrainingArguments keys webtune accepts only at their default: anything else changes training in a way it does not implement. */
const UNSUPPORTED: Record<string, { inactive: unknown; why: string }> = {
  neftune_noise_alpha: { inactive: null, why: "NEFTune embedding noise is not implemented" },
  label_smoothing_factor: { inactive: 0, why: "label smoothing is not implemented (TRL's SFT loss has none either)" },
  group_by_length: { inactive: false, why: "length-grouped sampling is not implemented; packing or padding_free avoids the padding it saves" },
  length_column_name: { inactive: "length", why: "length-grouped sampling is not implemented" },
  auto_find_batch_size: { inactive: false, why: "the batch size is not searched; lower per_device_train_batch_size and raise gradient_accumulation_steps" },
  load_best_model_at_end: { inactive: false, why: "webtune does not track a best checkpoint" },
  metric_for_best_model: { inactive: null, why: "webtune does not track a best checkpoint" },
  greater_is_better: { inactive: null, why: "webtune does not track a best checkpoint" },
  eval_on_start: { inactive: false, why: "evaluation before the first step is not implemented" },
  save_only_model: { inactive: false, why: "checkpoints always hold the optimizer and scheduler state, so that resume continues exactly" },
  ignore_data_skip: { inactive: false, why: "resume always skips the batches already seen, so that it continues exactly" },
  optim_target_modules: { inactive: null, why: "GaLore/APOLLO targets have no meaning with AdamW" },
};

/** Old names and common look-alikes → the option's name. */
const RENAMED: Record<string, string> = {
  max_seq_length: "max_length",
  max_seq_len: "max_length",
  evaluation_strategy: "eval_strategy",
  per_gpu_train_batch_size: "per_device_train_batch_size",
  per_gpu_eval_batch_size: "per_device_eval_batch_size",
  train_batch_size: "per_device_train_batch_size",
  batch_size: "per_device_train_batch_size",
  lr: "learning_rate",
  epochs: "num_train_epochs",
  num_epochs: "num_train_epochs",
  scheduler: "lr_scheduler_type",
  warmup: "warmup_steps",
  per_device_batch_size: "per_device_train_batch_size",
};

/** Keys TRL removed: what replaced them. */
const REMOVED: Record<string, string> = {
  dataset_batch_size: "removed from TRL; it has no counterpart",
  num_of_sequences: 'removed from TRL; packing uses "max_length"',
  chars_per_token: 'removed from TRL; packing uses "max_length"',
};

const SFT_KEYS = Object.keys(CHECKS) as (keyof SFTConfig)[];

// ---------------------------------------------------------------------------------------------------------
// Keys of `trl sft --config` that are not SFTConfig's: TRL's ModelConfig, ScriptArguments and
// DatasetMixtureConfig. loadSFTConfig returns them apart; sftConfig() names them when given.

/** The model to load, from TRL's ModelConfig. */
export interface ModelArgs {
  model_name_or_path: string | null;
  model_revision: string;
  /** "auto", "float32", "float16" or "bfloat16" (TRL's torch_dtype is read here too); see notes for bfloat16. */
  dtype: string | null;
  trust_remote_code: boolean;
  attn_implementation: string | null;
}

/** The dataset to load, from TRL's ScriptArguments and DatasetMixtureConfig. */
export interface DatasetArgs {
  dataset_name: string | null;
  dataset_config: string | null;
  dataset_train_split: string;
  dataset_test_split: string;
  dataset_streaming: boolean;
  /** TRL's dataset mixture: a list of {path, name, data_dir, data_files, split, columns_to_keep}. */
  datasets: Record<string, unknown>[] | null;
  test_split_size: number | null;
}

const MODEL_DEFAULTS: ModelArgs = { model_name_or_path: null, model_revision: "main", dtype: null, trust_remote_code: false, attn_implementation: null };
const MODEL_CHECKS: Record<keyof ModelArgs | "torch_dtype", Check> = {
  model_name_or_path: nullable(nonEmptyStr),
  model_revision: nonEmptyStr,
  dtype: nullable(oneOf(["auto", "float32", "float16", "bfloat16"])),
  torch_dtype: nullable(oneOf(["auto", "float32", "float16", "bfloat16"])),
  trust_remote_code: bool,
  attn_implementation: nullable(str),
};

const DATASET_DEFAULTS: DatasetArgs = {
  dataset_name: null, dataset_config: null, dataset_train_split: "train", dataset_test_split: "test", dataset_streaming: false, datasets: null, test_split_size: null,
};
const DATASET_CHECKS: Record<keyof DatasetArgs | "streaming", Check> = {
  dataset_name: nullable(nonEmptyStr),
  dataset_config: nullable(str),
  dataset_train_split: nonEmptyStr,
  dataset_test_split: nonEmptyStr,
  dataset_streaming: bool,
  streaming: bool,
  datasets: (v) => (v === null || (Array.isArray(v) && v.every(isDict)) ? null : "a list of mappings ({path, name, split, …}) or null"),
  test_split_size: nullable((v) => (isNum(v) && v > 0 ? null : "a positive number (a fraction < 1 or a row count)")),
};

/** TRL's ModelConfig LoRA keys, with ModelConfig's defaults (not PEFT's: r 16, alpha 32, dropout 0.05). */
const PEFT_DEFAULTS = { use_peft: false, lora_r: 16, lora_alpha: 32, lora_dropout: 0.05, lora_target_modules: null, lora_modules_to_save: null, lora_task_type: "CAUSAL_LM", use_rslora: false, use_dora: false };
const strList: Check = (v) => (typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string")) ? null : "a module name, a list of names, a regular expression or \"all-linear\"");
const PEFT_CHECKS: Record<keyof typeof PEFT_DEFAULTS | "lora_target_parameters", Check> = {
  use_peft: bool,
  lora_r: int(1),
  lora_alpha: num(0, Infinity, true),
  lora_dropout: (v) => (isNum(v) && v >= 0 && v < 1 ? null : "a number in [0, 1)"),
  lora_target_modules: nullable(strList),
  lora_modules_to_save: (v) => (v === null || (Array.isArray(v) && v.length === 0) ? null : "null (modules_to_save is not supported; use full fine-tuning for those modules)"),
  lora_task_type: (v) => (v === "CAUSAL_LM" ? null : '"CAUSAL_LM" (webtune trains causal language models only)'),
  use_rslora: bool,
  use_dora: (v) => (v === false ? null : "false (DoRA is not supported; train a plain LoRA adapter)"),
  lora_target_parameters: (v) => (v === null || (Array.isArray(v) && v.length === 0) ? null : "null (LoRA on bare parameters, for MoE experts, is not supported)"),
};

/** Model-loading keys with no meaning here: accepted with a note. */
const MODEL_IGNORED: Record<string, string> = {
  ...each(["load_in_4bit", "load_in_8bit"], "ignored: webtune has no 4/8-bit quantization; the frozen base is stored as f32, or as f16 with bf16/fp16 or dtype float16"),
  ...each(["bnb_4bit_quant_type", "use_bnb_nested_quant"], "ignored: webtune has no bitsandbytes quantization"),
  use_flash_attention_2: "ignored: webtune's own flash attention is always used",
  base_model_revision: "ignored: use model_revision",
  model_code_revision: "ignored: webtune runs no model code from the Hub",
  gradient_checkpointing_use_reentrant: "ignored: webtune checkpoints whole decoder layers; reentrancy is a PyTorch notion",
  ignore_bias_buffers: NO_DISTRIBUTED,
};

/** PEFT LoraConfig keys: a LoRA setting pasted into SFTConfig. */
const LORA_CONFIG_KEYS = ["r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "modules_to_save", "bias", "task_type", "layers_to_transform", "init_lora_weights"];

const ALL_KEYS = [
  ...SFT_KEYS, ...Object.keys(IGNORED), ...Object.keys(UNSUPPORTED), ...Object.keys(MODEL_CHECKS), ...Object.keys(DATASET_CHECKS),
  ...Object.keys(PEFT_CHECKS), ...Object.keys(MODEL_IGNORED), "env",
];

// ---------------------------------------------------------------------------------------------------------

/** Every problem of a config, one per line; `problems` lists them. */
export class SFTConfigError extends Error {
  readonly problems: string[];
  constructor(where: string, problems: string[]) {
    super(problems.length === 1 ? `${where}: ${problems[0]}` : `${where}: ${problems.length} problems:\n  - ${problems.join("\n  - ")}`);
    this.name = "SFTConfigError";
    this.problems = problems;
  }
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The valid name closest to `key` when it is close enough to be a typo (edit distance), else null. */
export function suggestKey(key: string, names: readonly string[] = ALL_KEYS): string | null {
  const k = key.toLowerCase().replace(/-/g, "_");
  if (names.includes(k)) return k;
  if (k in RENAMED) return RENAMED[k]!;
  let best: string | null = null;
  let bestD = Infinity;
  for (const name of [...names, ...Object.keys(RENAMED)]) {
    const dist = editDistance(k, name);
    if (dist < bestD) [best, bestD] = [name, dist];
  }
  if (best && bestD <= Math.max(2, Math.floor(best.length / 4))) return RENAMED[best] ?? best;
  // A distinctive prefix or suffix of a longer name ("gradient_accumulation", "target_modules").
  return names.find((name) => k.length >= 5 && (name.startsWith(k) || name.endsWith(`_${k}`))) ?? null;
}

function unknownKey(key: string): string {
  if (key in REMOVED) return `unknown key "${key}": ${REMOVED[key]}`;
  if (key in RENAMED) return `unknown key "${key}" (did you mean ${RENAMED[key]}? TRL/transformers use that name)`;
  const s = suggestKey(key);
  return s ? `unknown key "${key}" (did you mean ${s}?)` : `unknown key "${key}" (no similar option; SFT_DEFAULTS lists webtune's SFTConfig keys)`;
}

function show(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : Array.isArray(v) || isDict(v) ? JSON.stringify(v) : String(v);
}

function isInactive(v: unknown, inactive: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "" || v === inactive) return true;
  if (Array.isArray(v)) return v.length === 0;
  return isDict(v) && Object.keys(v).length === 0;
}

/** "2e-5" → 2e-5, "true" → true, "None" → null: for values that arrive as strings (a command line). */
function coerced(v: string): unknown {
  if (/^(true|True)$/.test(v)) return true;
  if (/^(false|False)$/.test(v)) return false;
  if (/^(null|None|none|~)$/.test(v)) return null;
  const n = Number(v);
  return v.trim() !== "" && Number.isFinite(n) ? n : v;
}

export interface SFTConfigOptions {
  /** Called once per note (the notes are also on the result). */
  warn?: (note: string) => void;
  /** Read strings such as "2e-5", "true" or "None" as the number, boolean or null a key needs (command lines). */
  coerce?: boolean;
}

/**
 * Validates a config and fills TRL's defaults. Every problem is reported at once in an SFTConfigError:
 * unknown keys (with the nearest valid name), wrong types or ranges (naming the key, the value and what is
 * allowed) and conflicting keys. TrainingArguments keys that mean nothing on WebGPU are kept and noted.
 *
 * Cross-key rules, as TRL applies them: packing with "bfd"/"bfd_split" turns padding_free on; eval_steps
 * defaults to logging_steps; eval_packing to packing; data_seed to seed; warmup_ratio becomes a fractional
 * warmup_steps. max_steps > 0 for a stream of unknown length is the trainer's check (assertMaxStepsForStream).
 */
export function sftConfig(input: Partial<SFTConfig> | Record<string, unknown> = {}, options: SFTConfigOptions = {}): ResolvedSFTConfig {
  if (!isDict(input)) throw new SFTConfigError("SFTConfig", [`expected a mapping of options, got ${show(input)}`]);
  const problems: string[] = [];
  const notes: string[] = [];
  const note = (n: string) => {
    if (!notes.includes(n)) notes.push(n);
  };
  const out: Record<string, unknown> = { ...SFT_DEFAULTS };
  const unknown: string[] = [];

  for (const [key, given] of Object.entries(input)) {
    if (given === undefined) continue;
    let raw = given;
    if (key === "packing_strategy" && raw === "bfd-requeue") {
      raw = "bfd_split";
      note('packing_strategy "bfd-requeue": TRL\'s old name for "bfd_split", used as such');
    }
    const check = (CHECKS as Record<string, Check>)[key];
    if (check) {
      let value: unknown = raw;
      let why = check(value);
      if (why && options.coerce && typeof raw === "string" && !check(coerced(raw))) [value, why] = [coerced(raw), null];
      if (why) problems.push(`${key}=${show(raw)} is not allowed: expected ${why}`);
      else out[key] = value;
    } else if (key in IGNORED) {
      out[key] = raw;
      if (!isInactive(raw, INACTIVE[key])) note(`${key}=${show(raw)}: ${IGNORED[key]}`);
    } else if (key in UNSUPPORTED) {
      const u = UNSUPPORTED[key]!;
      const value = options.coerce && typeof raw === "string" ? coerced(raw) : raw;
      if (value === u.inactive || value === null) out[key] = value;
      else problems.push(`${key}=${show(raw)} is not supported: ${u.why} (remove it or set ${show(u.inactive)})`);
    } else if (LORA_CONFIG_KEYS.includes(key)) {
      problems.push(`"${key}" is a LoraConfig (PEFT) key, not an SFTConfig option: pass it in the trainer's peft_config (in a \`trl sft\` config file: ${key.startsWith("lora_") || key.startsWith("use_") ? key : `lora_${key}`})`);
    } else if (key in MODEL_CHECKS || key in PEFT_CHECKS || key in DATASET_CHECKS || key in MODEL_IGNORED) {
      problems.push(`"${key}" is a model/dataset/LoRA key of \`trl sft\`, not an SFTConfig option: pass it to the trainer (model, train_dataset, peft_config) or use loadSFTConfig, which returns it apart`);
    } else {
      unknown.push(key);
    }
  }
  problems.unshift(...unknown.map(unknownKey));
  const c = out as unknown as ResolvedSFTConfig;

  if (!problems.length) {
    if (c.bf16 === true && c.fp16 === true) problems.push("bf16 and fp16 are both true: set at most one (both mean f16 storage of the frozen base weights here)");
    if (c.warmup_ratio !== null && c.warmup_ratio > 0) {
      if (c.warmup_steps > 0) problems.push(`warmup_ratio=${c.warmup_ratio} and warmup_steps=${c.warmup_steps} are both set: set one (warmup_steps takes a fraction in [0, 1) too)`);
      else {
        c.warmup_steps = c.warmup_ratio;
        note(`warmup_ratio=${c.warmup_ratio}: read as warmup_steps=${c.warmup_ratio} (a fraction of the total steps: transformers' newer spelling of a warmup ratio)`);
      }
    }
    if (c.packing && c.max_length === null) problems.push("packing needs max_length (the length of a packed row); set max_length or packing false");
  }
  if (problems.length) throw new SFTConfigError("SFTConfig", problems);

  c.warmup_ratio = null;
  if (c.packing && (c.packing_strategy === "bfd" || c.packing_strategy === "bfd_split") && !c.padding_free) {
    c.padding_free = true;
    note(`packing with packing_strategy "${c.packing_strategy}": padding_free is turned on (each packed sequence restarts its position_ids and attends only within itself)`);
  }
  if (c.packing && c.packing_strategy === "wrapped") {
    note('packing_strategy "wrapped": rows are cut across examples and attention crosses example boundaries within a row (as in TRL)');
  }
  c.eval_steps ??= c.logging_steps;
  c.eval_packing ??= c.packing;
  c.data_seed ??= c.seed;
  if (c.loss_type === "chunked_nll") note('loss_type "chunked_nll": the same math as "nll"; webtune\'s fused cross-entropy is always computed in chunks');
  if (c.bf16 === true || c.fp16 === true) {
    note(`${c.bf16 === true ? "bf16" : "fp16"}=true: f16 storage of the frozen base weights where the adapter has shader-f16 (dtype float16); compute stays f32`);
  }
  if (!ADAMW.includes(c.optim)) note(`optim=${show(c.optim)}: webtune uses its fused AdamW (torch.optim.AdamW's update) with adam_beta1/2, adam_epsilon and weight_decay`);
  const reports = (Array.isArray(c.report_to) ? c.report_to : [c.report_to]).filter((r) => r !== "none");
  if (reports.length) note(`report_to=${show(c.report_to)}: webtune has no logging integrations; logs go to the trainer's callbacks and the console`);
  if (c.gradient_checkpointing_kwargs !== null && Object.keys(c.gradient_checkpointing_kwargs).length) {
    note(`gradient_checkpointing_kwargs=${show(c.gradient_checkpointing_kwargs)}: accepted; webtune recomputes whole decoder layers and needs no options`);
  }

  Object.defineProperty(c, "notes", { value: notes, enumerable: false });
  for (const n of notes) options.warn?.(n);
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers for the trainer.

/**
 * logging/eval/save steps as transformers reads them: an integer is steps, a fraction in (0, 1) is
 * ceil(fraction · total steps).
 */
export function intervalSteps(value: number, totalSteps: number): number {
  return value < 1 ? Math.max(1, Math.ceil(value * totalSteps)) : value;
}

/** Throws unless max_steps is set: a dataset of unknown length (a stream) has no number of epochs to count. */
export function assertMaxStepsForStream(config: Pick<SFTConfig, "max_steps">, what = "the training dataset"): void {
  if (!(config.max_steps > 0)) {
    throw new SFTConfigError("SFTConfig", [
      `${what} is a stream of unknown length, so num_train_epochs cannot be turned into steps: set max_steps > 0 (it is ${config.max_steps})`,
    ]);
  }
}

/** The dtype to load the frozen base model with: "float16" when bf16/fp16 asks for it and the adapter has shader-f16. */
export function baseWeightsDtype(config: Pick<SFTConfig, "bf16" | "fp16">, shaderF16: boolean): "float16" | "float32" {
  return (config.bf16 === true || config.fp16 === true) && shaderF16 ? "float16" : "float32";
}

// ---------------------------------------------------------------------------------------------------------
// Config files, as `trl sft --config file.yaml` reads them.

export interface LoadedSFTConfig {
  args: ResolvedSFTConfig;
  model: ModelArgs;
  dataset: DatasetArgs;
  /** A LoraConfig from use_peft and the lora_* keys (TRL's ModelConfig defaults); null without use_peft. */
  peft: LoraConfig | null;
  /** TRL's `env:` mapping (environment variables the run wants, e.g. HF_TOKEN); webtune sets none itself. */
  env: Record<string, string>;
  /** args.notes and the notes of the model/dataset/LoRA keys. */
  notes: string[];
}

export interface LoadOptions extends SFTConfigOptions {
  /** "json" or "yaml"; default: from the file extension, else JSON when the text starts with "{", else YAML. */
  format?: "json" | "yaml";
}

type Fs = typeof import("node:fs/promises");
/** node:fs/promises (Node and Deno); loaded through a variable so browser bundles do not include it. */
function fs(): Promise<Fs> {
  const spec = "node:fs/promises";
  return import(/* @vite-ignore */ spec) as Promise<Fs>;
}

/** Where JSON.parse failed (its message has no position on every runtime): a validating scan of `text`. */
function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i]!)) i++;
  };
  const string = () => {
    for (i++; text[i] !== '"'; i++) {
      if (i >= text.length || text.charCodeAt(i) < 0x20) fail();
      if (text[i] === "\\") i++;
    }
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      i++;
      ws();
      if (text[i] === close) return void i++;
      for (;;) {
        if (c === "{") {
          ws();
          if (text[i] !== '"') fail();
          string();
          ws();
          if (text[i] !== ":") fail();
          i++;
        }
        value();
        ws();
        if (text[i] === close) return void i++;
        if (text[i] !== ",") fail();
        i++;
      }
    }
    if (c === '"') return string();
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 64));
    if (!m) fail();
    i += m![0].length;
  };
  try {
    value();
    ws();
    return i < text.length ? i : text.length;
  } catch (at) {
    return at as number;
  }
}

/** A YAML/JSON parse error as "file:line:column: message". */
function parseText(text: string, name: string, format: "json" | "yaml"): unknown {
  if (format === "json") {
    try {
      return JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message.replace(/,? "[\s\S]*" is not valid JSON$/, "").replace(/\s*(in JSON )?at position \d+.*$/, "").replace(/\s*\(line \d+ column \d+\)/, "");
      const before = text.slice(0, jsonErrorOffset(text));
      const where = `:${before.split("\n").length}:${before.length - before.lastIndexOf("\n")}`;
      throw new SyntaxError(`${name}${where}: invalid JSON: ${msg}`);
    }
  }
  try {
    return parseYaml(text);
  } catch (e) {
    if (e instanceof YAMLParseError) {
      const at = e.linePos?.[0];
      const first = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
      throw new SyntaxError(`${name}${at ? `:${at.line}:${at.col}` : ""}: invalid YAML: ${first}`);
    }
    throw e;
  }
}

/** Whether a string is config text rather than a path: it has a line break, is a JSON object or reads as `key: value`. */
function looksLikeText(s: string): boolean {
  return s.includes("\n") || /^\s*\{/.test(s) || /^\s*[A-Za-z_][\w-]*\s*:(\s|$)/.test(s);
}

/**
 * Reads a `trl sft --config` file (YAML or JSON): a path (Deno/Node), a URL, a File/Blob, or the text itself.
 * SFTConfig keys go through sftConfig(); TRL's model keys (model_name_or_path, model_revision, dtype, …),
 * dataset keys (dataset_name, dataset_config, dataset_train_split, …) and LoRA keys (use_peft, lora_r,
 * lora_alpha, lora_dropout, lora_target_modules, …) are returned apart. Errors name the file, and the line
 * of a syntax error.
 */
export async function loadSFTConfig(source: string | URL | Blob | { text: string; name?: string }, options: LoadOptions = {}): Promise<LoadedSFTConfig> {
  let text: string;
  let name: string;
  if (typeof source === "string" && looksLikeText(source)) [text, name] = [source, "<config text>"];
  else if (typeof source === "string") {
    name = source;
    try {
      text = await (await fs()).readFile(source, "utf8");
    } catch (e) {
      throw new Error(`loadSFTConfig: cannot read ${source}: ${(e as Error).message}`);
    }
  } else if (source instanceof URL) {
    name = source.href;
    const res = await fetch(source);
    if (!res.ok) throw new Error(`loadSFTConfig: ${name}: HTTP ${res.status} ${res.statusText}`);
    text = await res.text();
  } else if (typeof Blob !== "undefined" && source instanceof Blob) {
    name = (source as File).name ?? "<config blob>";
    text = await source.text();
  } else {
    const s = source as { text: string; name?: string };
    [text, name] = [s.text, s.name ?? "<config text>"];
  }
  const format = options.format ?? (/\.json$/i.test(name) ? "json" : /\.ya?ml$/i.test(name) ? "yaml" : /^\s*\{/.test(text) ? "json" : "yaml");
  const data = parseText(text, name, format);
  if (data === null || data === undefined) return splitConfig({}, name, options);
  if (!isDict(data)) throw new SFTConfigError(name, [`expected a mapping of options at the top level, got ${Array.isArray(data) ? "a list" : show(data)}`]);
  return splitConfig(data, name, options);
}

/** Splits a flat `trl sft` mapping into SFTConfig, model, dataset and LoRA parts, validating each. */
export function splitConfig(data: Record<string, unknown>, name = "<config>", options: SFTConfigOptions = {}): LoadedSFTConfig {
  const problems: string[] = [];
  const notes: string[] = [];
  const sft: Record<string, unknown> = {};
  const model: Record<string, unknown> = { ...MODEL_DEFAULTS };
  const dataset: Record<string, unknown> = { ...DATASET_DEFAULTS };
  const lora: Record<string, unknown> = { ...PEFT_DEFAULTS };
  let env: Record<string, string> = {};
  const checked = (checks: Record<string, Check>, target: Record<string, unknown>, key: string, raw: unknown) => {
    let value = raw;
    let why = checks[key]!(value);
    if (why && options.coerce && typeof raw === "string" && !checks[key]!(coerced(raw))) [value, why] = [coerced(raw), null];
    if (why) problems.push(`${key}=${show(raw)} is not allowed: expected ${why}`);
    else target[key] = value;
  };
  for (const [key, raw] of Object.entries(data)) {
    if (raw === undefined) continue;
    if (key === "env") {
      if (isDict(raw) && Object.values(raw).every((v) => ["string", "number", "boolean"].includes(typeof v))) {
        env = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
      } else problems.push(`env=${show(raw)} is not allowed: expected a mapping of environment variable names to values`);
    } else if (key in MODEL_CHECKS) checked(MODEL_CHECKS, model, key, raw);
    else if (key in DATASET_CHECKS) checked(DATASET_CHECKS, dataset, key, raw);
    else if (key in PEFT_CHECKS) checked(PEFT_CHECKS, lora, key, raw);
    else if (key in MODEL_IGNORED) {
      if (!isInactive(raw, INACTIVE[key])) notes.push(`${key}=${show(raw)}: ${MODEL_IGNORED[key]}`);
    } else sft[key] = raw;
  }
  let args: ResolvedSFTConfig | null = null;
  try {
    args = sftConfig(sft, { coerce: options.coerce });
  } catch (e) {
    if (!(e instanceof SFTConfigError)) throw e;
    problems.unshift(...e.problems);
  }
  if (problems.length || !args) throw new SFTConfigError(name, problems);

  if ("torch_dtype" in model) {
    if (data.dtype === undefined) model.dtype = model.torch_dtype;
    delete model.torch_dtype;
  }
  if ("streaming" in dataset) {
    if (data.dataset_streaming === undefined) dataset.dataset_streaming = dataset.streaming;
    delete dataset.streaming;
  }
  if (model.dtype === "bfloat16" || model.dtype === "float16") {
    notes.push(`dtype=${show(model.dtype)}: f16 storage of the frozen base weights where the adapter has shader-f16 (dtype float16); compute stays f32`);
  }
  if (model.trust_remote_code === true) notes.push("trust_remote_code=true: ignored: webtune runs no model code from the Hub; it loads the Llama family (Llama, Mistral, Qwen2, Qwen3)");
  if (model.attn_implementation !== null) notes.push(`attn_implementation=${show(model.attn_implementation)}: ignored: webtune's own flash attention over packed sequences is always used`);

  let peft: LoraConfig | null = null;
  if (lora.use_peft === true) {
    let target = lora.lora_target_modules as string | string[] | null;
    // TRL collapses a one-element list to its string, which is what makes ["all-linear"] mean "all-linear".
    if (Array.isArray(target) && target.length === 1 && target[0] === "all-linear") target = "all-linear";
    peft = {
      r: lora.lora_r as number,
      lora_alpha: lora.lora_alpha as number,
      lora_dropout: lora.lora_dropout as number,
      target_modules: target,
      use_rslora: lora.use_rslora as boolean,
      bias: "none",
      task_type: "CAUSAL_LM",
    };
  } else {
    const set = Object.keys(data).filter((k) => k.startsWith("lora_") || k === "use_rslora" || k === "use_dora");
    if (set.length) notes.push(`${set.join(", ")}: ignored without use_peft: true (full fine-tuning)`);
  }
  for (const n of notes) options.warn?.(n);
  for (const n of args.notes) options.warn?.(n);
  return {
    args,
    model: model as unknown as ModelArgs,
    dataset: dataset as unknown as DatasetArgs,
    peft,
    env,
    notes: [...args.notes, ...notes],
  };
}
