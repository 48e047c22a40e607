// Files on the local filesystem (Deno/Node): one file (LocalFile), a model directory (LocalDirectorySource),
// and writing a directory of files as one save (staged, fsync'd, committed, then moved into place).
import { checkRange, fs, isNotFound, type Fs } from "./fs.ts";
import { BaseSource, type ByteFile } from "./source.ts";

type Handle = Awaited<ReturnType<Fs["open"]>>;

/**
 * A file on the local filesystem. `label` names it in messages ("config.json in /models/x", a path);
 * `cannotOpen` makes the error for a file that cannot be opened or stat'ed (default: "cannot open <label>: …").
 */
export class LocalFile implements ByteFile {
  constructor(
    readonly path: string,
    readonly label: string = path,
    private readonly cannotOpen: (e: unknown) => Error = (e) => new Error(`cannot open ${label}: ${(e as Error).message}`, { cause: e }),
  ) {}

  private async open(): Promise<Handle> {
    try {
      return await (await fs()).open(this.path, "r");
    } catch (e) {
      throw this.cannotOpen(e);
    }
  }

  async size(): Promise<number> {
    try {
      return (await (await fs()).stat(this.path)).size;
    } catch (e) {
      throw this.cannotOpen(e);
    }
  }

  async read(start = 0, end?: number): Promise<Uint8Array> {
    const handle = await this.open();
    try {
      const size = (await handle.stat()).size;
      const [s, e] = checkRange(this.label, start, end ?? size, size);
      const out = new Uint8Array(e - s);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, s + done);
        if (bytesRead === 0) throw new Error(`${this.label}: the file ended after ${s + done} bytes`);
        done += bytesRead;
      }
      return out;
    } finally {
      await handle.close();
    }
  }

  async head(n: number): Promise<Uint8Array> {
    return this.read(0, Math.min(n, await this.size()));
  }

  async *stream(chunkSize: number): AsyncGenerator<Uint8Array> {
    const handle = await this.open();
    try {
      for (let pos = 0; ; ) {
        const chunk = new Uint8Array(chunkSize);
        const { bytesRead } = await handle.read(chunk, 0, chunkSize, pos);
        if (bytesRead === 0) return;
        pos += bytesRead;
        yield bytesRead === chunkSize ? chunk : chunk.subarray(0, bytesRead);
      }
    } finally {
      await handle.close();
    }
  }
}

function joinPath(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** A directory on the local filesystem (Deno or Node). */
export class LocalDirectorySource extends BaseSource {
  constructor(readonly dir: string) {
    super();
  }

  get name(): string {
    return this.dir;
  }

  private file(file: string): LocalFile {
    return new LocalFile(joinPath(this.dir, file), `${file} in ${this.dir}`, () => this.missing(file));
  }

  async exists(file: string): Promise<boolean> {
    try {
      return (await (await fs()).stat(joinPath(this.dir, file))).isFile();
    } catch {
      return false;
    }
  }

  size(file: string): Promise<number> {
    return this.file(file).size();
  }

  read(file: string, start?: number, end?: number): Promise<Uint8Array> {
    return this.file(file).read(start, end);
  }
}

/** Writes and fsyncs a file. */
export async function writeSynced(f: Fs, path: string, bytes: Uint8Array): Promise<void> {
  const h = await f.open(path, "w");
  try {
    await h.writeFile(bytes);
    await h.sync();
  } finally {
    await h.close();
  }
}

/** fsyncs a directory (makes renames and new entries durable) where the platform allows it. */
export async function syncDir(f: Fs, path: string): Promise<void> {
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

/** 12 random hex digits. */
function hex12(): string {
  const b = new Uint8Array(6);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** What a save (writeDirectory) records in its directory: the files it wrote, so the next save removes those it drops. */
export const SAVE_RECORD = ".webtune_save.json";
/** The staging directory of a save, inside the target directory: a name webtune owns. */
const STAGING = /^\.webtune-save-[0-9a-f]{12}$/;
/** Written last into a staging directory: the save is committed (recovery finishes it). */
const COMMIT = ".webtune_commit.json";

interface SaveCommit {
  format: "webtune-save";
  /** File name → size, the record file included. */
  files: Record<string, number>;
  /** Files of the previous save that this one does not write. */
  remove: string[];
}

/** Staging directories this process is writing or applying (never recovered from under it). */
const savesInProgress = new Set<string>();

function isCommit(x: unknown): x is SaveCommit {
  const c = x as Partial<SaveCommit> | null;
  return (
    typeof c === "object" && c !== null && c.format === "webtune-save" && typeof c.files === "object" && c.files !== null &&
    Array.isArray(c.remove) && c.remove.every((n) => typeof n === "string")
  );
}

function checkSaveName(name: string): void {
  const parts = name.split("/");
  if (name === "" || name.includes("\\") || name.includes("\0") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new Error(`writeDirectory: "${name}" is not a valid file name: a relative path like "adapter_config.json"`);
  }
  if (name === SAVE_RECORD || name === COMMIT || STAGING.test(parts[0]!)) throw new Error(`writeDirectory: "${name}" is a name webtune reserves for its saves`);
}

/** Moves a committed save's files from `stage` into `dir`, removes what it drops, then the staging directory. Idempotent. */
async function applySave(f: Fs, dir: string, stage: string, commit: SaveCommit): Promise<void> {
  const subdirs = new Set<string>();
  for (const name of Object.keys(commit.files)) {
    const from = joinPath(stage, name);
    try {
      await f.stat(from);
    } catch {
      continue; // moved already (a recovery after a crash mid-way)
    }
    if (name.includes("/")) {
      const sub = name.slice(0, name.lastIndexOf("/"));
      await f.mkdir(joinPath(dir, sub), { recursive: true });
      subdirs.add(sub);
    }
    await f.rename(from, joinPath(dir, name));
  }
  for (const name of commit.remove) if (!Object.hasOwn(commit.files, name)) await f.rm(joinPath(dir, name), { force: true });
  for (const sub of subdirs) await syncDir(f, joinPath(dir, sub));
  await syncDir(f, dir);
  await f.rm(joinPath(stage, COMMIT), { force: true });
  await f.rm(stage, { recursive: true, force: true });
}

/**
 * Finishes or discards what a crashed save (writeDirectory) left in `dir`: a committed staging directory
 * (`.webtune-save-<hex>/` with its commit record) is moved into place, an uncommitted one removed. Only those
 * names are touched. writeDirectory runs it first; checkpoint storage runs it on its directory.
 */
export async function recoverDirectory(dir: string): Promise<void> {
  const f = await fs();
  let names: string[];
  try {
    names = await f.readdir(dir);
  } catch (e) {
    if (isNotFound(e) || (e as { code?: string }).code === "ENOTDIR") return;
    throw e;
  }
  for (const n of names) {
    if (!STAGING.test(n)) continue;
    const stage = joinPath(dir, n);
    if (savesInProgress.has(stage)) continue;
    let commit: unknown = null;
    try {
      commit = JSON.parse(await f.readFile(joinPath(stage, COMMIT), "utf8"));
    } catch {
      commit = null;
    }
    if (isCommit(commit)) await applySave(f, dir, stage, commit);
    else await f.rm(stage, { recursive: true, force: true });
  }
  await recoverSwaps(f, dir);
}

/**
 * Writes `files` into the directory `dir` (Deno/Node), creating it, as one save (`dir/.webtune_save.json`
 * records what a save wrote), in one of two ways:
 * - `dir` absent, empty, or holding nothing but the previous save's files (an adapter or model directory):
 *   the new directory is written beside it as `.webtune-swap-<name>-<hex>/` (each file fsync'd, the record
 *   last), then swapped in by two renames (the old one aside as `.webtune-prev-<name>-<hex>`, the new one in
 *   its place) and the old one removed. Any reader, webtune or not, sees the old save, the new one, or (for
 *   the instant between the renames) none: never files of two saves.
 * - otherwise (`dir` also holds checkpoints or other files, as output_dir does): every file is written and
 *   fsync'd into a staging directory `dir/.webtune-save-<hex>/`, then a commit record is written and fsync'd
 *   (the save's commit point), then the files are renamed into place, the files of the previous save that
 *   this one drops are removed, and the staging directory goes. Other files in `dir` are never touched.
 * A crash before the commit point (the record, for a swap) leaves the previous save; after it, the next
 * writeDirectory or checkpoint listing of `dir` or of its parent (recoverDirectory) finishes the new one:
 * no mix of two saves remains, and no temporary file of webtune's is left.
 */
export async function writeDirectory(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const entries = Object.entries(files).map(([name, v]): [string, Uint8Array] => {
    checkSaveName(name);
    if (typeof v === "string") return [name, new TextEncoder().encode(v)];
    if (v instanceof Uint8Array) return [name, v];
    throw new Error(`writeDirectory: ${name}: expected a Uint8Array or a string`);
  });
  const f = await fs();
  const { parent, base } = splitDir(dir);
  if (parent !== null) {
    await f.mkdir(parent, { recursive: true });
    await recoverSwaps(f, parent, base);
    if (entries.every(([name]) => !name.includes("/")) && (await swappable(f, dir))) return swapDirectory(f, dir, parent, base, entries);
  }
  await f.mkdir(dir, { recursive: true });
  await recoverDirectory(dir);
  let previous: string[] = [];
  try {
    const rec = JSON.parse(await f.readFile(joinPath(dir, SAVE_RECORD), "utf8")) as { files?: unknown };
    if (rec && typeof rec.files === "object" && rec.files !== null) previous = Object.keys(rec.files).filter((n) => { try { checkSaveName(n); return true; } catch { return false; } });
  } catch {
    previous = [];
  }
  const stage = joinPath(dir, `.webtune-save-${hex12()}`);
  savesInProgress.add(stage);
  let committed = false;
  try {
    await f.mkdir(stage);
    const sizes: Record<string, number> = {};
    const subdirs = new Set<string>();
    for (const [name, bytes] of entries) {
      if (name.includes("/")) {
        const sub = name.slice(0, name.lastIndexOf("/"));
        await f.mkdir(joinPath(stage, sub), { recursive: true });
        subdirs.add(sub);
      }
      await writeSynced(f, joinPath(stage, name), bytes);
      sizes[name] = bytes.length;
    }
    const record = new TextEncoder().encode(JSON.stringify({ format: "webtune-save", created: Date.now(), files: sizes }, null, 2) + "\n");
    await writeSynced(f, joinPath(stage, SAVE_RECORD), record);
    for (const sub of subdirs) await syncDir(f, joinPath(stage, sub));
    const commit: SaveCommit = { format: "webtune-save", files: { ...sizes, [SAVE_RECORD]: record.length }, remove: previous.filter((n) => !Object.hasOwn(sizes, n)) };
    await writeSynced(f, joinPath(stage, COMMIT), new TextEncoder().encode(JSON.stringify(commit) + "\n"));
    await syncDir(f, stage);
    committed = true;
    await applySave(f, dir, stage, commit);
  } catch (e) {
    // Before the commit point the save is dropped; after it, the next save or listing finishes it.
    if (!committed) await f.rm(stage, { recursive: true, force: true }).catch(() => {});
    throw new Error(`saving to ${dir} failed: ${(e as Error).message}`, { cause: e });
  } finally {
    savesInProgress.delete(stage);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Saves that replace a whole directory (writeDirectory's first way)

/** The new directory of a swap, complete once its save record is there: `.webtune-swap-<name>-<hex>`. */
const SWAP = /^\.webtune-swap-(.+)-[0-9a-f]{12}$/;
/** The directory a swap replaced, set aside until the new one is in: `.webtune-prev-<name>-<hex>`. */
const PREV = /^\.webtune-prev-(.+)-[0-9a-f]{12}$/;

/** `dir`'s parent and last name; parent null where there is none to swap in (".", "/", a name ending in ".."). */
function splitDir(dir: string): { parent: string | null; base: string } {
  const trimmed = dir.replace(/\/+$/, "");
  const cut = trimmed.lastIndexOf("/");
  const base = trimmed.slice(cut + 1);
  if (!base || base === "." || base === "..") return { parent: null, base };
  return { parent: cut < 0 ? "." : cut === 0 ? "/" : trimmed.slice(0, cut), base };
}

/** The file names and sizes a save record lists, or null when `path` holds none (or a malformed one). */
async function recordedFiles(f: Fs, path: string): Promise<Record<string, number> | null> {
  try {
    const rec = JSON.parse(await f.readFile(joinPath(path, SAVE_RECORD), "utf8")) as { format?: unknown; files?: unknown };
    if (rec?.format !== "webtune-save" || typeof rec.files !== "object" || rec.files === null) return null;
    return rec.files as Record<string, number>;
  } catch {
    return null;
  }
}

/** Whether `dir` may be replaced whole: absent, or a real directory holding only its save record's files. */
async function swappable(f: Fs, dir: string): Promise<boolean> {
  let st;
  try {
    st = await f.lstat(dir);
  } catch (e) {
    if (isNotFound(e)) return true;
    throw e;
  }
  if (!st.isDirectory()) return false; // a file (the commit path fails on it, naming it) or a symlink (kept)
  const entries = await f.readdir(dir, { withFileTypes: true });
  if (!entries.length) return true;
  const recorded = await recordedFiles(f, dir);
  if (!recorded) return false;
  return entries.every((e) => e.isFile() && (e.name === SAVE_RECORD || Object.hasOwn(recorded, e.name)));
}

/** Writes the save beside `dir`, then swaps it in (see writeDirectory). */
async function swapDirectory(f: Fs, dir: string, parent: string, base: string, entries: [string, Uint8Array][]): Promise<void> {
  const stage = joinPath(parent, `.webtune-swap-${base}-${hex12()}`);
  savesInProgress.add(stage);
  let committed = false;
  try {
    await f.mkdir(stage);
    const sizes: Record<string, number> = {};
    for (const [name, bytes] of entries) {
      await writeSynced(f, joinPath(stage, name), bytes);
      sizes[name] = bytes.length;
    }
    // The record, written last, is the commit point: recovery swaps in a stage that has it.
    await writeSynced(f, joinPath(stage, SAVE_RECORD), new TextEncoder().encode(JSON.stringify({ format: "webtune-save", created: Date.now(), files: sizes }, null, 2) + "\n"));
    await syncDir(f, stage);
    await syncDir(f, parent);
    committed = true;
    await finishSwap(f, dir, parent, base, stage);
  } catch (e) {
    if (!committed) await f.rm(stage, { recursive: true, force: true }).catch(() => {});
    throw new Error(`saving to ${dir} failed: ${(e as Error).message}`, { cause: e });
  } finally {
    savesInProgress.delete(stage);
  }
}

/** Puts the complete `stage` in `dir`'s place: the old directory aside, the new one in, the old one removed. */
async function finishSwap(f: Fs, dir: string, parent: string, base: string, stage: string): Promise<void> {
  const prev = joinPath(parent, `.webtune-prev-${base}-${hex12()}`);
  savesInProgress.add(prev);
  try {
    let setAside = false;
    try {
      await f.rename(dir, prev);
      setAside = true;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    await f.rename(stage, dir);
    await syncDir(f, parent);
    if (setAside) await f.rm(prev, { recursive: true, force: true });
  } finally {
    savesInProgress.delete(prev);
  }
}

/** Whether `stage` holds every file its save record lists, at its size. */
async function completeStage(f: Fs, stage: string): Promise<boolean> {
  const files = await recordedFiles(f, stage);
  if (!files) return false;
  for (const [name, size] of Object.entries(files)) {
    try {
      if ((await f.stat(joinPath(stage, name))).size !== size) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/**
 * Finishes or discards the swaps a crash interrupted in `parent` (of its subdirectory `only`, or of every
 * one): a complete new directory whose target is gone goes in; an incomplete one is removed; a set-aside old
 * directory is removed once its target is back, and put back when nothing else can take its place. Only
 * `.webtune-swap-*` / `.webtune-prev-*` names are touched.
 */
async function recoverSwaps(f: Fs, parent: string, only?: string): Promise<void> {
  let names: string[];
  try {
    names = await f.readdir(parent);
  } catch (e) {
    if (isNotFound(e) || (e as { code?: string }).code === "ENOTDIR") return;
    throw e;
  }
  const exists = async (p: string) => f.lstat(p).then(() => true, () => false);
  for (const n of names) {
    const m = SWAP.exec(n);
    const stage = joinPath(parent, n);
    if (!m || (only !== undefined && m[1] !== only) || savesInProgress.has(stage)) continue;
    const target = joinPath(parent, m[1]!);
    if (!(await exists(target)) && (await completeStage(f, stage))) await f.rename(stage, target);
    else await f.rm(stage, { recursive: true, force: true });
  }
  for (const n of names) {
    const m = PREV.exec(n);
    const prev = joinPath(parent, n);
    if (!m || (only !== undefined && m[1] !== only) || savesInProgress.has(prev)) continue;
    const target = joinPath(parent, m[1]!);
    if (await exists(target)) await f.rm(prev, { recursive: true, force: true });
    else await f.rename(prev, target);
  }
  await syncDir(f, parent);
}
