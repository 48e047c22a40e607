// Messages between the page (main.ts) and the training worker (worker.ts).
import type { Settings } from "./settings.ts";

/**
 * Which model to load: the embedded tiny default, a Hub id, local files (a folder), a GGUF file of a Hub repo, or
 * a local .gguf File (Files and directory handles survive postMessage). `load_in_4bit`: a safetensors model's
 * decoder linears quantized to nf4 as they load (QLoRA: quantization_config NF4_CONFIG).
 */
export type ModelSpec =
  | { kind: "tiny" }
  | { kind: "hub"; id: string; load_in_4bit?: boolean }
  | { kind: "files"; files: File[]; label: string; load_in_4bit?: boolean }
  | { kind: "dir"; handle: FileSystemDirectoryHandle; label: string; load_in_4bit?: boolean }
  | { kind: "hub-gguf"; id: string; file: string }
  | { kind: "gguf"; file: File; label: string };

/** The model specs a saved adapter can name to load its base again (no local files). */
export type StoredModelSpec = { kind: "tiny" } | { kind: "hub"; id: string; load_in_4bit?: boolean } | { kind: "hub-gguf"; id: string; file: string };

/** The quantization_config of the page's "4-bit base" (transformers + bitsandbytes' QLoRA setting). */
export const NF4_CONFIG = { load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true } as const;

/** The from_pretrained location of a GGUF spec: the File, or "owner/name/file.gguf" on the Hub. */
export function ggufLocation(spec: Extract<ModelSpec, { kind: "hub-gguf" | "gguf" }>): File | string {
  return spec.kind === "gguf" ? spec.file : `${spec.id}/${spec.file}`;
}

/** Which dataset: the bundled sample (FACTS), pasted JSONL, or an uploaded file. */
export type DatasetSpec = { kind: "sample" } | { kind: "paste"; text: string } | { kind: "file"; file: File };

/** Kinds of failure the page explains differently. */
export type ErrorKind = "no-webgpu" | "limits" | "device-lost" | "dataset" | "quota" | "download" | "cancelled" | "other";

export type ToWorker =
  | { type: "init" }
  | { type: "preview"; model: ModelSpec; dataset: DatasetSpec; settings: Settings; seq: number }
  | { type: "train"; model: ModelSpec; dataset: DatasetSpec; settings: Settings; resume: boolean; modelLabel: string; datasetLabel: string }
  | { type: "pause" }
  | { type: "resume" }
  | { type: "stop" }
  | { type: "cancel-download" }
  | { type: "generate"; prompt: string; adapter: string; model: ModelSpec; chat: boolean; max_new_tokens: number };

export interface TokenPiece {
  text: string;
  trained: boolean;
}

/** One prompt of the dataset after training: the greedy generation beside the expected completion. */
export interface SampleGeneration {
  prompt: string;
  expected: string;
  generated: string;
  /** The generation (its first line, for a one-line completion) is the completion, spaces trimmed. */
  exact: boolean;
}

/** A TensorBoard event file of the run (report_to "tensorboard"): its logging_dir, name and bytes. */
export interface TensorBoardLog {
  dir: string;
  name: string;
  bytes: Uint8Array;
}

export type FromWorker =
  | { type: "ready"; adapter: string; f16: boolean; maxBinding: number }
  | { type: "status"; text: string }
  | { type: "download"; file: string; loaded: number; total: number; done: boolean }
  | { type: "preview"; seq: number; format: string; rows: number; examples: TokenPiece[][]; tokens: number[] }
  | { type: "begin"; step: number; max_steps: number; history: Record<string, number>[]; trainable: string }
  | { type: "step"; step: number; max_steps: number; epoch: number; live_bytes: number; step_ms: number }
  | { type: "log"; logs: Record<string, number> }
  | { type: "saved"; checkpoint: string }
  | { type: "paused" }
  | { type: "resumed" }
  | { type: "note"; text: string }
  | { type: "samples"; rows: SampleGeneration[]; exact: number; of: number; dataset_rows: number }
  | { type: "done"; adapter: string | null; step: number; stopped: boolean; tensorboard: TensorBoardLog[] }
  | { type: "gen-token"; which: "base" | "adapter"; text: string }
  | { type: "gen-done" }
  | { type: "error"; kind: ErrorKind; message: string; phase: string };

/** IndexedDB databases of the demo. */
export const CHECKPOINTS_DB = "webtune-demo";
export const ADAPTERS_DB = "webtune-demo-adapters";
export const RUNS_DB = "webtune-demo-runs";

/** The metadata file the demo writes next to a saved adapter. */
export const ADAPTER_META = "webtune_demo.json";

export interface AdapterMeta {
  created: number;
  model: string;
  /** The model as a spec the page can load again (tiny / hub / hub-gguf); null for local files. */
  modelSpec: StoredModelSpec | null;
  dataset: string;
  format: string;
  steps: number;
  loss: number | null;
}

/** "1.2 MB" */
export function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** Sorts a failure into a kind, from its message. */
export function classify(message: string, phase: string): ErrorKind {
  if (/No WebGPU adapter|navigator\.gpu is undefined/i.test(message)) return "no-webgpu";
  if (/device (was )?lost|device was destroyed/i.test(message)) return "device-lost";
  if (/quota|QuotaExceeded/i.test(message)) return "quota";
  if (/abort/i.test(message) && phase === "load") return "cancelled";
  if (/maxStorageBufferBindingSize|maxBufferSize|adapter's limits|higher limits/i.test(message)) return "limits";
  if (phase === "data") return "dataset";
  if (/^fetching |HTTP \d{3}/.test(message)) return "download";
  return "other";
}
