// The training worker: owns the WebGPU device, the model, the tokenizer and the trainer, so the page stays
// responsive. It speaks the messages of protocol.ts; everything it does goes through webtune's public API.
import {
  AutoModelForCausalLM,
  AutoTokenizer,
  FACTS,
  IndexedDBStorage,
  PeftModel,
  SFTTrainer,
  deviceInfo,
  generate as generateTokens,
  getDevice,
  loadDataset,
  memoryStats,
  openSource,
  openStorage,
  prepareDataset,
  splitConfig,
  tinyModelSource,
  baseWeightsDtype,
  missingFeature,
  type CausalLM,
  type ModelSource,
  type PreTrainedTokenizer,
  type Row,
  type TrainerCallback,
} from "../src/index.ts";
import {
  ADAPTER_META,
  ADAPTERS_DB,
  CHECKPOINTS_DB,
  classify,
  ggufLocation,
  NF4_CONFIG,
  type AdapterMeta,
  type DatasetSpec,
  type FromWorker,
  type ModelSpec,
  type SampleGeneration,
  type TokenPiece,
  type ToWorker,
} from "./protocol.ts";
import { trlConfig } from "./settings.ts";

const scope = self as unknown as { postMessage(m: unknown, transfer?: Transferable[]): void; onmessage: ((ev: MessageEvent) => void) | null };
const post = (m: FromWorker) => scope.postMessage(m);

let phase = "init";
let busy = false;
/** The source of the current model's files (one per model, so the tokenizer and weights share downloads). */
let source: { key: string; source: ModelSource } | null = null;
let tokenizer: { key: string; tok: PreTrainedTokenizer } | null = null;
let loaded: { key: string; model: CausalLM; dtype: "float16" | "float32" } | null = null;
let abort = new AbortController();

// Training control, set by messages while a step runs.
let pauseRequested = false;
let stopRequested = false;
let resumeWaiter: (() => void) | null = null;

function modelKey(spec: ModelSpec): string {
  switch (spec.kind) {
    case "tiny":
      return "tiny";
    case "hub":
      return `hub:${spec.id}`;
    case "files":
      return `files:${spec.label}:${spec.files.length}:${spec.files.reduce((s, f) => s + f.size, 0)}`;
    case "dir":
      return `dir:${spec.label}`;
    case "hub-gguf":
      return `hub-gguf:${spec.id}/${spec.file}`;
    case "gguf":
      return `gguf:${spec.label}:${spec.file.size}:${spec.file.lastModified}`;
  }
}

/** Hub downloads through the worker's AbortController, with progress for the page. */
const downloadOptions: NonNullable<Parameters<typeof openSource>[1]> = {
  fetch: (url, init) => fetch(url, { ...init, signal: abort.signal }),
  progress_callback: (p) => post({ type: "download", file: p.file, loaded: p.loaded, total: p.total, done: p.status === "done" }),
};

/** A GGUF spec's location for from_pretrained (tokenizer and model both read the one file); null for the others. */
function ggufOf(spec: ModelSpec): File | string | null {
  return spec.kind === "gguf" || spec.kind === "hub-gguf" ? ggufLocation(spec) : null;
}

/** The ModelSource of a spec; Hub downloads report progress and can be cancelled (AbortController through `fetch`). */
async function openModel(spec: ModelSpec): Promise<ModelSource> {
  const key = modelKey(spec);
  if (source?.key === key) return source.source;
  let src: ModelSource;
  if (spec.kind === "tiny") src = await tinyModelSource();
  else {
    if (spec.kind === "gguf" || spec.kind === "hub-gguf") throw new Error("openModel: a GGUF file has no ModelSource; read it with ggufOf");
    const loc = spec.kind === "hub" ? spec.id.trim() : spec.kind === "files" ? spec.files : spec.handle;
    src = await openSource(loc, downloadOptions);
  }
  source = { key, source: src };
  return src;
}

async function getTokenizer(spec: ModelSpec): Promise<PreTrainedTokenizer> {
  const key = modelKey(spec);
  if (tokenizer?.key === key) return tokenizer.tok;
  phase = "load";
  if (abort.signal.aborted) abort = new AbortController();
  try {
    const gguf = ggufOf(spec);
    // A GGUF's tokenizer is in its header: ranged reads of that only (cache: false), never the whole file.
    const tok = gguf ? await AutoTokenizer.from_pretrained(gguf, { ...downloadOptions, cache: false }) : await AutoTokenizer.from_pretrained(await openModel(spec));
    tokenizer = { key, tok };
    return tok;
  } catch (e) {
    source = null;
    throw e;
  }
}

/** Whether the spec asks for the 4-bit base (nf4 linears, quantized on load). */
function is4bit(spec: ModelSpec): boolean {
  return (spec.kind === "hub" || spec.kind === "files" || spec.kind === "dir") && spec.load_in_4bit === true;
}

async function getModel(spec: ModelSpec, dtype: "float16" | "float32"): Promise<CausalLM> {
  const key = `${modelKey(spec)}:${dtype}${is4bit(spec) ? ":nf4" : ""}`;
  if (loaded?.key === key) return loaded.model;
  if (loaded) {
    loaded.model.dispose();
    loaded = null;
  }
  phase = "load";
  if (abort.signal.aborted) abort = new AbortController();
  post({ type: "status", text: spec.kind === "tiny" ? "Loading the tiny model…" : "Loading the model…" });
  try {
    const gguf = ggufOf(spec);
    const quantization_config = is4bit(spec) ? { ...NF4_CONFIG } : null;
    if (quantization_config) post({ type: "status", text: "Loading the model, quantizing its linear weights to 4-bit (nf4)…" });
    // QLoRA as trl sft --dtype bfloat16 --load_in_4bit runs it: the embedding and LM head in bf16 (f16 under bf16
    // on an adapter with shader-f16), halving what stays unquantized.
    const model = gguf
      ? await AutoModelForCausalLM.from_pretrained(gguf, { ...downloadOptions, dtype })
      : await AutoModelForCausalLM.from_pretrained(await openModel(spec), { dtype: quantization_config && dtype === "float32" ? "bfloat16" : dtype, quantization_config });
    loaded = { key, model, dtype };
    return model;
  } catch (e) {
    source = null;
    throw e;
  }
}

/** The dataset's rows, read whole (the demo's datasets fit in memory); a malformed line is an error naming it. */
async function datasetRows(spec: DatasetSpec): Promise<Row[]> {
  phase = "data";
  if (spec.kind === "sample") return FACTS.map((r) => ({ ...r }));
  const file = spec.kind === "paste" ? new File([spec.text], "pasted.jsonl") : spec.file;
  const rows = await loadDataset(file).toArray();
  if (!rows.length) throw new Error(`${file.name} has no rows`);
  return rows;
}

/** The format TRL would detect, from the first row's keys. */
function detectFormat(row: Row | undefined): string {
  if (!row) return "empty";
  if ("input_ids" in row) return "pre-tokenized (input_ids)";
  if ("messages" in row) return "conversational (messages)";
  if ("conversations" in row) return "conversational (conversations)";
  if ("prompt" in row && "completion" in row) return typeof row.prompt === "string" ? "prompt-completion" : "conversational prompt-completion";
  if ("text" in row) return "language modeling (text)";
  return `unknown (fields: ${Object.keys(row).join(", ") || "none"})`;
}

/** Each token's text (decoding growing prefixes, so multi-byte characters come out whole) and whether it is trained. */
function pieces(tok: PreTrainedTokenizer, ids: number[], labels: number[]): TokenPiece[] {
  const out: TokenPiece[] = [];
  let prev = "";
  for (let i = 0; i < ids.length; i++) {
    const text = tok.decode(ids.slice(0, i + 1));
    out.push({ text: text.startsWith(prev) ? text.slice(prev.length) : tok.decode([ids[i]!]), trained: labels[i] !== -100 });
    prev = text;
  }
  return out;
}

async function preview(msg: Extract<ToWorker, { type: "preview" }>): Promise<void> {
  const tok = await getTokenizer(msg.model);
  const rows = await datasetRows(msg.dataset);
  phase = "data";
  const { max_length, completion_only_loss, assistant_only_loss } = trlConfig(msg.settings, CHECKPOINTS_DB);
  const prepared = prepareDataset(rows.slice(0, 3), tok, { max_length, completion_only_loss, assistant_only_loss, warn: (t) => post({ type: "note", text: t }) });
  const examples: TokenPiece[][] = [];
  const tokens: number[] = [];
  for await (const ex of prepared) {
    examples.push(pieces(tok, ex.input_ids, ex.labels));
    tokens.push(ex.input_ids.length);
  }
  post({ type: "preview", seq: msg.seq, format: detectFormat(rows[0]), rows: rows.length, examples, tokens });
}

async function clearCheckpoints(): Promise<void> {
  const storage = openStorage(`indexeddb:${CHECKPOINTS_DB}`);
  for (const id of await storage.list()) await storage.delete(id);
}

async function train(msg: Extract<ToWorker, { type: "train" }>): Promise<void> {
  phase = "settings";
  // Notes are left to the trainer, which warns each of args.notes once.
  const { args, peft } = splitConfig(trlConfig(msg.settings, CHECKPOINTS_DB), "the page's settings");
  pauseRequested = stopRequested = false;
  const rows = await datasetRows(msg.dataset);
  const format = detectFormat(rows[0]);
  const tok = await getTokenizer(msg.model);
  const model = await getModel(msg.model, baseWeightsDtype(args, missingFeature("f16", deviceInfo()) === null));
  if (!msg.resume) await clearCheckpoints();
  let last = performance.now();
  let lastLoss: number | null = null;
  const callback: TrainerCallback = {
    on_train_begin(_args, state) {
      phase = "train";
      last = performance.now();
      const history = state.log_history.filter((l) => "loss" in l && "grad_norm" in l);
      const [trainable, all] = trainer.peft!.get_nb_trainable_parameters();
      post({ type: "begin", step: state.global_step, max_steps: state.max_steps, history, trainable: `${trainable.toLocaleString("en-US")} of ${all.toLocaleString("en-US")} parameters train (${((100 * trainable) / all).toFixed(2)}%)` });
    },
    on_log(_args, _state, _control, logs) {
      if ("loss" in logs && "grad_norm" in logs) lastLoss = logs.loss!;
      post({ type: "log", logs });
    },
    async on_step_end(_args, state, control) {
      const now = performance.now();
      post({ type: "step", step: state.global_step, max_steps: state.max_steps, epoch: state.epoch, live_bytes: memoryStats().liveBytes, step_ms: now - last });
      if (pauseRequested && !stopRequested) {
        post({ type: "paused" });
        await new Promise<void>((resolve) => (resumeWaiter = resolve));
        resumeWaiter = null;
        post({ type: "resumed" });
      }
      if (stopRequested) control.should_training_stop = true;
      last = performance.now();
    },
    on_save(_args, _state, _control, checkpoint) {
      post({ type: "saved", checkpoint });
    },
  };
  phase = "data";
  const trainer: SFTTrainer = new SFTTrainer({
    model,
    processing_class: tok,
    train_dataset: rows,
    peft_config: peft!, // trlConfig sets use_peft
    args,
    storage: `indexeddb:${CHECKPOINTS_DB}`,
    callbacks: [callback],
    warn: (text) => {
      post({ type: "note", text });
      // A lost GPU device: the trainer recovers by itself (a new device, the model loaded again, the newest
      // checkpoint in IndexedDB, at most 3 times a run); the status line says so.
      if (/GPU device was lost/.test(text)) post({ type: "status", text: "The GPU device was lost: training continues on a new device from the last checkpoint…" });
    },
  });
  try {
    post({ type: "status", text: "Preparing the dataset…" });
    await trainer.setup();
    post({ type: "status", text: msg.resume ? "Resuming from the newest checkpoint…" : "Training…" });
    const out = await trainer.train({ resume_from_checkpoint: msg.resume });
    // After a lost device the trainer holds the model loaded again on the new one: keep that one loaded.
    if (trainer.model !== model && loaded?.model === model) loaded.model = trainer.model;
    phase = "save";
    const stopped = stopRequested;
    const files = await trainer.peft!.adapter_files();
    const id = `adapter-${Date.now()}`;
    const meta: AdapterMeta = {
      created: Date.now(),
      model: msg.modelLabel,
      modelSpec: storedSpec(msg.model),
      dataset: msg.datasetLabel,
      format,
      steps: out.global_step,
      loss: lastLoss,
    };
    await openStorage(`indexeddb:${ADAPTERS_DB}`).writeCheckpoint(id, { ...files, [ADAPTER_META]: JSON.stringify(meta, null, 2) });
    phase = "generate";
    try {
      const samples = await sampleGenerations(trainer.peft!, tok, rows, msg.dataset.kind === "sample");
      if (samples) post({ type: "samples", ...samples, dataset_rows: rows.length });
    } catch (e) {
      // The adapter is saved: a failure here only costs the panel.
      post({ type: "note", text: `no generations for the dataset's prompts: ${(e as Error).message}` });
    }
    const tensorboard = trainer.tensorboardFiles().map((f) => ({ dir: f.dir, name: f.name, bytes: f.bytes.slice() }));
    scope.postMessage({ type: "done", adapter: id, step: out.global_step, stopped, tensorboard } satisfies FromWorker, tensorboard.map((f) => f.bytes.buffer));
  } finally {
    trainer.peft?.unload();
  }
}

/** Rows the page generates for after training: every row of the sample (64 short facts), else this many. */
const SAMPLE_ROWS = 8;

/**
 * Greedy completions of the dataset's prompts after training, beside the expected ones, as train.ts shows them:
 * every row of the sample, else SAMPLE_ROWS rows spread over the dataset. Only for string prompt-completion
 * rows (null otherwise). A one-line completion is compared with the generation's first line, spaces trimmed.
 */
async function sampleGenerations(
  peft: PeftModel,
  tok: PreTrainedTokenizer,
  rows: Row[],
  whole: boolean,
): Promise<{ rows: SampleGeneration[]; exact: number; of: number } | null> {
  const pc = rows.filter((r) => typeof r.prompt === "string" && typeof r.completion === "string") as { prompt: string; completion: string }[];
  if (!pc.length || pc.length !== rows.length) return null;
  const n = whole ? pc.length : Math.min(SAMPLE_ROWS, pc.length);
  const picked = Array.from({ length: n }, (_, i) => pc[Math.floor((i * pc.length) / n)]!);
  post({ type: "status", text: `Generating for ${n} prompt${n === 1 ? "" : "s"} of the dataset…` });
  const prompts = picked.map((r) => tok.encode(r.prompt));
  const T = Math.max(...prompts.map((p) => p.length));
  const pad = tok.pad_token_id ?? 0;
  const ids = prompts.map((p) => [...new Array<number>(T - p.length).fill(pad), ...p]);
  const mask = prompts.map((p) => [...new Array<number>(T - p.length).fill(0), ...p.map(() => 1)]);
  // As many new tokens as the longest expected completion has, and a few more (train.ts's 20 for the facts).
  const longest = Math.max(...picked.map((r) => tok.encode(r.completion, { add_special_tokens: false }).length));
  const max_new_tokens = whole ? 20 : Math.min(128, longest + 4);
  const out = await peft.generate(ids, { attention_mask: mask, max_new_tokens, do_sample: false, eos_token_id: tok.eos_token_id ?? null });
  const gens = picked.map((r, i) => {
    // The model's vocabulary may be padded past the tokenizer's: such ids have no text.
    const text = tok.decode(out[i]!.slice(T).filter((t) => t < tok.length), { skip_special_tokens: true });
    const expected = r.completion.trim();
    const got = expected.includes("\n") ? text.trim() : text.split("\n")[0]!.trim();
    return { prompt: r.prompt, expected: r.completion, generated: text, exact: got === expected };
  });
  return { rows: gens, exact: gens.filter((g) => g.exact).length, of: gens.length };
}

/** The spec a saved adapter keeps of its base: tiny, hub (and its 4-bit flag), hub-gguf; null for local files. */
function storedSpec(spec: ModelSpec): AdapterMeta["modelSpec"] {
  if (spec.kind === "tiny") return { kind: "tiny" };
  if (spec.kind === "hub") return spec.load_in_4bit ? { kind: "hub", id: spec.id, load_in_4bit: true } : { kind: "hub", id: spec.id };
  if (spec.kind === "hub-gguf") return { kind: "hub-gguf", id: spec.id, file: spec.file };
  return null;
}

async function generate(msg: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  const tok = await getTokenizer(msg.model);
  const model = await getModel(msg.model, loaded?.dtype ?? "float32");
  phase = "generate";
  const ids = msg.chat ? (tok.apply_chat_template([{ role: "user", content: msg.prompt }], { add_generation_prompt: true }) as number[]) : tok.encode(msg.prompt);
  model.eval();
  const run = async (which: "base" | "adapter") => {
    const out: number[] = [];
    await generateTokens(model, ids, {
      max_new_tokens: msg.max_new_tokens,
      do_sample: false,
      ...(tok.eos_token_id !== null ? { eos_token_id: tok.eos_token_id } : {}),
      on_token: ([t]) => {
        if (t === tok.eos_token_id) return;
        out.push(t!);
        post({ type: "gen-token", which, text: tok.decode(out.filter((x) => x < tok.length), { skip_special_tokens: true }) });
      },
    });
  };
  // The base model first (no adapter on it), then the same weights with the saved adapter loaded on top.
  await run("base");
  const storage = new IndexedDBStorage(ADAPTERS_DB);
  const peft = await PeftModel.from_pretrained(model, storage.source(msg.adapter));
  try {
    await run("adapter");
  } finally {
    peft.unload();
  }
  post({ type: "gen-done" });
}

async function init(): Promise<void> {
  phase = "init";
  await getDevice();
  const info = deviceInfo();
  const a = info.adapter;
  post({
    type: "ready",
    adapter: `${a.description || [a.vendor, a.architecture].filter(Boolean).join(" ") || "WebGPU adapter"}${a.isFallbackAdapter ? " (fallback)" : ""}`,
    f16: info.features.shader_f16,
    maxBinding: info.limits.maxStorageBufferBindingSize,
  });
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.type) {
    case "pause":
      pauseRequested = true;
      return;
    case "resume":
      pauseRequested = false;
      resumeWaiter?.();
      return;
    case "stop":
      stopRequested = true;
      resumeWaiter?.();
      if (phase === "load") abort.abort();
      return;
    case "cancel-download":
      abort.abort();
      return;
  }
  if (busy && msg.type !== "preview") {
    post({ type: "error", kind: "other", message: "The worker is busy; wait for the current task to end.", phase: msg.type });
    return;
  }
  const exclusive = msg.type !== "preview";
  if (exclusive) busy = true;
  try {
    if (msg.type === "init") await init();
    else if (msg.type === "preview") await preview(msg);
    else if (msg.type === "train") await train(msg);
    else if (msg.type === "generate") await generate(msg);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // IndexedDB's QuotaExceededError may only show in the error's name, somewhere along its causes.
    let quota = false;
    for (let c: unknown = e; c instanceof Error || c instanceof DOMException; c = (c as Error).cause) if ((c as Error).name === "QuotaExceededError") quota = true;
    post({ type: "error", kind: quota ? "quota" : classify(message, phase), message, phase: msg.type === "preview" ? "preview" : phase });
  } finally {
    if (exclusive) busy = false;
  }
}

scope.onmessage = (ev: MessageEvent<ToWorker>) => void handle(ev.data);
