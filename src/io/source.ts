// The two shapes every reader in webtune takes: one file (ByteFile: its size, ranged reads, a stream from the
// start), and a directory of files (ModelSource: a model's config.json, weights, tokenizer.json, …). The
// readers behind them are one per kind of place: io/local.ts (Deno/Node files), io/blob.ts (browser File,
// Blob and directory handles), io/http.ts (URLs and the Hugging Face Hub); io/open.ts picks one for a location.
//
// Reads are ranged (`read(file, start, end)`), so the safetensors reader fetches one tensor at a time. Every
// reader returns bytes the caller owns, except MemorySource, whose reads are views of the bytes it was given.
import { checkRange } from "./fs.ts";
import { decodeUtf8 } from "./utf8.ts";

/** One file's bytes. */
export interface ByteFile {
  /** The size in bytes; an error naming the file when it cannot be opened. */
  size(): Promise<number>;
  /** Bytes [start, end) (default the whole file); an error naming the file when it is missing or shorter. */
  read(start?: number, end?: number): Promise<Uint8Array>;
  /** The bytes from the start, in chunks of about `chunkSize` bytes (a response body: as they arrive). */
  stream(chunkSize: number): AsyncIterable<Uint8Array>;
  /** The first `n` bytes, fewer when the file is shorter (to sniff a format): over HTTP one ranged GET, nothing kept. */
  head(n: number): Promise<Uint8Array>;
}

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

/** Common helpers over the three primitives. */
export abstract class BaseSource implements ModelSource {
  abstract readonly name: string;
  abstract exists(file: string): Promise<boolean>;
  abstract size(file: string): Promise<number>;
  abstract read(file: string, start?: number, end?: number): Promise<Uint8Array>;

  async text(file: string): Promise<string> {
    return decodeUtf8(await this.read(file), `${file} in ${this.name}`);
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

/** The bytes of some files held in memory (tests, or files a page already has). Reads are views, not copies. */
export class MemorySource extends BaseSource {
  constructor(
    readonly files: Record<string, Uint8Array>,
    readonly name = "in-memory files",
  ) {
    super();
  }

  private get(file: string): Uint8Array {
    const b = Object.hasOwn(this.files, file) ? this.files[file] : undefined;
    if (!b) throw this.missing(file);
    return b;
  }

  async exists(file: string): Promise<boolean> {
    return Object.hasOwn(this.files, file);
  }

  async size(file: string): Promise<number> {
    return this.get(file).length;
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    const b = this.get(file);
    return b.subarray(...checkRange(`${file} in ${this.name}`, start, end ?? b.length, b.length));
  }
}
