// The fine-tuning page: model, dataset, settings, a training worker with live charts, checkpoints that
// survive a reload, saved adapters, and side-by-side generation. Uses webtune's public API only.
import { parse as parseYaml } from "yaml";
import { FACTS, IndexedDBStorage, openSource, splitConfig, SUPPORTED_ARCHITECTURES, tinyModelFiles, tinyModelSource } from "../src/index.ts";
import { exportTRLConfig } from "../src/trainer/export_config.ts";
import { openGGUFLocation } from "../src/io/open.ts";
import { GGUFFile } from "../src/models/gguf.ts";
import { ggufWeightMemory, linearsLabel, loadFormats, weightMemory, type LinearFormat, type VocabFormat, type WeightMemory } from "../src/models/memory.ts";
import { formatBytes, MODEL_PRESETS, parameterCount, presetLabel, type ModelPreset } from "../src/models/presets.ts";
import { drawChart, type Point } from "./chart.ts";
import {
  ADAPTER_META,
  ADAPTERS_DB,
  CHECKPOINTS_DB,
  RUNS_DB,
  bytes,
  ggufLocation,
  NF4_CONFIG,
  type AdapterMeta,
  type DatasetSpec,
  type ErrorKind,
  type FromWorker,
  type ModelSpec,
  type SampleGeneration,
  type TensorBoardLog,
  type StoredModelSpec,
  type ToWorker,
} from "./protocol.ts";
import { MODEL_DEFAULTS, TINY_DEFAULTS, trlConfig, type Settings } from "./settings.ts";
import { zip } from "./zip.ts";

// ---------------------------------------------------------------------------------------------------------
// Elements

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  device: $("device"),
  deviceText: $("device-text"),
  alert: $("alert"),
  alertTitle: $("alert-title"),
  alertMessage: $("alert-message"),
  alertHelp: $("alert-help"),
  alertResume: $<HTMLButtonElement>("alert-resume"),
  alertClose: $<HTMLButtonElement>("alert-close"),
  banner: $("resume-banner"),
  bannerText: $("resume-text"),
  resumeRun: $<HTMLButtonElement>("resume-run"),
  discardRun: $<HTMLButtonElement>("discard-run"),
  hubRow: $("hub-row"),
  hubId: $<HTMLInputElement>("hub-id"),
  hubPreset: $<HTMLSelectElement>("hub-preset"),
  hubPresets: $("hub-presets"),
  hubSize: $("hub-size"),
  hubArchs: $("hub-archs"),
  localRow: $("local-row"),
  pickFolder: $<HTMLButtonElement>("pick-folder"),
  folderInput: $<HTMLInputElement>("folder-input"),
  folderLabel: $("folder-label"),
  hubGgufRow: $("hub-gguf-row"),
  ggufRepo: $<HTMLInputElement>("gguf-repo"),
  ggufName: $<HTMLInputElement>("gguf-name"),
  ggufRow: $("gguf-row"),
  ggufInput: $<HTMLInputElement>("gguf-input"),
  q4Row: $("q4-row"),
  load4bit: $<HTMLInputElement>("load-4bit"),
  modelMemory: $("model-memory"),
  download: $("download"),
  dlText: $("dl-text"),
  dlProgress: $<HTMLProgressElement>("dl-progress"),
  dlCancel: $<HTMLButtonElement>("dl-cancel"),
  fileRow: $("file-row"),
  dataFile: $<HTMLInputElement>("data-file"),
  pasteRow: $("paste-row"),
  dataPaste: $<HTMLTextAreaElement>("data-paste"),
  dataError: $("data-error"),
  previewMeta: $("preview-meta"),
  previewRows: $("preview-rows"),
  settings: $<HTMLFormElement>("settings"),
  resetSettings: $<HTMLButtonElement>("reset-settings"),
  exportYaml: $<HTMLButtonElement>("export-yaml"),
  yamlBox: $("yaml-box"),
  yaml: $("yaml"),
  yamlCopy: $<HTMLButtonElement>("yaml-copy"),
  yamlDownload: $<HTMLButtonElement>("yaml-download"),
  sampleDownload: $<HTMLButtonElement>("sample-download"),
  tinyDownload: $<HTMLButtonElement>("tiny-download"),
  yamlCheck: $("yaml-check"),
  start: $<HTMLButtonElement>("start"),
  pause: $<HTMLButtonElement>("pause"),
  stop: $<HTMLButtonElement>("stop"),
  status: $("train-status"),
  progress: $<HTMLProgressElement>("train-progress"),
  stStep: $("st-step"),
  stLoss: $("st-loss"),
  stAcc: $("st-acc"),
  stTps: $("st-tps"),
  stEta: $("st-eta"),
  stMem: $("st-mem"),
  chart: $<HTMLCanvasElement>("chart"),
  notes: $("train-notes"),
  tbRow: $("tb-row"),
  tbDownload: $<HTMLButtonElement>("tb-download"),
  tbHint: $("tb-hint"),
  tryAdapter: $<HTMLSelectElement>("try-adapter"),
  tryPrompt: $<HTMLTextAreaElement>("try-prompt"),
  tryChat: $<HTMLInputElement>("try-chat"),
  tryMax: $<HTMLInputElement>("try-max"),
  generate: $<HTMLButtonElement>("generate"),
  outBase: $("out-base"),
  outAdapter: $("out-adapter"),
  samples: $("samples"),
  samplesSummary: $("samples-summary"),
  samplesRows: $<HTMLTableSectionElement>("samples-rows"),
  samplesMore: $<HTMLDetailsElement>("samples-more"),
  samplesMoreLabel: $("samples-more-label"),
  samplesAll: $<HTMLTableSectionElement>("samples-all"),
  adapters: $<HTMLTableSectionElement>("adapters"),
  storageUse: $("storage-use"),
};

// ---------------------------------------------------------------------------------------------------------
// State, and what the tests read (window.__webtune_demo)

type Phase = "starting" | "idle" | "loading" | "training" | "paused" | "stopping" | "generating" | "no-webgpu";

const demo = {
  /** Every log the trainer sent this session ({loss, grad_norm, mean_token_accuracy, …, step}). */
  logs: [] as Record<string, number>[],
  /** Optimizer steps reported this session, in order, and the milliseconds each took. */
  steps: [] as number[],
  stepMs: [] as number[],
  /** The global step a resumed run started from (null: not resumed this session). */
  resumedFrom: null as number | null,
  phase: "starting" as Phase,
  ready: false,
  errors: [] as { kind: ErrorKind; message: string }[],
  preview: null as null | { format: string; rows: number },
  /** The weights' GPU memory the model choice needs, as the line under Model says (null: not known yet). */
  memory: null as null | { bytes: number; linears: string; text: string },
  /** Whether the worker's adapter has shader-f16 (bf16 then stores the frozen linears as f16). */
  f16: false,
  generations: { base: "", adapter: "", done: false },
  /** The dataset's prompts generated after the last run (greedy), and how many came out exactly (null: none yet). */
  samples: null as null | { rows: SampleGeneration[]; shown: number[]; exact: number; of: number; dataset_rows: number },
  lastAdapter: null as string | null,
  /** The last run's TensorBoard event files (report_to "tensorboard"), as the download offers them. */
  tensorboard: [] as { dir: string; name: string; size: number }[],
  checkpoints: [] as string[],
};
(globalThis as unknown as { __webtune_demo: typeof demo }).__webtune_demo = demo;

let worker: Worker;
let localFiles: File[] | null = null;
let localHandle: FileSystemDirectoryHandle | null = null;
let localLabel = "";
let chartPoints: Point[] = [];
let maxSteps = 0;
let stepTimes: number[] = [];
let previewSeq = 0;
let peakBytes = 0;
/** The last run's TensorBoard event files, kept in memory until the next run (or a reload). */
let tensorboardLogs: TensorBoardLog[] = [];

const adaptersStore = new IndexedDBStorage(ADAPTERS_DB);
const checkpointsStore = new IndexedDBStorage(CHECKPOINTS_DB);
const runsStore = new IndexedDBStorage(RUNS_DB);
const RUN_KEY = "webtune-demo:run";

// ---------------------------------------------------------------------------------------------------------
// Settings

const SETTING_KEYS = Object.keys(TINY_DEFAULTS) as (keyof Settings)[];

function input(key: keyof Settings): HTMLInputElement | HTMLSelectElement {
  return $(`s-${key}`) as HTMLInputElement | HTMLSelectElement;
}

function readSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const k of SETTING_KEYS) {
    const e = input(k);
    const d = TINY_DEFAULTS[k];
    if (e instanceof HTMLInputElement && e.type === "checkbox") out[k] = e.checked;
    else if (typeof d === "number") {
      const v = Number((e as HTMLInputElement).value);
      out[k] = (e as HTMLInputElement).value.trim() === "" || !Number.isFinite(v) ? d : v;
    } else out[k] = e.value;
  }
  return out as unknown as Settings;
}

function writeSettings(s: Settings): void {
  for (const k of SETTING_KEYS) {
    const e = input(k);
    if (e instanceof HTMLInputElement && e.type === "checkbox") e.checked = Boolean(s[k]);
    else e.value = String(s[k]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Model and dataset choices

type ModelChoice = "tiny" | "hub" | "hub-gguf" | "local" | "gguf";

function modelChoice(): ModelChoice {
  return (document.querySelector<HTMLInputElement>('input[name="model"]:checked')?.value ?? "tiny") as ModelChoice;
}

/** Whether the choice is a safetensors model the "4-bit base" box applies to (a Hub id or a local folder). */
function quantizable(c: ModelChoice): boolean {
  return c === "hub" || c === "local";
}

/** What a run record keeps of its model (local files by label, to be chosen again). */
function storedModel(spec: ModelSpec): RunRecord["model"] {
  switch (spec.kind) {
    case "tiny":
      return { kind: "tiny" };
    case "hub":
      return spec.load_in_4bit ? { kind: "hub", id: spec.id, load_in_4bit: true } : { kind: "hub", id: spec.id };
    case "hub-gguf":
      return { kind: "hub-gguf", id: spec.id, file: spec.file };
    case "gguf":
      return { kind: "local", label: spec.label, gguf: true };
    default:
      return spec.load_in_4bit ? { kind: "local", label: spec.label, load_in_4bit: true } : { kind: "local", label: spec.label };
  }
}

/** Whether a spec reads files of this computer (a run or an adapter on it needs them chosen again). */
function isLocal(spec: ModelSpec): spec is Extract<ModelSpec, { kind: "files" | "dir" | "gguf" }> {
  return spec.kind === "files" || spec.kind === "dir" || spec.kind === "gguf";
}

function dataChoice(): "sample" | "file" | "paste" {
  return (document.querySelector<HTMLInputElement>('input[name="data"]:checked')?.value ?? "sample") as "sample" | "file" | "paste";
}

/** The chosen model as the worker takes it; null when a local folder or .gguf file is chosen but not picked yet. */
function modelSpec(): ModelSpec | null {
  const c = modelChoice();
  const q4 = quantizable(c) && el.load4bit.checked ? { load_in_4bit: true } : {};
  if (c === "tiny") return { kind: "tiny" };
  if (c === "hub") return { kind: "hub", id: el.hubId.value.trim(), ...q4 };
  if (c === "hub-gguf") return { kind: "hub-gguf", id: el.ggufRepo.value.trim(), file: el.ggufName.value.trim() };
  if (c === "gguf") {
    const file = el.ggufInput.files?.[0];
    return file ? { kind: "gguf", file, label: file.name } : null;
  }
  if (localHandle) return { kind: "dir", handle: localHandle, label: localLabel, ...q4 };
  if (localFiles) return { kind: "files", files: localFiles, label: localLabel, ...q4 };
  return null;
}

function modelLabel(spec: ModelSpec): string {
  const q4 = "load_in_4bit" in spec && spec.load_in_4bit ? " (4-bit base)" : "";
  switch (spec.kind) {
    case "tiny":
      return "tiny default model";
    case "hub":
      return spec.id + q4;
    case "hub-gguf":
      return `${spec.file} in ${spec.id}`;
    case "gguf":
      return `file ${spec.label}`;
    default:
      return `folder ${spec.label}${q4}`;
  }
}

function datasetSpec(): DatasetSpec | null {
  const c = dataChoice();
  if (c === "sample") return { kind: "sample" };
  if (c === "paste") return el.dataPaste.value.trim() ? { kind: "paste", text: el.dataPaste.value } : null;
  const f = el.dataFile.files?.[0];
  return f ? { kind: "file", file: f } : null;
}

function datasetLabel(spec: DatasetSpec): string {
  return spec.kind === "sample" ? "sample facts (64 rows)" : spec.kind === "paste" ? "pasted rows" : spec.file.name;
}

function syncChoiceRows(): void {
  const m = modelChoice();
  el.hubRow.hidden = m !== "hub";
  el.localRow.hidden = m !== "local";
  el.hubGgufRow.hidden = m !== "hub-gguf";
  el.ggufRow.hidden = m !== "gguf";
  el.q4Row.hidden = !quantizable(m);
  const d = dataChoice();
  el.fileRow.hidden = d !== "file";
  el.pasteRow.hidden = d !== "paste";
}

async function pickFolder(): Promise<void> {
  const picker = (globalThis as { showDirectoryPicker?: (o?: object) => Promise<FileSystemDirectoryHandle> }).showDirectoryPicker;
  if (picker) {
    try {
      localHandle = await picker({ id: "webtune-model", mode: "read" });
      localFiles = null;
      localLabel = localHandle.name;
      el.folderLabel.textContent = `“${localLabel}”`;
      onModelChanged();
    } catch (e) {
      if ((e as Error).name !== "AbortError") showError("other", (e as Error).message);
    }
  } else el.folderInput.click();
}

// ---------------------------------------------------------------------------------------------------------
// Known Hub models (src/models/presets.ts): by id, with their sizes computed from their published config.json

/** The preset's architecture when webtune has no description of it yet (it can still preview its tokenizer). */
function missingArchitecture(p: ModelPreset): string | null {
  const name = String((p.config.architectures as string[] | undefined)?.[0] ?? "");
  return SUPPORTED_ARCHITECTURES.includes(name) ? null : name;
}

/** "Gemma 3 270M · 268M params · 536 MB bf16 · gated": how the lists name a preset. */
function presetOption(p: ModelPreset): string {
  const missing = missingArchitecture(p);
  return `${presetLabel(p)}${p.gated ? " · gated" : ""}${missing ? ` · ${missing} not supported yet` : ""}`;
}

function fillPresets(): void {
  for (const p of MODEL_PRESETS) {
    const opt = document.createElement("option");
    opt.value = p.id;
    opt.textContent = presetOption(p);
    el.hubPreset.append(opt);
    const item = document.createElement("option");
    item.value = p.id;
    item.label = presetOption(p);
    el.hubPresets.append(item);
  }
  const archs = SUPPORTED_ARCHITECTURES.map((a) => a.replace(/ForCausalLM$/, ""));
  el.hubArchs.textContent = `Architectures: ${archs.join(", ")} (SmolLM2 is Llama), with safetensors weights. Downloads are kept in the browser's cache.`;
  syncHubPreset();
}

/** The list follows the typed id; the line under it gives a known model's size. */
function syncHubPreset(): void {
  const typed = el.hubId.value.trim().toLowerCase();
  const p = MODEL_PRESETS.find((x) => x.id.toLowerCase() === typed); // by Hub id only: a short name is no Hub id
  el.hubPreset.value = p?.id ?? "";
  if (!p) {
    el.hubSize.textContent = "";
    return;
  }
  const size = parameterCount(p.config);
  const notes = [
    `${presetLabel(p)}; ${formatBytes(size.bytes.float32)} as float32 on the GPU`,
    p.gated ? "gated on the Hub: its files need an access token, which this page does not take (download it and choose Local folder)" : "",
    missingArchitecture(p) ? `${missingArchitecture(p)} cannot be trained yet; its tokenizer previews` : "",
  ];
  el.hubSize.textContent = notes.filter(Boolean).join(". ") + ".";
}

// ---------------------------------------------------------------------------------------------------------
// The weights' GPU memory, before downloading (src/models/memory.ts): from config.json (the tiny model's, a
// preset's, the Hub's config.json alone, a local folder's) and how the linears load (f32, f16 under bf16 on an
// adapter with shader-f16, nf4 with the 4-bit box), or from a GGUF file's header, read with ranged requests
// (its tensors' types and shapes: packed ones stay packed). Only the weights: LoRA, activations and the
// optimizer's state come on top.

/** GGUF headers read so far, by file ("owner/name/file.gguf", or a File's name, size and date). */
const ggufHeaders = new Map<string, Promise<GGUFFile>>();
/** Hub config.json files read so far, by id. */
const hubConfigs = new Map<string, Promise<Record<string, unknown>>>();
let memorySeq = 0;
let memoryTimer = 0;

function scheduleMemory(delay = 150): void {
  clearTimeout(memoryTimer);
  memoryTimer = window.setTimeout(() => void updateMemory(), delay);
}

/** How the decoder linears and the embedding / LM head load with the page's choices, as the worker loads them. */
function loadFormat(spec: ModelSpec): { linears: LinearFormat; vocab: VocabFormat } {
  const f16 = readSettings().bf16 && demo.f16;
  if ("load_in_4bit" in spec && spec.load_in_4bit) {
    // NF4_CONFIG double-quantizes; the worker holds the embedding and head in bf16 (f16 under bf16 with shader-f16).
    return loadFormats({ dtype: f16 ? "float16" : "bfloat16", quantized: "nf4", double_quant: NF4_CONFIG.bnb_4bit_use_double_quant });
  }
  return loadFormats({ dtype: f16 ? "float16" : "float32" });
}

/** One promise per key, forgotten when it fails (so a retry reads again). */
function once<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = make();
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  return p;
}

/** The header of a GGUF spec's file: GGUFFile.open reads only it (never the Cache API, which would fetch it all). */
function ggufHeader(spec: Extract<ModelSpec, { kind: "gguf" | "hub-gguf" }>): Promise<GGUFFile> {
  const key = spec.kind === "gguf" ? `file:${spec.file.name}:${spec.file.size}:${spec.file.lastModified}` : `${spec.id}/${spec.file}`;
  return once(ggufHeaders, key, async () => {
    const g = (await openGGUFLocation(ggufLocation(spec), { cache: false }))!;
    return GGUFFile.open(g.bytes, g.name);
  });
}

/** config.json of a safetensors spec: the tiny model's, a preset's (no request), the Hub's, or the folder's. */
async function modelConfig(spec: Extract<ModelSpec, { kind: "tiny" | "hub" | "files" | "dir" }>): Promise<Record<string, unknown>> {
  switch (spec.kind) {
    case "tiny":
      return tinyModelSource().json("config.json");
    case "hub": {
      const preset = MODEL_PRESETS.find((p) => p.id.toLowerCase() === spec.id.toLowerCase());
      if (preset) return { ...preset.config };
      return once(hubConfigs, spec.id, async () => (await openSource(spec.id)).json<Record<string, unknown>>("config.json"));
    }
    case "files": {
      const depth = (f: File) => (f.webkitRelativePath || f.name).split("/").length;
      const file = spec.files.filter((f) => f.name === "config.json").sort((a, b) => depth(a) - depth(b))[0];
      if (!file) throw new Error(`the folder “${spec.label}” has no config.json`);
      return JSON.parse(await file.text()) as Record<string, unknown>;
    }
    case "dir":
      return JSON.parse(await (await (await spec.handle.getFileHandle("config.json")).getFile()).text()) as Record<string, unknown>;
  }
}

/** The line under Model: "weights on the GPU: 412 MB (4-bit linears)"; demo.memory for the tests. */
async function updateMemory(): Promise<void> {
  const seq = ++memorySeq;
  const spec = modelSpec();
  const show = (text: string, memory: typeof demo.memory = null) => {
    if (seq !== memorySeq) return;
    el.modelMemory.textContent = text;
    demo.memory = memory;
  };
  if (!spec) return show(modelChoice() === "gguf" ? "Choose a .gguf file to see the memory its weights need." : "");
  if ((spec.kind === "hub" || spec.kind === "hub-gguf") && !/^[\w.-]+\/[\w.-]+$/.test(spec.id)) return show("");
  if (spec.kind === "hub-gguf" && !/\.gguf$/i.test(spec.file)) return show("Give the name of a .gguf file in the repository.");
  show("weights on the GPU: reading the sizes…");
  try {
    const formats = loadFormat(spec);
    const weights: WeightMemory[] =
      spec.kind === "gguf" || spec.kind === "hub-gguf"
        ? ggufWeightMemory(await ggufHeader(spec), { dtype: formats.linears === "f16" ? "float16" : "float32" })
        : weightMemory(await modelConfig(spec), formats, spec.kind === "hub" ? `config.json of ${spec.id}` : "config.json");
    const total = weights.reduce((sum, w) => sum + w.bytes, 0);
    const label = linearsLabel(weights);
    const text = `weights on the GPU: ${formatBytes(total)} (${label})`;
    show(text, { bytes: total, linears: label, text });
  } catch (e) {
    show(`weights on the GPU: unknown (${(e as Error).message})`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Errors in plain words

const NO_WEBGPU_HELP =
  "webtune trains on the GPU through WebGPU. Use Chrome or Edge 113 or later (Windows, macOS, ChromeOS, Android), Safari 26 or later, " +
  "or Firefox 141 or later on Windows. On Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu and chrome://flags/#enable-vulkan turned on " +
  "(or start it with --enable-unsafe-webgpu --enable-features=Vulkan); on a machine without a GPU add --use-webgpu-adapter=swiftshader.";

function explain(kind: ErrorKind): { title: string; help: string } {
  switch (kind) {
    case "no-webgpu":
      return { title: "This browser has no WebGPU", help: NO_WEBGPU_HELP };
    case "limits":
      return {
        title: "The model does not fit this GPU's limits",
        help: "A weight is larger than one GPU buffer may be on this adapter (the numbers are above). Choose a smaller model (the tiny default, or SmolLM2-135M), or use a browser and GPU with higher limits.",
      };
    case "device-lost":
      return {
        title: "The GPU was lost while working",
        help: "The GPU driver reset or ran out of memory (a smaller batch_size or max_length, or gradient_checkpointing, helps). Your checkpoints in this browser are intact: resume from the newest one.",
      };
    case "dataset":
      return {
        title: "The dataset cannot be used as it is",
        help: "The row and fields named above are what to fix. Each row is one JSON object (one per line in JSONL) with \"text\", \"messages\", \"prompt\" and \"completion\", \"conversations\", or \"input_ids\".",
      };
    case "quota":
      return {
        title: "The browser's storage for this page is full",
        help: "Checkpoints and adapters are kept in IndexedDB. Delete saved adapters below, or clear this site's data in the browser's settings, then resume.",
      };
    case "download":
      return { title: "The download failed", help: "Check the model id and your connection (private or gated models need a token, which this page does not take). The tiny default works offline." };
    case "cancelled":
      return { title: "Download cancelled", help: "Files already downloaded stay in the browser's cache; starting again continues from there." };
    default:
      return { title: "Something went wrong", help: "The message above says what. Reloading the page keeps your checkpoints and adapters." };
  }
}

function showError(kind: ErrorKind, message: string, canResume = false): void {
  demo.errors.push({ kind, message });
  const { title, help } = explain(kind);
  el.alert.classList.toggle("info", kind === "cancelled");
  el.alertTitle.textContent = title;
  el.alertMessage.textContent = message;
  el.alertHelp.textContent = help;
  el.alertResume.hidden = !canResume;
  el.alert.hidden = false;
}

function hideError(): void {
  el.alert.hidden = true;
}

// ---------------------------------------------------------------------------------------------------------
// The worker

function startWorker(): void {
  worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
  worker.onmessage = (ev: MessageEvent<FromWorker>) => onWorker(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    crashed(`The training worker stopped: ${ev.message || "it crashed"}`);
  };
  send({ type: "init" });
}

function send(msg: ToWorker): void {
  worker.postMessage(msg);
}

/** A worker that cannot go on (device lost, crash): replace it, and offer to resume. */
function crashed(message: string): void {
  const wasTraining = demo.phase === "training" || demo.phase === "paused" || demo.phase === "stopping";
  worker.terminate();
  demo.ready = false;
  setPhase("starting");
  startWorker();
  showError("device-lost", message, wasTraining || demo.checkpoints.length > 0);
  markRun("interrupted");
  void refreshCheckpoints();
}

function setPhase(p: Phase): void {
  demo.phase = p;
  const busy = p === "training" || p === "paused" || p === "stopping" || p === "loading" || p === "generating";
  el.start.disabled = !demo.ready || busy;
  el.pause.disabled = !(p === "training" || p === "paused");
  el.pause.textContent = p === "paused" ? "Resume" : "Pause";
  el.stop.disabled = !(p === "training" || p === "paused" || p === "loading");
  el.generate.disabled = !demo.ready || busy || !el.tryAdapter.value;
  el.resumeRun.disabled = !demo.ready || busy;
  el.alertResume.disabled = !demo.ready || busy;
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="model"]')) r.disabled = busy;
}

function onWorker(m: FromWorker): void {
  switch (m.type) {
    case "ready":
      demo.ready = true;
      el.device.classList.add("ok");
      el.deviceText.textContent = `WebGPU: ${m.adapter}${m.f16 ? " · shader-f16" : ""} · max buffer ${bytes(m.maxBinding)}`;
      demo.f16 = m.f16;
      scheduleMemory(0);
      el.status.textContent = "Ready. Pick a model and a dataset, then start training.";
      setPhase("idle");
      break;
    case "status":
      el.status.textContent = m.text;
      break;
    case "download": {
      el.download.hidden = false;
      el.dlText.textContent = m.total ? `${m.file}: ${bytes(m.loaded)} of ${bytes(m.total)}` : `${m.file}: ${bytes(m.loaded)}`;
      el.dlProgress.max = m.total || 1;
      el.dlProgress.value = m.total ? m.loaded : 0;
      if (m.done && /safetensors$/.test(m.file)) el.dlText.textContent = `${m.file}: ${bytes(m.total)} downloaded (cached for next time)`;
      break;
    }
    case "preview":
      el.download.hidden = true;
      if (m.seq === previewSeq) showPreview(m);
      break;
    case "begin":
      el.download.hidden = true;
      maxSteps = m.max_steps;
      stepTimes = [];
      chartPoints = m.history.map(toPoint);
      if (m.step > 0) {
        demo.resumedFrom = m.step;
        el.status.textContent = `Resumed from checkpoint-${m.step}: training…`;
      } else el.status.textContent = "Training…";
      el.notes.textContent = m.trainable;
      setPhase("training");
      showStep(m.step);
      redraw();
      break;
    case "step":
      demo.steps.push(m.step);
      demo.stepMs.push(m.step_ms);
      stepTimes.push(m.step_ms);
      if (stepTimes.length > 20) stepTimes.shift();
      showStep(m.step);
      showMemory(m.live_bytes);
      break;
    case "log":
      onLog(m.logs);
      break;
    case "saved":
      el.status.textContent = `Training… (saved ${m.checkpoint} to IndexedDB)`;
      void refreshCheckpoints();
      break;
    case "paused":
      setPhase("paused");
      el.status.textContent = "Paused. The model stays loaded; press Resume to go on.";
      break;
    case "resumed":
      setPhase("training");
      el.status.textContent = "Training…";
      break;
    case "note":
      el.notes.textContent = `${el.notes.textContent ? `${el.notes.textContent} ` : ""}Note: ${m.text}`;
      break;
    case "samples":
      showSamples(m);
      break;
    case "done":
      markRun(m.stopped ? "stopped" : "done");
      el.status.textContent = m.stopped
        ? `Stopped at step ${m.step}. The adapter so far is saved below; the banner above resumes from the last checkpoint.`
        : `Done: ${m.step} steps${demo.samples ? `; ${demo.samples.exact}/${demo.samples.of} of the dataset's prompts${demo.samples.of < demo.samples.dataset_rows ? " shown" : ""} reproduced exactly (under Try it)` : ""}. The adapter is saved below; try it.`;
      setPhase("idle");
      showTensorBoard(m.tensorboard);
      demo.lastAdapter = m.adapter;
      void refreshAdapters(m.adapter ?? undefined).then(() => {
        if (m.stopped) void offerResume();
      });
      break;
    case "gen-token":
      if (m.which === "base") demo.generations.base = m.text;
      else demo.generations.adapter = m.text;
      showGeneration(m.which === "base" ? el.outBase : el.outAdapter, m.text);
      break;
    case "gen-done":
      demo.generations.done = true;
      setPhase("idle");
      break;
    case "error":
      onError(m);
      break;
  }
}

function onError(m: Extract<FromWorker, { type: "error" }>): void {
  el.download.hidden = true;
  if (m.phase === "preview") {
    if (m.kind === "dataset") showDataError(m.message);
    else {
      el.previewMeta.textContent = `No preview: ${m.message}`;
      if (m.kind === "no-webgpu") showError(m.kind, m.message);
    }
    return;
  }
  if (m.kind === "no-webgpu") {
    noWebGPU(m.message);
    return;
  }
  if (m.kind === "device-lost") {
    crashed(m.message);
    return;
  }
  const training = demo.phase === "training" || demo.phase === "paused" || demo.phase === "stopping" || demo.phase === "loading";
  if (m.kind === "dataset") showDataError(m.message);
  showError(m.kind, m.message, training && demo.checkpoints.length > 0 && m.kind !== "dataset");
  if (training) {
    markRun("interrupted");
    el.status.textContent = m.kind === "cancelled" ? "Cancelled." : "Training stopped by an error (see above).";
  }
  setPhase(demo.ready ? "idle" : "starting");
}

function noWebGPU(message: string): void {
  el.device.classList.add("bad");
  el.deviceText.textContent = "No WebGPU in this browser";
  el.status.textContent = "Training needs WebGPU (see the message above).";
  showError("no-webgpu", message);
  setPhase("no-webgpu");
}

// ---------------------------------------------------------------------------------------------------------
// Dataset preview

let previewTimer = 0;
function schedulePreview(delay = 250): void {
  clearTimeout(previewTimer);
  previewTimer = window.setTimeout(requestPreview, delay);
}

function requestPreview(): void {
  const model = modelSpec();
  const dataset = datasetSpec();
  el.dataError.hidden = true;
  if (!model) {
    el.previewMeta.textContent = modelChoice() === "gguf" ? "Choose the model's .gguf file to see the tokenized rows." : "Choose the model's folder to see the tokenized rows.";
    el.previewRows.replaceChildren();
    return;
  }
  if (!dataset) {
    el.previewMeta.textContent = dataChoice() === "file" ? "Choose a file." : "Paste some rows.";
    el.previewRows.replaceChildren();
    return;
  }
  el.previewMeta.textContent =
    model.kind === "hub" ? `Loading the tokenizer of ${model.id}…` : model.kind === "hub-gguf" ? `Loading the tokenizer from the header of ${model.file}…` : "Tokenizing…";
  send({ type: "preview", model, dataset, settings: readSettings(), seq: ++previewSeq });
}

function showPreview(m: Extract<FromWorker, { type: "preview" }>): void {
  demo.preview = { format: m.format, rows: m.rows };
  el.dataError.hidden = true;
  el.previewMeta.textContent = `Format: ${m.format} · ${m.rows.toLocaleString("en-US")} rows · first ${m.examples.length} shown (${m.tokens.join(", ")} tokens)`;
  const boxes = m.examples.map((ex, i) => {
    const box = document.createElement("div");
    box.className = "example";
    box.setAttribute("aria-label", `Example ${i + 1}`);
    for (const p of ex) {
      const s = document.createElement("span");
      s.className = p.trained ? "tok trained" : "tok";
      s.textContent = p.text.replace(/\n/g, "↵\n");
      box.append(s);
    }
    return box;
  });
  el.previewRows.replaceChildren(...boxes);
  el.tryChat.checked = /conversational/.test(m.format);
}

function showDataError(message: string): void {
  el.dataError.textContent = message;
  el.dataError.hidden = false;
  el.previewMeta.textContent = "No preview: the dataset has an error (below the choices).";
  el.previewRows.replaceChildren();
  demo.errors.push({ kind: "dataset", message });
}

// ---------------------------------------------------------------------------------------------------------
// Training

function toPoint(l: Record<string, number>): Point {
  return { step: l.step!, loss: l.loss!, acc: l.mean_token_accuracy ?? null };
}

function onLog(l: Record<string, number>): void {
  demo.logs.push(l);
  if (!("loss" in l) || !("grad_norm" in l)) return;
  chartPoints.push(toPoint(l));
  el.stLoss.textContent = l.loss!.toFixed(3);
  if (l.mean_token_accuracy !== undefined) el.stAcc.textContent = `${(100 * l.mean_token_accuracy).toFixed(1)}%`;
  if (l.tokens_per_second !== undefined) el.stTps.textContent = Math.round(l.tokens_per_second).toLocaleString("en-US");
  if (l.peak_gpu_bytes) peakBytes = Math.max(peakBytes, l.peak_gpu_bytes);
  redraw();
}

function showStep(step: number): void {
  el.stStep.textContent = `${step} / ${maxSteps}`;
  el.stStep.dataset.step = String(step);
  el.progress.max = Math.max(1, maxSteps);
  el.progress.value = step;
  if (stepTimes.length && step < maxSteps) {
    const avg = stepTimes.reduce((s, x) => s + x, 0) / stepTimes.length;
    const secs = Math.round(((maxSteps - step) * avg) / 1000);
    el.stEta.textContent = secs >= 60 ? `${Math.floor(secs / 60)} min ${secs % 60} s` : `${secs} s`;
  } else if (step >= maxSteps) el.stEta.textContent = "done";
}

/** GPU memory in use now (memoryStats().liveBytes) and the trainer's logged peak_gpu_bytes. */
function showMemory(live: number): void {
  const peak = document.createElement("small");
  peak.textContent = peakBytes ? `peak ${bytes(peakBytes)}` : "in use";
  el.stMem.replaceChildren(document.createTextNode(bytes(live)), peak);
}

function redraw(): void {
  drawChart(el.chart, chartPoints, maxSteps);
}

interface RunRecord {
  /** local: files of this computer (a folder, or a .gguf file when gguf), chosen again to resume. */
  model: StoredModelSpec | { kind: "local"; label: string; gguf?: boolean; load_in_4bit?: boolean };
  modelLabel: string;
  dataset: { kind: "sample" } | { kind: "stored"; name: string };
  datasetLabel: string;
  settings: Settings;
  status: "running" | "interrupted" | "stopped" | "done";
  started: number;
}

function loadRun(): RunRecord | null {
  try {
    return JSON.parse(localStorage.getItem(RUN_KEY) ?? "null") as RunRecord | null;
  } catch {
    return null;
  }
}

function markRun(status: RunRecord["status"]): void {
  const r = loadRun();
  if (r) localStorage.setItem(RUN_KEY, JSON.stringify({ ...r, status }));
}

async function startTraining(resume: boolean, model: ModelSpec, dataset: DatasetSpec, settings: Settings): Promise<void> {
  hideError();
  el.banner.hidden = true;
  el.dataError.hidden = true;
  if (!resume) {
    // Remember what this run uses, so that a reload can resume it.
    let stored: RunRecord["dataset"] = { kind: "sample" };
    try {
      if (dataset.kind !== "sample") {
        const name = dataset.kind === "paste" ? "pasted.jsonl" : dataset.file.name.replace(/[/\\#]/g, "_");
        const data = dataset.kind === "paste" ? dataset.text : new Uint8Array(await dataset.file.arrayBuffer());
        await runsStore.writeCheckpoint("current", { [name]: data });
        stored = { kind: "stored", name };
      }
    } catch (e) {
      showError(/quota/i.test((e as Error).message) ? "quota" : "other", (e as Error).message);
      return;
    }
    const record: RunRecord = {
      model: storedModel(model),
      modelLabel: modelLabel(model),
      dataset: stored,
      datasetLabel: datasetLabel(dataset),
      settings,
      status: "running",
      started: Date.now(),
    };
    localStorage.setItem(RUN_KEY, JSON.stringify(record));
    chartPoints = [];
    demo.logs.length = 0;
  } else markRun("running");
  peakBytes = 0;
  for (const e of [el.stLoss, el.stAcc, el.stTps, el.stEta, el.stMem]) e.textContent = "–";
  el.notes.textContent = "";
  el.samples.hidden = true;
  demo.samples = null;
  showTensorBoard([]);
  maxSteps = settings.max_steps > 0 ? settings.max_steps : 0;
  setPhase("loading");
  el.status.textContent = resume ? "Loading the model to resume…" : "Loading…";
  const run = loadRun()!;
  send({ type: "train", model, dataset, settings, resume, modelLabel: run.modelLabel, datasetLabel: run.datasetLabel });
}

function onStart(): void {
  const model = modelSpec();
  const dataset = datasetSpec();
  if (!model) {
    return showError("other", modelChoice() === "gguf" ? "No .gguf file chosen: choose one under Model, or pick the tiny default." : "No model folder chosen: press “Choose folder…” under Model, or pick the tiny default.");
  }
  if (model.kind === "hub-gguf" && !/^[\w.-]+\/[\w.-]+$/.test(model.id)) return showError("download", `"${model.id}" is not a Hub repository id of the form owner/name.`);
  if (model.kind === "hub-gguf" && !/\.gguf$/i.test(model.file)) return showError("download", `"${model.file}" is not a .gguf file name (e.g. qwen2.5-0.5b-instruct-q4_k_m.gguf).`);
  if (!dataset) return showError("dataset", dataChoice() === "file" ? "No dataset file chosen." : "The pasted dataset is empty.");
  if (model.kind === "hub" && !/^[\w.-]+\/[\w.-]+$/.test(model.id)) return showError("download", `"${model.id}" is not a Hub model id of the form owner/name.`);
  void startTraining(false, model, dataset, readSettings());
}

/** The newest complete checkpoint's step, from the checkpoint database. */
async function refreshCheckpoints(): Promise<number | null> {
  try {
    demo.checkpoints = await checkpointsStore.list();
  } catch {
    demo.checkpoints = [];
  }
  const last = demo.checkpoints[demo.checkpoints.length - 1];
  const m = last ? /(\d+)$/.exec(last) : null;
  return m ? Number(m[1]) : null;
}

/** After a reload, a crash or a stop: offer to resume the remembered run from its newest checkpoint. */
async function offerResume(): Promise<void> {
  const run = loadRun();
  const step = await refreshCheckpoints();
  if (!run || run.status === "done" || step === null || (run.settings.max_steps > 0 && step >= run.settings.max_steps)) {
    el.banner.hidden = true;
    return;
  }
  const local = run.model.kind === "local" ? ` Choose the ${run.model.gguf ? "file" : "folder"} “${run.model.label}” again under Model first.` : "";
  el.bannerText.textContent =
    `${run.status === "stopped" ? "A stopped" : "An interrupted"} run (${run.modelLabel}, ${run.datasetLabel}) has a checkpoint at step ${step}` +
    `${run.settings.max_steps > 0 ? ` of ${run.settings.max_steps}` : ""}. Resume continues from there with the same settings.${local}`;
  el.resumeRun.textContent = `Resume from step ${step}`;
  el.banner.hidden = false;
}

async function resumeRun(): Promise<void> {
  const run = loadRun();
  if (!run) return;
  let model: ModelSpec | null;
  if (run.model.kind === "local") {
    model = modelSpec();
    if (!model || !isLocal(model)) {
      const what = run.model.gguf ? `the file “${run.model.label}”: choose it under Model (Local .gguf file)` : `the folder “${run.model.label}”: choose it under Model (Local folder)`;
      showError("other", `This run used ${what}, then resume.`);
      return;
    }
    if (run.model.load_in_4bit && (model.kind === "files" || model.kind === "dir")) model = { ...model, load_in_4bit: true };
  } else model = run.model;
  let dataset: DatasetSpec = { kind: "sample" };
  if (run.dataset.kind === "stored") {
    try {
      const data = await runsStore.read("current", run.dataset.name);
      dataset = { kind: "file", file: new File([data as BlobPart], run.dataset.name) };
    } catch (e) {
      showError("other", `The dataset of this run is no longer stored in this browser (${(e as Error).message}). Start a new run.`);
      return;
    }
  }
  // Show the run's settings and choices in the form.
  writeSettings(run.settings);
  const choice = run.model.kind === "local" && run.model.gguf ? "gguf" : run.model.kind;
  const radio = document.querySelector<HTMLInputElement>(`input[name="model"][value="${choice}"]`);
  if (radio) radio.checked = true;
  if (run.model.kind === "hub") el.hubId.value = run.model.id;
  if (run.model.kind === "hub-gguf") [el.ggufRepo.value, el.ggufName.value] = [run.model.id, run.model.file];
  if ("load_in_4bit" in run.model) el.load4bit.checked = run.model.load_in_4bit === true;
  syncHubPreset();
  syncChoiceRows();
  void startTraining(true, model, dataset, run.settings);
}

async function discardRun(): Promise<void> {
  el.banner.hidden = true;
  localStorage.removeItem(RUN_KEY);
  for (const id of await checkpointsStore.list()) await checkpointsStore.delete(id);
  demo.checkpoints = [];
}

// ---------------------------------------------------------------------------------------------------------
// Saved adapters

interface AdapterRow {
  id: string;
  meta: AdapterMeta | null;
  size: number;
}

async function listAdapters(): Promise<AdapterRow[]> {
  const out: AdapterRow[] = [];
  for (const id of await adaptersStore.list()) {
    let meta: AdapterMeta | null = null;
    try {
      meta = JSON.parse(await adaptersStore.readText(id, ADAPTER_META)) as AdapterMeta;
    } catch {
      meta = null;
    }
    const size = (await adaptersStore.size(id, "adapter_model.safetensors")) + (await adaptersStore.size(id, "adapter_config.json"));
    out.push({ id, meta, size });
  }
  return out.reverse();
}

async function refreshAdapters(select?: string): Promise<void> {
  let rows: AdapterRow[];
  try {
    rows = await listAdapters();
  } catch (e) {
    el.adapters.innerHTML = "";
    const tr = el.adapters.insertRow();
    const td = tr.insertCell();
    td.colSpan = 5;
    td.textContent = `Cannot read saved adapters: ${(e as Error).message}`;
    return;
  }
  el.adapters.replaceChildren();
  const previous = select ?? el.tryAdapter.value;
  el.tryAdapter.replaceChildren();
  if (!rows.length) {
    const tr = el.adapters.insertRow();
    const td = tr.insertCell();
    td.colSpan = 5;
    td.className = "muted";
    td.textContent = "None yet.";
    el.tryAdapter.append(new Option("No adapter yet: train one first", ""));
  }
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const r of rows) {
    const tr = el.adapters.insertRow();
    tr.dataset.id = r.id;
    const name = tr.insertCell();
    const title = document.createElement("strong");
    title.textContent = r.id;
    const detail = document.createElement("small");
    detail.textContent = r.meta ? `${r.meta.model} · ${r.meta.dataset}${r.meta.loss !== null ? ` · loss ${r.meta.loss.toFixed(3)}` : ""}` : "";
    name.append(title, detail);
    tr.insertCell().textContent = r.meta ? String(r.meta.steps) : "?";
    tr.insertCell().textContent = bytes(r.size);
    tr.insertCell().textContent = r.meta ? fmt.format(r.meta.created) : "";
    const actions = tr.insertCell();
    const box = document.createElement("div");
    box.className = "actions";
    const dl = button("Download", `Download ${r.id} as a zip of PEFT files`, () => void downloadAdapter(r.id));
    dl.className = "small";
    const del = button("Delete", `Delete ${r.id}`, () => void deleteAdapter(r.id));
    del.className = "small ghost danger";
    box.append(dl, del);
    actions.append(box);
    const label = `${r.id} (${r.meta?.model ?? "?"}, ${r.meta?.steps ?? "?"} steps)`;
    el.tryAdapter.append(new Option(label, r.id, false, r.id === previous));
  }
  if (!el.tryAdapter.value && rows.length) el.tryAdapter.value = rows[0]!.id;
  setPhase(demo.phase);
  void showStorageUse();
}

function button(text: string, label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

async function downloadAdapter(id: string): Promise<void> {
  try {
    const files = {
      "adapter_config.json": await adaptersStore.read(id, "adapter_config.json"),
      "adapter_model.safetensors": await adaptersStore.read(id, "adapter_model.safetensors"),
    };
    saveBlob(zip(files), `${id}.zip`);
  } catch (e) {
    showError("other", `Cannot read ${id}: ${(e as Error).message}`);
  }
}

async function deleteAdapter(id: string): Promise<void> {
  await adaptersStore.delete(id);
  await refreshAdapters();
}

function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function showStorageUse(): Promise<void> {
  const est = await navigator.storage?.estimate?.().catch(() => null);
  if (est?.quota) el.storageUse.textContent = `This site uses ${bytes(est.usage ?? 0)} of the ${bytes(est.quota)} the browser allows it.`;
}

// ---------------------------------------------------------------------------------------------------------
// Try it

function showGeneration(out: HTMLElement, text: string): void {
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = el.tryPrompt.value;
  out.replaceChildren(prompt, document.createTextNode(text));
}

async function onGenerate(): Promise<void> {
  const id = el.tryAdapter.value;
  if (!id) return;
  hideError();
  let meta: AdapterMeta | null = null;
  try {
    meta = JSON.parse(await adaptersStore.readText(id, ADAPTER_META)) as AdapterMeta;
  } catch {
    meta = null;
  }
  let model: ModelSpec | null = meta?.modelSpec ?? null;
  if (!model) {
    model = modelSpec();
    if (!model || !isLocal(model)) {
      showError("other", `${id} was trained on ${meta?.model ?? "a local model"}: choose that folder or .gguf file under Model (Local folder / Local .gguf file), then generate.`);
      return;
    }
  }
  demo.generations = { base: "", adapter: "", done: false };
  showGeneration(el.outBase, "");
  showGeneration(el.outAdapter, "");
  setPhase("generating");
  send({ type: "generate", prompt: el.tryPrompt.value, adapter: id, model, chat: el.tryChat.checked, max_new_tokens: Math.max(1, Number(el.tryMax.value) || 24) });
}

/** The run's event files: one downloads as itself (TensorBoard reads any folder holding it), several as a zip. */
function showTensorBoard(logs: TensorBoardLog[]): void {
  tensorboardLogs = logs;
  demo.tensorboard = logs.map((l) => ({ dir: l.dir, name: l.name, size: l.bytes.length }));
  el.tbRow.hidden = logs.length === 0;
  if (!logs.length) return;
  const size = bytes(logs.reduce((n, l) => n + l.bytes.length, 0));
  el.tbDownload.textContent = logs.length === 1 ? `Download TensorBoard logs (${size})` : `Download TensorBoard logs (${logs.length} files, ${size})`;
  el.tbHint.textContent = "Put the file in a folder, then: tensorboard --logdir that-folder";
}

function downloadTensorBoard(): void {
  if (tensorboardLogs.length === 1) {
    const [log] = tensorboardLogs;
    return saveBlob(new Blob([log!.bytes as BlobPart], { type: "application/octet-stream" }), log!.name);
  }
  saveBlob(zip(Object.fromEntries(tensorboardLogs.map((l) => [`${l.dir.split("/").pop()}/${l.name}`, l.bytes]))), "tensorboard-logs.zip");
}

/** The rows of the sample the panel shows first: every 9th (as train.ts shows them), or all of a few. */
function shownSamples(n: number, whole: boolean): number[] {
  return Array.from({ length: n }, (_, i) => i).filter((i) => !whole || i % 9 === 0);
}

function sampleRow(tbody: HTMLTableSectionElement, g: SampleGeneration): void {
  const tr = tbody.insertRow();
  const prompt = tr.insertCell();
  prompt.className = "prompt";
  const use = button(g.prompt, `Use “${g.prompt}” as the prompt below`, () => {
    el.tryPrompt.value = g.prompt;
    el.tryPrompt.focus();
  });
  use.className = "link";
  prompt.append(use);
  tr.insertCell().textContent = g.generated;
  const mark = tr.insertCell();
  mark.className = `mark ${g.exact ? "ok" : "bad"}`;
  mark.textContent = g.exact ? "✓" : `✗ expected ${JSON.stringify(g.expected)}`;
  mark.setAttribute("aria-label", g.exact ? "reproduced exactly" : `not exact; expected ${g.expected}`);
}

/** The panel above Try it: a few prompts of the dataset beside their generations, and the exact count. */
function showSamples(m: Extract<FromWorker, { type: "samples" }>): void {
  const whole = m.of === m.dataset_rows;
  const shown = shownSamples(m.of, whole && m.of > 9);
  demo.samples = { rows: m.rows, shown, exact: m.exact, of: m.of, dataset_rows: m.dataset_rows };
  el.samplesSummary.textContent = whole
    ? `${m.exact}/${m.of} reproduced exactly`
    : `${m.exact}/${m.of} of the shown prompts reproduced exactly (${m.of} of the dataset's ${m.dataset_rows.toLocaleString("en-US")} rows)`;
  el.samplesRows.replaceChildren();
  for (const i of shown) sampleRow(el.samplesRows, m.rows[i]!);
  el.samplesAll.replaceChildren();
  el.samplesMore.hidden = shown.length === m.rows.length;
  if (!el.samplesMore.hidden) {
    el.samplesMoreLabel.textContent = `All ${m.of}`;
    for (const g of m.rows) sampleRow(el.samplesAll, g);
  }
  el.samples.hidden = false;
}

// ---------------------------------------------------------------------------------------------------------
// SFTConfig YAML

/** The folder name the tiny model's files download under (the YAML's model_name_or_path for it). */
const TINY_FOLDER = "webtune-tiny-model";

/** The data file the YAML names for the page's dataset: the sample and pasted rows download under these names. */
function dataFileName(data: DatasetSpec | null): string | null {
  if (!data) return null;
  return data.kind === "sample" ? "facts.jsonl" : data.kind === "paste" ? "pasted.jsonl" : data.file.name;
}

/**
 * The page's choices as a flat `trl sft` mapping: the model (a Hub id; a local folder or file by its name, the
 * tiny model as TINY_FOLDER), the 4-bit base's keys, the dataset as its file's name, then the settings' keys.
 */
function configObject(): Record<string, unknown> {
  const model = modelSpec();
  const cfg: Record<string, unknown> = {};
  if (model?.kind === "hub") cfg.model_name_or_path = model.id;
  else if (model?.kind === "hub-gguf") cfg.model_name_or_path = ggufLocation(model);
  else if (model?.kind === "tiny") cfg.model_name_or_path = TINY_FOLDER;
  else if (model) cfg.model_name_or_path = model.label;
  if (model && "load_in_4bit" in model && model.load_in_4bit) {
    // TRL's model keys of the 4-bit base (get_quantization_config turns them into the BitsAndBytesConfig).
    Object.assign(cfg, { load_in_4bit: true, bnb_4bit_quant_type: NF4_CONFIG.bnb_4bit_quant_type, use_bnb_nested_quant: NF4_CONFIG.bnb_4bit_use_double_quant });
  }
  const file = dataFileName(datasetSpec());
  if (file) cfg.dataset_name = file;
  return { ...cfg, ...trlConfig(readSettings(), "webtune-output") };
}

/** The YAML `trl sft --config sft.yaml` runs unchanged (exportTRLConfig), read back by webtune's parser as a check. */
function exportYaml(): void {
  const model = modelSpec();
  const data = datasetSpec();
  const file = dataFileName(data);
  const notes: string[] = [];
  // What the config names by a relative path: the files to put beside sft.yaml.
  const beside: string[] = [];
  if (model?.kind === "tiny") beside.push(`the folder ${TINY_FOLDER} (the tiny model: download it below)`);
  else if (model && isLocal(model)) beside.push(`${model.kind === "gguf" ? "the file" : "the folder"} ${model.label}`);
  if (file) beside.push(data?.kind === "file" ? file : `${file} (download it below)`);
  const head = [
    "SFTConfig from the webtune demo: Python TRL runs it unchanged (transformers 5).",
    "  trl sft --config sft.yaml",
    "  webtune sft --config sft.yaml     (or from the repository: deno run -A train.ts --config sft.yaml)",
    ...(beside.length ? [`Run it in a folder holding ${beside.join(" and ")}.`] : []),
  ];
  el.sampleDownload.hidden = data?.kind !== "sample" && data?.kind !== "paste";
  el.sampleDownload.textContent = data?.kind === "paste" ? "Download the pasted rows as pasted.jsonl" : "Download the sample as facts.jsonl";
  el.tinyDownload.hidden = model?.kind !== "tiny";
  el.yamlBox.hidden = false;
  let yaml: string;
  try {
    yaml = exportTRLConfig(configObject(), { header: head, warn: (n) => notes.push(n) });
  } catch (e) {
    el.yaml.textContent = "";
    el.yamlCheck.textContent = `✗ ${(e as Error).message}`;
    return;
  }
  el.yaml.textContent = yaml;
  try {
    const checked = splitConfig(parseYaml(yaml) as Record<string, unknown>, "sft.yaml", { warn: () => {} });
    const all = [...notes, ...checked.notes];
    el.yamlCheck.textContent = `✓ valid (read back by webtune's config parser${all.length ? `; ${all.length} note(s): ${all.join("; ")}` : ""})`;
  } catch (e) {
    el.yamlCheck.textContent = `✗ ${(e as Error).message}`;
  }
}

/** The files exportYaml's config names, for `trl sft` on another machine: the sample or pasted rows, the tiny model. */
function downloadData(): void {
  const data = datasetSpec();
  if (data?.kind === "paste") return saveBlob(new Blob([data.text.endsWith("\n") ? data.text : `${data.text}\n`], { type: "application/jsonl" }), "pasted.jsonl");
  saveBlob(new Blob([FACTS.map((r) => JSON.stringify(r)).join("\n") + "\n"], { type: "application/jsonl" }), "facts.jsonl");
}

function downloadTiny(): void {
  saveBlob(zip(Object.fromEntries(Object.entries(tinyModelFiles()).map(([name, b]) => [`${TINY_FOLDER}/${name}`, b]))), `${TINY_FOLDER}.zip`);
}

// ---------------------------------------------------------------------------------------------------------
// Wiring

function onModelChanged(): void {
  syncChoiceRows();
  // A line about the previous choice must not stay: local choices update now, Hub ones once the typing settles.
  if (modelChoice() === "hub" || modelChoice() === "hub-gguf") {
    ++memorySeq;
    el.modelMemory.textContent = "";
    demo.memory = null;
    scheduleMemory(700);
  } else {
    clearTimeout(memoryTimer);
    void updateMemory();
  }
  schedulePreview(modelChoice() === "hub" || modelChoice() === "hub-gguf" ? 700 : 100);
}

function wire(): void {
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="model"]')) {
    r.addEventListener("change", () => {
      writeSettings(modelChoice() === "tiny" ? TINY_DEFAULTS : MODEL_DEFAULTS);
      onModelChanged();
    });
  }
  for (const r of document.querySelectorAll<HTMLInputElement>('input[name="data"]')) r.addEventListener("change", () => (syncChoiceRows(), schedulePreview(50)));
  el.hubId.addEventListener("input", () => (syncHubPreset(), scheduleMemory(900), schedulePreview(900)));
  for (const e of [el.ggufRepo, el.ggufName]) e.addEventListener("input", () => (scheduleMemory(900), schedulePreview(900)));
  el.ggufInput.addEventListener("change", onModelChanged);
  el.load4bit.addEventListener("change", () => {
    scheduleMemory(0);
    if (!el.yamlBox.hidden) exportYaml();
  });
  el.hubPreset.addEventListener("change", () => {
    if (!el.hubPreset.value) return el.hubId.focus();
    el.hubId.value = el.hubPreset.value;
    syncHubPreset();
    scheduleMemory(0);
    schedulePreview(100);
  });
  el.pickFolder.addEventListener("click", () => void pickFolder());
  el.folderInput.addEventListener("change", () => {
    const files = Array.from(el.folderInput.files ?? []);
    if (!files.length) return;
    localFiles = files;
    localHandle = null;
    localLabel = files[0]!.webkitRelativePath.split("/")[0] || `${files.length} files`;
    el.folderLabel.textContent = `“${localLabel}” (${files.length} files)`;
    onModelChanged();
  });
  el.dlCancel.addEventListener("click", () => send({ type: "cancel-download" }));
  el.dataFile.addEventListener("change", () => schedulePreview(0));
  el.dataPaste.addEventListener("input", () => schedulePreview(500));
  el.settings.addEventListener("change", (ev) => {
    const id = (ev.target as HTMLElement).id;
    if (/max_length|completion_only_loss|assistant_only_loss/.test(id)) schedulePreview(200);
    if (/bf16/.test(id)) scheduleMemory(0);
    if (!el.yamlBox.hidden) exportYaml();
  });
  el.settings.addEventListener("submit", (ev) => ev.preventDefault());
  el.resetSettings.addEventListener("click", () => {
    writeSettings(modelChoice() === "tiny" ? TINY_DEFAULTS : MODEL_DEFAULTS);
    scheduleMemory(0);
    if (!el.yamlBox.hidden) exportYaml();
  });
  el.exportYaml.addEventListener("click", exportYaml);
  el.tbDownload.addEventListener("click", downloadTensorBoard);
  el.yamlCopy.addEventListener("click", () => void navigator.clipboard?.writeText(el.yaml.textContent ?? "").then(() => (el.yamlCheck.textContent = "Copied."), () => {}));
  el.yamlDownload.addEventListener("click", () => saveBlob(new Blob([el.yaml.textContent ?? ""], { type: "text/yaml" }), "sft.yaml"));
  el.sampleDownload.addEventListener("click", downloadData);
  el.tinyDownload.addEventListener("click", downloadTiny);
  el.start.addEventListener("click", onStart);
  el.pause.addEventListener("click", () => {
    if (demo.phase === "paused") send({ type: "resume" });
    else {
      send({ type: "pause" });
      el.status.textContent = "Pausing after this step…";
    }
  });
  el.stop.addEventListener("click", () => {
    send({ type: "stop" });
    el.status.textContent = "Stopping after this step…";
    setPhase("stopping");
  });
  el.resumeRun.addEventListener("click", () => void resumeRun());
  el.alertResume.addEventListener("click", () => void resumeRun());
  el.discardRun.addEventListener("click", () => void discardRun());
  el.alertClose.addEventListener("click", hideError);
  el.generate.addEventListener("click", () => void onGenerate());
  el.tryAdapter.addEventListener("change", () => setPhase(demo.phase));
  new ResizeObserver(() => redraw()).observe(el.chart);
}

function main(): void {
  writeSettings(TINY_DEFAULTS);
  fillPresets();
  syncChoiceRows();
  wire();
  redraw();
  setPhase("starting");
  if (!("gpu" in navigator) || !navigator.gpu) {
    noWebGPU("navigator.gpu is undefined: this browser does not expose WebGPU to this page.");
  }
  startWorker();
  schedulePreview(0);
  scheduleMemory(0);
  void refreshAdapters();
  void offerResume();
}

main();
