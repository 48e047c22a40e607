// The transformers.TrainingArguments keys that are not SFTConfig's, and the names people type by mistake:
// what sftConfig() does with each. A config dumped from Python sets all of them.
import { optimizerNames } from "../nn/optim.ts";
import { quoted } from "./config_checks.ts";

export const NO_DISTRIBUTED = "ignored: webtune trains on one WebGPU device; there is no distributed or sharded training";
const NO_HUB = "ignored: webtune does not upload; push output_dir yourself (huggingface-cli upload, or the Hub's web UI)";
const NO_TORCH = "ignored: a PyTorch/CUDA switch with no WebGPU counterpart";
const NO_EVAL_EXTRAS = "ignored: evaluation computes loss, mean_token_accuracy and entropy only, as SFTTrainer logs them";
const NO_COMPILE = "ignored: there is no torch.compile on WebGPU; webtune's WGSL kernels are compiled once per shape";
const ON_DEVICE = "ignored: webtune runs on the WebGPU adapter getDevice() picks (a CPU adapter such as SwiftShader or llvmpipe where there is no GPU)";
const ONE_THREAD = "ignored: dataset preparation and batching run in this one thread, ahead of the GPU";
const LOGS = 'ignored: logs go to the trainer\'s callbacks, the console and the report_to integrations webtune implements ("tensorboard")';

/** The same note for each of `keys`. */
export const each = (keys: string[], note: string): Record<string, string> => Object.fromEntries(keys.map((k) => [k, note]));

/**
 * Keys with no meaning on one WebGPU device: accepted, and when set to anything but their inactive value
 * (null, false, 0, "", [], {} or transformers' default in INACTIVE) each adds its note, once.
 */
export const IGNORED: Record<string, string> = {
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
  use_cache: "ignored: training never uses a KV cache (generate() keeps one of its own)",
  router_aux_loss_coef: "ignored: the load-balancing loss of Mixture-of-Experts models; webtune trains dense models",
  enable_jit_checkpoint: "ignored: there is no SIGTERM checkpoint; checkpoints follow save_strategy and resume exactly",
  ...each(["dataset_num_proc", "dataloader_num_workers", "dataloader_prefetch_factor", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_multiprocessing_context", "dataloader_in_order"], ONE_THREAD),
  ...each(["torch_compile", "torch_compile_backend", "torch_compile_mode", "torchdynamo"], NO_COMPILE),
  ...each(["use_cpu", "no_cuda", "use_mps_device", "use_ipex", "jit_mode_eval"], ON_DEVICE),
  ...each(["ddp_backend", "ddp_find_unused_parameters", "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_timeout", "ddp_static_graph", "local_rank", "deepspeed",
    "fsdp", "fsdp_config", "fsdp_min_num_params", "fsdp_transformer_layer_cls_to_wrap", "accelerator_config", "parallelism_config",
    "average_tokens_across_devices", "save_on_each_node", "log_on_each_node", "log_level_replica", "eval_use_gather_object", "tpu_num_cores",
    "tpu_metrics_debug", "mp_parameters", "ray_scope"], NO_DISTRIBUTED),
  ...each(["push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision",
    "push_to_hub_model_id", "push_to_hub_organization", "push_to_hub_token"], NO_HUB),
  ...each(["fp16_opt_level", "half_precision_backend", "fp16_backend", "bf16_full_eval", "fp16_full_eval", "full_determinism", "debug",
    "skip_memory_metrics", "use_legacy_prediction_loop", "past_index", "overwrite_output_dir", "restore_callback_states_from_checkpoint"], NO_TORCH),
  ...each(["disable_tqdm", "log_level", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id"], LOGS),
  ...each(["prediction_loss_only", "eval_accumulation_steps", "eval_delay", "include_inputs_for_metrics", "include_for_metrics",
    "eval_do_concat_batches", "batch_eval_metrics", "label_names"], NO_EVAL_EXTRAS),
};

/** transformers' defaults of ignored keys that are neither null, false, 0, "", [] nor {}: a dumped config sets them. */
export const INACTIVE: Record<string, unknown> = {
  ddp_timeout: 1800, local_rank: -1, average_tokens_across_devices: true, log_on_each_node: true, log_level_replica: "warning", ray_scope: "last",
  hub_strategy: "every_save", fp16_opt_level: "O1", half_precision_backend: "auto", fp16_backend: "auto", skip_memory_metrics: true,
  past_index: -1, logging_nan_inf_filter: true, include_num_input_tokens_seen: "no", log_level: "passive", remove_unused_columns: true,
  project: "huggingface", trackio_space_id: "trackio", eval_do_concat_batches: true, save_safetensors: true, dataloader_pin_memory: true,
  dataloader_in_order: true, router_aux_loss_coef: 0.001,
};

/** Keys accepted only at their default (or null): anything else changes training in a way webtune does not implement. */
export const UNSUPPORTED: Record<string, { inactive: unknown; why: string }> = {
  neftune_noise_alpha: { inactive: null, why: "NEFTune embedding noise is not implemented" },
  label_smoothing_factor: { inactive: 0, why: "label smoothing is not implemented (TRL's SFT loss has none either)" },
  group_by_length: { inactive: false, why: "length-grouped sampling is not implemented; packing or padding_free avoids the padding it saves" },
  train_sampling_strategy: { inactive: "random", why: "webtune samples at random (a seeded shuffle each epoch), transformers' \"random\"; other samplers are not implemented" },
  length_column_name: { inactive: "length", why: "length-grouped sampling is not implemented" },
  auto_find_batch_size: { inactive: false, why: "the batch size is not searched; lower per_device_train_batch_size and raise gradient_accumulation_steps" },
  load_best_model_at_end: { inactive: false, why: "webtune does not track a best checkpoint" },
  metric_for_best_model: { inactive: null, why: "webtune does not track a best checkpoint" },
  greater_is_better: { inactive: null, why: "webtune does not track a best checkpoint" },
  eval_on_start: { inactive: false, why: "evaluation before the first step is not implemented" },
  save_only_model: { inactive: false, why: "checkpoints always hold the optimizer and scheduler state, so that resume continues exactly" },
  ignore_data_skip: { inactive: false, why: "resume always skips the batches already seen, so that it continues exactly" },
  adafactor: { inactive: false, why: `Adafactor is not implemented (optim is one of ${quoted(optimizerNames())})` },
  optim_args: { inactive: "", why: "webtune's optimizers take no optim_args; AdamW is set by learning_rate, adam_beta1/2, adam_epsilon and weight_decay" },
  optim_target_modules: { inactive: null, why: "GaLore/APOLLO targets have no meaning with AdamW" },
};

/** Old names and common look-alikes → the option's name. */
export const RENAMED: Record<string, string> = {
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
export const REMOVED: Record<string, string> = {
  dataset_batch_size: "removed from TRL; it has no counterpart",
  num_of_sequences: 'removed from TRL; packing uses "max_length"',
  chars_per_token: 'removed from TRL; packing uses "max_length"',
};

/** PEFT LoraConfig keys: a LoRA setting pasted into SFTConfig. */
export const LORA_CONFIG_KEYS = ["r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "modules_to_save", "bias", "task_type", "layers_to_transform", "init_lora_weights"];
