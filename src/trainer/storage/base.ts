// What the checkpoint storages share (trainer/storage.ts picks one): the CheckpointStorage interface, the
// manifest that marks a complete checkpoint, the checks on ids and file names, and the reads through a
// manifest, also as a ModelSource. The backends are storage/fs.ts (Deno/Node) and storage/indexeddb.ts (browser).
import { checkRange } from "../../io/fs.ts";
import { BaseSource, type ModelSource } from "../../io/source.ts";
import { decodeUtf8 } from "../../io/utf8.ts";

/** The file that marks a complete checkpoint; a reserved file name. */
export const MANIFEST = "webtune_checkpoint.json";

/** The manifest of a complete checkpoint. */
export interface CheckpointManifest {
  format: "webtune-checkpoint";
  version: 1;
  id: string;
  /** Date.now() when the checkpoint was written. */
  created: number;
  /** File name → size in bytes (the manifest itself not included). */
  files: Record<string, number>;
  /** IndexedDB only: the generation (one write of `id`) whose chunks hold the files, and the chunk size. */
  gen?: string;
  chunk_size?: number;
}

/** Checkpoints of one training run: a directory (Deno/Node) or an IndexedDB database (browser). */
export interface CheckpointStorage {
  /** Where the checkpoints are, for messages: a directory path or "indexeddb:<database>". */
  readonly name: string;
  /**
   * Writes one checkpoint atomically: its files appear only when all are written, replacing any checkpoint of
   * the same id in one step (the old one stays whole until then).
   */
  writeCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<void>;
  /** The ids of the complete checkpoints, oldest first: by the step number ending the id ("checkpoint-500"), else by creation time. */
  list(): Promise<string[]>;
  /** The names of the files of checkpoint `id` (sorted); an error when there is no complete checkpoint `id`. */
  files(id: string): Promise<string[]>;
  /** Whether checkpoint `id` is complete and has `file`. */
  has(id: string, file: string): Promise<boolean>;
  /** The size of `file` of checkpoint `id` in bytes. */
  size(id: string, file: string): Promise<number>;
  /** Bytes [start, end) of `file` of checkpoint `id` (default: all); an error naming the file when it is missing. */
  read(id: string, file: string, start?: number, end?: number): Promise<Uint8Array>;
  /** `file` of checkpoint `id` as UTF-8 text. */
  readText(id: string, file: string): Promise<string>;
  /** Deletes checkpoint `id` (its manifest first, so a half-deleted checkpoint is never listed); no error when absent. */
  delete(id: string): Promise<void>;
  /** The files of checkpoint `id` as a ModelSource, for from_pretrained / PeftModel.from_pretrained. */
  source(id: string): ModelSource;
  /**
   * What looks like a checkpoint but is not complete (a missing or corrupt manifest, a file of the wrong
   * size), each with what is wrong; list() leaves them out. Optional for other storages.
   */
  damaged?(): Promise<{ id: string; problem: string }[]>;
}

// ---------------------------------------------------------------------------------------------------------
// Shared helpers

export const encoder = new TextEncoder();

/** 12 random hex digits: a temporary directory's or an IndexedDB generation's name. */
export function token(): string {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function checkId(id: string): void {
  if (typeof id !== "string" || id === "" || id.startsWith(".") || /[/\\#\0]/.test(id)) {
    throw new Error(`"${id}" is not a valid checkpoint id: one name, not starting with ".", without "/", "\\" or "#"`);
  }
}

function checkFileName(file: string): void {
  const parts = file.split("/");
  if (file === "" || file.includes("\\") || file.includes("\0") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new Error(`"${file}" is not a valid checkpoint file name: a relative path like "adapter_config.json" or "a/b.bin"`);
  }
  if (file === MANIFEST) throw new Error(`"${MANIFEST}" is reserved for the checkpoint's manifest`);
}

/** The files as bytes, names checked. */
export function toEntries(files: Record<string, Uint8Array | string>): [string, Uint8Array][] {
  return Object.entries(files).map(([name, v]) => {
    checkFileName(name);
    if (typeof v === "string") return [name, encoder.encode(v)];
    if (v instanceof Uint8Array) return [name, v];
    throw new Error(`checkpoint file ${name}: expected a Uint8Array or a string`);
  });
}

export function isManifest(x: unknown): x is CheckpointManifest {
  const m = x as Partial<CheckpointManifest> | null;
  return (
    typeof m === "object" && m !== null && m.format === "webtune-checkpoint" && typeof m.files === "object" && m.files !== null &&
    Object.values(m.files).every((n) => Number.isSafeInteger(n) && n >= 0)
  );
}

/** Oldest first: by the number ending the id, then by creation time, then by id. */
export function sortIds(found: { id: string; created: number }[]): string[] {
  const step = (id: string) => {
    const m = /(\d+)$/.exec(id);
    return m ? Number(m[1]) : Infinity;
  };
  return found
    .sort((a, b) => step(a.id) - step(b.id) || a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((x) => x.id);
}

/** One checkpoint's files as a ModelSource. */
class CheckpointSource extends BaseSource {
  readonly name: string;

  constructor(
    private readonly storage: CheckpointStorage,
    private readonly id: string,
  ) {
    super();
    this.name = `${storage.name}/${id}`;
  }

  exists(file: string): Promise<boolean> {
    return this.storage.has(this.id, file);
  }

  size(file: string): Promise<number> {
    return this.storage.size(this.id, file);
  }

  read(file: string, start?: number, end?: number): Promise<Uint8Array> {
    return this.storage.read(this.id, file, start, end);
  }
}

/** What both backends share: the manifest-based reads. */
export abstract class BaseStorage implements CheckpointStorage {
  abstract readonly name: string;
  abstract writeCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<void>;
  abstract list(): Promise<string[]>;
  abstract delete(id: string): Promise<void>;
  /** The manifest of checkpoint `id`, or null when there is no complete checkpoint `id`. */
  protected abstract manifest(id: string): Promise<CheckpointManifest | null>;
  /** Bytes [start, end) of a file the manifest lists with `size` bytes (range already checked). */
  protected abstract readFile(id: string, manifest: CheckpointManifest, file: string, start: number, end: number): Promise<Uint8Array>;

  protected async requireManifest(id: string): Promise<CheckpointManifest> {
    checkId(id);
    const m = await this.manifest(id);
    if (!m) throw new Error(`there is no complete checkpoint "${id}" in ${this.name}`);
    return m;
  }

  async files(id: string): Promise<string[]> {
    return Object.keys((await this.requireManifest(id)).files).sort();
  }

  async has(id: string, file: string): Promise<boolean> {
    checkId(id);
    const m = await this.manifest(id);
    return m !== null && Object.hasOwn(m.files, file);
  }

  async size(id: string, file: string): Promise<number> {
    const m = await this.requireManifest(id);
    if (!Object.hasOwn(m.files, file)) throw new Error(`${file} not found in checkpoint "${id}" of ${this.name}`);
    return m.files[file]!;
  }

  async read(id: string, file: string, start = 0, end?: number): Promise<Uint8Array> {
    const m = await this.requireManifest(id);
    if (!Object.hasOwn(m.files, file)) throw new Error(`${file} not found in checkpoint "${id}" of ${this.name}`);
    const size = m.files[file]!;
    const stop = end ?? size;
    checkRange(`${file} in ${this.name}/${id}`, start, stop, size);
    return this.readFile(id, m, file, start, stop);
  }

  async readText(id: string, file: string): Promise<string> {
    return decodeUtf8(await this.read(id, file), `${file} in ${this.name}/${id}`);
  }

  source(id: string): ModelSource {
    checkId(id);
    return new CheckpointSource(this, id);
  }
}

