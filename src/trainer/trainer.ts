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
import type { ModelSource } from "../io/source.ts";
import { fromStored, weightsOf } from "../models/architecture.ts";
import type { CausalLM } from "../models/causal_lm.ts";
import { architectureOf } from "../models/config.ts";
import { get_peft_model, PeftModel, type LoraConfig } from "../models/peft.ts";
import { parseQuantizationConfig, type BitsAndBytesConfig } from "../models/quantization.ts";
import { permutation } from "../models/sampling.ts";
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from "../models/safetensors.ts";
import { clip_grad_norm_ } from "../nn/grad_norm.ts";
import { createOptimizer } from "../nn/optim.ts";
import { joinStateDict, splitStateDict, type Optimizer, type OptimizerStateJSON } from "../nn/optimizer.ts";
import { concat, reshape } from "../ops/layout.ts";
import { no_grad } from "../tensor/autograd.ts";
import { memoryStats } from "../tensor/memory.ts";
import { keep, tidy } from "../tensor/scope.ts";
import { missingFeature } from "../tensor/format.ts";
import { Tensor } from "../tensor/tensor.ts";
import { gpu } from "../gpu/device.ts";
import { baseWeightsDtype, intervalSteps, reportIntegrations, sftConfig, type ResolvedSFTConfig, type SFTConfig } from "./config.ts";
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
    if (typeof m === "string") {
      const kw = a.model_init_kwargs ?? {};
      const dtype = modelInitDtype(kw, a, !!this.init.peft_config, missingFeature("f16", deviceInfo()) === null, this.warn);
      const revision = kw.revision === undefined || kw.revision === null ? undefined : String(kw.revision);
      const unread = Object.keys(kw).filter((k) => !MODEL_INIT_KEYS.includes(k));
      if (unread.length) this.warn(`model_init_kwargs: ${unread.join(", ")} ignored: webtune reads ${MODEL_INIT_KEYS.join(", ")}`);
      const kwarg = kw.quantization_config ?? null;
      if (this.init.quantization_config && kwarg) {
        throw new Error("SFTTrainer: quantization_config is set both as a trainer argument and in args.model_init_kwargs; set it in one place, preferably as a trainer argument");
      }
      const quantization_config = (this.init.quantization_config ?? kwarg) as BitsAndBytesConfig | null;
      if (parseQuantizationConfig(quantization_config) && !this.init.peft_config) {
        throw new Error("SFTTrainer: quantization_config quantizes the base model, which is then frozen: pass peft_config to train LoRA adapters on it (full fine-tuning needs the float model)");
      }
      this.model = await AutoModelForCausalLM.from_pretrained(m, { dtype, quantization_config, ...(revision ? { revision } : {}) });
    } else if (m instanceof PeftModel) {
      this.peft = m;
      this.model = m.model;
    } else this.model = m;
    if (typeof m !== "string" && this.init.quantization_config) {
      this.warn("quantization_config is ignored: the model is already loaded (pass the model id, or load it with from_pretrained(id, { quantization_config }))");
    }
    this.modelSource = this.model.source;
    if (this.init.peft_config) {
      if (this.peft) throw new Error("SFTTrainer: the model already has LoRA adapters; drop peft_config or pass the base model");
      this.peft = get_peft_model(this.model, this.init.peft_config, { seed: a.seed });
    }
    if (!this.peft) this.model.requires_grad_(true);
    if (a.gradient_checkpointing) this.model.gradient_checkpointing_enable();
    // transformers' num_parameters(exclude_embeddings=True) of the model LoRA is injected into (adapters included;
    // a tied lm_head is listed once, as the embedding).
    for (const [name, t] of (this.peft ?? this.model).named_parameters()) if (!/(^|\.)embed_tokens\.weight(:\d+)?$/.test(name)) this.flopParams += t.size;
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
    const text = new TextDecoder().decode(await file.bytes.read());
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
    if (!stream) {
      const prepared = this.prepare(this.init.train_dataset, a.packing);
      const rows: CollatorExample[] = [];
      for await (const r of prepared) rows.push(r as unknown as CollatorExample);
      this.noteDropped(prepared.stats.dropped);
      this.trainRows = a.packing && a.max_length ? pack_dataset(rows as PackInputRow[], a.max_length, a.packing_strategy) : rows;
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
      this.evalRows = a.eval_packing && a.max_length ? pack_dataset(rows as PackInputRow[], a.max_length, a.packing_strategy) : rows;
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
   */
  async train(options: { resume_from_checkpoint?: boolean | string | null } = {}): Promise<TrainOutput> {
    await this.setup();
    const a = this.args;
    const resume = options.resume_from_checkpoint ?? a.resume_from_checkpoint ?? null;
    if (resume) await this.resumeFrom(resume === true ? await this.latestCheckpoint() : await this.checkpointId(String(resume)));
    // A fresh control for each run, as the Trainer makes (a stop asked for in an earlier train() is over).
    Object.assign(this.control, { should_training_stop: false, should_save: false, should_log: false, should_evaluate: false });
    let stoppedOnNaN = false;
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
    await this.emit("on_train_begin");
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
      // One readback per step: the losses, metrics and the gradient norm (to stop on NaN/Inf before updating).
      const values = await tidy(() => no_grad(() => concat([...scalars, norm].map((t) => reshape(t, [1])), 0))).toArray();
      for (const t of [...scalars, norm]) t.dispose();
      const gradNorm = values[values.length - 1]!;
      let stepLoss = 0;
      micro.forEach((_, i) => (stepLoss += values[3 * i]!));
      if (!Number.isFinite(stepLoss) || !Number.isFinite(gradNorm)) {
        this.optimizer.zero_grad();
        const what = !Number.isFinite(stepLoss) ? `the loss is ${stepLoss}` : `the gradient norm is ${gradNorm}`;
        this.warn(`SFTTrainer: step ${this.state.global_step + 1}: ${what}; the step is skipped and training stops (the last checkpoint is intact)`);
        await this.log({ nan_or_inf_step: this.state.global_step + 1, loss: stepLoss, grad_norm: gradNorm });
        this.control.should_training_stop = true;
        stoppedOnNaN = true;
        break;
      }
      // The metrics of the step count only once it is known to be good.
      micro.forEach((m, i) => {
        if (m.num_label_tokens > 0) {
          window.acc.push(values[3 * i + 1]! / m.num_label_tokens);
          window.entropy.push(values[3 * i + 2]! / m.num_label_tokens);
        }
      });
      this.optimizer.step();
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
    // The Trainer saves at max_steps (not after a stop a callback asked for, nor after a NaN/Inf step: the last
    // good checkpoint stays the newest).
    if (
      a.save_strategy !== "no" && !stoppedOnNaN && !this.control.should_training_stop && this.state.global_step > 0 &&
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
      [WEBTUNE_STATE]: json({ data_position: this.position, dropped_examples: this.dropped_examples, seed: this.args.seed }),
      [TRAINING_ARGS]: json({ ...this.args, notes: undefined }),
    };
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

  /** A checkpoint id, or a path ending in one ("out/checkpoint-500", as the Trainer takes it). */
  private async checkpointId(given: string): Promise<string> {
    const ids = await this.storage.list();
    if (ids.includes(given)) return given;
    const base = given.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? given;
    return ids.includes(base) ? base : given;
  }

  /** The newest complete checkpoint in the storage. */
  private async latestCheckpoint(): Promise<string> {
    const ids = (await this.storage.list()).filter((id) => checkpointStep(id) >= 0);
    if (!ids.length) throw new Error(`resume_from_checkpoint: no complete checkpoint in ${this.storage.name}`);
    return ids.sort((x, y) => checkpointStep(x) - checkpointStep(y))[ids.length - 1]!;
  }

  /** Restores weights, optimizer, schedule position, data position and state from a checkpoint. */
  private async resumeFrom(id: string): Promise<void> {
    if (!(await this.storage.list()).includes(id)) {
      throw new Error(`resume_from_checkpoint: "${id}" is not a complete checkpoint in ${this.storage.name}`);
    }
    const src = this.storage.source(id);
    // Trainable weights: the adapter's A/B, or every weight of a full fine-tune.
    const weights = await SafetensorsFile.open(src, this.peft ? "adapter_model.safetensors" : "model.safetensors");
    // A full fine-tune's checkpoint holds the model's state_dict(): transformers' tensors, which the description
    // turns into what the model holds (adapters are stored as they are).
    const arch = architectureOf(this.model.config);
    const specs = new Map(weightsOf(arch, this.model.config).map((w) => [w.name, w]));
    for (const [name, t] of this.named_trainable()) {
      const stored = name.replace(/:\d+$/, "");
      if (!weights.has(stored)) throw new Error(`checkpoint ${id} in ${this.storage.name} has no weight "${stored}"`);
      if (stored !== name) throw new Error(`resume_from_checkpoint: ${name} is stored as row blocks, which full fine-tuning checkpoints do not support`);
      const read = await weights.readF32(stored);
      const data = this.peft ? read : fromStored(arch, specs.get(stored)!, read);
      if (data.length !== t.size) throw new Error(`checkpoint ${id}: "${stored}" has ${data.length} values, the model ${t.size}`);
      gpu().batch.upload(t.buffer, 0, data);
    }
    // The optimizer's state_dict(), copied in by load_state_dict.
    const optimizerState = legacyOptimizerState(JSON.parse(await this.storage.readText(id, OPTIMIZER_STATE)));
    const stored = await SafetensorsFile.open(src, OPTIMIZER);
    const tensors: Record<string, Tensor> = {};
    for (const name of stored.names) tensors[name] = keep(Tensor.fromArray(await stored.readF32(name), stored.info(name).shape));
    this.optimizer.load_state_dict(joinStateDict(tensors, optimizerState));
    for (const t of Object.values(tensors)) t.dispose();
    // webtune 0.1 kept the data position inside trainer_state.json; now it is in webtune_state.json.
    const saved = JSON.parse(await this.storage.readText(id, TRAINER_STATE)) as TrainerState & { data_position?: DataPosition; dropped_examples?: number; seed?: number; stateful_callbacks?: unknown };
    const { data_position: legacyPosition, dropped_examples: _, seed: _seed, stateful_callbacks: _callbacks, ...state2 } = saved;
    const extra = (await this.storage.files(id)).includes(WEBTUNE_STATE) ? (JSON.parse(await this.storage.readText(id, WEBTUNE_STATE)) as { data_position: DataPosition }) : null;
    const data_position = extra?.data_position ?? legacyPosition;
    if (!data_position) throw new Error(`resume_from_checkpoint: checkpoint ${id} in ${this.storage.name} has no data position (${WEBTUNE_STATE} is missing)`);
    this.state = { ...this.freshState(), ...state2 };
    this.position = { ...data_position };
    this.model.step = this.state.global_step;
  }
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
