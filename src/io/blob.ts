// Browser objects: a File or Blob (BlobFile), File lists (an <input type="file" webkitdirectory> or drag and
// drop) and directory handles (showDirectoryPicker()). Ranged reads are Blob slices, which browsers read from disk.
import { checkRange } from "./fs.ts";
import { BaseSource, type ByteFile } from "./source.ts";

/** A Blob (a File, or the Cache API's copy of a download); `label` names it in messages. */
export class BlobFile implements ByteFile {
  constructor(
    readonly blob: Blob,
    readonly label: string,
  ) {}

  async size(): Promise<number> {
    return this.blob.size;
  }

  async read(start = 0, end?: number): Promise<Uint8Array> {
    const [s, e] = checkRange(this.label, start, end ?? this.blob.size, this.blob.size);
    return new Uint8Array(await this.blob.slice(s, e).arrayBuffer());
  }

  async head(n: number): Promise<Uint8Array> {
    return this.read(0, Math.min(n, await this.size()));
  }

  async *stream(chunkSize: number): AsyncGenerator<Uint8Array> {
    const size = this.blob.size;
    for (let pos = 0; pos < size; pos += chunkSize) yield new Uint8Array(await this.blob.slice(pos, Math.min(size, pos + chunkSize)).arrayBuffer());
  }
}

/**
 * `File` objects; `file` "a/b.json" matches a File whose webkitRelativePath ends with "/a/b.json", or (for a
 * plain name) whose name is "b.json". When several match, the one nearest the top of the chosen folder wins.
 */
export class FileListSource extends BaseSource {
  readonly files: File[];
  readonly name: string;

  constructor(files: ArrayLike<File> | Iterable<File>) {
    super();
    this.files = Array.from(files as Iterable<File>);
    const root = this.files.map((f) => f.webkitRelativePath?.split("/")[0]).find((r) => r);
    this.name = root ? `the folder "${root}" (${this.files.length} files)` : `the ${this.files.length} files given`;
  }

  private find(file: string): File | undefined {
    const depth = (f: File) => (f.webkitRelativePath ? f.webkitRelativePath.split("/").length : 1);
    return this.files
      .filter((f) => {
        const rel = f.webkitRelativePath;
        return rel ? rel === file || rel.endsWith(`/${file}`) : f.name === file;
      })
      .sort((a, b) => depth(a) - depth(b))[0];
  }

  private get(file: string): File {
    const f = this.find(file);
    if (!f) throw this.missing(file);
    return f;
  }

  async exists(file: string): Promise<boolean> {
    return this.find(file) !== undefined;
  }

  async size(file: string): Promise<number> {
    return this.get(file).size;
  }

  async read(file: string, start?: number, end?: number): Promise<Uint8Array> {
    return new BlobFile(this.get(file), `${file} in ${this.name}`).read(start, end);
  }
}

/** A FileSystemDirectoryHandle (the File System Access API); "a/b.json" walks into the subdirectory "a". */
export class DirectoryHandleSource extends BaseSource {
  private readonly cache = new Map<string, Promise<File | null>>();

  constructor(readonly handle: FileSystemDirectoryHandle) {
    super();
  }

  get name(): string {
    return `the folder "${this.handle.name}"`;
  }

  private find(file: string): Promise<File | null> {
    let p = this.cache.get(file);
    if (!p) {
      p = (async () => {
        const parts = file.split("/").filter((x) => x !== "" && x !== ".");
        let dir = this.handle;
        try {
          for (const d of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(d);
          return await (await dir.getFileHandle(parts.at(-1) ?? "")).getFile();
        } catch (e) {
          if ((e as Error)?.name === "NotFoundError" || (e as Error)?.name === "TypeMismatchError" || (e as Error)?.name === "TypeError") return null;
          throw new Error(`reading ${file} in ${this.name} failed: ${(e as Error).message}`, { cause: e });
        }
      })();
      this.cache.set(file, p);
    }
    return p;
  }

  private async get(file: string): Promise<File> {
    const f = await this.find(file);
    if (!f) throw this.missing(file);
    return f;
  }

  async exists(file: string): Promise<boolean> {
    return (await this.find(file)) !== null;
  }

  async size(file: string): Promise<number> {
    return (await this.get(file)).size;
  }

  async read(file: string, start?: number, end?: number): Promise<Uint8Array> {
    return new BlobFile(await this.get(file), `${file} in ${this.name}`).read(start, end);
  }
}
