// Where the trainer keeps its checkpoints: a directory on the filesystem (Deno/Node) or an IndexedDB database
// (browser). Both write a checkpoint atomically — its files become visible only once all of them are written,
// so a crash mid-write never leaves something that looks complete — and both mark a complete checkpoint with
// a manifest written last, listing its files and their sizes.
//
//   filesystem   <dir>/<id>/<file>…  +  <dir>/<id>/webtune_checkpoint.json
//                written into <dir>/.<id>.tmp-<random>/ (each file fsync'd), then renamed to <dir>/<id> in
//                one rename; an existing <dir>/<id> is first renamed aside to <dir>/.<id>.old-<random>.
//   IndexedDB    database <name>, object store "files":
//                "<id>/<gen>/<file>#<n>"       chunk n (8 MiB) of a file of one write ("generation") of <id>
//                "<id>/webtune_checkpoint.json" the manifest (an object, naming <gen>), put last, in its own
//                                               transaction; chunks no manifest names are garbage
//
// A checkpoint id is one path segment ("checkpoint-500"); file names are relative paths ("adapter_model.safetensors",
// "a/b.json"). One writer per directory or database at a time.
import { createStore, del, get, getMany, promisifyRequest, setMany, type UseStore } from "idb-keyval";
import { BaseSource, type ModelSource } from "../models/files.ts";

/** The file that marks a complete checkpoint; a reserved file name. */
export const MANIFEST = "webtune_checkpoint.json";
/** Bytes per IndexedDB value: larger files are split into chunks of this size. */
export const CHUNK_SIZE = 8 * 1024 * 1024;

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
}

/** What openStorage accepts. */
export type StorageLocation = string | { indexeddb: string } | CheckpointStorage;

/**
 * The storage for a location: a CheckpointStorage as is; `{ indexeddb: name }` or "indexeddb:name" an IndexedDB
 * database; another string a directory (Deno/Node), or in a browser (no filesystem) an IndexedDB database of
 * that name.
 */
export function openStorage(location: StorageLocation): CheckpointStorage {
  if (typeof location === "string") {
    const m = /^indexeddb:(.*)$/i.exec(location);
    if (m) return new IndexedDBStorage(m[1]!);
    if (location === "") throw new Error("openStorage: the location is empty; give a directory or \"indexeddb:<name>\"");
    if (hasFilesystem()) return new FileSystemStorage(location);
    if (typeof indexedDB !== "undefined") return new IndexedDBStorage(location);
    throw new Error(`openStorage("${location}"): there is neither a filesystem nor IndexedDB here`);
  }
  if (typeof location === "object" && location !== null) {
    if ("indexeddb" in location && typeof location.indexeddb === "string") return new IndexedDBStorage(location.indexeddb);
    if (typeof (location as CheckpointStorage).writeCheckpoint === "function" && typeof (location as CheckpointStorage).list === "function") {
      return location as CheckpointStorage;
    }
  }
  throw new Error(`openStorage: expected a directory path, "indexeddb:<name>", { indexeddb: name } or a CheckpointStorage; got ${String(location)}`);
}

/**
 * Deletes the oldest checkpoints (in list() order) until at most `save_total_limit` are left, never deleting
 * `keep`; nothing when the limit is null, undefined or ≤ 0 (as in TRL). Returns the ids deleted.
 */
export async function rotateCheckpoints(storage: CheckpointStorage, save_total_limit: number | null | undefined, keep?: string): Promise<string[]> {
  if (save_total_limit == null || !(save_total_limit > 0)) return [];
  const ids = await storage.list();
  let excess = ids.length - save_total_limit;
  const deleted: string[] = [];
  for (const id of ids) {
    if (excess <= 0) break;
    if (id === keep) continue;
    await storage.delete(id);
    deleted.push(id);
    excess--;
  }
  return deleted;
}

// ---------------------------------------------------------------------------------------------------------
// Shared helpers

const encoder = new TextEncoder();

function hasFilesystem(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  return typeof g.Deno !== "undefined" || typeof g.process?.versions?.node === "string";
}

function token(): string {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function checkId(id: string): void {
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
function toEntries(files: Record<string, Uint8Array | string>): [string, Uint8Array][] {
  return Object.entries(files).map(([name, v]) => {
    checkFileName(name);
    if (typeof v === "string") return [name, encoder.encode(v)];
    if (v instanceof Uint8Array) return [name, v];
    throw new Error(`checkpoint file ${name}: expected a Uint8Array or a string`);
  });
}

function isManifest(x: unknown): x is CheckpointManifest {
  const m = x as Partial<CheckpointManifest> | null;
  return (
    typeof m === "object" && m !== null && m.format === "webtune-checkpoint" && typeof m.files === "object" && m.files !== null &&
    Object.values(m.files).every((n) => Number.isSafeInteger(n) && n >= 0)
  );
}

/** Oldest first: by the number ending the id, then by creation time, then by id. */
function sortIds(found: { id: string; created: number }[]): string[] {
  const step = (id: string) => {
    const m = /(\d+)$/.exec(id);
    return m ? Number(m[1]) : Infinity;
  };
  return found
    .sort((a, b) => step(a.id) - step(b.id) || a.created - b.created || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((x) => x.id);
}

function checkRange(file: string, where: string, start: number, end: number, size: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > size) {
    throw new Error(`${file} in ${where}: bytes [${start}, ${end}) asked for, but the file has ${size} bytes`);
  }
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
abstract class BaseStorage implements CheckpointStorage {
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
    checkRange(file, `${this.name}/${id}`, start, stop, size);
    return this.readFile(id, m, file, start, stop);
  }

  async readText(id: string, file: string): Promise<string> {
    return new TextDecoder().decode(await this.read(id, file));
  }

  source(id: string): ModelSource {
    checkId(id);
    return new CheckpointSource(this, id);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Filesystem (Deno/Node)

type Fs = typeof import("node:fs/promises");
let fsModule: Promise<Fs> | null = null;
/** node:fs/promises (Node and Deno); loaded through a variable so browser bundles do not include it. */
function fs(): Promise<Fs> {
  const spec = "node:fs/promises";
  return (fsModule ??= import(/* @vite-ignore */ spec) as Promise<Fs>);
}

/** Temporary directories being written by this process (never garbage-collected from under a writer). */
const writingDirs = new Set<string>();

function isNotFound(e: unknown): boolean {
  return (e as { code?: string })?.code === "ENOENT" || (e as Error)?.name === "NotFound";
}

/** Writes and fsyncs a file. */
async function writeSynced(f: Fs, path: string, bytes: Uint8Array): Promise<void> {
  const h = await f.open(path, "w");
  try {
    await h.writeFile(bytes);
    await h.sync();
  } finally {
    await h.close();
  }
}

/** fsyncs a directory (makes renames and new entries durable) where the platform allows it. */
async function syncDir(f: Fs, path: string): Promise<void> {
  try {
    const h = await f.open(path, "r");
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    // Windows and some runtimes cannot open or fsync a directory; the rename is still atomic.
  }
}

/**
 * Checkpoints in a directory: `<dir>/<id>/` holds the files and, written last, webtune_checkpoint.json. A
 * checkpoint is written into `<dir>/.<id>.tmp-<random>/` and renamed into place; list() ignores dot-directories
 * and directories whose manifest is missing or whose files' sizes disagree with it.
 */
export class FileSystemStorage extends BaseStorage {
  private recovered: Promise<void> | null = null;

  constructor(readonly dir: string) {
    super();
    if (!dir) throw new Error("FileSystemStorage: the directory is empty");
  }

  get name(): string {
    return this.dir;
  }

  private path(...parts: string[]): string {
    return [this.dir.replace(/\/+$/, "") || "/", ...parts].join("/").replace(/^\/\//, "/");
  }

  /**
   * Cleans up after a crash: a `.<id>.old-*` directory whose `<id>` is gone (a crash between the two renames of
   * a replacement) is renamed back; other `.<id>.old-*` and `.<id>.tmp-*` directories are removed, except
   * those this process is writing. Runs on first use and before every write and delete.
   */
  private async collect(): Promise<void> {
    const f = await fs();
    let names: string[];
    try {
      names = await f.readdir(this.dir);
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    const present = new Set(names);
    for (const n of names) {
      const m = /^\.(.+)\.(tmp|old)-[0-9a-f]+$/.exec(n);
      if (!m) continue;
      const full = this.path(n);
      if (writingDirs.has(full)) continue;
      if (m[2] === "old" && !present.has(m[1]!) && (await this.manifestAt(full)) !== null) {
        await f.rename(full, this.path(m[1]!));
        present.add(m[1]!);
        continue;
      }
      await f.rm(full, { recursive: true, force: true });
    }
  }

  private ready(): Promise<void> {
    return (this.recovered ??= this.collect());
  }

  /** The manifest of the checkpoint directory `path` when it is complete (every file there with its size). */
  private async manifestAt(path: string): Promise<CheckpointManifest | null> {
    const f = await fs();
    let m: unknown;
    try {
      m = JSON.parse(await f.readFile(`${path}/${MANIFEST}`, "utf8"));
    } catch {
      return null;
    }
    if (!isManifest(m)) return null;
    for (const [file, size] of Object.entries(m.files)) {
      try {
        const st = await f.stat(`${path}/${file}`);
        if (!st.isFile() || st.size !== size) return null;
      } catch {
        return null;
      }
    }
    return m;
  }

  protected async manifest(id: string): Promise<CheckpointManifest | null> {
    await this.ready();
    return this.manifestAt(this.path(id));
  }

  async writeCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<void> {
    checkId(id);
    const entries = toEntries(files);
    const f = await fs();
    await f.mkdir(this.dir, { recursive: true });
    await this.ready();
    await this.collect();
    const tmp = this.path(`.${id}.tmp-${token()}`);
    const final = this.path(id);
    writingDirs.add(tmp);
    try {
      await f.mkdir(tmp);
      const manifest: CheckpointManifest = { format: "webtune-checkpoint", version: 1, id, created: Date.now(), files: {} };
      for (const [name, bytes] of entries) {
        if (name.includes("/")) await f.mkdir(`${tmp}/${name.slice(0, name.lastIndexOf("/"))}`, { recursive: true });
        await writeSynced(f, `${tmp}/${name}`, bytes);
        manifest.files[name] = bytes.length;
      }
      await writeSynced(f, `${tmp}/${MANIFEST}`, encoder.encode(JSON.stringify(manifest, null, 2) + "\n"));
      for (const sub of new Set(entries.filter(([n]) => n.includes("/")).map(([n]) => n.slice(0, n.lastIndexOf("/"))))) {
        await syncDir(f, `${tmp}/${sub}`);
      }
      await syncDir(f, tmp);
      let old: string | null = null;
      try {
        await f.stat(final);
        old = this.path(`.${id}.old-${token()}`);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
      if (old) {
        // Two renames: a crash between them leaves .<id>.old-*, which collect() renames back.
        writingDirs.add(old);
        try {
          await f.rename(final, old);
          await f.rename(tmp, final);
        } finally {
          writingDirs.delete(old);
        }
        await syncDir(f, this.dir);
        await f.rm(old, { recursive: true, force: true });
      } else {
        await f.rename(tmp, final);
        await syncDir(f, this.dir);
      }
    } catch (e) {
      await f.rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw new Error(`writing checkpoint "${id}" to ${this.dir} failed: ${(e as Error).message}`, { cause: e });
    } finally {
      writingDirs.delete(tmp);
    }
  }

  async list(): Promise<string[]> {
    await this.ready();
    const f = await fs();
    let entries: import("node:fs").Dirent[];
    try {
      entries = await f.readdir(this.dir, { withFileTypes: true });
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    const found: { id: string; created: number }[] = [];
    for (const d of entries) {
      if (d.name.startsWith(".") || !d.isDirectory()) continue;
      const m = await this.manifestAt(this.path(d.name));
      if (m) found.push({ id: d.name, created: typeof m.created === "number" ? m.created : 0 });
    }
    return sortIds(found);
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    const f = await fs();
    await this.ready();
    const final = this.path(id);
    // Out of sight in one rename (a crash after it leaves a temp directory for collect()), then removed.
    const doomed = this.path(`.${id}.tmp-${token()}`);
    try {
      await f.rename(final, doomed);
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    await f.rm(doomed, { recursive: true, force: true });
    await this.collect();
  }

  protected async readFile(id: string, _m: CheckpointManifest, file: string, start: number, end: number): Promise<Uint8Array> {
    const f = await fs();
    const path = this.path(id, file);
    const h = await f.open(path, "r").catch(() => {
      throw new Error(`${file} not found in checkpoint "${id}" of ${this.dir}`);
    });
    try {
      const out = new Uint8Array(end - start);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await h.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) throw new Error(`${path}: the file ended after ${start + done} bytes`);
        done += bytesRead;
      }
      return out;
    } finally {
      await h.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// IndexedDB (browser)

function manifestKey(id: string): string {
  return `${id}/${MANIFEST}`;
}

function chunkKey(id: string, gen: string, file: string, n: number): string {
  return `${id}/${gen}/${file}#${n}`;
}

/** Every key from `prefix` up to (not including) anything past it. */
function prefixRange(prefix: string): IDBKeyRange {
  return IDBKeyRange.bound(prefix, `${prefix}\uffff`);
}

/** The chunk keys a manifest's files need. */
function chunkKeys(m: CheckpointManifest): string[] {
  const cs = m.chunk_size ?? CHUNK_SIZE;
  const out: string[] = [];
  for (const [file, size] of Object.entries(m.files)) {
    for (let n = 0; n * cs < size; n++) out.push(chunkKey(m.id, m.gen!, file, n));
  }
  return out;
}

/** The request's result, or its error, as a promise (inside an open transaction). */
function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((ok, fail) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

/**
 * Checkpoints in an IndexedDB database (object store "files"): chunks "<id>/<gen>/<file>#<n>", then the
 * manifest "<id>/webtune_checkpoint.json" in its own transaction, which also checks that every chunk is there.
 */
export class IndexedDBStorage extends BaseStorage {
  readonly name: string;
  private readonly store: UseStore;
  /** Key prefixes "<id>/<gen>/" of writes this object has in progress (their chunks are not garbage). */
  private readonly writing = new Set<string>();

  constructor(
    readonly database: string,
    readonly chunkSize = CHUNK_SIZE,
  ) {
    super();
    if (!database) throw new Error("IndexedDBStorage: the database name is empty");
    if (typeof indexedDB === "undefined") throw new Error(`there is no IndexedDB here for checkpoints "indexeddb:${database}" (use a directory in Deno/Node)`);
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new Error(`IndexedDBStorage: bad chunk size ${chunkSize}`);
    this.name = `indexeddb:${database}`;
    this.store = createStore(database, "files");
  }

  protected async manifest(id: string): Promise<CheckpointManifest | null> {
    const m = await get<unknown>(manifestKey(id), this.store);
    return isManifest(m) && typeof m.gen === "string" ? m : null;
  }

  /**
   * The first half of writeCheckpoint: stores the chunks of a new generation of checkpoint `id` and returns
   * the manifest that commitCheckpoint() makes visible. Until then nothing is listed, and the chunks are
   * garbage for the next write or delete through another IndexedDBStorage object (this one keeps them until
   * commitCheckpoint: an interrupted write is collected after a reload).
   */
  async stageCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<CheckpointManifest> {
    checkId(id);
    const entries = toEntries(files);
    await this.collect();
    const gen = token();
    const manifest: CheckpointManifest = { format: "webtune-checkpoint", version: 1, id, created: Date.now(), files: {}, gen, chunk_size: this.chunkSize };
    const inflight = `${id}/${gen}/`;
    this.writing.add(inflight);
    try {
      // Chunks go in batches of about one chunk's bytes per transaction (small files share one).
      let batch: [string, Uint8Array][] = [];
      let bytes = 0;
      for (const [name, data] of entries) {
        manifest.files[name] = data.length;
        for (let n = 0, at = 0; at < data.length; n++, at += this.chunkSize) {
          const piece = data.slice(at, Math.min(at + this.chunkSize, data.length));
          batch.push([chunkKey(id, gen, name, n), piece]);
          bytes += piece.length;
          if (bytes >= this.chunkSize) {
            await setMany(batch, this.store);
            batch = [];
            bytes = 0;
          }
        }
      }
      if (batch.length) await setMany(batch, this.store);
    } catch (e) {
      this.writing.delete(inflight);
      throw new Error(`writing checkpoint "${id}" to ${this.name} failed: ${(e as Error).message}`, { cause: e });
    }
    return manifest;
  }

  /**
   * The second half of writeCheckpoint: in one transaction, checks that every chunk of the staged write is
   * there and puts the manifest; then removes the chunks of the generation it replaced.
   */
  async commitCheckpoint(manifest: CheckpointManifest): Promise<void> {
    const { id, gen } = manifest;
    const inflight = `${id}/${gen}/`;
    let problem = "";
    try {
      const need = chunkKeys(manifest);
      await this.store("readwrite", (s) => {
        void request(s.getAllKeys(prefixRange(`${id}/${gen}/`))).then((got) => {
          const have = new Set(got.map(String));
          const missing = need.filter((k) => !have.has(k));
          if (missing.length) {
            problem = `${missing.length} of its ${need.length} chunks are gone (${missing[0]}…): did another page delete or overwrite it?`;
            s.transaction.abort();
          } else {
            s.put(manifest, manifestKey(id));
          }
        }, () => {});
        return promisifyRequest(s.transaction);
      });
    } catch (e) {
      throw new Error(`writing checkpoint "${id}" to ${this.name} failed: ${problem || (e as Error)?.message}`, { cause: e });
    } finally {
      this.writing.delete(inflight);
    }
    await this.collect(id);
  }

  async writeCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<void> {
    await this.commitCheckpoint(await this.stageCheckpoint(id, files));
  }

  /**
   * Removes chunks no manifest names (of checkpoint `only`, or of all), except those of writes this object has
   * in progress; in one transaction, so a manifest cannot appear halfway through.
   */
  private collect(only?: string): Promise<void> {
    return this.store("readwrite", (s) => {
      const range = only === undefined ? undefined : prefixRange(`${only}/`);
      void request(s.getAllKeys(range)).then(async (keys) => {
        const all = keys.filter((k): k is string => typeof k === "string");
        const manifests = all.filter((k) => k.endsWith(`/${MANIFEST}`) && !k.slice(0, -MANIFEST.length - 1).includes("/"));
        const live = new Set<string>();
        const values = await Promise.all(manifests.map((k) => request(s.get(k))));
        values.forEach((m, i) => {
          const id = manifests[i]!.slice(0, -MANIFEST.length - 1);
          if (isManifest(m) && typeof m.gen === "string") live.add(`${id}/${m.gen}/`);
        });
        for (const k of all) {
          if (k.endsWith(`/${MANIFEST}`)) continue;
          const m = /^([^/]+\/[^/]+\/)/.exec(k);
          if (!m || live.has(m[1]!) || this.writing.has(m[1]!)) continue;
          s.delete(k);
        }
      }, () => {});
      return promisifyRequest(s.transaction);
    });
  }

  async list(): Promise<string[]> {
    const found = await this.store("readonly", async (s) => {
      const keys = new Set((await request(s.getAllKeys())).filter((k): k is string => typeof k === "string"));
      const ids = [...keys].filter((k) => k.endsWith(`/${MANIFEST}`)).map((k) => k.slice(0, -MANIFEST.length - 1)).filter((id) => !id.includes("/"));
      const values = await Promise.all(ids.map((id) => request(s.get(manifestKey(id)))));
      const out: { id: string; created: number }[] = [];
      values.forEach((m, i) => {
        if (isManifest(m) && typeof m.gen === "string" && m.id === ids[i] && chunkKeys(m).every((k) => keys.has(k))) {
          out.push({ id: ids[i]!, created: typeof m.created === "number" ? m.created : 0 });
        }
      });
      return out;
    });
    return sortIds(found);
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    await del(manifestKey(id), this.store);
    await this.store("readwrite", (s) => {
      s.delete(prefixRange(`${id}/`));
      return promisifyRequest(s.transaction);
    });
    await this.collect();
  }

  protected async readFile(id: string, m: CheckpointManifest, file: string, start: number, end: number): Promise<Uint8Array> {
    const out = new Uint8Array(end - start);
    if (end === start) return out;
    const cs = m.chunk_size ?? CHUNK_SIZE;
    const size = m.files[file]!;
    const first = Math.floor(start / cs);
    const last = Math.floor((end - 1) / cs);
    const keys: string[] = [];
    for (let n = first; n <= last; n++) keys.push(chunkKey(id, m.gen!, file, n));
    const chunks = await getMany<Uint8Array>(keys, this.store);
    chunks.forEach((c, i) => {
      const n = first + i;
      const want = Math.min(cs, size - n * cs);
      if (!(c instanceof Uint8Array) || c.length !== want) {
        throw new Error(`${file} in ${this.name}/${id}: chunk ${n} is ${c ? `${(c as Uint8Array).length} bytes, not ${want}` : "missing"}`);
      }
      const a = Math.max(start, n * cs);
      const b = Math.min(end, n * cs + want);
      out.set(c.subarray(a - n * cs, b - n * cs), a - start);
    });
    return out;
  }
}
