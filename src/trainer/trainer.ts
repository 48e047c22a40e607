// SFTTrainer: TRL's supervised fine-tuning loop on WebGPU — data preparation and packing, gradient
// accumulation normalised by the tokens of the whole accumulated batch, the optimizer that `optim` names
// (src/nn/optim.ts) with a schedule and clipping, TRL's metrics, checkpoints that resume exactly, and PEFT
// adapters.
import { deviceInfo, getDevice } from "../gpu/device.ts";
import { DataCollatorForLanguageModeling, type CollatedBatch, type CollatorExample } from "../data/collator.ts";
import { pack_dataset, packStream, type PackedRow, type PackInputRow } from "../data/packing.ts";
import { prepareDataset, type PreparedExample } from "../data/prepare.ts";
import { Dataset, type DatasetSource } from "../data/sources.ts";
import { AutoTokenizer, type PreTrainedTokenizer } from "../data/tokenizer.ts";
import { AutoModelForCausalLM } from "../models/auto.ts";
import { openFile } from "../io/open.ts";
import { decodeUtf8 } from "../io/utf8.ts";
import type { ModelSource } from "../io/source.ts";
import { fromStored, weightsOf } from "../models/architecture.ts";
import type { CausalLM } from "../models/causal_lm.ts";
import { architectureOf } from "../models/config.ts";
import { get_peft_model, PeftModel, type LoraConfig } from "../models/peft.ts";
import { parseQuantizationConfig, type BitsAndBytesConfig } from "../models/quantization.ts";
import { permutation } from "../models/sampling.ts";
import { ModelWeights, SafetensorsFile, writeSafetensors, type SafetensorsEntry } from "../models/safetensors.ts";
import { clip_grad_norm_ } from "../nn/grad_norm.ts";
import { createOptimizer } from "../nn/optim.ts";
import { joinStateDict, splitStateDict, type Optimizer, type OptimizerStateJSON } from "../nn/optimizer.ts";
import { concat, reshape } from "../ops/layout.ts";
import { no_grad } from "../tensor/autograd.ts";
import { memoryStats } from "../tensor/memory.ts";
import { keep, tidy } from "../tensor/scope.ts";
import { missingFeature } from "../tensor/format.ts";
import { Tensor } from "../tensor/tensor.ts";
import { deviceLost, gpu } from "../gpu/device.ts";
import { baseWeightsDtype, intervalSteps, reportIntegrations, sftConfig, trainingArgsJSON, type ResolvedSFTConfig, type SFTConfig } from "./config.ts";
import { lrLambda, warmupSteps } from "./schedule.ts";
import { openStorage, rotateCheckpoints, type CheckpointStorage, type StorageLocation } from "./storage.ts";
import { TensorBoardCallback, type TensorBoardFile } from "./tensorboard.ts";

/**
 * What the trainer keeps about its progress: transformers' TrainerState, every key of it, so that a checkpoint's
 * trainer_state.json reads with TrainerState.load_from_json.
 */
export interface TrainerState {
  global_step: number;
  /** Fractional epochs done (a stream of unknown length counts whole passes). */
  epoch: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  save_steps: number;
  eval_steps: number;
  train_batch_size: number;
  /** Every log, in order: {loss, grad_norm, learning_rate, …, step} and {eval_loss, …}. */
  log_history: Record<string, number>[];
  /** Input tokens processed so far (non-padding, prompts included): TRL's num_tokens. */
  num_input_tokens_seen: number;
  /** transformers' estimate of the training FLOPs: 6 · non-embedding parameters · input tokens (padding included). */
  total_flos: number;
  /** webtune tracks no best checkpoint (metric_for_best_model is not supported): these stay null. */
  best_metric: number | null;
  best_global_step: number | null;
  best_model_checkpoint: string | null;
  is_local_process_zero: true;
  is_world_process_zero: true;
  is_hyper_param_search: false;
  trial_name: null;
  trial_params: null;
}

/** Callbacks set these to steer the loop (transformers' TrainerControl). */
export interface TrainerControl {
  should_training_stop: boolean;
  should_save: boolean;
  should_log: boolean;
  should_evaluate: boolean;
}

/** transformers' TrainerCallback, the events webtune raises. Each may be async. */
export interface TrainerCallback {
  on_train_begin?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl): void | Promise<void>;
  on_step_end?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl): void | Promise<void>;
  on_log?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl, logs: Record<string, number>): void | Promise<void>;
  on_save?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl, checkpoint: string): void | Promise<void>;
  on_evaluate?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl, metrics: Record<string, number>): void | Promise<void>;
  on_train_end?(args: ResolvedSFTConfig, state: TrainerState, control: TrainerControl): void | Promise<void>;
}

export interface SFTTrainerInit {
  /** A loaded model (with or without LoRA) or what AutoModelForCausalLM.from_pretrained takes. */
  model: CausalLM | PeftModel | string;
  args?: Partial<SFTConfig> | ResolvedSFTConfig;
  train_dataset: DatasetSource;
  eval_dataset?: DatasetSource;
  /** The tokenizer; default: AutoTokenizer.from_pretrained of the model's location. */
  processing_class?: PreTrainedTokenizer;
  /** LoRA on the model (PEFT's LoraConfig); without it and without a PeftModel, every weight trains. */
  peft_config?: LoraConfig;
  /**
   * TRL's SFTTrainer quantization_config: when `model` is a string, from_pretrained quantizes the base on load
   * (BitsAndBytesConfig keys: models/quantization.ts; args.model_init_kwargs.quantization_config works too, not
   * both). Needs peft_config: a quantized base is frozen. Ignored, with a warning, for a loaded model.
   */
  quantization_config?: BitsAndBytesConfig | null;
  callbacks?: TrainerCallback[];
  /** Turns a row into text (TRL's formatting_func). */
  formatting_func?: (row: Record<string, unknown>) => string;
  /** Where checkpoints go: default args.output_dir (a directory, or IndexedDB in a browser). */
  storage?: StorageLocation;
  /** Messages about the data and options (default console.warn). */
  warn?: (message: string) => void;
  /**
   * saves: resume a checkpoint even when it was trained on another base model (its webtune_state.json records
   * the base's config and a weights fingerprint; by default a mismatch is an error).
   */
  ignore_base_model_mismatch?: boolean;
  /**
   * How many times one train() recovers from a lost GPU device (a new device, the model reloaded, the last
   * checkpoint restored) before it gives up with the error; default 3, 0 never.
   */
  max_device_recoveries?: number;
}

export interface TrainOutput {
  global_step: number;
  /** Mean of the step losses over the whole run. */
  training_loss: number;
  metrics: Record<string, number>;
}


/** Where the data stream is: the epoch, and micro-batches consumed in it. */
interface DataPosition {
  epoch: number;
  batches: number;
}

const TRAINER_STATE = "trainer_state.json";
/** What resume needs beyond transformers' TrainerState (trainer_state.json holds only its keys). */
const WEBTUNE_STATE = "webtune_state.json";
const OPTIMIZER = "optimizer.safetensors";
const OPTIMIZER_STATE = "optimizer.json";
const SCHEDULER = "scheduler.json";
const TRAINING_ARGS = "training_args.json";
const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json"];

function checkpointStep(id: string): number {
  const m = /^checkpoint-(\d+)$/.exec(id);
  return m ? Number(m[1]) : -1;
}

/** The model_init_kwargs keys the trainer passes to from_pretrained (as TRL's SFTTrainer does). */
const MODEL_INIT_KEYS = ["dtype", "torch_dtype", "quantization_config", "revision"];

/**
 * The dtype to load a model id with: model_init_kwargs' dtype (TRL's SFTTrainer passes it to from_pretrained) for
 * LoRA, "float16" / "bfloat16" storing the frozen base at half size; else bf16/fp16 (baseWeightsDtype). Full
 * fine-tuning trains f32 weights.
 */
function modelInitDtype(
  kw: Record<string, unknown>,
  a: ResolvedSFTConfig,
  lora: boolean,
  shaderF16: boolean,
  warn: (m: string) => void,
): "auto" | "float32" | "float16" | "bfloat16" {
  const asked = kw.dtype ?? kw.torch_dtype ?? null;
  if (asked !== null && !["auto", "float32", "float16", "bfloat16"].includes(asked as string)) {
    throw new Error(`SFTTrainer: model_init_kwargs.dtype ${JSON.stringify(asked)} is not one of "auto", "float32", "float16", "bfloat16"`);
  }
  if (!lora) {
    if (asked === "float16" || asked === "bfloat16") warn(`model_init_kwargs.dtype "${asked}": full fine-tuning trains f32 weights, so the model loads in float32`);
    return "float32";
  }
  return (asked as "auto" | "float32" | "float16" | "bfloat16" | null) ?? baseWeightsDtype(a, shaderF16);
}

/** Steps at ln V, with exploding weights, before the divergence warning. */
const DIVERGED_STEPS = 10;
/** A trainable weight this large (in absolute value) has exploded: initialisations and trained weights are O(1). */
const EXPLODED_WEIGHT = 1e6;

/** Training stopped on a non-finite loss, gradient or weight (SFTTrainer.train), or a save refused one. */
export class TrainingDivergedError extends Error {
  constructor(
    message: string,
    /** The optimizer step (1-based) that went non-finite. */
    readonly step: number,
    /** What went non-finite. */
    readonly what: string,
    /** The last good checkpoint (its path, or id in IndexedDB), null when none was saved. */
    readonly last_checkpoint: string | null,
  ) {
    super(message);
    this.name = "TrainingDivergedError";
  }
}

/** AdamW's update_stats (the largest |value| its last step wrote), null for an optimizer without them. */
function updateStats(optimizer: Optimizer): Tensor | null {
  return (optimizer as { update_stats?: Tensor | null }).update_stats ?? null;
}

/** The name of the first F32/F16/BF16 tensor of a safetensors file holding a NaN or Inf, or null. */
function nonFiniteTensor(bytes: Uint8Array): string | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const base = 8 + n;
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [start, end] = t.data_offsets;
    if (t.dtype === "F32") {
      for (let o = base + start; o < base + end; o += 4) if ((view.getUint32(o, true) & 0x7f800000) === 0x7f800000) return name;
    } else if (t.dtype === "F16" || t.dtype === "BF16") {
      const mask = t.dtype === "F16" ? 0x7c00 : 0x7f80;
      for (let o = base + start; o < base + end; o += 2) if ((view.getUint16(o, true) & mask) === mask) return name;
    }
  }
  return null;
}

/** TRL's SFTTrainer. `await new SFTTrainer({model, args, train_dataset}).train()`. */
export class SFTTrainer {
  readonly args: ResolvedSFTConfig;
  state: TrainerState;
  readonly control: TrainerControl = { should_training_stop: false, should_save: false, should_log: false, should_evaluate: false };
  readonly callbacks: TrainerCallback[];
  /** The plain model (after setup). */
  model!: CausalLM;
  /** The LoRA wrapper, when training adapters. */
  peft: PeftModel | null = null;
  processing_class!: PreTrainedTokenizer;
  /** The optimizer `args.optim` names. */
  optimizer!: Optimizer;
  storage!: CheckpointStorage;
  /** Rows dropped by truncation because no trainable token was left (TRL drops them too). */
  dropped_examples = 0;

  private readonly init: SFTTrainerInit;
  private readonly warn: (message: string) => void;
  private ready: Promise<void> | null = null;
  private collator!: DataCollatorForLanguageModeling;
  private evalCollator!: DataCollatorForLanguageModeling;
  /** The prepared (and packed) training rows when the dataset is held in memory; null when streamed. */
  private trainRows: CollatorExample[] | null = null;
  private evalRows: CollatorExample[] | null = null;
  private totalSteps = 0;
  /** Micro-batches per epoch (materialised data), null for a stream. */
  private batchesPerEpoch: number | null = null;
  private position: DataPosition = { epoch: 0, batches: 0 };
  private modelSource: ModelSource | null = null;
  private tokenizerCache: Record<string, Uint8Array> | null = null;
  /** The template chat_template_path gave, as saved with the checkpoints. */
  private chatTemplateFile: Uint8Array | null = null;
  /** report_to "tensorboard"'s callback. */
  private tensorboard: TensorBoardCallback | null = null;
  /** Non-embedding parameters, for total_flos (transformers' floating_point_ops). */
  private flopParams = 0;
  /** Where and how training went non-finite (train() stopped there; save_model refuses). */
  private divergedAt: { step: number; what: string } | null = null;
  /** The loss at ln V with exploding weights: consecutive steps, and whether the warning was given. */
  private divergenceWatch = { loss: NaN, steps: 0, warned: false };

  constructor(init: SFTTrainerInit) {
    this.init = init;
    this.warn = init.warn ?? ((m) => console.warn(m));
    this.args = "notes" in (init.args ?? {}) ? (init.args as ResolvedSFTConfig) : sftConfig(init.args ?? {});
    for (const note of this.args.notes) this.warn(note);
    // The report_to integrations come first, as transformers adds them before the user's callbacks.
    const integrations: TrainerCallback[] = [];
    for (const name of reportIntegrations(this.args.report_to)) {
      if (name === "tensorboard") integrations.push((this.tensorboard = new TensorBoardCallback({ model_config: () => this.model?.config.raw })));
    }
    this.callbacks = [...integrations, ...(init.callbacks ?? [])];
    this.state = this.freshState();
  }

  /**
   * The TensorBoard event files of report_to "tensorboard" (one per train() call), with their bytes: in a
   * browser the only copy (offer them as downloads; TensorBoard reads them from any directory); under Deno and
   * Node they are on disk in logging_dir too. Empty without report_to "tensorboard".
   */
  tensorboardFiles(): TensorBoardFile[] {
    return this.tensorboard?.files() ?? [];
  }

  private freshState(): TrainerState {
    const a = this.args;
    return {
      global_step: 0,
      epoch: 0,
      max_steps: 0,
      num_train_epochs: a.num_train_epochs,
      logging_steps: a.logging_steps,
      save_steps: a.save_steps,
      eval_steps: a.eval_steps,
      train_batch_size: a.per_device_train_batch_size,
      log_history: [],
      num_input_tokens_seen: 0,
      total_flos: 0,
      best_metric: null,
      best_global_step: null,
      best_model_checkpoint: null,
      is_local_process_zero: true,
      is_world_process_zero: true,
      is_hyper_param_search: false,
      trial_name: null,
      trial_params: null,
    };
  }

  /** Loads the model and tokenizer, wraps LoRA, prepares the data, builds the optimizer (once). */
  setup(): Promise<void> {
    return (this.ready ??= this.doSetup());
  }

  private async doSetup(): Promise<void> {
    const a = this.args;
    await getDevice();
    const m = this.init.model;
    await this.loadModel(false);
    this.processing_class = this.init.processing_class ?? (await this.loadTokenizer(m));
    const tok = this.processing_class;
    if (a.chat_template_path !== null) await this.applyChatTemplatePath(a.chat_template_path);
    if (a.eos_token !== null && tok.convert_tokens_to_ids(a.eos_token) == null) {
      throw new Error(`SFTConfig.eos_token "${a.eos_token}" is not in the tokenizer's vocabulary`);
    }
    const padToken = a.pad_token ?? tok.pad_token ?? tok.eos_token;
    const padId = padToken == null ? null : (tok.convert_tokens_to_ids(padToken) as number | null);
    if (padId == null) throw new Error("SFTTrainer: no pad token: the tokenizer has neither a pad nor an eos token; set SFTConfig.pad_token");
    const paddingFree = a.padding_free || (a.packing && a.packing_strategy !== "wrapped");
    this.collator = new DataCollatorForLanguageModeling({ pad_token_id: padId, padding_free: paddingFree, pad_to_multiple_of: a.pad_to_multiple_of });
    this.evalCollator = new DataCollatorForLanguageModeling({
      pad_token_id: padId,
      padding_free: a.padding_free || (a.eval_packing && a.packing_strategy !== "wrapped"),
      pad_to_multiple_of: a.pad_to_multiple_of,
    });
    this.storage = openStorage(this.init.storage ?? a.output_dir);
    await this.prepareData();
    this.optimizer = this.buildOptimizer();
  }

  /**
   * The model (loaded from its id, or the one given), LoRA on it (peft_config), what trains, gradient
   * checkpointing. `reload`: again on a new device after the old one was lost (see train()).
   */
  private async loadModel(reload: boolean): Promise<void> {
    const a = this.args;
    const m = this.init.model;
    this.peft = null;
    if (typeof m === "string") {
      const kw = a.model_init_kwargs ?? {};
      const dtype = modelInitDtype(kw, a, !!this.init.peft_config, missingFeature("f16", deviceInfo()) === null, reload ? () => {} : this.warn);
      const revision = kw.revision === undefined || kw.revision === null ? undefined : String(kw.revision);
      const unread = Object.keys(kw).filter((k) => !MODEL_INIT_KEYS.includes(k));
      if (unread.length && !reload) this.warn(`model_init_kwargs: ${unread.join(", ")} ignored: webtune reads ${MODEL_INIT_KEYS.join(", ")}`);
      const kwarg = kw.quantization_config ?? null;
      if (this.init.quantization_config && kwarg) {
        throw new Error("SFTTrainer: quantization_config is set both as a trainer argument and in args.model_init_kwargs; set it in one place, preferably as a trainer argument");
      }
      const quantization_config = (this.init.quantization_config ?? kwarg) as BitsAndBytesConfig | null;
      if (parseQuantizationConfig(quantization_config) && !this.init.peft_config) {
        throw new Error("SFTTrainer: quantization_config quantizes the base model, which is then frozen: pass peft_config to train LoRA adapters on it (full fine-tuning needs the float model)");
      }
      this.model = await AutoModelForCausalLM.from_pretrained(m, { dtype, quantization_config, ...(revision ? { revision } : {}) });
    } else if (reload) {
      // A loaded model: again from the files it came from, in the same storage and quantization.
      this.model = await this.reloadFromSource();
      if (m instanceof PeftModel) this.peft = get_peft_model(this.model, m.peft_config, { seed: a.seed });
    } else if (m instanceof PeftModel) {
      this.peft = m;
      this.model = m.model;
    } else this.model = m;
    if (typeof m !== "string" && this.init.quantization_config && !reload) {
      this.warn("quantization_config is ignored: the model is already loaded (pass the model id, or load it with from_pretrained(id, { quantization_config }))");
    }
    if (typeof m !== "string" && a.model_init_kwargs && Object.keys(a.model_init_kwargs).length && !reload) {
      // TRL's SFTTrainer says the same.
      this.warn("You passed model_init_kwargs to the SFTConfig, but your model is already instantiated. The model_init_kwargs will be ignored.");
    }
    this.modelSource = this.model.source ?? this.modelSource;
    if (this.init.peft_config) {
      if (this.peft) throw new Error("SFTTrainer: the model already has LoRA adapters; drop peft_config or pass the base model");
      this.peft = get_peft_model(this.model, this.init.peft_config, { seed: a.seed });
    }
    if (!this.peft) this.model.requires_grad_(true);
    if (a.gradient_checkpointing) this.model.gradient_checkpointing_enable();
    this.flopParams = 0;
    // transformers' num_parameters(exclude_embeddings=True) of the model LoRA is injected into (adapters included;
    // a tied lm_head is listed once, as the embedding).
    for (const [name, t] of (this.peft ?? this.model).named_parameters()) if (!/(^|\.)embed_tokens\.weight(:\d+)?$/.test(name)) this.flopParams += t.size;
  }

  /**
   * cli-device: the loaded model the trainer was given, read again from this.modelSource with the storage
   * (f32 / f16 / bf16, from its embedding) and the quantization_config it was loaded with.
   */
  private async reloadFromSource(): Promise<CausalLM> {
    const old = this.model;
    const src = this.modelSource;
    const named = new Map(old.named_parameters());
    const embed = [...named].find(([n]) => /(^|\.)embed_tokens\.weight(:\d+)?$/.test(n))?.[1]?.dtype;
    const dtype = embed === "f16" ? "float16" : embed === "bf16" ? "bfloat16" : "float32";
    const quantization_config = (old.config as { quantization_config?: BitsAndBytesConfig | null }).quantization_config ?? null;
    if (!src) {
      throw new Error(
        "SFTTrainer: the GPU device was lost, and the model cannot be loaded again: it was not loaded from files (model.source is null); pass the model id or directory to SFTTrainer, or a model from from_pretrained",
      );
    }
    try {
      return await AutoModelForCausalLM.from_pretrained(src, { dtype, quantization_config });
    } catch (e) {
      throw new Error(`SFTTrainer: the GPU device was lost, and loading the model again from ${src.name} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  private async loadTokenizer(m: SFTTrainerInit["model"]): Promise<PreTrainedTokenizer> {
    const where = typeof m === "string" ? m : this.model.source;
    if (!where) throw new Error("SFTTrainer: pass processing_class (the tokenizer): the model was not loaded from files it could be read from");
    return AutoTokenizer.from_pretrained(where);
  }

  /**
   * SFTConfig.chat_template_path, as TRL applies it: a .jinja or .j2 file becomes the tokenizer's chat template
   * (and is saved with the checkpoints as chat_template.jinja, as the tokenizer's save_pretrained writes it).
   * TRL's other form, a tokenizer path or Hub id whose template and special tokens clone_chat_template copies
   * (resizing the embeddings), is an error here.
   */
  private async applyChatTemplatePath(path: string): Promise<void> {
    if (!/\.(jinja|j2)$/i.test(path)) {
      throw new Error(
        `SFTConfig.chat_template_path "${path}": webtune reads a .jinja or .j2 template file; cloning another tokenizer's ` +
          "template and special tokens (TRL's clone_chat_template, for a tokenizer path or Hub id) is not supported: give that " +
          "tokenizer's chat_template.jinja instead",
      );
    }
    const file = openFile(path, {}, "chat template");
    const text = decodeUtf8(await file.bytes.read(), `the chat template ${file.name}`);
    if (!text.trim()) throw new Error(`SFTConfig.chat_template_path: ${file.name} is empty; give a Jinja chat template`);
    this.processing_class.chat_template = text;
    this.chatTemplateFile = new TextEncoder().encode(text);
  }

  /** The trainable parameters, by name (LoRA matrices, or every weight when fully fine-tuning). */
  named_trainable(): [string, Tensor][] {
    const all = this.peft ? this.peft.named_parameters() : this.model.named_parameters();
    return all.filter(([, t]) => t.requires_grad);
  }

  /** The `optim` optimizer, weight decay on every trainable weight but biases and norms, as the Trainer groups them. */
  private buildOptimizer(): Optimizer {
    const a = this.args;
    const params = this.named_trainable();
    if (!params.length) throw new Error("SFTTrainer: nothing to train: no parameter requires grad");
    const noDecay = (name: string) => /\.bias$|norm\.weight$/.test(name);
    const groups = [
      { params: params.filter(([n]) => !noDecay(n)).map(([, t]) => t), weight_decay: a.weight_decay },
      { params: params.filter(([n]) => noDecay(n)).map(([, t]) => t), weight_decay: 0 },
    ];
    return createOptimizer(a.optim, groups, a);
  }

  private prepare(source: DatasetSource, packing: boolean) {
    const a = this.args;
    const rows = prepareDataset(source, this.processing_class, {
      dataset_text_field: a.dataset_text_field,
      max_length: a.max_length,
      truncation_mode: a.truncation_mode,
      completion_only_loss: a.completion_only_loss,
      assistant_only_loss: a.assistant_only_loss,
      eos_token: a.eos_token,
      formatting_func: this.init.formatting_func,
      packing,
      warn: this.warn,
    });
    return rows;
  }

  /**
   * Tokenises (and packs) the datasets. Held in memory (and shuffled each epoch) unless max_steps bounds the
   * run and the dataset is not in memory (an array, or a Dataset of one): then it streams, and a dataset larger
   * than memory trains.
   */
  private async prepareData(): Promise<void> {
    const a = this.args;
    const ds = this.init.train_dataset;
    const stream = a.max_steps > 0 && !Array.isArray(ds) && !(ds instanceof Dataset && ds.inMemory);
    // TRL's shuffle_dataset: the prepared rows shuffled with the seed (before packing too, so that packed rows
    // mix sequences), once, on top of the sampler's shuffle each epoch.
    const shuffled = <T>(rows: T[]): T[] => (a.shuffle_dataset ? permutation(rows.length, a.seed >>> 0).map((i) => rows[i]!) : rows);
    if (stream && a.shuffle_dataset) {
      throw new Error("SFTTrainer: shuffle_dataset needs the dataset in memory, but this one streams (max_steps with a dataset of unknown length, or dataset_streaming); pass it as an array or a loaded Dataset, or drop shuffle_dataset");
    }
    if (!stream) {
      const prepared = this.prepare(this.init.train_dataset, a.packing);
      const rows: CollatorExample[] = [];
      for await (const r of prepared) rows.push(r as unknown as CollatorExample);
      this.noteDropped(prepared.stats.dropped);
      this.trainRows = shuffled<CollatorExample>(a.packing && a.max_length ? pack_dataset(shuffled(rows) as PackInputRow[], a.max_length, a.packing_strategy) : rows);
      if (!this.trainRows.length) throw new Error("SFTTrainer: the training dataset has no example left to train on");
      const bs = a.per_device_train_batch_size;
      this.batchesPerEpoch = a.dataloader_drop_last ? Math.floor(this.trainRows.length / bs) : Math.ceil(this.trainRows.length / bs);
      const updates = Math.max(1, Math.ceil(this.batchesPerEpoch / a.gradient_accumulation_steps));
      this.totalSteps = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * updates);
    } else {
      this.totalSteps = a.max_steps;
    }
    if (this.init.eval_dataset !== undefined) {
      const prepared = this.prepare(this.init.eval_dataset, a.eval_packing);
      const rows: CollatorExample[] = [];
      for await (const r of prepared) rows.push(r as unknown as CollatorExample);
      this.evalRows = shuffled<CollatorExample>(a.eval_packing && a.max_length ? pack_dataset(shuffled(rows) as PackInputRow[], a.max_length, a.packing_strategy) : rows);
    }
  }

  private noteDropped(n: number): void {
    this.dropped_examples += n;
    if (n > 0) {
      this.warn(`SFTTrainer: dropped ${n} example(s) with no trainable token left after truncation to max_length ${this.args.max_length}`);
    }
  }

  /** Micro-batches of one epoch, from `skip` on. */
  private async *epochBatches(epoch: number, skip: number): AsyncGenerator<CollatorExample[]> {
    const a = this.args;
    const bs = a.per_device_train_batch_size;
    if (this.trainRows) {
      const rows = this.trainRows;
      const order = permutation(rows.length, (a.data_seed + epoch) >>> 0);
      for (let b = skip; b < this.batchesPerEpoch!; b++) {
        yield order.slice(b * bs, (b + 1) * bs).map((i) => rows[i]!);
      }
      return;
    }
    // A stream: prepared, packed in windows, batched as it comes; resume re-reads and drops what was used.
    const prepared = this.prepare(this.init.train_dataset, a.packing);
    const rows: AsyncIterable<PreparedExample | PackedRow> = a.packing && a.max_length ? packStream(prepared as AsyncIterable<PackInputRow>, a.max_length, a.packing_strategy) : prepared;
    let batch: CollatorExample[] = [];
    let index = 0;
    for await (const row of rows) {
      batch.push(row as CollatorExample);
      if (batch.length === bs) {
        if (index++ >= skip) yield batch;
        batch = [];
      }
    }
    if (batch.length && !a.dataloader_drop_last && index >= skip) yield batch;
    this.noteDropped(prepared.stats.dropped);
  }

  /**
   * Runs the training loop. `resume_from_checkpoint`: true for the newest complete checkpoint in the
   * storage, a checkpoint id ("checkpoint-500"), or false/absent to start over.
   *
   * A lost GPU device (GPUDevice.lost: a driver reset or crash, a browser reclaiming the GPU, device.destroy())
   * is recovered from, up to `max_device_recoveries` times (default 3): a new device, the model loaded again from
   * where it came from (the model id; a loaded model's files, in its dtype and quantization_config), LoRA on it,
   * a new optimizer, then the newest complete checkpoint up to the step reached (none: from the start, with a
   * warning). The run then goes on as one resumed from that checkpoint would, bit for bit. Each recovery is a
   * warning and a {device_lost_recovery, lost_at_step, resumed_from_step} entry in log_history; callbacks see
   * the re-run steps again (on_step_end, on_log, on_save), but not on_train_begin. Afterwards trainer.model and
   * trainer.peft are the reloaded ones (a model the caller passed is left to the caller to dispose).
   */
  async train(options: { resume_from_checkpoint?: boolean | string | null } = {}): Promise<TrainOutput> {
    // cli-device: the step loop, run again on a new device each time the device is lost (a bounded number of times).
    const limit = this.init.max_device_recoveries ?? 3;
    let resume = options.resume_from_checkpoint;
    for (let recoveries = 0; ; recoveries++) {
      await this.setup();
      const device = gpu();
      try {
        return await this.trainLoop({ resume_from_checkpoint: resume }, recoveries > 0);
      } catch (e) {
        if (!(await deviceLost(e, device))) throw e;
        if (recoveries >= limit) {
          throw new Error(
            `SFTTrainer: the GPU device was lost at step ${this.state.global_step} (${(e as Error).message}), after ${limit} recover${limit === 1 ? "y" : "ies"} in this run (max_device_recoveries ${limit}); a new SFTTrainer continues from the newest checkpoint in ${this.storage.name} with train({ resume_from_checkpoint: true })`,
            { cause: e },
          );
        }
        await this.recoverDevice(e as Error, recoveries + 1, limit);
        resume = false; // recoverDevice restored the checkpoint
      }
    }
  }

  /**
   * cli-device: after a lost device, a new one; the model loaded again (as setup loaded it), the LoRA adapters,
   * a new optimizer, then the newest complete checkpoint up to the step the run had reached (none: from the
   * start). Logged as a warning and as a {device_lost_recovery, resumed_from_step} entry in log_history.
   */
  private async recoverDevice(error: Error, n: number, limit: number): Promise<void> {
    const lostAt = this.state.global_step;
    const old = gpu();
    await getDevice({ validate: old.info.validate });
    const oldModel = this.model;
    await this.loadModel(true);
    // The old tensors' buffers belong to the lost device (and its pool): release the model the trainer loaded.
    if (typeof this.init.model === "string") oldModel.dispose();
    this.optimizer = this.buildOptimizer();
    const ids = (await this.storage.list()).filter((id) => checkpointStep(id) >= 0 && checkpointStep(id) <= lostAt);
    const id = ids.sort((x, y) => checkpointStep(x) - checkpointStep(y)).pop() ?? null;
    if (id) await this.resumeFrom(id);
    else {
      this.state = { ...this.freshState(), log_history: this.state.log_history.filter((l) => "device_lost_recovery" in l) };
      this.position = { epoch: 0, batches: 0 };
      this.model.step = 0;
    }
    const from = id ? `${id} (step ${this.state.global_step})` : "the start: no checkpoint in " + this.storage.name + " (set save_steps to lose less)";
    this.warn(`SFTTrainer: the GPU device was lost at step ${lostAt} (${error.message}); recovery ${n} of at most ${limit}: a new device, the model loaded again, training continues from ${from}`);
    this.state.log_history.push({ device_lost_recovery: n, lost_at_step: lostAt, resumed_from_step: this.state.global_step, step: this.state.global_step });
  }

  private async trainLoop(options: { resume_from_checkpoint?: boolean | string | null }, recovered: boolean): Promise<TrainOutput> {
    await this.setup();
    const a = this.args;
    const resume = options.resume_from_checkpoint ?? a.resume_from_checkpoint ?? null;
    await this.baseIdentity(); // saves: before any step changes a fully fine-tuned model's weights
    if (resume) await this.resumeFrom(resume === true ? await this.latestCheckpoint() : await this.resolveCheckpoint(String(resume)));
    // A fresh control for each run, as the Trainer makes (a stop asked for in an earlier train() is over).
    Object.assign(this.control, { should_training_stop: false, should_save: false, should_log: false, should_evaluate: false });
    if (resume) this.divergedAt = null;
    this.divergenceWatch = { loss: NaN, steps: 0, warned: false };
    // Whether the optimizer's update_stats are this run's (a resumed optimizer's are from before the load).
    let updatedThisRun = false;
    this.state.max_steps = this.totalSteps;
    // transformers' TrainerState.compute_steps: a fraction < 1 is that share of the total steps, rounded up. A
    // resumed run keeps its checkpoint's, as the Trainer does.
    // A checkpoint of webtune 0.1 kept the fraction itself: it is turned into steps like a fresh run's.
    for (const k of ["logging_steps", "eval_steps", "save_steps"] as const) {
      if (!resume || !(this.state[k] >= 1)) this.state[k] = intervalSteps(a[k], this.totalSteps);
    }
    const model = this.peft ?? this.model;
    model.train();
    const params = this.optimizer.param_groups.flatMap((g) => g.params);
    const warmup = warmupSteps(a.warmup_ratio ?? a.warmup_steps, this.totalSteps);
    if (!recovered) await this.emit("on_train_begin"); // cli-device: not again after a recovery
    const trainStart = performance.now();

    let window = { loss: 0, steps: 0, acc: [] as number[], entropy: [] as number[], tokens: 0, start: performance.now() };
    let lossSum = 0;
    let lossSteps = 0;
    gpu().pool.resetPeak();
    let batches = this.epochBatches(this.position.epoch, this.position.batches);
    while (this.state.global_step < this.totalSteps && !this.control.should_training_stop) {
      // Up to gradient_accumulation_steps micro-batches, never across an epoch's end.
      const micro: CollatedBatch[] = [];
      while (micro.length < a.gradient_accumulation_steps) {
        const next = await batches.next();
        if (next.done) {
          if (micro.length) break;
          this.position = { epoch: this.position.epoch + 1, batches: 0 };
          if (this.trainRows === null && this.position.epoch > 1e6) throw new Error("SFTTrainer: the training stream is empty");
          batches = this.epochBatches(this.position.epoch, 0);
          continue;
        }
        const batch = this.collator.collate(next.value);
        micro.push(batch);
        this.position.batches++;
      }
      if (!micro.length) break;
      const items = micro.reduce((s, m) => s + m.num_label_tokens, 0);
      const lr = a.learning_rate * lrLambda(a.lr_scheduler_type, this.state.global_step, this.totalSteps, warmup);
      for (const g of this.optimizer.param_groups) g.lr = lr;

      // Forward and backward of each micro-batch; the loss of each is summed over tokens / all valid tokens.
      const scalars: Tensor[] = [];
      for (const [i, batch] of micro.entries()) {
        // LoRA dropout draws its mask from (seed, step): give every micro-batch its own stream, a function
        // of the optimizer step so that a resumed run replays it.
        this.model.step = (this.state.global_step * a.gradient_accumulation_steps + i) >>> 0;
        const kept = tidy(() => {
          const out = model.forward({
            input_ids: batch.input_ids,
            labels: batch.labels,
            ...(batch.attention_mask ? { attention_mask: batch.attention_mask } : {}),
            ...(batch.position_ids ? { position_ids: batch.position_ids } : {}),
            num_items_in_batch: Math.max(items, 1),
            loss_type: a.loss_type === "dft" ? "dft" : "nll",
          });
          out.loss!.backward();
          return [out.loss!, out.metrics!.correct, out.metrics!.entropy_sum];
        });
        scalars.push(...kept.map((t) => keep(t)));
      }
      const norm = clip_grad_norm_(params, a.max_grad_norm && a.max_grad_norm > 0 ? a.max_grad_norm : Infinity);
      // One readback per step: the losses, metrics and the gradient norm (to stop on NaN/Inf before updating),
      // and the largest |value| the previous step's optimizer update wrote (to stop on a non-finite weight).
      const updated = updatedThisRun ? updateStats(this.optimizer) : null;
      const read = [...scalars.map((t) => reshape(t, [1])), reshape(norm, [1]), ...(updated ? [updated] : [])];
      const values = await tidy(() => no_grad(() => concat(read, 0))).toArray();
      for (const t of [...scalars, norm]) t.dispose();
      const gradNorm = values[scalars.length]!;
      let stepLoss = 0;
      micro.forEach((_, i) => (stepLoss += values[3 * i]!));
      const [maxWeight, maxMoment] = updated ? [values[scalars.length + 1]!, values[scalars.length + 2]!] : [0, 0];
      if (!Number.isFinite(maxWeight) || !Number.isFinite(maxMoment)) {
        // The previous step's update wrote it (and it was not saved: a checkpoint is checked as it is written).
        this.optimizer.zero_grad();
        const [what, v] = !Number.isFinite(maxWeight) ? ["a trainable weight", maxWeight] : ["an optimizer moment (exp_avg / exp_avg_sq)", maxMoment];
        await this.diverged(this.state.global_step, `its optimizer update made ${what} ${Number.isNaN(v) ? "NaN" : "infinite"}`);
      }
      if (!Number.isFinite(stepLoss) || !Number.isFinite(gradNorm)) {
        this.optimizer.zero_grad();
        const what = !Number.isFinite(stepLoss) ? `the loss is ${stepLoss}` : `the gradient norm is ${gradNorm}`;
        await this.log({ nan_or_inf_step: this.state.global_step + 1, loss: stepLoss, grad_norm: gradNorm });
        await this.diverged(this.state.global_step + 1, `${what} (the step is not applied)`);
      }
      this.watchDivergence(stepLoss, maxWeight);
      // The metrics of the step count only once it is known to be good.
      micro.forEach((m, i) => {
        if (m.num_label_tokens > 0) {
          window.acc.push(values[3 * i + 1]! / m.num_label_tokens);
          window.entropy.push(values[3 * i + 2]! / m.num_label_tokens);
        }
      });
      this.optimizer.step();
      updatedThisRun = true;
      this.optimizer.zero_grad();
      this.state.global_step++;
      this.model.step = this.state.global_step;
      const tokens = micro.reduce((s, m) => s + m.num_tokens, 0);
      this.state.num_input_tokens_seen += tokens;
      this.state.total_flos += 6 * this.flopParams * micro.reduce((s, m) => s + m.input_ids.length * (m.input_ids[0]?.length ?? 0), 0);
      this.state.epoch = this.batchesPerEpoch ? this.position.epoch + this.position.batches / this.batchesPerEpoch : this.position.epoch;
      window.loss += stepLoss;
      window.steps++;
      window.tokens += tokens;
      lossSum += stepLoss;
      lossSteps++;

      const step = this.state.global_step;
      const last = step >= this.totalSteps;
      // An epoch of held data ends with its last micro-batch (a stream's passes have no known end here).
      const epochEnd = this.batchesPerEpoch !== null && this.position.batches >= this.batchesPerEpoch;
      const doLog =
        (a.logging_strategy === "steps" && (step % this.state.logging_steps === 0 || (step === 1 && a.logging_first_step) || last)) ||
        (a.logging_strategy === "epoch" && (epochEnd || last));
      if (doLog || this.control.should_log) {
        const secs = (performance.now() - window.start) / 1000;
        const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);
        await this.log({
          loss: window.loss / window.steps,
          grad_norm: gradNorm,
          learning_rate: lr,
          entropy: mean(window.entropy),
          num_tokens: this.state.num_input_tokens_seen,
          mean_token_accuracy: mean(window.acc),
          epoch: this.state.epoch,
          tokens_per_second: window.tokens / Math.max(secs, 1e-9),
          peak_gpu_bytes: memoryStats().peakBytes,
        });
        gpu().pool.resetPeak();
        window = { loss: 0, steps: 0, acc: [], entropy: [], tokens: 0, start: performance.now() };
        this.control.should_log = false;
      }
      await this.emit("on_step_end");
      const evalNow = (a.eval_strategy === "steps" && step % this.state.eval_steps === 0) || (a.eval_strategy === "epoch" && epochEnd);
      if ((evalNow && this.evalRows) || this.control.should_evaluate) {
        await this.evaluate();
        this.control.should_evaluate = false;
      }
      if ((a.save_strategy === "steps" && step % this.state.save_steps === 0) || (a.save_strategy === "epoch" && epochEnd) || this.control.should_save) {
        await this.saveCheckpoint();
        this.control.should_save = false;
      }
    }
    // The last update's largest values (the steps read each update's with the next step's readback).
    const lastUpdate = updatedThisRun ? updateStats(this.optimizer) : null;
    if (lastUpdate) {
      const [maxWeight, maxMoment] = await lastUpdate.toArray();
      if (!Number.isFinite(maxWeight!) || !Number.isFinite(maxMoment!)) {
        await this.diverged(this.state.global_step, `its optimizer update made ${!Number.isFinite(maxWeight!) ? "a trainable weight" : "an optimizer moment (exp_avg / exp_avg_sq)"} non-finite`);
      }
    }
    // The Trainer saves at max_steps (not after a stop a callback asked for; a NaN/Inf step throws above).
    if (
      a.save_strategy !== "no" && !this.control.should_training_stop && this.state.global_step > 0 &&
      !(await this.storage.list()).includes(`checkpoint-${this.state.global_step}`)
    ) {
      await this.saveCheckpoint();
    }
    const training_loss = lossSteps ? lossSum / lossSteps : 0;
    // transformers' speed_metrics("train", …) and total_flos, then train_loss and epoch (its end-of-training log).
    const runtime = Math.max((performance.now() - trainStart) / 1000, 1e-6);
    const bs = a.per_device_train_batch_size * a.gradient_accumulation_steps;
    const samples = a.max_steps > 0 || !this.trainRows ? this.totalSteps * bs : this.trainRows.length * a.num_train_epochs;
    const metrics = {
      train_runtime: Math.round(runtime * 1e4) / 1e4,
      train_samples_per_second: Math.round((samples / runtime) * 1e3) / 1e3,
      train_steps_per_second: Math.round((this.totalSteps / runtime) * 1e3) / 1e3,
      total_flos: this.state.total_flos,
      train_loss: training_loss,
      epoch: this.state.epoch,
      train_steps: this.state.global_step,
    };
    this.state.log_history.push({ ...metrics, step: this.state.global_step });
    await this.emit("on_train_end");
    return { global_step: this.state.global_step, training_loss, metrics };
  }

  private async log(logs: Record<string, number>): Promise<void> {
    const entry = { ...logs, step: this.state.global_step };
    this.state.log_history.push(entry);
    for (const cb of this.callbacks) await cb.on_log?.(this.args, this.state, this.control, entry);
  }

  private async emit(event: "on_train_begin" | "on_step_end" | "on_train_end"): Promise<void> {
    for (const cb of this.callbacks) await cb[event]?.(this.args, this.state, this.control);
  }

  /**
   * Stops training on a non-finite loss, gradient or weight: a TrainingDivergedError naming the step, what
   * went non-finite and the last good checkpoint (every checkpoint is checked finite as it is written, so it
   * is the newest complete one up to this step). Nothing of that step is saved, and save_model refuses.
   */
  private async diverged(step: number, what: string): Promise<never> {
    this.divergedAt = { step, what };
    const ids = (await this.storage.list()).filter((id) => checkpointStep(id) >= 0 && checkpointStep(id) < step);
    const last = ids.sort((x, y) => checkpointStep(x) - checkpointStep(y)).pop() ?? null;
    const where = last === null ? null : this.storage.name.startsWith("indexeddb:") ? `${last} in ${this.storage.name}` : `${this.storage.name.replace(/[\/]+$/, "")}/${last}`;
    throw new TrainingDivergedError(
      `SFTTrainer: step ${step}: ${what}; training stopped and nothing of step ${step} was saved. ` +
        (where ? `The last good checkpoint is ${where} (finite, checked as it was written): resume from it (resume_from_checkpoint "${where}")` : "No checkpoint was saved before it: start again") +
        ` with a lower learning_rate than ${this.args.learning_rate}${this.args.max_grad_norm ? "" : " or with max_grad_norm set (gradient clipping)"}.`,
      step,
      what,
      where,
    );
  }

  /**
   * Warns (once) when the loss has sat at ln(vocab size), a uniform prediction, for DIVERGED_STEPS steps while
   * the weights blow up: the run has diverged without a NaN yet. `maxWeight`: the largest |trainable weight|
   * of the last update (AdamW's update_stats), 0 when unknown.
   */
  private watchDivergence(loss: number, maxWeight: number): void {
    const w = this.divergenceWatch;
    if (w.warned) return;
    const lnV = Math.log(this.model.config.vocab_size);
    const stuck = Math.abs(loss - lnV) <= 0.02 * lnV && Math.abs(loss - w.loss) <= 1e-3 * lnV && maxWeight > EXPLODED_WEIGHT;
    w.steps = stuck ? w.steps + 1 : 0;
    w.loss = loss;
    if (w.steps < DIVERGED_STEPS) return;
    w.warned = true;
    this.warn(
      `SFTTrainer: step ${this.state.global_step + 1}: the loss has stayed at ${loss.toFixed(4)} ≈ ln(vocab size ${this.model.config.vocab_size}) = ${lnV.toFixed(4)} ` +
        `for ${DIVERGED_STEPS} steps while the largest trainable weight is ${maxWeight.toExponential(2)}: training has diverged (the model predicts every token alike); ` +
        `stop it and lower learning_rate (${this.args.learning_rate})${this.args.max_grad_norm ? "" : " or set max_grad_norm"}`,
    );
  }

  /**
   * Stops (diverged()) unless every float tensor of every .safetensors file in `files` is finite: what `save`
   * (a checkpoint id, or save_model) is about to write, the trainable weights and the optimizer's state.
   */
  private async assertFinite(save: string, files: Record<string, Uint8Array | string>): Promise<void> {
    for (const [name, bytes] of Object.entries(files)) {
      if (!name.endsWith(".safetensors") || typeof bytes === "string") continue;
      const bad = nonFiniteTensor(bytes);
      if (bad) await this.diverged(this.state.global_step, `"${bad}" in ${name} is not finite (NaN or Inf) after its optimizer update, so ${save} was not written`);
    }
  }

  /** Loss and TRL's metrics on the eval dataset, prefixed eval_ (no gradients). */
  async evaluate(): Promise<Record<string, number>> {
    await this.setup();
    if (!this.evalRows) throw new Error("SFTTrainer.evaluate: no eval_dataset was given");
    const a = this.args;
    const model = this.peft ?? this.model;
    const wasTraining = this.model.training;
    model.eval();
    const bs = a.per_device_eval_batch_size;
    let lossSum = 0;
    let examples = 0;
    let tokens = 0;
    const acc: number[] = [];
    const ent: number[] = [];
    for (let i = 0; i < this.evalRows.length; i += bs) {
      const rows = this.evalRows.slice(i, i + bs);
      const batch = this.evalCollator.collate(rows);
      const valid = batch.num_label_tokens;
      const t = tidy(() =>
        no_grad(() => {
          const out = model.forward({
            input_ids: batch.input_ids,
            labels: batch.labels,
            ...(batch.attention_mask ? { attention_mask: batch.attention_mask } : {}),
            ...(batch.position_ids ? { position_ids: batch.position_ids } : {}),
            loss_type: this.args.loss_type === "dft" ? "dft" : "nll",
          });
          return concat([out.loss!, out.metrics!.correct, out.metrics!.entropy_sum].map((s) => reshape(s, [1])), 0);
        }),
      );
      const [loss, correct, entropy] = await t.toArray();
      t.dispose();
      // The Trainer weights each batch's mean loss by the batch's rows (one row when padding-free).
      const n = batch.input_ids.length;
      lossSum += loss! * n;
      examples += n;
      tokens += batch.num_tokens;
      if (valid > 0) {
        acc.push(correct! / valid);
        ent.push(entropy! / valid);
      }
    }
    model.train(wasTraining);
    const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);
    const metrics = {
      eval_loss: examples ? lossSum / examples : 0,
      eval_mean_token_accuracy: mean(acc),
      eval_entropy: mean(ent),
      eval_num_tokens: tokens,
      epoch: this.state.epoch,
    };
    this.state.log_history.push({ ...metrics, step: this.state.global_step });
    for (const cb of this.callbacks) await cb.on_evaluate?.(this.args, this.state, this.control, metrics);
    return metrics;
  }

  /** The trained model's files: a PEFT adapter (LoRA) or a full model, plus the tokenizer's files. */
  private async modelFiles(): Promise<Record<string, Uint8Array>> {
    const files = this.peft ? await this.peft.adapter_files() : await this.model.model_files();
    return { ...files, ...(await this.tokenizerFiles()) };
  }

  /** The tokenizer's files from where the model was loaded, read once (a URL source would fetch them again). */
  private async tokenizerFiles(): Promise<Record<string, Uint8Array>> {
    if (!this.tokenizerCache) {
      const cache: Record<string, Uint8Array> = {};
      const src = this.modelSource;
      if (src) for (const f of TOKENIZER_FILES) if (await src.exists(f)) cache[f] = await src.read(f);
      if (this.chatTemplateFile) {
        // chat_template.jinja is read before chat_template.json and tokenizer_config.json's template.
        delete cache["chat_template.json"];
        cache["chat_template.jinja"] = this.chatTemplateFile;
      }
      this.tokenizerCache = cache;
    }
    return this.tokenizerCache;
  }

  /**
   * A merged model's files (PEFT's merge_and_unload, then save_pretrained): every adapted weight becomes
   * W + scaling · B·A (f32), the adapters stay on the trainer's model untouched.
   */
  private async mergedFiles(): Promise<Record<string, Uint8Array>> {
    const peft = this.peft!;
    const sd = await this.model.state_dict();
    for (const lin of peft.adapted) {
      const { A, B, scaling } = lin.lora!;
      const w = sd.get(`${lin.name}.weight`);
      if (!w) throw new Error(`save_model(merge): the model has no weight "${lin.name}.weight"`);
      const [O, I] = w.shape as [number, number];
      const R = A.shape[0]!;
      const a = await A.toArray();
      const b = await B.toArray();
      const row = new Float64Array(I);
      for (let o = 0; o < O; o++) {
        row.fill(0);
        for (let r = 0; r < R; r++) {
          const bor = b[o * R + r]!;
          if (bor === 0) continue;
          for (let i = 0; i < I; i++) row[i]! += bor * a[r * I + i]!;
        }
        for (let i = 0; i < I; i++) w.data[o * I + i] = w.data[o * I + i]! + scaling * row[i]!;
      }
    }
    const tensors: Record<string, SafetensorsEntry> = {};
    for (const [name, t] of sd) tensors[name] = { dtype: "F32", shape: t.shape, data: t.data };
    const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o, null, 2) + "\n");
    return {
      "config.json": json({ ...this.model.config.raw, torch_dtype: "float32" }),
      ...(this.model.generation_config ? { "generation_config.json": json(this.model.generation_config) } : {}),
      "model.safetensors": writeSafetensors(tensors, { format: "pt" }),
    };
  }

  /**
   * Saves the trained model to `dir` (default output_dir): the adapter directory (LoRA; loads with PEFT's
   * PeftModel.from_pretrained) or the whole model (full fine-tuning), with the tokenizer files. With
   * `merge: true` a LoRA run is saved as a whole model with the adapters folded in (PEFT's merge_and_unload
   * then save_pretrained: config.json + model.safetensors), loadable without PEFT; the trainer's model keeps
   * its adapters. With `gguf: true` a LoRA run also writes adapter_model.gguf, the adapter as a llama.cpp LoRA
   * GGUF (`llama-cli --lora`, Ollama's ADAPTER; PeftModel.adapter_gguf), beside the PEFT files.
   * saves: atomic — on the filesystem one save (io/local.ts writeDirectory: staged and fsync'd, committed, moved
   * in; a crash is finished or dropped by the next save or checkpoint listing), in IndexedDB the checkpoint
   * "final" / "final-merged" (manifest last); rotation never deletes either.
   */
  async save_model(dir?: string, options: { merge?: boolean; gguf?: boolean } = {}): Promise<void> {
    await this.setup();
    if (options.gguf && (!this.peft || options.merge)) {
      throw new Error(
        `save_model(gguf): ${this.peft ? "the GGUF is the LoRA adapter's, and merge saves a whole model instead" : "a full fine-tuning run has no LoRA adapter"}; convert a whole model with llama.cpp's convert_hf_to_gguf.py`,
      );
    }
    const model = options.merge && this.peft ? await this.mergedFiles() : this.peft ? await this.peft.adapter_files() : await this.model.model_files();
    if (options.gguf) model["adapter_model.gguf"] = await this.peft!.adapter_gguf();
    const files = { ...model, ...(await this.tokenizerFiles()) };
    if (this.divergedAt) {
      throw new TrainingDivergedError(
        `save_model: training went non-finite at step ${this.divergedAt.step} (${this.divergedAt.what}); nothing was saved: resume from the last good checkpoint with a lower learning_rate`,
        this.divergedAt.step, this.divergedAt.what, null,
      );
    }
    await this.assertFinite("save_model", files);
    const target = dir ?? this.args.output_dir;
    if (this.storage.name.startsWith("indexeddb:") && dir === undefined) {
      await this.storage.writeCheckpoint(options.merge ? "final-merged" : "final", files);
      return;
    }
    const { writeDirectory } = await import("../io/local.ts");
    await writeDirectory(target, files);
  }

  /**
   * output_dir/checkpoint-N: trainable weights, the optimizer's state_dict() (its tensors in
   * optimizer.safetensors, the rest in optimizer.json), schedule, data position, state.
   */
  async saveCheckpoint(): Promise<string> {
    const id = `checkpoint-${this.state.global_step}`;
    const json = (o: unknown) => JSON.stringify(o, null, 2);
    const { tensors, json: optimizerState } = splitStateDict(this.optimizer.state_dict());
    const entries: Record<string, SafetensorsEntry> = {};
    for (const [name, t] of Object.entries(tensors)) {
      entries[name] = { dtype: "F32", shape: t.shape, data: (await t.toArray()) as Float32Array };
    }
    const files: Record<string, Uint8Array | string> = {
      ...(await this.modelFiles()),
      [OPTIMIZER]: writeSafetensors(entries, { format: "pt" }),
      [OPTIMIZER_STATE]: json(optimizerState),
      [SCHEDULER]: json({ lr_scheduler_type: this.args.lr_scheduler_type, last_epoch: this.state.global_step, total_steps: this.totalSteps }),
      [TRAINER_STATE]: `${JSON.stringify(this.trainerStateJSON(), null, 2)}\n`,
      [WEBTUNE_STATE]: json({ data_position: this.position, dropped_examples: this.dropped_examples, seed: this.args.seed, base_model: await this.baseIdentity() }),
      // transformers' TrainingArguments.to_dict(): every *_token value as <KEY_NAME>, no secret written.
      [TRAINING_ARGS]: json(trainingArgsJSON(this.args)),
    };
    await this.assertFinite(id, files); // no non-finite weight or optimizer state is ever saved
    await this.storage.writeCheckpoint(id, files);
    await rotateCheckpoints(this.storage, this.args.save_total_limit, id);
    for (const cb of this.callbacks) await cb.on_save?.(this.args, this.state, this.control, id);
    return id;
  }

  /**
   * trainer_state.json as transformers' TrainerState.save_to_json writes it: every TrainerState key, sorted, with
   * stateful_callbacks holding the TrainerControl's flags.
   */
  private trainerStateJSON(): Record<string, unknown> {
    const c = this.control;
    const state: Record<string, unknown> = {
      ...this.state,
      stateful_callbacks: {
        TrainerControl: {
          // As the Trainer's control reads while it saves: should_save set, and should_training_stop at max_steps.
          args: {
            should_epoch_stop: false, should_evaluate: c.should_evaluate, should_log: c.should_log, should_save: true,
            should_training_stop: c.should_training_stop || this.state.global_step >= this.state.max_steps,
          },
          attributes: {},
        },
      },
    };
    return Object.fromEntries(Object.keys(state).sort().map((k) => [k, state[k]]));
  }

  /**
   * A checkpoint id of the trainer's storage ("checkpoint-500"), or a path to a checkpoint anywhere
   * ("/other/run/checkpoint-2", "indexeddb:run/checkpoint-2", as the Trainer takes it): exactly that one.
   */
  private async resolveCheckpoint(given: string): Promise<{ storage: CheckpointStorage; id: string }> {
    const trimmed = given.replace(/[\\/]+$/, "");
    const cut = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
    const norm = (p: string) => p.replace(/[\\/]+$/, "").replace(/^\.[\\/]/, "");
    const parent = cut < 0 ? null : trimmed.slice(0, cut) || "/";
    const id = trimmed.slice(cut + 1);
    const storage = parent === null || norm(parent) === norm(this.storage.name) ? this.storage : openStorage(parent);
    const ids = await storage.list();
    if (id && ids.includes(id)) return { storage, id };
    const problem = (await storage.damaged?.())?.find((d) => d.id === id)?.problem;
    throw new Error(
      `resume_from_checkpoint: "${given}" is not a complete checkpoint in ${storage.name}` +
        (problem ? `: ${problem}` : ` (complete ones there: ${ids.length ? ids.join(", ") : "none"})`),
    );
  }

  /** The newest complete checkpoint in the storage; newer damaged ones are skipped with a warning. */
  private async latestCheckpoint(): Promise<string> {
    const ids = (await this.storage.list()).filter((id) => checkpointStep(id) >= 0).sort((x, y) => checkpointStep(x) - checkpointStep(y));
    const newest = ids[ids.length - 1];
    const damaged = ((await this.storage.damaged?.()) ?? []).filter((d) => checkpointStep(d.id) > (newest ? checkpointStep(newest) : -1));
    for (const d of damaged.sort((x, y) => checkpointStep(y.id) - checkpointStep(x.id))) {
      this.warn(`resume_from_checkpoint: skipping ${this.storage.name}/${d.id}, which is not a complete checkpoint: ${d.problem}; ${newest ? `resuming from ${newest}` : "no older one is complete"}`);
    }
    if (!newest) throw new Error(`resume_from_checkpoint: no complete checkpoint in ${this.storage.name}`);
    return newest;
  }

  /**
   * The base model's identity, computed once, before any training step: a SHA-256 of its config and one of a
   * sample of its weights (saved in webtune_state.json, checked on resume).
   */
  private baseIdentity(): Promise<BaseIdentity> {
    return (this.baseIdentityCache ??= baseIdentityOf(this.model, this.modelSource));
  }
  private baseIdentityCache: Promise<BaseIdentity> | null = null;

  /**
   * Restores weights, optimizer, schedule position, data position and state from checkpoint `id` of
   * `storage`. Everything is read and checked first (each JSON file, the base model's identity, every
   * weight's name and shape, the optimizer's state against its parameters); only then is anything changed.
   */
  private async resumeFrom(at: string | { storage: CheckpointStorage; id: string }): Promise<void> {
    const { storage, id } = typeof at === "string" ? { storage: this.storage, id: at } : at;
    const where = `${storage.name}/${id}`;
    const fail = (m: string) => new Error(`resume_from_checkpoint: ${where}: ${m}`);
    const files = await storage.files(id);
    const weightsFile = this.peft ? "adapter_model.safetensors" : "model.safetensors";
    const missing = [weightsFile, OPTIMIZER, OPTIMIZER_STATE, TRAINER_STATE].filter((f) => !files.includes(f));
    if (missing.length) throw fail(`${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing`);
    // The JSON files.
    const optimizerState = legacyOptimizerState(await readCheckpointJSON(storage, id, OPTIMIZER_STATE, checkOptimizerJSON));
    // webtune 0.1 kept the data position inside trainer_state.json; now it is in webtune_state.json.
    const saved = await readCheckpointJSON<TrainerState & { data_position?: DataPosition; dropped_examples?: number; seed?: number; stateful_callbacks?: unknown }>(
      storage, id, TRAINER_STATE, checkTrainerStateJSON,
    );
    const { data_position: legacyPosition, dropped_examples: _, seed: _seed, stateful_callbacks: _callbacks, ...state2 } = saved;
    const extra = files.includes(WEBTUNE_STATE) ? await readCheckpointJSON<WebtuneState>(storage, id, WEBTUNE_STATE, checkWebtuneStateJSON) : null;
    const data_position = extra?.data_position ?? legacyPosition;
    if (!data_position) throw fail(`there is no data position (${WEBTUNE_STATE} is missing)`);
    if (!isPosition(data_position)) throw fail(`${TRAINER_STATE}: "data_position" is not {epoch, batches} of non-negative integers`);
    // The base model: a checkpoint made on another base (same shapes) does not continue that run.
    if (extra?.base_model && !this.init.ignore_base_model_mismatch) {
      const now = await this.baseIdentity();
      const was = extra.base_model;
      const differs = [
        was.config_sha256 !== now.config_sha256 ? "config.json" : "",
        was.weights_from === now.weights_from && was.weights_sha256 !== now.weights_sha256 ? "weights (a fingerprint of sampled values)" : "",
      ].filter(Boolean);
      if (differs.length) {
        throw fail(
          `it was trained on another base model than ${this.modelSource?.name ?? "the one given"}: its ${differs.join(" and ")} differ from the checkpoint's` +
            `${was.name ? ` (${was.name})` : ""}. Load the base the checkpoint was made on, or pass ignore_base_model_mismatch: true to the SFTTrainer to resume anyway`,
        );
      }
    }
    // Trainable weights: the adapter's A/B, or every weight of a full fine-tune, all read and checked first.
    const src = storage.source(id);
    const weights = await SafetensorsFile.open(src, weightsFile).catch((e: Error) => {
      throw fail(`${weightsFile}: ${e.message}`);
    });
    // A full fine-tune's checkpoint holds the model's state_dict(): transformers' tensors, which the description
    // turns into what the model holds (adapters are stored as they are).
    const arch = architectureOf(this.model.config);
    const specs = new Map(weightsOf(arch, this.model.config).map((w) => [w.name, w]));
    const trainable = this.named_trainable();
    if (this.peft) {
      const want = new Set(trainable.map(([n]) => n));
      const extraNames = weights.names.filter((n) => !want.has(n));
      if (extraNames.length) {
        throw fail(`${weightsFile} has ${extraNames.length} weight(s) the model does not train ("${extraNames[0]}"${extraNames.length > 1 ? ", …" : ""}): the checkpoint was made with other LoRA target_modules; use its adapter_config.json`);
      }
    }
    const uploads: [Tensor, Float32Array][] = [];
    for (const [name, t] of trainable) {
      const stored = name.replace(/:\d+$/, "");
      if (!weights.has(stored)) throw fail(`${weightsFile} has no weight "${stored}" (the model trains it: other LoRA target_modules or layers than the checkpoint's?)`);
      if (stored !== name) throw fail(`${name} is stored as row blocks, which full fine-tuning checkpoints do not support`);
      const info = weights.info(stored);
      if (this.peft && info.shape.join() !== t.shape.join()) throw fail(`${weightsFile}: "${stored}" is [${info.shape}], the model's is [${t.shape}] (another LoRA r or model size?)`);
      const read = await weights.readF32(stored);
      const data = this.peft ? read : fromStored(arch, specs.get(stored)!, read);
      if (data.length !== t.size) throw fail(`${weightsFile}: "${stored}" has ${data.length} values, the model's ${t.size}`);
      uploads.push([t, data as Float32Array]);
    }
    // The optimizer's state_dict(); load_state_dict checks it against the parameters before changing anything.
    const stored = await SafetensorsFile.open(src, OPTIMIZER).catch((e: Error) => {
      throw fail(`${OPTIMIZER}: ${e.message}`);
    });
    const tensors: Record<string, Tensor> = {};
    try {
      for (const name of stored.names) {
        const shape = stored.info(name).shape;
        const values = await stored.readF32(name);
        if (values.length !== shape.reduce((x, y) => x * y, 1)) throw fail(`${OPTIMIZER}: "${name}" has ${values.length} values for shape [${shape}]`);
        tensors[name] = keep(Tensor.fromArray(values, shape));
      }
      try {
        this.optimizer.load_state_dict(joinStateDict(tensors, optimizerState));
      } catch (e) {
        throw fail(`${OPTIMIZER} / ${OPTIMIZER_STATE} do not fit the model's trainable parameters (${(e as Error).message})`);
      }
    } finally {
      for (const t of Object.values(tensors)) t.dispose();
    }
    for (const [t, data] of uploads) gpu().batch.upload(t.buffer, 0, data);
    this.state = { ...this.freshState(), ...state2 };
    this.position = { ...data_position };
    this.model.step = this.state.global_step;
  }
}

/** What a checkpoint's webtune_state.json holds. */
interface WebtuneState {
  data_position: DataPosition;
  dropped_examples?: number;
  seed?: number;
  base_model?: BaseIdentity;
}

/** The base model a checkpoint was trained on (webtune_state.json's base_model). */
interface BaseIdentity {
  /** Where it was loaded from, for messages. */
  name?: string;
  /** SHA-256 of config.json's keys as loaded, sorted, without _name_or_path, transformers_version and the dtype. */
  config_sha256: string;
  /** SHA-256 of sampled weight bytes: see baseIdentityOf. */
  weights_sha256: string;
  /** "safetensors": bytes of the model's files; "gpu": bytes of the loaded buffers (a model with no files). */
  weights_from: "safetensors" | "gpu";
}

async function sha256(parts: (string | Uint8Array)[]): Promise<string> {
  const chunks = parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p) : p));
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length + 4, 0));
  let at = 0;
  for (const c of chunks) {
    new DataView(all.buffer).setUint32(at, c.length, true);
    all.set(c, at + 4);
    at += c.length + 4;
  }
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", all));
  return Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join("");
}

function canonicalJSON(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonicalJSON).join(",")}]`;
  if (x && typeof x === "object") {
    return `{${Object.keys(x).sort().map((k) => `${JSON.stringify(k)}:${canonicalJSON((x as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(x) ?? "null";
}

/** Tensors sampled for the weights fingerprint, and bytes read at the start and the middle of each. */
const FINGERPRINT_TENSORS = 8;
const FINGERPRINT_BYTES = 64;

/**
 * The base model's identity, cheap and deterministic: a hash of its config and one of its weights' names,
 * dtypes, shapes and FINGERPRINT_BYTES bytes at the start and the middle of FINGERPRINT_TENSORS tensors
 * spread over the sorted names. The bytes are those of the model's safetensors files when it was loaded from
 * them (so a quantized base is fingerprinted by its values before quantization, and loading the same files
 * in another dtype is the same base); a model with no files is fingerprinted by its GPU buffers (a quantized
 * one by its packed bytes), LoRA matrices left out.
 */
async function baseIdentityOf(model: CausalLM, source: ModelSource | null): Promise<BaseIdentity> {
  const { _name_or_path: _n, transformers_version: _v, torch_dtype: _t, dtype: _d, ...config } = model.config.raw as Record<string, unknown>;
  const config_sha256 = await sha256([canonicalJSON(config)]);
  const pick = <T>(xs: T[]): T[] => {
    if (xs.length <= FINGERPRINT_TENSORS) return xs;
    return Array.from({ length: FINGERPRINT_TENSORS }, (_, i) => xs[Math.floor((i * (xs.length - 1)) / (FINGERPRINT_TENSORS - 1))]!);
  };
  if (source) {
    let weights: ModelWeights | null = null;
    try {
      weights = await ModelWeights.open(source);
    } catch {
      weights = null; // not safetensors (GGUF, …): the GPU buffers below
    }
    if (weights) {
      const all = weights.files.flatMap((f) => f.names.map((n) => ({ f, n }))).sort((x, y) => (x.n < y.n ? -1 : x.n > y.n ? 1 : 0));
      const parts: (string | Uint8Array)[] = [];
      for (const { f, n } of pick(all)) {
        const info = f.info(n);
        const mid = info.start + Math.floor((info.end - info.start) / 2);
        parts.push(`${n}:${info.dtype}:[${info.shape}]`);
        parts.push(await source.read(f.file, info.start, Math.min(info.end, info.start + FINGERPRINT_BYTES)));
        parts.push(await source.read(f.file, mid, Math.min(info.end, mid + FINGERPRINT_BYTES)));
      }
      return { name: source.name, config_sha256, weights_sha256: await sha256(parts), weights_from: "safetensors" };
    }
  }
  const params = model.named_parameters().filter(([n]) => !/(^|\.)lora_(A|B|embedding_A|embedding_B)(\.|$)/.test(n)).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  const parts: (string | Uint8Array)[] = [];
  for (const [n, t] of pick(params)) {
    const size = t.buffer.size;
    const len = Math.min(FINGERPRINT_BYTES, size) & ~3;
    const mid = Math.floor(size / 2) & ~3;
    parts.push(`${n}:[${t.shape}]`);
    if (len > 0) parts.push(new Uint8Array(await gpu().batch.read(t.buffer, 0, len)));
    const midLen = Math.min(FINGERPRINT_BYTES, size - mid) & ~3;
    if (midLen > 0) parts.push(new Uint8Array(await gpu().batch.read(t.buffer, mid, midLen)));
  }
  return { ...(source ? { name: source.name } : {}), config_sha256, weights_sha256: await sha256(parts), weights_from: "gpu" };
}

/** A checkpoint's JSON file, parsed and checked; an error naming the file and the problem otherwise. */
async function readCheckpointJSON<T>(storage: CheckpointStorage, id: string, file: string, check: (x: unknown) => string | null): Promise<T> {
  const where = `${storage.name}/${id}/${file}`;
  let x: unknown;
  try {
    x = JSON.parse(await storage.readText(id, file));
  } catch (e) {
    throw new Error(`resume_from_checkpoint: ${where} is not valid JSON (${(e as Error).message}): the checkpoint is damaged; resume from another one`, { cause: e });
  }
  const problem = check(x);
  if (problem) throw new Error(`resume_from_checkpoint: ${where}: ${problem}: the checkpoint is damaged; resume from another one`);
  return x as T;
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isCount = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;

function isPosition(x: unknown): x is DataPosition {
  return isObject(x) && isCount(x.epoch) && isCount(x.batches);
}

function checkOptimizerJSON(x: unknown): string | null {
  if (!isObject(x)) return "expected an object {state, param_groups}";
  if (!Array.isArray(x.param_groups) || !x.param_groups.every((g) => isObject(g) && Array.isArray(g.params) && g.params.every(isCount))) {
    return `"param_groups" is not a list of groups with "params" (parameter indices)`;
  }
  if ("state" in x ? !isObject(x.state) || !Object.values(x.state).every(isObject) : !isObject(x.steps)) return `"state" is not an object of per-parameter states`;
  return null;
}

function checkTrainerStateJSON(x: unknown): string | null {
  if (!isObject(x)) return "expected an object (transformers' TrainerState)";
  if (!isCount(x.global_step)) return `"global_step" is ${JSON.stringify(x.global_step)}, not a non-negative integer`;
  if (!Array.isArray(x.log_history) || !x.log_history.every(isObject)) return `"log_history" is not a list of objects`;
  for (const k of ["epoch", "num_input_tokens_seen", "total_flos"]) if (k in x && typeof x[k] !== "number") return `"${k}" is ${JSON.stringify(x[k])}, not a number`;
  return null;
}

function checkWebtuneStateJSON(x: unknown): string | null {
  if (!isObject(x)) return "expected an object {data_position, …}";
  if (!isPosition(x.data_position)) return `"data_position" is not {epoch, batches} of non-negative integers`;
  const b = x.base_model;
  if (b !== undefined && !(isObject(b) && typeof b.config_sha256 === "string" && typeof b.weights_sha256 === "string" && typeof b.weights_from === "string")) {
    return `"base_model" is not {config_sha256, weights_sha256, weights_from}`;
  }
  return null;
}

/**
 * optimizer.json as state_dict() writes it. webtune 0.1 wrote AdamW's per-param steps apart ({param_groups,
 * steps: {index: step}}); such a checkpoint still resumes (its moments are named as now).
 */
function legacyOptimizerState(o: OptimizerStateJSON | { param_groups: OptimizerStateJSON["param_groups"]; steps: Record<string, number> }): OptimizerStateJSON {
  if (!("steps" in o) || "state" in o) return o as OptimizerStateJSON;
  const state: OptimizerStateJSON["state"] = {};
  for (const [i, step] of Object.entries(o.steps)) state[+i] = { step };
  return { state, param_groups: o.param_groups };
}
