// SFTConfig as TRL spells it: the SFT-specific options of trl.SFTConfig and the inherited
// transformers.TrainingArguments an SFT user sets, with TRL's names (snake_case) and defaults, and sftConfig(),
// which validates a config and fills them. A config pasted from Python works: every TrainingArguments key is
// accepted (config_keys.ts says what webtune does with the ones that are not SFTConfig's), or rejected with
// the reason when it asks for something webtune does not implement. config_file.ts reads the YAML/JSON files
// that `trl sft --config` takes, model/dataset/LoRA keys (cli_args.ts) included.
import type { PackingStrategy } from "../data/packing.ts";
import { optimizerNames } from "../nn/optim.ts";
import { CLI_KEYS } from "./cli_args.ts";
import { bool, checked, coerced, dict, int, isDict, isInactive, isInt, isNum, nonEmptyStr, nullable, num, oneOf, quoted, show, str, unitInterval, type Check } from "./config_checks.ts";
import { IGNORED, INACTIVE, LORA_CONFIG_KEYS, REMOVED, RENAMED, UNSUPPORTED } from "./config_keys.ts";
import { SCHEDULER_TYPES, type SchedulerType } from "./schedule.ts";

export type IntervalStrategy = "no" | "steps" | "epoch";
/** "chunked_nll" is TRL's name for "nll" computed in chunks; webtune's fused loss is always chunked. */
export type SFTLossType = "nll" | "dft" | "chunked_nll";

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
  /**
   * Options for from_pretrained when the trainer is given a model id (webtune reads `dtype`, `revision` and
   * `quantization_config`: BitsAndBytesConfig keys, quantize on load).
   */
  model_init_kwargs: Record<string, unknown> | null;
  /** TRL's dataset preparation options: only `{skip_prepare_dataset: false}` (see the check). */
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
  lr_scheduler_type: SchedulerType;
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
   * Logging integrations, as transformers names them: "none" (default), "tensorboard" (event files under
   * logging_dir), "all" (every one webtune implements: REPORT_TO_INTEGRATIONS), or a list of names. A name
   * webtune does not implement ("wandb", …) is an error listing the ones it does.
   */
  report_to: string | string[] | null;
  /**
   * Where "tensorboard" writes its event files: transformers 4's TrainingArguments.logging_dir (transformers 5
   * removed it, so exported configs leave it out). Default (absent or null): $TENSORBOARD_LOGGING_DIR, else
   * output_dir/runs/<Mon DD_HH-MM-SS>_<host>, as transformers 5's TensorBoardCallback names it.
   */
  logging_dir?: string | null;
  /** bf16 mixed precision in PyTorch; true here means f16 storage of the frozen base weights (see notes). */
  bf16: boolean | null;
  /** As bf16. */
  fp16: boolean;
  /** The optimizer, by its transformers name: one of optimizerNames() (default "adamw_torch"). */
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
// Each SFTConfig key's check.

/** logging/eval/save steps: an integer ≥ 1, or a fraction of the total steps in (0, 1). */
const interval: Check = (v) => (isNum(v) && ((isInt(v) && v >= 1) || (v > 0 && v < 1)) ? null : "an integer ≥ 1 or a fraction in (0, 1) of the total steps");

const STRATEGIES = ["no", "steps", "epoch"] as const;
/** transformers' other SchedulerType values: known names, so the error says "not supported" rather than "unknown". */
const OTHER_SCHEDULERS = ["cosine_with_restarts", "polynomial", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay"];
const PACKING_STRATEGIES: readonly PackingStrategy[] = ["bfd", "bfd_split", "wrapped"];

const CHECKS: { [K in keyof SFTConfig]: Check } = {
  dataset_text_field: nonEmptyStr,
  max_length: nullable(int(1)),
  truncation_mode: (v) => (v === "keep_end" ? `"keep_start" ("keep_end" is deprecated in TRL and not supported by webtune)` : oneOf(["keep_start"])(v)),
  shuffle_dataset: bool,
  packing: bool,
  packing_strategy: oneOf(PACKING_STRATEGIES),
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
  // TRL reads one key of it, skip_prepare_dataset (the dataset used as is); webtune always prepares (a tokenized
  // row with input_ids passes through as TRL's prepared rows do), so only false is accepted.
  dataset_kwargs: (v) => {
    if (v === null) return null;
    if (!isDict(v)) return "a mapping ({skip_prepare_dataset: false}) or null";
    const other = Object.keys(v).filter((k) => k !== "skip_prepare_dataset");
    if (other.length) return `a mapping whose only key TRL reads is skip_prepare_dataset; ${other.map((k) => `"${k}"`).join(", ")} would be ignored`;
    if (v.skip_prepare_dataset === true) return "without skip_prepare_dataset: true: webtune always prepares the dataset (rows already tokenized, with input_ids, pass through unchanged apart from truncation to max_length, as in TRL); drop dataset_kwargs";
    if (v.skip_prepare_dataset !== undefined && v.skip_prepare_dataset !== false && v.skip_prepare_dataset !== null) return "{skip_prepare_dataset: false} (a boolean)";
    return null;
  },

  output_dir: nonEmptyStr,
  learning_rate: num(0),
  weight_decay: num(0),
  adam_beta1: unitInterval,
  adam_beta2: unitInterval,
  adam_epsilon: num(0, Infinity, true),
  max_grad_norm: nullable(num(0)),
  num_train_epochs: num(0, Infinity, true),
  max_steps: (v) => (isInt(v) && (v === -1 || v > 0) ? null : "a positive integer, or -1 (train for num_train_epochs)"),
  lr_scheduler_type: (v) =>
    typeof v === "string" && OTHER_SCHEDULERS.includes(v) ? `one of ${quoted(SCHEDULER_TYPES)} (webtune does not implement "${v}")` : oneOf(SCHEDULER_TYPES)(v),
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
  report_to: (v) => {
    const names = v === null ? [] : typeof v === "string" ? [v] : Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : null;
    if (!names) return `a name or a list of names: ${quoted(["none", "all", ...REPORT_TO_INTEGRATIONS])}`;
    const missing = names.filter((n) => n !== "none" && n !== "all" && !(REPORT_TO_INTEGRATIONS as readonly string[]).includes(n));
    return missing.length
      ? `one of ${quoted(REPORT_TO_INTEGRATIONS)} (the integrations webtune implements), "all" (all of them) or "none": webtune does not implement ${quoted(missing)}`
      : null;
  },
  logging_dir: nullable(nonEmptyStr),
  bf16: nullable(bool),
  fp16: bool,
  optim: (v) => (typeof v === "string" && optimizerNames().includes(v) ? null : `one of ${quoted(optimizerNames())} (the optimizers webtune implements)`),
};

const SFT_KEYS = Object.keys(CHECKS) as (keyof SFTConfig)[];

/** Every key a `trl sft` config may hold. */
const ALL_KEYS = [...SFT_KEYS, ...Object.keys(IGNORED), ...Object.keys(UNSUPPORTED), ...CLI_KEYS, "env"];

/** Every problem of a config, one per line; `problems` lists them. */
export class SFTConfigError extends Error {
  readonly problems: string[];
  constructor(where: string, problems: string[]) {
    super(problems.length === 1 ? `${where}: ${problems[0]}` : `${where}: ${problems.length} problems:\n  - ${problems.join("\n  - ")}`);
    this.name = "SFTConfigError";
    this.problems = problems;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Unknown keys: the nearest valid name.

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
      const r = checked(check, key, raw, options.coerce);
      if ("problem" in r) problems.push(r.problem);
      else out[key] = r.value;
    } else if (key in IGNORED) {
      out[key] = raw;
      if (!isInactive(raw, INACTIVE[key])) note(`${key}=${shownValue(key, raw)}: ${IGNORED[key]}`);
    } else if (key in UNSUPPORTED) {
      const u = UNSUPPORTED[key]!;
      const value = options.coerce && typeof raw === "string" ? coerced(raw) : raw;
      if (value === u.inactive || value === null) out[key] = value;
      else problems.push(`${key}=${show(raw)} is not supported: ${u.why} (remove it or set ${show(u.inactive)})`);
    } else if (LORA_CONFIG_KEYS.includes(key)) {
      problems.push(`"${key}" is a LoraConfig (PEFT) key, not an SFTConfig option: pass it in the trainer's peft_config (in a \`trl sft\` config file: ${key.startsWith("lora_") || key.startsWith("use_") ? key : `lora_${key}`})`);
    } else if (CLI_KEYS.includes(key)) {
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
  if (c.logging_dir != null && !reportIntegrations(c.report_to).includes("tensorboard")) {
    note(`logging_dir=${show(c.logging_dir)}: unused: it is where report_to "tensorboard" writes, and report_to is ${show(c.report_to)}`);
  }
  if (c.gradient_checkpointing_kwargs !== null && Object.keys(c.gradient_checkpointing_kwargs).length) {
    note(`gradient_checkpointing_kwargs=${shownValue("gradient_checkpointing_kwargs", c.gradient_checkpointing_kwargs)}: accepted; webtune recomputes whole decoder layers and needs no options`);
  }

  Object.defineProperty(c, "notes", { value: notes, enumerable: false });
  for (const n of notes) options.warn?.(n);
  return c;
}

// ---------------------------------------------------------------------------------------------------------
// Secrets. Tokens are read from the options that take them (hub_token, a source's `token`) and from the
// environment ($HF_TOKEN), and are never printed or written: notes show a placeholder, training_args.json and
// every other saved mapping hold `<HUB_TOKEN>` instead, as transformers' TrainingArguments.to_dict() writes.

/** Vocabulary entries (SFTConfig's eos_token, pad_token; a tokenizer's bos_token, …) and counts (num_tokens): not secrets. */
const NOT_SECRET = /^(eos|pad|bos|unk|sep|cls|mask)_token$|tokens/i;

/** Whether `key` names a secret: hub_token, push_to_hub_token, token, HF_TOKEN, WANDB_API_KEY, *_secret, *password*. */
export function isSecretKey(key: string): boolean {
  return /token|secret|password|api_?key/i.test(key) && !NOT_SECRET.test(key);
}

/** The placeholder a secret is written as: `<HUB_TOKEN>` for hub_token (transformers' to_dict). */
export const secretPlaceholder = (key: string): string => `<${key.toUpperCase()}>`;

/** A value as a note or an error shows it: a secret's placeholder, or `show(value)` with the secrets inside masked. */
export function shownValue(key: string, value: unknown): string {
  return isSecretKey(key) && value !== null && value !== undefined && value !== "" ? secretPlaceholder(key) : show(withoutSecrets(value));
}

/**
 * `value` with every secret (the value of a key isSecretKey() names, at any depth of mappings and lists)
 * replaced by its placeholder; other values are kept as they are (a copy where something was replaced).
 */
export function withoutSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => withoutSecrets(v)) as T;
  if (!isDict(value) || ![Object.prototype, null].includes(Object.getPrototypeOf(value))) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined && v !== "" && typeof v !== "boolean" ? secretPlaceholder(k) : withoutSecrets(v);
  }
  return out as T;
}

/**
 * The arguments as a checkpoint's training_args.json holds them (transformers' TrainingArguments.to_dict()):
 * every key, each `*_token` value replaced by `<KEY_NAME>` (eos_token and pad_token too, as transformers
 * does), and secrets nested in mappings (model_init_kwargs.token) masked; webtune's notes left out.
 */
export function trainingArgsJSON(args: ResolvedSFTConfig | Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    if (k === "notes") continue;
    out[k] = k.endsWith("_token") ? secretPlaceholder(k) : withoutSecrets(v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers for the trainer.

/** The report_to integrations webtune implements ("all" means these). */
export const REPORT_TO_INTEGRATIONS = ["tensorboard"] as const;
export type ReportToIntegration = (typeof REPORT_TO_INTEGRATIONS)[number];

/** report_to as transformers resolves it: "none"/null → [], "all" → every implemented one, a name → [name]. */
export function reportIntegrations(report_to: SFTConfig["report_to"]): ReportToIntegration[] {
  const names = report_to === null ? [] : Array.isArray(report_to) ? report_to : [report_to];
  if (names.includes("all")) return [...REPORT_TO_INTEGRATIONS];
  return REPORT_TO_INTEGRATIONS.filter((n) => names.includes(n));
}

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
