// Files on the local filesystem (Deno/Node): one file (LocalFile), a model directory (LocalDirectorySource),
// and writing a directory of files atomically, file by file.
import { checkRange, fs, type Fs } from "./fs.ts";
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

/**
 * Writes `files` into the directory `dir` (Deno/Node), creating it: each file goes to a temporary name
 * first and is renamed into place, so an interrupted save never leaves a half-written file under its name.
 */
export async function writeDirectory(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const f = await fs();
  await f.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    const path = joinPath(dir, name);
    const tmp = `${path}.tmp-${Math.random().toString(36).slice(2)}`;
    await f.writeFile(tmp, bytes);
    await f.rename(tmp, path);
  }
}
