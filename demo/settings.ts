// The page's training settings: the form's fields, their defaults for the tiny model and for a real one, and
// the one mapping from them to `trl sft` keys. The YAML export shows that mapping and the worker trains with
// it (through splitConfig), so what the page exports is what it ran.
import { SFT_DEFAULTS, type SFTConfig } from "../src/index.ts";

/** The form's settings: SFTConfig keys (TRL's names) and the LoRA keys of `trl sft` (lora_r, …). */
export interface Settings {
  learning_rate: number;
  max_steps: number;
  num_train_epochs: number;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  max_length: number;
  packing: boolean;
  /** "auto" is TRL's null: true when the rows have prompt and completion. */
  completion_only_loss: "auto" | "true" | "false";
  assistant_only_loss: boolean;
  lr_scheduler_type: SFTConfig["lr_scheduler_type"];
  warmup_steps: number;
  logging_steps: number;
  save_steps: number;
  gradient_checkpointing: boolean;
  bf16: boolean;
  seed: number;
  /** "tensorboard": event files of the run's logs (the page offers them for download when it ends); or "none". */
  report_to: "tensorboard" | "none";
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** "all-linear", or module names separated by commas or spaces. */
  lora_target_modules: string;
}

/**
 * The tiny model's recipe on the sample: train.ts's default run (LoRA r 16, alpha 32 on every linear, learning
 * rate 1e-2, 24 epochs of the 64 facts in batches of 16: 96 steps, linear decay after 5 warmup steps), which
 * memorises the facts (≥ 95% token accuracy, most completions exact). The page logs every step for its chart
 * and checkpoints every 24 steps, and writes TensorBoard event files (train.ts logs every 8th step, saves none and
 * reports to none; none of it changes what is learnt).
 */
export const TINY_DEFAULTS: Settings = {
  learning_rate: 1e-2,
  max_steps: SFT_DEFAULTS.max_steps,
  num_train_epochs: 24,
  per_device_train_batch_size: 16,
  gradient_accumulation_steps: SFT_DEFAULTS.gradient_accumulation_steps,
  max_length: 64,
  packing: SFT_DEFAULTS.packing,
  completion_only_loss: "auto",
  assistant_only_loss: SFT_DEFAULTS.assistant_only_loss,
  lr_scheduler_type: "linear",
  warmup_steps: 5,
  logging_steps: 1,
  save_steps: 24,
  gradient_checkpointing: false,
  bf16: false,
  seed: SFT_DEFAULTS.seed,
  report_to: "tensorboard",
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0,
  lora_target_modules: "all-linear",
};

/** For a real model: TRL's defaults, with LoRA's usual learning rate and a run short enough for a browser tab. */
export const MODEL_DEFAULTS: Settings = {
  ...TINY_DEFAULTS,
  learning_rate: 2e-4,
  max_steps: 100,
  num_train_epochs: SFT_DEFAULTS.num_train_epochs,
  per_device_train_batch_size: 4,
  gradient_accumulation_steps: 2,
  max_length: 512,
  warmup_steps: 10,
  logging_steps: 5,
  save_steps: 25,
  gradient_checkpointing: SFT_DEFAULTS.gradient_checkpointing,
  bf16: true,
  lora_dropout: 0.05,
};

/** The LoRA keys of `trl sft` (TRL's ModelConfig), as the page sets them. */
interface LoraKeys {
  use_peft: true;
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  lora_target_modules: string | string[];
}

/**
 * The settings as a flat `trl sft` mapping: the LoRA keys, then SFTConfig's. Checkpoints go to `output_dir`
 * every save_steps, the newest two kept.
 */
export function trlConfig(s: Settings, output_dir: string) {
  const t = s.lora_target_modules.trim();
  return {
    use_peft: true,
    lora_r: s.lora_r,
    lora_alpha: s.lora_alpha,
    lora_dropout: s.lora_dropout,
    lora_target_modules: t === "all-linear" || t === "" ? "all-linear" : t.split(/[\s,]+/).filter(Boolean),
    output_dir,
    learning_rate: s.learning_rate,
    max_steps: s.max_steps,
    num_train_epochs: s.num_train_epochs,
    per_device_train_batch_size: s.per_device_train_batch_size,
    gradient_accumulation_steps: s.gradient_accumulation_steps,
    max_length: s.max_length,
    packing: s.packing,
    completion_only_loss: s.completion_only_loss === "auto" ? null : s.completion_only_loss === "true",
    assistant_only_loss: s.assistant_only_loss,
    lr_scheduler_type: s.lr_scheduler_type,
    warmup_steps: s.warmup_steps,
    logging_steps: s.logging_steps,
    save_strategy: "steps",
    save_steps: s.save_steps,
    save_total_limit: 2,
    gradient_checkpointing: s.gradient_checkpointing,
    bf16: s.bf16,
    seed: s.seed,
    report_to: s.report_to === "tensorboard" ? "tensorboard" : "none",
  } satisfies LoraKeys & Partial<SFTConfig>;
}
