// Where a model's files come from: a local directory (Deno/Node), a URL base or a Hub model id, or browser
// File / FileSystemDirectoryHandle objects. Everything that reads model or tokenizer files goes through a
// ModelSource, so the loaders do not care which.

/** Read access to the files of one model directory (config.json, model.safetensors, tokenizer.json, …). */
export interface ModelSource {
  /** Where the files are, for messages: a path, a URL or a description. */
  readonly name: string;
  /** Whether `file` (a path relative to the model directory) exists. */
  exists(file: string): Promise<boolean>;
  /** The size of `file` in bytes; an error naming the file and the source when it does not exist. */
  size(file: string): Promise<number>;
  /** Bytes [start, end) of `file` (default the whole file); an error naming the file when it is missing or shorter. */
  read(file: string, start?: number, end?: number): Promise<Uint8Array>;
  /** `file` as UTF-8 text. */
  text(file: string): Promise<string>;
  /** `file` parsed as JSON; an error naming the file when it is not valid JSON. */
  json<T = unknown>(file: string): Promise<T>;
}

type Fs = typeof import("node:fs/promises");
let fsModule: Promise<Fs> | null = null;
/** node:fs/promises (Node and Deno); loaded through a variable so browser bundles do not include it. */
function fs(): Promise<Fs> {
  const spec = "node:fs/promises";
  return (fsModule ??= import(/* @vite-ignore */ spec) as Promise<Fs>);
}

function joinPath(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** Common helpers over the three primitives. */
abstract class BaseSource implements ModelSource {
  abstract readonly name: string;
  abstract exists(file: string): Promise<boolean>;
  abstract size(file: string): Promise<number>;
  abstract read(file: string, start?: number, end?: number): Promise<Uint8Array>;

  async text(file: string): Promise<string> {
    return new TextDecoder().decode(await this.read(file));
  }

  async json<T = unknown>(file: string): Promise<T> {
    const text = await this.text(file);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Error(`${file} in ${this.name} is not valid JSON: ${(e as Error).message}`);
    }
  }

  protected missing(file: string): Error {
    return new Error(`${file} not found in ${this.name}`);
  }
}

/** A directory on the local filesystem (Deno or Node). */
export class LocalDirectorySource extends BaseSource {
  constructor(readonly dir: string) {
    super();
  }

  get name(): string {
    return this.dir;
  }

  async exists(file: string): Promise<boolean> {
    try {
      return (await (await fs()).stat(joinPath(this.dir, file))).isFile();
    } catch {
      return false;
    }
  }

  async size(file: string): Promise<number> {
    try {
      return (await (await fs()).stat(joinPath(this.dir, file))).size;
    } catch {
      throw this.missing(file);
    }
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    const f = await fs();
    let handle: Awaited<ReturnType<Fs["open"]>>;
    try {
      handle = await f.open(joinPath(this.dir, file), "r");
    } catch {
      throw this.missing(file);
    }
    try {
      const size = (await handle.stat()).size;
      const stop = end ?? size;
      if (start < 0 || stop < start || stop > size) {
        throw new Error(`${file} in ${this.dir}: bytes [${start}, ${stop}) asked for, but the file has ${size} bytes`);
      }
      const out = new Uint8Array(stop - start);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) throw new Error(`${file} in ${this.dir}: the file ended after ${start + done} bytes`);
        done += bytesRead;
      }
      return out;
    } finally {
      await handle.close();
    }
  }
}

/** Options of from_pretrained that choose and fetch files. */
export interface SourceOptions {
  /** A branch, tag or commit of a Hub repository (default "main"). */
  revision?: string;
}

/** What from_pretrained accepts as a model location. */
export type ModelLocation = string | ModelSource;

/** The ModelSource for a location: a ModelSource as is, else a local directory path. */
export async function openSource(location: ModelLocation, _options: SourceOptions = {}): Promise<ModelSource> {
  if (typeof location !== "string") return location;
  return new LocalDirectorySource(location);
}
