// Checkpoints in a directory (Deno/Node):
//   <dir>/<id>/<file>…  +  <dir>/<id>/webtune_checkpoint.json
// written into <dir>/.<id>.tmp-<random>/ (each file fsync'd), then renamed to <dir>/<id> in one rename; an
// existing <dir>/<id> is first renamed aside to <dir>/.<id>.old-<random>.
import { fs, isNotFound, type Fs } from "../../io/fs.ts";
import { LocalFile } from "../../io/local.ts";
import { BaseStorage, checkId, encoder, MANIFEST, isManifest, sortIds, toEntries, token, type CheckpointManifest } from "./base.ts";

/** Temporary directories being written by this process (never garbage-collected from under a writer). */
const writingDirs = new Set<string>();

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

  protected readFile(id: string, _m: CheckpointManifest, file: string, start: number, end: number): Promise<Uint8Array> {
    const path = this.path(id, file);
    return new LocalFile(path, path, () => new Error(`${file} not found in checkpoint "${id}" of ${this.dir}`)).read(start, end);
  }
}

