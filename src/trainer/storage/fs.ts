// Checkpoints in a directory (Deno/Node):
//   <dir>/<id>/<file>…  +  <dir>/<id>/webtune_checkpoint.json
// written into <dir>/.webtune-tmp-<id>-<random>/ (each file fsync'd), then renamed to <dir>/<id> in one rename;
// an existing <dir>/<id> is first renamed aside to <dir>/.webtune-old-<id>-<random>. Cleanup after a crash
// touches only those names (and save_model's own, io/local.ts recoverDirectory), never another file.
import { fs, isNotFound } from "../../io/fs.ts";
import { LocalFile, recoverDirectory, syncDir, writeSynced } from "../../io/local.ts";
import { BaseStorage, checkId, encoder, MANIFEST, isManifest, sortIds, toEntries, token, type CheckpointManifest } from "./base.ts";

/** Temporary directories being written by this process (never garbage-collected from under a writer). */
const writingDirs = new Set<string>();

/** A temporary or set-aside checkpoint directory: `.webtune-(tmp|old)-<id>-<12 hex>`, names only webtune makes. */
const OWNED = /^\.webtune-(tmp|old)-(.+)-[0-9a-f]{12}$/;

/**
 * Checkpoints in a directory: `<dir>/<id>/` holds the files and, written last, webtune_checkpoint.json. A
 * checkpoint is written into `<dir>/.webtune-tmp-<id>-<random>/` and renamed into place; list() ignores
 * dot-directories and directories whose manifest is missing or whose files' sizes disagree with it (damaged()
 * names those).
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
   * Cleans up after a crash: a `.webtune-old-<id>-*` directory whose `<id>` is gone (a crash between the two
   * renames of a replacement) is renamed back; other `.webtune-old-*` and `.webtune-tmp-*` directories are
   * removed, except those this process is writing; a save_model into the directory that a crash interrupted
   * is finished or dropped (recoverDirectory). Nothing else is touched: a user's `.x.tmp-1234` stays. Runs on
   * first use and before every write and delete.
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
      const m = OWNED.exec(n);
      if (!m) continue;
      const full = this.path(n);
      if (writingDirs.has(full)) continue;
      if (m[1] === "old" && !present.has(m[2]!) && (await this.manifestAt(full)) !== null) {
        await f.rename(full, this.path(m[2]!));
        present.add(m[2]!);
        continue;
      }
      await f.rm(full, { recursive: true, force: true });
    }
    await recoverDirectory(this.dir);
  }

  private ready(): Promise<void> {
    return (this.recovered ??= this.collect());
  }

  /** The manifest of the checkpoint directory `path` when it is complete (every file there with its size). */
  private async manifestAt(path: string): Promise<CheckpointManifest | null> {
    const m = await this.check(path);
    return typeof m === "string" ? null : m;
  }

  /** The manifest of the checkpoint directory `path`, or what makes it incomplete. */
  private async check(path: string): Promise<CheckpointManifest | string> {
    const f = await fs();
    let text: string;
    try {
      text = await f.readFile(`${path}/${MANIFEST}`, "utf8");
    } catch {
      return `${MANIFEST} is missing`;
    }
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch (e) {
      return `${MANIFEST} is not valid JSON (${(e as Error).message})`;
    }
    if (!isManifest(m)) return `${MANIFEST} is not a webtune checkpoint manifest`;
    for (const [file, size] of Object.entries(m.files)) {
      try {
        const st = await f.stat(`${path}/${file}`);
        if (!st.isFile()) return `${file} is not a file`;
        if (st.size !== size) return `${file} is ${st.size} bytes, the manifest says ${size}`;
      } catch {
        return `${file} is missing`;
      }
    }
    return m;
  }

  /** The names of the checkpoint directories (not webtune's own dot-named temporaries), after ready(). */
  private async checkpointDirs(): Promise<string[]> {
    await this.ready();
    const f = await fs();
    let entries: import("node:fs").Dirent[];
    try {
      entries = await f.readdir(this.dir, { withFileTypes: true });
    } catch (e) {
      if (isNotFound(e)) return [];
      throw e;
    }
    return entries.filter((d) => !d.name.startsWith(".") && d.isDirectory()).map((d) => d.name);
  }

  async damaged(): Promise<{ id: string; problem: string }[]> {
    const out: { id: string; problem: string }[] = [];
    for (const name of await this.checkpointDirs()) {
      const m = await this.check(this.path(name));
      if (typeof m === "string") out.push({ id: name, problem: m });
    }
    return out;
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
    const tmp = this.path(`.webtune-tmp-${id}-${token()}`);
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
        old = this.path(`.webtune-old-${id}-${token()}`);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
      if (old) {
        // Two renames: a crash between them leaves .webtune-old-<id>-*, which collect() renames back.
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
    const found: { id: string; created: number }[] = [];
    for (const name of await this.checkpointDirs()) {
      const m = await this.manifestAt(this.path(name));
      if (m) found.push({ id: name, created: typeof m.created === "number" ? m.created : 0 });
    }
    return sortIds(found);
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    const f = await fs();
    await this.ready();
    const final = this.path(id);
    // Out of sight in one rename (a crash after it leaves a temp directory for collect()), then removed.
    const doomed = this.path(`.webtune-tmp-${id}-${token()}`);
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

